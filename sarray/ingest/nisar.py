"""NISAR L1 RSLC and L2 GSLC products (HDF5, read with h5py; GDAL's HDF5 driver is not needed).

The product's own structure decides what is read, not one file's paths:

- the product group is whichever ``science/<band>/<product>`` holds ``swaths`` (L1: ``RSLC``,
  or ``SLC`` in older products) or ``grids`` (L2: ``GSLC``);
- the frequency (``--frequency A|B``) is ``frequencyA`` / ``frequencyB`` under it, and its
  polarisations are those of ``listOfPolarizations`` that hold a raster;
- pixels are complex64 (or complex128), or the compound ``(r, i)`` of two float16 that
  products use to halve their size.

Radiometry: by specification RSLC and GSLC pixels are complex amplitudes scaled so that
``|z|^2`` is beta0. ``--calibration beta0`` stores that intensity; ``sigma0`` / ``gamma0``
multiply it by the product's ``metadata/calibrationInformation/geometry/{sigma0,gamma0}``
conversion LUT (zero-Doppler time x slant range, interpolated per block) and fail clearly when
the product has none; ``none`` stores the amplitude ``|z|``.

Georeferencing: GSLC grids get their affine transform from ``xCoordinates`` / ``yCoordinates``
and the ``projection`` EPSG code. RSLC swaths get GCPs from ``metadata/geolocationGrid`` (the
layer of the height cube nearest the ellipsoid); when that grid is empty, as in some test
products, the GCPs are geolocated from the product's orbit at zero Doppler on the WGS 84
ellipsoid (terrain height 0: a horizontal error of about the terrain height divided by the
tangent of the incidence angle).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from sarray.archive.layout import POLARISATIONS
from sarray.errors import IngestError
from sarray.ingest.config import IngestConfig
from sarray.ingest.source import (
    Georef,
    S3Path,
    SceneSource,
    default_scene_id,
    spacing_from_gcps,
    spacing_from_transform,
)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
HDF5_SUFFIXES = (".h5", ".hdf5", ".he5", ".nc")
# GDAL's subdataset names: HDF5:"file.h5"://science/LSAR/RSLC/swaths/frequencyA/HH
_SUBDATASET_RE = re.compile(r'^(?:HDF5|NETCDF):"?(?P<path>[^"]+?)"?:(?P<var>/?/.+)$')
# GCPs geolocated per side of an RSLC window when the geolocation grid is empty.
GCP_GRID_N = 11
_WGS84_A = 6378137.0
_WGS84_B = 6356752.314245179


def split_subdataset(text: str) -> tuple[Path, str | None]:
    """``HDF5:"f.h5"://a/b`` -> (``f.h5``, ``/a/b``); any other path -> (path, None)."""
    m = _SUBDATASET_RE.match(str(text))
    if not m:
        return Path(text), None
    return Path(m.group("path")), "/" + m.group("var").lstrip("/")


def is_hdf5_name(text: str) -> bool:
    """An HDF5 file by its name alone (suffix or GDAL subdataset syntax)."""
    return split_subdataset(text)[1] is not None or Path(text).suffix.lower() in HDF5_SUFFIXES


def is_hdf5(path: str | Path) -> bool:
    """An HDF5 file (by its signature, else by its suffix), or a GDAL HDF5 subdataset name."""
    if split_subdataset(str(path))[1] is not None:
        return True
    if str(path).startswith("s3://"):
        return is_hdf5_name(str(path))
    p = Path(path)
    if p.is_file():
        try:
            with open(p, "rb") as f:
                return f.read(8) == HDF5_MAGIC
        except OSError:
            return False
    return p.suffix.lower() in HDF5_SUFFIXES


def _text(v: Any) -> str:
    if isinstance(v, np.ndarray):
        v = v.item() if v.shape == () else (v[0] if v.size else b"")
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return str(v).strip()


def _find_product(f: Any, path: Path) -> tuple[str, str]:
    """(product group path, ``swaths`` | ``grids``): read from the file's own structure."""
    science = f.get("science")
    if science is None:
        raise IngestError(f"{path}: HDF5 file without a /science group: not a NISAR product")
    found = []
    for band in science:
        for product in science[band]:
            group = science[band][product]
            for kind in ("swaths", "grids"):
                if hasattr(group, "keys") and kind in group:
                    found.append((f"science/{band}/{product}", kind))
    if not found:
        raise IngestError(
            f"{path}: no science/<band>/<product>/swaths or /grids group: not an RSLC or GSLC "
            "product (other NISAR products are not imagery sarray ingests)"
        )
    return found[0]


