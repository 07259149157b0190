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

    def options(self, *, num_returns: int = 1, max_task_retries: int | None = None):
        self.n = num_returns
        return self


class _Probe:
    def options(self, **kwargs):
        return self

    def remote(self):
        return ("probe", next(_REFS))


class _Actor:
    def __init__(self) -> None:
        self.predict = _Call()
        self.ready = _Probe()


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


def _dispatcher(shapes, *, replicas: int = 1, batch: int = 2, max_batch: int | None = None,
                writer=None, actors=None) -> Dispatcher:
    plans = [ScenePlan.build(scene_id=f"s{i}", out_id=f"s{i}_x2", shape_in=sh, spec=SPEC)
             for i, sh in enumerate(shapes)]
    pool = ActorPool(actors or [_Actor() for _ in range(replicas)], slots=2)
    return Dispatcher(pool=pool, writer=writer, assemble=None,
                      infos={p.out_id: SimpleNamespace(plan=p) for p in plans},
                      boxes={p.out_id: None for p in plans},
                      assembler=SimpleNamespace(ready_count=0, add=lambda key, pred, origin=None: None),
                      summaries={p.out_id: SimpleNamespace(tiles=0, model_spans=[], retries=0)
                                 for p in plans},
                      batch_size=batch, max_batch_size=max_batch, max_chunks_in_flight=10**6,
                      progress=lambda n: None)


def _drain(d: Dispatcher) -> list[tuple[str, list]]:
    """Feed until the queue is empty, every call returning at once; the calls in order."""
    calls = []
    while d.queue:
        d._feed()
        for ack in list(d.tile_calls):
            call = d.tile_calls.pop(ack)
            calls.append((call.out_id, call.keys))
            d.pool.release(call.actor)
    return calls


@pytest.mark.parametrize(("batch", "replicas"), [(2, 1), (2, 2), (3, 2), (1, 2)])
def test_calls_cover_every_tile_once_in_order_and_end_with_single_tiles(batch: int, replicas: int) -> None:
    """The job's last replicas x batch_size tiles go one per call (little assembly is left when
    the replicas finish); before, every call is a whole batch of one scene, but a scene's last
    and the one that reaches the tail."""
    d = _dispatcher([(128, 128), (64, 64)], replicas=replicas, batch=batch)
    want = [(o, k) for o, i in d.infos.items() for k in sorted(i.plan.tiles)]
    assert sum(d.queued.values()) == len(want)
    calls = _drain(d)
    assert [(o, k) for o, ks in calls for k in ks] == want and not d.queued
    tail = replicas * batch
    flat_sizes = [len(ks) for _, ks in calls]
    assert flat_sizes[len(flat_sizes) - tail:] == [1] * tail
    head = calls[: len(calls) - tail]
    last_of = {o: max(i.plan.tiles) for o, i in d.infos.items()}
    assert all(len(ks) == batch or ks[-1] == last_of[o] for o, ks in head[:-1])


class _Intake:
    """The scenes of a job planned as it goes: plans come back when the test says so."""

    def __init__(self, plans: list[ScenePlan], exists: set[str] = frozenset()) -> None:
        self.scenes = [p.scene_id for p in plans]
        self.plans = {p.scene_id: p for p in plans}
        self.exists = exists
        self.submitted: list[str] = []
        self.values: dict = {}

    def submit(self, sid: str):
        ref = ("plan", next(_REFS))
        self.submitted.append(sid)
        self.values[ref] = sid
        return ref

    def admit(self, sid: str):
        p = self.plans[sid]
        summary = SimpleNamespace(tiles=0, model_spans=[], retries=0,
                                  status="exists" if sid in self.exists else "complete")
        info = None if sid in self.exists else SimpleNamespace(plan=p, scene_id=sid)
        return p.out_id, summary, info, None


