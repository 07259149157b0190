"""Writing one scene as a Zarr v3 group: the lazy write graph and its statistics.

The statistics are computed in the same dask pass as the write, from the same read tasks, so
each source window is read once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sarray.archive.layout import (
    DIM_POL,
    DIM_X,
    DIM_Y,
    VAR_BACKSCATTER,
    VAR_SPATIAL_REF,
    ArchiveLayout,
)
from sarray.archive.radiometry import to_amplitude, to_db

# Per-chunk partial statistics, in this order, per polarisation: count, mean and sum of squared
# deviations (merged with Chan's parallel formula), min, max. The amplitude and dB moments are
# estimated on a 1-in-16 pixel subsample (every 4th row and column): they only feed
# normalisation and quicklooks, and a full pass of sqrt/log10 would cost more than the write.
STAT_FIELDS = ("n", "mean", "m2", "min", "max", "amp_n", "amp_mean", "amp_m2", "db_n", "db_mean", "db_m2")
SUBSAMPLE = 4


def _finite(v: np.ndarray) -> np.ndarray:
    finite = np.isfinite(v)
    return v if finite.all() else v[finite]


def _moments(v: np.ndarray) -> tuple[float, float, float]:
    """(count, mean, sum of squared deviations) of ``v`` (all finite)."""
    n = v.size
    if n == 0:
        return 0.0, 0.0, 0.0
    mean = float(v.sum(dtype=np.float64)) / n
    d = (v - np.asarray(mean, dtype=v.dtype)).ravel()
    return float(n), mean, float(np.dot(d, d))


def block_stats(block: np.ndarray, units: str, quantity: str) -> np.ndarray:
    """Partial statistics (pol, 1, 1, STAT_FIELDS) of one (pol, y, x) block; merge them with
    :func:`combine_stats`. Used per chunk by ingest and by the translate engine."""
    out = np.zeros((block.shape[0], 1, 1, len(STAT_FIELDS)), dtype=np.float64)
    for p in range(block.shape[0]):
        v = _finite(block[p])
        if v.size == 0:
            out[p, 0, 0, :5] = (0, 0, 0, np.inf, -np.inf)
            continue
        sub = block[p, ::SUBSAMPLE, ::SUBSAMPLE].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            amp = _moments(_finite(to_amplitude(sub, units=units, quantity=quantity)))
            db = _moments(_finite(to_db(sub, units=units, quantity=quantity)))
        out[p, 0, 0] = (*_moments(v), v.min(), v.max(), *amp, *db)
    return out


def _merge(n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> tuple[float, float, float]:
    """Merge per-chunk (count, mean, M2) into the total (count, mean, std)."""
    total = float(n.sum())
    if total == 0:
        return 0.0, float("nan"), float("nan")
    mu = float((n * mean).sum() / total)
    m2_all = float(m2.sum() + (n * (mean - mu) ** 2).sum())
    return total, mu, float(np.sqrt(max(m2_all / total, 0.0)))


def combine_stats(parts: np.ndarray, pols: tuple[str, ...], total_px: int) -> dict[str, dict[str, float]]:
    """Reduce per-chunk partials (pol, ny, nx, field) into per-polarisation statistics."""
    stats: dict[str, dict[str, float]] = {}
    for p, pol in enumerate(pols):
        f = {name: parts[p, :, :, i].ravel() for i, name in enumerate(STAT_FIELDS)}
        n, mean, std = _merge(f["n"], f["mean"], f["m2"])
        if n == 0:
            stats[pol] = {"valid_fraction": 0.0}
            continue
        _, amp_mean, amp_std = _merge(f["amp_n"], f["amp_mean"], f["amp_m2"])
        _, db_mean, db_std = _merge(f["db_n"], f["db_mean"], f["db_m2"])
        stats[pol] = {
            "valid_fraction": n / total_px,
            "mean": mean,
            "std": std,
            "min": float(f["min"].min()),
            "max": float(f["max"].max()),
            "amplitude_mean": amp_mean,
            "amplitude_std": amp_std,
            "db_mean": db_mean,
            "db_std": db_std,
        }
    return stats


def build_dataset(
    data: Any,
    pols: tuple[str, ...],
    georef: Any,
) -> Any:
    """Wrap a (pol, y, x) dask array as an ``xarray.Dataset`` with rioxarray georeferencing.

    North-up grids also get 1-D ``x``/``y`` pixel-centre coordinates; rotated grids cannot have
    them, and for every grid the exact transform is the ``GeoTransform`` attribute of
    ``spatial_ref`` (GDAL order, written with ``repr`` precision, so it round-trips exactly).
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr
    from affine import Affine

    da_ = xr.DataArray(data, dims=(DIM_POL, DIM_Y, DIM_X), coords={DIM_POL: np.array(list(pols), dtype=object)},
                       name=VAR_BACKSCATTER)
    ds = xr.Dataset({VAR_BACKSCATTER: da_})
    if georef.crs_wkt is not None:
        ds = ds.rio.write_crs(georef.crs_wkt, grid_mapping_name=VAR_SPATIAL_REF)
    if georef.transform is not None:
        t = Affine.from_gdal(*georef.transform)
        ds = ds.rio.write_transform(t, grid_mapping_name=VAR_SPATIAL_REF)
        if t.b == 0 and t.d == 0:
            h, w = data.shape[1:]
            ds = ds.assign_coords(
                {DIM_X: t.c + t.a * (np.arange(w) + 0.5), DIM_Y: t.f + t.e * (np.arange(h) + 0.5)}
            )
    elif georef.gcps:
        from rasterio.control import GroundControlPoint

        gcps = [GroundControlPoint(row=g[0], col=g[1], x=g[2], y=g[3], z=g[4]) for g in georef.gcps]
        ds = ds.rio.write_gcps(gcps, georef.crs_wkt, grid_mapping_name=VAR_SPATIAL_REF)
    if georef.crs_wkt is not None:
        ds[VAR_BACKSCATTER].attrs["grid_mapping"] = VAR_SPATIAL_REF
    from sarray.archive.layout import json_safe

    for var in ds.variables.values():  # Zarr metadata must be strict JSON (no NaN)
        var.attrs = json_safe(dict(var.attrs))
    return ds


