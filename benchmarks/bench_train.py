"""Training step benchmark: seconds per step of the tiny model (DeepSpeed ZeRO-2, one process).

Run: ``python benchmarks/bench_train.py [--steps 12]`` (part of ``make bench``). Writes
``benchmarks/results/bench_train.json``. The run trains on a tiny synthetic airborne archive
(three scenes, 64-px tiles, batch 2); the step time is the median of the differences of
``loss.jsonl``'s clock, the first step (DeepSpeed's set-up) left out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, environment, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--tile-px", type=int, default=64)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))
    from sarray.testing.scenes import write_hr_archive
    from sarray.train.config import TrainConfig
    from sarray.train.loop import run_training

    work = Path(tempfile.mkdtemp(prefix="sarray-bench-train-"))
    try:
        hr = write_hr_archive(work)
        cfg = TrainConfig.from_dict({
            "output_dir": str(work / "run"), "steps": args.steps, "batch_size": args.batch_size,
            "zero_stage": 2, "val_tiles": 1,
            "data": {"archive": str(hr), "tile_px": args.tile_px, "val_scenes": ["hr-2"]}})
        t0 = time.perf_counter()
        res = run_training(cfg)
        wall = time.perf_counter() - t0
        clock = [json.loads(l)["time_s"] for l in (work / "run" / "loss.jsonl").read_text().splitlines()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps = [b - a for a, b in zip(clock, clock[1:])]
    result = {"environment": environment("cpu"), "steps": args.steps, "batch_size": args.batch_size,
              "tile_px": args.tile_px, "zero_stage": 2, "world_size": res["world_size"],
              "step_s_median": median(steps), "step_s": steps, "first_step_s": clock[0],
              "wall_s": wall, "tiles_per_s": args.batch_size / median(steps)}
    path = write_results("bench_train", result, args.out)
    print(json.dumps({k: result[k] for k in ("step_s_median", "tiles_per_s", "wall_s")}))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