def test_scenes_are_planned_as_the_queue_runs_short_and_admitted_in_order() -> None:
    """A job's scenes after the first are asked of the writer only while the queue holds fewer
    than PLAN_AHEAD_POOLS pool-fulls of tiles, PLANS_IN_FLIGHT at a time; a plan back early
    waits for the one before it; an existing output adds no tile; and the calls are those of a
    job planned up front: every tile once, in the job's order, whole batches until the job's
    real tail (no single-tile calls while scenes are still to come)."""
    import sarray.engine.dispatch as dispatch

    shapes = [(224, 224), (64, 64), (64, 64), (96, 96), (64, 64), (128, 128)]  # 49, 4, 4, 9, 4, 16 tiles
    plans = [ScenePlan.build(scene_id=f"s{i}", out_id=f"s{i}_x2", shape_in=sh, spec=SPEC)
             for i, sh in enumerate(shapes)]
    intake = _Intake(plans[1:], exists={"s2"})
    pool = ActorPool([_Actor(), _Actor()], slots=2)
    d = Dispatcher(pool=pool, writer=None, assemble=None,
                   infos={"s0_x2": SimpleNamespace(plan=plans[0], scene_id="s0")},
                   boxes={"s0_x2": None},
                   assembler=SimpleNamespace(ready_count=0, add=lambda key, pred, origin=None: None,
                                             add_plan=lambda plan: None),
                   summaries={"s0_x2": SimpleNamespace(tiles=0, model_spans=[], retries=0)},
                   batch_size=2, max_batch_size=2, max_chunks_in_flight=10**6,
                   progress=lambda n: None, runtime=SimpleNamespace(get=lambda ref: intake.values[ref]),
                   intake=intake)
    ahead = dispatch.PLAN_AHEAD_POOLS * 2 * 2 * 2  # pools x replicas x slots x largest call
    d._plan_more()
    assert intake.submitted == [] and len(d.queue) >= ahead  # the first scene's 49 tiles suffice
    calls = []
    while d.queue or d.more_scenes:
        d._plan_more()
        assert len(d.planning) <= dispatch.PLANS_IN_FLIGHT
        assert not d.planning or len(d.queue) < ahead or len(intake.submitted) == 0
        d._feed()
        for ack in list(d.tile_calls):
            call = d.tile_calls.pop(ack)
            calls.append((call.out_id, call.keys))
            d.pool.release(call.actor)
        if d.queue or not d.planning:
            continue  # plans come back once the queue is dry (a scene of odd tiles ends alone)
        if len(d.planning) == 2:  # the later plan comes back first: held until the earlier one
            early, late = list(d.planning)
            d._planned(late)
            assert late in d.planned_early and intake.plans[d.planning[early]].out_id not in d.summaries
            d._planned(early)
            assert not d.planning and not d.planned_early
        else:
            d._planned(next(iter(d.planning)))
    assert intake.submitted == [p.scene_id for p in plans[1:]]
    assert list(d.summaries) == [p.out_id for p in plans] and d.summaries["s2_x2"].status == "exists"
    want = [(p.out_id, k) for p in plans if p.scene_id != "s2" for k in sorted(p.tiles)]
    assert [(o, k) for o, ks in calls for k in ks] == want
    sizes = [len(ks) for _, ks in calls]
    tail = 2 * 2  # replicas x batch_size: the job's last tiles one per call
    assert sizes[-tail:] == [1] * tail
    last_of = {p.out_id: max(p.tiles) for p in plans}
    assert all(n == 2 or ks[-1] == last_of[o] for (o, ks), n in zip(calls[:-tail - 1], sizes))


def _drain_acked(d: Dispatcher, per_tile: float) -> list:
    """Feed until the queue is empty, each call acked at once with ``per_tile`` seconds of model
    time per tile; the calls in order, after checking they sent every tile once, in order."""
    order = [(o, k) for o, i in d.infos.items() for k in sorted(i.plan.tiles)]
    calls = []
    while d.queue:
        d._feed()
        for ack in list(d.tile_calls):
            call = d.tile_calls.pop(ack)
            calls.append(call)
            d._tiles_back(("ack", (1, "node", 0.0, per_tile * len(call.keys))), call)
    assert [(c.out_id, k) for c in calls for k in c.keys] == order
    return calls


