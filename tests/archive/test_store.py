"""Archive safety: atomic commits, crash recovery, idempotency, catalog filters, layout rules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sarray.archive.layout import ArchiveLayout, SceneRecord, sanitize_scene_id, validate_scene_id
from sarray.archive.store import Archive, SceneFilter
from sarray.errors import ArchiveError, ConfigError
from sarray.ingest.config import IngestConfig
from sarray.ingest.run import ingest
from sarray.testing.scenes import speckle_image, tree_digest, write_geotiff


@pytest.fixture
def small_tif(tmp_path: Path) -> Path:
    return write_geotiff(tmp_path / "small_vv.tif", speckle_image((300, 500), seed=11))


def test_ingest_twice_is_a_no_op(small_tif: Path, tmp_path: Path) -> None:
    arch = tmp_path / "a.zarr"
    (first,) = ingest([small_tif], arch)
    before = tree_digest(arch)
    (again,) = ingest([small_tif], arch)
    assert (first.status, again.status) == ("added", "exists")
    assert tree_digest(arch) == before


def test_same_id_other_source_is_refused(small_tif: Path, tmp_path: Path) -> None:
    arch = tmp_path / "a.zarr"
    ingest([small_tif], arch)
    (tmp_path / "other").mkdir()
    other = write_geotiff(tmp_path / "other" / "small_vv.tif", speckle_image((300, 500), seed=12))
    before = tree_digest(arch)
    with pytest.raises(ArchiveError, match="already in .* --scene-id"):
        ingest([other], arch)
    assert tree_digest(arch) == before
    (res,) = ingest([other], arch, IngestConfig(scene_id="small_vv_2"))
    assert res.status == "added" and len(Archive(arch).catalog()) == 2


def test_window_of_same_file_is_a_new_scene(small_tif: Path, tmp_path: Path) -> None:
    from sarray.ingest.config import Window

    arch = tmp_path / "a.zarr"
    ingest([small_tif], arch)
    (res,) = ingest([small_tif], arch, IngestConfig(scene_id="crop", window=Window(row=10, col=20, height=100, width=200)))
    assert res.status == "added" and res.shape == (1, 100, 200)
    ds = Archive(arch).open_scene("crop")
    full = Archive(arch).open_scene("small_vv")
    np.testing.assert_array_equal(ds["backscatter"].values, full["backscatter"].values[:, 10:110, 20:220])
    # The window's transform is the source's shifted by (20 cols, 10 rows).
    assert ds.rio.transform().c == pytest.approx(full.rio.transform().c + 20 * 10)


def test_kill_mid_ingest_then_rerun_completes(tmp_path: Path) -> None:
    src = write_geotiff(tmp_path / "big_vv.tif", speckle_image((3072, 3072), seed=13))
    arch = tmp_path / "a.zarr"
    cmd = [sys.executable, "-m", "sarray.cli", "ingest", str(src), "-a", str(arch), "-q",
           "--chunk-px", "128"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    killed_mid_write = False
    while time.time() < deadline and proc.poll() is None:
        chunks = list((arch / "scenes").glob("*/chunks/*")) if (arch / "scenes").exists() else []
        if len(chunks) >= 20:
            os.kill(proc.pid, signal.SIGKILL)
            killed_mid_write = True
            break
        time.sleep(0.005)
    proc.wait()
    assert killed_mid_write, "the ingest finished before it could be killed; use a larger file"
    # Nothing half-written is visible: no archive, or one whose catalog lacks the scene.
    assert Archive(arch).catalog() == {}
    assert [i["scene_id"] for i in Archive(arch).intents()] == ["big_vv"]  # the debris...
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "added" in out.stdout
    assert Archive(arch).intents() == []  # ...is cleaned up by the next run
    assert [p.name.split(".")[0] for p in (arch / "scenes").iterdir()] == ["big_vv"]
    ds = Archive(arch).open_scene("big_vv")
    import rasterio

    with rasterio.open(src) as s:
        np.testing.assert_array_equal(ds["backscatter"].values[0], s.read(1))


def test_crash_between_scene_commit_and_catalog_is_recovered(small_tif: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from sarray.archive.catalog import Catalog

    arch = tmp_path / "a.zarr"
    ingest([write_geotiff(tmp_path / "first_vv.tif", speckle_image((64, 64), seed=1))], arch)
    real = Catalog.insert

    def crash(self: Catalog, rows: list, **kw: object) -> None:
        raise KeyboardInterrupt("simulated crash after the scene commit")

    monkeypatch.setattr(Catalog, "insert", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest([small_tif], arch)
    monkeypatch.setattr(Catalog, "insert", real)
    assert "small_vv" not in Archive(arch).catalog()  # the catalog never listed a half scene
    assert [i["scene_id"] for i in Archive(arch).intents()] == ["small_vv"]
    (res,) = ingest([small_tif], arch)  # running again finishes it
    assert res.status == "exists"
    assert set(Archive(arch).catalog()) == {"first_vv", "small_vv"}
    assert Archive(arch).intents() == []
    assert Archive(arch).open_scene("small_vv")["backscatter"].shape == (1, 300, 500)


def test_four_concurrent_local_ingests_all_land(tmp_path: Path) -> None:
    arch = tmp_path / "a.zarr"
    srcs = [write_geotiff(tmp_path / f"c{i}_vv.tif", speckle_image((200, 200), seed=40 + i))
            for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-m", "sarray.cli", "ingest", str(s), "-a", str(arch),
                               "-q", "--chunk-px", "64"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in srcs]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1] for o in outs]
    a = Archive(arch)
    assert sorted(a.catalog()) == [f"c{i}_vv" for i in range(4)]
    assert a.intents() == []
    for i in range(4):
        assert a.open_scene(f"c{i}_vv")["backscatter"].shape == (1, 200, 200)


def _rec(scene_id: str, **kw: object) -> SceneRecord:
    base = dict(scene_id=scene_id, sensor="Sentinel-1A", platform="spaceborne",
                acquisition_time="2021-04-01T05:26:22", bbox_lonlat=(10.0, 40.0, 11.0, 41.0),
                shape=(1, 10, 10), pixel_spacing_m=(10.0, 10.0), polarisations=("VV",),
                units="db", source_sha256="x")
    base.update(kw)
    return SceneRecord(**base)  # type: ignore[arg-type]


def test_catalog_filters() -> None:
    recs = [
        _rec("a"),
        _rec("b", sensor="Umbra-04", platform="spaceborne", acquisition_time="2023-02-12T00:00:00",
             bbox_lonlat=(169.4, -19.6, 169.5, -19.5)),
        _rec("c", sensor="UAVSAR", platform="airborne", acquisition_time=None, bbox_lonlat=None),
    ]
    pick = lambda f: [r.scene_id for r in recs if f.matches(r)]  # noqa: E731
    assert pick(SceneFilter(sensor="sentinel-1")) == ["a"]
    assert pick(SceneFilter(platform="airborne")) == ["c"]
    assert pick(SceneFilter(start="2022-01-01")) == ["b"]
    assert pick(SceneFilter(end="2022-01-01T00:00:00Z")) == ["a"]
    assert pick(SceneFilter(bbox_lonlat=(10.5, 40.5, 12, 42))) == ["a"]
    assert pick(SceneFilter(bbox_lonlat=(0, 0, 1, 1))) == []
    assert pick(SceneFilter()) == ["a", "b", "c"]


def test_ls_filters_real_archive_without_opening_scenes(small_tif: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    arch = tmp_path / "a.zarr"
    ingest([small_tif], arch, IngestConfig(sensor="TestSat", acquisition_time="2020-05-01T00:00:00"))
    ingest([write_geotiff(tmp_path / "air_hh.tif", speckle_image((64, 64), seed=2))], arch,
           IngestConfig(platform="airborne"))

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("ls opened a scene")

    monkeypatch.setattr(Archive, "open_scene", boom)
    a = Archive(arch)
    assert [r.scene_id for r in a.find(SceneFilter(platform="airborne"))] == ["air_hh"]
    assert [r.scene_id for r in a.find(SceneFilter(sensor="testsat", start="2020-01-01"))] == ["small_vv"]
    bbox = a.record("small_vv").bbox_lonlat
    assert bbox is not None and 4.0 < bbox[0] < bbox[2] < 5.0  # UTM 31N near 4.4 E


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "..", ".hidden", "a" * 129, "sp ace", "x..y"])
def test_unsafe_scene_ids_are_rejected(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a safe scene id"):
        validate_scene_id(bad)


def test_sanitize_scene_id() -> None:
    assert sanitize_scene_id("S1A IW/GRD..x") == "S1A_IW_GRD_x"
    assert sanitize_scene_id("...") == "scene"


def test_layout_validation_and_sharding(small_tif: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shard_px"):
        ArchiveLayout(chunk_px=256, shard_px=300)
    with pytest.raises(ConfigError, match="chunk_px"):
        ArchiveLayout(chunk_px=8)
    layout = ArchiveLayout(chunk_px=64, shard_px=256)
    assert ArchiveLayout.from_dict(layout.to_dict()) == layout
    arch = tmp_path / "a.zarr"
    ingest([small_tif], arch, IngestConfig(layout=layout))
    import zarr

    session = Archive(arch).scene_session("small_vv")
    arr = zarr.open_group(store=session.store, mode="r")["backscatter"]
    assert arr.chunks == (1, 64, 64) and arr.shards == (1, 256, 256)
    assert "Crc32cCodec" in repr(arr.metadata.codecs)
    ds = Archive(arch).open_scene("small_vv")
    import rasterio

    with rasterio.open(small_tif) as s:
        np.testing.assert_array_equal(ds["backscatter"].values[0], s.read(1))


def test_require_refuses_non_archives(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not found"):
        Archive(tmp_path / "none.zarr").require()
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    with pytest.raises(ArchiveError, match="not a sarray archive"):
        ingest([tmp_path / "x.tif"], tmp_path / "plain")


@pytest.mark.parametrize("reserved", ["zarr.json", "catalog", "scenes", "pending", "sarray.json",
                                      "ZARR.JSON"])
def test_reserved_scene_ids_are_refused(reserved: str) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        validate_scene_id(reserved)
    assert sanitize_scene_id(reserved) != reserved


def test_catalog_query_equals_in_memory_filters(tmp_path: Path) -> None:
    from sarray.archive.catalog import Catalog, CatalogRow

    cat = Catalog(Archive(tmp_path / "a.zarr").location.child("catalog"))
    cat.create()
    recs = [_rec("a"), _rec("b", sensor="Umbra-04", acquisition_time="2023-02-12T00:00:00",
                            bbox_lonlat=(169.4, -19.6, 169.5, -19.5), source_sha256="sb"),
            _rec("c", sensor="UAVSAR", platform="airborne", acquisition_time=None, bbox_lonlat=None,
                 source_sha256="sc")]
    res = cat.insert([CatalogRow(record=r, location=f"{r.scene_id}.x") for r in recs])
    assert [r.status for r in res] == ["added"] * 3
    # The same source again, under another id: reported as the existing one, not added.
    again = cat.insert([CatalogRow(record=_rec("a2"), location="a2.x")])
    assert (again[0].status, again[0].existing) == ("exists", "a")
    taken = cat.insert([CatalogRow(record=_rec("a", source_sha256="y"), location="a.y")])
    assert taken[0].status == "taken" and len(cat) == 3
    for flt in [SceneFilter(sensor="sentinel-1"), SceneFilter(platform="airborne"),
                SceneFilter(start="2022-01-01"), SceneFilter(end="2022-01-01T00:00:00Z"),
                SceneFilter(bbox_lonlat=(10.5, 40.5, 12, 42)), SceneFilter(bbox_lonlat=(0, 0, 1, 1)),
                SceneFilter(), SceneFilter(bbox_lonlat=(160, -20, 170, 0), start="2023-01-01")]:
        want = sorted(r.scene_id for r in recs if flt.matches(r))
        assert sorted(r.scene_id for r in cat.query(flt)) == want, flt
    assert cat.lookup("b") == (recs[1], "b.x")
    assert cat.lookup("zz") is None


def test_catalog_commit_retries_a_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers insert from the same tip: the second one's commit conflicts, is re-applied
    on the new tip, and both rows are kept."""
    import icechunk

    from sarray.archive.catalog import Catalog, CatalogRow

    loc = Archive(tmp_path / "a.zarr").location.child("catalog")
    Catalog(loc).create()
    first, second = Catalog(loc), Catalog(loc)
    real_commit = icechunk.Session.commit
    state = {"raced": False}

    def commit(self: icechunk.Session, message: str, *a: object, **k: object) -> str:
        if not state["raced"] and message == "add b":
            state["raced"] = True  # another writer lands between our read and our commit
            first.insert([CatalogRow(record=_rec("a"), location="a.x")], message="add a")
        return real_commit(self, message, *a, **k)

    monkeypatch.setattr(icechunk.Session, "commit", commit)
    res = second.insert([CatalogRow(record=_rec("b", source_sha256="b"), location="b.x")],
                        message="add b")
    assert state["raced"] and res[0].status == "added"
    assert sorted(Catalog(loc).ids()) == ["a", "b"]


