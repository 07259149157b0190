"""Fleet benchmark (issue 25, part 1): the engine driving 8 to 64 device-bound replicas.

Run: ``python benchmarks/bench_fleet.py [--replicas 8,16,32,64] [--scenes 200] [--k 0.1]``.
Writes ``benchmarks/results/bench_fleet.json`` and ``.png``.

One job of ``--scenes`` small synthetic scenes (160 x 160 input, x2, 64-px output chunks: 25
chunks each, 5,000 chunks for 200 scenes), ingested once into a temporary archive, is translated
at each replica count, each in a fresh child process that starts its own
``ray.cluster_utils.Cluster``: a head with no CPU slot (the driver's and the writer's node) and
8 worker nodes advertising fake GPUs (``replicas / 8`` each), so that the engine pins every
replica with ``num_gpus=1``. The replicas are :class:`sarray.testing.replicas.FleetReplica`:
numpy only, a sleep of ``tile_s`` per tile (set through the job's runtime env,
``SARRAY_FLEET_TILE_S``), with ``tile_s = k * replicas`` so that the fleet asks for the same
tiles per second at every size (``1 / k``) and the box's 2 cores are not what limits it
(``cpu_headroom`` says what was left). The default ``k = 0.1`` (10 tiles/s; 3.2 s per tile at
32 replicas, about an SDXL + ControlNet call at 1024 px and 30 steps on one GPU) leaves half of
the 2 cores idle at 8 replicas; at ``k = 0.02`` (50 tiles/s, 0.64 s per tile at 32) the
engine's own work (about 90 ms of CPU per 64-px chunk here, most of it Ray's per-call and
per-object costs) took both cores and every figure measured the box, not the engine. Each replica process's ``/proc/PID/maps`` is checked for
a torch library during the run (``torch_loaded_replicas``: should be 0).

Figures per replica count (the compute window runs from the first model call to the last):

- ``replica_idle_share``: 1 - sum of model spans / (replicas x window);
- ``driver_cpu_share`` (of one core, over the window; this benchmark's own sampling threads
  taken out) and ``driver_rss_peak_mib``; ``driver_cpu_ms_per_tile`` the same per tile;
- ``writer_cpu_share`` (of one core) and the merge latency: each ``merge_many`` call on the
  OutputWriter actor timed on the driver from its submission to its result being handled (the
  writer's queue, merges and, for ``*_commit``, the calls that committed, the commit);
  ``chunk_note_to_merged_*`` is from a chunk's note ``t`` (written by its assembler) to its merge
  handled on the driver (includes the dispatcher's deliberate batching, up to 5 s);
- ``assembler_cpu_ms_per_chunk``: the assembler processes' CPU over the job / chunks, and the
  notes' median ``compute_cpu_s`` and ``write_s``;
- ``object_store_peak_mib``: the cluster's object store bytes in use (Ray's
  ``FormatGlobalMemoryInfo``, as ``ray memory --stats-only``), sampled every 2 s;
- ``max_scene_boundary_gap_s``: per replica, the largest idle gap between two consecutive model
  calls of different scenes, the largest over replicas; and ``max_gap_between_scenes_s``: the
  largest over scene pairs of (next scene's first model start - this scene's last model end);
- ``tree_pss_peak_mib``: the child's whole process tree (driver, raylets, GCS, workers, object
  store), sampled every 3 s from the parent; a run stops early when the machine gets under
  ``--min-free-gib`` available memory, and the report says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import median

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS_DIR, environment, save_figure, write_results  # noqa: E402

NODES = 8
EDGE = 160
CFG = dict(model="tiny-random", scale=2, chunk_px=64, halo_px=4, output="reflectivity",
           replica_class="sarray.testing.replicas:FleetReplica")


def make_archive(work: Path, n: int) -> tuple[Path, list[str]]:
    from rasterio.transform import from_origin

    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest
    from sarray.testing.scenes import speckle_image, write_geotiff

    arch = work / "fleet.zarr"
    ids = []
    for i in range(n):
        tif = write_geotiff(work / f"f{i}_vv.tif", speckle_image((EDGE, EDGE), seed=i, looks=2),
                            transform=from_origin(500000, 5000000, 10.0, 10.0))
        ingest([tif], arch, IngestConfig(units="linear", scene_id=f"f{i:04d}"))
        tif.unlink()
        ids.append(f"f{i:04d}")
    return arch, ids


def pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


# -- the child: one cluster, one job ------------------------------------------------------------
def child(spec: dict) -> dict:
    import psutil
    import ray
    from ray.cluster_utils import Cluster

    from bench_translate import CpuByRole
    from sarray.engine import dispatch
    from sarray.engine.translate import TranslateConfig, translate

    r, tile_s = spec["replicas"], spec["tile_s"]
    per = -(-r // NODES)
    t_boot = time.time()
    # Every prediction in the object store of the node that made it, as a model's megabyte
    # tiles are (these 20 kB ones would otherwise travel inline through the driver): the
    # store peak, the assemblers' reads across nodes and the driver's CPU are then a fleet's.
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": 256 * 2**20, "include_dashboard": False,
        "_system_config": {"max_direct_call_object_size": 512}})
    out: dict = {}
    try:
        for _ in range(NODES):
            # num_cpus: the replicas' own slot (1 each), the assemblers' (0.25 each), spare.
            cluster.add_node(num_cpus=2 * per + 2, num_gpus=per, object_store_memory=200 * 2**20)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"SARRAY_FLEET_TILE_S": repr(tile_s),
                                           # a snapshot of the engine, when one is given
                                           **({"PYTHONPATH": os.environ["PYTHONPATH"]}
                                              if os.environ.get("PYTHONPATH") else {})}})
        import sarray

        out["sarray_path"] = sarray.__file__
        res = ray.cluster_resources()
        out["cluster"] = {"nodes": len(ray.nodes()), "GPU": res.get("GPU"), "CPU": res.get("CPU")}
        out["cluster_start_s"] = time.time() - t_boot

        # Merge calls timed on the driver: the writer handle is wrapped (no engine edit).
        merges: dict = {}  # ref -> submitted
        merge_lat: list[tuple[float, bool, int]] = []  # (latency, committed, chunks)
        note_lat: list[float] = []

        class _Method:
            def __init__(self, m):
                self.m = m

            def remote(self, *a, **k):
                ref = self.m.remote(*a, **k)
                merges[ref] = time.time()
                return ref

        class _Writer:
            def __init__(self, w):
                self._w = w

            def __getattr__(self, name):
                m = getattr(self._w, name)
                return _Method(m) if name == "merge_many" else m

        init0, merged0 = dispatch.Dispatcher.__init__, dispatch.Dispatcher._merged

        def init(self, **kw):
            kw["writer"] = _Writer(kw["writer"])
            if kw.get("writer_of") is not None:  # several writers: each wrapped once
                wrapped: dict = {}
                of = kw["writer_of"]
                kw["writer_of"] = lambda o: wrapped.setdefault(id(of(o)), _Writer(of(o)))
            init0(self, **kw)

        def merged(self, ref, out_id, *rest, **kw):
            now = time.time()
            sent = merges.pop(ref, None)
            n0 = len(self.summaries[out_id].writes)
            merged0(self, ref, out_id, *rest, **kw)
            notes = self.summaries[out_id].writes[n0:]
            if sent is not None:
                merge_lat.append((now - sent, any(n["committed"] for n in notes), len(notes)))
            note_lat.extend(now - n["t"] for n in notes)

        dispatch.Dispatcher.__init__, dispatch.Dispatcher._merged = init, merged

        # Monitor: machine CPU, driver RSS, object store in use, torch in replica processes.
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        state = get_state_from_address(cluster.address)
        me = psutil.Process()
        mon: list[tuple[float, float, float, float | None, float]] = []  # t, busy core-s, rss, store, own CPU
        torch_pids: set[int] = set()
        checked: set[int] = set()
        stop = threading.Event()
        mon_cpu = [0.0]

        def monitor(sampler: CpuByRole) -> None:
            k = 0
            while not stop.is_set():
                ct = psutil.cpu_times()
                busy = ct.user + ct.nice + ct.system + ct.irq + ct.softirq + getattr(ct, "steal", 0)
                store = None
                if k % 4 == 0:
                    try:
                        store = get_memory_info_reply(state).store_stats.object_store_bytes_used / 2**20
                    except Exception:  # noqa: BLE001  (a sample missed is not a failure)
                        pass
                if k % 10 == 0:
                    for pid, role in list(sampler.roles.items()):
                        if role == "replicas":
                            try:
                                if "torch" in Path(f"/proc/{pid}/maps").read_text():
                                    torch_pids.add(pid)
                                checked.add(pid)
                            except OSError:
                                pass
                mon_cpu[0] = time.thread_time()
                mon.append((time.time(), busy, me.memory_info().rss / 2**20, store, mon_cpu[0]))
                k += 1
                stop.wait(0.5)

        cfg = TranslateConfig(replicas=r, **{**CFG, **spec.get("config", {})})
        with CpuByRole(every=0.5) as sampler:
            th = threading.Thread(target=monitor, args=(sampler,), daemon=True)
            th.start()
            c0, w0 = time.process_time(), time.time()
            summaries = translate(spec["archive"], spec["scenes"], cfg,
                                  out_archive=spec["out_archive"], progress=False)
            w1 = time.time()
            stop.set()
            th.join()
    finally:
        ray.shutdown()
        cluster.shutdown()

    spans = [(sp, i) for i, s in enumerate(summaries) for sp in s.model_spans]
    start, end = min(sp[2] for sp, _ in spans), max(sp[3] for sp, _ in spans)
    window = end - start
    busy_model = sum(sp[3] - sp[2] for sp, _ in spans)
    pids = {sp[0] for sp, _ in spans}
    # Scene boundaries, per replica: the idle gap between consecutive calls of different scenes.
    per_replica: dict = {}
    for sp, i in spans:
        per_replica.setdefault(sp[0], []).append((sp[2], sp[3], i))
    boundary = []
    for calls in per_replica.values():
        calls.sort()
        boundary += [b[0] - a[1] for a, b in zip(calls, calls[1:]) if a[2] != b[2]]
    between = [min(sp[2] for sp in b.model_spans) - max(sp[3] for sp in a.model_spans)
               for a, b in zip(summaries, summaries[1:])]
    writes = [w for s in summaries for w in s.writes]
    chunks = len(writes)
    last_write = max(w["t"] for w in writes)
    roles = sampler.between(start, end)
    job_roles = sampler.between(w0, w1)
    inside = [m for m in mon if start <= m[0] <= end]
    machine_busy = ((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
                    if len(inside) >= 2 else None)
    # The monitor thread is this benchmark's, not the engine's: out of the driver's CPU (the
    # role sampler takes its own out already).
    monitor_cpu = inside[-1][4] - inside[0][4] if len(inside) >= 2 else 0.0
    driver_cpu = max(0.0, roles.get("driver", 0.0) - monitor_cpu)
    tiles_in = sum(s.tiles for s in summaries)  # every model call lies in the window
    tree_busy = sum(v for k, v in roles.items() if k != "elsewhere") / window
    ncores = os.cpu_count() or 1
    stores = [m[3] for m in mon if m[3] is not None]
    lat = [x for x, _, _ in merge_lat]
    lat_c = [x for x, c, _ in merge_lat if c]
    hwm = int([ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]) / 1024
    out.update({
        "replicas": r, "tile_s": tile_s, "k": spec["k"], "scenes": len(summaries),
        "status": sorted({s.status for s in summaries}), "tiles": sum(s.tiles for s in summaries),
        "chunks": chunks, "replica_pids_seen": len(pids),
        "wall_s": w1 - w0, "compute_window_s": window,
        "ideal_window_s": sum(s.tiles for s in summaries) * tile_s / r,
        "fill_s": start - w0, "drain_s": last_write - end,
        "replica_idle_share": 1 - busy_model / (r * window),
        "driver_cpu_share": driver_cpu / window,
        "driver_cpu_ms_per_tile": 1e3 * driver_cpu / tiles_in,
        "monitor_cpu_s_window": monitor_cpu,
        "driver_cpu_s_job": time.process_time() - c0,
        "driver_rss_peak_mib": max(m[2] for m in mon) if mon else None, "driver_vmhwm_mib": hwm,
        "writer_cpu_share": roles.get("writer", 0.0) / window,
        "merge_calls": len(merge_lat), "merge_calls_committing": len(lat_c),
        "merge_latency_p50_s": pct(lat, 50), "merge_latency_p99_s": pct(lat, 99),
        "merge_latency_max_s": max(lat) if lat else None,
        "merge_latency_commit_p50_s": pct(lat_c, 50), "merge_latency_commit_p99_s": pct(lat_c, 99),
        "chunk_note_to_merged_p50_s": pct(note_lat, 50), "chunk_note_to_merged_p99_s": pct(note_lat, 99),
        # From the first model call to the last chunk written (the assemblers' imports and
        # scene warm-up before the first tile left out); over the whole job beside it.
        "assembler_cpu_ms_per_chunk": 1e3 * sampler.between(start, last_write).get("assemblers", 0.0) / chunks,
        "assembler_cpu_ms_per_chunk_whole_job": 1e3 * job_roles.get("assemblers", 0.0) / chunks,
        "replica_cpu_cores": roles.get("replicas", 0.0) / window,
        "chunk_compute_cpu_ms_median": 1e3 * median(w["compute_cpu_s"] for w in writes),
        "chunk_write_ms_median": 1e3 * median(w["write_s"] for w in writes),
        "object_store_peak_mib": max(stores) if stores else None,
        "object_store_samples": len(stores),
        "max_scene_boundary_gap_s": max(boundary) if boundary else 0.0,
        "scene_boundary_gap_p50_s": pct(boundary, 50),
        "max_gap_between_scenes_s": max(between) if between else 0.0,
        "cpu_share_by_role_cores": {k: v / window for k, v in sorted(roles.items())},
        "tree_busy_cores": tree_busy, "machine_busy_cores": machine_busy,
        "cpu_headroom": 1 - (machine_busy if machine_busy is not None else tree_busy) / ncores,
        "cpu_headroom_tree": 1 - tree_busy / ncores,
        "torch_checked_replicas": len(checked), "torch_loaded_replicas": len(torch_pids),
        "monitor_thread_cpu_s": mon_cpu[0],
    })
    return out


# -- the parent: one child per replica count ----------------------------------------------------
def run_one(spec: dict, min_free_gib: float) -> dict:
    import psutil

    from bench_translate import tree_pss_mib

    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    err_lines: list[str] = []
    t = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    t.start()
    peak, stopped = 0.0, None
    min_avail = float("inf")
    while proc.poll() is None:
        peak = max(peak, tree_pss_mib(proc.pid))
        avail = psutil.virtual_memory().available / 2**30
        min_avail = min(min_avail, avail)
        if avail < min_free_gib:
            stopped = f"available memory {avail:.1f} GiB < {min_free_gib} GiB: run stopped"
            os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: its cluster with it
            break
        time.sleep(3.0)
    stdout = proc.stdout.read()
    proc.wait()
    t.join(timeout=5)
    base = {"replicas": spec["replicas"], "tile_s": spec["tile_s"], "tree_pss_peak_mib": peak,
            "min_available_gib": min_avail}
    if stopped or proc.returncode:
        return {**base, "error": stopped or "".join(err_lines)[-3000:], "returncode": proc.returncode}
    return {**json.loads(stdout.strip().splitlines()[-1]), **base}


COLS = [("replicas", "R", "{:d}"), ("tile_s", "tile_s", "{:.2f}"),
        ("compute_window_s", "window_s", "{:.1f}"), ("ideal_window_s", "ideal_s", "{:.1f}"),
        ("fill_s", "fill_s", "{:.1f}"),
        ("replica_idle_share", "idle", "{:.3f}"), ("driver_cpu_share", "driver", "{:.3f}"),
        ("driver_cpu_ms_per_tile", "drv_ms", "{:.2f}"),
        ("driver_rss_peak_mib", "drvRSS", "{:.0f}"), ("writer_cpu_share", "writer", "{:.3f}"),
        ("merge_latency_p50_s", "mrg_p50", "{:.3f}"), ("merge_latency_p99_s", "mrg_p99", "{:.3f}"),
        ("assembler_cpu_ms_per_chunk", "asm_ms", "{:.1f}"),
        ("object_store_peak_mib", "store", "{:.0f}"), ("max_scene_boundary_gap_s", "gap_s", "{:.2f}"),
        ("cpu_headroom", "headroom", "{:.2f}"), ("tree_pss_peak_mib", "PSS_MiB", "{:.0f}"),
        ("torch_loaded_replicas", "torch", "{:d}")]


def table(runs: list[dict]) -> list[dict]:
    return [{k: r.get(k) for k, _, _ in COLS} | ({"error": r["error"][-300:]} if "error" in r else {})
            for r in runs]


def print_table(rows: list[dict]) -> None:
    print(" ".join(f"{h:>9}" for _, h, _ in COLS))
    for r in rows:
        cells = []
        for k, _, f in COLS:
            v = r.get(k)
            cells.append(f"{'-' if v is None else f.format(v):>9}")
        print(" ".join(cells) + (f"  ERROR: {r['error'][-120:]!r}" if "error" in r else ""))


def _plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in result["runs"] if "error" not in r]
    if not runs:
        return
    figs = [("replica_idle_share", "replica idle share", 0.03),
            ("driver_cpu_share", "driver CPU (share of 1 core)", 0.05),
            ("writer_cpu_share", "writer CPU (share of 1 core)", None),
            ("merge_latency_p99_s", "writer merge/commit p99 (s)", 2.0),
            ("assembler_cpu_ms_per_chunk", "assembler CPU ms / chunk", None),
            ("object_store_peak_mib", "object store peak (MiB)", None),
            ("max_scene_boundary_gap_s", "max scene-boundary gap (s)", None),
            ("tree_pss_peak_mib", "process tree PSS peak (MiB)", None),
            ("cpu_headroom", "CPU headroom (of 2 cores)", None)]
    fig, axes = plt.subplots(3, 3, figsize=(13, 10))
    xs = [r["replicas"] for r in runs]
    for ax, (k, label, target) in zip(axes.flat, figs):
        ax.plot(xs, [r.get(k) if r.get(k) is not None else np.nan for r in runs], "o-")
        if target is not None:
            ax.axhline(target, color="r", ls="--", lw=1, label=f"target {target}")
            ax.legend()
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("replicas")
        ax.set_title(label)
    save_figure(fig, out, result["environment"],
                prefix=f"fleet: {result['scenes']} scenes, {result['chunks_per_run']} chunks, "
                       f"tile_s = {result['k']} x R; ")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", default="8,16,32,64")
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--k", type=float, default=0.1, help="tile_s = k * replicas (s)")
    p.add_argument("--tile-s", type=float, default=None, help="a fixed tile_s instead of k * replicas")
    p.add_argument("--config", action="append", default=[], metavar="KEY=INT",
                   help="a TranslateConfig field for every run (integers), e.g. batch_size=4")
    p.add_argument("--min-free-gib", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child)), default=str))
        return 0

    counts = [int(x) for x in args.replicas.split(",")]
    overrides = {k: int(v) for k, v in (c.split("=", 1) for c in args.config)}
    work = Path(tempfile.mkdtemp(prefix="sarray-bench-fleet-"))
    try:
        t0 = time.time()
        arch, ids = make_archive(work, args.scenes)
        ingest_s = time.time() - t0
        print(f"ingested {len(ids)} scenes in {ingest_s:.0f} s", file=sys.stderr, flush=True)
        result = {"environment": environment("cpu (fake GPUs: ray.cluster_utils.Cluster)"),
                  "scenes": len(ids), "edge_px": EDGE, "config": {**CFG, **overrides}, "nodes": NODES,
                  "k": args.k, "tile_s_fixed": args.tile_s, "ingest_s": ingest_s,
                  "chunks_per_run": len(ids) * (EDGE * CFG["scale"] // CFG["chunk_px"]) ** 2,
                  "targets": {"replica_idle_share_max_at_32": 0.03, "driver_cpu_share_max": 0.05,
                              "writer_commit_p99_s_max": 2.0},
                  "runs": []}
        for r in counts:
            tile_s = args.tile_s if args.tile_s is not None else args.k * r
            spec = {"replicas": r, "tile_s": tile_s, "k": args.k, "archive": str(arch),
                    "scenes": ids, "out_archive": str(work / f"out{r}.zarr"), "config": overrides}
            print(f"[fleet] {r} replicas, tile_s {tile_s:.3f} s ...", file=sys.stderr, flush=True)
            t1 = time.time()
            run = run_one(spec, args.min_free_gib)
            run["run_wall_s"] = time.time() - t1
            result["runs"].append(run)
            shutil.rmtree(work / f"out{r}.zarr", ignore_errors=True)
            print_table(table([run]))
            result["table"] = table(sorted(result["runs"], key=lambda x: x["replicas"]))
            path = write_results("bench_fleet", result, args.out)  # after each run: kept if cut
            _plot(result, path.with_suffix(".png"))
            if "error" in run and "memory" in run["error"]:
                result["stopped_at"] = {"replicas": r, "why": run["error"]}
                write_results("bench_fleet", result, args.out)
                break
        print_table(result["table"])
        ok = [x for x in result["runs"] if "error" not in x]
        at32 = next((x for x in ok if x["replicas"] == 32), None)
        if at32:
            result["targets_met_at_32"] = {
                "idle": at32["replica_idle_share"] <= 0.03,
                "driver": at32["driver_cpu_share"] <= 0.05,
                "writer_p99": (at32["merge_latency_p99_s"] or 0) < 2.0}
            print(json.dumps(result["targets_met_at_32"]))
        path = write_results("bench_fleet", result, args.out)
        _plot(result, path.with_suffix(".png"))
        print(f"wrote {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all("error" not in x for x in result["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
