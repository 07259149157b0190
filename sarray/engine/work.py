"""The per-pixel work of the engine, run on the cluster's workers (never in the driver).

- :func:`read_tiles`: a replica's input, read by the replica's own process from the archive
  through the lazy ``open_scene`` dataset (windows by ``isel``: only the chunks under a window
  are read), at the snapshot the job planned on.
- :func:`assemble_chunk`: one output chunk from its 3 x 3 neighbours' predictions: blend, the
  consistency step (reading the chunk's input footprint), statistics, and the region write
  into a fork of the output's writable session. It returns the fork for the driver to merge.

Both are plain functions; :mod:`sarray.engine.pool` wraps them for Ray.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from sarray.tiles.grid import Tile, TileSpec


@functools.lru_cache(maxsize=16)
def scene_dataset(archive_url: str, scene_id: str, snapshot: str) -> Any:
    """The lazy dataset of a scene at a snapshot (cached per worker process)."""
    from sarray.archive.store import Archive

    return Archive(archive_url).open_scene(scene_id, snapshot=snapshot)


def read_window(ds: Any, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """(pol, y, x) float32 pixels of a window (reads exactly the chunks under it)."""
    from sarray.archive.layout import DIM_X, DIM_Y, VAR_BACKSCATTER

    win = ds[VAR_BACKSCATTER].isel({DIM_Y: slice(*rows), DIM_X: slice(*cols)})
    return np.asarray(win.values, dtype=np.float32)


def read_tiles(archive_url: str, scene_id: str, snapshot: str, tiles: list[Tile]) -> np.ndarray:
    """The model input of ``tiles``: each window padded to the tiles' uniform shape."""
    ds = scene_dataset(archive_url, scene_id, snapshot)
    out = []
    for t in tiles:
        r0, r1, c0, c1 = t.src
        window = read_window(ds, (r0, r1), (c0, c1))
        pt, pb, pl, pr = t.pad
        out.append(np.pad(window, ((0, 0), (pt, pb), (pl, pr)), mode="reflect") if any(t.pad) else window)
    return np.stack(out)


def crop_prediction(tile: Tile, pred: np.ndarray, scale: int) -> np.ndarray:
    """The part of a padded tile's prediction that covers its window."""
    hs, ws = (tile.src[1] - tile.src[0]) * scale, (tile.src[3] - tile.src[2]) * scale
    return np.ascontiguousarray(pred[:, :hs, :ws], dtype=np.float32)


@dataclass(frozen=True, kw_only=True)
class ChunkJob:
    """Everything a worker needs to assemble and write one output chunk (no pixels).

    Args:
        archive_url: the input archive (read for the consistency step).
        scene_id: the input scene; ``snapshot`` the snapshot the job reads.
        out_id: the output scene.
        key: (chunk row, chunk col).
        tiles: the chunk's neighbourhood, in the order of the predictions passed with it.
        shape_out: (y, x) of the output grid.
        spec: the tile geometry.
        consistency: ``multilook`` or ``off``.
        units, quantity: of the scene's values.
    """

    archive_url: str
    scene_id: str
    snapshot: str
    out_id: str
    key: tuple[int, int]
    chunk: tuple[int, int, int, int]
    tiles: tuple[Tile, ...]
    shape_out: tuple[int, int]
    spec: TileSpec
    consistency: str
    units: str
    quantity: str


def blend_job(job: ChunkJob, predictions: list[np.ndarray]) -> np.ndarray:
    """The blended (and, if asked, radiometrically consistent) values of one chunk."""
    from sarray.stitch.blend import Prediction, blend_chunk
    from sarray.stitch.consistency import apply_consistency
    from sarray.tiles.grid import tile_ramps

    preds = []
    for tile, values in zip(job.tiles, predictions):
        wy, wx = tile_ramps(tile, job.shape_out, job.spec)
        preds.append(Prediction(tile.out, values, wy, wx))
    values = blend_chunk(job.chunk, preds, band_px=job.spec.band_px)
    if job.consistency == "multilook":
        s = job.spec.scale
        y0, y1, x0, x1 = job.chunk
        ds = scene_dataset(job.archive_url, job.scene_id, job.snapshot)
        src = read_window(ds, (y0 // s, y1 // s), (x0 // s, x1 // s))
        values = apply_consistency(values, src, scale=s, units=job.units, quantity=job.quantity)
    return values


def assemble_chunk(job: ChunkJob, fork: Any, *predictions: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """Blend, correct, measure and write one chunk into ``fork``.

    Returns:
        (the fork, to merge; a note of the write: key, region, shape, node, pid).
    """
    from sarray.archive.write import block_stats
    from sarray.stitch.writer import write_chunk_into

    values = blend_job(job, list(predictions))
    stats = block_stats(values, job.units, job.quantity)[:, 0, 0]
    write_chunk_into(fork, job.key, job.chunk, values, stats)
    return fork, {"out_id": job.out_id, "key": job.key, "region": job.chunk,
                  "shape": tuple(values.shape), "node": _node_id(), "pid": os.getpid()}


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # outside Ray (tests of the plain function)
        return None
