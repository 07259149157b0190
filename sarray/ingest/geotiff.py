"""GeoTIFF / COG (and any GDAL raster) reader: windowed, lazy, one dask task per write block.

The reader keeps one rasterio handle per thread, so dask's threads read in parallel without a
global lock, and wraps every read error with the file name: a truncated TIFF fails with a message
that names it, whichever chunk hits the damage first.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sarray.archive.layout import POLARISATIONS
from sarray.errors import IngestError, first_line
from sarray.ingest.config import IngestConfig
from sarray.ingest.source import (
    Georef,
    S3Path,
    SceneSource,
    default_scene_id,
    infer_sensor,
    input_path,
    parse_time_from_name,
    spacing_from_gcps,
    spacing_from_transform,
)

# Source dtypes and what they mean. Anything else is refused.
DN_DTYPES = ("uint8", "uint16", "int16")
FLOAT_DTYPES = ("float32", "float64")
COMPLEX_DTYPES = ("complex64", "complex128", "complex_int16")
SUPPORTED_DTYPES = DN_DTYPES + FLOAT_DTYPES + COMPLEX_DTYPES

_POL_RE = re.compile(r"(?:^|[^a-z])(hh|hv|vh|vv)(?:[^a-z]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class _Band:
    path: str
    index: int  # 1-based band index in the file


@dataclass(frozen=True)
class _FileInfo:
    path: Path
    count: int
    dtypes: tuple[str, ...]
    shape: tuple[int, int]
    crs_wkt: str | None
    transform: tuple[float, ...] | None
    gcps: tuple[tuple[float, ...], ...] | None
    gcp_crs_wkt: str | None
    nodata: float | None
    descriptions: tuple[str | None, ...]


def _probe(path: Path) -> _FileInfo:
    """Open a file's header and check what can be checked without reading all pixels."""
    import rasterio
    from rasterio.errors import RasterioIOError

    remote = isinstance(path, S3Path)
    if not remote and not path.exists():
        raise IngestError(f"{path}: no such file")
    if not remote and path.is_dir():
        raise IngestError(f"{path}: is a directory, not a raster (a Sentinel-1 product ends in .SAFE)")
    try:
        with _env(path), rasterio.open(str(path)) as ds:
            identity = ds.transform.is_identity
            gcps, gcp_crs = ds.gcps
            crs_wkt = ds.crs.to_wkt() if ds.crs else None
            info = _FileInfo(
                path=path,
                count=ds.count,
                dtypes=tuple(ds.dtypes),
                shape=(ds.height, ds.width),
                crs_wkt=crs_wkt,
                transform=None if identity else tuple(ds.transform.to_gdal()),
                gcps=tuple((g.row, g.col, g.x, g.y, g.z or 0.0) for g in gcps) or None,
                gcp_crs_wkt=gcp_crs.to_wkt() if gcp_crs else None,
                nodata=ds.nodata,
                descriptions=tuple(ds.descriptions),
            )
    except RasterioIOError as e:
        what = "no such object, or not a readable raster" if remote else "not a readable raster"
        raise IngestError(f"{path}: {what} ({first_line(e)})") from None
    try:
        # Read one pixel at each end: catches most truncated files before anything is written.
        with _env(path), rasterio.open(str(path)) as ds:
            h, w = ds.height, ds.width
            for row, col in ((0, 0), (max(h - 1, 0), max(w - 1, 0))):
                ds.read(1, window=rasterio.windows.Window(col, row, 1, 1))
    except Exception as e:
        raise IngestError(f"{path}: truncated or corrupt raster, read failed ({first_line(e)})") from None
    bad = [d for d in info.dtypes if d not in SUPPORTED_DTYPES]
    if bad:
        raise IngestError(
            f"{path}: unsupported dtype {bad[0]}; supported are {', '.join(SUPPORTED_DTYPES)}"
        )
    if len(set(info.dtypes)) > 1:
        raise IngestError(f"{path}: bands have mixed dtypes {info.dtypes}; split the file first")
    return info


