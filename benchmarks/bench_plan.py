"""The driver's plan and loop at continental size, without Ray (issue 25, part 2).

Run: ``python benchmarks/bench_plan.py [--scenes 1000,10000] [--replicas 1000]`` (part of
``make bench`` at a smaller size). Writes ``benchmarks/results/bench_plan.json`` and ``.png``.

What runs is the engine's own code: :meth:`sarray.engine.plan.ScenePlan.build` for every scene
(what the job's writer does in ``prepare``), the :class:`~sarray.engine.plan.Assembler`'s
bookkeeping, the :class:`~sarray.engine.pool.ActorPool` and
:class:`~sarray.engine.pool.AssemblerPool` logic, and
:meth:`sarray.engine.dispatch.Dispatcher.run` itself. Only Ray is replaced: a simulated runtime
(:class:`SimWorld`) with a clock, replicas that take ``tile_s`` simulated seconds per tile,
assemblers that take ``asm_s`` per chunk, and a writer whose merges take ``merge_s``. Its
``wait`` returns every call that is done at the next event's time, as the engine's
``RayRuntime.wait`` collects every ready ref per wake-up.

Each size runs in a fresh process. Reported per size: the plan's build time and the growth of
the process's RSS while it is built (plans, bookkeeping and the dispatcher's queue), the peak
RSS of the process, and the driver's CPU per tile over the whole job: the CPU of
``Dispatcher.run`` minus what the simulator itself spends (measured around each of its calls).
The per-chunk figures of two sizes side by side say whether anything grows faster than the job.
This measures the driver's own logic; each Ray call it makes costs more on a real cluster (the
driver benchmark of ``bench_translate.py`` measures that part).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, environment, save_figure, write_results  # noqa: E402

# A Sentinel-1 IW scene at x4 in 512-px output chunks is about 50 x 30 chunks; these scenes are
# 10 x 10 chunks so that 10^4 scenes make 10^6 chunks (the Europe-sized job) and the
# per-scene costs weigh as much as they can per chunk.
SCENE_INPUT_PX = 1280
SPEC = dict(scale=4, chunk_px=512, halo_px=16)
GPUS_PER_NODE = 8


class _Clock:
    """The simulated clock, standing in for the dispatcher's ``time`` module."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now


class SimWorld:
    """Simulated Ray: refs are integers, each call finishes at a simulated time."""

    def __init__(self, *, tile_s: float, asm_s: float, merge_s: float) -> None:
        self.clock = _Clock()
        self.tile_s, self.asm_s, self.merge_s = tile_s, asm_s, merge_s
        self.events: list[tuple[float, int]] = []
        self.values: dict[int, Any] = {}
        self.ids = itertools.count()
        self.sim_cpu_s = 0.0  # the simulator's own CPU, taken out of the driver's
        self.chunks_merged = 0

    def _ref(self, at: float | None, value: Any = None) -> int:
        ref = next(self.ids)
        if at is not None:
            heapq.heappush(self.events, (at, ref))
            self.values[ref] = value
        return ref

    # -- the runtime the dispatcher calls -------------------------------------------------------
    def wait(self, refs: list[Any], timeout: float | None) -> list[Any]:
        c0 = time.thread_time()
        if not self.events or (timeout is not None and self.events[0][0] > self.clock.now + timeout):
            self.clock.now += timeout or 0.0
            self.sim_cpu_s += time.thread_time() - c0
            return []
        t = self.events[0][0]
        self.clock.now = max(self.clock.now, t)
        ready = []
        while self.events and self.events[0][0] <= t:
            ready.append(heapq.heappop(self.events)[1])
        self.sim_cpu_s += time.thread_time() - c0
        return ready

    def get(self, ref: Any) -> Any:
        return self.values.pop(ref)


