"""The plan of a translate job, and the bookkeeping of its stream: pure, tested without Ray.

Every unit of work is keyed ``(scene, row, col)`` (the scene being the output's id): a key
alone says which tile a prediction is and which output chunk it feeds, so the work of all the
job's scenes shares one queue, in one order (scene after scene, row-major), and the first tiles
of a scene start while the last ones of the previous scene are still on the replicas.

A chunk is assembled from the predictions of its 3 x 3 neighbourhood (the blend band reaches one
tile into each neighbour). :class:`Assembler` says when a chunk's neighbours are all back, groups
ready chunks into assembly tasks, and forgets a prediction once no chunk still to hand out needs
it, so the driver drops its reference (the object store then frees it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sarray.tiles.grid import Tile, TileSpec, chunk_grid, make_tile, neighbours

Key = tuple[str, int, int]  # (scene, chunk row, chunk col)


@dataclass(frozen=True, kw_only=True)
class ScenePlan:
    """One scene of the job: its grid, its tiles, the chunks still to write.

    Args:
        scene_id: the input scene.
        out_id: the output scene.
        shape_in: (y, x) of the input scene.
        grid: (chunk rows, chunk cols) of the output.
        todo: output chunks to write (not done in the last commit), row-major.
        tiles: every tile those chunks need (their neighbourhoods), by (row, col).
    """

    scene_id: str
    out_id: str
    shape_in: tuple[int, int]
    grid: tuple[int, int]
    todo: tuple[tuple[int, int], ...]
    tiles: dict[tuple[int, int], Tile] = field(hash=False)

    @classmethod
    def build(cls, *, scene_id: str, out_id: str, shape_in: tuple[int, int], spec: TileSpec,
              done: Any = None, max_chunks: int | None = None) -> ScenePlan:
        """The plan of one scene; ``done`` is the (rows, cols) mask of chunks already written."""
        grid = chunk_grid(shape_in, spec)
        todo = [(i, j) for i in range(grid[0]) for j in range(grid[1])
                if done is None or not done[i][j]]
        if max_chunks is not None:
            todo = todo[:max_chunks]
        needed = sorted({n for c in todo for n in neighbours(c, grid)})
        return cls(scene_id=scene_id, out_id=out_id, shape_in=shape_in, grid=grid,
                   todo=tuple(todo), tiles={k: make_tile(k, shape_in, spec) for k in needed})

    def neighbours(self, rc: tuple[int, int]) -> tuple[tuple[int, int], ...]:
        """Chunk ``rc`` and its neighbours (:func:`sarray.tiles.grid.neighbours`), shared by every
        scene of the same grid: the driver asks for them at every tile and chunk."""
        return _neighbours(rc, self.grid)


@functools.lru_cache(maxsize=1 << 16)
def _neighbours(rc: tuple[int, int], grid: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    return tuple(neighbours(rc, grid))


@dataclass(frozen=True, kw_only=True)
class AssemblyBatch:
    """Chunks of one output that one assembly task blends and writes.

    Args:
        out_id: the output scene.
        keys: the chunks, (row, col).
        tile_keys: the union of their neighbourhoods, in the order of ``predictions``.
        predictions: one opaque value (an object ref) per tile key.
        origin: the node that made most of those predictions (None: not known), where the
            assembly had best run (the predictions are in that node's object store).
    """

    out_id: str
    keys: tuple[tuple[int, int], ...]
    tile_keys: tuple[tuple[int, int], ...]
    predictions: tuple[Any, ...]
    origin: Any = None


class Assembler:
    """Which chunks can be assembled, grouped into tasks, and which predictions to drop.

    Pure bookkeeping over opaque values (Ray object refs in the engine, arrays in tests). A
    chunk is ready once the predictions of its 3 x 3 neighbourhood are in; ready chunks of one
    output are handed out ``per_task`` at a time, neighbours along a row sharing predictions;
    a prediction is forgotten once every chunk that needs it has been handed out.

    Args:
        plans: the scenes' plans, keyed by ``key_of`` (the output id in the engine).
        per_task: chunks per :class:`AssemblyBatch`.
    """

    def __init__(self, plans: list[ScenePlan], *, per_task: int = 1,
                 key_of: Callable[[ScenePlan], str] = lambda p: p.scene_id) -> None:
        self.plans: dict[str, ScenePlan] = {}
        self.key_of = key_of
        self.per_task = per_task
        # Chunks not yet ready: how many of their neighbours' predictions are still missing
        # (a chunk becomes ready when its count reaches 0: one step per prediction, not a look
        # at every neighbour's neighbours).
        self._missing: dict[Key, int] = {}
        # How many chunks not yet handed out use each tile's prediction.
        self._users: dict[Key, int] = {}
        for p in plans:
            self.add_plan(p)
        self.predictions: dict[Key, Any] = {}
        self.origins: dict[Key, Any] = {}  # tile -> the node that made its prediction, if known
        self._ready: dict[str, list[tuple[int, int]]] = {}
        self._ready_count = 0  # kept as chunks come and go: the driver asks at every call

    def add_plan(self, plan: ScenePlan) -> None:
        """Take one more scene's plan (a job's scenes are planned as its queue runs short)."""
        k = self.key_of(plan)
        if k in self.plans:
            raise ValueError(f"scene plan {k!r} is already in the job")
        self.plans[k] = plan
        users, missing = self._users, self._missing
        for c in plan.todo:
            ns = plan.neighbours(c)
            missing[(k, *c)] = len(ns)
            for n in ns:
                u = (k, *n)
                users[u] = users.get(u, 0) + 1

    @property
    def remaining(self) -> int:
        """Chunks not yet handed out for assembly."""
        return len(self._missing) + self.ready_count

    @property
    def ready_count(self) -> int:
        """Chunks ready but not yet handed out."""
        return self._ready_count

    def ready_outputs(self) -> list[str]:
        """The outputs that have ready chunks."""
        return list(self._ready)

    def add(self, key: Key, prediction: Any, origin: Any = None) -> None:
        """Record a tile's prediction (made on node ``origin``, if known); the chunks it
        completes become ready. A prediction given again (its tile computed twice) replaces
        the first and completes nothing more."""
        again = key in self.predictions
        self.predictions[key] = prediction
        if origin is not None:
            self.origins[key] = origin
        if again:
            return
        sid, r, c = key
        missing = self._missing
        for n in self.plans[sid].neighbours((r, c)):
            ck = (sid, *n)
            left = missing.get(ck)
            if left is None:
                continue
            if left > 1:
                missing[ck] = left - 1
            else:
                del missing[ck]
                self._ready.setdefault(sid, []).append(n)
                self._ready_count += 1

    def batches(self, flush: bool | set[str] = False, per_task: int | None = None) -> list[AssemblyBatch]:
        """Ready chunks as tasks: full groups of ``per_task`` (default: the assembler's);
        partial groups too for the outputs in ``flush`` (or every output if ``flush`` is True),
        which get no more tiles."""
        size = per_task or self.per_task
        out = []
        for sid in list(self._ready):
            keys = sorted(self._ready[sid])
            plan = self.plans[sid]
            while keys and (len(keys) >= size or flush is True or
                            (isinstance(flush, set) and sid in flush)):
                take, keys = keys[:size], keys[size:]
                self._ready_count -= len(take)
                tile_keys = tuple(sorted({n for k in take for n in plan.neighbours(k)}))
                out.append(AssemblyBatch(out_id=sid, keys=tuple(take), tile_keys=tile_keys,
                                         predictions=tuple(self.predictions[(sid, *n)] for n in tile_keys),
                                         origin=self._origin(sid, tile_keys)))
                for k in take:
                    for n in plan.neighbours(k):
                        self._release((sid, *n))
            if keys:
                self._ready[sid] = keys
            else:
                del self._ready[sid]
        return out

    def redo(self, out_id: str, keys: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Chunks ``keys`` of ``out_id`` were handed out but their assembly was lost: they wait
        again for every prediction of their neighbourhoods, which are forgotten (they may have
        been lost too) and returned, row-major, to be computed again. Other chunks that were
        counting on a forgotten prediction wait for it again (a ready one goes back to
        waiting)."""
        plan = self.plans[out_id]
        tiles = sorted({n for k in keys for n in plan.neighbours(k)})
        ready = self._ready.get(out_id, [])
        for t in tiles:
            self.origins.pop((out_id, *t), None)
            if self.predictions.pop((out_id, *t), None) is None:
                continue
            for c in plan.neighbours(t):
                ck = (out_id, *c)
                if ck in self._missing:
                    self._missing[ck] += 1
                elif c in ready:
                    ready.remove(c)
                    self._ready_count -= 1
                    self._missing[ck] = 1
        if out_id in self._ready and not ready:
            del self._ready[out_id]
        for k in keys:
            self._missing[(out_id, *k)] = len(plan.neighbours(k))
            for n in plan.neighbours(k):
                u = (out_id, *n)
                self._users[u] = self._users.get(u, 0) + 1
        return tiles

    def _origin(self, sid: str, tile_keys: tuple[tuple[int, int], ...]) -> Any:
        """The node that made most of these predictions (the first of equals; None: none known)."""
        if not self.origins:
            return None
        counts: dict[Any, int] = {}
        for n in tile_keys:
            o = self.origins.get((sid, *n))
            if o is not None:
                counts[o] = counts.get(o, 0) + 1
        return max(counts, key=counts.__getitem__) if counts else None

    def _release(self, key: Key) -> None:
        self._users[key] -= 1
        if self._users[key] == 0:
            del self._users[key]
            self.predictions.pop(key, None)
            self.origins.pop(key, None)