def _env(path: Any) -> Any:
    """GDAL's configuration for an s3:// input (the archive's S3 endpoint); for a local file a
    no-op, so that the S3 settings are never read (nor checked) for local inputs."""
    if not str(path).startswith("s3://"):
        return contextlib.nullcontext()
    import rasterio

    from sarray.archive.location import gdal_s3_options

    return rasterio.Env(**gdal_s3_options())


class _WindowReader:
    """Array-like over a list of bands, read by window, converted to float32.

    dask calls ``__getitem__`` with a (pol, y, x) tuple of slices; each call reads that window
    from every band it covers. Complex samples become amplitude, nodata and +/-inf become NaN.
    """

    def __init__(
        self,
        bands: list[_Band],
        shape: tuple[int, int],
        offset: tuple[int, int],
        nodata: dict[str, float | None],
    ) -> None:
        self.bands = bands
        self.shape = (len(bands), shape[0], shape[1])
        self.dtype = np.dtype("float32")
        self.ndim = 3
        self._offset = offset
        self._nodata = nodata
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_local"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _handle(self, path: str) -> Any:
        import rasterio

        handles = getattr(self._local, "handles", None)
        if handles is None:
            handles = self._local.handles = {}
        if path not in handles:
            with _env(path):
                handles[path] = rasterio.open(path)
        return handles[path]

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        from rasterio.windows import Window

        ps, ys, xs = (k.indices(n) for k, n in zip(key, self.shape))
        r0, r1 = ys[0] + self._offset[0], ys[1] + self._offset[0]
        c0, c1 = xs[0] + self._offset[1], xs[1] + self._offset[1]
        window = Window(c0, r0, c1 - c0, r1 - r0)
        out = np.empty((len(range(*ps)), r1 - r0, c1 - c0), dtype=np.float32)
        # Group consecutive bands of the same file into one read (pixel-interleaved TIFFs
        # decode each block once for all bands).
        wanted = [self.bands[i] for i in range(*ps)]
        i = 0
        while i < len(wanted):
            path = wanted[i].path
            j = i
            while j < len(wanted) and wanted[j].path == path:
                j += 1
            indexes = [b.index for b in wanted[i:j]]
            try:
                with _env(path):
                    raw = self._handle(path).read(indexes, window=window)
            except Exception as e:  # rasterio raises several types on damaged files
                raise IngestError(
                    f"{path}: read failed at rows {r0}:{r1}, cols {c0}:{c1} "
                    f"(truncated or corrupt raster?): {first_line(e)}"
                ) from None
            out[i:j] = _to_float32(raw, self._nodata.get(path))
            i = j
        return out


def _to_float32(raw: np.ndarray, nodata: float | None) -> np.ndarray:
    if np.iscomplexobj(raw):
        vals = np.abs(raw).astype(np.float32)
    else:
        vals = raw.astype(np.float32, copy=False)
        if nodata is not None and not np.isnan(nodata):
            vals = np.where(raw == nodata, np.float32(np.nan), vals)
    if vals.dtype.kind == "f" and not np.isfinite(vals).all():
        vals = np.where(np.isfinite(vals), vals, np.float32(np.nan))
    return vals


def _pol_label(info: _FileInfo, band: int, multi: bool) -> str | None:
    desc = info.descriptions[band - 1]
    if desc and desc.strip().upper() in POLARISATIONS:
        return desc.strip().upper()
    if not multi:
        m = _POL_RE.search(info.path.stem)
        if m:
            return m.group(1).upper()
    return None


