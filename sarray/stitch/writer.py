"""The output scene: its own scene repository, written chunk by chunk, resumable.

The output repository ``scenes/<out_id>.<settings token>`` carries ``sarray_in_progress`` until
the last chunk is written, so the catalog does not list it and recovery leaves it alone.
Progress is a ``(chunk rows, chunk cols)`` uint8 array ``translate_done`` with one Zarr chunk
per flag, committed with the chunks it flags: a restarted job recomputes exactly the chunks
whose flag is 0 in the last commit.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sarray.archive.layout import VAR_BACKSCATTER, json_safe
from sarray.archive.store import ATTR_IN_PROGRESS, ATTR_RECORD, KIND_OUTPUT, Archive, SceneWriter
from sarray.config import COMMIT_EVERY_CHUNKS, COMMIT_INTERVAL_S
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
    """Handle on an output scene being written into its own (uncatalogued) scene repository.

    Workers write chunks into forks of a clean writable session (:meth:`fork`), each chunk with
    its statistics and done flag; the driver merges the returned forks (:meth:`merge`) and
    commits them together every ``COMMIT_EVERY_CHUNKS`` chunks or ``COMMIT_INTERVAL_S``
    seconds. A flag is never committed without its chunk, and a killed job loses at most the
    chunks since the last commit, which a rerun recomputes identically. Output arrays are not
    sharded: one chunk is one object, so forks never write into the same object.
    """

    archive: Archive
    scene_id: str
    writer: SceneWriter
    _source: Any = None  # clean session the forks come from (at the last commit)
    _pending: int = 0
    _last_commit: float = field(default_factory=time.monotonic)
    commits: int = 0  # commits made by this handle

    def _clean(self) -> Any:
        if self._source is None:
            self._source = self.writer.repo.writable_session("main")
        return self._source

    def _group(self, session: Any) -> Any:
        import zarr

        return zarr.open_group(store=session.store, mode="r+", zarr_format=3)

    def done_mask(self) -> np.ndarray:
        """Chunks done in the last commit."""
        return np.asarray(self._group(self._clean())[DONE_VAR][...], dtype=bool)

    def stats(self) -> np.ndarray:
        return np.asarray(self._group(self._clean())[STATS_VAR][...])

    def fork(self) -> Any:
        """A fork for one worker's writes (pickles to about half a kilobyte)."""
        return self._clean().fork()

    def merge(self, fork: Any, *, chunks: int = 1) -> None:
        """Take a worker's fork (``chunks`` chunks) into the next commit; commit when due."""
        self.writer.session.merge(fork)
        self._pending += chunks
        if (self._pending >= COMMIT_EVERY_CHUNKS
                or time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S):
            self.flush()

    def flush(self) -> None:
        """Commit the chunks merged since the last commit (resume starts from here)."""
        if self.writer.session.has_uncommitted_changes:
            self.writer.commit(f"translate {self.scene_id}: {self._pending} chunk(s)")
            self._source = None
            self.commits += 1
        self._pending = 0
        self._last_commit = time.monotonic()

    def attrs(self) -> Any:
        """The output group's attributes in the session of the next commit."""
        return self._group(self.writer.session).attrs


class ChunkWriter:
    """Writes whole output chunks, their statistics and their done flags into a fork (worker
    side); the output's arrays are opened once for all the chunks of an assembly task."""

    def __init__(self, fork: Any) -> None:
        import zarr

        g = zarr.open_group(store=fork.store, mode="r+", zarr_format=3)
        self.values, self.stats, self.done = g[VAR_BACKSCATTER], g[STATS_VAR], g[DONE_VAR]

    def write(self, key: tuple[int, int], region: tuple[int, int, int, int], values: np.ndarray,
              stats: np.ndarray) -> None:
        y0, y1, x0, x1 = region
        self.values[:, y0:y1, x0:x1] = values
        self.stats[:, key[0], key[1], :] = stats
        self.done[key[0], key[1]] = 1


