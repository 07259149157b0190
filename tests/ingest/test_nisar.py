"""NISAR RSLC / GSLC over HDF5: the real sample, and products of the other layouts built with h5py
from the specification (``RSLC`` naming, frequency B, complex32 compound, geolocation grid,
sigma0 LUT, GSLC grid)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from sarray.archive.store import Archive
from sarray.cli import app
from sarray.errors import IngestError
from sarray.ingest.config import IngestConfig, Window
from sarray.ingest.run import ingest

SAMPLE = "nisar/winnipeg.h5"
HH = "science/LSAR/SLC/swaths/frequencyA/HH"


def _pixels(archive: Path, scene_id: str) -> np.ndarray:
    arch = Archive(archive)
    return np.asarray(arch.open_scene(scene_id)["backscatter"].values)


def test_the_sample_ingests_with_time_sensor_and_geolocated_gcps(data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / SAMPLE
    (res,) = ingest([src], tmp_path / "a.zarr", IngestConfig(calibration="beta0"))
    with h5py.File(src) as f:
        z = f[HH][()]
        polygon = f["science/LSAR/identification/boundingPolygon"][()].decode()
    got = _pixels(tmp_path / "a.zarr", res.scene_id)
    np.testing.assert_allclose(got[0], np.abs(z) ** 2, rtol=1e-6)  # beta0 = |z|^2 by spec
    rec = Archive(tmp_path / "a.zarr").record(res.scene_id)
    assert rec.sensor == "UAVSAR" and rec.polarisations == ("HH",)
    assert rec.acquisition_time.startswith("2012-07-17T14:36:47")
    # The geolocation grid of this product is empty: the GCPs come from its orbit at zero
    # Doppler. Its first line's first sample is the first vertex of the product's own bounding
    # polygon (computed by ISCE3 from the full scene): within 50 m.
    lon0, lat0 = (float(v) for v in polygon.split("((")[1].split(",")[0].split())
    west, south, east, north = rec.bbox_lonlat
    assert abs(east - lon0) * 72_000 < 50 and abs(lat0 - 49.4857) < 0.001
    # 250 lines of 6 m along track and ~1.6 km of slant range: a box of a few km, not the
    # polygon's ~60 km scene.
    assert east - west < 0.1 and north - south < 0.1
    # Amplitude with --calibration none.
    (res2,) = ingest([src], tmp_path / "b.zarr", IngestConfig(calibration="none"))
    np.testing.assert_allclose(_pixels(tmp_path / "b.zarr", res2.scene_id)[0], np.abs(z), rtol=1e-6)


def test_the_sample_refuses_what_it_cannot_give(data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / SAMPLE
    with pytest.raises(IngestError, match="no sigma0 LUT.*--calibration beta0"):
        ingest([src], tmp_path / "a.zarr", IngestConfig())
    with pytest.raises(IngestError, match="frequency B lists polarisations HH,HV,VH,VV but holds no raster"):
        ingest([src], tmp_path / "a.zarr", IngestConfig(frequency="B", calibration="none"))
    with pytest.raises(IngestError, match="polarisation VV not in frequency A"):
        ingest([src], tmp_path / "a.zarr", IngestConfig(pols=("VV",), calibration="none"))
    assert not (tmp_path / "a.zarr").exists()


def test_a_gdal_subdataset_name_and_a_window_ingest(data_dir: Path, tmp_path: Path) -> None:
    name = f'HDF5:"{data_dir / SAMPLE}"://{HH}'
    w = Window(row=10, col=20, height=100, width=50)
    (res,) = ingest([name], tmp_path / "a.zarr", IngestConfig(calibration="none", window=w))
    assert res.scene_id == "winnipeg_r10_c20_100x50"  # windows get their own default id
    with h5py.File(data_dir / SAMPLE) as f:
        z = f[HH][10:110, 20:70]
    np.testing.assert_allclose(_pixels(tmp_path / "a.zarr", res.scene_id)[0], np.abs(z), rtol=1e-6)


def _complex32(z: np.ndarray) -> np.ndarray:
    out = np.empty(z.shape, dtype=[("r", np.float16), ("i", np.float16)])
    out["r"], out["i"] = z.real, z.imag
    return out


def build_rslc(path: Path, *, shape: tuple[int, int] = (90, 70), seed: int = 0) -> dict[str, np.ndarray]:
    """An L1 RSLC of the current layout: ``RSLC`` naming, frequency B with HH and HV as
    complex32 compounds, a geolocation grid cube and a sigma0 LUT."""
    rng = np.random.default_rng(seed)
    h, w = shape
    base = "science/LSAR/RSLC"
    z = {p: (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64) for p in ("HH", "HV")}
    with h5py.File(path, "w") as f:
        ident = f.create_group("science/LSAR/identification")
        ident["missionId"] = np.bytes_("NISAR")
        ident["productType"] = np.bytes_("RSLC")
        ident["zeroDopplerStartTime"] = np.bytes_("2025-11-02T10:00:00.000000")
        ident["lookDirection"] = np.bytes_("Left")
        sw = f.create_group(f"{base}/swaths")
        t = sw.create_dataset("zeroDopplerTime", data=36000.0 + np.arange(h) * 1e-3)
        t.attrs["units"] = np.bytes_("seconds since 2025-11-02 00:00:00")
        fb = sw.create_group("frequencyB")
        fb["listOfPolarizations"] = np.array([b"HH", b"HV"])
        fb["slantRange"] = 900_000.0 + np.arange(w) * 5.0
        for p, v in z.items():
            fb[p] = _complex32(v)
        geo = f.create_group(f"{base}/metadata/geolocationGrid")
        gt, gr = 36000.0 + np.linspace(0, h * 1e-3, 5), 900_000.0 + np.linspace(0, w * 5.0, 4)
        geo["zeroDopplerTime"], geo["slantRange"] = gt, gr
        geo["heightAboveEllipsoid"] = np.array([-500.0, 0.0, 500.0])
        lon = 10.0 + 0.001 * np.arange(4)[None, :] + 0.0005 * np.arange(5)[:, None]
        lat = 45.0 + 0.002 * np.arange(5)[:, None] + 0 * np.arange(4)[None, :]
        geo["coordinateX"] = np.stack([lon - 1, lon, lon + 1])  # only the 0 m layer is right
        geo["coordinateY"] = np.stack([lat - 1, lat, lat + 1])
        geo["epsg"] = np.int32(4326)
        cal = f.create_group(f"{base}/metadata/calibrationInformation/geometry")
        cal["zeroDopplerTime"], cal["slantRange"] = gt, gr
        cal["sigma0"] = np.linspace(0.5, 1.5, 20).reshape(5, 4)
    return {"z": z, "gt": gt, "gr": gr, "lon": lon, "lat": lat}


def test_an_rslc_of_the_current_layout_ingests_frequency_b_with_its_sigma0_lut(tmp_path: Path) -> None:
    from scipy.interpolate import RegularGridInterpolator

    built = build_rslc(tmp_path / "NISAR_L1_RSLC.h5")
    (res,) = ingest([tmp_path / "NISAR_L1_RSLC.h5"], tmp_path / "a.zarr", IngestConfig(frequency="B"))
    assert res.scene_id == "NISAR_L1_RSLC_freqB"
    got = _pixels(tmp_path / "a.zarr", res.scene_id)
    t = 36000.0 + np.arange(90) * 1e-3
    r = 900_000.0 + np.arange(70) * 5.0
    tt, rr = np.meshgrid(t, r, indexing="ij")
    lut = RegularGridInterpolator((built["gt"], built["gr"]), np.linspace(0.5, 1.5, 20).reshape(5, 4),
                                  bounds_error=False, fill_value=None)(np.stack([tt.ravel(), rr.ravel()], 1))
    for k, pol in enumerate(("HH", "HV")):
        c32 = _complex32(built["z"][pol])
        power = c32["r"].astype(np.float32) ** 2 + c32["i"].astype(np.float32) ** 2
        np.testing.assert_allclose(got[k], power * lut.reshape(90, 70).astype(np.float32), rtol=1e-6)
    rec = Archive(tmp_path / "a.zarr").record(res.scene_id)
    assert rec.sensor == "NISAR" and rec.polarisations == ("HH", "HV")
    assert rec.acquisition_time.startswith("2025-11-02T10:00:00")
    # GCPs from the grid's 0 m layer (the others are 1 degree off).
    west, south, east, north = rec.bbox_lonlat
    assert 9.99 < west < east < 10.01 and 44.99 < south < north < 45.01


def test_a_gslc_grid_gets_its_affine_transform(tmp_path: Path) -> None:
    h, w = 40, 60
    z = (np.arange(h * w).reshape(h, w) + 1j).astype(np.complex64)
    with h5py.File(tmp_path / "gslc.h5", "w") as f:
        fa = f.create_group("science/LSAR/GSLC/grids/frequencyA")
        fa["listOfPolarizations"] = np.array([b"VV"])
        fa["VV"] = z
        fa["xCoordinates"] = 500_000.0 + 5.0 * (np.arange(w) + 0.5)
        fa["yCoordinates"] = 4_000_000.0 - 2.5 * (np.arange(h) + 0.5)
        proj = fa.create_dataset("projection", data=np.uint32(32615))
        proj.attrs["epsg_code"] = np.int32(32615)
        f["science/LSAR/identification/zeroDopplerStartTime"] = np.bytes_("2026-01-05T01:02:03")
    (res,) = ingest([tmp_path / "gslc.h5"], tmp_path / "a.zarr", IngestConfig(calibration="beta0"))
    scene = Archive(tmp_path / "a.zarr").open_scene(res.scene_id)
    assert scene.rio.transform().to_gdal() == (500_000.0, 5.0, 0.0, 4_000_000.0, 0.0, -2.5)
    assert scene.rio.crs.to_epsg() == 32615
    np.testing.assert_allclose(scene["backscatter"].values[0], np.abs(z) ** 2, rtol=1e-6)
    assert Archive(tmp_path / "a.zarr").record(res.scene_id).pixel_spacing_m == (2.5, 5.0)


def test_nisar_errors_are_one_line_naming_the_file(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    notnisar = tmp_path / "other.h5"
    with h5py.File(notnisar, "w") as f:
        f["x"] = np.zeros(3)
    runner = CliRunner()
    for path, text in ((bad, "not a readable HDF5 file"), (notnisar, "not a NISAR product")):
        out = runner.invoke(app, ["ingest", str(path), "-a", str(tmp_path / "a.zarr"), "-q"])
        assert out.exit_code == 1, out.output
        assert out.output.startswith(f"sarray: error: {path}: ") and text in out.output
        assert len(out.output.strip().splitlines()) == 1
    assert not (tmp_path / "a.zarr").exists()
    # A compound that is not (r, i) is refused, naming the raster.
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f["science/LSAR/RSLC/swaths/frequencyA/HH"] = np.zeros((4, 4), dtype=[("a", "f4")])
    with pytest.raises(IngestError, match=r"frequencyA/HH has dtype"):
        ingest([tmp_path / "odd.h5"], tmp_path / "a.zarr", IngestConfig(calibration="none"))


def test_nisar_from_a_bucket_equals_the_local_file(data_dir: Path, s3_server, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An s3:// NISAR product is read by h5py through obstore's fsspec file (ranged reads): the
    local file's pixels, georeferencing and checksum."""
    import obstore

    from sarray.archive.location import Location
    from sarray.archive.store import Archive
    from sarray.errors import IngestError
    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    h5 = data_dir / "nisar/winnipeg.h5"
    bucket = s3_server.create_bucket("nisar-products").removeprefix("s3://")
    obstore.put(Location("s3", bucket, "").object_store(), "l1/winnipeg.h5", h5.read_bytes())
    cfg = IngestConfig(calibration="beta0")
    (local,) = ingest([h5], tmp_path / "a.zarr", cfg)
    (remote,) = ingest([f"s3://{bucket}/l1/winnipeg.h5"], tmp_path / "b.zarr", cfg)
    assert remote.scene_id == local.scene_id
    a, b = Archive(tmp_path / "a.zarr"), Archive(tmp_path / "b.zarr")
    want = a.open_scene(local.scene_id)["backscatter"].values
    assert np.ptp(want) > 0
    np.testing.assert_array_equal(b.open_scene(remote.scene_id)["backscatter"].values, want)
    ra, rb = a.record(local.scene_id), b.record(remote.scene_id)
    assert ra.source_sha256 == rb.source_sha256 and ra.bbox_lonlat == rb.bbox_lonlat
    with pytest.raises(IngestError, match=rf"s3://{bucket}/l1/nope.h5: no such object"):
        ingest([f"s3://{bucket}/l1/nope.h5"], tmp_path / "c.zarr", cfg)
