"""sarray's engine side by side with the Ray Data pipeline a user would otherwise write, and how
the engine scales.

Run: ``python benchmarks/bench_raydata.py [--repeats 2] [--quick]`` (part of ``make bench``).
Writes ``benchmarks/results/bench_raydata.json`` and ``.png``.

1. The reference pipeline (:func:`raydata_pipeline`), written as a Ray Data user would:
   ``from_items`` of the tile windows with their halo (sarray's public tile grid,
   :func:`sarray.tiles.grid.iter_tiles`) -> ``map`` reading each window from the archive (the
   lazy xarray scene, ``isel``) -> ``map_batches`` on an actor pool (``ActorPoolStrategy``) of
   the same replica class, the same model and as many replicas -> ``map_batches`` cropping each
   prediction to its chunk (the halo dropped: the blend a user writes first) and writing it into
   a Zarr v3 array per scene. sarray runs the same scenes with ``sarray.engine.translate``
   (feathered blend, speckle, consistency, statistics, transactional commits: more work per
   chunk). Both run in fresh processes, alternating, each timed from the job call to its end
   with Ray already started (model loading included on both sides); the peak of the whole
   process tree's PSS (driver, Ray's daemons, workers, object store) is sampled every 0.2 s.
   ``throughput_ratio`` = sarray Mpx/s / Ray Data Mpx/s; ``peak_rss_ratio`` = sarray / Ray Data
   (medians); ``job_processes_pss_ratio``: the same of the job's processes other than the
   replicas and Ray's daemons (:func:`process_role`: the driver, and the engine's assemblers and
   writer or Ray Data's task workers and coordinating actors).
2. Scaling of the engine: throughput against replicas (1, 2: the tiny model); throughput and
   peak process-tree PSS against scene area (1x, 4x, 16x) and scenes per job (1, 4, 16) with a
   replica of fixed cost per tile (``FixedCostReplica``: the model's cost is not what scales);
   driver CPU seconds per output Mpx; and the cost per km^2 at the output spacing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, environment, save_figure, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "Spain_7370579_S1Hand.tif"
# The comparison: the tiny model (random weights: the shipped model's architecture and cost).
MODEL = dict(model="tiny-random", scale=4, chunk_px=512, halo_px=16)
# Scaling scenes: x2 of a 256^2 base, 256-px output chunks, a fixed-cost replica.
SCALE_BASE_PX = 256
FIXED_COST = "sarray.testing.replicas:SlowIdentityReplica"
# A 2-vCPU general-purpose VM on demand, the kind of machine these figures come from (state
# your own price with --usd-per-hour).
USD_PER_HOUR = 0.10


# -- the Ray Data reference ------------------------------------------------------------------------
class ReplicaUDF:
    """``map_batches`` callable class: one replica per actor, as in the engine."""

    def __init__(self, replica_class: str, replica_config: dict[str, Any], threads: int) -> None:
        import torch

        from sarray.engine.pool import import_object
        from sarray.models.replica import ReplicaConfig

        torch.set_num_threads(threads)
        self.threads = threads
        self.replica = import_object(replica_class)(ReplicaConfig.from_dict(replica_config))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        torch.set_num_threads(self.threads)
        out = self.replica({"tiles": np.stack(list(batch["tile"])),
                            "scene_id": list(batch["scene"]),
                            "tile_index": [tuple(int(v) for v in k) for k in batch["key"]],
                            "meta": [json.loads(m) for m in batch["meta"]]})["output"]
        return {"scene": batch["scene"], "key": batch["key"], "chunk": batch["chunk"],
                "out": batch["out"], "pred": np.asarray(out, np.float32)}


def _read_window(row: dict[str, Any]) -> dict[str, Any]:
    from sarray.archive.store import Archive

    r0, r1, c0, c1 = row["src"]
    values = Archive(row["url"]).open_scene(row["scene"])["backscatter"].isel(
        y=slice(r0, r1), x=slice(c0, c1)).values.astype(np.float32)
    pt, pb, pl, pr = row["pad"]
    if any((pt, pb, pl, pr)):
        values = np.pad(values, ((0, 0), (pt, pb), (pl, pr)), mode="reflect")
    return {**row, "tile": values}


def _write_chunks(batch: dict[str, np.ndarray], out_dir: str) -> dict[str, np.ndarray]:
    import zarr

    for scene, chunk, out, pred in zip(batch["scene"], batch["chunk"], batch["out"], batch["pred"]):
        y0, y1, x0, x1 = (int(v) for v in chunk)
        oy, ox = int(out[0]), int(out[2])
        arr = zarr.open_array(f"{out_dir}/{scene}.zarr", mode="r+")
        arr[:, y0:y1, x0:x1] = pred[:, y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return {"scene": batch["scene"]}


def raydata_pipeline(archive: str, scenes: list[str], out_dir: str, *, replicas: int,
                     model: str, scale: int, chunk_px: int, halo_px: int,
                     replica_class: str = "sarray.models.replica:Replica") -> float:
    """Translate ``scenes`` with Ray Data; returns the output megapixels written."""
    import ray
    import zarr

    from sarray.archive.store import Archive
    from sarray.engine.output import replica_meta
    from sarray.engine.translate import TranslateConfig
    from sarray.tiles.grid import iter_tiles

    cfg = TranslateConfig(model=model, scale=scale, chunk_px=chunk_px, halo_px=halo_px,
                          replicas=replicas, replica_class=replica_class)
    spec = cfg.tile_spec()
    arch = Archive(archive)
    items, mpx = [], 0.0
    for sid in scenes:
        ds = arch.open_scene(sid)
        p, h, w = ds["backscatter"].shape
        meta = json.dumps(replica_meta(dict(ds.attrs)), default=str)
        zarr.create_array(f"{out_dir}/{sid}.zarr", shape=(p, h * scale, w * scale),
                          chunks=(1, chunk_px, chunk_px), dtype="float32", zarr_format=3)
        mpx += h * w * scale * scale / 1e6  # output pixels (all polarisations), as the engine counts
        for t in iter_tiles((h, w), spec):
            items.append({"url": str(archive), "scene": sid, "key": list(t.key), "src": list(t.src),
                          "pad": list(t.pad), "out": list(t.out), "chunk": list(t.chunk), "meta": meta})
    cpus = int(ray.cluster_resources().get("CPU", 1))
    threads = max(1, (cpus - 1) // replicas) if cpus > replicas else 1
    # The replicas take most of the cores, the reads and writes a quarter core each.
    actor_cpus = max(0.25, (cpus - 0.5) / replicas) if cpus > 1 else 0.5
    (ray.data.from_items(items, override_num_blocks=len(items))
     .map(_read_window, num_cpus=0.25)
     .map_batches(ReplicaUDF, batch_size=cfg.batch_size, num_cpus=actor_cpus,
                  compute=ray.data.ActorPoolStrategy(size=replicas),
                  fn_constructor_kwargs={"replica_class": replica_class,
                                         "replica_config": cfg.replica_config(), "threads": threads})
     .map_batches(_write_chunks, batch_size=None, num_cpus=0.25, fn_kwargs={"out_dir": out_dir})
     .materialize())
    return mpx


# -- one run in a fresh process, its process tree sampled ------------------------------------------
_CHILD = """
import json, os, sys, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {bench!r})
import ray
ray.init(address="local", num_cpus={cpus}, include_dashboard=False, log_to_driver=False, configure_logging=False)
if {kind!r} == "raydata":  # the engine's side does not import Ray Data (about 100 MiB of PSS)
    import ray.data
    ray.data.DataContext.get_current().enable_progress_bars = False
