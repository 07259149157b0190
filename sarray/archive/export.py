"""Getting scenes out of the archive: Cloud-Optimised GeoTIFF and dB quicklook PNG."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sarray.archive.layout import DIM_X, DIM_Y, VAR_BACKSCATTER
from sarray.archive.location import is_s3_url, s3_destination, upload_file
from sarray.archive.radiometry import to_db
from sarray.archive.store import Archive
from sarray.errors import ConfigError


def export_cog(archive: Archive, scene_id: str, out: str | Path) -> Path | str:
    """Write a scene as a COG with its georeferencing (transform or GCPs) via rioxarray, to a
    local path or to ``s3://bucket/key.tif`` (built locally, then uploaded whole: the object
    never exists half-written; the bucket is checked before the work).

    Band descriptions carry the polarisation labels; the archive's units are in the tags.
    """
    check_suffix(out, (".tif", ".tiff"))
    if not is_s3_url(out):
        return _export_cog(archive, scene_id, Path(out))
    loc = s3_destination(str(out), what="out")
    with tempfile.TemporaryDirectory(prefix="sarray-cog-") as tmp:
        local = _export_cog(archive, scene_id, Path(tmp) / Path(loc.prefix).name)
        return upload_file(local, loc, what="out")


def check_suffix(out: str | Path, suffixes: tuple[str, ...], what: str = "out") -> None:
    """Refuse a path or URL ``out`` (the option ``what``) that does not end in ``suffixes``."""
    if not os.fspath(out).lower().endswith(suffixes):
        raise ConfigError(f"`{what}` ({out}) must end in {' or '.join(suffixes)}")


def _export_cog(archive: Archive, scene_id: str, out: Path) -> Path:
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    ds = archive.open_scene(scene_id)
    # Without the x/y coordinates rioxarray takes the exact GeoTransform attribute instead of
    # recomputing a transform from rounded pixel-centre coordinates.
    arr = ds[VAR_BACKSCATTER].drop_vars([DIM_X, DIM_Y], errors="ignore")
    arr = arr.assign_attrs(
        long_name=tuple(str(p) for p in arr["pol"].values),
        units=ds.attrs.get("units"),
        scene_id=scene_id,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    # rioxarray writes the pixels and georeferencing (GCPs included) to a tiled GTiff; GDAL's COG
    # driver then copies it with overviews (writing COG directly drops GCPs).
    staging = out.with_name(f".{out.name}.gtiff.tmp")
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        arr.rio.to_raster(staging, driver="GTiff", tiled=True, nodata=np.nan, BIGTIFF="IF_SAFER")
        from rasterio.shutil import copy as rio_copy

        rio_copy(staging, tmp, driver="COG", compress="DEFLATE", predictor=3, BIGTIFF="IF_SAFER")
        tmp.replace(out)
    finally:
        staging.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return out


def render_quicklook(
    archive: Archive, scene_id: str, *, max_px: int = 1024, pols: tuple[str, ...] | None = None
) -> np.ndarray:
    """A uint8 dB image of a scene: one grey panel per polarisation, side by side.

    The scene is read with a stride so that the longest side is at most ``max_px``; each panel
    is stretched between its 2nd and 98th dB percentiles.
    """
    ds = archive.open_scene(scene_id)
    arr = ds[VAR_BACKSCATTER]
    if pols:
        unknown = [p for p in pols if p not in arr["pol"].values]
        if unknown:
            raise ConfigError(
                f"`pols` ({','.join(unknown)}) not in scene {scene_id} "
                f"(has {','.join(map(str, arr['pol'].values))})"
            )
        arr = arr.sel(pol=list(pols))
    h, w = arr.shape[1:]
    step = max(1, math.ceil(max(h, w) / max_px))
    small = arr[:, ::step, ::step].values.astype(np.float64)
    db = to_db(small, units=ds.attrs["units"], quantity=ds.attrs.get("quantity", "unknown"))
    return np.concatenate([stretch_db(panel) for panel in db], axis=1)


def stretch_db(db: np.ndarray) -> np.ndarray:
    """Map dB values to uint8 between the 2nd and 98th percentiles; NaN becomes black."""
    finite = db[np.isfinite(db)]
    if finite.size == 0:
        return np.zeros(db.shape, np.uint8)
    lo, hi = np.percentile(finite, [2, 98])
    scaled = (db - lo) / max(hi - lo, 1e-6)
    return (np.nan_to_num(np.clip(scaled, 0, 1), nan=0.0) * 255).astype(np.uint8)


def save_png(image: np.ndarray, out: str | Path) -> Path | str:
    """Write a uint8 array (H, W) or (H, W, 3) as PNG, to a local path or ``s3://bucket/key.png``."""
    from PIL import Image

    if is_s3_url(out):
        loc = s3_destination(str(out), what="out")
        with tempfile.TemporaryDirectory(prefix="sarray-png-") as tmp:
            local = Path(tmp) / "quicklook.png"
            Image.fromarray(image).save(local)
            return upload_file(local, loc, what="out")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out)
    return out


def write_quicklook(archive: Archive, scene_id: str, out: str | Path, **kw: Any) -> Path | str:
    """Render and save a quicklook PNG (see :func:`render_quicklook`)."""
    check_suffix(out, (".png",))
    if is_s3_url(out):
        s3_destination(str(out), what="out")  # before the rendering
    return save_png(render_quicklook(archive, scene_id, **kw), out)
