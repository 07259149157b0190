"""Results written to object storage: a COG, a quicklook and a STAC catalog at ``s3://``, the
same bytes as the local files, checked against a real S3 API server (moto's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rasterio
from typer.testing import CliRunner

from sarray.archive.location import Location
from sarray.cli import app
from sarray.ingest.run import ingest
from sarray.testing.scenes import speckle_image, write_geotiff


def _two_scenes(archive: str | Path, tmp_path: Path) -> None:
    for i in range(2):
        ingest([write_geotiff(tmp_path / f"e{i}_vv.tif", speckle_image((300, 200), seed=70 + i))], archive)


def _get(url: str) -> bytes:
    loc = Location.parse(url)
    parent = Location("s3", loc.root, "")
    data = parent.read_bytes(loc.prefix)
    assert data is not None, f"{url} was not written"
    return data


def test_export_quicklook_and_stac_to_a_bucket_equal_the_local_files(s3_archive: str, tmp_path: Path) -> None:
    _two_scenes(s3_archive, tmp_path)
    bucket = s3_archive.rsplit("/", 1)[0]
    run = CliRunner().invoke
    res = run(app, ["export", s3_archive, "e0_vv", "-o", f"{bucket}/out/e0.tif"])
    assert res.exit_code == 0 and res.output.strip() == f"{bucket}/out/e0.tif", res.output
    assert run(app, ["export", s3_archive, "e0_vv", "-o", str(tmp_path / "e0.tif")]).exit_code == 0
    cog = _get(f"{bucket}/out/e0.tif")
    assert cog == (tmp_path / "e0.tif").read_bytes()
    (tmp_path / "got.tif").write_bytes(cog)
    with rasterio.open(tmp_path / "got.tif") as f:
        assert f.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"  # GDAL's own mark of a COG
        assert f.crs is not None and f.shape == (300, 200)
    res = run(app, ["quicklook", s3_archive, "e1_vv", "-o", f"{bucket}/out/e1.png"])
    assert res.exit_code == 0, res.output
    assert _get(f"{bucket}/out/e1.png")[:8] == b"\x89PNG\r\n\x1a\n"

    res = run(app, ["stac", s3_archive, "--all", "-o", f"{bucket}/stac/"])
    assert res.exit_code == 0 and res.output.strip() == f"{bucket}/stac/collection.json", res.output
    assert run(app, ["stac", s3_archive, "--all", "-o", str(tmp_path / "stac")]).exit_code == 0
    local = {p.relative_to(tmp_path / "stac").as_posix(): p.read_bytes()
             for p in (tmp_path / "stac").rglob("*.json")}
    remote = Location.parse(f"{bucket}/stac")
    assert sorted(remote.iter_keys()) == sorted(local)
    assert {k: remote.read_bytes(k) for k in local} == local
    coll = json.loads(local["collection.json"])
    assert sorted(link["href"] for link in coll["links"] if link["rel"] == "item") == [
        "./e0_vv/e0_vv.json", "./e1_vv/e1_vv.json"]
    # Each item's asset resolves: the scene's Icechunk repository in the archive's bucket.
    import icechunk
    import zarr

    for sid in ("e0_vv", "e1_vv"):
        href = json.loads(remote.read_bytes(f"{sid}/{sid}.json") or b"{}")["assets"]["backscatter"]["href"]
        assert href.startswith(s3_archive + "/")
        repo = icechunk.Repository.open(Location.parse(href).icechunk_storage())
        group = zarr.open_group(repo.readonly_session("main").store, mode="r")
        assert group["backscatter"].shape == (1, 300, 200)


@pytest.mark.parametrize("dest, message", [
    ("s3://no-such-bucket-sarray/x.tif", "no such bucket"),
    ("s3://bucket-only.tif", "must be s3://bucket/key"),
])
def test_a_bad_destination_is_one_line_before_any_work(s3_archive: str, tmp_path: Path,
                                                      dest: str, message: str) -> None:
    arch = tmp_path / "A.zarr"
    _two_scenes(arch, tmp_path)
    res = CliRunner().invoke(app, ["export", str(arch), "e0_vv", "-o", dest])
    assert res.exit_code == 1 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_an_endpoint_that_does_not_answer_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arch = tmp_path / "A.zarr"
    _two_scenes(arch, tmp_path)
    for k, v in {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ALLOW_HTTP": "true",
                 "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    for cmd in (["export", str(arch), "e0_vv", "-o", "s3://b/x.tif"],
                ["stac", str(arch), "--all", "-o", "s3://b/stac"]):
        res = CliRunner().invoke(app, cmd)
        assert res.exit_code == 1 and "does not answer" in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