class _Predict:
    def __init__(self, world: SimWorld, index: int) -> None:
        self.world, self.index, self.free_at, self.n = world, index, 0.0, 1

    def options(self, *, num_returns: int, max_task_retries: int = 0) -> _Predict:
        self.n = num_returns
        return self

    def remote(self, box: Any, keys: list[Any]) -> list[int]:
        c0 = time.thread_time()
        w = self.world
        start = max(w.clock.now, self.free_at)
        self.free_at = start + len(keys) * w.tile_s
        refs = [w._ref(self.free_at, (self.index, self.index // GPUS_PER_NODE, start, self.free_at))]
        refs.append(w._ref(None))  # the call's predictions: only passed on, never waited for
        w.sim_cpu_s += time.thread_time() - c0
        return refs


class SimReplica:
    def __init__(self, world: SimWorld, index: int) -> None:
        self.predict = _Predict(world, index)


class _Assemble:
    def __init__(self, world: SimWorld) -> None:
        self.world, self.free_at = world, 0.0

    def options(self, *, max_task_retries: int = 0) -> _Assemble:
        return self

    def remote(self, box: Any, keys: list[Any], tile_keys: list[Any], fork: Any, index: Any,
               *batches: Any) -> int:
        c0 = time.thread_time()
        w = self.world
        self.free_at = max(w.clock.now, self.free_at) + len(keys) * w.asm_s
        ref = w._ref(self.free_at, len(keys))
        w.sim_cpu_s += time.thread_time() - c0
        return ref


class SimAssembler:
    def __init__(self, world: SimWorld) -> None:
        self.assemble = _Assemble(world)


class _Call:
    def __init__(self, fn: Any) -> None:
        self.remote = fn


class SimWriter:
    """The job's writer: forks are instant, merges take ``merge_s``, a commit every 16 chunks."""

    def __init__(self, world: SimWorld, chunk_shape: tuple[int, int, int]) -> None:
        self.world, self.shape, self.pending = world, chunk_shape, 0
        self.fork = _Call(lambda out_id: world._ref(None))
        self.merge_many = _Call(self._merge_many)
        self.finish = _Call(lambda out_id: world._ref(world.clock.now, "complete"))

    def _merge_many(self, out_id: str, *assembled: int) -> int:
        c0 = time.thread_time()
        w = self.world
        n = sum(w.values.pop(a) for a in assembled)  # the assembly calls' chunk counts
        notes = []
        for _ in range(n):
            self.pending += 1
            committed = self.pending >= 16
            self.pending = 0 if committed else self.pending
            notes.append({"committed": committed, "shape": self.shape})
        w.chunks_merged += n
        ref = w._ref(w.clock.now + w.merge_s, notes)
        w.sim_cpu_s += time.thread_time() - c0
        return ref


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_size(scenes: int, replicas: int, *, tile_s: float, asm_s: float, merge_s: float) -> dict[str, Any]:
    """One job of ``scenes`` scenes on ``replicas`` simulated replicas, in this process."""
    from types import SimpleNamespace

    import sarray.engine.dispatch as dispatch
    from sarray.config import CHUNKS_IN_FLIGHT_PER_REPLICA
    from sarray.engine.dispatch import Dispatcher
    from sarray.engine.plan import Assembler, ScenePlan
    from sarray.engine.pool import ActorPool, AssemblerPool
    from sarray.engine.translate import CHUNKS_PER_ASSEMBLY, TranslateSummary
    from sarray.tiles.grid import TileSpec

    import ray  # noqa: F401  (imported by the dispatcher's error paths: not part of the plan)

    spec = TileSpec(**SPEC)
    rss0, c0, w0 = _rss_mib(), time.process_time(), time.perf_counter()
    # 1. The plan of every scene, as the writer's prepare builds it.
    plans = [ScenePlan.build(scene_id=f"s{i:05d}", out_id=f"s{i:05d}_x4",
                             shape_in=(SCENE_INPUT_PX, SCENE_INPUT_PX), spec=spec) for i in range(scenes)]
    t_plans = time.perf_counter() - w0
    infos = {p.out_id: SimpleNamespace(plan=p, scene_id=p.scene_id) for p in plans}
    # 2. The driver's bookkeeping and queue.
    world = SimWorld(tile_s=tile_s, asm_s=asm_s, merge_s=merge_s)
    dispatch.time = world.clock  # the dispatcher's clock is the simulated one
    n_asm = max(2, replicas // GPUS_PER_NODE)
    summaries = {o: TranslateSummary(source_scene=i.scene_id, out_scene=o, status="complete") for o, i in infos.items()}
    merged = [0]
    d = Dispatcher(
        pool=ActorPool([SimReplica(world, i) for i in range(replicas)], slots=2),
        writer=SimWriter(world, (1, spec.chunk_px, spec.chunk_px)),
        assemble=AssemblerPool(n_asm, actors=[SimAssembler(world) for _ in range(n_asm)]),
        infos=infos, boxes={o: None for o in infos},
        assembler=Assembler(plans, per_task=CHUNKS_PER_ASSEMBLY, key_of=lambda p: p.out_id),
        summaries=summaries, batch_size=2, max_batch_size=8,
        max_chunks_in_flight=CHUNKS_IN_FLIGHT_PER_REPLICA * replicas,
        progress=lambda n: merged.__setitem__(0, merged[0] + n), runtime=world)
    build_s, build_cpu_s = time.perf_counter() - w0, time.process_time() - c0
    rss_plan = _rss_mib() - rss0
    tiles = sum(len(p.tiles) for p in plans)
    chunks = sum(len(p.todo) for p in plans)
    # 3. The job.
    c1, w1 = time.process_time(), time.perf_counter()
    d.run()
    run_cpu = time.process_time() - c1
    run_wall = time.perf_counter() - w1
    driver_cpu = run_cpu - world.sim_cpu_s
    if merged[0] != chunks or any(s.status != "complete" for s in summaries.values()):
        raise RuntimeError(f"simulated job incomplete: {merged[0]} of {chunks} chunks merged")
    tiles_run = sum(s.tiles for s in summaries.values())
    return {
        "scenes": scenes, "replicas": replicas, "assemblers": n_asm, "tiles": tiles,
        "chunks": chunks, "tile_s": tile_s, "asm_s": asm_s, "merge_s": merge_s,
        "plan_build_s": build_s, "plan_build_cpu_s": build_cpu_s, "scene_plans_s": t_plans,
        "plan_rss_mib": rss_plan, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "run_wall_s": run_wall, "run_cpu_s": run_cpu, "simulator_cpu_s": world.sim_cpu_s,
        "driver_cpu_s": driver_cpu, "driver_cpu_us_per_tile": 1e6 * driver_cpu / tiles_run,
        "plan_build_us_per_chunk": 1e6 * build_s / chunks, "plan_kib_per_chunk": 1024 * rss_plan / chunks,
        "simulated_job_h": world.clock.now / 3600,
        "replica_busy_share": tiles_run * tile_s / (replicas * world.clock.now),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", default="1000,10000", help="job sizes in scenes of 100 chunks")
    p.add_argument("--replicas", type=int, default=1000)
    p.add_argument("--tile-s", type=float, default=4.9, help="simulated seconds per tile")
    p.add_argument("--asm-s", type=float, default=0.04, help="simulated assembly seconds per chunk")
    p.add_argument("--merge-s", type=float, default=0.05, help="simulated seconds per merge call")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one size
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    kw = dict(tile_s=args.tile_s, asm_s=args.asm_s, merge_s=args.merge_s)
    if args.one is not None:
        print("RESULT " + json.dumps(run_size(args.one, args.replicas, **kw)))
        return 0
    rows = []
    for n in [int(v) for v in args.scenes.split(",")]:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n), "--replicas", str(args.replicas),
                               "--tile-s", str(args.tile_s), "--asm-s", str(args.asm_s),
                               "--merge-s", str(args.merge_s)], capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not lines:
            raise RuntimeError(f"size {n} failed: {proc.stderr[-3000:]}")
        rows.append(json.loads(lines[-1][7:]))
        r = rows[-1]
        print(f"{r['scenes']} scenes, {r['chunks']} chunks, {r['replicas']} replicas: plan "
              f"{r['plan_build_s']:.1f} s, +{r['plan_rss_mib']:.0f} MiB (peak {r['peak_rss_mib']:.0f}); "
              f"driver {r['driver_cpu_us_per_tile']:.1f} us/tile", file=sys.stderr)
    first, last = rows[0], rows[-1]
    growth = {k: last[k] / first[k] for k in ("plan_build_us_per_chunk", "plan_kib_per_chunk",
                                              "driver_cpu_us_per_tile") if first[k] > 0}
    result = {"environment": environment("cpu"), "rows": rows,
              "per_chunk_growth_largest_over_smallest": growth,
              "targets": {"plan_build_s_max": 60, "plan_rss_gib_max": 2, "driver_cpu_us_per_tile_max": 100}}
    path = write_results("bench_plan", result, args.out)
    _plot(result, path.with_suffix(".png"))
    print(json.dumps({"rows": rows, "growth": growth}, indent=1))
    print(f"wrote {path}")
    return 0


def _plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    xs = [r["chunks"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, label in ((axes[0], "plan_build_s", "plan build (s)"),
                           (axes[1], "plan_rss_mib", "plan RSS growth (MiB)"),
                           (axes[2], "driver_cpu_us_per_tile", "driver CPU per tile (us)")):
        ax.plot(xs, [r[key] for r in rows], "o-")
        ax.set_xscale("log")
        ax.set_xlabel("output chunks in the job")
        ax.set_ylabel(label)
    fig.suptitle(f"continental plan, {rows[-1]['replicas']} simulated replicas")
    save_figure(fig, out, result["environment"])


if __name__ == "__main__":
    sys.exit(main())
