"""What one object per tile costs against one object per replica call (the engine's pattern).

Run: ``python benchmarks/prof_objects.py [--calls 600] [--tiles-per-call 2] [--repeats 3]``.
Writes ``benchmarks/results/prof_objects.json``.

A one-node Ray (every object in the object store, as a model's megabyte tiles are:
``max_direct_call_object_size`` 512 B) and the engine's shape of work: a replica actor returns an
ack and its tiles' ``(prediction, input window)`` pairs, the driver fetches the ack, and an
assembler actor takes the predictions of every 4 calls as arguments of one call. Either each
tile's pair is an object of its own (``num_returns = 1 + tiles``, the engine before), or the
call's pairs are one list (``num_returns = 2``, the engine now, the assembler passed each call
object once). CPU seconds per tile of the driver (this process), the raylet and GCS, the replica
and the assembler processes, medians over ``--repeats`` interleaved runs of each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, environment, write_results  # noqa: E402


def _role_cpu() -> dict[str, float]:
    """CPU seconds of this process's own Ray (its children: never another job's on this box)."""
    import psutil

    out: dict[str, float] = {}
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            if "raylet" in cmd or "gcs_server" in cmd:
                role = "ray"
            elif cmd.startswith("ray::Replica"):
                role = "replica"
            elif cmd.startswith("ray::Assembler"):
                role = "assembler"
            else:
                continue
            t = p.cpu_times()
            out[role] = out.get(role, 0.0) + t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=600)
    p.add_argument("--tiles-per-call", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _system_config={"max_direct_call_object_size": 512})

    @ray.remote
    class Replica:
        def per_tile(self, n: int) -> tuple:
            a = np.ones((1, 72, 72), np.float32)
            return ("ack", *((a, a[:, :36, :36]) for _ in range(n)))

        def per_call(self, n: int) -> tuple:
            a = np.ones((1, 72, 72), np.float32)
            return "ack", [(a, a[:, :36, :36]) for _ in range(n)]

    @ray.remote
    class Assembler:
        def assemble(self, *objects: object) -> int:
            return len(objects)

    rep, asm = Replica.options(max_concurrency=2).remote(), Assembler.remote()
    ray.get([rep.per_call.remote(1), asm.assemble.remote()])
    n = args.tiles_per_call

    def run(mode: str) -> dict[str, float]:
        before, c0 = _role_cpu(), time.process_time()
        pending: list = []
        for _ in range(args.calls):
            if mode == "object_per_tile":
                refs = rep.per_tile.options(num_returns=1 + n).remote(n)
                ack, objs = refs[0], list(refs[1:])
            else:
                ack, box = rep.per_call.options(num_returns=2).remote(n)
                objs = [box]
            ray.get(ack)
            pending += objs
            if len(pending) >= 4 * len(objs):
                ray.get(asm.assemble.remote(*pending))
                pending = []
        tiles = args.calls * n
        after = _role_cpu()
        out = {"driver": (time.process_time() - c0) / tiles}
        out.update({k: (after[k] - before.get(k, 0.0)) / tiles for k in after})
        out["total"] = sum(out.values())
        return {k: 1e3 * v for k, v in out.items()}  # ms per tile

    runs: dict[str, list[dict[str, float]]] = {"object_per_tile": [], "object_per_call": []}
    for _ in range(args.repeats):
        for mode in runs:
            runs[mode].append(run(mode))
    ray.shutdown()
    med = {m: {k: median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}
    result = {"environment": environment("cpu"), "calls": args.calls, "tiles_per_call": n,
              "repeats": args.repeats, "cpu_ms_per_tile_median": med, "runs": runs,
              "per_call_over_per_tile": {k: med["object_per_call"][k] / med["object_per_tile"][k]
                                         for k in med["object_per_tile"]}}
    for m, v in med.items():
        print(m, " ".join(f"{k} {x:.3f}" for k, x in v.items()), "ms/tile")
    print("ratio", {k: round(v, 2) for k, v in result["per_call_over_per_tile"].items()})
    print(f"wrote {write_results('prof_objects', result, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
