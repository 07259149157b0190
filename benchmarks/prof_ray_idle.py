"""What Ray costs while nothing runs: CPU per second of idle actor processes, the driver and
Ray's own daemons (raylet, GCS, agents, log monitor), on this machine.

The engine's assemblers and writer are Ray actors that wait most of a job: on a host whose
cores the CPU replicas fill, what they burn while idle is taken from the replicas. Starts Ray
(2 CPU slots, no dashboard, as bench_translate does), three idle actors, then measures three
windows of 10 s; prints each role's median CPU seconds per second (a share of one core).
Issue 9's note quotes it (an idle actor process: about 0.009 of a core, its task loop waking
about 95 times a second).

Run: python benchmarks/prof_ray_idle.py
"""
import os
import time
from statistics import median

import psutil
import ray

WINDOW_S, WINDOWS, ACTORS = 10.0, 3, 3


@ray.remote(num_cpus=0.25)
class Idle:
    def pid(self) -> int:
        return os.getpid()


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def main() -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    actors = [Idle.remote() for _ in range(ACTORS)]
    pids = set(ray.get([a.pid.remote() for a in actors]))
    time.sleep(3)  # past the actors' start
    me = psutil.Process()
    per_window: dict[str, list[float]] = {"idle actor (each)": [], "driver": [], "Ray's daemons": []}
    for _ in range(WINDOWS):
        procs = [p for p in me.children(recursive=True)]
        c0 = {p.pid: cpu(p) for p in procs}
        d0, t0 = time.process_time(), time.perf_counter()
        time.sleep(WINDOW_S)
        dt = time.perf_counter() - t0
        per_window["driver"].append((time.process_time() - d0) / dt)
        actor_s, daemons_s = [], 0.0
        for p in procs:
            try:
                used = (cpu(p) - c0[p.pid]) / dt
            except psutil.NoSuchProcess:
                continue
            if p.pid in pids:
                actor_s.append(used)
            else:
                daemons_s += used
        per_window["idle actor (each)"].append(median(actor_s))
        per_window["Ray's daemons"].append(daemons_s)
    for role, xs in per_window.items():
        print(f"{role}: {median(xs):.4f} CPU s per s (windows: {', '.join(f'{x:.4f}' for x in xs)})")
    ray.shutdown()


if __name__ == "__main__":
    main()
