"""The driver's side of a translate job: object refs in flight, and what to do as each returns.

Three kinds of call are in flight, all answered by small values:

- tile calls on the replica pool: an ack (pid, node, model times) per batch, the predictions
  staying in the object store;
- assembler calls (:func:`sarray.engine.work.assemble_chunks` on an assembler actor): each
  returns a fork with its chunks written, which goes straight to the writer;
- merge calls on the job's :class:`~sarray.engine.output.OutputWriter`: the chunks' notes.

Backpressure: the pool's slots bound the tiles on the replicas, and ``max_chunks_in_flight``
bounds the chunks between a replica and their commit, so the predictions waiting in the object
store do not grow with the scene.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any

from sarray.config import MAX_TILE_ATTEMPTS
from sarray.engine.plan import Assembler
from sarray.errors import ReplicaError
from sarray.raysession import get, ray_cause


@dataclass
class TileCall:
    """A batch of tiles on a replica."""

    out_id: str
    keys: list[tuple[int, int]]
    actor: int
    preds: list[Any]
    attempts: int = 0


def _last_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[-1][:300] if text else type(e).__name__


def job_batches(infos: dict[str, Any], batch_size: int, replicas: int) -> list[tuple[str, list[Any]]]:
    """The job's replica calls in order: each scene's tiles row by row, ``batch_size`` a call.

    The job's last ``replicas`` calls take one tile each: the chunks around the last tiles can
    only be assembled once those are back, so a smaller last call leaves less work after the
    replicas have finished (the job's tail).
    """
    calls = [(o, sorted(i.plan.tiles)[k : k + batch_size])
             for o, i in infos.items() for k in range(0, len(i.plan.tiles), batch_size)]
    if batch_size > 1:
        tail = calls[-replicas:] if replicas else []
        calls = calls[: len(calls) - len(tail)] + [(o, [k]) for o, ks in tail for k in ks]
    return calls


class Dispatcher:
    """Streams one job's tiles through the pool and its chunks through assembly and merging.

    Args:
        pool: the :class:`~sarray.engine.pool.ActorPool`.
        writer: the job's ``OutputWriter`` actor.
        assemble: the :class:`~sarray.engine.pool.AssemblerPool`.
        infos: each output's ``SceneInfo``; ``boxes`` the same as object refs.
        assembler: the pure bookkeeping of ready chunks.
        summaries: each output's summary, updated as work returns.
        batch_size: tiles per replica call.
        max_chunks_in_flight: chunks allowed between a replica and their merge.
        progress: called with the number of chunks merged.
        metrics: the job's :class:`~sarray.engine.metrics.JobMetrics` (None: not published).
    """

    def __init__(self, *, pool: Any, writer: Any, assemble: Any, infos: dict[str, Any],
                 boxes: dict[str, Any], assembler: Assembler, summaries: dict[str, Any],
                 batch_size: int, max_chunks_in_flight: int, progress: Any,
                 metrics: Any = None) -> None:
        self.pool, self.writer, self.assemble = pool, writer, assemble
        self.infos, self.boxes, self.assembler = infos, boxes, assembler
        self.summaries, self.progress = summaries, progress
        self.max_chunks_in_flight = max_chunks_in_flight
        self.queue = collections.deque(job_batches(infos, batch_size, len(pool.actors)))
        # The job's single-tile calls at its end (see job_batches): handed out greedily.
        self.tail_calls = len(pool.actors) * batch_size
        self.attempts: dict[tuple[str, tuple[tuple[int, int], ...]], int] = {}
        self.tile_calls: dict[Any, TileCall] = {}
        self.assembling: dict[Any, tuple[str, int]] = {}  # task -> (output, chunks)
        self.merges: dict[Any, tuple[str, int]] = {}  # merge call -> (output, chunks)
        self.forks: dict[str, Any] = {}  # output -> ref of the fork of its last commit
        self.finishing: dict[Any, str] = {}  # finish call -> output (not waited for in line)
        self.left = {o: len(i.plan.todo) for o, i in infos.items()}
        self.t0 = time.perf_counter()
        self.metrics = metrics

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> None:
        """Until every chunk is merged: feed the pool, wait for anything, handle what is back."""
        import ray

        for out_id in [o for o, n in self.left.items() if n == 0]:
            self._finish(out_id)
        while self.queue or self.tile_calls or self.assembling or self.merges or self.finishing:
            self._feed()
            ready, _ = ray.wait([*self.tile_calls, *self.assembling, *self.merges, *self.finishing],
                                num_returns=1, fetch_local=False)
            written: dict[str, list[Any]] = {}
            for ref in ready:
                if ref in self.tile_calls:
                    self._tiles_back(ref, self.tile_calls.pop(ref))
                elif ref in self.assembling:
                    out_id, n = self.assembling.pop(ref)
                    self.assemble.done(ref)
                    written.setdefault(out_id, []).append((ref, n))
                elif ref in self.merges:
                    self._merged(ref, self.merges.pop(ref)[0])
                else:
                    out_id = self.finishing.pop(ref)
                    self.summaries[out_id].status = get(ref)
            self._assemble()
            for out_id, done in written.items():  # one merge call per output per round
                self.merges[self.writer.merge_many.remote(out_id, [r for r, _ in done])] = (
                    out_id, sum(n for _, n in done))
            if self.metrics is not None and self.metrics.due():
                self.metrics.tick(
                    queued=self._tiles_by_output(self.queue),
                    in_flight=self._tiles_by_output((c.out_id, c.keys) for c in self.tile_calls.values()))
        if self.metrics is not None:
            self.metrics.tick(queued={}, in_flight={}, force=True)  # zeros, and the last line

    @staticmethod
    def _tiles_by_output(calls: Any) -> dict[str, int]:
        """Tiles per output of ``(out_id, keys)`` pairs."""
        counts: dict[str, int] = collections.Counter()
        for out_id, keys in calls:
            counts[out_id] += len(keys)
        return dict(counts)

    def _chunks_in_flight(self) -> int:
        return (self.assembler.ready_count + sum(n for _, n in self.assembling.values())
                + sum(n for _, n in self.merges.values()))

    def _feed(self) -> None:
        """Keep every replica's slots full, within the bound on chunks in flight. The job's last
        single-tile calls wait here for an idle replica (with several replicas): queued behind a
        busy one, a call could leave another replica with nothing to do at the end for more
        than a call's time; greedy, the replicas end within one tile of each other."""
        while (self.queue and self.pool.has_slot(queued=len(self.pool.actors) == 1
                                                 or len(self.queue) > self.tail_calls)
               and self._chunks_in_flight() < self.max_chunks_in_flight):
            out_id, keys = self.queue.popleft()
            i = self.pool.pick()
            refs = self.pool.submit(i, self.boxes[out_id], keys, returns=1 + len(keys))
            self.tile_calls[refs[0]] = TileCall(
                out_id=out_id, keys=keys, actor=i, preds=refs[1:],
                attempts=self.attempts.pop((out_id, tuple(keys)), 0))

    # -- what comes back ----------------------------------------------------------------------------
    def _tiles_back(self, ack: Any, call: TileCall) -> None:
        """A batch of predictions is in the object store (or failed: retry, or stop)."""
        import ray

        self.pool.release(call.actor)
        summary = self.summaries[call.out_id]
        try:
            pid, node, m0, m1 = get(ack)  # bad input (a damaged chunk...) is raised, no retry
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
            cause = ray_cause(e)
            summary.retries += 1
            if self.metrics is not None:
                self.metrics.retried(call.out_id)
            attempts = call.attempts + 1
            if attempts >= MAX_TILE_ATTEMPTS:
                keys = ", ".join(str(k) for k in call.keys)
                raise ReplicaError(
                    f"scene {self.infos[call.out_id].scene_id!r}, tile(s) {keys}: failed "
                    f"{attempts} times; last error: {_last_line(cause)}") from None
            # A failed batch is retried tile by tile, so that a tile that keeps failing is the
            # one named (and the others of its batch go on).
            for key in reversed(call.keys):
                self.attempts[(call.out_id, (key,))] = attempts
                self.queue.appendleft((call.out_id, [key]))
            return
        summary.tiles += len(call.keys)
        summary.model_spans.append((pid, node, m0, m1))
        if self.metrics is not None:
            self.metrics.tiles_back(call.out_id, len(call.keys), call.actor, m1 - m0)
        for key, pred in zip(call.keys, call.preds):
            self.assembler.add((call.out_id, *key), pred)

    def _assemble(self) -> None:
        """Send ready chunks to assembly tasks (partial groups once an output gets no more tiles)."""
        fed = {c.out_id for c in self.tile_calls.values()} | {o for o, _ in self.queue}
        # The job's last chunks go one per call, to whichever assembler is free, so that every
        # assembler takes a share; before, a call goes home: by its columns (see AssemblerPool).
        for b in self.assembler.batches(flush=set(self.infos) - fed, per_task=None if fed else 1):
            if b.out_id not in self.forks:
                self.forks[b.out_id] = self.writer.fork.remote(b.out_id)
            home = b.keys[0][1] // self.assembler.per_task if fed else None
            ref = self.assemble.remote(self.boxes[b.out_id], list(b.keys), list(b.tile_keys),
                                       self.forks[b.out_id], *b.predictions, home=home)
            self.assembling[ref] = (b.out_id, len(b.keys))

    def _merged(self, ref: Any, out_id: str) -> None:
        """Chunks are written and merged: count them; finish a scene after its last one."""
        import ray

        try:
            notes = get(ref)
        except ray.exceptions.RayTaskError as e:
            raise ReplicaError(f"scene {self.infos[out_id].scene_id!r}: chunks could not be "
                               f"assembled: {_last_line(ray_cause(e))}") from None
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

    def _finish(self, out_id: str) -> None:
        """Finalise a scene on the writer; the loop goes on meanwhile (the next scene's tiles)."""
        self.summaries[out_id].compute_s = time.perf_counter() - self.t0
        self.finishing[self.writer.finish.remote(out_id)] = out_id
