"""Two-process DeepSpeed runs on CPU (gloo): ZeRO-2 and ZeRO-3, exact resume, export -> replica.

Each run is ``torchrun --nproc_per_node 2 jobs/train.py`` on a tiny synthetic archive: a few
steps of the tiny preset on 64 px tiles.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _config(tmp: Path, archive: Path, name: str, **overrides) -> Path:
    cfg = {
        "output_dir": str(tmp / name), "model": "tiny-random", "train": "both", "steps": 4,
        "batch_size": 2, "learning_rate": 1.0e-3, "zero_stage": 2, "checkpoint_every": 2,
        "validate_every": 0, "val_tiles": 1, "ema_decay": 0.9, "seed": 0,
        "data": {"archive": str(archive), "tile_px": 64, "val_scenes": ["hr-2"],
                 "degradation": {"scale": 4, "speckle_looks": 4.4}},
    }
    cfg.update(overrides)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _torchrun(config: Path, *extra: str) -> dict:
    # TMPDIR: the launcher's own temporary folders (torchelastic_*) go under the test's tmp_path,
    # not the machine's /tmp (STYLE section 10).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "TMPDIR": str(config.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), str(REPO / "jobs" / "train.py"),
           "--config", str(config), *extra]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "loss.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_two_process_zero_run_resumes_exactly(stage, hr_archive, tmp_path) -> None:
    # 1. Uninterrupted: 4 steps.
    full = _torchrun(_config(tmp_path, hr_archive, "full", zero_stage=stage))
    assert full["world_size"] == 2 and full["zero_stage"] == stage and full["step"] == 4
    # 2. As if interrupted after step 2: a copy of the run folder without what came after the
    #    step-2 checkpoint, resumed to 4.
    split = tmp_path / "split"
    shutil.copytree(tmp_path / "full", split)
    shutil.rmtree(split / "checkpoints" / "step-00000004")
    shutil.rmtree(split / "export")
    (split / "checkpoints" / "latest").write_text("step-00000002")
    second = _torchrun(_config(tmp_path, hr_archive, "split", zero_stage=stage))
    assert second["resumed"] and second["step"] == 4
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "split")
    assert len(a) == len(b) == 4
    assert all(np.isfinite(a))
    assert a == b  # bit for bit: same batches, noise, weights, optimiser and scheduler states
    assert len(set(a)) == 4  # the loss does change from step to step

    # 3. The export loads in the replica and translates.
    from sarray.models.replica import Replica, ReplicaConfig
    from sarray.testing.models import speckle_scene

    export = Path(full["export"])
    assert (export / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(export.rglob("*.bin"))
    replica = Replica(ReplicaConfig(preset="tiny", weights=str(export), scale=4))
    values, meta = speckle_scene((16, 16), pols=("HH",), spacing_m=4.0)
    out = replica.translate_tile(values, scene_id="s", tile_index=0, meta=meta)
    assert out.shape == (1, 64, 64) and np.isfinite(out).all()
    # Checkpoints hold the EMA and DeepSpeed's per-rank optimiser partitions.
    ckpt = tmp_path / "full" / "checkpoints" / "step-00000004"
    assert (ckpt / "ema.safetensors").is_file()
    assert len(list(ckpt.glob("*optim_states.pt"))) == 2


@pytest.mark.slow
def test_deepspeed_launcher_two_processes_zero1(hr_archive, tmp_path) -> None:
    import shutil as sh

    launcher = sh.which("deepspeed") or str(Path(sys.executable).with_name("deepspeed"))
    cfg = _config(tmp_path, hr_archive, "ds", zero_stage=1, steps=2, checkpoint_every=0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "TMPDIR": str(tmp_path)}
    proc = subprocess.run([launcher, "--num_accelerators", "2", "--master_port", str(_free_port()),
                           str(REPO / "jobs" / "train.py"), "--config", str(cfg)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((tmp_path / "ds" / "result.json").read_text())
    assert summary["world_size"] == 2 and summary["zero_stage"] == 1 and summary["step"] == 2
    assert len(_losses(tmp_path / "ds")) == 2
