"""What Ray costs while nothing runs: CPU per second of idle assembler actors, the driver and
Ray's own processes (raylet, GCS, agents, log monitor, idle workers), on this machine.

The engine's assemblers and writer are Ray actors that wait most of a job: on a host whose
cores the CPU replicas fill, what they burn while idle is taken from the replicas. Starts Ray
(2 CPU slots, no dashboard, as bench_translate does) and three of the engine's assembler
actors (warm, then left idle), and splits the tree's CPU by role with bench_translate's
``CpuByRole`` over three windows of 10 s; prints each role's median CPU seconds per second (a
share of one core). Issue 9's note quotes it (an idle actor process: about 0.009 of a core,
its task loop waking about 95 times a second).

Run: python benchmarks/prof_ray_idle.py
"""
import os
import time
from statistics import median

import ray

from bench_translate import CpuByRole

WINDOW_S, WINDOWS, ACTORS = 10.0, 3, 3


def main() -> None:
    from sarray.engine.pool import AssemblerPool

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    pool = AssemblerPool(ACTORS)
    ray.get(pool.ready())
    time.sleep(3)  # past the actors' start
    per_window: dict[str, list[float]] = {"idle assembler (each)": [], "driver": [], "Ray's processes": []}
    with CpuByRole() as sampler:
        for _ in range(WINDOWS):
            t0 = time.time()
            time.sleep(WINDOW_S)
            by_role = sampler.between(t0, time.time())
            # The samples' own span: the cores' seconds (every role and elsewhere) over them.
            span = sum(by_role.values()) / (os.cpu_count() or 1)
            per_window["idle assembler (each)"].append(by_role.get("assemblers", 0.0) / ACTORS / span)
            per_window["driver"].append(by_role.get("driver", 0.0) / span)
            per_window["Ray's processes"].append(by_role.get("ray", 0.0) / span)
    for role, xs in per_window.items():
        print(f"{role}: {median(xs):.4f} CPU s per s (windows: {', '.join(f'{x:.4f}' for x in xs)})")
    pool.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