def _infer_units(infos: list[_FileInfo], config: IngestConfig) -> tuple[str, str]:
    """(units, quantity) of the stored values."""
    import rasterio

    kind = infos[0].dtypes[0]
    if kind in COMPLEX_DTYPES:
        return "linear", "amplitude"
    if kind in DN_DTYPES:
        return "dn", "amplitude"
    names = " ".join(
        [i.path.name for i in infos] + [d or "" for i in infos for d in i.descriptions]
    ).lower()
    quantity = "amplitude" if re.search(r"amp", names) else "unknown"
    if config.units is not None:
        units = config.units
    elif re.search(r"(?:^|[^a-z])db(?:[^a-z]|$)", names):
        units = "db"
    else:
        # Negative backscatter only exists in dB: look at a decimated read of the first file.
        try:
            with _env(infos[0].path), rasterio.open(str(infos[0].path)) as ds:
                h, w = ds.height, ds.width
                sample = ds.read(1, out_shape=(min(h, 256), min(w, 256))).astype(np.float64)
        except Exception as e:
            raise IngestError(
                f"{infos[0].path}: truncated or corrupt raster, read failed ({first_line(e)})"
            ) from None
        if infos[0].nodata is not None:
            sample = sample[sample != infos[0].nodata]
        units = "db" if np.nanmin(np.where(np.isfinite(sample), sample, np.nan), initial=0) < 0 else "linear"
    if units == "db":
        quantity = "intensity"
    return units, quantity


def open_geotiffs(paths: list[Path], config: IngestConfig) -> list[SceneSource]:
    """Validate GDAL rasters and describe each scene they make (nothing is read in bulk yet).

    Args:
        paths: raster files; with ``config.grouping == "stack"`` all of them form one scene.
        config: the ingest configuration.

    Returns:
        One :class:`SceneSource` per scene.

    Raises:
        IngestError: naming the file and the problem.
    """
    infos = [_probe(p if isinstance(p, (Path, S3Path)) else input_path(p)) for p in paths]
    groups = [infos] if config.grouping == "stack" else [[i] for i in infos]
    return [_make_source(group, config) for group in groups]


