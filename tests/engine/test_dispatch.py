"""The dispatcher's feeding of the replica pool, simulated without Ray (a clock, fake actors)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from sarray.engine.dispatch import Dispatcher
from sarray.engine.plan import ScenePlan
from sarray.engine.pool import ActorPool
from sarray.tiles.grid import TileSpec

SPEC = TileSpec(scale=2, chunk_px=64, halo_px=4)
_REFS = itertools.count()


class _Call:
    def remote(self, *args):
        return [("ref", next(_REFS)) for _ in range(self.n)]

    def options(self, *, num_returns: int):
        self.n = num_returns
        return self


class _Actor:
    def __init__(self) -> None:
        self.predict = _Call()


def _simulate(seconds_per_tile: list[float], tiles_shape=(96, 128), batch: int = 2) -> list[float]:
    """Run a job's feeding against replicas of the given speeds (each runs its calls in order);
    returns when each replica runs out of work."""
    plan = ScenePlan.build(scene_id="a", out_id="a_x2", shape_in=tiles_shape, spec=SPEC)
    pool = ActorPool([_Actor() for _ in seconds_per_tile], slots=2)
    d = Dispatcher(pool=pool, writer=None, assemble=None, infos={"a_x2": SimpleNamespace(plan=plan)},
                   boxes={"a_x2": None}, assembler=SimpleNamespace(ready_count=0), summaries={},
                   batch_size=batch, max_chunks_in_flight=10**6, progress=lambda n: None)
    queues: list[list] = [[] for _ in seconds_per_tile]  # per actor: (ack, tiles), first running
    ends = [0.0] * len(seconds_per_tile)  # when each actor's running call ends
    now = 0.0
    while True:
        d._feed()
        for ack, call in d.tile_calls.items():
            q = queues[call.actor]
            if all(a != ack for a, _ in q):
                if not q:  # idle: starts now
                    ends[call.actor] = now + len(call.keys) * seconds_per_tile[call.actor]
                q.append((ack, len(call.keys)))
        busy = [i for i, q in enumerate(queues) if q]
        if not busy:
            return ends
        i = min(busy, key=ends.__getitem__)
        now = ends[i]
        ack, _ = queues[i].pop(0)
        if queues[i]:  # the queued call starts
            ends[i] = now + queues[i][0][1] * seconds_per_tile[i]
        pool.release(d.tile_calls.pop(ack).actor)


@pytest.mark.parametrize(("speeds", "shape"), [([1.0, 1.7], (128, 128)), ([1.0, 1.9], (96, 96)),
                                                ([1.0, 2.3], (64, 64)), ([1.0, 1.0, 1.3], (128, 128))])
def test_the_last_calls_go_to_the_replica_that_frees_first(speeds: list[float], shape) -> None:
    """Greedy at the tail: the job's last (single-tile) calls go to whichever replica frees
    first, so replicas of unequal speed (one sharing its core with assembly) end within one tile
    of the slowest. Queued behind busy replicas, they ended up to 2.5 tiles apart here."""
    ends = _simulate(speeds, shape, batch=2)
    assert max(ends) - min(ends) <= max(speeds) + 1e-9


def test_one_replica_keeps_its_next_call_queued_to_the_end() -> None:
    """With one replica nothing is gained at the tail: its last call is queued as any other,
    so it never waits for its input."""
    plan = ScenePlan.build(scene_id="a", out_id="a_x2", shape_in=(96, 128), spec=SPEC)
    pool = ActorPool([_Actor()], slots=2)
    d = Dispatcher(pool=pool, writer=None, assemble=None, infos={"a_x2": SimpleNamespace(plan=plan)},
                   boxes={"a_x2": None}, assembler=SimpleNamespace(ready_count=0), summaries={},
                   batch_size=1, max_chunks_in_flight=10**6, progress=lambda n: None)
    while len(d.queue) > 1:
        d._feed()
        pool.release(d.tile_calls.pop(next(iter(d.tile_calls))).actor)
    d._feed()
    assert not d.queue and pool.load == [2]
