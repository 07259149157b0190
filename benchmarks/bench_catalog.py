"""Catalog benchmark: commit cost and bbox + time query against the number of scenes.

For each size (100, 10,000, 100,000 scenes) the catalog is grown by bulk inserts, then:

- ``commit_s``: median time of one more scene's catalog commit (one row, one transaction);
- ``scene_commit_s``: median time of a whole ingest commit of a tiny scene at that size (its
  own repository's commit plus the catalog row), what `sarray ingest` pays per scene;
- ``query_bbox_s``: median time of a bbox + time query (``Archive.find``) over every row;
- ``query_peak_rss_mib``: peak RSS of a fresh process that opens the archive and runs that
  query (the memory a `sarray ls --bbox` needs).

Usage: ``python benchmarks/bench_catalog.py [--out PATH] [--sizes 100,10000,100000]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, environment  # noqa: E402

from sarray.archive.catalog import CatalogRow, Query  # noqa: E402
from sarray.archive.layout import SceneRecord  # noqa: E402
from sarray.archive.store import Archive  # noqa: E402


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One catalog size."""

    # The number of scenes already listed when the commit and query are timed.
    n_scenes: int
    # Repeats of each timed operation (the median is reported).
    repeats: int = 5


# Europe-sized footprints: what a continental Sentinel-1 archive holds.
LON = (-10.0, 30.0)
LAT = (35.0, 70.0)
QUERY = Query(bbox_lonlat=(4.0, 50.0, 6.0, 52.0), start="2020-01-01", end="2020-12-31")


def synthetic_rows(start: int, n: int, seed: int = 0) -> list[CatalogRow]:
    """``n`` realistic records: ~2 x 2 degree footprints, times 2015-2025."""
    rng = np.random.default_rng(seed + start)
    lon = rng.uniform(*LON, n)
    lat = rng.uniform(*LAT, n)
    t = rng.uniform(1.42e9, 1.74e9, n)
    rows = []
    for k in range(n):
        i = start + k
        rec = SceneRecord(
            scene_id=f"S1A_IW_GRDH_{i:07d}", sensor="Sentinel-1A", platform="spaceborne",
            acquisition_time=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t[k])),
            bbox_lonlat=(float(lon[k]), float(lat[k]), float(lon[k] + 2.2), float(lat[k] + 1.8)),
            shape=(2, 16000, 25000), pixel_spacing_m=(10.0, 10.0), polarisations=("VV", "VH"),
            units="linear", source_sha256=f"{i:064x}",
            extra={"selection": {"calibration": "sigma0", "window": None}},
        )
        rows.append(CatalogRow(record=rec, location=f"{rec.scene_id}.bench"))
    return rows


def _grow(arch: Archive, have: int, want: int, batch: int = 20000) -> None:
    cat = arch.catalog_repo()
    while have < want:
        n = min(batch, want - have)
        cat.insert(synthetic_rows(have, n), message=f"bulk {have}+{n}")
        have += n


def _query_rss(url: str) -> float:
    code = (
        "import resource, sys\n"
        "from sarray.archive.store import Archive\n"
        "from sarray.archive.catalog import Query\n"
        f"Archive({url!r}).find(Query(bbox_lonlat={QUERY.bbox_lonlat!r}, start={QUERY.start!r}, end={QUERY.end!r}))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _scene_commit(arch: Archive, i: int) -> float:
    """A whole ingest commit of a tiny scene (repository commit + catalog row)."""
    import zarr

    row = synthetic_rows(10_000_000 + i, 1, seed=7)[0]
    t0 = time.perf_counter()
    w = arch.begin_scene(row.record.scene_id)
    g = zarr.group(store=w.store, zarr_format=3)
    g.create_array("backscatter", shape=(1, 64, 64), dtype="float32")[:] = 1.0
    arch.commit_scene(w, row.record)
    return time.perf_counter() - t0


def run(sizes: list[int], work: Path) -> list[dict[str, float]]:
    arch = Archive(work / "catalog_bench.zarr")
    arch.ensure_created()
    cat = arch.catalog_repo()
    results = []
    for size in sizes:
        sc = Scenario(n_scenes=size)
        _grow(arch, len(cat), size)
        commits, scene_commits, queries = [], [], []
        for r in range(sc.repeats):
            row = synthetic_rows(5_000_000 + size * 10 + r, 1, seed=3)[0]
            t0 = time.perf_counter()
            cat.insert([row], message="one more")
            commits.append(time.perf_counter() - t0)
            scene_commits.append(_scene_commit(arch, size * 10 + r))
        for _ in range(sc.repeats):
            t0 = time.perf_counter()
            hits = arch.find(QUERY)
            queries.append(time.perf_counter() - t0)
        res = {"n_scenes": size, "commit_s": median(commits), "scene_commit_s": median(scene_commits),
               "query_bbox_s": median(queries), "query_hits": len(hits),
               "query_peak_rss_mib": _query_rss(arch.url)}
        print(json.dumps(res), flush=True)
        results.append(res)
    return results


def plot(results: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n_scenes"] for r in results]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(n, [r["commit_s"] * 1e3 for r in results], "o-", label="catalog commit")
    ax[0].plot(n, [r["scene_commit_s"] * 1e3 for r in results], "s-", label="whole scene commit")
    ax[0].set(xscale="log", xlabel="scenes in the archive", ylabel="ms", title="one more commit")
    ax[0].legend()
    ax[1].plot(n, [r["query_bbox_s"] * 1e3 for r in results], "o-")
    ax[1].set(xscale="log", xlabel="scenes in the archive", ylabel="ms", title="bbox + time query")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_catalog.json")
    ap.add_argument("--sizes", default="100,10000,100000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sarray-bench-catalog-") as d:
        results = run(sizes, Path(d))
    first, last = results[0], results[-1]
    payload = {
        "environment": environment(),
        "results": results,
        "ratios": {"commit_s_last_over_first": last["commit_s"] / first["commit_s"],
                   "scene_commit_s_last_over_first": last["scene_commit_s"] / first["scene_commit_s"]},
        "query": {"bbox_lonlat": QUERY.bbox_lonlat, "start": QUERY.start, "end": QUERY.end},
        "wall_s": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} ({payload['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
