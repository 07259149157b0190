"""A zipped SAFE product is read in place (xarray-sentinel through fsspec's zip, the TIFFs by
GDAL's /vsizip/): bit for bit the unzipped product's scene, with the zip's own checksum."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sarray.archive.store import Archive
from sarray.errors import IngestError
from sarray.ingest.config import IngestConfig, Window
from sarray.ingest.run import ingest
from sarray.testing.scenes import zip_safe

GRD = "sentinel1/safe/S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
EFA4 = "sentinel1/safe/S1B_IW_SLC__1SDV_20210401T052622_20210401T052650_026269_032297_EFA4.SAFE"
# The window ingested, and the seeded pixels around it (zeros elsewhere in the swath).
WINDOW = Window(row=1100, col=5000, height=300, width=700)
PIXELS = dict(rows=(1000, 1600), cols=(4800, 5900))


@pytest.fixture(scope="module")
def grd(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sarray.testing.scenes import safe_with_pixels

    return safe_with_pixels(data_dir / GRD, tmp_path_factory.mktemp("safe"), **PIXELS, seed=3)


def _scene(arch: Path, product: Path | str, **cfg) -> tuple[np.ndarray, object]:
    (res,) = ingest([product], arch, IngestConfig(**cfg))
    a = Archive(arch)
    return a.open_scene(res.scene_id)["backscatter"].values, a.record(res.scene_id)


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED], ids=["deflated", "stored"])
def test_zipped_safe_equals_the_unzipped_product_bit_for_bit(grd: Path, tmp_path: Path, method: int) -> None:
    want, rec_dir = _scene(tmp_path / "dir.zarr", grd, window=WINDOW)
    assert np.ptp(want) > 0 and np.isfinite(want).all()  # seeded pixels: a real comparison
    z = zip_safe(grd, tmp_path / f"{grd.name}.zip", method)
    got, rec_zip = _scene(tmp_path / "zip.zarr", z, window=WINDOW)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert rec_zip.scene_id == rec_dir.scene_id  # named by the product, not by the zip
    assert rec_zip.bbox_lonlat == rec_dir.bbox_lonlat  # the same geolocation grid
    assert rec_zip.source_sha256 == hashlib.sha256(z.read_bytes()).hexdigest()  # the zip's own
    # Ingesting the same zip again is a no-op.
    (again,) = ingest([z], tmp_path / "zip.zarr", IngestConfig(window=WINDOW))
    assert again.status == "exists"


def test_a_zip_of_the_products_contents_and_an_slc_burst(grd: Path, data_dir: Path, tmp_path: Path) -> None:
    """A zip whose top holds manifest.safe itself reads the same; an SLC burst from a zip equals
    the folder's (the burst crop and the complex samples through /vsizip/)."""
    want, _ = _scene(tmp_path / "a.zarr", grd, window=WINDOW)
    flat = zip_safe(grd, tmp_path / f"{grd.name}.zip", zipfile.ZIP_DEFLATED, top=False)
    got, _ = _scene(tmp_path / "b.zarr", flat, window=WINDOW)
    assert np.array_equal(got, want)
    renamed = flat.rename(tmp_path / "download.bin")  # a zip by its bytes, not by its name
    got, _ = _scene(tmp_path / "b2.zarr", renamed, window=WINDOW)
    assert np.array_equal(got, want)
    slc = data_dir / EFA4
    kw = dict(swath="IW1", burst=2, pols=("VV",), window=Window(row=100, col=3000, height=200, width=400))
    want_slc, _ = _scene(tmp_path / "c.zarr", slc, **kw)
    zslc = zip_safe(slc, tmp_path / f"{slc.name}.zip", zipfile.ZIP_DEFLATED)
    got_slc, _ = _scene(tmp_path / "d.zarr", zslc, **kw)
    assert np.array_equal(got_slc, want_slc) and np.ptp(want_slc) > 0