def test_legacy_archive_is_refused_and_migrates(small_tif: Path, tmp_path: Path) -> None:
    """An archive of the first layout (plain Zarr, catalog in the root attributes) is refused
    with the command that converts it; `sarray migrate` converts it and leaves it as it was."""
    import json

    import rioxarray  # noqa: F401
    import xarray as xr
    import zarr
    from typer.testing import CliRunner

    from sarray.cli import app

    old = tmp_path / "old.zarr"
    tmp_new = tmp_path / "tmp.zarr"
    ingest([small_tif], tmp_new)
    ds = Archive(tmp_new).open_scene("small_vv")
    rec = Archive(tmp_new).record("small_vv")
    zarr.open_group(str(old), mode="w", zarr_format=3,
                    attributes={"sarray_layout_version": 1,
                                "sarray_catalog": {"small_vv": json.loads(json.dumps(rec.to_dict()))}})
    for v in ds.variables.values():
        v.encoding = {}
    ds.to_zarr(str(old), group="scenes/small_vv", zarr_format=3, consolidated=False)
    before = tree_digest(old)
    with pytest.raises(ArchiveError, match="sarray migrate"):
        Archive(old).require()
    runner = CliRunner()
    res = runner.invoke(app, ["ls", str(old)])
    assert res.exit_code == 1 and "sarray migrate" in res.output
    res = runner.invoke(app, ["migrate", str(old), str(tmp_path / "new.zarr"), "-q"])
    assert res.exit_code == 0, res.output
    assert tree_digest(old) == before
    new = Archive(tmp_path / "new.zarr")
    assert new.record("small_vv") == rec
    got = new.open_scene("small_vv")
    xr.testing.assert_identical(got["backscatter"].load(), ds["backscatter"].load())
    assert got.rio.transform() == ds.rio.transform()
    res = runner.invoke(app, ["migrate", str(old), str(tmp_path / "new.zarr"), "-q"])
    assert res.exit_code == 0 and "migrated 0 scene(s)" in res.output
