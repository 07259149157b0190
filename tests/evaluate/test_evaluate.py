"""`sarray evaluate` end to end on a tiny synthetic archive, and the shipped tiny weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sarray.evaluate.run import METHODS, EvaluateConfig, evaluate
from sarray.train.degrade import DegradationConfig
from sarray.train.pairs import PairConfig


def test_evaluate_writes_table_json_png_and_consistency_holds(eval_archive, tmp_path) -> None:
    cfg = EvaluateConfig(
        data=PairConfig(archive=str(eval_archive), tile_px=64, val_scenes=("hr-2",),
                        degradation=DegradationConfig(scale=4)),
        model="tiny-random", output_dir=str(tmp_path / "ev"), tiles=2, ratio_tiles=4,
    )
    result = evaluate(cfg)
    assert result["scenes"] == ["hr-2"] and result["tiles_evaluated"] == 2
    for name in METHODS:
        r = result["means"][name]
        assert np.isfinite(r["psnr_db"]) and 0 < r["spectrum_distance"] and 0 < r["histogram_w1_db"]
    # With the consistency step on, the model's output multilooks back onto its input.
    assert result["means"]["model"]["consistency_rms_db"] < 0.05
    assert result["means"]["bicubic"]["consistency_rms_db"] > 1e-2
    for key in ("block_edge_ratio", "peak_4px_db", "floor_share", "lag1", "enl"):
        assert np.isfinite(result["truth"][key]) and np.isfinite(result["means"]["model"][key])
    md = (tmp_path / "ev" / "metrics.md").read_text()
    assert all(f"| {name} |" in md for name in (*METHODS, "truth"))
    data = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(data["tiles"]) == 2 and data["ratio_distribution_samples"] == 4 * 64 * 64
    assert (tmp_path / "ev" / "evaluate.png").stat().st_size > 10_000
    # Without it the model is not consistent with its input.
    off = evaluate(EvaluateConfig(**{**cfg.__dict__, "consistency": False,
                                     "output_dir": str(tmp_path / "ev-off")}))
    assert off["means"]["model"]["consistency_rms_db"] > 0.1


def test_evaluate_cli(eval_archive, tmp_path) -> None:
    from sarray.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["evaluate", "--archive", str(eval_archive), "--model", "tiny-random",
                                   "--val-scene", "hr-1", "--tiles", "1", "--tile-px", "64",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "| speckle |" in res.output and (out / "metrics.md").is_file()
    bad = CliRunner().invoke(app, ["evaluate", "--archive", str(eval_archive), "--val-scene", "nope", "--model",
                                   "tiny-random", "--out", str(out)])
    assert bad.exit_code == 1 and "val_scenes" in bad.output


def test_shipped_tiny_weights_resolve_load_and_translate() -> None:
    from sarray.models.replica import Replica, ReplicaConfig
    from sarray.models.resolve import resolve_model
    from sarray.testing.models import speckle_scene

    kwargs = resolve_model("tiny")
    assert kwargs["preset"] == "tiny" and kwargs["weights"].endswith("weights/tiny")
    replica = Replica(ReplicaConfig(**kwargs, scale=4))
    values, meta = speckle_scene((16, 16), pols=("VV",), spacing_m=2.4, sensor="Umbra-04")
    out = replica.translate_tile(values, scene_id="s", tile_index=0, meta=meta)
    assert out.shape == (1, 64, 64) and np.isfinite(out).all()
    assert resolve_model("tiny-random")["weights"] is None
    assert resolve_model("sdxl")["weights"] == "stabilityai/stable-diffusion-xl-base-1.0"
    with pytest.raises(ValueError, match="model"):
        resolve_model("no-such-model")


def test_histogram_above_the_floor_leaves_the_products_zeros_out() -> None:
    """A product that clips a fifth of its pixels to 0 DN: a generator equal to it elsewhere but
    without the zeros is far on the plain histogram and at zero above the floor."""
    import numpy as np

    from sarray.evaluate.run import tile_metrics

    rng = np.random.default_rng(0)
    truth = np.round(np.sqrt(rng.exponential(400.0, (64, 64)))) ** 2
    clipped = truth.copy()
    clipped[rng.random(truth.shape) < 0.2] = 0.0
    coarse = truth.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    floor = 1e-4 * float(clipped.mean())
    mask = np.ones((4, 4), bool)  # one entry per 4 x 4 coarse-pixel window
    r = tile_metrics(truth, clipped, coarse, scale=4, floor=floor, mask=mask)
    assert r["histogram_w1_db"] > 3.0
    assert r["histogram_w1_above_floor_db"] < 0.5
    assert r["zero_share"] < 0.01 and r["floor_share"] < 0.01