def test_calls_grow_while_the_replicas_are_fast_and_never_mix_scenes(monkeypatch) -> None:
    """Acks of short model calls grow the batch up to max_batch_size; slow ones keep it at
    batch_size. A call never mixes two scenes, and the tail still goes one tile at a time."""
    import sarray.engine.dispatch as dispatch

    monkeypatch.setattr(dispatch, "get", lambda ack: ack[1])
    for per_tile, want in [(0.001, 8), (dispatch.BATCH_TARGET_S / 3.5, 3), (2.0, 2)]:
        d = _dispatcher([(224, 224), (128, 128)], batch=2, max_batch=8)  # 49 and 16 tiles
        calls = _drain_acked(d, per_tile)
        sizes = [len(c.keys) for c in calls]
        assert sizes[0] == 2 and max(sizes) == want and sizes[-2:] == [1, 1]
        # Each call is one scene's: the first scene's last call stops at its last tile.
        first = [c for c in calls if c.out_id == "s0_x2"]
        assert first[-1].keys[-1] == max(d.infos["s0_x2"].plan.tiles)


def test_a_failed_call_is_sent_again_tile_by_tile(monkeypatch) -> None:
    """A failed batch goes back to the front of the queue one tile per call, with its attempts
    counted, so that a tile that keeps failing is the one named."""
    import ray

    import sarray.engine.dispatch as dispatch

    def fail(ack):
        raise ray.exceptions.RayTaskError("predict", "boom", RuntimeError("boom"))

    monkeypatch.setattr(dispatch, "get", fail)
    d = _dispatcher([(256, 256)], batch=4, max_batch=4)
    d._feed()
    ack, call = next(iter(d.tile_calls.items()))
    d._tiles_back(ack, d.tile_calls.pop(ack))
    assert list(d.queue)[:4] == [(call.out_id, k, 1) for k in call.keys]
    assert d.queued == {call.out_id: len(d.queue)}  # what tells the assembly an output is fed
    d._feed()
    (again,) = [c for c in d.tile_calls.values() if c.attempts == 1]
    assert again.keys == [call.keys[0]]


FOUR = ((0, 0), (0, 1), (0, 2), (0, 3))  # an assembly call's chunks


class _Writer:
    def __init__(self) -> None:
        self.merged: list[tuple[str, int]] = []
        outer = self

        class _MergeMany:
            def remote(self, out_id, *refs):
                outer.merged.append((out_id, len(refs)))
                return ("merge", next(_REFS))

        self.merge_many = _MergeMany()


def test_written_chunks_are_merged_a_commit_at_a_time_or_when_last(monkeypatch) -> None:
    """One merge call per commit's worth of written chunks, or for a scene's last ones, or once
    the oldest has waited MERGE_EVERY_S; not one per assembly call."""
    import sarray.engine.dispatch as dispatch

    clock = [100.0]
    monkeypatch.setattr(dispatch.time, "monotonic", lambda: clock[0])
    w = _Writer()
    d = _dispatcher([(256, 256)], writer=w)
    out = next(iter(d.infos))
    d.left[out] = 40
    for _ in range(3):  # 12 chunks in three assembly calls: not yet
        d.unmerged.setdefault(out, []).append((("asm", next(_REFS)), FOUR))
        d.unmerged_since.setdefault(out, clock[0])
        d._merge()
    assert w.merged == []
    d.unmerged[out].append((("asm", next(_REFS)), FOUR))  # 16: a commit's worth
    d._merge()
    assert w.merged == [(out, 4)] and not d.unmerged
    d.unmerged[out] = [(("asm", next(_REFS)), FOUR)]
    d.unmerged_since[out] = clock[0]
    clock[0] += dispatch.MERGE_EVERY_S - 0.1
    d._merge()
    assert len(w.merged) == 1 and 0 < d._merge_due_in() <= 0.1 + 1e-9
    clock[0] += 0.1
    d._merge()
    assert w.merged[-1] == (out, 1)
    # The scene's last chunks: 40 - 16 - 4 merging; these 20 are all that is left.
    d.unmerged[out] = [(("asm", next(_REFS)), FOUR)]
    d.unmerged_since[out] = clock[0]
    d.merges = {("merge", 1): (out, 16, []), ("merge", 2): (out, 4, [])}
    d.left[out] = 24
    d._merge()
    assert w.merged[-1] == (out, 1) and len(w.merged) == 3


