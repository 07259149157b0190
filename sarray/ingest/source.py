"""A scene ready to be written: lazy pixels plus everything the archive records about them."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

# Metres per degree of latitude, and of longitude at the equator (WGS 84, mean values). Good to
# better than 1% for the spacing figure that labels a scene; geometry itself stays exact.
_M_PER_DEG_LAT = 111_132.954
_M_PER_DEG_LON = 111_319.491


@dataclass(frozen=True, kw_only=True)
class Georef:
    """Georeferencing of a scene: an exact affine transform, or GCPs, or nothing.

    Args:
        crs_wkt: WKT of the CRS of the transform or of the GCPs; None when ungeoreferenced.
        transform: GDAL-ordered affine coefficients (c, a, b, f, d, e) of pixel corners.
        gcps: list of (row, col, x, y, z) ground control points in ``crs_wkt``.
    """

    crs_wkt: str | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    gcps: tuple[tuple[float, float, float, float, float], ...] | None = None

    @property
    def kind(self) -> str:
        if self.transform is not None:
            return "affine"
        if self.gcps:
            return "gcps"
        return "none"


@dataclass(kw_only=True)
class SceneSource:
    """A scene ready for the archive: the dask array and its metadata.

    ``data`` is a lazy float32 dask array (pol, y, x) whose chunks are aligned to the archive's
    write blocks, so each task reads one window of the source and writes whole chunks.
    """

    scene_id: str
    data: Any  # dask.array.Array
    pols: tuple[str, ...]
    units: str
    quantity: str
    georef: Georef
    spacing_m: tuple[float, float] | None
    sensor: str
    platform: str
    acquisition_time: str | None
    source_files: tuple[str, ...]
    calibration: str = "none"
    extra_attrs: dict[str, Any] = field(default_factory=dict)


def default_scene_id(stem: str, *parts: str | None, window: Any = None) -> str:
    """The scene id made from a file stem, with the selection that tells scenes of one file
    apart (swath, burst, frequency, window), so that two bursts or windows never share an id."""
    from sarray.archive.layout import sanitize_scene_id

    bits = [stem, *(p for p in parts if p)]
    if window is not None:
        bits.append(f"r{window.row}_c{window.col}_{window.height}x{window.width}")
    return sanitize_scene_id("_".join(bits))


class S3Path(PurePosixPath):
    """An ``s3://bucket/key`` input: names like a path (``.name``, ``.stem``), prints and opens
    (rasterio) as its URL."""

    def __str__(self) -> str:
        return "s3://" + super().__str__().removeprefix("s3:/").lstrip("/")

    def resolve(self) -> S3Path:
        return self


def input_path(text: str | Path) -> Path | S3Path:
    """A local input path, or an :class:`S3Path` for ``s3://`` URLs."""
    return S3Path(text) if str(text).startswith("s3://") else Path(text)


