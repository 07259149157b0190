"""The assembler pool's choice of assembler, without Ray (fake actors)."""

from __future__ import annotations

import itertools

from sarray.engine.pool import HOME_SLACK_CALLS, AssemblerPool

_REFS = itertools.count()


class _Method:
    def options(self, **kwargs):
        return self

    def remote(self, *args):
        return ("ref", next(_REFS))


class _Assembler:
    assemble = _Method()  # mimics an actor method handle
    ready = _Method()


def _pool(n: int) -> AssemblerPool:
    return AssemblerPool(n, actors=[_Assembler() for _ in range(n)])


def test_a_call_goes_home_while_its_assembler_is_not_behind() -> None:
    """The same columns of every chunk row go to the same assembler (one cell cache blends the
    band between two rows once), unless that assembler has fallen behind the others."""
    pool = _pool(2)
    homes = [pool._owner[pool.remote(home=h)] for h in (0, 1, 2, 3)]
    assert homes == [0, 1, 0, 1]
    for _ in range(HOME_SLACK_CALLS + 1):
        assert pool._owner[pool.remote(home=0)] == 0
    # Assembler 0 now has more than HOME_SLACK_CALLS calls beyond 1: the next one goes to 1.
    assert pool._owner[pool.remote(home=0)] == 1


def test_calls_without_a_home_go_to_the_least_loaded_in_turn() -> None:
    pool = _pool(3)
    first = [pool._owner[pool.remote()] for _ in range(3)]
    assert sorted(first) == [0, 1, 2]
    pool.done(next(r for r, i in pool._owner.items() if i == 1))
    assert pool._owner[pool.remote()] == 1


def test_a_quarantined_assembler_gets_no_call_until_its_probe_answers() -> None:
    """An assembler whose call was lost with its node is passed over, home or not, until a
    probe answers (Ray restarted it elsewhere meanwhile)."""
    from sarray.engine.pool import PROBE_AFTER_S

    pool = _pool(2)
    pool.quarantine(0, now=100.0)
    assert [pool._owner[pool.remote(home=0)] for _ in range(3)] == [1, 1, 1]
    pool.tick(100.0 + PROBE_AFTER_S)
    (probe,) = pool.quarantined.probes
    pool.probed(probe, ok=False, dead=False, now=100.0 + PROBE_AFTER_S)
    assert pool._owner[pool.remote(home=2)] == 1 and pool.available()
    pool.tick(pool.quarantined.next_due())
    (probe,) = pool.quarantined.probes
    pool.probed(probe, ok=True, dead=False, now=200.0)
    assert pool._owner[pool.remote(home=0)] == 0 and pool.load == [1, 4]


def test_a_call_goes_to_an_assembler_on_the_node_of_its_predictions() -> None:
    """With assemblers on two nodes, a call goes to the node that made its predictions (its
    home picks among that node's), unless that node's assemblers are NODE_SLACK_CALLS behind
    the least loaded; a node with no assembler falls back to home and least loaded."""
    from sarray.engine.pool import NODE_SLACK_CALLS

    pool = _pool(4)
    pool.learn_nodes([(1, "a"), (2, "b"), (3, "a"), (4, "b")])
    assert [pool._owner[pool.remote(home=h, node="b")] for h in (0, 1)] == [1, 3]
    assert pool._owner[pool.remote(node="a")] == 0
    for _ in range(NODE_SLACK_CALLS + 4):
        pool.remote(node="b")
    # Node b's assemblers are now more than NODE_SLACK_CALLS beyond the least loaded (a's).
    assert pool.load[1] > min(pool.load) + NODE_SLACK_CALLS
    assert pool._owner[pool.remote(node="b")] in (0, 2)
    assert pool._owner[pool.remote(home=2, node="gone")] in (0, 2)


def test_assemblers_go_beside_gpu_replicas_one_per_few_gpus_of_each_node() -> None:
    from sarray.engine.pool import GPU_REPLICAS_PER_ASSEMBLER, MIN_ASSEMBLERS, PoolPlan, assembler_nodes

    gpu = PoolPlan(replicas=10, num_gpus=1.0, num_cpus=1.0, torch_threads=1, device="cuda")
    nodes = ["n1"] * 8 + ["n2"] * 2
    got = assembler_nodes(gpu, nodes)
    assert sorted(got) == ["n1"] * (8 // GPU_REPLICAS_PER_ASSEMBLER) + ["n2"]
    cpu = PoolPlan(replicas=1, num_gpus=0.0, num_cpus=1.0, torch_threads=1, device="cpu")
    assert assembler_nodes(cpu, [None]) == [None] * MIN_ASSEMBLERS
