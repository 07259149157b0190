"""Translate benchmark: engine efficiency against the bare replica, and peak driver memory.

Run: ``python benchmarks/bench_translate.py [--repeats 3] [--rss-sizes 2048 8192]``.
Writes ``benchmarks/results/bench_translate.json`` and ``.png``.

1. Efficiency. The bundled Sentinel-1 sample (512 x 512, VV+VH) is translated x4 by the tiny
   model (random weights: same architecture and cost as the shipped ones) through the engine
   with 1 and 2 replicas; the same padded tiles are run through as many bare ``Replica``
   processes (each with the torch threads and the niceness an engine actor gets, the tiles
   split between them, started together once their models are loaded): the replicas alone,
   without the engine.
   Efficiency = engine output Mpx/s (first batch sent to last chunk written: Ray start and model
   load excluded, and reported separately) / bare replicas' Mpx/s. Runs alternate, engine then
   bare; the efficiency is the median over runs of each run's pair (bare seconds / engine
   seconds, measured a few seconds apart, so that the shared machine's slower and faster
   minutes fall on both sides alike), and the ratio of the medians is kept beside it. The
   scene is the sample repeated ``--efficiency-mosaic`` times side by side (2: 32 tiles): a job
   long enough that its fill and drain (the first tile's read, the last chunk's assembly and
   write) are a small part of it, as they are of a continental job. For
   reference, one process running every tile with as many torch threads as the replicas have in
   total is timed too (``bare_one_process_threads_s``): on a CPU, two threads of one process
   share one copy of the weights in cache and run faster than two processes, a gap that is the
   machine's, not the engine's (GPU replicas do not share a device).
   With CPU replicas on as many cores as replicas, the engine's own per-pixel work (reads,
   blend, speckle, consistency, writes) and Ray's daemons take cores the bare replicas have to
   themselves; each run records where the cores went from the first model call to the last
   chunk written (``cpu_share_by_role``: replicas, assemblers, writer, driver, Ray's own
   processes, the rest; sampled from /proc every 0.25 s) and the job's fill and drain
   (``fill_drain_s``). The ``2_replica_device_bound`` scenario runs replicas whose model time
   leaves the CPU free (a sleep per tile, as a GPU replica's does), against bare replicas of
   the same: the engine's overhead when it does not compete with the model for the cores.
   The ``2_replica_cpu_bound`` scenario runs CPU replicas of a fixed CPU cost per tile (3 s,
   about three times the tiny model's): on CPU replicas the engine's work per chunk is fixed,
   so its share, and the efficiency, follow the model's cost per tile.
2. Memory. A 2048^2 and an 8192^2 float32 scene (16x the area) are translated x2 with the
   identity stand-in replica (the model is not what is measured; the engine's buffers, reads
   and writes are), each in a fresh driver process that starts its own Ray. Reported: the
   driver's peak RSS (VmHWM), and the peak over time of the whole process tree's proportional
   set size (PSS: driver, Ray's daemons, workers and the shared-memory object store, each
   shared page counted once), sampled every 0.2 s, and whether Ray spilled objects to disk.
3. The driver. One job of several 1024^2 scenes translated x2 with the identity replica, Ray
   started first (the issue's measure): driver CPU seconds per output Mpx
   (``time.process_time`` around ``translate``), in this process after the jobs above (warm)
   and in fresh processes (each starts Ray, then runs one job; Ray's own one-off CPU at its
   first call after ``ray.init``, which such a job pays, is measured apart:
   ``ray_first_use_cpu_s``); engine Mpx/s; and, with a
   replica of fixed cost per tile, the replicas' idle share (1 - model-busy time / (replicas x
   span)) and the gaps between one scene's last model call and the next scene's first.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, environment, save_figure, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "Spain_7370579_S1Hand.tif"


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    replicas: int
    # What it isolates.
    note: str
    # TranslateConfig options beyond the defaults.
    options: tuple[tuple[str, str], ...] = ()


def load_bare(arch: str | Path, scene: str, cfg, threads: int, index: int = 0, n: int = 1):
    """A bare Replica (``threads`` torch threads) and its share (every ``n``-th from ``index``)
    of the engine's padded tiles, read the engine's way; returns a function that runs them."""
    import torch

    from sarray.archive.store import Archive
    from sarray.engine.output import replica_meta
    from sarray.engine.work import read_tiles, scene_pixels
    from sarray.engine.pool import import_object
    from sarray.models.replica import ReplicaConfig
    from sarray.tiles.grid import iter_tiles

    torch.set_num_threads(threads)
    a = Archive(arch)
    ds = a.open_scene(scene)
    meta = replica_meta(dict(ds.attrs))
    replica = import_object(cfg.replica_class)(
        ReplicaConfig.from_dict({**cfg.replica_config(), "device": "cpu"}))
    grid = list(iter_tiles(ds["backscatter"].shape[1:], cfg.tile_spec()))[index::n]
    # The engine's own tile read (the windows a replica reads, padded the same way).
    tiles = list(zip(grid, read_tiles(scene_pixels(a.url, scene, ds.encoding["snapshot"]), grid)))

    def run() -> None:
        for t, x in tiles:
            replica({"tiles": x[None], "scene_id": [scene], "tile_index": [list(t.key)], "meta": meta})

    return run


def bare_replica(arch: Path, scene: str, cfg, threads: int) -> float:
    """Seconds for a bare Replica in this process to run every tile of the engine's grid."""
    run = load_bare(arch, scene, cfg, threads)
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def _bare_worker(arch: str, scene: str, cfg_dict: dict, threads: int, index: int, n: int,
                 niceness: int, barrier, results) -> None:
    """One bare replica process: load, read its share of the tiles, wait for the others, run."""
    from sarray.engine.translate import TranslateConfig

    os.nice(max(0, niceness - os.nice(0)))
    run = load_bare(arch, scene, TranslateConfig.from_dict(cfg_dict), threads, index, n)
    barrier.wait()
    t0 = time.time()
    run()
    results.put((t0, time.time()))