class _Assemblers:
    def __init__(self, n: int) -> None:
        self.actors = [None] * n
        self.calls: list[tuple[list, int | None]] = []

    def available(self) -> bool:
        return True

    def remote(self, box, keys, tile_keys, fork, index, *batches, home=None, node=None):
        # Each call object is passed once, and each tile found where its call put it (the
        # tests' calls: two tiles of a row each, see _pred).
        assert len(set(batches)) == len(batches) and len(index) == len(tile_keys)
        assert all((batches[j], i) == _pred(tk) for tk, (j, i) in zip(tile_keys, index))
        self.calls.append((keys, home))
        return ("asm", next(_REFS))


def _pred(tile):
    """A tile's prediction as the dispatcher records it: (its call's object, its place in it),
    for calls of two tiles along a row."""
    r, c = tile
    return ("call", r, c // 2), c % 2


@pytest.mark.parametrize(("assemblers", "sizes"), [(2, [4, 4]), (3, [2, 3, 3]), (8, [1] * 8)])
def test_the_jobs_last_chunks_are_shared_evenly_among_the_assemblers(assemblers: int, sizes: list) -> None:
    """Once no tile is left anywhere, the ready chunks (here the last two chunk rows, which
    needed the last tile row) go out in as many calls as there are assemblers, not one call per
    chunk: every assembler still takes a share of the tail, for fewer Ray calls."""
    from sarray.engine.plan import Assembler

    d = _dispatcher([(128, 128)], writer=SimpleNamespace(fork=SimpleNamespace(remote=lambda o: "fork")))
    plan = next(iter(d.infos.values())).plan
    d.assembler = Assembler([plan], per_task=4, key_of=lambda p: p.out_id)
    d.assemble = _Assemblers(assemblers)
    d.queue.clear()
    d.queued.clear()
    last_row = max(r for r, _ in plan.tiles)
    for r, c in sorted(plan.tiles):  # every tile but the last row's: the first rows go home
        if r < last_row:
            d.assembler.add((plan.out_id, r, c), _pred((r, c)))
    d.tile_calls[("ack", 0)] = SimpleNamespace(out_id=plan.out_id, keys=[(last_row, 0)])
    d.calling[plan.out_id] += 1  # what _feed counts as it submits
    d._assemble()
    homed = list(d.assemble.calls)
    assert homed and all(len(k) == 4 and h is not None for k, h in homed)
    d.tile_calls.clear()
    d.calling.clear()
    for c in range(plan.grid[1]):
        d.assembler.add((plan.out_id, last_row, c), _pred((last_row, c)))
    d._assemble()
    tail = d.assemble.calls[len(homed):]
    assert sorted(len(k) for k, _ in tail) == sizes and all(h is None for _, h in tail)
    assert sorted(k for keys, _ in d.assemble.calls for k in keys) == sorted(plan.todo)


def test_the_pools_least_loaded_actor_is_the_one_a_full_pass_finds() -> None:
    """The pool keeps its actors' loads in a heap (a fleet's thousand actors are not scanned at
    every call); its choice is still the least loaded, lowest index first."""
    import random

    rng = random.Random(3)
    pool = ActorPool([_Actor() for _ in range(37)], slots=2)
    for _ in range(5000):
        if pool.has_slot() and rng.random() < 0.55:
            want = min(range(37), key=pool.load.__getitem__)
            assert pool.pick() == want
            pool.submit(want, None, [], returns=1)
        else:
            busy = [i for i, v in enumerate(pool.load) if v]
            if busy:
                pool.release(rng.choice(busy))
        assert pool.has_slot() == (min(pool.load) < 2)
        assert pool.has_slot(queued=False) == (min(pool.load) < 1)


def test_a_replica_lost_with_its_node_gets_no_call_until_a_probe_answers() -> None:
    """A call that failed as a lost actor does puts its replica in quarantine: its tiles go to
    the other replicas instead of failing on it again. It is probed PROBE_AFTER_S later, then
    at doubling waits while the probes fail (its node's end not yet seen, or no room to restart
    it), and takes calls again once one answers."""
    from sarray.engine.pool import PROBE_AFTER_S, PROBE_MAX_S

    pool = ActorPool([_Actor() for _ in range(3)], slots=2)
    pool.quarantine(1, now=10.0)
    pool.quarantine(1, now=10.5)  # a second failed call of the same actor: one quarantine
    picks = []
    for _ in range(4):
        i = pool.pick()
        picks.append(i)
        pool.submit(i, None, [], returns=1)
    assert 1 not in picks and not pool.has_slot() and not pool.quarantined.probes
    waits = []
    now = 10.0 + PROBE_AFTER_S
    for _ in range(6):
        pool.tick(now)
        (ref,) = pool.quarantined.probes
        pool.probed(ref, ok=False, dead=False, now=now)
        assert not pool.has_slot()  # still in quarantine
        waits.append(pool.quarantined.next_due() - now)
        now = pool.quarantined.next_due()
    assert waits == [min(PROBE_MAX_S, PROBE_AFTER_S * 2 ** k) for k in range(1, 7)]
    pool.tick(now - 0.01)
    assert not pool.quarantined.probes  # not due yet
    pool.tick(now)
    (ref,) = pool.quarantined.probes
    pool.probed(ref, ok=True, dead=False, now=now)
    assert pool.has_slot() and pool.pick() == 1 and pool.quarantined.count() == 0


def test_a_replica_with_no_restart_left_is_never_probed_again() -> None:
    from sarray.engine.pool import PROBE_AFTER_S

    pool = ActorPool([_Actor() for _ in range(2)], slots=2)
    pool.quarantine(0, now=0.0)
    pool.tick(PROBE_AFTER_S)
    (ref,) = pool.quarantined.probes
    pool.probed(ref, ok=False, dead=True, now=PROBE_AFTER_S)
    pool.tick(1e9)
    assert not pool.quarantined.probes and pool.quarantined.next_due() is None
    assert pool.pick() == 1 and pool.available()


def test_the_job_stops_naming_the_cause_when_every_replica_is_lost_for_good() -> None:
    """Every replica in quarantine with tiles left: the job waits STARVED_S for a restart,
    then stops with a message; at once when none has a restart left."""
    from sarray.engine.dispatch import STARVED_S
    from sarray.engine.pool import PROBE_AFTER_S
    from sarray.errors import ReplicaError

    d = _dispatcher([(64, 64)], replicas=2)
    d.assemble = SimpleNamespace(available=lambda: True)
    for i in range(2):
        d.pool.quarantine(i, now=0.0)
    d._check_starved(1.0)
    d._check_starved(1.0 + STARVED_S - 1)  # still waiting for a restart
    with pytest.raises(ReplicaError, match=r"every replica \(2\) was lost and none came back"):
        d._check_starved(1.0 + STARVED_S)
    d.starved_since = None
    d.pool.tick(PROBE_AFTER_S)
    for ref in list(d.pool.quarantined.probes):
        d.pool.probed(ref, ok=False, dead=True, now=PROBE_AFTER_S)
    with pytest.raises(ReplicaError, match=r"every replica \(2\) died with no restart left"):
        d._check_starved(PROBE_AFTER_S)


@pytest.mark.parametrize(("replicas", "per_tile", "want"), [(4, 2.0, 2), (32, 3.2, 4), (64, 3.2, 8)])
def test_a_large_fleet_of_slow_replicas_gets_larger_calls(monkeypatch, replicas: int,
                                                          per_tile: float, want: int) -> None:
    """The pool's tile rate (replicas / tile time) bounds the driver's calls a second: 32
    replicas at 3.2 s a tile (10 tiles/s) take calls of 4 tiles, 64 of 8 (max_batch_size);
    4 replicas at 2 s keep batch_size. Every tile is still sent once, in order."""
    import sarray.engine.dispatch as dispatch

    monkeypatch.setattr(dispatch, "get", lambda ack: ack[1])
    assert dispatch.DRIVER_CALLS_PER_S == 2.5
    d = _dispatcher([(640, 640)], replicas=replicas, batch=2, max_batch=8)  # 400 tiles
    calls = _drain_acked(d, per_tile)
    sizes = [len(c.keys) for c in calls]
    assert sizes[0] == 2 and max(sizes) == want
