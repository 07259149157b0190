"""The driver's side of a translate job: object refs in flight, and what to do as each returns.

Three kinds of call are in flight, all answered by small values:

- tile calls on the replica pool: an ack (pid, node, model times) per batch, the predictions
  staying in the object store;
- assembler calls (:func:`sarray.engine.work.assemble_chunks` on an assembler actor): each
  returns a fork with its chunks written, which goes straight to the writer;
- merge calls on the job's :class:`~sarray.engine.output.OutputWriter`: the chunks' notes.

Backpressure: the pool's slots bound the tiles on the replicas, and ``max_chunks_in_flight``
bounds the chunks between a replica and their assembly, so the predictions waiting in the object
store do not grow with the scene.

The driver's cost is a few Ray calls per tile, so it makes as few as it can:

- a replica call takes ``batch_size`` tiles, and more (up to ``max_batch_size``) once the
  replicas' calls are seen to be short (:data:`~sarray.config.BATCH_TARGET_S`), or once the
  pool's tile rate would take more than :data:`~sarray.config.DRIVER_CALLS_PER_S` calls a
  second (a fleet of slow replicas);
- the chunks an output's assembly calls wrote are merged together, once a commit's worth are
  waiting (:data:`~sarray.config.COMMIT_EVERY_CHUNKS`), every :data:`MERGE_EVERY_S` seconds, or
  when they are the output's last.

Scenes are planned as the job goes (an *intake*, see :class:`Dispatcher`): the writer prepares
the next scene while the queue holds fewer than :data:`PLAN_AHEAD_POOLS` pool-fulls of tiles, so
the first tile of a job of 10^4 scenes does not wait for 10^4 plans (0.1-0.3 s each on the
writer), and the writer holds the sessions of the scenes in flight, not of the whole job.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass
from typing import Any

from sarray.config import BATCH_TARGET_S, COMMIT_EVERY_CHUNKS, DRIVER_CALLS_PER_S, MAX_TILE_ATTEMPTS
from sarray.engine.plan import Assembler
from sarray.errors import ReplicaError
from sarray.raysession import get, ray_cause


@dataclass
class TileCall:
    """A batch of tiles on a replica."""

    out_id: str
    keys: list[tuple[int, int]]
    actor: int
    box: Any  # the ref of the call's predictions (one object for the batch)
    attempts: int = 0


def _last_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[-1][:300] if text else type(e).__name__


# Times one chunk's assembly, or one tile's call, may be lost with a node before the job stops:
# each loss quarantines the actor it ran on (see sarray.engine.pool.Quarantine), so the next
# try goes to one that is up; this covers several nodes lost in one job.
MAX_LOST_ATTEMPTS = 10

# The job stops when every replica has been in quarantine this long (every node that held one
# gone, and no room for them elsewhere), instead of waiting for a restart that may never come.
STARVED_S = 300.0


def _lost(e: BaseException) -> bool:
    """A failure of the cluster, not of the work: an actor or an object gone with its node."""
    import ray

    lost = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError)
    return isinstance(e, lost) or isinstance(ray_cause(e), lost)


# Scenes planned ahead of the replicas: the next scene is prepared while the queue holds fewer
# than this many pool-fulls of tiles (replicas x slots x the largest call), at most
# PLANS_IN_FLIGHT at a time (the writer prepares them between its merges, one after another).
PLAN_AHEAD_POOLS = 2
PLANS_IN_FLIGHT = 2

# Written chunks wait at most this long for their merge (the progress bar and the chunks' notes
# follow the merges); a commit's worth of chunks, or an output's last, are merged at once.
MERGE_EVERY_S = 5.0


def job_tiles(infos: dict[str, Any]) -> list[tuple[str, tuple[int, int]]]:
    """The job's tiles in order: each scene's tiles row by row, scene after scene."""
    return [(o, k) for o, i in infos.items() for k in sorted(i.plan.tiles)]


def call_objects(predictions: tuple[tuple[Any, int], ...]) -> tuple[list[Any], list[tuple[int, int]]]:
    """The distinct call objects of an assembly's predictions (each ``(object, position)``), in
    order, as arguments of their own (Ray resolves those before the call), and each
    prediction's ``(argument, position)``."""
    batches: list[Any] = []
    where: dict[Any, int] = {}
    index = []
    for box, i in predictions:
        j = where.get(box)
        if j is None:
            j = where[box] = len(batches)
            batches.append(box)
        index.append((j, i))
    return batches, index