def _epoch(units: str, path: Path, what: str) -> dt.datetime:
    m = re.search(r"since\s+(\S+)[ T](\S+)", units)
    if not m:
        raise IngestError(f"{path}: {what} has units {units!r}, not 'seconds since <date time>'")
    return dt.datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}")


def open_nisar(path_text: str | Path, config: IngestConfig) -> SceneSource:
    """Describe one polarisation stack of a NISAR RSLC / GSLC frequency as a scene (lazy).

    Raises:
        IngestError: missing or unreadable file, no such frequency or polarisation, an unknown
            pixel type, a calibration the product cannot give, a window outside the raster.
    """
    import dask.array as da
    import h5py

    remote = str(path_text).startswith("s3://")
    path, variable = (S3Path(str(path_text)), None) if remote else split_subdataset(str(path_text))
    if remote:
        from sarray.ingest.product import s3_exists, s3_filesystem

        found = s3_exists(s3_filesystem(), str(path).removeprefix("s3://"), str(path))
    else:
        found = path.exists()
    if not found:
        raise IngestError(f"{path}: no such {'object' if remote else 'file'}")
    frequency = config.frequency
    want_pols = config.pols
    if variable is not None:  # a subdataset names the frequency and polarisation
        m = re.search(r"frequency([AB])/(HH|HV|VH|VV|RH|RV|LH|LV)$", variable)
        if not m:
            raise IngestError(f"{path}: subdataset {variable} is not a .../frequency<A|B>/<POL> raster")
        frequency, want_pols = m.group(1), (m.group(2),)
    try:
        f = h5_open(str(path))
    except OSError as e:
        raise IngestError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        product, kind = _find_product(f, path)
        freq_path = f"{product}/{kind}/frequency{frequency}"
        if freq_path not in f:
            have = sorted(k.removeprefix("frequency") for k in f[f"{product}/{kind}"] if k.startswith("frequency"))
            raise IngestError(f"{path}: no frequency {frequency} in {product} (has {', '.join(have)}); "
                              "pick one with --frequency")
        fg = f[freq_path]
        listed = [_text(p) for p in fg["listOfPolarizations"][()]] if "listOfPolarizations" in fg else []
        present = [p for p in (listed or POLARISATIONS) if p in fg and isinstance(fg[p], h5py.Dataset)]
        if not present:
            raise IngestError(
                f"{path}: frequency {frequency} lists polarisations {','.join(listed) or 'none'} "
                f"but holds no raster for them under {freq_path}"
            )
        if want_pols:
            missing = [p for p in want_pols if p not in present]
            if missing:
                raise IngestError(f"{path}: polarisation {missing[0]} not in frequency {frequency} "
                                  f"(has {','.join(present)})")
            present = list(want_pols)
        shapes = {fg[p].shape for p in present}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise IngestError(f"{path}: rasters of frequency {frequency} differ in shape {sorted(shapes)}")
        height, width = next(iter(shapes))
        for p in present:
            _check_dtype(fg[p].dtype, path, f"{freq_path}/{p}")
        w = config.window
        row0, col0, h, wd = (w.row, w.col, w.height, w.width) if w else (0, 0, height, width)
        if row0 + h > height or col0 + wd > width:
            raise IngestError(f"{path}: window rows {row0}:{row0 + h}, cols {col0}:{col0 + wd} "
                              f"exceeds the raster's {height} x {width}")
        ident_path = product.rsplit("/", 1)[0] + "/identification"
        ident = f[ident_path] if ident_path in f else {}
        lut = _calibration_lut(f, product, kind, config.calibration, path)
        if kind == "swaths":
            times, ranges = _swath_axes(f, product, fg, path)
            georef = _swath_georef(f, product, times, ranges, row0, col0, h, wd, ident, path)
            # From the GCPs (the window's own ground spacing; the scene-centre figures of the
            # product can be far off at near range), else the product's scene-centre spacing.
            spacing = spacing_from_gcps(georef.gcps, georef.crs_wkt, (h, wd)) \
                if georef.gcps and len(georef.gcps) >= 3 else _swath_spacing(fg)
            start = _swath_time(f, product, row0, path) if w else None
        else:
            times = ranges = None
            georef = _grid_georef(fg, row0, col0, path)
            spacing = spacing_from_transform(georef.transform, georef.crs_wkt, (h, wd)) \
                if georef.transform else None
            start = None
        mission = _text(ident["missionId"][()]) if "missionId" in ident else ""
        start = start or (_text(ident["zeroDopplerStartTime"][()]) if "zeroDopplerStartTime" in ident else None)
        product_type = _text(ident["productType"][()]) if "productType" in ident else product.rsplit("/", 1)[1]

    reader = _H5Reader(str(path), [f"{freq_path}/{p}" for p in present], (h, wd), (row0, col0),
                       config.calibration, lut, times, ranges)
    block = config.layout.write_block_px
    data = da.from_array(reader, chunks=(len(present), block, block), asarray=False,
                         meta=np.empty((0, 0, 0), np.float32), name=f"nisar-{_token(path, present, config)}")
    calibrated = config.calibration != "none"
    freq = f"freq{frequency}" if frequency != "A" else None
    return SceneSource(
        scene_id=config.scene_id or default_scene_id(path.stem, freq, window=config.window),
        data=data,
        pols=tuple(present),
        units="linear",
        quantity="intensity" if calibrated else "amplitude",
        georef=georef,
        spacing_m=spacing,
        sensor=config.sensor or (mission if mission and mission.upper() not in ("", "TBD") else "NISAR"),
        platform=config.platform,
        acquisition_time=config.acquisition_time or (start.replace(" ", "T") if start else None),
        source_files=(str(path.resolve()),),
        calibration=config.calibration,
        extra_attrs={"nisar_product": product_type, "nisar_frequency": frequency,
                     "nisar_group": product},
    )


