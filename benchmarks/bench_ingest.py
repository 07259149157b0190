"""Ingest benchmark: throughput against plain rasterio + zarr, and peak memory vs scene area.

Run: ``python benchmarks/bench_ingest.py [--size 8192] [--repeats 3] [--workdir DIR]``
(``make bench``). Writes ``benchmarks/results/bench_ingest.json`` and ``.png``.

1. A large float32 GeoTIFF is mosaicked from real SAR content in ../shared/data (Umbra, UAVSAR,
   SpaceNet 6 amplitudes; random flips, so the codec sees SAR texture, not repeats).
2. Throughput: ``sarray.ingest`` and the baseline (rasterio windowed reads written chunk by chunk
   into a zarr v3 array with the same chunks and codecs) alternate on the same file; medians.
3. Memory: each of ingest(size) and ingest(2 x size per side, 4x the area) runs in a fresh
   process that reports its own peak RSS.
4. Ray: ``--ray-files N`` files of 1024^2 ingested with ``on_ray`` on a
   ``ray.cluster_utils.Cluster`` of 1 and of 2 one-CPU worker nodes (the head takes no task),
   alternating, medians; beside the same files ingested in-process (``parallel_files=2``).

Whole-product SAFE memory is measured by ``bench_ingest_safe.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, environment, save_figure, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CHUNK = 1024


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One measured case."""

    name: str
    size_px: int
    # What it isolates.
    note: str


def _real_tiles(rng: np.random.Generator) -> list[np.ndarray]:
    """512 x 512 float32 amplitude crops of real SAR from ../shared/data."""
    import rasterio

    tiles = []
    sources = [
        (DATA / "umbra" / "umbra_yasur_train.tif", 1),
        (DATA / "airborne" / "uavsar-grand-mesa" / "uavsar_utm.amp1.real.tif", 1),
        (DATA / "airborne" / "uavsar-grand-mesa" / "uavsar_utm.amp2.real.tif", 1),
    ]
    for path, band in sources:
        with rasterio.open(path) as ds:
            a = np.abs(ds.read(band)).astype(np.float32)
        a = np.nan_to_num(a, nan=0.0)
        for _ in range(6):
            r = rng.integers(0, a.shape[0] - 512 + 1)
            c = rng.integers(0, a.shape[1] - 512 + 1)
            tiles.append(a[r : r + 512, c : c + 512] / max(float(a.mean()), 1e-6))
    return tiles


def make_mosaic(path: Path, size: int, seed: int = 0) -> Path:
    """Write a ``size`` x ``size`` float32 tiled GeoTIFF of real SAR crops, band by block row."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    tiles = _real_tiles(rng)
    profile = dict(driver="GTiff", height=size, width=size, count=1, dtype="float32",
                   crs="EPSG:32631", transform=from_origin(600000, 5800000, 1.0, 1.0),
                   tiled=True, blockxsize=256, blockysize=256, BIGTIFF="YES")
    with rasterio.open(path, "w", **profile) as ds:
        for r in range(0, size, 512):
            row = np.empty((512, size), np.float32)
            for c in range(0, size, 512):
                t = tiles[rng.integers(len(tiles))]
                t = t[:: rng.choice([-1, 1]), :: rng.choice([-1, 1])]
                row[:, c : c + 512] = t
            ds.write(row[None], window=Window(0, r, size, 512))
    return path


def baseline(src: Path, out: Path) -> None:
    """Plain rasterio windowed read + zarr v3 write, same chunks, zarr's default codecs."""
    import rasterio
    import zarr
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        h, w = ds.height, ds.width
        arr = zarr.create_array(str(out), shape=(1, h, w), chunks=(1, CHUNK, CHUNK),
                                dtype="float32", zarr_format=3)
        for r in range(0, h, CHUNK):
            for c in range(0, w, CHUNK):
                win = Window(c, r, min(CHUNK, w - c), min(CHUNK, h - r))
                arr[0:1, r : r + win.height, c : c + win.width] = ds.read(1, window=win)[None]


def ours(src: Path, out: Path) -> None:
    from sarray.archive.layout import ArchiveLayout
    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest

    ingest([src], out, IngestConfig(layout=ArchiveLayout(chunk_px=CHUNK), units="linear"))


# VmHWM (peak RSS of this process image): unlike ru_maxrss it is not inherited across exec.
_RSS_CHILD = """
import sys, time
sys.path.insert(0, {bench!r})
from bench_ingest import ours, baseline
t0 = time.perf_counter()
{fn}(__import__('pathlib').Path({src!r}), __import__('pathlib').Path({out!r}))
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(time.perf_counter() - t0, hwm)
"""