from bench_raydata import run_kind
print("RESULT " + json.dumps(run_kind({kind!r}, {arch!r}, {scenes!r}, {out!r}, {kw!r})))
ray.shutdown()
"""


def run_kind(kind: str, arch: str, scenes: list[str], out: str, kw: dict[str, Any]) -> dict[str, Any]:
    """Inside the child: one job, Ray already started; wall and driver CPU of the job alone."""
    c0, w0 = time.process_time(), time.perf_counter()
    if kind == "sarray":
        from sarray.engine.translate import TranslateConfig, translate

        res = translate(arch, scenes, TranslateConfig(**kw), out_archive=out, progress=False)
        mpx = sum(r.output_px for r in res) / 1e6
    else:
        Path(out).mkdir(parents=True, exist_ok=True)
        mpx = raydata_pipeline(arch, scenes, out, **kw)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"kind": kind, "output_mpx": mpx, "wall_s": wall, "mpx_s": mpx / wall,
            "driver_cpu_s": cpu, "driver_cpu_s_per_mpx": cpu / mpx}


def fresh_run(kind: str, arch: Path, scenes: list[str], work: Path, kw: dict[str, Any]) -> dict[str, Any]:
    out = work / f"out-{kind}-{time.monotonic_ns()}"
    out_arg = str(out) if kind == "raydata" else str(out.with_suffix(".zarr"))
    code = _CHILD.format(bench=str(Path(__file__).resolve().parent), cpus=os.cpu_count(),
                         kind=kind, arch=str(arch), scenes=scenes, out=out_arg, kw=kw)
    # Workers import this module, and the engine from the same place as this process (a snapshot
    # of it on PYTHONPATH, when one is given, ahead of the editable install): through the
    # environment the child's Ray inherits, as an installed engine is found. (A job-level
    # runtime env would leave the workers Ray prestarts, without it, idle beside the job's own:
    # about 90 MiB of PSS on either side, for nothing.)
    path = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent),
                                       os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": path})
    peak, top, roles_at_peak = 0.0, [], {}
    own_peak = 0.0
    while proc.poll() is None:
        roles = tree_pss_by_role(proc.pid)
        total = sum(roles.values())
        own_peak = max(own_peak, roles.get("job", 0.0))
        if total > peak:
            peak, top, roles_at_peak = total, _top_processes(proc.pid), roles
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    shutil.rmtree(out_arg, ignore_errors=True)
    lines = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{kind} run failed: {stderr[-3000:]}")
    return {**json.loads(lines[-1][7:]), "tree_pss_peak_mib": peak, "tree_at_peak": top,
            "pss_by_role_at_peak_mib": roles_at_peak, "job_processes_pss_peak_mib": own_peak}


# Ray's own daemons, the same for both sides (the cluster each child starts): the rest of the
# tree is the job's: the replicas, and the job's own processes (the driver; the engine's
# assemblers and writer, or Ray Data's task workers and its coordinating actors).
RAY_DAEMONS = ("gcs_server", "raylet", "dashboard", "log_monitor", "monitor.py",
               "DashboardAgent", "RuntimeEnvAgent", "agent_manager", "runtime_env")
REPLICA_PROCESSES = ("ReplicaActor", "ReplicaUDF")


def process_role(cmdline: str) -> str:
    """``replicas``, ``ray`` (Ray's daemons) or ``job`` (the driver and the job's other
    workers) for a process of the benchmark's tree, by its command line."""
    if any(k in cmdline for k in REPLICA_PROCESSES):
        return "replicas"
    if any(k in cmdline for k in RAY_DAEMONS):
        return "ray"
    return "job"