def ray_worker_niceness() -> int:
    """The niceness Ray's raylet gives its worker processes (15 by default), read off a task."""
    import ray

    return ray.get(ray.remote(num_cpus=0)(lambda: os.nice(0)).remote())


def bare_replicas(arch: Path, scene: str, cfg, n: int, threads: int,
                  niceness: int) -> tuple[float, float]:
    """The span (``time.time()`` of the first start and the last end) of ``n`` bare Replica
    processes (``threads`` torch threads each and the ``niceness`` of Ray's workers, as the
    engine's actors get) running every tile of the engine's grid between them, started together
    after their models load: the replicas alone, with no engine around them, at the same
    scheduling priority against the rest of the machine."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_bare_worker, args=(str(arch), scene, cfg.to_dict(), threads, i, n,
                                                    niceness, barrier, results)) for i in range(n)]
    for p in procs:
        p.start()
    spans: list[tuple[float, float]] = []
    while len(spans) < n:  # a process that dies before reporting stops the run, not hangs it
        try:
            spans.append(results.get(timeout=1.0))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode]
            if dead:
                raise RuntimeError(f"bare replica process failed (exit {dead[0]})") from None
    for p in procs:
        p.join()
    return min(s for s, _ in spans), max(e for _, e in spans)


def efficiency_scene(work: Path, arch: Path, n: int) -> str:
    """The sample repeated ``n`` times side by side, ingested into ``arch`` (its id)."""
    import rasterio

    from sarray.ingest.run import ingest
    from sarray.testing.scenes import write_geotiff

    with rasterio.open(SAMPLE) as src:
        data, crs, transform, names = src.read(), src.crs, src.transform, src.descriptions
    tif = write_geotiff(work / f"mosaic{n}.tif", np.concatenate([data] * n, axis=-1),
                        crs=str(crs), transform=transform,
                        descriptions=tuple(d or f"b{i}" for i, d in enumerate(names)))
    (res,) = ingest([tif], arch)
    return res.scene_id


_RSS_CHILD = """
import sys, time, json, re
import ray
from sarray.engine.translate import TranslateConfig, translate
ray.init(address="local", num_cpus={cpus}, include_dashboard=False, log_to_driver=False, configure_logging=False)
cfg = TranslateConfig(model="tiny-random", scale=2, chunk_px=512, halo_px=16, consistency="off",
                      replica_class="sarray.testing.replicas:IdentityReplica")
