"""The engine's pure bookkeeping: the plan of a job and the assembler, without Ray."""

from __future__ import annotations

import numpy as np
import pytest

from sarray.engine.plan import Assembler, ScenePlan
from sarray.tiles.grid import TileSpec

SPEC = TileSpec(scale=2, chunk_px=64, halo_px=4)


def _plan(sid: str, shape=(96, 128), done=None, max_chunks=None) -> ScenePlan:
    return ScenePlan.build(scene_id=sid, out_id=f"{sid}_x2", shape_in=shape, spec=SPEC, done=done,
                           max_chunks=max_chunks)


def test_plan_lists_chunks_left_and_the_tiles_they_need() -> None:
    p = _plan("a")
    assert p.grid == (3, 4) and len(p.todo) == 12 and set(p.tiles) == set(p.todo)
    done = np.ones((3, 4), bool)
    done[2, 3] = False  # only the last chunk is left: it needs its 2 x 2 corner neighbourhood
    p = _plan("a", done=done)
    assert p.todo == ((2, 3),) and sorted(p.tiles) == [(1, 2), (1, 3), (2, 2), (2, 3)]
    assert _plan("a", max_chunks=5).todo == ((0, 0), (0, 1), (0, 2), (0, 3), (1, 0))


@pytest.mark.parametrize("per_task", [1, 4])
def test_every_chunk_is_handed_out_once_with_its_neighbours(per_task: int) -> None:
    plans = [_plan("a"), _plan("b", shape=(64, 64))]
    asm = Assembler(plans, per_task=per_task)
    order = [(p.scene_id, *k) for p in plans for k in sorted(p.tiles)]
    handed: list[tuple[str, tuple[int, int]]] = []
    rng = np.random.default_rng(0)
    for i in rng.permutation(len(order)):  # predictions return in any order
        key = order[i]
        asm.add(key, f"pred{key}")
        for b in asm.batches():
            assert len(b.keys) == per_task
            handed += [(b.out_id, k) for k in b.keys]
            by = dict(zip(b.tile_keys, b.predictions))
            for k in b.keys:
                for n in asm.plans[b.out_id].neighbours(k):
                    assert by[n] == f"pred{(b.out_id, *n)}"
    for b in asm.batches(flush=True):  # the partial groups at the end
        handed += [(b.out_id, k) for k in b.keys]
    want = [(p.scene_id, k) for p in plans for k in p.todo]
    assert sorted(handed) == sorted(want) and len(handed) == len(set(handed))
    assert asm.remaining == 0 and asm.predictions == {}  # every prediction released


def test_predictions_are_released_as_soon_as_no_chunk_needs_them() -> None:
    asm = Assembler([_plan("a", shape=(160, 32))], per_task=1)  # one column of 5 chunks
    held = []
    for r in range(5):
        asm.add(("a", r, 0), r)
        asm.batches()
        held.append(len(asm.predictions))
    assert max(held) <= 3  # a column: a chunk needs the rows above and below only
    assert asm.predictions == {}


def test_lost_chunks_wait_again_for_their_tiles_and_come_out_once() -> None:
    """A node lost with an assembly: ``redo`` forgets the predictions of the chunks'
    neighbourhoods and returns those tiles to compute again; chunks that were ready with one of
    them wait again; once they are back, every chunk is handed out exactly once more."""
    p = ScenePlan.build(scene_id="a", out_id="a", shape_in=(96, 128), spec=SPEC)  # 3 x 4 chunks
    asm = Assembler([p], per_task=4)
    for k in [(r, c) for r in (0, 1) for c in range(4)]:
        asm.add(("a", *k), f"v1-{k}")
    (first,) = asm.batches()
    assert first.keys == ((0, 0), (0, 1), (0, 2), (0, 3))
    for k in [(2, 0), (2, 1), (2, 2)]:
        asm.add(("a", *k), f"v1-{k}")
    assert asm.ready_count == 4  # (1,0), (1,1), (2,0), (2,1): not yet a batch
    tiles = asm.redo("a", first.keys)
    assert tiles == [(r, c) for r in (0, 1) for c in range(4)]
    assert asm.ready_count == 0 and asm.remaining == 12  # the four ready ones wait again
    assert all(("a", *t) not in asm.predictions for t in tiles)
    assert asm.batches(flush=True) == []
    for t in [*tiles, (2, 3)]:
        asm.add(("a", *t), f"v2-{t}")
    again = asm.batches(flush=True, per_task=1)
    assert sorted(k for b in again for k in b.keys) == sorted(p.todo)
    assert asm.remaining == 0 and asm.predictions == {}
    redone = next(b for b in again if b.keys == ((0, 0),))
    assert all(v.startswith("v2-") for v in redone.predictions)


def test_a_batch_names_the_node_that_made_most_of_its_predictions() -> None:
    """Each prediction's node is kept with it (and let go with it): a batch's origin is the
    node of most of its neighbourhood, where its assembly reads the least from other nodes."""
    plan = ScenePlan.build(scene_id="a", out_id="a", shape_in=(96, 128), spec=SPEC)
    asm = Assembler([plan], per_task=1)
    for r, c in sorted(plan.tiles):
        asm.add(("a", r, c), f"p{r}{c}", "right" if c >= 2 else "left")
    batches = asm.batches(flush=True)
    assert {b.keys[0]: b.origin for b in batches if b.keys[0][0] == 1} == {
        (1, 0): "left", (1, 1): "left", (1, 2): "right", (1, 3): "right"}
    assert not asm.origins and not asm.predictions  # every prediction let go with its node
