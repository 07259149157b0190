"""Ingest staged on a Ray cluster: every wave of every scene is a Ray task on some node.

The driver validates the inputs, creates each scene's repository and array metadata, and
commits that layout (the scene is not listed yet: listing is the catalog insert, at the very
end). Each wave of whole write-block rows (:func:`sarray.archive.write.wave_rows`: a scene is
split along whole chunks or shards, never inside one) then goes to a task with a fork of the
scene's clean session; the task reads its rows from the source, writes them into the fork and
returns the fork with the rows' statistics. The driver merges the forks into the scene's
session; the commits and the catalog rows follow exactly as for a local ingest, so a failure
on any node leaves the archive as it was.

Sources are read where the task runs: local paths must be visible from every node (a shared
filesystem mounted at the same path); ``s3://`` GeoTIFF/COG inputs are read from S3 with the
driver's AWS settings, passed to the tasks.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from sarray.archive.store import Archive
from sarray.ingest.config import IngestConfig
from sarray.ingest.source import SceneSource


def _stage_wave(fork: Any, band: Any, y0: int, units: str, quantity: str) -> tuple[Any, Any, str]:
    """Ray task: write one wave into ``fork``; returns (fork, statistics, node id)."""
    import dask
    import ray

    from sarray.archive.write import wave_graph

    write, stats = wave_graph(band, y0, fork.store, units, quantity)
    threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    _, parts = dask.compute(write, stats, scheduler="threads", num_workers=threads)
    return fork, parts, ray.get_runtime_context().get_node_id()


def stage_on_ray(arch: Archive, sources: list[SceneSource], config: IngestConfig,
                 writers: list[Any], *, progress: bool = False,
                 cpus_per_task: float = 1.0) -> tuple[list[Any], list[tuple[str, ...]]]:
    """Stage ``sources`` as Ray tasks; returns each scene's per-chunk statistics and the nodes
    that staged it. Each scene's writer is appended to ``writers`` as soon as it exists, so the
    caller can discard them all on failure."""
    from sarray.raysession import connected

    with connected():
        return _stage(arch, sources, config, writers, progress, cpus_per_task)


def _stage(arch: Archive, sources: list[SceneSource], config: IngestConfig, writers: list[Any],
           progress: bool, cpus_per_task: float) -> tuple[list[Any], list[tuple[str, ...]]]:
    import ray

    from sarray.archive.write import create_scene_group, wave_rows
    from sarray.raysession import get

    options: dict[str, Any] = {}
    if any(f.startswith("s3://") for src in sources for f in src.source_files):
        # s3:// inputs: the workers read them with the driver's S3 endpoint and credentials.
        aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        options["runtime_env"] = {"env_vars": aws}
    task = ray.remote(num_cpus=cpus_per_task, max_retries=2,
                      scheduling_strategy="SPREAD")(_stage_wave).options(**options)
    calls: dict[Any, tuple[int, int]] = {}  # ref -> (scene index, wave index)
    n_waves: list[int] = []
    for k, src in enumerate(sources):
        writer = arch.begin_scene(src.scene_id)
        writers.append(writer)
        create_scene_group(src.data, src.pols, src.georef, writer.store, config.layout)
        writer.commit(f"ingest {src.scene_id}: layout")  # forks need a clean session
        clean = writer.repo.writable_session("main")
        rows = wave_rows(*src.data.shape[1:], config.layout)
        n_waves.append(len(rows))
        for w, (y0, y1) in enumerate(rows):
            ref = task.remote(clean.fork(), src.data[:, y0:y1], y0, src.units, src.quantity)
            calls[ref] = (k, w)
    parts: list[list[Any]] = [[None] * n for n in n_waves]
    nodes: list[set[str]] = [set() for _ in sources]
    bar = _bar(len(calls), progress)
    pending = list(calls)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            fork, stats, node = get(done[0])  # a worker's SarrayError raised as itself
            k, w = calls[done[0]]
            writers[k].session.merge(fork)
            parts[k][w] = stats
            nodes[k].add(node)
            if bar is not None:
                bar.update(1)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        if pending:  # no task may still write when the caller removes the repositories
            ray.wait(pending, num_returns=len(pending), timeout=60)
        raise
    finally:
        if bar is not None:
            bar.close()
    return ([np.concatenate(p, axis=1) for p in parts], [tuple(sorted(n)) for n in nodes])


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, desc="ingest on Ray", unit="wave", file=sys.stderr, dynamic_ncols=True)