(s,) = translate({arch!r}, ["scene"], cfg, progress=False)
from ray._private.internal_api import memory_summary
summary = memory_summary(stats_only=True)
spilled = re.search(r"Spilled (\\d+) MiB", summary)
ray.shutdown()
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(json.dumps({{"rss_mib": int(hwm) / 1024, "wall_s": s.wall_s, "compute_s": s.compute_s,
                  "chunks": s.chunks_written, "mpx_s": s.mpx_per_s,
                  "spilled_mib": int(spilled.group(1)) if spilled else 0}}))
"""


def tree_pss(pid: int) -> list[tuple[Any, float]]:
    """(process, PSS in MiB) of a process and each of its live descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in procs:
        try:
            out.append((p, p.memory_full_info().pss / 2**20))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def tree_pss_mib(pid: int) -> float:
    """PSS of a process and all its descendants (shared pages counted once)."""
    return sum(pss for _, pss in tree_pss(pid))


def rss_run(work: Path, size: int) -> dict:
    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest
    from sarray.testing.scenes import speckle_image, write_geotiff

    tif = work / f"scene_{size}.tif"
    rng_rows = [speckle_image((512, size), seed=i) for i in range(size // 512)]
    write_geotiff(tif, np.concatenate(rng_rows, axis=0))
    del rng_rows
    arch = work / f"rss_{size}.zarr"
    ingest([tif], arch, IngestConfig(scene_id="scene", units="linear"))
    tif.unlink()
    proc = subprocess.Popen([sys.executable, "-c", _RSS_CHILD.format(arch=str(arch), cpus=os.cpu_count())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_pss_mib(proc.pid))
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"rss run {size} failed: {err[-2000:]}")
    shutil.rmtree(arch, ignore_errors=True)
    return {**json.loads(out.strip().splitlines()[-1]), "tree_pss_peak_mib": peak}


# Processes of a job by what they do (Ray titles a worker ``ray::<Actor class>[.<method>]``);
# the rest of the tree is Ray's own (raylet, GCS, agents, idle workers).
ROLES = {"ReplicaActor": "replicas", "AssemblerActor": "assemblers", "OutputWriterActor": "writer"}


class CpuByRole:
    """CPU seconds of this process's tree by role (replicas, assemblers, writer, driver, Ray's
    own processes), sampled every ``every`` s in a thread, to be read over any window of time
    with :meth:`between`. The sampler's own CPU is left out of the driver's."""

    def __init__(self, every: float = 0.25) -> None:
        import psutil

        self.every = every
        self.me = psutil.Process()
        self.samples: list[tuple[float, dict[int, float]]] = []
        self.roles: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuByRole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _role(self, p) -> str:
        if p.pid == self.me.pid:
            return "driver"
        cmd = p.cmdline()
        if any("multiprocessing.spawn" in c for c in cmd):
            return "bare"  # a bare replica process (bare_replicas)
        word = cmd[0].split()[0] if cmd and cmd[0] else ""
        return ROLES.get(word.removeprefix("ray::").split(".")[0], "ray") if word.startswith("ray::") else "ray"

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            cpu: dict[int, float] = {}
            for p in [self.me, *self.me.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    # Read a process's role until it has one of its own (an idle Ray worker
                    # may become an actor); then no more /proc reads for it.
                    if self.roles.get(p.pid, "ray") == "ray":
                        self.roles[p.pid] = self._role(p)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                cpu[p.pid] = t.user + t.system
            cpu[-1] = time.thread_time()  # the sampler itself, taken off the driver's
            self.samples.append((time.time(), cpu))
            self._stop.wait(self.every)

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds per role from ``t0`` to ``t1`` (``time.time()``; to the nearest samples),
        with ``elsewhere``: the cores' seconds this process tree did not use (idle, or taken by
        other processes of the machine, or by the hypervisor on a shared host)."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {}
        # Each process's CPU at its first and at its last sample in the window (a process may
        # start or end within it).
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        for _, cpu in inside:
            for pid, c in cpu.items():
                first.setdefault(pid, c)
            last.update(cpu)
        out: dict[str, float] = collections.defaultdict(float)
        for pid, c in last.items():
            if pid >= 0:
                out[self.roles.get(pid, "ray")] += c - first[pid]
        out["driver"] -= last[-1] - first[-1]
        span = inside[-1][0] - inside[0][0]
        out["elsewhere"] = max(0.0, (os.cpu_count() or 1) * span - sum(out.values()))
        return dict(out)

    def shares(self, t0: float, t1: float) -> dict[str, float]:
        """:meth:`between` as shares of the cores' seconds over the window."""
        by_role = self.between(t0, t1)
        total = sum(by_role.values()) or 1.0
        return {k: v / total for k, v in by_role.items()}


_COLD_CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, {bench!r})
import ray
from bench_translate import driver_run
ray.init(address="local", num_cpus={cpus}, include_dashboard=False, log_to_driver=False, configure_logging=False)
print(json.dumps(driver_run(Path({work!r}), {n}, 1024)))
ray.shutdown()
"""


_RAY_FIRST_USE_CHILD = """
import time
import numpy  # noqa: F401  (loaded by the ingest before the job in driver_cold)
import ray
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
c = time.process_time()
ray.put(0)
print(time.process_time() - c)
ray.shutdown()
"""


def ray_first_use_cpu() -> float:
    """Ray's own one-off CPU in a fresh driver, at its first call after ``ray.init()``: the
    serialization context, built lazily (it imports pyarrow and pydantic). A fresh process's
    job pays it; a driver's second job does not."""
    out = subprocess.run([sys.executable, "-c", _RAY_FIRST_USE_CHILD], capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def driver_cold(work: Path, n_scenes: int) -> dict:
    """The issue's measure exactly: a fresh process, ``ray.init()`` first, then one job."""
    code = _COLD_CHILD.format(bench=str(Path(__file__).resolve().parent), cpus=os.cpu_count(),
                              work=str(work), n=n_scenes)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def driver_run(work: Path, n_scenes: int, edge: int,
               replica: str = "sarray.testing.replicas:IdentityReplica") -> dict:
    """The issue's measure: driver CPU per output Mpx for one job of ``n_scenes`` scenes (and,
    with a replica of fixed cost per tile, whether replicas stay busy across scene boundaries)."""

    from sarray.engine.translate import TranslateConfig, translate
    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest
    from sarray.testing.scenes import speckle_image, write_geotiff

    arch = work / "driver.zarr"
    ids = []
    for i in range(n_scenes):
        tif = write_geotiff(work / f"d{i}_vv.tif", speckle_image((edge, edge), seed=100 + i, looks=2))
        ingest([tif], arch, IngestConfig(units="linear"))
        ids.append(f"d{i}_vv")
    cfg = TranslateConfig(scale=2, replica_class=replica)
    c0, t0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
    res = translate(arch, ids, cfg, progress=False)
    cpu, main, wall = time.process_time() - c0, time.thread_time() - t0, time.perf_counter() - w0
    mpx = sum(r.output_px for r in res) / 1e6
    spans = sorted((sp for r in res for sp in r.model_spans), key=lambda sp: sp[2])
    start, end = spans[0][2], max(sp[3] for sp in spans)
    replicas = len({sp[0] for sp in spans})
    busy = sum(sp[3] - sp[2] for sp in spans)
    # Between scenes: from the last model call of scene k to the first of scene k+1 (negative:
    # scene k+1 started before scene k's last call ended, i.e. no gap at all).
    gaps = []
    for a, b in zip(res, res[1:]):
        gaps.append(min(sp[2] for sp in b.model_spans) - max(sp[3] for sp in a.model_spans))
    out = {"replica": replica, "scenes": n_scenes, "edge_px": edge, "output_mpx": mpx, "driver_cpu_s": cpu,
           "driver_cpu_s_per_mpx": cpu / mpx,
           # The driver's main thread (the engine's loop and Ray's calling side); the rest of
           # driver_cpu_s is Ray's own threads in the driver process.
           "driver_main_thread_cpu_s": main, "wall_s": wall, "engine_mpx_s": mpx / wall,
           "replica_idle_share": 1 - busy / (replicas * (end - start)),
           "gap_between_scenes_s": gaps, "max_gap_between_scenes_s": max(gaps) if gaps else 0.0}
    shutil.rmtree(arch, ignore_errors=True)
    return out


PARTS = ("efficiency", "driver", "rss")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rss-sizes", type=int, nargs=2, default=[2048, 8192])
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--driver-scenes", type=int, default=4)
    p.add_argument("--efficiency-mosaic", type=int, default=2,
                   help="the efficiency scene is the sample repeated this many times side by side")
    p.add_argument("--scenarios", nargs="+", default=None,
                   help="efficiency scenarios to run (default: all of 1_replica, 2_replica, "
                        "2_replica_light, 2_replica_device_bound, 2_replica_cpu_bound)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                   help="what to measure (default: all); a partial run updates only those parts "
                        "of the results file")
    args = p.parse_args(argv)

    import ray

    from sarray.engine.pool import plan_pool
    from sarray.engine.translate import TranslateConfig, translate
    from sarray.ingest.run import ingest

    work = Path(tempfile.mkdtemp(prefix="sarray-bench-translate-"))
    arch = work / "a.zarr"
    (res,) = ingest([SAMPLE], arch)
    scene = res.scene_id
    eff_scene = (efficiency_scene(work, arch, args.efficiency_mosaic)
                 if args.efficiency_mosaic > 1 and "efficiency" in args.parts else scene)
    scenarios = [Scenario(name=f"{n}_replica", replicas=n,
                          note="engine Mpx/s vs bare replicas on the same tiles") for n in (1, 2)]
    scenarios.append(Scenario(
        name="2_replica_light", replicas=2, options=(("output", "reflectivity"), ("consistency", "off")),
        note="the same without speckle and consistency: the engine's own overhead (scheduling, "
             "reads, blend, writes, commits) when the per-chunk work is light"))
    scenarios.append(Scenario(
        name="2_replica_device_bound", replicas=2,
        options=(("replica_class", "sarray.testing.replicas:DeviceBoundReplica"),),
        note="replicas whose model time leaves the CPU free (one second per tile, asleep), as a "
             "GPU replica does: the engine's reads, blends and writes no longer compete with the "
             "model for the cores, only its scheduling and its fill and drain remain"))
    scenarios.append(Scenario(
        name="2_replica_cpu_bound", replicas=2,
        options=(("replica_class", "sarray.testing.replicas:CpuBoundReplica"),),
        note="CPU replicas heavier than the tiny model (3 CPU seconds per tile, in torch): the "
             "engine's fixed work per chunk against a model's cost on the same cores"))
    if args.scenarios:
        unknown = set(args.scenarios) - {sc.name for sc in scenarios}
        if unknown:
            p.error(f"--scenarios: unknown {sorted(unknown)}; choose from {[sc.name for sc in scenarios]}")
        scenarios = [sc for sc in scenarios if sc.name in args.scenarios]
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    results: dict[str, dict] = {}
    # Ray starts its workers niced (15 by default), so the engine's replicas yield to anything
    # else on the machine at niceness 0 (kernel threads, Ray's own daemons, the driver): the
    # bare replicas run at the same niceness, or the comparison would be of priorities.
    niceness = ray_worker_niceness()
    for sc in scenarios if "efficiency" in args.parts else []:
        engine_s, bare_s, walls, threads_s = [], [], [], []
        chunk_cpu: list[float] = []
        chunk_write: list[float] = []
        cells: list[int] = []
        shares: list[dict[str, float]] = []
        bare_share: list[float] = []
        fill_drain: list[float] = []
        for i in range(args.repeats):
            cfg = TranslateConfig(model="tiny-random", scale=4, replicas=sc.replicas,
                                  out_scene=f"{sc.name.replace('_', '-')}-{i}", **dict(sc.options))
            with CpuByRole() as sampler:
                (s,) = translate(arch, [eff_scene], cfg, progress=False)
            engine_s.append(s.compute_s)
            # Where the cores went from the first model call to the last chunk written, and
            # the job's fill and drain (compute_s beyond the replicas' first-to-last call).
            first, last = min(sp[2] for sp in s.model_spans), max(sp[3] for sp in s.model_spans)
            shares.append(sampler.shares(first, max(w["t"] for w in s.writes)))
            fill_drain.append(s.compute_s - (last - first))
            chunk_cpu.extend(w["compute_cpu_s"] for w in s.writes)
            chunk_write.extend(w["write_s"] for w in s.writes)
            cells.extend(w["cells_blended"] for w in s.writes)
            walls.append(s.wall_s)
            with CpuByRole() as sampler:
                b0, b1 = bare_replicas(arch, eff_scene, cfg, sc.replicas,
                                       threads=plan_pool(sc.replicas, "cpu").torch_threads,
                                       niceness=niceness)
            bare_s.append(b1 - b0)
            bare_share.append(sampler.shares(b0, b1).get("bare", 0.0))
            if i == 0 and "replica_class" not in dict(sc.options):  # a CPU reference, once
                threads_s.append(bare_replica(arch, eff_scene, cfg, threads=sc.replicas))
            print(f"{sc.name} run {i}: engine {s.compute_s:.2f} s (wall {s.wall_s:.1f} s), "
                  f"bare {bare_s[-1]:.2f} s, pair {bare_s[-1] / s.compute_s:.3f}", file=sys.stderr)
        out_mpx = s.output_px / 1e6
        results[sc.name] = {
            "tiles": s.tiles, "output_mpx": out_mpx,
            "engine_s": engine_s, "bare_s": bare_s, "engine_wall_s": walls,
            "engine_mpx_s": out_mpx / median(engine_s), "bare_mpx_s": out_mpx / median(bare_s),
            "efficiency": median(b / e for b, e in zip(bare_s, engine_s)),
            "efficiency_per_run": [b / e for b, e in zip(bare_s, engine_s)],
            "efficiency_of_medians": median(bare_s) / median(engine_s),
            "scene": eff_scene,
            # For reference: one process running every tile with as many torch threads as the
            # replicas have between them (on CPU, threads share one copy of the weights in cache).
            "bare_one_process_threads_s": threads_s,
            "bare_niceness": niceness,
            # Per chunk, on the assemblers: CPU of blend, speckle, consistency and statistics;
            # wall time of its write into the fork (medians over every chunk of every run).
            "chunk_compute_cpu_ms_median": 1e3 * median(chunk_cpu),
            "chunk_write_ms_median": 1e3 * median(chunk_write),
            # Band cells blended per chunk (each assembler's cell cache spares the others).
            "cells_blended_per_chunk": sum(cells) / len(cells),
            "efficiency_vs_one_process_threads": median(threads_s) / median(engine_s) if threads_s else None,
            # Share of the machine's cores per role (median over runs) from the first model call
            # to the last chunk written: replicas, assemblers, writer, driver, Ray's own
            # processes (raylet, GCS, agents, idle workers) and elsewhere (see CpuByRole).
            "cpu_share_by_role": {k: median(sh.get(k, 0.0) for sh in shares)
                                  for k in sorted({k for sh in shares for k in sh})},
            # Seconds of compute_s outside the replicas' first-to-last model call: the first
            # tiles' read and the last chunks' assembly, write and merge.
            "fill_drain_s": fill_drain,
            # The bare replicas' share of the cores over their own span (the same sampling):
            # against the engine's replicas' share, what the engine's neighbours cost them.
            "bare_cpu_share": median(bare_share),
            "fill_drain_share": median(f / e for f, e in zip(fill_drain, engine_s)),
            # A partial run (--scenarios) keeps the other scenarios' entries: each says when.
            "measured": {k: v for k, v in environment("cpu").items() if k in ("commit", "date")},
        }
    driver = {}
    if "driver" in args.parts and not results:  # no job ran in this process yet: one to warm it
        driver_run(work, args.driver_scenes, 1024)
    for rep in range(args.repeats if "driver" in args.parts else 0):  # same Ray, warm
        driver[str(rep)] = driver_run(work, args.driver_scenes, 1024)
        print(f"driver run {rep}: {driver[str(rep)]['driver_cpu_s_per_mpx']:.4f} s/Mpx", file=sys.stderr)
    if "driver" not in args.parts:
        ray.shutdown()
        return _partial(args, work, results, None)
    slow = driver_run(work, args.driver_scenes, 1024, "sarray.testing.replicas:SlowIdentityReplica")
    ray.shutdown()
    drv = {"measured": {k: v for k, v in environment("cpu").items() if k in ("commit", "date")},
           "runs": list(driver.values()),
           "driver_cpu_s_per_mpx_median": median(d["driver_cpu_s_per_mpx"] for d in driver.values()),
           "engine_mpx_s_median": median(d["engine_mpx_s"] for d in driver.values()),
           # With a replica of fixed cost per tile (the model is the bottleneck, as on GPUs):
           "fixed_cost_replica": slow,
           "replica_idle_share_fixed_cost": slow["replica_idle_share"],
           "max_gap_between_scenes_s_fixed_cost": slow["max_gap_between_scenes_s"]}

    cold = [driver_cold(work, args.driver_scenes) for _ in range(args.repeats)]
    for c in cold:
        print(f"driver, fresh process: {c['driver_cpu_s_per_mpx']:.4f} s/Mpx", file=sys.stderr)
    drv["fresh_process_runs"] = cold
    drv["driver_cpu_s_per_mpx_fresh_process_median"] = median(c["driver_cpu_s_per_mpx"] for c in cold)
    first = [ray_first_use_cpu() for _ in range(args.repeats)]
    drv["ray_first_use_cpu_s"] = first
    drv["ray_first_use_cpu_s_median"] = median(first)
    print(f"Ray's first serialization in a fresh process: {median(first):.3f} CPU s", file=sys.stderr)

    if "rss" not in args.parts:
        return _partial(args, work, results, drv)
    rss = {str(size): rss_run(work, size) for size in args.rss_sizes}
    small, large = (str(v) for v in args.rss_sizes)
    result = {
        "environment": environment("cpu"),
        "scenarios": [asdict(s) for s in scenarios],
        "efficiency": {**previous_efficiency(args.out), **results},
        "peak_rss": rss,
        "rss_ratio_large_over_small": rss[large]["rss_mib"] / rss[small]["rss_mib"],
        "tree_pss_ratio_large_over_small": rss[large]["tree_pss_peak_mib"] / rss[small]["tree_pss_peak_mib"],
        "driver": drv,
        "targets": {"efficiency_min": 0.95, "rss_ratio_max": 1.3, "driver_cpu_s_per_mpx_max": 0.02},
    }
    path = write_results("bench_translate", result, args.out)
    _plot(result, path.with_suffix(".png"))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk in ("engine_mpx_s", "bare_mpx_s", "efficiency")}
                      for k, v in results.items()}, indent=1))
    print(json.dumps({"peak_rss_mib": {k: v["rss_mib"] for k, v in rss.items()},
                      "tree_pss_peak_mib": {k: v["tree_pss_peak_mib"] for k, v in rss.items()},
                      "spilled_mib": {k: v["spilled_mib"] for k, v in rss.items()},
                      "rss_ratio": result["rss_ratio_large_over_small"],
                      "tree_pss_ratio": result["tree_pss_ratio_large_over_small"]}, indent=1))
    print(json.dumps({k: v for k, v in drv.items() if k != "runs"}, indent=1))
    print(f"wrote {path}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def previous_efficiency(out: Path) -> dict:
    """The efficiency scenarios of the results file in ``out`` (none if there is none): a run
    that measures some scenarios, or none, keeps the others' entries (each says when)."""
    path = out / "bench_translate.json"
    return json.loads(path.read_text()).get("efficiency", {}) if path.is_file() else {}


def _partial(args: argparse.Namespace, work: Path, efficiency: dict, driver: dict | None) -> int:
    """A run of some parts: print them, and update those parts of an existing results file."""
    path = args.out / "bench_translate.json"
    previous = json.loads(path.read_text()) if path.is_file() else None
    if previous is not None:
        if efficiency:  # the scenarios measured replace theirs; the others are kept
            previous["efficiency"] = {**previous.get("efficiency", {}), **efficiency}
        if driver is not None:
            previous["driver"] = driver
        previous["environment"] = environment("cpu")
        write_results("bench_translate", previous, args.out)
        _plot(previous, path.with_suffix(".png"))
    else:  # no earlier full run here: a results file of these parts only (no plot)
        write_results("bench_translate", {"environment": environment("cpu"), "parts": list(args.parts),
                                          "efficiency": efficiency, "driver": driver}, args.out)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk in ("engine_mpx_s", "bare_mpx_s", "efficiency")}
                      for k, v in efficiency.items()}, indent=1))
    if driver is not None:
        print(json.dumps({k: v for k, v in driver.items() if k not in ("runs", "fresh_process_runs", "fixed_cost_replica")}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    eff = result["efficiency"]
    names = list(eff)
    x = np.arange(len(names))
    a.bar(x - 0.2, [eff[n]["engine_mpx_s"] for n in names], 0.4, label="engine")
    a.bar(x + 0.2, [eff[n]["bare_mpx_s"] for n in names], 0.4, label="bare replica")
    a.set_xticks(x, [f"{n}\neff {eff[n]['efficiency']:.2f}" for n in names])
    a.set_ylabel("output Mpx/s (median)")
    a.legend()
    r = result["peak_rss"]
    xs = np.arange(len(r))
    b.bar(xs - 0.2, [v["rss_mib"] for v in r.values()], 0.4, label="driver RSS")
    b.bar(xs + 0.2, [v["tree_pss_peak_mib"] for v in r.values()], 0.4, label="process tree PSS")
    b.set_xticks(xs, list(r))
    b.set_xlabel("input edge (px)")
    b.set_ylabel("peak memory (MiB)")
    b.legend()
    b.set_title(f"tree ratio {result['tree_pss_ratio_large_over_small']:.2f}; driver "
                f"{result['driver']['driver_cpu_s_per_mpx_median']:.4f} CPU s/Mpx")
    save_figure(fig, out, result["environment"], prefix="translate x4 tiny / x2 identity; ")


if __name__ == "__main__":
    sys.exit(main())
