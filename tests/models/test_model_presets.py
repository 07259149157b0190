"""Presets and configs: validation, dict round trips, the meta-device size of sdxl, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sarray.errors import ConfigError
from sarray.models import normalise as norm
from sarray.models.presets import PRESETS, SDXL, TINY, ModelPreset, VAESpec, get_preset
from sarray.models.replica import ReplicaConfig


@pytest.mark.parametrize("preset", [TINY, SDXL])
def test_preset_dict_round_trip(preset):
    assert ModelPreset.from_dict(json.loads(json.dumps(preset.to_dict()))) == preset


def test_preset_geometry():
    assert TINY.vae.downsample_factor == SDXL.vae.downsample_factor == 8
    assert TINY.pixel_multiple == 16 and SDXL.pixel_multiple == 32
    assert SDXL.cross_attention_dim == 2048
    assert SDXL.unet_kwargs()["projection_class_embeddings_input_dim"] == 2816


def test_preset_errors():
    with pytest.raises(ConfigError, match="`preset` \\('sd15'\\).*sdxl"):
        get_preset("sd15")
    with pytest.raises(ConfigError, match="4 levels"):
        ModelPreset.from_dict({**TINY.to_dict(), "vae": VAESpec(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)})
    with pytest.raises(ConfigError, match="unknown keys"):
        VAESpec.from_dict({"block_out_channels": [8], "layers_per_block": 1, "colour": "red"})
    with pytest.raises(ConfigError, match="runs no step"):
        ModelPreset.from_dict({**TINY.to_dict(), "default_steps": 1, "default_strength": 0.5})


def test_replica_config_round_trip_and_defaults():
    cfg = ReplicaConfig(scale=8, normalisation=norm.NormalisationConfig(method="db"), seed=7)
    again = ReplicaConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert cfg.steps == TINY.default_steps
    assert cfg.resolved_strength(simulated=True) == TINY.default_strength
    cfg2 = ReplicaConfig(strength=0.5, simulated_strength=1.0, num_inference_steps=4)
    assert cfg2.resolved_strength(simulated=False) == 0.5
    assert cfg2.resolved_strength(simulated=True) == 1.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"scale": 3}, "`scale` \\(3\\)"),
        ({"scale": 0}, "`scale`"),
        ({"scale": 128}, "`scale`"),
        ({"scale": True}, "`scale`"),
        ({"dtype": "float64"}, "`dtype`"),
        ({"device": "tpu"}, "`device`"),
        ({"preset": "sdxl"}, "`weights` is None"),
        ({"num_inference_steps": 2, "strength": 0.25}, "runs no denoising step"),
        ({"strength": 1.5}, "`strength`"),
        ({"simulated_strength": 0.0}, "`simulated_strength`"),
        ({"guidance_scale": -1.0}, "`guidance_scale`"),
        ({"resample": "lanczos"}, "`resample`"),
        ({"micro_batch": 0}, "`micro_batch`"),
        ({"normalisation": {"method": "db"}}, "`normalisation`"),
    ],
)
def test_replica_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ReplicaConfig(**kwargs)


def test_tile_shape_rule():
    cfg = ReplicaConfig(scale=4)
    cfg.check_tile_shape(4, 8)  # 16 x 32 output: fine
    with pytest.raises(ConfigError, match="multiples of 16.*multiples of 4"):
        cfg.check_tile_shape(6, 8)


def test_sdxl_parameter_count_on_meta_device():
    from sarray.models.info import model_info

    info = model_info("sdxl")
    c = {k: v["params"] for k, v in info["components"].items()}
    # The published SDXL-base 1.0 component sizes.
    assert c["unet"] == 2_567_463_684
    assert c["text_encoder"] == 123_060_480
    assert c["text_encoder_2"] == 694_659_840
    assert c["vae"] == 83_653_863
    assert abs(info["total_params"] - 3.5e9) / 3.5e9 < 0.05
    assert 1.2e9 < info["controlnet_params"] < 1.3e9
    assert info["memory_bytes"]["float16"] == 2 * info["total_params_with_controlnet"]
    assert info["memory_bytes"]["float32"] == 4 * info["total_params_with_controlnet"]


def test_cli_info_json_and_text():
    from typer.testing import CliRunner

    from sarray.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["model", "info", "--preset", "tiny", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["preset"] == "tiny" and data["total_params"] > 0
    assert set(data["components"]) == {"unet", "text_encoder", "text_encoder_2", "vae", "controlnet"}
    res = runner.invoke(app, ["model", "info", "--preset", "tiny"])
    assert res.exit_code == 0 and "total (no ControlNet)" in res.output and "float16" in res.output
    res = runner.invoke(app, ["model", "info", "--preset", "nope"])
    assert res.exit_code == 1 and "sdxl" in res.output


def test_cli_info_sdxl_json():
    from typer.testing import CliRunner

    from sarray.cli import app

    res = CliRunner().invoke(app, ["model", "info", "--preset", "sdxl", "--json"])
    assert res.exit_code == 0, res.output
    assert abs(json.loads(res.output)["total_params"] - 3.5e9) / 3.5e9 < 0.05


def test_importing_models_does_not_import_torch():
    code = (
        "import sys, sarray, sarray.models, sarray.models.cli, sarray.models.presets, "
        "sarray.models.normalise, sarray.models.replica, sarray.models.loading, sarray.models.info;"
        "sarray.models.ReplicaConfig; sarray.models.get_preset('sdxl');"
        "bad = [m for m in ('torch', 'diffusers', 'transformers', 'ray', 'deepspeed') if m in sys.modules];"
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert set(PRESETS) == {"tiny", "sdxl"}