def test_bad_zips_are_refused_with_one_line(grd: Path, tmp_path: Path) -> None:
    # Two products in one zip.
    two = tmp_path / "two.SAFE.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("A.SAFE/manifest.safe", "<xfdu/>")
        z.writestr("B.SAFE/manifest.safe", "<xfdu/>")
    # A truncated zip.
    good = zip_safe(grd, tmp_path / "good.SAFE.zip", zipfile.ZIP_STORED)
    cut = tmp_path / "cut.SAFE.zip"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path, msg in [(two, "2 manifest.safe files"), (cut, "not a readable zip archive"),
                      (tmp_path / "missing.SAFE.zip", "no such file")]:
        with pytest.raises(IngestError) as e:
            ingest([path], tmp_path / "x.zarr", IngestConfig())
        assert str(path) in str(e.value) and msg in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x.zarr").exists()


def test_a_safe_in_a_bucket_folder_or_zip_equals_the_local_product(
        grd: Path, s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SAFE folder and a SAFE zip at s3:// (the archive's AWS_* settings): the local
    product's pixels bit for bit; the zip's checksum is the object's."""
    import obstore

    from sarray.archive.location import Location

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"):
        monkeypatch.delenv(k, raising=False)  # set from AWS_ENDPOINT_URL by the ingest
    bucket = s3_server.create_bucket("safe-products").removeprefix("s3://")
    store = Location("s3", bucket, "").object_store()
    for f in sorted(grd.rglob("*")):
        if f.is_file():
            obstore.put(store, f"dir/{f.relative_to(grd.parent).as_posix()}", f.read_bytes())
    z = zip_safe(grd, tmp_path / f"{grd.name}.zip", zipfile.ZIP_STORED)
    obstore.put(store, f"zip/{z.name}", z.read_bytes())
    want, _ = _scene(tmp_path / "local.zarr", grd, window=WINDOW)
    got_dir, rec_dir = _scene(tmp_path / "s3dir.zarr", f"s3://{bucket}/dir/{grd.name}", window=WINDOW)
    got_zip, rec_zip = _scene(tmp_path / "s3zip.zarr", f"s3://{bucket}/zip/{z.name}", window=WINDOW)
    assert np.array_equal(got_dir, want) and np.array_equal(got_zip, want)
    assert rec_zip.source_sha256 == hashlib.sha256(z.read_bytes()).hexdigest()
    (again,) = ingest([f"s3://{bucket}/dir/{grd.name}"], tmp_path / "s3dir.zarr", IngestConfig(window=WINDOW))
    assert again.status == "exists"  # the folder's objects' checksum, stable
    with pytest.raises(IngestError, match=rf"s3://{bucket}/zip/nope.SAFE.zip: no such object"):
        ingest([f"s3://{bucket}/zip/nope.SAFE.zip"], tmp_path / "x.zarr", IngestConfig())


def test_a_window_of_a_zip_in_a_bucket_fetches_its_share_not_the_product(
        grd: Path, s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads are ranged: opening a zipped SAFE at s3:// and reading a window fetch at most 2x
    the window's TIFF strips plus the product's XML (measured through a TCP proxy of the
    test's own: 5.4 MB against 3.7 MB here), the pixels alone about their strips' bytes."""
    import obstore
    import rasterio

    from sarray.archive.location import Location
    from sarray.ingest.run import open_sources
    from sarray.testing.s3 import CountingProxy

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"):
        monkeypatch.delenv(k, raising=False)
    bucket = s3_server.create_bucket("ranged-reads").removeprefix("s3://")
    z = zip_safe(grd, tmp_path / f"{grd.name}.zip", zipfile.ZIP_STORED)
    obstore.put(Location("s3", bucket, "").object_store(), z.name, z.read_bytes())
    tif = next((grd / "measurement").glob("*.tiff"))
    with rasterio.open(tif) as d:
        strips = sum(d.block_size(1, r, 0) for r in range(WINDOW.row, WINDOW.row + WINDOW.height))
    xml = sum(f.stat().st_size for f in grd.rglob("*.xml")) + (grd / "manifest.safe").stat().st_size
    with CountingProxy(s3_server.endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        (src,) = open_sources([f"s3://{bucket}/{z.name}"], IngestConfig(window=WINDOW))
        opened = proxy.down
        values = src.data.compute()
        fetched = proxy.down
    assert np.ptp(values) > 0
    assert fetched <= 2 * (strips + xml), (fetched, strips, xml)
    assert fetched - opened <= 3 * strips  # the window's pixels: its strips and the TIFF's index
