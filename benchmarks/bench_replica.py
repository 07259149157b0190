"""Replica throughput: the tiny preset on real Sentinel-1 tiles, CPU.

Measures tiles/s and seconds per tile at output tile sizes 64, 128 and 256 px (scale 4, so
16-64 px satellite tiles), batches of 1, 4 and 8, with 1 and 2 torch threads, at the preset's
default sampling (4 steps, strength 0.75: 3 UNet + ControlNet evaluations, no guidance).

Each batch runs twice: ``exact`` (micro_batch=1, tile by tile: bitwise batch-invariant, the
default) and ``batched`` (micro_batch=batch: one pipeline call per batch, last-bit differences
between batch sizes). Medians over ``--repeats`` runs after one warm-up.

Usage::

    python benchmarks/bench_replica.py            # writes benchmarks/results/bench_replica.{json,png}
    python benchmarks/bench_replica.py --repeats 3 --out /tmp/results
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, environment, timed_median, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCALE = 4


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One measured case.

    Args:
        tile_px: output tile edge: isolates the cost that grows with pixels (VAE at full
            resolution, UNet and ControlNet at 1/8).
        batch: tiles per replica call: isolates per-call overhead (prompt lookup, scheduler
            setup) against per-tile work.
        threads: torch intra-op threads: isolates parallel speed-up on this machine's cores.
        mode: ``exact`` (tile by tile) or ``batched`` (one pipeline call per batch).
    """

    tile_px: int
    batch: int
    threads: int
    mode: str


def _spain() -> tuple[np.ndarray, dict[str, Any]]:
    import rasterio

    from sarray.models.normalise import compute_statistics

    candidates = [
        REPO / "data" / "sample" / "Spain_7370579_S1Hand.tif",
        REPO.parent / "shared" / "data" / "sentinel1" / "sen1floods11" / "Spain_7370579_S1Hand.tif",
    ]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise SystemExit(f"no Sentinel-1 sample found; looked for {[str(p) for p in candidates]}")
    with rasterio.open(path) as ds:
        values = ds.read().astype(np.float32)
    meta = {
        "units": "db", "quantity": "intensity", "polarisations": ["VV", "VH"],
        "pixel_spacing_m": [10.0, 10.0], "sensor": "Sentinel-1", "platform": "spaceborne",
        "statistics": compute_statistics(
            values, units="db", quantity="intensity", polarisations=["VV", "VH"]
        ),
    }
    return values, meta


def _batch(values: np.ndarray, meta: dict[str, Any], in_px: int, n: int) -> dict[str, Any]:
    per_row = values.shape[-1] // in_px
    tiles = [
        values[:, (i // per_row) * in_px:(i // per_row + 1) * in_px, (i % per_row) * in_px:(i % per_row + 1) * in_px]
        for i in range(n)
    ]
    return {"tiles": np.stack(tiles), "scene_id": ["spain"] * n, "tile_index": list(range(n)), "meta": meta}


def _plot(rows: list[dict[str, Any]], path: Path, env: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(1, len(threads), figsize=(5.5 * len(threads), 4.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, t in zip(axes, threads):
        for mode, style in (("exact", "-o"), ("batched", "--s")):
            for batch in sorted({r["batch"] for r in rows}):
                pts = sorted(
                    (r["tile_px"], r["tiles_per_s"]) for r in rows
                    if r["threads"] == t and r["batch"] == batch and r["mode"] == mode
                )
                if pts and not (mode == "batched" and batch == 1):
                    ax.plot(*zip(*pts), style, label=f"batch {batch}, {mode}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([64, 128, 256], ["64", "128", "256"])
        ax.set_xlabel("output tile edge (px), scale 4")
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("tiles / s (median)")
    axes[-1].legend(fontsize=8)
    fig.suptitle(
        f"sarray tiny replica on {env['device']} ({env['cores']} cores), commit {env['commit']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    """Run every scenario, print a table, write JSON and PNG; return the JSON path."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per scenario (median)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    parser.add_argument("--tiles", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)

    import logging

    import torch

    from sarray.models.presets import TINY
    from sarray.testing.models import tiny_replica

    logging.getLogger("sarray.models.replica").setLevel(logging.ERROR)
    values, meta = _spain()
    exact = tiny_replica(scale=SCALE)
    env = environment("cpu")
    env["torch"] = torch.__version__
    env["loadavg_before"] = os.getloadavg()
    rows = []
    print(f"{'tile':>5} {'batch':>5} {'thr':>3} {'mode':>8} {'tiles/s':>9} {'s/tile':>8}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for tile_px in args.tiles:
            for batch in args.batches:
                b = _batch(values, meta, tile_px // SCALE, batch)
                modes = [("exact", exact)]
                if batch > 1:
                    modes.append(("batched", tiny_replica(scale=SCALE, micro_batch=batch)))
                for mode, rep in modes:
                    rep(b)  # warm-up: kernel selection, prompt embedding cache
                    med, times = timed_median(lambda: rep(b), args.repeats)
                    row = {**asdict(Scenario(tile_px=tile_px, batch=batch, threads=threads, mode=mode)),
                           "median_s_per_batch": med, "s_per_tile": med / batch,
                           "tiles_per_s": batch / med, "times_s": times}
                    rows.append(row)
                    print(f"{tile_px:>5} {batch:>5} {threads:>3} {mode:>8} {batch / med:>9.2f} {med / batch:>8.3f}")
    env["loadavg_after"] = os.getloadavg()
    payload = {
        "benchmark": "bench_replica",
        "environment": env,
        "settings": {
            "preset": "tiny", "scale": SCALE, "steps": TINY.default_steps,
            "strength": TINY.default_strength, "guidance_scale": TINY.default_guidance_scale,
            "repeats": args.repeats, "input": "Sentinel-1 VV/VH dB (Spain_7370579_S1Hand)",
        },
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = write_results("bench_replica", payload, args.out)
    _plot(rows, args.out / "bench_replica.png", env)
    print(f"wrote {path} and {args.out / 'bench_replica.png'}")
    return path


if __name__ == "__main__":
    main()
