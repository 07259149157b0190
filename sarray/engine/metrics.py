"""A translate job's live metrics: Ray metrics (Prometheus) and a one-line summary in the log.

Exported through Ray's metrics agent (``ray.util.metrics``; scraped from each node's
``--metrics-export-port``, next to Ray's own metrics, where Ray prefixes them ``ray_``:
``ray_sarray_tiles_total``...), tagged by job and scene:

- ``sarray_tiles_total`` (counter) and ``sarray_tiles_per_second`` (gauge, over the last
  summary window): tiles back from the replicas, per scene;
- ``sarray_tiles_queued`` / ``sarray_tiles_in_flight`` (gauges): per scene, waiting for a
  replica / on one;
- ``sarray_replica_busy_share`` (gauge, tag ``replica``): the share of the job's time a
  replica spent in model calls;
- ``sarray_chunk_write_seconds`` (histogram): the region write of each output chunk;
- ``sarray_retries_total`` (counter): tile batches sent again after a failure.

Every ``SUMMARY_EVERY_S`` seconds the driver prints one line of the same figures on stderr (the
job's log under ``ray job submit``). Grafana: ``cluster/grafana/sarray-dashboard.json``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

SUMMARY_EVERY_S = 30.0  # the job's log cadence; SARRAY_SUMMARY_EVERY_S overrides it
# Gauges are refreshed at most this often (the loop may turn thousands of times a second).
GAUGE_EVERY_S = 1.0
WRITE_BUCKETS_S = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]


class JobMetrics:
    """Counts what the dispatcher sees and publishes it (see the module docstring).

    Args:
        job_id: the Ray job id (the ``job`` tag).
        scenes: output id -> scene id (the ``scene`` tag).
        replicas: number of replicas.
        summary_every_s: seconds between summary lines (0: none).
        out: where the summary lines go.
    """

    def __init__(self, *, job_id: str, scenes: dict[str, str], replicas: int,
                 summary_every_s: float = SUMMARY_EVERY_S, out: Any = None) -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        self.job_id, self.scenes, self.replicas = job_id, dict(scenes), replicas
        self.summary_every_s, self.out = summary_every_s, out or sys.stderr
        tags = ("job", "scene")
        self._tiles = Counter("sarray_tiles_total", "Tiles back from the replicas.", tag_keys=tags)
        self._rate = Gauge("sarray_tiles_per_second", "Tiles per second over the last window.",
                           tag_keys=tags)
        self._queued = Gauge("sarray_tiles_queued", "Tiles waiting for a replica.", tag_keys=tags)
        self._flight = Gauge("sarray_tiles_in_flight", "Tiles on the replicas.", tag_keys=tags)
        self._busy = Gauge("sarray_replica_busy_share", "Share of the job's time in model calls.",
                           tag_keys=("job", "replica"))
        self._write = Histogram("sarray_chunk_write_seconds", "Region write of one output chunk.",
                                boundaries=WRITE_BUCKETS_S, tag_keys=tags)
        self._retries = Counter("sarray_retries_total", "Tile batches sent again.", tag_keys=tags)
        self.t0 = time.monotonic()
        self.tiles = 0
        self.tiles_by_scene: dict[str, int] = {o: 0 for o in scenes}
        self.retries = 0
        self.busy_s = [0.0] * replicas
        self.write_s: list[float] = []
        self._window = (self.t0, 0)  # (start, tiles at start) of the summary's rate window
        self._scene_window = (self.t0, dict(self.tiles_by_scene))  # the same, per scene
        self._last_gauge = 0.0
        self._touched: set[str] = set()  # scenes with tiles back in the current rate window
        self._shown: set[str] = set()  # scenes whose gauges the last refresh set
        self._last_summary = self.t0
        self.queued = self.in_flight = 0
        self.lines: list[str] = []

    def add_scene(self, out_id: str, scene_id: str) -> None:
        """A scene planned after the job started (see :class:`~sarray.engine.dispatch.Dispatcher`)."""
        self.scenes[out_id] = scene_id
        self.tiles_by_scene.setdefault(out_id, 0)

    def _tags(self, out_id: str) -> dict[str, str]:
        return {"job": self.job_id, "scene": self.scenes.get(out_id, out_id)}

    def tiles_back(self, out_id: str, n: int, replica: int, model_s: float) -> None:
        self.tiles += n
        self.tiles_by_scene[out_id] = self.tiles_by_scene.get(out_id, 0) + n
        self._touched.add(out_id)
        self._tiles.inc(n, tags=self._tags(out_id))
        if 0 <= replica < self.replicas:
            self.busy_s[replica] += max(model_s, 0.0)

    def retried(self, out_id: str) -> None:
        self.retries += 1
        self._retries.inc(1, tags=self._tags(out_id))

    def chunks_written(self, out_id: str, notes: list[dict[str, Any]]) -> None:
        for note in notes:
            w = note.get("write_s")
            if w is not None:
                self.write_s.append(float(w))
                self._write.observe(float(w), tags=self._tags(out_id))

    def due(self) -> bool:
        """Whether :meth:`tick` would refresh the gauges now (callers skip counting otherwise)."""
        return time.monotonic() - self._last_gauge >= GAUGE_EVERY_S

    def tick(self, *, queued: dict[str, int], in_flight: dict[str, int], force: bool = False) -> None:
        """Refresh the gauges with each scene's tiles queued and in flight (at most every
        GAUGE_EVERY_S), and print a summary line when due."""
        now = time.monotonic()
        self.queued, self.in_flight = sum(queued.values()), sum(in_flight.values())
        if not force and now - self._last_gauge < GAUGE_EVERY_S:
            return
        self._last_gauge = now
        job = {"job": self.job_id}
        start, before = self._scene_window
        # Only the scenes in work (tiles queued, on a replica, or back in this rate window),
        # and once more those that just left it (their zeros): a job of 10^4 scenes must not
        # cost the driver 10^4 gauge updates a second.
        active = set(queued) | set(in_flight) | self._touched
        for out_id in active | self._shown:
            tags = self._tags(out_id)
            self._queued.set(queued.get(out_id, 0), tags=tags)
            self._flight.set(in_flight.get(out_id, 0), tags=tags)
            if now - start > 0:
                done = self.tiles_by_scene.get(out_id, 0) - before.get(out_id, 0)
                self._rate.set(done / (now - start), tags=tags)
        self._shown = active
        if now - start >= self.summary_every_s or now - start >= 60:
            self._scene_window = (now, dict(self.tiles_by_scene))  # every 30-60 s: O(scenes) is fine
            self._touched = set()
        for i, share in enumerate(self.busy_shares(now)):
            self._busy.set(share, tags={**job, "replica": str(i)})
        due = now - self._last_summary >= self.summary_every_s
        # The last line (force) only for jobs that printed lines already: short jobs stay quiet.
        if self.summary_every_s and (due or (force and self.lines)):
            line = self.summary(now)
            self.lines.append(line)
            print(line, file=self.out, flush=True)
            self._last_summary = now
            self._window = (now, self.tiles)

    def busy_shares(self, now: float | None = None) -> list[float]:
        elapsed = max((now or time.monotonic()) - self.t0, 1e-9)
        return [min(b / elapsed, 1.0) for b in self.busy_s]

    def summary(self, now: float | None = None) -> str:
        now = now or time.monotonic()
        start, tiles0 = self._window
        rate = (self.tiles - tiles0) / max(now - start, 1e-9)
        busy = "/".join(f"{100 * s:.0f}%" for s in self.busy_shares(now))
        writes = sorted(self.write_s)
        p50 = f"{1000 * writes[len(writes) // 2]:.0f} ms" if writes else "-"
        return (f"sarray: {now - self.t0:.0f} s: {rate:.2f} tiles/s, {self.tiles} tiles done, "
                f"{self.queued} queued, {self.in_flight} in flight, replicas busy {busy}, "
                f"chunk write p50 {p50}, retries {self.retries}")