class RayRuntime:
    """What the dispatcher asks of Ray: wait for refs, fetch a small value. The continental
    plan benchmark (``benchmarks/bench_plan.py``) gives it a simulated one instead, so the
    driver's real loop runs against a thousand replicas without Ray."""

    def wait(self, refs: list[Any], timeout: float | None) -> list[Any]:
        """Every ref of ``refs`` that is ready, waiting up to ``timeout`` for the first. One
        wait per event would cost the driver a pass over every ref in flight per event (a
        few thousand with a fleet); collecting all that are ready makes it one per wake-up."""
        import ray

        ready = ray.wait(refs, num_returns=1, fetch_local=False, timeout=timeout)[0]
        if ready and len(refs) > 1:
            ready = ray.wait(refs, num_returns=len(refs), fetch_local=False, timeout=0)[0] or ready
        return ready

    def get(self, ref: Any) -> Any:
        return get(ref)  # this module's name, looked up at the call (tests replace it)


class Dispatcher:
    """Streams one job's tiles through the pool and its chunks through assembly and merging.

    Args:
        pool: the :class:`~sarray.engine.pool.ActorPool`.
        writer: the job's ``OutputWriter`` actor; ``writer_of`` (given: ``writer`` unused) the
            writer of each output, for a job whose scenes are dealt among several.
        assemble: the :class:`~sarray.engine.pool.AssemblerPool`.
        infos: each output's ``SceneInfo``; ``boxes`` the same as object refs.
        assembler: the pure bookkeeping of ready chunks.
        summaries: each output's summary, updated as work returns.
        batch_size: tiles per replica call, at first and in the job's tail.
        max_batch_size: tiles per replica call at most, once calls are seen to be short.
        max_chunks_in_flight: chunks allowed between a replica and their assembly.
        progress: called with the number of chunks merged.
        metrics: the job's :class:`~sarray.engine.metrics.JobMetrics` (None: not published).
        runtime: waits and fetches (:class:`RayRuntime` unless simulated).
        intake: the scenes still to plan, beyond those of ``infos`` (None: none). It has
            ``scenes`` (their ids, in the job's order), ``submit(scene_id)`` (a ref to the
            writer's plan of it) and ``admit(value)`` (that plan's value: ``(out_id, summary,
            info, box)``; ``info`` None for an output that exists already). Scenes are
            admitted in the job's order, their tiles queued behind the others'.
    """

    def __init__(self, *, pool: Any, writer: Any, assemble: Any, infos: dict[str, Any],
                 boxes: dict[str, Any], assembler: Assembler, summaries: dict[str, Any],
                 batch_size: int, max_chunks_in_flight: int, progress: Any,
                 max_batch_size: int | None = None, metrics: Any = None,
                 runtime: Any = None, intake: Any = None, writer_of: Any = None) -> None:
        self.runtime = runtime if runtime is not None else RayRuntime()
        self.pool, self.writer, self.assemble = pool, writer, assemble
        self.writer_of = writer_of if writer_of is not None else (lambda out_id: writer)
        self.infos, self.boxes, self.assembler = infos, boxes, assembler
        self.summaries, self.progress = summaries, progress
        self.max_chunks_in_flight = max_chunks_in_flight
        self.batch_size = batch_size
        self.max_batch_size = max(batch_size, max_batch_size or batch_size)
        self.tile_s: float | None = None  # model seconds per tile, a running average
        # (output, tile key, failed attempts so far), in the job's order.
        self.queue = collections.deque((o, k, 0) for o, k in job_tiles(infos))
        self.queued = collections.Counter(o for o, _, _ in self.queue)  # tiles queued per output
        self.calling: collections.Counter[str] = collections.Counter()  # tiles on replicas per output
        # The job's last tiles go one per call (the chunks around them can only be assembled
        # once they are back: smaller calls leave less work after the replicas have finished),
        # and with several replicas greedily, to an idle one.
        self.tail_tiles = len(pool.actors) * batch_size
        self.tile_calls: dict[Any, TileCall] = {}
        self.assembling: dict[Any, tuple[str, tuple[Any, ...]]] = {}  # task -> (output, chunks)
        self.assembling_chunks = 0  # the chunks of those tasks (asked at every call fed)
        self.unmerged: dict[str, list[tuple[Any, tuple[Any, ...]]]] = {}  # output -> written (task, chunks)
        self.unmerged_since: dict[str, float] = {}  # output -> when its oldest one came back
        # merge call -> (output, chunks, its assembly tasks: what to check if it fails)
        self.merges: dict[Any, tuple[str, int, list[tuple[Any, tuple[Any, ...]]]]] = {}
        self.redone: collections.Counter[tuple[str, Any]] = collections.Counter()  # lost chunks
        self.lost_tiles: collections.Counter[tuple[str, Any]] = collections.Counter()  # per tile
        self.starved_since: float | None = None  # since when every replica is in quarantine
        self.forks: dict[str, Any] = {}  # output -> ref of the fork of its last commit
        self.finishing: dict[Any, str] = {}  # finish call -> output (not waited for in line)
        self.left = {o: len(i.plan.todo) for o, i in infos.items()}
        self.t0 = time.perf_counter()
        self.metrics = metrics
        self.intake = intake
        self.to_plan = collections.deque(intake.scenes if intake is not None else ())
        self.planning: dict[Any, str] = {}  # plan call -> scene, in the job's order
        self.planned_early: dict[Any, Any] = {}  # plans back before an earlier one: held

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> None:
        """Until every chunk is merged: feed the pool, wait for anything, handle what is back."""
        for out_id in [o for o, n in self.left.items() if n == 0]:
            self._finish(out_id)
        while (self.queue or self.tile_calls or self.assembling or self.unmerged or self.merges
               or self.finishing or self.assembler.ready_count or self.more_scenes):
            now = time.monotonic()
            self.pool.tick(now)
            self.assemble.tick(now)
            self._check_starved(now)
            self._plan_more()
            self._feed()
            refs = [*self.tile_calls, *self.assembling, *self.merges, *self.finishing,
                    *(r for r in self.planning if r not in self.planned_early)]
            if not refs and not (self.queue or self.assembler.ready_count):
                self._merge(now=True)  # only written chunks are left waiting: nothing else can come
                continue
            probes = [*self.pool.quarantined.probes, *self.assemble.quarantined.probes]
            if not refs and not probes:  # work held back until the next probe goes out
                time.sleep(min(1.0, self._wake_in() or 0.1))
                continue
            for ref in self.runtime.wait(refs + probes, self._wake_in()):
                if ref in self.pool.quarantined.probes:
                    self._probed(self.pool, ref)
                elif ref in self.assemble.quarantined.probes:
                    self._probed(self.assemble, ref)
                elif ref in self.tile_calls:
                    self._tiles_back(ref, self.tile_calls.pop(ref))
                elif ref in self.assembling:
                    out_id, keys = self.assembling.pop(ref)
                    self.assembling_chunks -= len(keys)
                    self.assemble.done(ref)
                    self.unmerged.setdefault(out_id, []).append((ref, keys))
                    self.unmerged_since.setdefault(out_id, time.monotonic())
                elif ref in self.merges:
                    out_id, _, tasks = self.merges.pop(ref)
                    self._merged(ref, out_id, tasks)
                elif ref in self.planning:
                    self._planned(ref)
                else:
                    out_id = self.finishing.pop(ref)
                    self.summaries[out_id].status = self.runtime.get(ref)
            self._assemble()
            self._merge()
            if self.metrics is not None and self.metrics.due():
                self.metrics.tick(
                    queued=dict(self.queued),
                    in_flight=self._tiles_by_output((c.out_id, c.keys) for c in self.tile_calls.values()))
        if self.metrics is not None:
            self.metrics.tick(queued={}, in_flight={}, force=True)  # zeros, and the last line
        short = {o: n for o, n in self.left.items() if n}
        if short:  # never a summary that says complete over chunks nobody wrote
            raise ReplicaError(f"{len(short)} output(s) ended with chunks unwritten "
                               f"({', '.join(f'{o}: {n}' for o, n in list(short.items())[:3])})")

    # -- scenes planned as the job goes ------------------------------------------------------------
    @property
    def more_scenes(self) -> bool:
        """Scenes of the job are still to be planned or admitted (the queue is not its tail)."""
        return bool(self.to_plan or self.planning)

    def _plan_more(self) -> None:
        """Ask the writer for the next scenes' plans while the queue runs short of tiles."""
        if not self.to_plan:
            return
        ahead = PLAN_AHEAD_POOLS * len(self.pool.actors) * self.pool.slots * self.max_batch_size
        while self.to_plan and len(self.planning) < PLANS_IN_FLIGHT and len(self.queue) < ahead:
            sid = self.to_plan.popleft()
            self.planning[self.intake.submit(sid)] = sid

    def _planned(self, ref: Any) -> None:
        """A scene's plan is back (a bad scene raises here, naming it): admit it, and any held
        behind it, in the job's order."""
        self.planned_early[ref] = self.runtime.get(ref)
        while self.planning and next(iter(self.planning)) in self.planned_early:
            first = next(iter(self.planning))
            del self.planning[first]
            self.admit(self.planned_early.pop(first))

    def admit(self, value: Any) -> None:
        """One more scene (the intake's ``admit`` of its plan): its tiles join the queue."""
        out_id, summary, info, box = self.intake.admit(value)
        self.summaries[out_id] = summary
        if info is None:
            return  # its output exists: nothing to do
        self.infos[out_id], self.boxes[out_id] = info, box
        self.assembler.add_plan(info.plan)
        tiles = sorted(info.plan.tiles)
        self.queue.extend((out_id, k, 0) for k in tiles)
        if tiles:
            self.queued[out_id] += len(tiles)
        self.left[out_id] = len(info.plan.todo)
        if self.metrics is not None:
            self.metrics.add_scene(out_id, info.scene_id)
        if not self.left[out_id]:
            self._finish(out_id)

    def _probed(self, pool: Any, ref: Any) -> None:
        """A quarantined actor's probe came back: it takes calls again if it answered."""
        import ray

        ok = dead = False
        try:
            self.runtime.get(ref)
            ok = True
        except ray.exceptions.ActorUnavailableError:
            pass  # not up yet (its node's end not seen, or restarting): probed again later
        except ray.exceptions.ActorDiedError:
            dead = True  # no restart left: never probed again
        except ray.exceptions.RayError:
            pass
        pool.probed(ref, ok=ok, dead=dead, now=time.monotonic())

    def _check_starved(self, now: float) -> None:
        """Stop, naming the cause, when work waits for a pool whose actors are all lost: at
        once if none of them has a restart left, else once they have all been in quarantine
        for STARVED_S (no restart came: the cluster has no room left for them)."""
        waiting = [(name, p) for name, p, work in (("replica", self.pool, self.queue),
                                                   ("assembler", self.assemble,
                                                    self.assembler.ready_count))
                   if work and not p.available()]
        if not waiting:
            self.starved_since = None
            return
        name, p = waiting[0]
        if self.starved_since is None:
            self.starved_since = now
        dead = len(p.quarantined.dead) == len(p.actors)
        if dead or now - self.starved_since >= STARVED_S:
            why = ("died with no restart left" if dead else
                   f"was lost and none came back in {STARVED_S:.0f} s: the cluster lost the nodes "
                   "that held them and has no room to restart them")
            raise ReplicaError(
                f"every {name} ({len(p.actors)}) {why} ({len(self.queue)} tile(s) and "
                f"{self.assembler.ready_count} chunk(s) left); add nodes, or rerun the job "
                "(it resumes after the chunks already committed)")

    @staticmethod
    def _tiles_by_output(calls: Any) -> dict[str, int]:
        """Tiles per output of ``(out_id, keys)`` pairs."""
        counts: dict[str, int] = collections.Counter()
        for out_id, keys in calls:
            counts[out_id] += len(keys)
        return dict(counts)

    def _chunks_in_flight(self) -> int:
        """Chunks whose predictions are held: ready, or in assembly (written ones hold none)."""
        return self.assembler.ready_count + self.assembling_chunks

    @property
    def batch(self) -> int:
        """Tiles per call now: ``batch_size``, or more while a call's model time stays under
        :data:`~sarray.config.BATCH_TARGET_S` (fast replicas: fewer Ray calls per tile), or
        while the pool's tile rate would take more than
        :data:`~sarray.config.DRIVER_CALLS_PER_S` calls a second (a large fleet)."""
        if self.tile_s is None:
            return self.batch_size
        if self.tile_s <= 0:
            return self.max_batch_size
        fit = int(BATCH_TARGET_S / self.tile_s)
        by_rate = math.ceil(len(self.pool.actors) / self.tile_s / DRIVER_CALLS_PER_S)
        return max(self.batch_size, min(self.max_batch_size, max(fit, by_rate)))

    def _feed(self) -> None:
        """Keep every replica's slots full, within the bound on chunks in flight. The job's last
        single-tile calls wait here for an idle replica (with several replicas): queued behind a
        busy one, a call could leave another replica with nothing to do at the end for more
        than a call's time; greedy, the replicas end within one tile of each other."""
        while (self.queue and self.pool.has_slot(queued=len(self.pool.actors) == 1
                                                 or len(self.queue) > self.tail_tiles
                                                 or self.more_scenes)
               and self._chunks_in_flight() < self.max_chunks_in_flight):
            out_id, keys, attempts = self._next_call()
            i = self.pool.pick()
            ack, box = self.pool.submit(i, self.boxes[out_id], keys)
            self.tile_calls[ack] = TileCall(out_id=out_id, keys=keys, actor=i, box=box,
                                            attempts=attempts)
            self.calling[out_id] += len(keys)

    def _next_call(self) -> tuple[str, list[tuple[int, int]], int]:
        """The next call's tiles: the next ones of one output, :attr:`batch` of them before the
        job's tail; one alone in the tail and when it failed before (so a tile that keeps
        failing is the one named)."""
        out_id, key, attempts = self.queue.popleft()
        keys = [key]
        tail = 0 if self.more_scenes else self.tail_tiles  # scenes to come: not the tail yet
        n = min(self.batch, len(self.queue) + 1 - tail)
        while (not attempts and len(keys) < n and self.queue[0][0] == out_id
               and not self.queue[0][2]):
            keys.append(self.queue.popleft()[1])
        self.queued[out_id] -= len(keys)
        if not self.queued[out_id]:
            del self.queued[out_id]
        return out_id, keys, attempts

    def _wake_in(self) -> float | None:
        """Seconds the loop may wait for a result: until a merge is due, or a quarantined
        actor's next probe goes out."""
        due = [self._merge_due_in()]
        for p in (self.pool, self.assemble):
            q = p.quarantined.next_due()
            due.append(None if q is None else q - time.monotonic())
        known = [t for t in due if t is not None]
        return max(0.0, min(known)) if known else None

    def _merge_due_in(self) -> float | None:
        """Seconds until the oldest written chunks are due for their merge (None: none wait)."""
        if not self.unmerged_since:
            return None
        return max(0.0, min(self.unmerged_since.values()) + MERGE_EVERY_S - time.monotonic())

    def _merge(self, *, now: bool = False) -> None:
        """Merge each output's written chunks once a commit's worth wait, when they are its
        last, or after :data:`MERGE_EVERY_S` (every output's, with ``now``): one call for all
        of them."""
        t = time.monotonic()
        merging: dict[str, int] = collections.Counter()
        for out_id, n, _ in self.merges.values():
            merging[out_id] += n
        for out_id, done in list(self.unmerged.items()):
            n = sum(len(k) for _, k in done)
            if (now or n >= COMMIT_EVERY_CHUNKS or n + merging[out_id] == self.left[out_id]
                    or t - self.unmerged_since[out_id] >= MERGE_EVERY_S):
                # The tasks' refs as arguments of their own: Ray resolves them before the call.
                self.merges[self.writer_of(out_id).merge_many.remote(out_id, *(r for r, _ in done))] = (out_id, n, done)
                del self.unmerged[out_id], self.unmerged_since[out_id]

    # -- what comes back ----------------------------------------------------------------------------
    def _tiles_back(self, ack: Any, call: TileCall) -> None:
        """A batch of predictions is in the object store (or failed: retry, or stop)."""
        import ray

        self.pool.release(call.actor)
        self.calling[call.out_id] -= len(call.keys)
        if not self.calling[call.out_id]:
            del self.calling[call.out_id]
        summary = self.summaries[call.out_id]
        try:
            pid, node, m0, m1 = self.runtime.get(ack)  # bad input (a damaged chunk...) is raised, no retry
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError,
                ray.exceptions.ObjectLostError) as e:
            cause = ray_cause(e)
            summary.retries += 1
            if self.metrics is not None:
                self.metrics.retried(call.out_id)
            if _lost(e):
                # The cluster's failure, not the tiles': they go again (to an actor that is up),
                # without using up their attempts.
                self.pool.quarantine(call.actor, time.monotonic())
                for key in call.keys:
                    self.lost_tiles[(call.out_id, key)] += 1
                    if self.lost_tiles[(call.out_id, key)] >= MAX_LOST_ATTEMPTS:
                        raise ReplicaError(
                            f"scene {self.infos[call.out_id].scene_id!r}, tile {key}: lost "
                            f"{MAX_LOST_ATTEMPTS} times; last error: {_last_line(cause)}") from None
                for key in reversed(call.keys):
                    self.queue.appendleft((call.out_id, key, call.attempts))
                self.queued[call.out_id] += len(call.keys)
                return
            attempts = call.attempts + 1
            if attempts >= MAX_TILE_ATTEMPTS:
                keys = ", ".join(str(k) for k in call.keys)
                raise ReplicaError(
                    f"scene {self.infos[call.out_id].scene_id!r}, tile(s) {keys}: failed "
                    f"{attempts} times; last error: {_last_line(cause)}") from None
            # A failed batch is retried tile by tile, so that a tile that keeps failing is the
            # one named (and the others of its batch go on).
            for key in reversed(call.keys):
                self.queue.appendleft((call.out_id, key, attempts))
            self.queued[call.out_id] += len(call.keys)
            return
        summary.tiles += len(call.keys)
        summary.model_spans.append((pid, node, m0, m1))
        per_tile = max(m1 - m0, 0.0) / len(call.keys)
        self.tile_s = per_tile if self.tile_s is None else (self.tile_s + per_tile) / 2
        if self.metrics is not None:
            self.metrics.tiles_back(call.out_id, len(call.keys), call.actor, m1 - m0)
        for i, key in enumerate(call.keys):  # a tile's prediction: (its call's object, where in it)
            self.assembler.add((call.out_id, *key), (call.box, i), node)

    def _assemble(self) -> None:
        """Send ready chunks to assembly tasks (partial groups once an output gets no more tiles)."""
        # An output is fed while tiles of it are queued or on a replica (counters kept as calls
        # come and go: a set of every output per turn would cost the driver O(scenes) per event).
        def fed(o: str) -> bool:
            return o in self.queued or o in self.calling

        # The job's last chunks are shared evenly among the assemblers (calls of fewer chunks,
        # to whichever assembler is free), so that every assembler takes a share of the tail;
        # before, a call goes home: by its columns (see AssemblerPool).
        per_task = None
        if not self.queued and not self.calling and not self.more_scenes:
            share = -(-self.assembler.ready_count // len(self.assemble.actors))
            per_task = max(1, min(self.assembler.per_task, share))
        if not self.assemble.available():
            return  # every assembler lost with its node: the chunks wait for Ray to restart one
        flush = {o for o in self.assembler.ready_outputs() if not fed(o)}
        for b in self.assembler.batches(flush=flush, per_task=per_task):
            if b.out_id not in self.forks:
                self.forks[b.out_id] = self.writer_of(b.out_id).fork.remote(b.out_id)
            home = b.keys[0][1] // self.assembler.per_task if per_task is None else None
            batches, index = call_objects(b.predictions)
            ref = self.assemble.remote(self.boxes[b.out_id], list(b.keys), list(b.tile_keys),
                                       self.forks[b.out_id], index, *batches, home=home,
                                       node=b.origin)
            self.assembling[ref] = (b.out_id, tuple(b.keys))
            self.assembling_chunks += len(b.keys)

    def _merged(self, ref: Any, out_id: str, tasks: list[tuple[Any, tuple[Any, ...]]]) -> None:
        """Chunks are written and merged: count them; finish a scene after its last one. A
        merge that failed because some of its assembly tasks were lost (a node gone with the
        assembler or the predictions it held) merges the others again and computes the lost
        chunks again (:meth:`_redo`)."""
        import ray

        try:
            notes = self.runtime.get(ref)
        except ray.exceptions.RayError as e:
            if not _lost(e):
                raise ReplicaError(f"scene {self.infos[out_id].scene_id!r}: chunks could not be "
                                   f"assembled: {_last_line(ray_cause(e))}") from None
            self._recover(out_id, tasks)
            return
        for task, _ in tasks:
            self.assemble.forget(task)
        s = self.summaries[out_id]
        for note in notes:
            if note["committed"]:
                self.forks.pop(out_id, None)  # the next chunks take a fork of the new commit
            s.chunks_written += 1
            s.output_px += note["shape"][1] * note["shape"][2]
            s.writes.append(note)
        self.progress(len(notes))
        if self.metrics is not None:
            self.metrics.chunks_written(out_id, notes)
        self.left[out_id] -= len(notes)
        if self.left[out_id] == 0:
            self._finish(out_id)

    def _recover(self, out_id: str, tasks: list[tuple[Any, tuple[Any, ...]]]) -> None:
        """Sort a failed merge's assembly tasks: the written ones wait for a merge again (their
        forks are whole), the lost ones are done again."""
        import ray

        for task, keys in tasks:
            ran_on = self.assemble.forget(task)
            try:
                self.runtime.get(task)
            except ray.exceptions.RayError as e:
                if ran_on is not None:
                    self.assemble.quarantine(ran_on, time.monotonic())
                if not _lost(e):
                    raise ReplicaError(f"scene {self.infos[out_id].scene_id!r}: chunks could not be "
                                       f"assembled: {_last_line(ray_cause(e))}") from None
                self._redo(out_id, keys, e)
            else:
                self.unmerged.setdefault(out_id, []).append((task, keys))
                self.unmerged_since.setdefault(out_id, time.monotonic())

    def _redo(self, out_id: str, keys: tuple[Any, ...], error: BaseException) -> None:
        """Chunks whose assembly was lost: the tiles of their neighbourhoods go back to the front
        of the queue (their predictions may have gone with the node), and the chunks are
        assembled again once those are back. Tiles are seeded by their key, so the chunks come
        out with the same bits; none was merged, so none is written twice."""
        for k in keys:
            self.redone[(out_id, k)] += 1
            if self.redone[(out_id, k)] >= MAX_LOST_ATTEMPTS:
                raise ReplicaError(
                    f"scene {self.infos[out_id].scene_id!r}, chunk {k}: lost {MAX_LOST_ATTEMPTS} "
                    f"times; last error: {_last_line(ray_cause(error))}") from None
        tiles = self.assembler.redo(out_id, keys)
        for t in reversed(tiles):
            self.queue.appendleft((out_id, t, 0))
        self.queued[out_id] += len(tiles)
        self.summaries[out_id].retries += 1
        if self.metrics is not None:
            self.metrics.retried(out_id)

    def _finish(self, out_id: str) -> None:
        """Finalise a scene on the writer; the loop goes on meanwhile (the next scene's tiles)."""
        self.summaries[out_id].compute_s = time.perf_counter() - self.t0
        self.finishing[self.writer_of(out_id).finish.remote(out_id)] = out_id
