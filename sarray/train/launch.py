"""Ray Train launcher: N workers, each one rank of :func:`sarray.train.loop.run_training`.

Ray Train's ``TorchTrainer`` starts ``num_workers`` worker processes (one per GPU with
``use_gpu``), sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR`` and creates the torch
process group (gloo on CPU, nccl on GPUs); DeepSpeed then reuses that group. On a cluster,
``output_dir`` and the archive must be on storage every node sees (NFS, a mounted bucket): the
checkpoints are written there by every rank and resumed from there.

From a laptop or CI::

    ray job submit --address http://HEAD:8265 --runtime-env cluster/train_runtime_env.yaml -- \
        python jobs/train.py --config cfg.yaml --launcher ray --workers 8 --gpu

Ray 2.60 turns token authentication on by default and sarray keeps it on (see
``cluster/README.md``): set ``RAY_AUTH_MODE=token`` for the head and every client, and give
remote clients the head's token (``RAY_AUTH_TOKEN``). ``cluster/train_runtime_env.yaml`` is the
runtime environment for training jobs.
"""

from __future__ import annotations

from typing import Any

from sarray.errors import ConfigError
from sarray.train.config import TrainConfig


def _worker(config_dict: dict[str, Any]) -> None:
    """Body of one Ray Train worker."""
    import ray.train

    from sarray.train.loop import run_training

    result = run_training(TrainConfig.from_dict(config_dict))
    summary = {k: v for k, v in result.items() if k != "losses"}
    summary["last_loss"] = result["losses"][-1] if result.get("losses") else None
    summary["first_loss"] = result["losses"][0] if result.get("losses") else None
    ray.train.report({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))})


def train_with_ray(config: TrainConfig, *, num_workers: int = 2, use_gpu: bool = False,
                   cpus_per_worker: float = 1.0) -> dict[str, Any]:
    """Run ``config`` on ``num_workers`` Ray Train workers (connects to or starts Ray).

    Returns:
        The metrics rank 0 reported (``step``, ``export``, ``last_loss``...) and
        ``"losses": []`` (the per-step losses are in ``output_dir/loss.jsonl``).
    """
    if not isinstance(num_workers, int) or num_workers < 1:
        raise ConfigError(f"`num_workers` ({num_workers!r}) must be a positive integer")
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        ray.init(address="auto" if _cluster_address() else None, log_to_driver=True)
    trainer = TorchTrainer(
        _worker,
        train_loop_config=config.to_dict(),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus_per_worker}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name="sarray-train", storage_path=str(config.run_dir.resolve() / "ray")),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    import json

    # Rank 0 writes its summary into the run folder (Ray Train V2 keeps no metrics without a
    # Ray checkpoint; sarray's checkpoints live in the run folder).
    summary = json.loads((config.run_dir / "result.json").read_text())
    return {**summary, "losses": []}


def _cluster_address() -> bool:
    import os

    return bool(os.environ.get("RAY_ADDRESS"))