def _make_source(infos: list[_FileInfo], config: IngestConfig) -> SceneSource:
    import dask.array as da

    first = infos[0]
    # 1. The files of a stack must share grid, georeferencing and dtype.
    for other in infos[1:]:
        if other.crs_wkt != first.crs_wkt or other.gcp_crs_wkt != first.gcp_crs_wkt:
            raise IngestError(
                f"{other.path}: CRS conflicts with {first.path} within the stack; "
                "reproject the files onto one CRS first"
            )
        if other.shape != first.shape or other.transform != first.transform:
            raise IngestError(
                f"{other.path}: grid {other.shape} {other.transform} differs from {first.path} "
                f"{first.shape} {first.transform}; a stack needs identical grids"
            )
        if other.dtypes[0] != first.dtypes[0]:
            raise IngestError(
                f"{other.path}: dtype {other.dtypes[0]} differs from {first.path} ({first.dtypes[0]})"
            )

    # 2. Bands and their polarisation labels.
    bands = [_Band(str(i.path), b) for i in infos for b in range(1, i.count + 1)]
    if config.pols is not None:
        if len(config.pols) != len(bands):
            raise IngestError(
                f"{first.path}: `pols` gives {len(config.pols)} labels for {len(bands)} bands"
            )
        pols = tuple(config.pols)
    else:
        labels = [
            _pol_label(i, b, i.count > 1) for i in infos for b in range(1, i.count + 1)
        ]
        if all(labels) and len(set(labels)) == len(labels):
            pols = tuple(str(l) for l in labels)
        else:
            pols = tuple(f"B{k + 1}" for k in range(len(bands)))

    # 3. Georeferencing: an affine transform, or GCPs, or an explicit spacing.
    window = config.window
    h, w = first.shape
    r0, c0 = 0, 0
    if window is not None:
        if window.row + window.height > h or window.col + window.width > w:
            raise IngestError(
                f"{first.path}: window rows {window.row}:{window.row + window.height}, cols "
                f"{window.col}:{window.col + window.width} exceeds the raster's {h} x {w}"
            )
        r0, c0, h, w = window.row, window.col, window.height, window.width
    crs_wkt, gcp_crs_wkt = first.crs_wkt, first.gcp_crs_wkt
    if config.crs is not None:
        from pyproj import CRS

        given = CRS.from_user_input(config.crs)
        own = crs_wkt or gcp_crs_wkt
        if own is not None and CRS.from_wkt(own) != given:
            raise IngestError(f"{first.path}: has its own CRS ({CRS.from_wkt(own).to_string()}), "
                              f"not --crs {config.crs}; drop --crs or reproject the file")
        crs_wkt = crs_wkt or (given.to_wkt() if first.transform is not None else None)
        gcp_crs_wkt = gcp_crs_wkt or (given.to_wkt() if first.gcps else None)
    if first.transform is not None and crs_wkt:
        from affine import Affine

        t = Affine.from_gdal(*first.transform) @ Affine.translation(c0, r0)
        georef = Georef(crs_wkt=crs_wkt, transform=tuple(t.to_gdal()))
        spacing = spacing_from_transform(georef.transform, crs_wkt, (h, w))
    elif first.gcps and gcp_crs_wkt:
        gcps = tuple((g[0] - r0, g[1] - c0, g[2], g[3], g[4]) for g in first.gcps)
        georef = Georef(crs_wkt=gcp_crs_wkt, gcps=gcps)
        spacing = spacing_from_gcps(gcps, gcp_crs_wkt, (h, w))
    elif config.spacing_m is not None:
        georef = Georef()
        spacing = (config.spacing_m, config.spacing_m)
    elif first.transform is not None or first.gcps:
        what = "a geotransform (from the file or its worldfile)" if first.transform is not None \
            else "GCPs"
        raise IngestError(
            f"{first.path}: has {what} but no CRS; give it with --crs EPSG:XXXX, or --spacing-m "
            "to ingest the pixel grid only"
        )
    else:
        raise IngestError(
            f"{first.path}: no CRS, geotransform or GCPs; give --spacing-m to ingest it "
            "ungeoreferenced (pixel grid only)"
        )
    if config.spacing_m is not None:
        spacing = (config.spacing_m, config.spacing_m)

    # 4. Units, and the lazy array chunked on the archive's write blocks.
    units, quantity = _infer_units(infos, config)
    nodata = {str(i.path): i.nodata for i in infos}
    reader = _WindowReader(bands, (h, w), (r0, c0), nodata)
    block = config.layout.write_block_px
    data = da.from_array(reader, chunks=(len(bands), block, block), lock=False, asarray=False,
                         name=f"read-{first.path.name}-{id(reader)}", meta=np.empty((0, 0, 0), np.float32))

    stem = first.path.stem if len(infos) == 1 else _common_stem([i.path.stem for i in infos])
    scene_id = config.scene_id or default_scene_id(stem, window=window)
    if first.dtypes[0] == "uint8" and len(bands) in (3, 4) and config.pols is None:
        import warnings

        from sarray.errors import SarrayWarning

        warnings.warn(SarrayWarning(
            f"{first.path}: a {len(bands)}-band 8-bit picture (RGB{'A' if len(bands) == 4 else ''}"
            f"?), not SAR backscatter; ingested as {len(bands)} DN bands {','.join(pols)}. If it "
            "is a grey SAR quicklook saved as colour, convert it to one band first"), stacklevel=2)
    return SceneSource(
        scene_id=scene_id,
        data=data,
        pols=pols,
        units=units,
        quantity=quantity,
        georef=georef,
        spacing_m=spacing,
        sensor=config.sensor or infer_sensor(first.path.name),
        platform=config.platform,
        acquisition_time=config.acquisition_time or parse_time_from_name(first.path.name),
        source_files=tuple(str(i.path.resolve()) for i in infos),
    )


def _common_stem(stems: list[str]) -> str:
    prefix = stems[0]
    for s in stems[1:]:
        while not s.startswith(prefix):
            prefix = prefix[:-1]
    return prefix.rstrip("_-.") or stems[0]