def _named(pid: int) -> list[tuple[str, float]]:
    """(command line, PSS in MiB) of each live process of the tree (one gone meanwhile: left out);
    the tree's root, the job's driver, is named ``driver`` (its own command line names Ray's
    options, ``include_dashboard`` among them, and :func:`process_role` would file it with
    Ray's daemons)."""
    import psutil

    from bench_translate import tree_pss

    rows = []
    for p, pss in tree_pss(pid):
        try:
            rows.append(("driver" if p.pid == pid else " ".join(p.cmdline()), pss))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rows


def tree_pss_by_role(pid: int) -> dict[str, float]:
    """PSS (MiB) of a process tree, summed by :func:`process_role`."""
    out: dict[str, float] = {"replicas": 0.0, "ray": 0.0, "job": 0.0}
    for cmdline, pss in _named(pid):
        out[process_role(cmdline)] += pss
    return out


def _top_processes(pid: int, n: int = 8) -> list[tuple[str, float]]:
    """The largest processes of the tree by PSS (MiB), named by their command line."""
    rows = [(cmdline[:60], round(pss, 1)) for cmdline, pss in _named(pid)]
    return sorted(rows, key=lambda r: -r[1])[:n]


# -- inputs --------------------------------------------------------------------------------------
def sample_archive(work: Path, n: int) -> tuple[Path, list[str]]:
    """``n`` scenes of the bundled Sentinel-1 sample (VV+VH, 512^2), flipped to differ."""
    import rasterio

    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest
    from sarray.testing.scenes import write_geotiff

    arch = work / "cmp.zarr"
    with rasterio.open(SAMPLE) as ds:
        a, crs, transform = ds.read().astype(np.float32), ds.crs, ds.transform
    ids = []
    for i in range(n):
        b = a[:, ::-1] if i % 2 else a
        tif = write_geotiff(work / f"s{i}.tif", np.ascontiguousarray(b), crs=crs.to_string(),
                            transform=transform, descriptions=("VV", "VH"))
        ingest([tif], arch, IngestConfig(units="db", scene_id=f"s{i}"))
        ids.append(f"s{i}")
    return arch, ids


