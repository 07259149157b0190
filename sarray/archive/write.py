"""Writing one scene as a Zarr v3 group: the lazy write graph and its statistics.

The statistics are computed in the same dask pass as the write, from the same read tasks, so
each source window is read once.
"""

from __future__ import annotations

from pathlib import Path
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

# Per-chunk partial sums, in this order, per polarisation.
_FIELDS = ("n", "sum", "sumsq", "min", "max", "amp_sum", "amp_sumsq", "db_n", "db_sum", "db_sumsq")


def _block_stats(block: np.ndarray, units: str, quantity: str) -> np.ndarray:
    out = np.zeros((block.shape[0], 1, 1, len(_FIELDS)), dtype=np.float64)
    for p in range(block.shape[0]):
        v = block[p]
        v = v[np.isfinite(v)].astype(np.float64)
        if v.size == 0:
            out[p, 0, 0, 3], out[p, 0, 0, 4] = np.inf, -np.inf
            continue
        amp = to_amplitude(v, units=units, quantity=quantity)
        db = to_db(v, units=units, quantity=quantity)
        db = db[np.isfinite(db)]
        out[p, 0, 0] = (
            v.size, v.sum(), (v * v).sum(), v.min(), v.max(),
            amp.sum(), (amp * amp).sum(), db.size, db.sum(), (db * db).sum(),
        )
    return out


def combine_stats(parts: np.ndarray, pols: tuple[str, ...], total_px: int) -> dict[str, dict[str, float]]:
    """Reduce per-chunk partials (pol, ny, nx, field) into per-polarisation statistics."""
    stats: dict[str, dict[str, float]] = {}
    for p, pol in enumerate(pols):
        f = {name: parts[p, :, :, i] for i, name in enumerate(_FIELDS)}
        n = float(f["n"].sum())
        if n == 0:
            stats[pol] = {"valid_fraction": 0.0}
            continue
        mean = float(f["sum"].sum() / n)
        amp_mean = float(f["amp_sum"].sum() / n)
        db_n = float(f["db_n"].sum())
        db_mean = float(f["db_sum"].sum() / db_n) if db_n else float("nan")
        stats[pol] = {
            "valid_fraction": n / total_px,
            "mean": mean,
            "std": float(np.sqrt(max(f["sumsq"].sum() / n - mean * mean, 0.0))),
            "min": float(f["min"].min()),
            "max": float(f["max"].max()),
            "amplitude_mean": amp_mean,
            "amplitude_std": float(np.sqrt(max(f["amp_sumsq"].sum() / n - amp_mean**2, 0.0))),
            "db_mean": db_mean,
            "db_std": float(np.sqrt(max(f["db_sumsq"].sum() / db_n - db_mean**2, 0.0)))
            if db_n
            else float("nan"),
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
    return ds


def stage_scene_graph(
    data: Any,
    pols: tuple[str, ...],
    georef: Any,
    units: str,
    quantity: str,
    path: Path,
    layout: ArchiveLayout,
) -> tuple[Any, Any]:
    """Lazily write ``data`` as a standalone Zarr v3 group at ``path``.

    Returns:
        (write, stats_parts): the delayed write and the dask array of per-chunk statistics;
        compute them together with ``dask.compute`` so that the source is read once.
    """
    import dask.array as dsa

    ds = build_dataset(data, pols, georef)
    c = layout.chunk_px
    enc: dict[str, Any] = {"chunks": (1, c, c)}
    if layout.shard_px:
        enc["shards"] = (1, layout.shard_px, layout.shard_px)
    write = ds.to_zarr(
        str(path), mode="w-", zarr_format=3, consolidated=False, compute=False,
        encoding={VAR_BACKSCATTER: enc},
    )
    nyb, nxb = len(data.chunks[1]), len(data.chunks[2])
    parts = dsa.map_blocks(
        _block_stats, data, units, quantity,
        chunks=((data.shape[0],), (1,) * nyb, (1,) * nxb, (len(_FIELDS),)),
        new_axis=[3], dtype=np.float64, meta=np.empty((0, 0, 0, 0), np.float64),
    )
    return write, parts
