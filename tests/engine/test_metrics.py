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
