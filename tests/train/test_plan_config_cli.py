"""`sarray train plan` (DeepSpeed's estimators on the meta-device SDXL), config and CLI."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from sarray.errors import ConfigError
from sarray.train.config import TrainConfig
from sarray.train.plan import format_plan, plan_memory


def test_plan_sdxl_uses_the_35b_model_and_deepspeed_formulas() -> None:
    plan = plan_memory(preset="sdxl", gpus=8, gpu_mem_gb=80, train="unet")
    # SDXL base (UNet + 2 text encoders + VAE) is about 3.5 B parameters; the UNet about 2.57 B.
    assert 3.4e9 < plan["base_model_params"] < 3.6e9
    assert 2.5e9 < plan["trained_params"] < 2.6e9
    rows = {(r["stage"], r["offload"]): r for r in plan["rows"]}
    assert set(rows) == {(1, "none"), (1, "optimizer"), (2, "none"), (2, "optimizer"),
                         (3, "none"), (3, "optimizer"), (3, "optimizer+params")}
    P, N = plan["trained_params"], 8
    # DeepSpeed's stage-2 estimator without offload: 2P + 18P/N bytes.
    assert rows[(2, "none")]["gpu_bytes_trained"] == pytest.approx(2 * P + 18 * P / N, rel=1e-6)
    # Memory falls with the stage and with offload.
    assert rows[(1, "none")]["gpu_bytes"] > rows[(2, "none")]["gpu_bytes"] > rows[(3, "none")]["gpu_bytes"]
    assert rows[(3, "optimizer+params")]["gpu_bytes"] < rows[(3, "optimizer")]["gpu_bytes"]
    assert plan["recommended"] == {"stage": 1, "offload": "none"}  # 80 GB fits the simplest
    text = format_plan(plan)
    assert "ZeRO-3" in text and "recommended" in text


def test_plan_recommends_offload_on_a_small_gpu() -> None:
    plan = plan_memory(preset="sdxl", gpus=1, gpu_mem_gb=24, train="unet")
    rec = plan["recommended"]
    assert rec is not None and rec["offload"] != "none"
    none_rows = [r for r in plan["rows"] if r["offload"] == "none"]
    assert not any(r["fits"] for r in none_rows)
    with pytest.raises(ConfigError, match="gpus"):
        plan_memory(gpus=0)


def test_train_config_from_yaml_validates(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "r"), "zero_stage": 3,
                                    "data": {"archive": "a.zarr", "degradation": {"scale": 2}}}))
    cfg = TrainConfig.from_yaml(path, steps=7)
    assert cfg.steps == 7 and cfg.zero_stage == 3 and cfg.data.degradation.scale == 2
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="zero_stage"):
        TrainConfig.from_dict({**cfg.to_dict(), "zero_stage": 4})
    with pytest.raises(ConfigError, match="optimizer\\+params"):
        TrainConfig.from_dict({**cfg.to_dict(), "zero_stage": 2, "offload": "optimizer+params"})
    with pytest.raises(ConfigError, match="unknown keys"):
        TrainConfig.from_dict({**cfg.to_dict(), "lr": 1})


def test_cli_plan_prints_every_stage() -> None:
    from sarray.cli import app

    result = CliRunner().invoke(app, ["train", "plan", "--preset", "sdxl", "--gpus", "4", "--gpu-mem-gb", "80"])
    assert result.exit_code == 0, result.output
    for stage in ("ZeRO-1", "ZeRO-2", "ZeRO-3"):
        assert stage in result.output
    assert "base model without ControlNet: 3.469 B" in result.output
    bad = CliRunner().invoke(app, ["train", "plan", "--train", "everything"])
    assert bad.exit_code == 1 and "train" in bad.output


def test_cli_modules_import_only_typer() -> None:
    import subprocess
    import sys

    code = ("import sys, sarray.train.cli, sarray.evaluate.cli; "
            "print(sorted(m for m in ('torch', 'deepspeed', 'ray', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
