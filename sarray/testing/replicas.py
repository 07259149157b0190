"""Replica stand-ins for engine tests: same interface as :class:`sarray.models.Replica`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


class IdentityReplica:
    """Nearest-neighbour upsampling by ``scale``: tiling plus stitching must add nothing."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        s = self.config.scale
        tiles = np.asarray(batch["tiles"])
        return {**batch, "output": np.repeat(np.repeat(tiles, s, axis=-2), s, axis=-1)}


class SpeckleReplica(IdentityReplica):
    """Upsampling times fresh unit-mean speckle seeded per tile: independent draws in overlaps.

    Seeds come from (scene id, tile index, seed), as the real replica's do, so the output does
    not depend on which actor runs a tile.
    """

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from sarray.models.seeding import derive_seed, normalise_tile_index

        out = super().__call__(batch)["output"].astype(np.float32)
        for k, (sid, idx) in enumerate(zip(batch["scene_id"], batch["tile_index"])):
            rng = np.random.default_rng(derive_seed(str(sid), normalise_tile_index(idx), self.config.seed))
            out[k] *= rng.exponential(1.0, size=out[k].shape).astype(np.float32)
        return {**batch, "output": out}


class SlowIdentityReplica(IdentityReplica):
    """The identity at a fixed cost per tile (``SECONDS_PER_TILE``), like a model that keeps
    its device busy: benchmarks measure whether replicas stay busy across scene boundaries."""

    SECONDS_PER_TILE = 0.25

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import time

        time.sleep(self.SECONDS_PER_TILE * len(batch["tiles"]))
        return super().__call__(batch)


class DeviceBoundReplica(SlowIdentityReplica):
    """The identity at one second per tile, spent off the CPU (a sleep): the cost profile of a
    GPU replica, whose model leaves the host's cores to the engine's reads, blends and writes.
    Benchmarks compare the engine with bare replicas of it on a machine with no GPU."""

    SECONDS_PER_TILE = 1.0


class CpuBoundReplica(IdentityReplica):
    """The identity at a fixed CPU cost per tile (``CPU_SECONDS_PER_TILE`` of the calling
    thread's CPU, spent in torch matrix products, which release the GIL as a model's layers
    do): a CPU model heavier than the tiny one. With one torch thread (a CPU replica that has a
    core to itself) the cost is one core's; under contention it takes longer, as a model would.
    Benchmarks compare the engine with bare replicas of it to see how the engine's fixed work
    per chunk weighs against the model's on CPU replicas."""

    CPU_SECONDS_PER_TILE = 3.0

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import time

        import torch

        a = torch.full((128, 128), 1.0 / 128)  # a @ a == a: values stay finite
        end = time.thread_time() + self.CPU_SECONDS_PER_TILE * len(batch["tiles"])
        while time.thread_time() < end:
            a = torch.mm(a, a)
        return super().__call__(batch)


class CrashOnceReplica(SpeckleReplica):
    """Kills its own process the first time it sees tile ``(1, 1)``, as a dying GPU worker would.

    The marker file (``SARRAY_TEST_CRASH_MARKER``) makes the crash happen once per test.
    """

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        marker = Path(os.environ["SARRAY_TEST_CRASH_MARKER"])
        keys = [tuple(np.asarray(i).tolist()) for i in batch["tile_index"]]
        if (1, 1) in keys and not marker.exists():
            marker.write_text("crashed")
            os._exit(1)
        return super().__call__(batch)


class AlwaysFailReplica(IdentityReplica):
    """Raises on tile ``(0, 1)`` every time: the job must stop with an error naming it."""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        keys = [tuple(np.asarray(i).tolist()) for i in batch["tile_index"]]
        if (0, 1) in keys:
            raise RuntimeError("injected failure")
        return super().__call__(batch)


class FleetReplica(IdentityReplica):
    """The identity at a fixed time per tile spent asleep (a GPU replica's cost profile, with
    numpy only: never torch), the seconds per tile read from ``SARRAY_FLEET_TILE_S`` (default
    1.0) at each call. The fleet benchmark (``benchmarks/bench_fleet.py``) runs dozens of these
    on one box, pinned by fake GPUs, and sets the time per tile through the job's runtime env."""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import time

        time.sleep(float(os.environ.get("SARRAY_FLEET_TILE_S", "1.0")) * len(batch["tiles"]))
        return super().__call__(batch)


class MarkingSpeckleReplica(SpeckleReplica):
    """:class:`SpeckleReplica` at ``SECONDS_PER_TILE`` asleep per tile, which touches the file
    named by ``SARRAY_TEST_MARK_FILE`` once it has finished ``MARK_AFTER_CALLS`` calls: a
    test waits for the file to take a node away while the job is under way on it."""

    SECONDS_PER_TILE = 0.15
    MARK_AFTER_CALLS = 2

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.calls = 0

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import time

        time.sleep(self.SECONDS_PER_TILE * len(batch["tiles"]))
        out = super().__call__(batch)
        self.calls += 1
        if self.calls >= self.MARK_AFTER_CALLS:
            Path(os.environ["SARRAY_TEST_MARK_FILE"]).touch()
        return out
