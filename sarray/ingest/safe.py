"""Sentinel-1 SAFE products (GRD and SLC) through xarray-sentinel.

Calibration uses the product's own LUTs via :func:`xarray_sentinel.calibrate_intensity`, so the
archive holds sigma0 / beta0 / gamma0 intensity exactly as xarray-sentinel computes it, applied
block by block (:func:`calibrate_blocks`) so that memory does not grow with the product. The
georeferencing is the annotation's geolocation grid, stored as GCPs (EPSG:4326): the
measurement TIFFs of some products claim a CRS with an identity transform, which is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sarray.errors import IngestError, first_line
from sarray.ingest.config import IngestConfig
from sarray.ingest.product import open_safe_files
from sarray.ingest.source import Georef, SceneSource, default_scene_id

# xarray-sentinel's names of the calibration LUTs.
_LUTS = {"sigma0": "sigmaNought", "beta0": "betaNought", "gamma0": "gamma"}
_ROW_DIMS = ("line", "azimuth_time")
# Read-and-calibrate bands per archive write block (see open_safe).
SAFE_BANDS_PER_BLOCK = 4
_COL_DIMS = ("pixel", "ground_range", "slant_range_time")


def _wgs84_wkt() -> str:
    from pyproj import CRS

    return CRS.from_epsg(4326).to_wkt()


def open_safe(path: str | Path, config: IngestConfig) -> SceneSource:
    """Describe one SAFE product as a scene (lazy; calibration is part of the dask graph).

    Args:
        path: the ``*.SAFE`` folder (or its ``manifest.safe``), or its ``.SAFE.zip``; local
            or at ``s3://`` (see :mod:`sarray.ingest.product`).
        config: ``calibration``, ``swath``, ``burst`` and ``window`` are used here.

    Raises:
        IngestError: missing product, unknown swath, no calibration annotation, bad window.
    """
    import dask.array as da
    import xarray as xr
    import xarray_sentinel as xs

    files = open_safe_files(path)
    path = files.given  # what messages name
    product, fs_kw = files.xs_args()
    try:
        root = xs.open_sentinel1_dataset(product, **fs_kw)
    except Exception as e:
        raise IngestError(f"{path}: cannot read the SAFE manifest ({first_line(e)})") from None
    attrs = root.attrs
    swaths = list(attrs.get("swaths", []))
    swath = config.swath or (swaths[0] if swaths else None)
    if swath not in swaths:
        raise IngestError(f"{path}: swath {swath!r} not in product (has {', '.join(swaths)})")
    pols = _available_pols(files.measurement_names(), swath)
    if not pols:
        raise IngestError(f"{path}: no measurement TIFF for swath {swath} in its measurement folder")
    if config.pols:
        missing = [p for p in config.pols if p not in pols]
        if missing:
            raise IngestError(f"{path}: polarisation {missing[0]} not in swath {swath} (has {pols})")
        pols = list(config.pols)
    block = config.layout.write_block_px
    # Lines per read: the measurement TIFFs are one-line strips, so a band of whole lines decodes
    # each strip once; a quarter of a write block keeps a band of a 25k-pixel-wide swath near
    # 50 MB of complex DN, whatever the product's length.
    read_rows = max(1, block // SAFE_BANDS_PER_BLOCK)
    is_slc = "SLC" in files.name.upper()[:20]

    # 1. Per polarisation: open lazily, crop burst and window, calibrate.
    arrays = []
    first: Any = None
    for pol in pols:
        group = f"{swath}/{pol}"
        try:
            # Measurement TIFFs are stored in one-line strips: read bands of `block` whole lines
            # (each strip decoded once), split into square blocks below. Explicit chunks:
            # `chunks={}` gives chunks that calibrate_intensity rejects.
            ds = xr.open_dataset(product, engine="sentinel-1", group=group, **fs_kw,
                                 chunks={**{d: read_rows for d in _ROW_DIMS}, **{d: -1 for d in _COL_DIMS}})
        except Exception as e:
            raise IngestError(f"{path}: cannot open group {group} ({first_line(e)})") from None
        if config.burst is not None:
            if not is_slc:
                raise IngestError(f"{path}: --burst applies to SLC products only")
            n_bursts = int(ds.attrs.get("number_of_bursts", 0))
            if not 0 <= config.burst < n_bursts:
                raise IngestError(f"{path}: burst {config.burst} out of range (0..{n_bursts - 1})")
            ds = xs.crop_burst_dataset(ds, burst_index=config.burst)
        ds = _apply_window(ds, config, path)
        meas = ds["measurement"]
        # Calibrate in pieces of `block` columns of each band: the LUT interpolation's
        # temporaries (coordinates, weights, float64 values) then stay a few MB per task.
        meas = meas.chunk({d: (read_rows if d in _ROW_DIMS else block) for d in meas.dims})
        if config.calibration == "none":
            values = np.abs(meas) if is_slc else meas
        else:
            try:
                cal = xs.open_sentinel1_dataset(product, group=f"{group}/calibration", **fs_kw)
            except Exception as e:
                raise IngestError(
                    f"{path}: no calibration annotation for {group} ({first_line(e)}); "
                    "ingest DN with --calibration none"
                ) from None
            values = calibrate_blocks(meas, cal[_LUTS[config.calibration]].load())
        arrays.append(values.data.astype(np.float32))
        first = first if first is not None else ds
    data = da.stack(arrays, axis=0).rechunk((len(pols), block, block))

    # 2. Georeferencing: the annotation's geolocation grid, in the cropped pixel frame.
    gcp = xs.open_sentinel1_dataset(product, group=f"{swath}/{pols[0]}/gcp", **fs_kw)
    line0 = int(first["line"].values[0])
    pixel0 = int(first["pixel"].values[0])
    lines = gcp["line"].values
    pixels = gcp["pixel"].values
    gcps = tuple(
        (float(lines[i] - line0), float(pixels[j] - pixel0), float(gcp["longitude"].values[i, j]),
         float(gcp["latitude"].values[i, j]), float(gcp["height"].values[i, j]))
        for i in range(len(lines)) for j in range(len(pixels))
    )
    az = float(first.attrs.get("azimuth_pixel_spacing", np.nan))
    rg = float(first.attrs.get("range_pixel_spacing", np.nan))
    spacing = (round(az, 6), round(rg, 6)) if np.isfinite(az) and np.isfinite(rg) else None
    calibrated = config.calibration != "none"
    return SceneSource(
        # The swath when the product has several, the burst and the window: one id per selection.
        scene_id=config.scene_id or default_scene_id(
            files.name.removesuffix(".SAFE"), swath if len(swaths) > 1 else None,
            f"b{config.burst}" if config.burst is not None else None, window=config.window),
        data=data,
        pols=tuple(pols),
        units="linear" if calibrated else "dn",
        quantity="intensity" if calibrated else "amplitude",
        georef=Georef(crs_wkt=_wgs84_wkt(), gcps=gcps),
        spacing_m=spacing,
        sensor=config.sensor or f"Sentinel-1{attrs.get('number', '')}",
        platform=config.platform,
        acquisition_time=config.acquisition_time or attrs.get("start_time"),
        source_files=(files.source,),
        calibration=config.calibration,
        extra_attrs={
            "safe_swath": swath,
            "safe_burst": config.burst,
            "safe_product_type": attrs.get("product_type"),
            "safe_mode": attrs.get("mode"),
            "safe_pass": attrs.get("pass"),
            "safe_orbit_number": attrs.get("orbit_number"),
        },
    )


def _calibrate_block(dn: Any, lut: Any) -> Any:
    """xarray-sentinel's calibration of one block of digital numbers (float32 intensity)."""
    import xarray_sentinel as xs

    return xs.calibrate_intensity(dn, lut).astype(np.float32)


