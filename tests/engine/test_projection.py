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


def _fleet_file(tmp_path: Path, runs: list[dict]) -> Path:
    path = tmp_path / "bench_fleet.json"
    path.write_text(json.dumps({"environment": {"cores": 2, "commit": "abc", "date": "d"},
                                "config": {"chunk_px": 64, "scale": 2}, "runs": runs}))
    return path


def test_the_projection_takes_driver_writer_and_store_from_the_fleet_results(tmp_path: Path) -> None:
    """The largest finished run of bench_fleet.json gives the per-tile driver and writer CPU
    and the store per replica; the output names the file it read."""
    runs = [{"replicas": 8, "tiles": 5000, "compute_window_s": 100.0, "driver_cpu_share": 0.5,
             "writer_cpu_share": 0.5, "object_store_peak_mib": 1.0},
            {"replicas": 32, "tiles": 5000, "compute_window_s": 200.0, "driver_cpu_share": 0.05,
             "writer_cpu_share": 0.025, "object_store_peak_mib": 64.0},
            {"replicas": 64, "error": "available memory 1.5 GiB < 2 GiB: run stopped"}]
    path = _fleet_file(tmp_path, runs)
    res = CliRunner().invoke(app, ["bench", "project", "--area-km2", "10e6", "--gpus", "64",
                                   "--tile-s", "5", "--gpus-per-node", "8", "--fleet", str(path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    fleet = out["assumptions"]["fleet"]
    assert fleet["replicas"] == 32 and str(path) in fleet["source"]
    assert fleet["driver_cpu_s_per_tile"] == pytest.approx(0.05 * 200 / 5000)
    tiles_per_s = 64 * 0.95 / 5
    assert out["driver_cores_needed"] == pytest.approx(tiles_per_s * 0.05 * 200 / 5000)
    assert out["writer_cores_needed"] == pytest.approx(tiles_per_s * 0.025 * 200 / 5000)
    assert out["writers_needed"] == 1  # 0.012 of a core
    many = json.loads(CliRunner().invoke(app, ["bench", "project", "--area-km2", "10e6", "--gpus", "4096",
                                               "--tile-s", "1", "--fleet", str(path), "--json"]).output)
    assert many["writers_needed"] == -(-many["writer_cores_needed"] // 0.5) > 1
    bench_tile = 64**2 * 4 / 1e6 * 1.25
    real_tile = 2 * 1024**2 * 4 / 1e6 * (1 + 1 / 16)
    assert out["object_store_gb_per_node_needed"] == pytest.approx(
        64 * 1.048576 / 32 * real_tile / bench_tile * 8 / 1e3)
    text = CliRunner().invoke(app, ["bench", "project", "--area-km2", "10e6", "--gpus", "64",
                                    "--fleet", str(path)]).output
    assert f"fleet results            {path}" in text and "measured at 32 replicas" in text


@pytest.mark.parametrize("content", ["not json", json.dumps({"runs": [{"replicas": 8, "error": "x"}]})])
def test_an_unusable_fleet_file_is_one_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "fleet.json"
    path.write_text(content)
    res = CliRunner().invoke(app, ["bench", "project", "--area-km2", "10", "--gpus", "2",
                                   "--fleet", str(path)])
    assert res.exit_code != 0
    assert "`--fleet`" in res.output and str(path) in res.output and "Traceback" not in res.output
