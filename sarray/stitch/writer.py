"""The output scene: created in place in the archive, written chunk by chunk, resumable.

The output group ``scenes/<out_id>`` carries ``sarray_in_progress`` until the last chunk is
written, so the catalog does not list it and ingest's recovery leaves it alone. Progress is a
``(chunk rows, chunk cols)`` uint8 array ``translate_done`` with one Zarr chunk per flag: a flag
is set only after its whole output chunk has been written, so a partially written chunk is never
marked done, and a restarted job recomputes exactly the chunks whose flag is 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from sarray.archive.layout import VAR_BACKSCATTER, scene_path
from sarray.archive.store import ATTR_IN_PROGRESS, ATTR_RECORD, Archive
from sarray.errors import ArchiveError
from sarray.ingest.source import Georef

DONE_VAR = "translate_done"
STATS_VAR = "translate_stats"  # per-chunk partial statistics (pol, chunk row, chunk col, field)
ATTR_PROVENANCE = "provenance"


def refine_georef(georef: Georef, scale: int) -> Georef:
    """The output grid's georeferencing: the input's refined by ``scale``.

    For an affine grid ``T_out = T_in @ scale(1/scale)``: the origin is kept and the four
    linear coefficients are divided by ``scale`` (exact for powers of two, rotation included).
    GCP rows and columns are multiplied by ``scale`` (pixel corners stay on the same ground).
    """
    if georef.transform is not None:
        c, a, b, f, d, e = georef.transform
        return Georef(crs_wkt=georef.crs_wkt,
                      transform=(c, a / scale, b / scale, f, d / scale, e / scale))
    if georef.gcps:
        return Georef(crs_wkt=georef.crs_wkt,
                      gcps=tuple((r * scale, q * scale, x, y, z) for r, q, x, y, z in georef.gcps))
    return georef


def georef_of(ds: Any) -> Georef:
    """Read a scene's georeferencing back from its ``spatial_ref`` (exact transform)."""
    from sarray.archive.describe import scene_crs_wkt, scene_geotransform

    gt = scene_geotransform(ds)
    crs = scene_crs_wkt(ds)
    if gt is not None:
        return Georef(crs_wkt=crs, transform=gt)
    if "spatial_ref" in ds.variables and ds["spatial_ref"].attrs.get("gcps"):
        gcps = ds.rio.get_gcps()
        return Georef(crs_wkt=crs, gcps=tuple((g.row, g.col, g.x, g.y, g.z or 0.0) for g in gcps))
    return Georef()


@dataclass
class OutputScene:
    """Handle on an output scene being written in place."""

    archive: Archive
    scene_id: str
    array: Any  # zarr.Array (pol, y, x)
    done: Any  # zarr.Array (chunk rows, chunk cols) uint8
    stats: Any  # zarr.Array (pol, chunk rows, chunk cols, fields) float64

    def done_mask(self) -> np.ndarray:
        return np.asarray(self.done[...], dtype=bool)

    def write_chunk(self, key: tuple[int, int], region: tuple[int, int, int, int],
                    values: np.ndarray, stats: np.ndarray) -> None:
        """Write one whole output chunk and its statistics, then (only then) mark it done."""
        y0, y1, x0, x1 = region
        self.array[:, y0:y1, x0:x1] = values
        self.stats[:, key[0], key[1], :] = stats
        self.done[key[0], key[1]] = 1


def open_or_create_output(
    archive: Archive,
    scene_id: str,
    *,
    shape: tuple[int, int, int],
    pols: tuple[str, ...],
    georef: Georef,
    chunk_px: int,
    grid: tuple[int, int],
    attrs: dict[str, Any],
    provenance: dict[str, Any],
    n_stats: int,
) -> OutputScene:
    """Create the in-progress output scene, or reopen it to resume.

    Raises:
        ArchiveError: if an unfinished output with other settings (provenance) exists.
    """
    import dask.array as da
    import zarr

    from sarray.archive.write import build_dataset

    archive.ensure_created()
    path = archive.path / scene_path(scene_id)
    if (path / "zarr.json").is_file():
        existing = json.loads((path / "zarr.json").read_text()).get("attributes", {})
        if existing.get(ATTR_PROVENANCE) != json.loads(json.dumps(provenance)):
            raise ArchiveError(
                f"scene {scene_id!r}: an unfinished output with other settings is in {archive.path}; "
                "pass --restart to discard it, or --out-scene to write another scene"
            )
    else:
        data = da.zeros(shape, chunks=(1, chunk_px, chunk_px), dtype=np.float32)
        ds = build_dataset(data, pols, georef)
        ds.attrs.update({**attrs, ATTR_PROVENANCE: provenance, ATTR_IN_PROGRESS: True})
        ds.to_zarr(str(archive.path), group=scene_path(scene_id), mode="w-", zarr_format=3,
                   compute=False, consolidated=False,
                   encoding={VAR_BACKSCATTER: {"chunks": (1, chunk_px, chunk_px),
                                               "fill_value": np.float32(np.nan)}})
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        group.create_array(DONE_VAR, shape=grid, chunks=(1, 1), dtype="uint8", fill_value=0,
                           dimension_names=("chunk_row", "chunk_col"))
        group.create_array(STATS_VAR, shape=(len(pols), *grid, n_stats), dtype="float64",
                           chunks=(len(pols), 1, 1, n_stats), fill_value=0.0,
                           dimension_names=("pol", "chunk_row", "chunk_col", "stat_field"))
    group = zarr.open_group(str(path), mode="r+", zarr_format=3)
    return OutputScene(archive=archive, scene_id=scene_id, array=group[VAR_BACKSCATTER],
                       done=group[DONE_VAR], stats=group[STATS_VAR])


def finalize_output(out: OutputScene, record: Any, stats: dict[str, Any]) -> None:
    """Attach the record and statistics, clear the in-progress flag and list the scene."""
    import zarr

    group = zarr.open_group(str(out.archive.path / scene_path(out.scene_id)), mode="r+",
                            zarr_format=3)
    group.attrs.update({"statistics": stats, ATTR_RECORD: record.to_dict(), ATTR_IN_PROGRESS: False})
    out.archive.commit_in_place(record)


def discard_output(archive: Archive, scene_id: str) -> None:
    """Remove an unfinished output (``--restart``); refuses to touch a catalogued scene."""
    import shutil

    if scene_id in archive.catalog():
        raise ArchiveError(f"scene {scene_id!r}: is complete and catalogued; not discarding it")
    shutil.rmtree(archive.path / scene_path(scene_id), ignore_errors=True)
