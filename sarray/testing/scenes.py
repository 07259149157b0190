"""Tiny seeded synthetic SAR rasters (gamma speckle over smooth structure) written as GeoTIFF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def speckle_image(shape: tuple[int, int], *, seed: int = 0, looks: int = 1) -> np.ndarray:
    """Float32 intensity: a smooth pattern times unit-mean gamma speckle with ``looks`` looks."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.05 + 0.04 * np.sin(xx / 37.0) * np.cos(yy / 23.0) + 0.06 * ((xx // 64 + yy // 64) % 2)
    return (base * rng.gamma(looks, 1.0 / looks, size=shape)).astype(np.float32)


def write_geotiff(
    path: str | Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32631",
    transform: Any = None,
    nodata: float | None = None,
    descriptions: tuple[str, ...] | None = None,
    tiled: bool = True,
    compress: str | None = None,
) -> Path:
    """Write a (bands, y, x) or (y, x) array as a GeoTIFF; default grid is 10 m UTM 31N."""
    import rasterio
    from rasterio.transform import from_origin

    path = Path(path)
    arr = data[None] if data.ndim == 2 else data
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": arr.shape[1],
        "width": arr.shape[2],
        "count": arr.shape[0],
        "dtype": arr.dtype.name,
        "transform": transform if transform is not None else from_origin(600000, 5700000, 10, 10),
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(arr)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                ds.set_band_description(i, d)
    return path


def tree_digest(path: str | Path) -> str:
    """Hash of every file name and content under ``path`` ("absent" if it does not exist).

    Used to prove that a failed command left an archive byte-for-byte as it was.
    """
    import hashlib

    path = Path(path)
    if not path.exists():
        return "absent"
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def write_hr_archive(root: Path) -> Path:
    """Three synthetic airborne scenes at 1 m (amplitude: smooth structure x Rayleigh speckle)."""
    from rasterio.transform import from_origin

    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest

    archive = root / "hr.zarr"
    for k, (shape, seed) in enumerate((((160, 192), 1), ((128, 128), 2), ((96, 160), 3))):
        amp = np.sqrt(speckle_image(shape, seed=seed, looks=1)).astype(np.float32)
        tif = write_geotiff(root / f"scene{k}.tif", amp, transform=from_origin(600000, 5700000, 1.0, 1.0),
                            descriptions=("HH",))
        ingest([tif], archive, IngestConfig(platform="airborne", units="linear", sensor="TestSAR",
                                            pols=("HH",), scene_id=f"hr-{k}"))
    return archive


def write_corrupt_geotiff(path: str | Path, *, seed: int = 7) -> Path:
    """A 1024^2 deflate GeoTIFF whose header and first and last tiles are intact and whose tile
    (1, 2) is damaged: the damage is only met while streaming, after other chunks were staged."""
    import rasterio

    p = write_geotiff(path, speckle_image((1024, 1024), seed=seed), compress="deflate")
    with rasterio.open(p) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_2", "TIFF", bidx=1))
    raw = bytearray(p.read_bytes())
    raw[offset : offset + 64] = b"\xff" * 64
    p.write_bytes(bytes(raw))
    return p


def safe_with_pixels(product: str | Path, out_dir: str | Path, *, rows: tuple[int, int],
                     cols: tuple[int, int], seed: int = 0) -> Path:
    """A copy of a real SAFE product (its XML untouched) whose measurement TIFFs hold seeded
    speckle-like DN in ``rows`` x ``cols`` and zeros elsewhere, at the real size, layout
    (one-line strips) and compression: the shipped test products' pixels are constant, so a
    read from the wrong place would go unseen. Returns the new ``.SAFE`` folder."""
    import shutil

    import rasterio
    from rasterio.windows import Window

    src, out = Path(product), Path(out_dir) / Path(product).name
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.tiff"))
    rng = np.random.default_rng(seed)
    for tif in sorted((src / "measurement").glob("*.tiff")):
        with rasterio.open(tif) as d:
            profile, (h, w) = d.profile, d.shape
        with rasterio.open(out / "measurement" / tif.name, "w", **profile) as o:
            step = 1024
            for r in range(0, h, step):  # zeros: every strip exists, as in the product
                o.write(np.zeros((1, min(step, h - r), w), profile["dtype"]),
                        window=Window(0, r, w, min(step, h - r)))
            (r0, r1), (c0, c1) = rows, cols
            amp = 100 * np.sqrt(rng.exponential(size=(1, r1 - r0, c1 - c0)))
            if np.dtype(profile["dtype"]).kind == "c":
                values = (amp * np.exp(2j * np.pi * rng.random(amp.shape))).astype(profile["dtype"])
            else:
                values = np.clip(amp, 1, 65535).astype(profile["dtype"])
            o.write(values, window=Window(c0, r0, c1 - c0, r1 - r0))
    return out


def zip_safe(folder: str | Path, out: str | Path, method: int, *, top: bool = True) -> Path:
    """Zip a SAFE folder as ESA ships it (the folder at the zip's top), or its contents only;
    ``method`` is a :mod:`zipfile` compression (``ZIP_DEFLATED``, ``ZIP_STORED``)."""
    import zipfile

    folder, out = Path(folder), Path(out)
    with zipfile.ZipFile(out, "w", compression=method) as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder.parent if top else folder).as_posix())
    return out
