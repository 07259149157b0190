"""The plan of a translate job, and the bookkeeping of its stream: pure, tested without Ray.

Every unit of work is keyed ``(scene, row, col)`` (the scene being the output's id): a key
alone says which tile a prediction is and which output chunk it feeds, so the work of all the
job's scenes shares one queue, in one order (scene after scene, row-major), and the first tiles
of a scene start while the last ones of the previous scene are still on the replicas.

A chunk is assembled from the predictions of its 3 x 3 neighbourhood (the blend band reaches one
tile into each neighbour). :class:`Assembler` says when a chunk's neighbours are all back and
when a prediction is no longer needed by any chunk still to assemble, so the driver can drop its
reference (the object store then frees it).
"""

from __future__ import annotations

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

    def neighbours(self, rc: tuple[int, int]) -> list[tuple[int, int]]:
        return neighbours(rc, self.grid)


class Assembler:
    """Which chunks can be assembled, and which predictions can be released.

    Pure bookkeeping over opaque values (Ray object refs in the engine, arrays in tests).
    """

    def __init__(self, plans: list[ScenePlan],
                 key_of: Callable[[ScenePlan], str] = lambda p: p.scene_id) -> None:
        self.plans = {key_of(p): p for p in plans}
        self._waiting = {(k, *c) for k, p in self.plans.items() for c in p.todo}
        # How many chunks still to assemble use each tile's prediction.
        self._users: dict[Key, int] = {}
        for k, p in self.plans.items():
            for c in p.todo:
                for n in p.neighbours(c):
                    u = (k, *n)
                    self._users[u] = self._users.get(u, 0) + 1
        self.predictions: dict[Key, Any] = {}

    @property
    def remaining(self) -> int:
        """Chunks not yet handed out for assembly."""
        return len(self._waiting)

    def add(self, key: Key, prediction: Any) -> list[tuple[Key, list[Any]]]:
        """Record a prediction; return the chunks it completes, each with its neighbours'
        predictions (in :func:`sarray.tiles.grid.neighbours` order)."""
        self.predictions[key] = prediction
        sid, r, c = key
        plan = self.plans[sid]
        ready = []
        for n in plan.neighbours((r, c)):
            ck = (sid, *n)
            if ck not in self._waiting:
                continue
            ns = [(sid, *m) for m in plan.neighbours(n)]
            if all(m in self.predictions for m in ns):
                self._waiting.discard(ck)
                ready.append((ck, [self.predictions[m] for m in ns]))
                for m in ns:
                    self._release(m)
        return ready

    def _release(self, key: Key) -> None:
        self._users[key] -= 1
        if self._users[key] == 0:
            del self._users[key]
            self.predictions.pop(key, None)
