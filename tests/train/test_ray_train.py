"""Ray Train launcher: a TorchTrainer with 2 CPU workers (gloo) runs ZeRO-2 and exports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ray_train_two_workers(hr_archive, tmp_path) -> None:
    import ray

    from sarray.train.config import TrainConfig
    from sarray.train.launch import train_with_ray

    cfg = TrainConfig.from_dict({
        "output_dir": str(tmp_path / "run"), "steps": 2, "batch_size": 2, "zero_stage": 2,
        "val_tiles": 1, "data": {"archive": str(hr_archive), "tile_px": 64, "val_scenes": ["hr-2"]},
    })
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "TORCH_EXTENSIONS_DIR": os.environ["TORCH_EXTENSIONS_DIR"]}
    ray.init(address="local", num_cpus=3, include_dashboard=False, runtime_env={"env_vars": env})
    try:
        result = train_with_ray(cfg, num_workers=2)
    finally:
        ray.shutdown()
    assert result["world_size"] == 2 and result["step"] == 2 and result["zero_stage"] == 2
    assert Path(result["export"], "controlnet", "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "run" / "checkpoints" / "step-00000002" / "ema.safetensors").is_file()