def output_location(scene_id: str, provenance: dict[str, Any]) -> str:
    """The repository folder of an output: its settings decide it, so a rerun finds it."""
    digest = hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()
    return f"{scene_id}.{digest[:12]}"


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
        ArchiveError: if an unfinished output of this id with other settings exists.
    """
    import dask.array as da
    import zarr

    from sarray.archive.integrity import checked_codecs
    from sarray.archive.layout import ArchiveLayout
    from sarray.archive.write import build_dataset, scene_encoding

    location = output_location(scene_id, provenance)
    for intent in archive.intents():
        if (intent.get("scene_id") == scene_id and intent.get("kind") == KIND_OUTPUT
                and intent.get("location") != location):
            raise ArchiveError(
                f"scene {scene_id!r}: an unfinished output with other settings is in {archive.url}; "
                "pass --restart to discard it, or --out-scene to write another scene"
            )
    writer = archive.begin_scene(scene_id, kind=KIND_OUTPUT, location=location)
    try:
        existing = dict(zarr.open_group(store=writer.store, mode="r", zarr_format=3).attrs)
    except Exception:  # a new repository: no root group yet
        existing = None
    if existing is not None and existing.get(ATTR_PROVENANCE) != json_safe(provenance):
        raise ArchiveError(
            f"scene {scene_id!r}: an unfinished output with other settings is in {archive.url}; "
            "pass --restart to discard it, or --out-scene to write another scene"
        )
    if existing is None:
        data = da.zeros(shape, chunks=(1, chunk_px, chunk_px), dtype=np.float32)
        ds = build_dataset(data, pols, georef)
        ds.attrs.update(json_safe({**attrs, ATTR_PROVENANCE: provenance, ATTR_IN_PROGRESS: True}))
        ds.to_zarr(writer.store, mode="w-", zarr_format=3, compute=False, consolidated=False,
                   encoding=scene_encoding(ds, ArchiveLayout(chunk_px=chunk_px),
                                           fill_value=np.float32(np.nan)))
        group = zarr.open_group(store=writer.store, mode="r+", zarr_format=3)
        group.create_array(DONE_VAR, shape=grid, chunks=(1, 1), dtype="uint8", fill_value=0,
                           dimension_names=("chunk_row", "chunk_col"), compressors=checked_codecs())
        group.create_array(STATS_VAR, shape=(len(pols), *grid, n_stats), dtype="float64",
                           chunks=(len(pols), 1, 1, n_stats), fill_value=0.0,
                           dimension_names=("pol", "chunk_row", "chunk_col", "stat_field"),
                           compressors=checked_codecs())
        writer.commit(f"create output {scene_id}")
    return OutputScene(archive=archive, scene_id=scene_id, writer=writer)


def finalize_output(out: OutputScene, record: Any, stats: dict[str, Any]) -> None:
    """Attach the record and statistics, clear the in-progress flag, commit and list the scene."""
    out.flush()
    out.attrs().update(json_safe({"statistics": stats, ATTR_RECORD: record.to_dict(),
                                  ATTR_IN_PROGRESS: False}))
    res = out.archive.commit_scene(out.writer, record, message=f"finish output {out.scene_id}")
    if res.status != "added":
        raise ArchiveError(f"scene {out.scene_id!r}: listed meanwhile by another writer "
                           f"({res.status}); use --out-scene to write another id")


def discard_output(archive: Archive, scene_id: str) -> None:
    """Remove unfinished outputs of ``scene_id`` (``--restart``); refuses a catalogued scene."""
    if archive.has_scene(scene_id):
        raise ArchiveError(f"scene {scene_id!r}: is complete and catalogued; not discarding it")
    for intent in archive.intents():
        if intent.get("scene_id") == scene_id and intent.get("kind") == KIND_OUTPUT:
            archive.discard_location(str(intent["location"]))
