"""The Ray side of the engine: an actor that holds one replica, and pool sizing.

The replica itself is a plain class (``__init__`` loads, ``__call__(batch) -> batch``); Ray only
wraps it here. Each actor is pinned with ``num_gpus=1`` when the cluster has GPUs, and takes
``num_cpus`` slots (and as many torch threads) otherwise.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from sarray.errors import ConfigError


def import_object(path: str) -> Any:
    """Import ``"package.module:Name"``."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ConfigError(f"`replica_class` ({path!r}) must look like 'package.module:ClassName'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"`replica_class` ({path!r}) cannot be imported: {e}") from None


class ReplicaActor:
    """Holds one replica in a Ray worker process."""

    def __init__(self, replica_class: str, replica_config: dict[str, Any], threads: int) -> None:
        try:
            import torch

            torch.set_num_threads(max(1, threads))
        except ImportError:  # pragma: no cover - torch is part of the model extra
            pass
        from sarray.models.replica import ReplicaConfig

        self.replica = import_object(replica_class)(ReplicaConfig.from_dict(replica_config))
        self.pid = os.getpid()

    def ready(self) -> int:
        """Returns the worker's pid once the model is loaded."""
        return self.pid

    def run(self, batch: dict[str, Any]) -> Any:
        """Translate a batch; returns only the ``output`` array (less to send back)."""
        return self.replica(batch)["output"]


@dataclass(frozen=True)
class PoolPlan:
    """How many actors, and what each one is pinned to."""

    replicas: int
    num_gpus: float
    num_cpus: float
    torch_threads: int
    device: str


def plan_pool(replicas: int, device: str) -> PoolPlan:
    """Size the pool against the cluster Ray is connected to.

    Args:
        replicas: actors to start.
        device: ``auto`` (GPU when the cluster has one), ``cpu`` or ``cuda``.
    """
    import ray

    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    use_gpu = device == "cuda" or (device == "auto" and gpus >= 1)
    if use_gpu:
        if gpus < replicas:
            raise ConfigError(
                f"`replicas` ({replicas}) exceeds the cluster's {gpus} GPU(s): lower --replicas"
            )
        return PoolPlan(replicas, 1.0, 1.0, 1, "cuda")
    cpus = int(res.get("CPU", 1))
    if replicas > cpus:
        raise ConfigError(
            f"`replicas` ({replicas}) exceeds the cluster's {cpus} CPU slot(s) and it has no GPU: "
            "lower --replicas"
        )
    # The driver reads, blends and writes while the replicas compute: leave it one core when
    # there are more cores than replicas.
    per = max(1, (cpus - 1) // replicas) if cpus > replicas else 1
    return PoolPlan(replicas, 0.0, float(min(per, cpus)), per, "cpu")


def start_actor(plan: PoolPlan, replica_class: str, replica_config: dict[str, Any]) -> Any:
    """Start one replica actor (not waited for)."""
    import ray

    cls = ray.remote(ReplicaActor)
    return cls.options(num_gpus=plan.num_gpus, num_cpus=plan.num_cpus, max_restarts=0).remote(
        replica_class, {**replica_config, "device": plan.device}, plan.torch_threads
    )
