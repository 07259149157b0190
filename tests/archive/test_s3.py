"""The archive on object storage: every guarantee of a local archive holds on ``s3://``, against
a real S3 API server (moto's, started by the tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from sarray.archive.location import Location
from sarray.archive.store import Archive
from sarray.cli import app
from sarray.ingest.config import IngestConfig
from sarray.ingest.run import ingest
from sarray.testing.s3 import TEST_KEY_ID, TEST_SECRET
from sarray.testing.scenes import speckle_image, write_geotiff


def _objects(url: str) -> dict[str, bytes]:
    loc = Location.parse(url)
    return {k: loc.read_bytes(k) or b"" for k in loc.iter_keys()}


def test_end_to_end_on_s3(s3_archive: str, data_dir: Path, tmp_path: Path) -> None:
    """ingest -> ls -> info -> export COG -> translate -> check, exactly as on a local path."""
    import json

    import ray

    runner = CliRunner()
    umbra = data_dir / "umbra" / "umbra_yasur_train.tif"
    gcp_tif = sorted((data_dir / "sentinel1" / "rio-tiler-pds").glob("*/measurement/*.tiff"))[0]
    res = runner.invoke(app, ["ingest", str(umbra), "-a", s3_archive, "-q", "--window", "0,0,256,320",
                              "--scene-id", "umbra"])
    assert res.exit_code == 0 and "added  umbra" in res.output, res.output
    res = runner.invoke(app, ["ingest", str(gcp_tif), "-a", s3_archive, "-q", "--scene-id", "gcps"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["ls", s3_archive, "--json"])
    assert res.exit_code == 0 and sorted(r["scene_id"] for r in json.loads(res.output)) == ["gcps", "umbra"]
    res = runner.invoke(app, ["info", s3_archive, "gcps", "--json"])
    info = json.loads(res.output)
    assert info["gcp_count"] > 0 and info["georeferencing"] == "gcps"
    # Rotated transform exact, through the archive and out to a COG.
    cog = tmp_path / "umbra.tif"
    assert runner.invoke(app, ["export", s3_archive, "umbra", "-o", str(cog)]).exit_code == 0
    with rasterio.open(umbra) as src, rasterio.open(cog) as out:
        assert out.transform == src.transform and out.transform.b != 0
        np.testing.assert_array_equal(out.read(1), src.read(1, window=((0, 256), (0, 320))))
    cog_gcps = tmp_path / "gcps.tif"
    assert runner.invoke(app, ["export", s3_archive, "gcps", "-o", str(cog_gcps)]).exit_code == 0
    with rasterio.open(gcp_tif) as src, rasterio.open(cog_gcps) as out:
        assert len(out.gcps[0]) == len(src.gcps[0])
    # Translate with the identity stand-in on a local Ray; the output lands in the same bucket.
    from sarray.engine.translate import TranslateConfig, translate

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        (s,) = translate(s3_archive, ["umbra"], TranslateConfig(
            scale=2, chunk_px=128, halo_px=8, consistency="off", output="reflectivity",
            model="tiny-random", replica_class="sarray.testing.replicas:IdentityReplica"),
            progress=False)
    finally:
        ray.shutdown()
    assert s.status == "complete", s.line()
    a = Archive(s3_archive)
    src = a.open_scene("umbra")["backscatter"].values
    out = a.open_scene("umbra_x2")
    np.testing.assert_array_equal(out["backscatter"].values, np.repeat(np.repeat(src, 2, 1), 2, 2))
    prov = out.attrs["provenance"]
    assert prov["source_archive"] == s3_archive
    assert prov["source_snapshot"] == a.scene_snapshot("umbra")
    res = runner.invoke(app, ["check", s3_archive])
    assert res.exit_code == 0 and "checked 3 scene(s)" in res.output, res.output
    # Credentials never reach the archive.
    for key, raw in _objects(s3_archive).items():
        assert TEST_SECRET.encode() not in raw and TEST_KEY_ID.encode() not in raw, key


def test_bad_input_and_repeat_leave_the_bucket_unchanged(s3_archive: str, tmp_path: Path) -> None:
    good = write_geotiff(tmp_path / "good_vv.tif", speckle_image((100, 120), seed=1))
    (r,) = ingest([good], s3_archive)
    assert r.status == "added"
    before = _objects(s3_archive)
    (again,) = ingest([good], s3_archive)
    assert again.status == "exists" and _objects(s3_archive) == before
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    res = CliRunner().invoke(app, ["ingest", str(good.with_name("other_vv.tif")), str(bad), "-a",
                                   s3_archive, "-q"])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert _objects(s3_archive) == before


def test_two_processes_ingest_into_one_s3_archive(s3_archive: str, tmp_path: Path) -> None:
    srcs = [write_geotiff(tmp_path / f"p{i}_vv.tif", speckle_image((160, 160), seed=60 + i))
            for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "sarray.cli", "ingest", str(s), "-a", s3_archive,
                               "-q", "--chunk-px", "64"], env=dict(os.environ),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in srcs]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    a = Archive(s3_archive)
    assert sorted(a.catalog()) == ["p0_vv", "p1_vv"] and a.intents() == []
    for i, s in enumerate(srcs):
        with rasterio.open(s) as f:
            np.testing.assert_array_equal(a.open_scene(f"p{i}_vv")["backscatter"].values[0], f.read(1))


def test_damaged_chunk_on_s3_is_named(s3_archive: str, tmp_path: Path) -> None:
    from sarray.errors import ChunkError

    ingest([write_geotiff(tmp_path / "d_vv.tif", speckle_image((128, 256), seed=2))], s3_archive)
    loc = Location.parse(s3_archive)
    chunk = sorted(k for k in loc.iter_keys() if "/chunks/" in k and k.startswith("scenes/d_vv."))[0]
    raw = bytearray(loc.read_bytes(chunk) or b"")
    raw[len(raw) // 3] ^= 0x04
    loc.write_bytes(chunk, bytes(raw))
    with pytest.raises(ChunkError, match=r"scene d_vv, backscatter chunk \(0, 0, \d\): checksum mismatch"):
        Archive(s3_archive).open_scene("d_vv")["backscatter"].values
    res = CliRunner().invoke(app, ["check", s3_archive])
    assert res.exit_code == 1 and "1 damaged chunk(s)" in res.output


def test_bad_archive_urls_are_refused() -> None:
    from sarray.errors import ConfigError

    for bad, msg in [("s3://key:secret@bucket/a", "embeds credentials"), ("gs://b/a", "not supported"),
                     ("s3:///a", "no bucket"), ("s3://b/a?x=1", "no query")]:
        with pytest.raises(ConfigError, match=msg):
            Location.parse(bad)
    assert Location.parse("s3://b/x/A.zarr/").url == "s3://b/x/A.zarr"


def test_translate_resumes_on_s3_to_the_uninterrupted_result(s3_archive: str, tmp_path: Path) -> None:
    """A time-boxed run (--max-chunks) leaves an unfinished output on S3; the rerun completes
    it from its last commit, equal to a run that was never stopped."""
    import ray

    from sarray.engine.translate import TranslateConfig, translate

    ingest([write_geotiff(tmp_path / "r_vv.tif", speckle_image((96, 128), seed=8, looks=4))],
           s3_archive, IngestConfig(units="linear"))
    base = dict(model="tiny-random", scale=2, chunk_px=32, halo_px=4,
                replica_class="sarray.testing.replicas:SpeckleReplica")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        (part,) = translate(s3_archive, ["r_vv"], TranslateConfig(out_scene="resumed", max_chunks=20, **base),
                            progress=False)
        assert part.status == "partial" and part.chunks_written == 20
        assert not Archive(s3_archive).has_scene("resumed")
        (rest,) = translate(s3_archive, ["r_vv"], TranslateConfig(out_scene="resumed", **base), progress=False)
        assert rest.status == "complete" and rest.chunks_written == 48 - 20
        cog = s3_archive.rsplit("/", 1)[0] + "/exports/straight.tif"
        (once,) = translate(s3_archive, ["r_vv"], TranslateConfig(out_scene="straight", **base),
                            progress=False, cog=cog)
    finally:
        ray.shutdown()
    assert once.cog == cog  # the COG of the output, uploaded to the bucket
    assert Location("s3", cog[5:].split("/")[0], "").read_bytes(cog.split("/", 3)[3])[:4] == b"II*\x00"
    a = Archive(s3_archive)
    np.testing.assert_array_equal(a.open_scene("resumed")["backscatter"].values,
                                  a.open_scene("straight")["backscatter"].values)
