"""The benchmark suite: every stage's benchmark in one run, one ``bench.json`` and its plots.

Run: ``make bench`` (or ``sarray bench run``, or ``python jobs/bench.py run`` under ``ray job
submit``). About 8 minutes on a 2-core CPU box. Each stage runs as its own script in a fresh
process, with sizes chosen to fit that budget (the scripts' defaults are larger: run them alone
for the full figures), into a scratch folder; the suite then writes
``<out>/bench.json``: the environment block (cores, RAM, device, versions, commit), each
stage's results and wall time, and a summary of the headline figures; and copies each stage's
PNG next to it as ``suite_<name>.png`` (the stand-alone runs keep ``<name>.png``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS_DIR, environment, write_results  # noqa: E402

# stage: (script, arguments, results file stem); sizes fit 10 minutes each, but the fleet's
# (three fleet sizes at 500 s of ideal compute each: about 35 minutes here).
STAGES: dict[str, tuple[str, list[str], str]] = {
    "ingest": ("bench_ingest.py", ["--size", "2048", "--repeats", "3", "--ray-files", "8"], "bench_ingest"),
    "catalog": ("bench_catalog.py", ["--sizes", "100,1000,10000"], "bench_catalog"),
    "replica": ("bench_replica.py", ["--repeats", "3", "--tiles", "64", "128", "--batches", "1", "4",
                                     "--threads", "1", "2"], "bench_replica"),
    "translate": ("bench_raydata.py", ["--repeats", "2"], "bench_raydata"),
    "driver": ("bench_translate.py", ["--parts", "driver", "--repeats", "1"], "bench_translate"),
    "train": ("bench_train.py", ["--steps", "12"], "bench_train"),
    # A fleet of fake-GPU replicas on a local multi-node cluster (issue 25) at 8, 16 and 32
    # replicas, 10 tiles/s; with 64 (as far as memory allows) it is
    # ``python benchmarks/bench_fleet.py`` alone.
    "fleet": ("bench_fleet.py", ["--replicas", "8,16,32", "--scenes", "200", "--k", "0.1"], "bench_fleet"),
}
QUICK = {
    "ingest": ["--size", "1024", "--repeats", "1", "--ray-files", "4"],
    "catalog": ["--sizes", "100,1000"],
    "replica": ["--repeats", "1", "--tiles", "64", "--batches", "1", "--threads", "1"],
    "translate": ["--repeats", "1", "--quick", "--scenes", "1"],
    "driver": ["--parts", "driver", "--repeats", "1", "--driver-scenes", "2"],
    "train": ["--steps", "4"],
    "fleet": ["--replicas", "8", "--scenes", "40", "--k", "0.1"],
}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("sarray", "ray", "torch", "diffusers", "deepspeed", "xarray", "dask", "zarr",
                "icechunk", "rioxarray", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _catalog_args(out_dir: Path) -> list[str]:
    return ["--out", str(out_dir / "bench_catalog.json")]  # this script takes a file


def summary(stages: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of each stage (what the README table shows)."""
    s: dict[str, Any] = {}
    ing = stages.get("ingest", {}).get("result")
    if ing:
        s["ingest_mb_s"] = ing["throughput_mb_s"]["sarray"]
        s["ingest_ratio_over_rasterio_zarr"] = ing["throughput_ratio_sarray_over_baseline"]
        s["ingest_rss_ratio_4x_over_1x"] = ing["rss_ratio_4x_over_1x"]
        if ing.get("ray"):
            s["ingest_ray_speedup_2_over_1_worker"] = ing["ray"]["speedup_2_over_1_worker"]
    tr = stages.get("translate", {}).get("result")
    if tr:
        rd = tr["raydata"]
        s["raydata.throughput_ratio"] = rd["throughput_ratio"]
        s["raydata.peak_rss_ratio"] = rd["peak_rss_ratio"]
        if "job_processes_pss_ratio" in rd:
            s["raydata.job_processes_pss_ratio"] = rd["job_processes_pss_ratio"]
        s["engine_mpx_s"] = rd["median"]["sarray"]["mpx_s"]
        s["engine_scaling_replicas"] = tr["scaling"]["replicas"]
        s["usd_per_km2"] = tr["scaling"]["cost"]["usd_per_km2"]
    dr = stages.get("driver", {}).get("result")
    if dr and dr.get("driver"):
        s["driver_cpu_s_per_mpx_warm"] = dr["driver"]["driver_cpu_s_per_mpx_median"]
        s["driver_cpu_s_per_mpx_fresh_process"] = dr["driver"]["driver_cpu_s_per_mpx_fresh_process_median"]
        s["replica_idle_share_fixed_cost"] = dr["driver"]["replica_idle_share_fixed_cost"]
    fl = stages.get("fleet", {}).get("result")
    if fl:
        s["fleet"] = {str(r["replicas"]): {k: r.get(k) for k in (
            "tile_s", "fill_s", "replica_idle_share", "driver_cpu_share", "driver_cpu_ms_per_tile",
            "driver_rss_peak_mib", "writer_cpu_share", "merge_latency_p50_s", "merge_latency_p99_s", "assembler_cpu_ms_per_chunk", "object_store_peak_mib",
            "max_scene_boundary_gap_s", "cpu_headroom", "tree_pss_peak_mib")}
            for r in fl["runs"] if "error" not in r}
    trn = stages.get("train", {}).get("result")
    if trn:
        s["train_step_s"] = trn["step_s_median"]
    rep = stages.get("replica", {}).get("result")
    if rep:
        s["replica"] = {k: v for k, v in rep.items() if k not in ("environment", "scenarios", "runs")}
    cat = stages.get("catalog", {}).get("result")
    if cat:
        s["catalog"] = {"results": cat["results"]}
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", action="append", choices=list(STAGES), default=None)
    args = p.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="sarray-bench-suite-"))
    stages: dict[str, Any] = {}
    t_all = time.perf_counter()
    try:
        for name in args.only or list(STAGES):
            script, extra, stem = STAGES[name]
            extra = QUICK[name] if args.quick else extra
            out_args = _catalog_args(scratch) if name == "catalog" else ["--out", str(scratch)]
            t0 = time.perf_counter()
            print(f"[bench] {name}: {script} {' '.join(extra)}", file=sys.stderr, flush=True)
            proc = subprocess.run([sys.executable, str(HERE / script), *extra, *out_args],
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t0
            res_path = scratch / f"{stem}.json"
            entry: dict[str, Any] = {"script": script, "args": extra, "wall_s": wall,
                                     "returncode": proc.returncode}
            if proc.returncode or not res_path.is_file():
                entry["error"] = (proc.stderr or proc.stdout)[-2000:]
                print(f"[bench] {name}: FAILED ({wall:.0f} s)\n{entry['error']}", file=sys.stderr)
            else:
                entry["result"] = json.loads(res_path.read_text())
                png = res_path.with_suffix(".png")
                if png.is_file():
                    args.out.mkdir(parents=True, exist_ok=True)
                    # suite_*: the stand-alone runs' own bench_*.png (full sizes) stay as they are
                    shutil.copy(png, args.out / f"suite_{png.name}")
                    entry["plot"] = f"suite_{png.name}"
                print(f"[bench] {name}: {wall:.0f} s", file=sys.stderr, flush=True)
            stages[name] = entry
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    env = environment("cpu")
    env["versions"] = _versions()
    result = {"environment": env, "quick": args.quick, "total_wall_s": time.perf_counter() - t_all,
              "summary": summary(stages), "stages": stages}
    path = write_results("bench", result, args.out)
    print(json.dumps(result["summary"], indent=1, default=str))
    print(f"wrote {path} in {result['total_wall_s']:.0f} s")
    return 1 if any("error" in e for e in stages.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