def _token(path: Path, pols: list[str], config: IngestConfig) -> str:
    import hashlib

    text = f"{path.resolve()}|{pols}|{config.frequency}|{config.window}|{config.calibration}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _check_dtype(dtype: np.dtype, path: Path, name: str) -> None:
    if dtype.kind == "c":
        return
    if dtype.names and {"r", "i"} <= set(dtype.names) and dtype["r"].kind == "f":
        return
    raise IngestError(f"{path}: {name} has dtype {dtype}; a NISAR SLC raster is complex64 or the "
                      "compound (r, i) of float16")


def _swath_axes(f: Any, product: str, fg: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Zero-Doppler time (s since the swath epoch) per line and slant range (m) per sample."""
    t = f[f"{product}/swaths/zeroDopplerTime"]
    if "slantRange" not in fg:
        raise IngestError(f"{path}: {fg.name} has no slantRange axis")
    return np.asarray(t[()], np.float64), np.asarray(fg["slantRange"][()], np.float64)


def _swath_time(f: Any, product: str, row0: int, path: Path) -> str:
    t = f[f"{product}/swaths/zeroDopplerTime"]
    epoch = _epoch(_text(t.attrs.get("units", b"")), path, "zeroDopplerTime")
    return (epoch + dt.timedelta(seconds=float(t[row0]))).isoformat()


def _swath_spacing(fg: Any) -> tuple[float, float] | None:
    keys = ("sceneCenterAlongTrackSpacing", "sceneCenterGroundRangeSpacing")
    if all(k in fg for k in keys):
        return tuple(round(float(fg[k][()]), 6) for k in keys)  # type: ignore[return-value]
    return None


def _calibration_lut(f: Any, product: str, kind: str, calibration: str,
                     path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(times, ranges, factor) of the beta0 -> sigma0/gamma0 LUT, or None for beta0 / none."""
    if calibration in ("none", "beta0"):
        return None
    geo = f"{product}/metadata/calibrationInformation/geometry"
    name = f"{geo}/{calibration}"
    if name not in f or kind != "swaths":
        raise IngestError(
            f"{path}: no {calibration} LUT in {geo}; ingest the product's own beta0 with "
            "--calibration beta0, or the amplitude with --calibration none"
        )
    g = f[geo]
    t = np.asarray(g["zeroDopplerTime"][()], np.float64)
    r = np.asarray(g["slantRange"][()], np.float64)
    lut = np.asarray(f[name][()], np.float64)
    if lut.ndim == 3:  # (height, time, range): the layer nearest the ellipsoid
        heights = np.asarray(g["heightAboveEllipsoid"][()], np.float64)
        lut = lut[int(np.argmin(np.abs(heights)))]
    return t, r, lut


def _grid_georef(fg: Any, row0: int, col0: int, path: Path) -> Georef:
    from pyproj import CRS

    try:
        x = np.asarray(fg["xCoordinates"][()], np.float64)
        y = np.asarray(fg["yCoordinates"][()], np.float64)
        proj = fg["projection"]
        epsg = int(proj.attrs.get("epsg_code", proj[()]))
    except (KeyError, TypeError, ValueError) as e:
        raise IngestError(f"{path}: GSLC grid {fg.name} lacks x/yCoordinates or projection ({e})") from None
    dx = float(x[1] - x[0]) if x.size > 1 else float(fg["xCoordinateSpacing"][()])
    dy = float(y[1] - y[0]) if y.size > 1 else float(fg["yCoordinateSpacing"][()])
    # Coordinates are pixel centres: the transform's origin is the window's corner.
    c = float(x[0]) + (col0 - 0.5) * dx
    f0 = float(y[0]) + (row0 - 0.5) * dy
    return Georef(crs_wkt=CRS.from_epsg(epsg).to_wkt(), transform=(c, dx, 0.0, f0, 0.0, dy))


def _swath_georef(f: Any, product: str, times: np.ndarray, ranges: np.ndarray, row0: int,
                  col0: int, h: int, w: int, ident: Any, path: Path) -> Georef:
    """GCPs (window pixel frame, EPSG:4326) from the geolocation grid, else from the orbit."""
    from pyproj import CRS

    wgs84 = CRS.from_epsg(4326).to_wkt()
    grid = f.get(f"{product}/metadata/geolocationGrid")
    if grid is not None and all(k in grid for k in ("coordinateX", "coordinateY", "zeroDopplerTime",
                                                     "slantRange")):
        gt = np.asarray(grid["zeroDopplerTime"][()], np.float64)
        gr = np.asarray(grid["slantRange"][()], np.float64)
        xs = np.asarray(grid["coordinateX"][()], np.float64)
        ys = np.asarray(grid["coordinateY"][()], np.float64)
        if xs.ndim == 3:
            k = int(np.argmin(np.abs(np.asarray(grid["heightAboveEllipsoid"][()], np.float64)))) \
                if "heightAboveEllipsoid" in grid else 0
            xs, ys = xs[k], ys[k]
        epsg = int(grid["epsg"][()]) if "epsg" in grid else 4326
        crs = CRS.from_epsg(epsg).to_wkt()
        rows = _pixel_of(gt, times) - row0
        cols = _pixel_of(gr, ranges) - col0
        gcps = tuple((float(rows[i]), float(cols[j]), float(xs[i, j]), float(ys[i, j]), 0.0)
                     for i in range(len(gt)) for j in range(len(gr)))
        return Georef(crs_wkt=crs, gcps=gcps)
    orbit = f.get(f"{product}/metadata/orbit")
    if orbit is None or not all(k in orbit for k in ("time", "position", "velocity")):
        raise IngestError(f"{path}: neither a geolocation grid nor an orbit in {product}/metadata; "
                          "the raster cannot be located")
    look = _text(ident["lookDirection"][()]).lower() if "lookDirection" in ident else "right"
    ot = np.asarray(orbit["time"][()], np.float64)
    shift = (_epoch(_text(orbit["time"].attrs.get("units", b"")), path, "orbit time")
             - _epoch(_text(f[f"{product}/swaths/zeroDopplerTime"].attrs.get("units", b"")), path,
                      "zeroDopplerTime")).total_seconds()
    r_idx = np.linspace(0, h - 1, GCP_GRID_N).round().astype(int)
    c_idx = np.linspace(0, w - 1, GCP_GRID_N).round().astype(int)
    tt, rr = np.meshgrid(times[row0 + r_idx], ranges[col0 + c_idx], indexing="ij")
    lon, lat = geolocate_zero_doppler(ot + shift, np.asarray(orbit["position"][()], np.float64),
                                      np.asarray(orbit["velocity"][()], np.float64),
                                      tt.ravel(), rr.ravel(), left=look.startswith("l"))
    rows, cols = np.meshgrid(r_idx, c_idx, indexing="ij")
    gcps = tuple((float(r) + 0.5, float(c) + 0.5, float(x), float(y), 0.0)
                 for r, c, x, y in zip(rows.ravel(), cols.ravel(), lon, lat))
    return Georef(crs_wkt=wgs84, gcps=gcps)


def _pixel_of(axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Fractional pixel-corner coordinate of each ``values`` on a regular ``axis`` of centres."""
    step = (axis[-1] - axis[0]) / max(len(axis) - 1, 1)
    return (values - axis[0]) / step + 0.5


def geolocate_zero_doppler(orbit_t: np.ndarray, pos: np.ndarray, vel: np.ndarray, t: np.ndarray,
                           r: np.ndarray, *, left: bool,
                           height: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat of the points at slant range ``r`` seen at zero Doppler at time ``t``.

    Solves, per point, for the ECEF position T on the WGS 84 ellipsoid raised by ``height``
    with ``|T - P(t)| = r`` and ``(T - P(t)) . V(t) = 0`` on the look side (Newton's method
    from a flat-earth first guess); P, V are the orbit's Hermite interpolation.
    """
    from pyproj import Transformer
    from scipy.interpolate import CubicHermiteSpline

    spline = CubicHermiteSpline(orbit_t, pos, vel, axis=0)
    p = spline(t)
    v = spline.derivative()(t)
    a, b = _WGS84_A + height, _WGS84_B + height
    up = p / np.linalg.norm(p, axis=1, keepdims=True)
    right = np.cross(v, up)
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    side = -right if left else right
    alt = np.linalg.norm(p, axis=1) - a
    ground = np.sqrt(np.maximum(r**2 - alt**2, 1.0))
    x = p - up * alt[:, None] + side * ground[:, None]
    scale = np.array([1 / a**2, 1 / a**2, 1 / b**2])
    for _ in range(20):
        d = x - p
        fval = np.stack([(d * d).sum(1) - r**2, (d * v).sum(1), (x * x * scale).sum(1) - 1], 1)
        jac = np.stack([2 * d, v, 2 * x * scale], 1)
        step = np.linalg.solve(jac, fval[..., None])[..., 0]
        x = x - step
        if np.abs(step).max() < 1e-4:
            break
    lon, lat, _ = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True).transform(
        x[:, 0], x[:, 1], x[:, 2])
    return np.asarray(lon), np.asarray(lat)


# Bytes per ranged read of an HDF5 object at s3:// (h5py reads its B-tree and chunk index in
# small pieces; each read past the buffer is one GET of this size).
H5_READ_BUFFER = 256 * 1024


def h5_open(path: str) -> Any:
    """An HDF5 file by path, or an ``s3://`` object through obstore's fsspec file (ranged
    reads: h5py reads what it needs, not the object)."""
    import h5py

    if path.startswith("s3://"):
        from sarray.ingest.product import s3_filesystem

        return h5py.File(s3_filesystem().open(path.removeprefix("s3://"), "rb",
                                              buffer_size=H5_READ_BUFFER), "r")
    return h5py.File(path, "r")


class _H5Reader:
    """Array-like (pol, y, x) over HDF5 rasters: dask calls ``__getitem__`` with slices; each
    thread keeps its own h5py handle (h5py objects are neither picklable nor shared)."""

    def __init__(self, path: str, names: list[str], shape: tuple[int, int], offset: tuple[int, int],
                 calibration: str, lut: Any, times: Any, ranges: Any) -> None:
        self.path, self.names = path, names
        self.shape = (len(names), *shape)
        self.dtype = np.dtype("float32")
        self.ndim = 3
        self._offset, self._calibration, self._lut = offset, calibration, lut
        self._times, self._ranges = times, ranges
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_local": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _file(self) -> Any:
        import h5py

        f = getattr(self._local, "f", None)
        if f is None:
            f = self._local.f = h5_open(self.path)
        return f

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        ps, ys, xs = (k.indices(n) for k, n in zip(key, self.shape))
        r0, r1 = ys[0] + self._offset[0], ys[1] + self._offset[0]
        c0, c1 = xs[0] + self._offset[1], xs[1] + self._offset[1]
        out = np.empty((len(range(*ps)), r1 - r0, c1 - c0), np.float32)
        for k, i in enumerate(range(*ps)):
            try:
                raw = self._file()[self.names[i]][r0:r1, c0:c1]
            except Exception as e:  # h5py raises OSError/KeyError/... on damaged files
                raise IngestError(f"{self.path}: read of {self.names[i]} failed at rows {r0}:{r1}, "
                                  f"cols {c0}:{c1} (truncated or corrupt file?): {e}") from None
            if raw.dtype.names:
                power = raw["r"].astype(np.float32) ** 2 + raw["i"].astype(np.float32) ** 2
            else:
                power = (raw.real.astype(np.float32) ** 2 + raw.imag.astype(np.float32) ** 2)
            if self._calibration == "none":
                vals = np.sqrt(power)
            else:
                vals = power
                if self._lut is not None:
                    vals = vals * self._factor(r0, r1, c0, c1)
            out[k] = np.where(np.isfinite(vals), vals, np.float32(np.nan))
        return out

    def _factor(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        from scipy.interpolate import RegularGridInterpolator

        t, r, lut = self._lut
        interp = RegularGridInterpolator((t, r), lut, bounds_error=False, fill_value=None)
        tt, rr = np.meshgrid(self._times[r0:r1], self._ranges[c0:c1], indexing="ij")
        return interp(np.stack([tt.ravel(), rr.ravel()], 1)).reshape(tt.shape).astype(np.float32)
