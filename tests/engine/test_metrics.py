"""The job metrics: per-scene gauges, per-replica busy share, the summary line's cadence."""

from __future__ import annotations

import io

import pytest


def test_summary_lines_and_per_scene_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from sarray.engine import metrics as m

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
             configure_logging=False)  # its own Ray, even beside another cluster on the machine
    try:
        clock = [100.0]
        monkeypatch.setattr(m.time, "monotonic", lambda: clock[0])
        out = io.StringIO()
        jm = m.JobMetrics(job_id="j", scenes={"o1": "s1", "o2": "s2"}, replicas=2,
                          summary_every_s=30, out=out)
        jm.tiles_back("o1", 3, 0, 6.0)
        jm.tiles_back("o2", 1, 1, 2.0)
        jm.chunks_written("o1", [{"write_s": 0.01}, {"write_s": 0.03}, {"write_s": 0.02}])
        jm.retried("o2")
        clock[0] += 10
        jm.tick(queued={"o1": 4}, in_flight={"o2": 2})
        assert out.getvalue() == "" and (jm.queued, jm.in_flight) == (4, 2)  # not due yet
        assert jm.busy_shares() == [pytest.approx(0.6), pytest.approx(0.2)]
        clock[0] += 20
        jm.tick(queued={}, in_flight={})
        line = out.getvalue().strip()
        assert line == ("sarray: 30 s: 0.13 tiles/s, 4 tiles done, 0 queued, 0 in flight, "
                        "replicas busy 20%/7%, chunk write p50 20 ms, retries 1")
        assert jm.tiles_by_scene == {"o1": 3, "o2": 1}
        # A short job that never printed stays quiet at its end; a long one gets a last line.
        quiet = m.JobMetrics(job_id="k", scenes={"o": "s"}, replicas=1, out=io.StringIO())
        quiet.tick(queued={}, in_flight={}, force=True)
        assert quiet.lines == []
        jm.tick(queued={}, in_flight={}, force=True)
        assert len(jm.lines) == 2
    finally:
        ray.shutdown()


def test_gauges_are_refreshed_for_the_scenes_in_work_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job of 10^4 scenes must not cost 10^4 gauge updates a second: a refresh sets the
    scenes with tiles queued, in flight or back in the rate window, and once more (to zero)
    the ones that just left."""
    import ray

    from sarray.engine import metrics as m

    class Rec:
        def __init__(self) -> None:
            self.sets: list[tuple[str, float]] = []

        def set(self, value: float, tags: dict) -> None:
            self.sets.append((tags.get("scene", ""), value))

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        clock = [100.0]
        monkeypatch.setattr(m.time, "monotonic", lambda: clock[0])
        jm = m.JobMetrics(job_id="j", scenes={f"o{i}": f"s{i}" for i in range(1000)}, replicas=1,
                          summary_every_s=30, out=io.StringIO())
        jm._queued, jm._flight, jm._rate = Rec(), Rec(), Rec()
        clock[0] += 2
        jm.tick(queued={"o1": 4}, in_flight={"o2": 2})
        assert sorted(s for s, _ in jm._queued.sets) == ["s1", "s2"]
        jm.tiles_back("o2", 2, 0, 1.0)
        jm._queued.sets.clear()
        clock[0] += 2
        jm.tick(queued={"o3": 1}, in_flight={})
        # o1 and o2 left the queue (zeros once), o2's tiles are in the rate window, o3 came.
        assert sorted(jm._queued.sets) == [("s1", 0), ("s2", 0), ("s3", 1)]
        assert ("s2", pytest.approx(2 / 4)) in jm._rate.sets
        jm._queued.sets.clear()
        clock[0] += 70  # the rate window ends here: o2 is in no later one
        jm.tick(queued={}, in_flight={})
        clock[0] += 2
        jm._rate.sets.clear()
        jm.tick(queued={}, in_flight={})
        assert jm._rate.sets == [("s2", 0.0)]  # its rate in the new window, once
        jm._queued.sets.clear()
        clock[0] += 2
        jm.tick(queued={}, in_flight={})
        assert jm._queued.sets == []  # nothing in work: no update at all
    finally:
        ray.shutdown()
