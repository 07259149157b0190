"""The small archive defects: GCP counts, strict JSON, reserved ids, truthful duplicates, one-line
permission and disk errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from sarray.cli import app
from sarray.testing.scenes import speckle_image, tree_digest, write_geotiff

runner = CliRunner()


def test_info_counts_gcps_and_json_is_strict(data_dir: Path, tmp_path: Path) -> None:
    tif = sorted((data_dir / "sentinel1" / "rio-tiler-pds").glob("*/measurement/*.tiff"))[0]
    arch = str(tmp_path / "a.zarr")
    assert runner.invoke(app, ["ingest", str(tif), "-a", arch, "-q", "--scene-id", "g"]).exit_code == 0
    import rasterio

    with rasterio.open(tif) as f:
        n = len(f.gcps[0])
    res = runner.invoke(app, ["info", arch, "g"])
    assert f"{n} GCPs" in res.output and n > 0
    # A scene with a NaN statistic (an all-nodata polarisation is refused, so a NaN mean comes
    # from a band whose values overflow): --json prints null, which strict parsers accept.
    a = np.stack([speckle_image((64, 64), seed=1), np.full((64, 64), 3e38, np.float32)])
    big = write_geotiff(tmp_path / "big.tif", a, descriptions=("VV", "VH"))
    assert runner.invoke(app, ["ingest", str(big), "-a", arch, "-q", "--units", "linear"]).exit_code == 0
    res = runner.invoke(app, ["info", arch, "big", "--json"])
    assert res.exit_code == 0
    json.loads(res.output, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert "NaN" not in res.output and "Infinity" not in res.output
    res = runner.invoke(app, ["ls", arch, "--json"])
    json.loads(res.output, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def test_reserved_id_is_refused_with_the_reason(tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "s_vv.tif", speckle_image((64, 64), seed=1))
    res = runner.invoke(app, ["ingest", str(tif), "-a", str(tmp_path / "a.zarr"), "--scene-id", "zarr.json"])
    assert res.exit_code == 1 and "reserved" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "a.zarr").exists()


def test_duplicate_source_under_a_new_id_is_reported_truthfully(tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "s_vv.tif", speckle_image((64, 64), seed=1))
    arch = str(tmp_path / "a.zarr")
    runner.invoke(app, ["ingest", str(tif), "-a", arch, "-q"])
    before = tree_digest(arch)
    res = runner.invoke(app, ["ingest", str(tif), "-a", arch, "-q", "--scene-id", "Y"])
    assert res.exit_code == 0
    assert res.output.startswith("exists s_vv") and "requested id Y" in res.output
    assert tree_digest(arch) == before
    assert "Y" not in runner.invoke(app, ["ls", arch]).output.split()


def test_unwritable_archive_is_one_line(tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "s_vv.tif", speckle_image((64, 64), seed=1))
    # /sys refuses new folders even to root; a path under a file is not a folder.
    (tmp_path / "afile").write_text("x")
    for target, words in [("/sys/sarray-test.zarr", "not permitted"),
                          (str(tmp_path / "afile" / "a.zarr"), "not a")]:
        res = runner.invoke(app, ["ingest", str(tif), "-a", target, "-q"])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1, res.output
        assert lines[0].startswith("sarray: error: ") and target.split("/")[1] in lines[0]
        assert words in lines[0].lower(), lines[0]


def test_strict_json_turns_non_finite_into_null() -> None:
    from sarray.cli import strict_json

    assert json.loads(strict_json({"a": float("nan"), "b": [float("inf"), 1.5], "c": (np.float32(2),)})) \
        == {"a": None, "b": [None, 1.5], "c": [2.0]}