def peak_rss(fn: str, src: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of ``fn`` run alone in a fresh interpreter."""
    code = _RSS_CHILD.format(bench=str(Path(__file__).parent), fn=fn, src=str(src), out=str(out))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    secs, kib = res.stdout.split()[-2:]
    return float(secs), int(kib) / 1024


def ray_scaling(work: Path, n_files: int, repeats: int) -> dict:
    """Seconds to ingest ``n_files`` files of 1024^2 on 1 and 2 Ray worker nodes, and locally."""
    import os

    import ray
    from ray.cluster_utils import Cluster

    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest

    files = [make_mosaic(work / f"ray_{i:02d}.tif", 1024, seed=100 + i) for i in range(n_files)]
    times: dict[str, list[float]] = {"local": [], "ray_1_worker": [], "ray_2_workers": []}
    for i in range(repeats):
        out = work / f"ray_local_{i}.zarr"
        t = time.perf_counter()
        ingest(files, out, IngestConfig(units="linear"))
        times["local"].append(time.perf_counter() - t)
        shutil.rmtree(out, ignore_errors=True)
    # One driver connection per cluster, warmed by one ingest first: the workers' start and
    # imports (a few seconds, once per job) are not what scales with the number of files.
    for name, nodes in (("ray_1_worker", 1), ("ray_2_workers", 2)):
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        try:
            for _ in range(nodes):
                c.add_node(num_cpus=1)
            c.wait_for_nodes()
            ray.init(address=c.address, log_to_driver=False, configure_logging=False)
            try:
                ingest(files[:nodes * 2], work / "warm.zarr", IngestConfig(units="linear"), on_ray=True)
                shutil.rmtree(work / "warm.zarr", ignore_errors=True)
                for i in range(repeats):
                    out = work / f"ray_{name}_{i}.zarr"
                    t = time.perf_counter()
                    ingest(files, out, IngestConfig(units="linear"), on_ray=True)
                    times[name].append(time.perf_counter() - t)
                    shutil.rmtree(out, ignore_errors=True)
                    print(f"{name} run {i}: {times[name][-1]:.2f} s", file=sys.stderr)
            finally:
                ray.shutdown()
        finally:
            c.shutdown()
    for f in files:
        f.unlink(missing_ok=True)
    med = {k: median(v) for k, v in times.items()}
    mpx = n_files * 1024 * 1024 / 1e6
    return {"files": n_files, "size_px": 1024, "cores": os.cpu_count(), "times_s": times,
            "median_s": med, "mpx_per_s": {k: mpx / v for k, v in med.items()},
            "speedup_2_over_1_worker": med["ray_1_worker"] / med["ray_2_workers"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192, help="edge of the throughput scene")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--ray-files", type=int, default=16, help="files for the Ray scaling (0: skip)")
    args = p.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="sarray-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    scenarios = [
        Scenario(name="throughput", size_px=args.size,
                 note="sarray ingest vs plain rasterio+zarr on one file, same chunks and codecs"),
        Scenario(name="rss_1x", size_px=args.size, note="peak RSS, fresh process"),
        Scenario(name="rss_4x", size_px=2 * args.size, note="peak RSS with 4x the area"),
    ]
    t0 = time.perf_counter()
    small = make_mosaic(work / f"mosaic_{args.size}.tif", args.size, seed=0)
    large = make_mosaic(work / f"mosaic_{2 * args.size}.tif", 2 * args.size, seed=1)
    print(f"mosaics written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    mb = args.size * args.size * 4 / 1e6

    # 1. Throughput, alternating so that both see the same machine state.
    times: dict[str, list[float]] = {"sarray": [], "baseline": []}
    for i in range(args.repeats):
        for name, fn in (("sarray", ours), ("baseline", baseline)):
            out = work / f"{name}_{i}.zarr"
            t = time.perf_counter()
            fn(small, out)
            times[name].append(time.perf_counter() - t)
            shutil.rmtree(out)
            shutil.rmtree(work / f".{out.name}.staging", ignore_errors=True)
            print(f"{name} run {i}: {times[name][-1]:.2f} s", file=sys.stderr)
    med = {k: median(v) for k, v in times.items()}
    mbps = {k: mb / v for k, v in med.items()}

    # 2. Peak RSS in fresh processes.
    rss = {}
    for tag, src in (("1x", small), ("4x", large)):
        for fn in ("ours", "baseline"):
            out = work / f"rss_{fn}_{tag}.zarr"
            rss[f"{fn}_{tag}"] = peak_rss(fn, src, out)
            shutil.rmtree(out, ignore_errors=True)
            print(f"rss {fn} {tag}: {rss[f'{fn}_{tag}']}", file=sys.stderr)

    ray_part = ray_scaling(work, args.ray_files, args.repeats) if args.ray_files else None

    result = {
        "ray": ray_part,
        "environment": environment("cpu"),
        "scenarios": [asdict(s) for s in scenarios],
        "input_mb": mb,
        "times_s": times,
        "median_s": med,
        "throughput_mb_s": mbps,
        "throughput_ratio_sarray_over_baseline": mbps["sarray"] / mbps["baseline"],
        "peak_rss_mib": {k: v[1] for k, v in rss.items()},
        "rss_seconds": {k: v[0] for k, v in rss.items()},
        "rss_ratio_4x_over_1x": rss["ours_4x"][1] / rss["ours_1x"][1],
        "targets": {"throughput_ratio_min": 0.8, "rss_ratio_max": 1.25},
    }
    path = write_results("bench_ingest", result, args.out)
    _plot(result, path.with_suffix(".png"))
    print(json.dumps({k: result[k] for k in ("throughput_mb_s", "throughput_ratio_sarray_over_baseline",
                                             "peak_rss_mib", "rss_ratio_4x_over_1x")}, indent=1))
    print(f"wrote {path}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    t = result["throughput_mb_s"]
    a.bar(list(t), list(t.values()), color=["tab:blue", "tab:gray"])
    a.set_ylabel("MB/s (median)")
    a.set_title(f"ingest {result['input_mb']:.0f} MB float32, ratio "
                f"{result['throughput_ratio_sarray_over_baseline']:.2f}")
    r = result["peak_rss_mib"]
    a2 = list(r)
    b.bar(a2, [r[k] for k in a2], color=["tab:blue", "tab:gray"] * 2)
    b.set_ylabel("peak RSS (MiB)")
    b.set_title(f"4x area / 1x: {result['rss_ratio_4x_over_1x']:.2f}")
    b.tick_params(axis="x", rotation=20)
    save_figure(fig, out, result["environment"])


if __name__ == "__main__":
    sys.exit(main())
