"""`sarray bench project`: the Europe example, by hand, with every assumption printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sarray.cli import app
from sarray.engine.projection import Projection, project


def test_the_europe_example_matches_a_hand_calculation() -> None:
    r = project(Projection(area_km2=10e6, scale=4, gpus=64, tile_s=4.0))
    pixels = 10e6 * 1e6 / 2.5**2  # 10 m input / 4
    assert r["output_gpx"] == pytest.approx(pixels / 1e9)
    tiles = -(-pixels // 1024**2)
    assert r["tiles"] == tiles
    assert r["gpu_hours"] == pytest.approx(tiles * 4.0 / 0.95 / 3600)
    assert r["wall_hours"] == pytest.approx(r["gpu_hours"] / 64 + 120 / 3600)
    assert r["storage_tb_raw"] == pytest.approx(pixels * 2 * 4 / 1e12)
    # Twice the GPUs: half the compute time, the same GPU-hours and storage.
    r2 = project(Projection(area_km2=10e6, scale=4, gpus=128, tile_s=4.0))
    assert r2["gpu_hours"] == pytest.approx(r["gpu_hours"])
    assert r2["wall_hours"] - 120 / 3600 == pytest.approx((r["wall_hours"] - 120 / 3600) / 2)


def test_the_command_prints_every_assumption_and_reads_results(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["bench", "project", "--area-km2", "10e6", "--scale", "4", "--gpus", "64"])
    assert res.exit_code == 0, res.output
    for text in ("input spacing", "tile time source", "engine efficiency", "model load",
                 "stored values", "driver CPU", "object store", "GPU-hours", "replicas",
                 "wall time", "storage written", "headroom", "A100-class"):
        assert text in res.output, text
    results = tmp_path / "bench.json"
    results.write_text(json.dumps({"environment": {"device": "cpu", "cores": 2, "commit": "abc"},
                                   "raydata": {"replicas": 2, "median": {"sarray": {"mpx_s": 0.2}}}}))
    res = CliRunner().invoke(app, ["bench", "project", "--area-km2", "100", "--gpus", "2",
                                   "--from", str(results), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["assumptions"]["tile_s"] == pytest.approx(1024**2 / 1e6 / 0.1)
    assert "bench.json" in out["assumptions"]["tile_s_source"]