def calibrate_blocks(meas: Any, lut: Any) -> Any:
    """Calibrated intensity of a lazy measurement, block by block.

    ``xarray_sentinel.calibrate_intensity`` on the whole measurement interpolates the LUT onto
    every pixel of the swath at once, in memory, before the graph runs: a whole SLC or GRD swath
    is billions of float64 values (killed at 23 GB on a stripmap SLC). Here each block of
    ``meas`` is calibrated by that same function with its own ``line`` / ``pixel`` coordinates,
    so the LUT is interpolated onto one block at a time and the values are the same (linear
    interpolation is pointwise; a constant LUT takes the same shortcut per block).
    """
    import xarray as xr

    return xr.map_blocks(_calibrate_block, meas, kwargs={"lut": lut},
                         template=abs(meas).astype(np.float32))


def _available_pols(names: list[str], swath: str) -> list[str]:
    """Polarisations of ``swath`` whose measurement file is present, from the file names
    (``s1b-iw1-slc-vv-...tiff``: mission, swath, product, pol, ...)."""
    found = set()
    for name in names:
        if not name.endswith(".tiff"):
            continue
        parts = name.split("-")
        if len(parts) > 3 and parts[1].upper() == swath.upper():
            found.add(parts[3].upper())
    order = ("HH", "HV", "VV", "VH")
    return sorted(found, key=lambda p: order.index(p) if p in order else 9)


def _apply_window(ds: Any, config: IngestConfig, path: str | Path) -> Any:
    if config.window is None:
        return ds
    w = config.window
    ydim, xdim = ds["measurement"].dims
    h, wd = ds.sizes[ydim], ds.sizes[xdim]
    if w.row + w.height > h or w.col + w.width > wd:
        raise IngestError(
            f"{path}: window rows {w.row}:{w.row + w.height}, cols {w.col}:{w.col + w.width} "
            f"exceeds the measurement's {h} x {wd}"
        )
    return ds.isel({ydim: slice(w.row, w.row + w.height), xdim: slice(w.col, w.col + w.width)})
