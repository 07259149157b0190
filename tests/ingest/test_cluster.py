"""Ingest staged across a multi-node Ray cluster (ray.cluster_utils.Cluster on this machine),
through the job entry point with the arguments of `sarray ingest`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from sarray.archive.layout import ArchiveLayout
from sarray.archive.store import Archive
from sarray.ingest.config import IngestConfig
from sarray.ingest.run import ingest
from sarray.testing.scenes import speckle_image, tree_digest, write_corrupt_geotiff, write_geotiff

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # The driver's node has no CPU slot: every wave is staged on one of the two workers.
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(2):
            c.add_node(num_cpus=1)
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()


def _job(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run jobs/ingest.py as `python jobs/ingest.py ARGS` would, in this process."""
    import runpy

    monkeypatch.setattr(sys, "argv", [str(REPO / "jobs" / "ingest.py"), *args])
    try:
        runpy.run_path(str(REPO / "jobs" / "ingest.py"), run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_twenty_files_are_staged_on_several_nodes_and_land_once(cluster, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    tifs = [write_geotiff(tmp_path / f"f{i:02d}_vv.tif", speckle_image((150, 140), seed=i))
            for i in range(20)]
    arch = tmp_path / "a.zarr"
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    rc = _job([*map(str, tifs), "--archive", str(arch), "-q", "--chunk-px", "64"], monkeypatch)
    out = capsys.readouterr().out.splitlines()
    assert rc == 0, out
    assert len(out) == 20 and all(line.startswith("added") for line in out)
    nodes = {n for line in out for n in line.split("staged on ")[1].split(",")}
    assert len(nodes) >= 2  # both worker nodes staged files
    listed = [r.scene_id for r in Archive(arch).find()]
    assert sorted(listed) == sorted(f"f{i:02d}_vv" for i in range(20))  # each once
    # Same pixels as a local ingest.
    local = tmp_path / "b.zarr"
    ingest(tifs[:2], local, IngestConfig())
    for sid in ("f00_vv", "f01_vv"):
        np.testing.assert_array_equal(Archive(arch).open_scene(sid)["backscatter"].values,
                                      Archive(local).open_scene(sid)["backscatter"].values)
    # A scene of several waves (one 64-px chunk row each: 18 waves) is split across tasks along
    # whole chunk rows, and equals a local ingest.
    big = write_geotiff(tmp_path / "big_vv.tif", speckle_image((1100, 90), seed=99))
    from sarray import config as knobs

    monkeypatch.setattr(knobs, "INGEST_WAVE_MPX", 0)  # one block row per wave
    capsys.readouterr()
    rc = _job([str(big), "--archive", str(arch), "-q", "--chunk-px", "64"], monkeypatch)
    (line,) = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(line.split("staged on ")[1].split(",")) == 2  # 18 waves, both nodes
    ingest([big], local, IngestConfig())
    np.testing.assert_array_equal(Archive(arch).open_scene("big_vv")["backscatter"].values,
                                  Archive(local).open_scene("big_vv")["backscatter"].values)


def test_a_bad_file_on_a_worker_leaves_the_archive_as_it_was(cluster, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    good = [write_geotiff(tmp_path / f"g{i}_vv.tif", speckle_image((200, 200), seed=i)) for i in range(3)]
    bad = write_corrupt_geotiff(tmp_path / "bad_vv.tif", seed=9)
    arch = tmp_path / "a.zarr"
    ingest(good[:1], arch, IngestConfig())
    before = tree_digest(arch)
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    from sarray.errors import IngestError

    with pytest.raises(IngestError, match="bad_vv.tif: read failed"):
        ingest([*good[1:], bad], arch, IngestConfig(units="linear", layout=ArchiveLayout(chunk_px=256)),
               on_ray=True)
    assert tree_digest(arch) == before


def test_a_geotiff_on_s3_ingests_like_the_local_file(cluster, s3_server, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """s3:// inputs (what cluster nodes read when the files are not on a shared filesystem):
    the same pixels and the same source checksum as the local file; a missing key is one line."""
    import obstore

    from sarray.archive.location import Location

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    bucket = s3_server.create_bucket("inputs").removeprefix("s3://")
    tif = write_geotiff(tmp_path / "up_vv.tif", speckle_image((300, 200), seed=4))
    obstore.put(Location("s3", bucket, "").object_store(), "scenes/up_vv.tif", tif.read_bytes())
    url = f"s3://{bucket}/scenes/up_vv.tif"
    (remote,) = ingest([url], tmp_path / "a.zarr", IngestConfig(layout=ArchiveLayout(chunk_px=128)))
    (local,) = ingest([tif], tmp_path / "b.zarr", IngestConfig(layout=ArchiveLayout(chunk_px=128)))
    assert remote.scene_id == local.scene_id == "up_vv" and remote.source_files == (url,)
    a, b = Archive(tmp_path / "a.zarr"), Archive(tmp_path / "b.zarr")
    assert a.record("up_vv").source_sha256 == b.record("up_vv").source_sha256
    np.testing.assert_array_equal(a.open_scene("up_vv")["backscatter"].values,
                                  b.open_scene("up_vv")["backscatter"].values)
    from sarray.errors import IngestError

    # Staged on the cluster's workers, which read the object from S3.
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    (on_ray,) = ingest([url], tmp_path / "c.zarr", IngestConfig(layout=ArchiveLayout(chunk_px=128)),
                       on_ray=True)
    assert on_ray.staged_on
    np.testing.assert_array_equal(Archive(tmp_path / "c.zarr").open_scene("up_vv")["backscatter"].values,
                                  b.open_scene("up_vv")["backscatter"].values)
    with pytest.raises(IngestError, match=rf"s3://{bucket}/scenes/nope.tif: no such object"):
        ingest([f"s3://{bucket}/scenes/nope.tif"], tmp_path / "d.zarr", IngestConfig())
    with pytest.raises(IngestError, match=rf"s3://{bucket}/x.SAFE: not a Sentinel-1 SAFE product"):
        ingest([f"s3://{bucket}/x.SAFE"], tmp_path / "d.zarr", IngestConfig())
    with pytest.raises(IngestError, match=rf"s3://{bucket}/x.h5: no such object"):
        ingest([f"s3://{bucket}/x.h5"], tmp_path / "d.zarr", IngestConfig())


def test_a_zipped_safe_on_s3_is_staged_by_the_workers(cluster, s3_server, data_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A .SAFE.zip at s3:// ingested with --ray: a worker (the head has no CPU slot) reads its
    window's byte ranges through GDAL with the driver's AWS_* settings; the local product's
    pixels bit for bit."""
    import zipfile

    import obstore

    from sarray.archive.location import Location
    from sarray.ingest.config import Window
    from sarray.testing.scenes import safe_with_pixels, zip_safe

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"):
        monkeypatch.delenv(k, raising=False)
    grd = safe_with_pixels(
        data_dir / "sentinel1/safe/S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE",
        tmp_path, rows=(1000, 1400), cols=(5000, 5600), seed=5)
    z = zip_safe(grd, tmp_path / f"{grd.name}.zip", zipfile.ZIP_DEFLATED)
    bucket = s3_server.create_bucket("zipped-safe").removeprefix("s3://")
    obstore.put(Location("s3", bucket, "").object_store(), z.name, z.read_bytes())
    cfg = IngestConfig(window=Window(row=1050, col=5100, height=256, width=384))
    (local,) = ingest([grd], tmp_path / "a.zarr", cfg)
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    (remote,) = ingest([f"s3://{bucket}/{z.name}"], tmp_path / "b.zarr", cfg, on_ray=True)
    assert remote.staged_on and remote.scene_id == local.scene_id
    want = Archive(tmp_path / "a.zarr").open_scene(local.scene_id)["backscatter"].values
    got = Archive(tmp_path / "b.zarr").open_scene(remote.scene_id)["backscatter"].values
    assert np.ptp(want) > 0 and np.array_equal(got, want)