def square_archive(work: Path, edge: int, n: int, tag: str) -> tuple[Path, list[str]]:
    from rasterio.transform import from_origin

    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest
    from sarray.testing.scenes import speckle_image, write_geotiff

    arch = work / f"{tag}.zarr"
    ids = []
    for i in range(n):
        tif = write_geotiff(work / f"{tag}{i}_vv.tif", speckle_image((edge, edge), seed=i, looks=2),
                            transform=from_origin(500000, 5000000, 10.0, 10.0))
        ingest([tif], arch, IngestConfig(units="linear", scene_id=f"{tag}{i}"))
        ids.append(f"{tag}{i}")
    return arch, ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--replicas", type=int, default=2, help="replicas of the comparison")
    p.add_argument("--scenes", type=int, default=2, help="scenes of the comparison")
    p.add_argument("--quick", action="store_true", help="scaling to 4x area and 4 scenes only")
    p.add_argument("--usd-per-hour", type=float, default=USD_PER_HOUR)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sarray-bench-raydata-"))
    try:
        result = _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_results("bench_raydata", result, args.out)
    _plot(result, path.with_suffix(".png"))
    print(json.dumps({"raydata": result["raydata"], "scaling": {k: v for k, v in result["scaling"].items()
                                                                if k != "runs"}}, indent=1))
    print(f"wrote {path}")
    return 0


