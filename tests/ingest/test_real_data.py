"""Every spaceborne and airborne set in ../shared/data ingests, with exact georeferencing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sarray.archive.describe import describe_scene
from sarray.archive.export import export_cog
from sarray.archive.store import Archive
from sarray.ingest.config import IngestConfig, Window
from sarray.ingest.run import ingest

S1 = "sentinel1"
CASES = {
    # id: (relative paths, config kwargs, expected (pols, units))
    "sen1floods11": ([f"{S1}/sen1floods11/Spain_7370579_S1Hand.tif"], {}, (("VV", "VH"), "db")),
    "pyrosar": ([f"{S1}/pyrosar/S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"], {},
                (("VV",), "db")),
    "rio-tiler-pds-iw": (
        [f"{S1}/rio-tiler-pds/S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B/measurement/iw-vv.tiff",
         f"{S1}/rio-tiler-pds/S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B/measurement/iw-vh.tiff"],
        {"grouping": "stack", "scene_id": "S1A_FD5B"}, (("VV", "VH"), "dn")),
    "rio-tiler-pds-s1": (
        [f"{S1}/rio-tiler-pds/S1A_S1_GRDH_1SDV_20230809T020729_20230809T020754_049792_05FCE6_1175/measurement/s1-vh.tiff"],
        {}, (("VH",), "dn")),
    "opensar-date": (
        [f"{S1}/opensar-vh-stack/S32631X402380Y1491460sS1_A_vh_mtfil/S32631X402380Y1491460sS1_A_vh_20150403_0001_A_mtfil_amp.tif"],
        {}, (("VH",), "dn")),
    "umbra": (["umbra/umbra_yasur_train.tif"],
              {"sensor": "Umbra-04", "acquisition_time": "2023-02-12T00:00:00", "pols": ("VV",)},
              (("VV",), "dn")),
    "spacenet6": ([f"airborne/spacenet6-capella/sar_{p}.tif" for p in ("hh", "hv", "vh", "vv")],
                  {"grouping": "stack", "platform": "airborne", "scene_id": "capella"},
                  (("HH", "HV", "VH", "VV"), "linear")),
    "uavsar-utm": (["airborne/uavsar-grand-mesa/uavsar_utm.amp1.real.tif"],
                   {"platform": "airborne", "pols": ("HH",)}, (("HH",), "linear")),
    "uavsar-latlon": (["airborne/uavsar-grand-mesa/uavsar_latlon.amp1.real.tif"],
                      {"platform": "airborne", "pols": ("HH",)}, (("HH",), "linear")),
    "mstar": (["airborne/mstar-chips/0/00001.jpeg"],
              {"platform": "airborne", "spacing_m": 0.3}, (("B1",), "dn")),
    "safe-grd": ([f"{S1}/safe/S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"],
                 {"window": Window(row=4000, col=9000, height=600, width=700)}, (("VV",), "linear")),
    "safe-slc-burst": ([f"{S1}/safe/S1B_IW_SLC__1SDV_20210401T052622_20210401T052650_026269_032297_EFA4.SAFE"],
                       {"swath": "IW1", "burst": 2, "window": Window(row=100, col=300, height=400, width=900)},
                       (("VV", "VH"), "linear")),
    "safe-grd-dn": ([f"{S1}/safe/S1B_IW_GRDH_1SDV_20210401T052623_20210401T052648_026269_032297_ECC8.SAFE"],
                    {"calibration": "none", "window": Window(row=0, col=0, height=512, width=512)},
                    (("VV",), "dn")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_real_set_ingests(case: str, data_dir: Path, tmp_path: Path) -> None:
    rel, kwargs, (pols, units) = CASES[case]
    paths = [data_dir / r for r in rel]
    arch = tmp_path / "a.zarr"
    (res,) = ingest(paths, arch, IngestConfig(**kwargs))
    assert res.status == "added"
    rec = Archive(arch).record(res.scene_id)
    assert rec.polarisations == pols
    assert rec.units == units
    ds = Archive(arch).open_scene(res.scene_id)
    values = ds["backscatter"].values
    assert values.dtype == np.float32 and values.shape == rec.shape
    assert np.isfinite(values).any()
    stats = ds.attrs["statistics"]
    assert set(stats) == set(pols) and all(s["valid_fraction"] > 0 for s in stats.values())
    if paths[0].suffix in (".tif", ".tiff", ".jpeg") and "window" not in kwargs:
        # Pixels equal the source (|z| for complex, nodata as NaN).
        with rasterio.open(paths[0]) as src:
            raw = src.read(1)
            nodata = src.nodata
        expected = (np.abs(raw) if np.iscomplexobj(raw) else raw).astype(np.float32)
        if nodata is not None and not np.isnan(nodata):
            expected[raw == nodata] = np.nan
        np.testing.assert_array_equal(values[0], expected)


@pytest.mark.parametrize("rel", ["umbra/umbra_yasur_train.tif", "airborne/spacenet6-capella/sar_hh.tif"])
def test_rotated_geotransform_round_trips_exactly(rel: str, data_dir: Path, tmp_path: Path) -> None:
    path = data_dir / rel
    arch = Archive(tmp_path / "a.zarr")
    (res,) = ingest([path], arch.path, IngestConfig())
    with rasterio.open(path) as src:
        gdal = tuple(src.transform.to_gdal())
        crs = src.crs
    assert src.transform.b != 0  # it really is rotated
    d = describe_scene(arch, res.scene_id)
    assert tuple(d["geotransform"]) == gdal  # exact, not approximate
    assert arch.open_scene(res.scene_id).rio.transform() == src.transform
    cog = export_cog(arch, res.scene_id, tmp_path / "out.tif")
    with rasterio.open(cog) as out:
        assert tuple(out.transform.to_gdal()) == gdal
        assert out.crs == crs
        assert out.driver == "GTiff" and out.overviews(1) is not None


def test_gcps_survive_ingest_and_export(data_dir: Path, tmp_path: Path) -> None:
    path = data_dir / "sentinel1/rio-tiler-pds/S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B/measurement/iw-vv.tiff"
    with rasterio.open(path) as src:
        src_gcps, src_crs = src.gcps
    arch = Archive(tmp_path / "a.zarr")
    (res,) = ingest([path], arch.path, IngestConfig())
    ds = arch.open_scene(res.scene_id)
    gcps = ds.rio.get_gcps()
    assert len(gcps) == len(src_gcps) == 210
    for a, b in zip(gcps, src_gcps):
        assert (a.row, a.col, a.x, a.y) == (b.row, b.col, b.x, b.y)
    assert describe_scene(arch, res.scene_id)["georeferencing"] == "gcps"
    rec = arch.record(res.scene_id)
    assert rec.bbox_lonlat is not None and -180 <= rec.bbox_lonlat[0] < rec.bbox_lonlat[2] <= 180
    with rasterio.open(export_cog(arch, res.scene_id, tmp_path / "g.tif")) as out:
        out_gcps, out_crs = out.gcps
        assert len(out_gcps) == 210 and out_crs == src_crs
        assert (out_gcps[5].x, out_gcps[5].y) == (src_gcps[5].x, src_gcps[5].y)


EFA4 = "sentinel1/safe/S1B_IW_SLC__1SDV_20210401T052622_20210401T052650_026269_032297_EFA4.SAFE"


@pytest.mark.parametrize("window", [
    Window(row=1200, col=5000, height=300, width=1500),
    # Three archive write blocks of rows (and nine read bands): calibration block by block
    # still gives xarray-sentinel's values on the whole window.
    Window(row=900, col=4000, height=2300, width=600),
], ids=["one-block", "across-blocks"])
def test_safe_calibration_equals_xarray_sentinel(window: Window, data_dir: Path, tmp_path: Path) -> None:
    import xarray as xr
    import xarray_sentinel as xs

    product = data_dir / EFA4
    arch = Archive(tmp_path / "a.zarr")
    (res,) = ingest([product], arch.path, IngestConfig(swath="IW1", window=window, pols=("VV",)))
    ours = arch.open_scene(res.scene_id)["backscatter"].sel(pol="VV").values
    meas = xr.open_dataset(product, engine="sentinel-1", group="IW1/VV", chunks=2048)["measurement"]
    meas = meas.isel(line=slice(window.row, window.row + window.height),
                     pixel=slice(window.col, window.col + window.width))
    cal = xs.open_sentinel1_dataset(str(product), group="IW1/VV/calibration")
    theirs = xs.calibrate_intensity(meas, cal["sigmaNought"]).values
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert np.ptp(ours) > 0  # the LUT varies across the window: a real check, not zeros
    attrs = arch.open_scene(res.scene_id).attrs
    assert attrs["calibration"] == "sigma0" and attrs["quantity"] == "intensity"
    assert attrs["georeferencing"] == "gcps"


def test_safe_without_calibration_xml_fails_clearly(data_dir: Path, tmp_path: Path) -> None:
    from sarray.errors import IngestError

    product = data_dir / "sentinel1/safe/S1B_IW_GRDH_1SDV_20210401T052623_20210401T052648_026269_032297_ECC8.SAFE"
    with pytest.raises(IngestError, match="no calibration annotation.*--calibration none"):
        ingest([product], tmp_path / "a.zarr", IngestConfig(window=Window(row=0, col=0, height=64, width=64)))
    assert not (tmp_path / "a.zarr").exists()


def test_info_json_has_the_promised_fields(data_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sarray.cli import app

    arch = tmp_path / "a.zarr"
    ingest([data_dir / "umbra/umbra_yasur_train.tif"], arch, IngestConfig())
    out = CliRunner().invoke(app, ["info", str(arch), "umbra_yasur_train", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["shape"] == [1, 1500, 2000]
    assert "UTM zone 59S" in d["crs_wkt"]
    assert len(d["geotransform"]) == 6 and d["units"] == "dn" and d["polarisations"] == ["B1"]


def test_opensar_time_series_ingests_as_dated_scenes_in_parallel(data_dir: Path, tmp_path: Path) -> None:
    from sarray.archive.store import SceneFilter

    files = sorted((data_dir / "sentinel1/opensar-vh-stack/S32631X402380Y1491460sS1_A_vh_mtfil").glob("*.tif"))
    assert len(files) == 60
    arch = Archive(tmp_path / "a.zarr")
    results = ingest(files, arch.path, IngestConfig(sensor="Sentinel-1A", parallel_files=8))
    assert [r.status for r in results] == ["added"] * 60
    recs = arch.find()
    assert len({r.acquisition_time for r in recs}) == 60
    in_2016 = arch.find(SceneFilter(start="2016-01-01", end="2016-12-31T23:59:59"))
    assert 0 < len(in_2016) < 60
    assert all(r.acquisition_time.startswith("2016") for r in in_2016)
    # Pixels of one scene equal its file (nodata 0 becomes NaN).
    with rasterio.open(files[7]) as src:
        raw = src.read(1).astype(np.float32)
    raw[raw == 0] = np.nan
    got = arch.open_scene(results[7].scene_id)["backscatter"].values[0]
    np.testing.assert_array_equal(got, raw)
    # Each scene's statistics are its own (no mix-up between files staged together).
    for k in (0, 7, 59):
        with rasterio.open(files[k]) as src:
            v = src.read(1).astype(np.float64)
        mean = arch.open_scene(results[k].scene_id).attrs["statistics"]["VH"]["mean"]
        assert mean == pytest.approx(v[v != 0].mean(), rel=1e-9)


def test_safe_calibration_is_planned_without_interpolating_the_whole_swath(data_dir: Path) -> None:
    """Planning a calibrated whole-swath ingest allocates no LUT of the swath's size: the LUT is
    interpolated block by block when the graph runs (a whole swath was killed at 23 GB)."""
    import tracemalloc

    from sarray.ingest.safe import open_safe

    product = data_dir / EFA4
    tracemalloc.start()
    try:
        src = open_safe(product, IngestConfig(swath="IW1", pols=("VV",)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n_px = int(np.prod(src.data.shape))
    assert n_px > 100_000_000  # a whole swath
    assert peak < 0.02 * n_px * 8, f"planning allocated {peak / 2**20:.0f} MiB"