def _digest(p: Path | S3Path) -> bytes:
    if isinstance(p, S3Path):
        from sarray.archive.location import s3_object_sha256

        return bytes.fromhex(s3_object_sha256(str(p)))
    with open(p, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def sha256_files(paths: list[Path]) -> str:
    """SHA-256 of one file (local or s3://), or of the sorted (name, digest) list of several."""
    if len(paths) == 1 and (isinstance(paths[0], S3Path) or paths[0].is_file()):
        return _digest(paths[0]).hex()
    outer = hashlib.sha256()
    for p in sorted(paths, key=str):
        outer.update(p.name.encode() + b"\0" + _digest(p))
    return outer.hexdigest()


def parse_time_from_name(name: str) -> str | None:
    """Find an acquisition time in a file name: ``20210401T052623`` or ``_20150403_``."""
    m = re.search(r"(\d{8})[Tt](\d{6})", name)
    if m:
        return dt.datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").isoformat()
    m = re.search(r"(?:^|[_-])((?:19|20)\d{6})(?:[_-]|$)", name)
    if m:
        try:
            return dt.datetime.strptime(m.group(1), "%Y%m%d").isoformat()
        except ValueError:
            return None
    return None


def infer_sensor(name: str) -> str:
    """Sentinel-1 from ESA file naming (``S1A_``, ``s1b-``); ``unknown`` otherwise."""
    m = re.match(r"^s1([abcd])[_-]", name, flags=re.IGNORECASE)
    if m:
        return f"Sentinel-1{m.group(1).upper()}"
    if re.search(r"(?:^|[_-])s1(?:[_-]|hand)", name, flags=re.IGNORECASE) or "sentinel" in name.lower():
        return "Sentinel-1"
    return "unknown"


def _is_geographic(crs_wkt: str) -> bool:
    from pyproj import CRS

    return bool(CRS.from_wkt(crs_wkt).is_geographic)


def _linear_factor(crs_wkt: str) -> float:
    from pyproj import CRS

    crs = CRS.from_wkt(crs_wkt)
    axis = crs.axis_info[0] if crs.axis_info else None
    return float(axis.unit_conversion_factor) if axis is not None else 1.0


def spacing_from_transform(
    transform: tuple[float, ...], crs_wkt: str, shape: tuple[int, int]
) -> tuple[float, float]:
    """(y, x) pixel spacing in metres from GDAL coefficients; exact for projected CRSs."""
    c, a, b, f, d, e = transform
    dx = math.hypot(a, d)  # length of one column step
    dy = math.hypot(b, e)  # length of one row step
    if _is_geographic(crs_wkt):
        lat = f + d * shape[1] / 2 + e * shape[0] / 2
        coslat = math.cos(math.radians(lat))
        dx = math.hypot(a * _M_PER_DEG_LON * coslat, d * _M_PER_DEG_LAT)
        dy = math.hypot(b * _M_PER_DEG_LON * coslat, e * _M_PER_DEG_LAT)
    else:
        k = _linear_factor(crs_wkt)
        dx, dy = dx * k, dy * k
    return (round(dy, 6), round(dx, 6))


def edge_points(shape: tuple[int, int], n: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of ``n`` points along each of a raster's four edges, corners included: where
    a footprint's extremes can be, whatever the rotation or the warp."""
    h, w = shape
    t = np.linspace(0.0, 1.0, n)
    cols = np.concatenate([t * w, np.full_like(t, w), t * w, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), t * h])
    return rows, cols


def bbox_from_transform(
    transform: tuple[float, ...], crs_wkt: str, shape: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Lon/lat bounding box of the raster footprint (edges sampled, so rotation is handled)."""
    from rasterio.warp import transform as warp_transform

    c, a, b, f, d, e = transform
    rows, cols = edge_points(shape)
    xs = c + a * cols + b * rows
    ys = f + d * cols + e * rows
    lon, lat = warp_transform(crs_wkt, "EPSG:4326", xs.tolist(), ys.tolist())
    return (float(min(lon)), float(min(lat)), float(max(lon)), float(max(lat)))


def bbox_from_gcps(
    gcps: tuple[tuple[float, ...], ...], crs_wkt: str, shape: tuple[int, int] | None = None
) -> tuple[float, float, float, float]:
    """Lon/lat bounding box of a scene georeferenced by GCPs.

    With ``shape`` (the scene's rows and columns), the box is that of the scene's own pixels:
    lon/lat are interpolated from the GCPs (linear over their triangulation, nearest outside
    it) along the scene's four edges. A window or burst of a swath keeps the swath's whole
    geolocation grid, so the box of every GCP would be the swath's, up to ~100 km away.
    """
    from rasterio.warp import transform as warp_transform

    xs = [g[2] for g in gcps]
    ys = [g[3] for g in gcps]
    lon, lat = (np.asarray(v, dtype=np.float64) for v in warp_transform(crs_wkt, "EPSG:4326", xs, ys))
    if shape is None or len(gcps) < 3:
        return (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))
    from scipy.interpolate import griddata

    edge = np.stack(edge_points(shape), axis=1)
    pts = np.array([(g[0], g[1]) for g in gcps], dtype=np.float64)
    out = []
    for v in (lon, lat):
        val = griddata(pts, v, edge, method="linear")
        miss = ~np.isfinite(val)
        if miss.any():
            val[miss] = griddata(pts, v, edge[miss], method="nearest")
        out.append(val)
    return (float(out[0].min()), float(out[1].min()), float(out[0].max()), float(out[1].max()))


def spacing_from_gcps(
    gcps: tuple[tuple[float, ...], ...], crs_wkt: str, shape: tuple[int, int]
) -> tuple[float, float]:
    """Approximate (y, x) spacing in metres from the least-squares affine fit of the GCPs."""
    from rasterio.control import GroundControlPoint
    from rasterio.transform import from_gcps

    fit = from_gcps([GroundControlPoint(row=g[0], col=g[1], x=g[2], y=g[3]) for g in gcps])
    return spacing_from_transform(fit.to_gdal(), crs_wkt, shape)
