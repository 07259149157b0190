"""Peak RSS of a replica's process when its model is called from one thread, from two call
threads in turn (what a Ray actor with ``max_concurrency=2`` did before the engine gave the
model a thread of its own), or from one model thread fed by two call threads (the engine now).

Run: ``python benchmarks/prof_model_thread.py`` (each way in a fresh process; about 2 min).
The tiny model with random weights at the Ray Data comparison's settings (scale 4, 512-px
chunks, 16-px halo), 8 batches of the bundled Sentinel-1 sample's statistics. Prints each way's
``VmHWM`` (peak RSS) and wall time; glibc keeps a malloc arena per thread, so activations freed
in one thread's arena are not reused by the other's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WAYS = ("one thread", "two call threads", "model thread")

_CHILD = r"""
import json, sys, time, threading
from concurrent.futures import ThreadPoolExecutor
import numpy as np
sys.path.insert(0, {repo!r})
import torch
from sarray.engine.config import TranslateConfig
from sarray.engine.pool import import_object
from sarray.models.replica import ReplicaConfig
way = {way!r}
cfg = TranslateConfig(model="tiny-random", scale=4, chunk_px=512, halo_px=16, replicas=2)
torch.set_num_threads(1)
rep = import_object("sarray.models.replica:Replica")(ReplicaConfig.from_dict(cfg.replica_config()))
# The bundled Sentinel-1 sample's VV statistics (as ingest computes them), for both.
stats = {{p: {{"valid_fraction": 1.0, "mean": -11.36, "std": 5.64, "min": -39.2, "max": 25.6,
              "amplitude_mean": 0.333, "amplitude_std": 0.298, "db_mean": -11.37, "db_std": 5.65}}
         for p in ("VV", "VH")}}
meta = {{"units": "db", "quantity": "intensity", "polarisations": ["VV", "VH"], "statistics": stats}}
edge = cfg.tile_spec().window_px
def call(i):
    torch.set_num_threads(1)
    x = np.random.default_rng(i).normal(-12, 3, (cfg.batch_size, 2, edge, edge)).astype(np.float32)
    return rep({{"tiles": x, "scene_id": ["s"] * len(x), "tile_index": [[i, j] for j in range(len(x))], "meta": meta}})["output"]
t0 = time.perf_counter()
if way == "one thread":
    for i in range(8):
        call(i)
elif way == "two call threads":
    lock = threading.Lock()
    def locked(i):
        with lock:
            return call(i)
    with ThreadPoolExecutor(2) as ex:
        list(ex.map(locked, range(8)))
else:
    model = ThreadPoolExecutor(1)
    with ThreadPoolExecutor(2) as ex:
        list(ex.map(lambda i: model.submit(call, i).result(), range(8)))
wall = time.perf_counter() - t0
hwm = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print("RESULT " + json.dumps({{"way": way, "peak_rss_mib": hwm, "wall_s": wall}}))
"""


def main() -> int:
    rows = []
    for way in WAYS:
        out = subprocess.run([sys.executable, "-c", _CHILD.format(repo=str(REPO), way=way)],
                             capture_output=True, text=True, check=False)
        lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        if out.returncode or not lines:
            print(f"{way}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(lines[-1][7:]))
        r = rows[-1]
        print(f"{r['way']:>18}: peak RSS {r['peak_rss_mib']:6.0f} MiB, {r['wall_s']:5.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
