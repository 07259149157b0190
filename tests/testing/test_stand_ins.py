"""The replica stand-ins benchmarks rely on: their output and their cost per tile."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from sarray.testing.replicas import CpuBoundReplica, IdentityReplica


class _Quick(CpuBoundReplica):
    CPU_SECONDS_PER_TILE = 0.05


def _batch(n: int) -> dict:
    tiles = np.random.default_rng(0).random((n, 2, 8, 8), dtype=np.float32)
    return {"tiles": tiles, "scene_id": ["s"] * n, "tile_index": [[0, k] for k in range(n)]}


def test_cpu_bound_replica_spends_its_cpu_per_tile_and_returns_the_identity():
    cfg = SimpleNamespace(scale=2)
    batch = _batch(3)
    c0 = time.thread_time()
    out = _Quick(cfg)(batch)["output"]
    spent = time.thread_time() - c0
    # Three tiles' CPU in this thread (the products run in it with torch's calling thread).
    assert spent >= 3 * _Quick.CPU_SECONDS_PER_TILE
    np.testing.assert_array_equal(out, IdentityReplica(cfg)(batch)["output"])
    assert np.isfinite(out).all() and out.shape == (3, 2, 16, 16)
