"""One process: LoRA on the text encoders, ControlNet-only training, checkpointing, ZeRO-1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow
def test_controlnet_with_text_lora_trains_only_what_it_should(hr_archive, tmp_path) -> None:
    import torch
    from safetensors.torch import load_file

    from sarray.testing.models import save_tiny_weights
    from sarray.train.config import TrainConfig
    from sarray.train.loop import run_training
    from sarray.train.pairs import PairConfig

    init = save_tiny_weights(tmp_path / "init", seed=3)
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"), model=str(init), train="controlnet",
        text_encoder_lora_rank=2, steps=3, batch_size=2, learning_rate=1e-3, zero_stage=1,
        gradient_checkpointing=True, ema_decay=0.0, validate_every=2, val_tiles=1,
        data=PairConfig(archive=str(hr_archive), tile_px=64, val_scenes=("hr-2",)),
    )
    result = run_training(cfg)
    assert result["step"] == 3 and np.isfinite(result["losses"]).all()
    export = Path(result["export"])

    def weights(folder: Path, name: str) -> dict:
        files = list((folder / name).glob("*.safetensors"))
        return load_file(str(files[0]))

    # The UNet and VAE are frozen: bit-identical to the initial weights.
    for name in ("unet", "vae"):
        a, b = weights(init, name), weights(export, name)
        assert all(torch.equal(a[k], b[k]) for k in a)
    # The ControlNet and (through the merged LoRA) the text encoders changed.
    a, b = weights(init, "controlnet"), weights(export, "controlnet")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    a, b = weights(init, "text_encoder"), weights(export, "text_encoder")
    assert set(a) == set(b)  # merged: no lora_ tensors left, the plain layout
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert changed and all(any(p in k for p in ("q_proj", "k_proj", "v_proj", "out_proj")) for k in changed)
    # Validation wrote a grid, the loss curve exists, TensorBoard has events.
    assert list((tmp_path / "run" / "val").glob("step-*.png"))
    assert (tmp_path / "run" / "loss.png").is_file()
    assert list((tmp_path / "run" / "tensorboard").glob("events.*"))
    lines = (tmp_path / "run" / "loss.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [0, 1, 2]


@pytest.mark.slow
def test_bf16_mixed_precision_trains_and_exports_float32(hr_archive, tmp_path) -> None:
    from safetensors.torch import load_file

    from sarray.train.config import TrainConfig
    from sarray.train.loop import run_training
    from sarray.train.pairs import PairConfig

    cfg = TrainConfig(
        output_dir=str(tmp_path / "bf16"), train="unet", steps=2, batch_size=2, precision="bf16",
        zero_stage=2, val_tiles=1,
        data=PairConfig(archive=str(hr_archive), tile_px=64, val_scenes=("hr-2",)),
    )
    result = run_training(cfg)
    assert result["precision"] == "bf16" and np.isfinite(result["losses"]).all()
    unet = load_file(str(Path(result["export"]) / "unet" / "diffusion_pytorch_model.safetensors"))
    assert {str(t.dtype) for t in unet.values()} == {"torch.float32"}


def test_consistency_term_pulls_the_decoded_multilook_towards_the_condition() -> None:
    """The multilook-consistency term is zero-ish when the prediction implies a clean latent whose
    box average is the condition, larger when the condition is darker, weighted by the signal
    share, and differentiable with respect to the noise prediction."""
    import torch

    from sarray.models.components import build_models, build_scheduler
    from sarray.models.presets import TINY
    from sarray.train.config import TrainConfig
    from sarray.train.loop import consistency_term
    from sarray.train.pairs import PairConfig

    vae = build_models(TINY, seed=0)["vae"].eval().requires_grad_(False)
    sched = build_scheduler(TINY)
    alphas = torch.as_tensor(sched.alphas_cumprod)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn((2, 4, 8, 8), generator=gen)
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.tensor([10, 10])
    a = alphas[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    with torch.no_grad():
        image = vae.decode(latents / vae.config.scaling_factor).sample.clamp(-1, 1)
    coarse = torch.nn.functional.avg_pool2d((image + 1) / 2, 4)
    pred = noise.clone().requires_grad_(True)
    exact = consistency_term(vae, alphas, noisy, pred, t, coarse)
    off = consistency_term(vae, alphas, noisy, pred, t, (coarse - 0.2).clamp(0, 1))
    assert float(exact.detach()) < 1e-8 < float(off.detach())
    off.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    # Pure-noise timesteps carry (almost) no weight.
    late = torch.tensor([sched.config.num_train_timesteps - 1] * 2)
    assert float(consistency_term(vae, alphas, noisy, noise, late, (coarse - 0.2).clamp(0, 1))) < 0.01 * float(off.detach())
    with pytest.raises(Exception, match="consistency_weight"):
        TrainConfig(output_dir="x", train="vae", consistency_weight=1.0,
                    data=PairConfig(archive="a.zarr", tile_px=64))