def scene_encoding(ds: Any, layout: ArchiveLayout, **backscatter: Any) -> dict[str, Any]:
    """Zarr encoding of every variable of a scene: chunks (and shards) of ``backscatter``, and a
    crc32c checksum after the compressor on every array (see :mod:`.integrity`)."""
    from sarray.archive.integrity import checked_codecs

    c = layout.chunk_px
    enc: dict[str, Any] = {name: {"compressors": checked_codecs()} for name in ds.variables
                           if ds[name].ndim}
    bs: dict[str, Any] = {"chunks": (1, c, c), "compressors": checked_codecs(), **backscatter}
    if layout.shard_px:
        bs["shards"] = (1, layout.shard_px, layout.shard_px)
    enc[VAR_BACKSCATTER] = bs
    return enc


def create_scene_group(data: Any, pols: tuple[str, ...], georef: Any, store: Any,
                       layout: ArchiveLayout) -> None:
    """Write the scene's group, its coordinates, ``spatial_ref`` and the empty backscatter array
    (metadata only) into ``store``; the pixels are written by :func:`wave_graph`."""
    ds = build_dataset(data, pols, georef)
    # Metadata, coordinates and spatial_ref; the returned delayed (the pixels) is not computed.
    ds.to_zarr(store, mode="w-", zarr_format=3, consolidated=False, compute=False,
               encoding=scene_encoding(ds, layout))


def wave_rows(height: int, width: int, layout: ArchiveLayout,
              wave_px: int | None = None) -> list[tuple[int, int]]:
    """Row ranges ``[(y0, y1), ...]`` of the waves a scene is written in: whole write-block
    rows (chunks or shards: no two waves touch one), about ``wave_px`` pixels each."""
    from sarray.config import INGEST_WAVE_MPX

    block = layout.write_block_px
    wave_px = wave_px or INGEST_WAVE_MPX * 1_000_000
    rows = block * max(1, wave_px // (block * max(width, 1)))
    return [(y0, min(height, y0 + rows)) for y0 in range(0, height, rows)]


def wave_graph(band: Any, y0: int, store: Any, units: str, quantity: str) -> tuple[Any, Any]:
    """The lazy region write of ``band`` (the scene's rows ``y0:y0 + len``) into the scene
    created by :func:`create_scene_group` in ``store``, and its per-chunk statistics (pol,
    block rows, block cols, field). Compute both in one ``dask.compute`` (one read)."""
    import dask.array as dsa
    import xarray as xr

    y1 = y0 + band.shape[1]
    # The pixels alone: the group's coordinates and attributes were written with its metadata.
    pixels = xr.Dataset({VAR_BACKSCATTER: ((DIM_POL, DIM_Y, DIM_X), band)})
    write = pixels.to_zarr(store, mode="r+", zarr_format=3, consolidated=False, compute=False,
                           region={DIM_POL: slice(None), DIM_Y: slice(y0, y1), DIM_X: slice(None)})
    nyb, nxb = len(band.chunks[1]), len(band.chunks[2])
    stats = dsa.map_blocks(
        block_stats, band, units, quantity,
        chunks=((band.shape[0],), (1,) * nyb, (1,) * nxb, (len(STAT_FIELDS),)),
        new_axis=[3], dtype=np.float64, meta=np.empty((0, 0, 0, 0), np.float64),
    )
    return write, stats


def stage_scene_graph(
    data: Any,
    pols: tuple[str, ...],
    georef: Any,
    units: str,
    quantity: str,
    store: Any,
    layout: ArchiveLayout,
    *,
    wave_px: int | None = None,
) -> list[tuple[Any, Any]]:
    """Create the scene as the root group of ``store`` (a scene repository's session) and return
    the lazy writes of its pixels, in waves of whole write-block rows (:func:`wave_rows`).

    Compute the waves one after another, each with ``dask.compute(write, stats)`` so that the
    source is read once: memory then holds one wave of the source, whatever the scene's length.

    Args:
        wave_px: output pixels (per polarisation) per wave; at least one block row. None takes
            :data:`sarray.config.INGEST_WAVE_MPX`.

    Returns:
        ``[(write, stats_parts), ...]`` top to bottom (see :func:`wave_graph`); concatenate the
        computed parts along axis 1 for :func:`combine_stats`.
    """
    create_scene_group(data, pols, georef, store, layout)
    return [wave_graph(data[:, y0:y1], y0, store, units, quantity)
            for y0, y1 in wave_rows(*data.shape[1:], layout, wave_px)]
