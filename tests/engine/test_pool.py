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