def _run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    # 1. sarray vs Ray Data, alternating, fresh processes.
    arch, ids = sample_archive(work, args.scenes)
    kw_engine = {**MODEL, "replicas": args.replicas}
    runs: dict[str, list[dict]] = {"sarray": [], "raydata": []}
    for i in range(args.repeats):
        for kind in ("sarray", "raydata"):
            runs[kind].append(fresh_run(kind, arch, ids, work, kw_engine))
            r = runs[kind][-1]
            print(f"{kind} run {i}: {r['mpx_s']:.3f} Mpx/s, tree PSS {r['tree_pss_peak_mib']:.0f} MiB",
                  file=sys.stderr)
    med = {k: {m: median(r[m] for r in v) for m in ("mpx_s", "tree_pss_peak_mib", "wall_s",
                                                    "job_processes_pss_peak_mib")}
           for k, v in runs.items()}
    raydata = {"scenes": len(ids), "replicas": args.replicas, "model": MODEL, "runs": runs,
               "median": med,
               "throughput_ratio": med["sarray"]["mpx_s"] / med["raydata"]["mpx_s"],
               "peak_rss_ratio": med["sarray"]["tree_pss_peak_mib"] / med["raydata"]["tree_pss_peak_mib"],
               # The job's processes other than the replicas (see process_role), each side's own
               # peak of their summed PSS.
               "job_processes_pss_ratio": (med["sarray"]["job_processes_pss_peak_mib"]
                                           / med["raydata"]["job_processes_pss_peak_mib"]),
               "targets": {"throughput_ratio_min": 1.2, "peak_rss_ratio_max": 0.9,
                           "job_processes_pss_ratio_max": 0.5}}

    # 2. Scaling of the engine.
    scaling: dict[str, Any] = {"runs": {}}
    one = fresh_run("sarray", arch, ids, work, {**MODEL, "replicas": 1})
    scaling["replicas"] = {"1": one["mpx_s"], str(args.replicas): med["sarray"]["mpx_s"]}
    fixed = {"model": "tiny-random", "scale": 2, "chunk_px": 256, "halo_px": 8,
             "replica_class": FIXED_COST, "replicas": args.replicas}
    areas = (1, 4) if args.quick else (1, 4, 16)
    counts = (1, 4) if args.quick else (1, 4, 16)
    scaling["area"] = {}
    for a in areas:
        edge = SCALE_BASE_PX * int(a ** 0.5)
        sarch, sids = square_archive(work, edge, 1, f"a{a}x")
        r = fresh_run("sarray", sarch, sids, work, fixed)
        scaling["runs"][f"area_{a}x"] = r
        scaling["area"][f"{a}x"] = {"mpx_s": r["mpx_s"], "tree_pss_peak_mib": r["tree_pss_peak_mib"],
                                    "driver_cpu_s_per_mpx": r["driver_cpu_s_per_mpx"]}
        print(f"area {a}x: {r['mpx_s']:.3f} Mpx/s, {r['tree_pss_peak_mib']:.0f} MiB", file=sys.stderr)
    scaling["scenes"] = {}
    for n in counts:
        sarch, sids = square_archive(work, SCALE_BASE_PX, n, f"n{n}s")
        r = fresh_run("sarray", sarch, sids, work, fixed)
        scaling["runs"][f"scenes_{n}"] = r
        scaling["scenes"][str(n)] = {"mpx_s": r["mpx_s"], "tree_pss_peak_mib": r["tree_pss_peak_mib"],
                                     "driver_cpu_s_per_mpx": r["driver_cpu_s_per_mpx"]}
        print(f"scenes {n}: {r['mpx_s']:.3f} Mpx/s, {r['tree_pss_peak_mib']:.0f} MiB", file=sys.stderr)
    # Cost per km^2 at the output spacing, from the tiny model's throughput here.
    in_spacing_m = 10.0  # the Sentinel-1 sample's pixel spacing (Sen1Floods11, ~10 m)
    out_spacing_m = in_spacing_m / MODEL["scale"]
    km2_per_mpx = 1e6 * out_spacing_m**2 / 1e6
    km2_per_hour = med["sarray"]["mpx_s"] * 3600 * km2_per_mpx
    scaling["cost"] = {"usd_per_hour": args.usd_per_hour, "output_spacing_m": out_spacing_m,
                       "km2_per_hour": km2_per_hour, "usd_per_km2": args.usd_per_hour / km2_per_hour,
                       "note": "tiny model on this CPU box, VV+VH; an output Mpx is a million pixels of all polarisations"}
    scaling["driver_cpu_s_per_mpx"] = median(r["driver_cpu_s_per_mpx"] for r in runs["sarray"])
    return {"environment": environment("cpu"), "raydata": raydata, "scaling": scaling}


def _plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    rd = result["raydata"]["median"]
    axes[0].bar(["sarray", "Ray Data"], [rd["sarray"]["mpx_s"], rd["raydata"]["mpx_s"]],
                color=["tab:blue", "tab:gray"])
    axes[0].set_ylabel("output Mpx/s (median)")
    axes[0].set_title(f"throughput x{result['raydata']['throughput_ratio']:.2f}, "
                      f"peak PSS x{result['raydata']['peak_rss_ratio']:.2f}")
    sc = result["scaling"]
    for ax, key, label in ((axes[1], "area", "scene area"), (axes[2], "scenes", "scenes per job")):
        xs = list(sc[key])
        ax.plot(xs, [sc[key][x]["mpx_s"] for x in xs], "o-", label="Mpx/s")
        ax2 = ax.twinx()
        ax2.plot(xs, [sc[key][x]["tree_pss_peak_mib"] for x in xs], "s--", color="tab:red")
        ax.set_xlabel(label)
        ax.set_ylabel("Mpx/s (fixed-cost replica)")
        ax2.set_ylabel("peak tree PSS (MiB)", color="tab:red")
    save_figure(fig, out, result["environment"])


if __name__ == "__main__":
    sys.exit(main())
