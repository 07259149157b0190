"""The per-pixel work of the engine, run on the cluster's workers (never in the driver).

- :func:`read_tiles`: a replica's input, read by the replica's own process from the archive
  by window (:class:`~sarray.archive.pixels.ScenePixels`: only the chunks under a window are
  read, with zarr and Icechunk alone), at the snapshot the job planned on.
- :func:`assemble_chunk`: one output chunk from its 3 x 3 neighbours' predictions: blend, the
  consistency step (against the chunk's input footprint, which its own tile's replica returns
  with the prediction), statistics, and the region write
  into a fork of the output's writable session. It returns the fork, which goes straight to
  the job's :class:`~sarray.engine.output.OutputWriter` to be merged.

Both are plain functions; :mod:`sarray.engine.pool` wraps them for Ray.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import numpy as np

from sarray.tiles.grid import Tile


@functools.lru_cache(maxsize=16)
def scene_pixels(archive_url: str, scene_id: str, snapshot: str, location: str = "") -> Any:
    """The scene's backscatter at a snapshot, read by window without xarray (cached per worker
    process: a replica or an assembler imports zarr and Icechunk only, see
    :mod:`sarray.archive.pixels`)."""
    from sarray.archive.store import Archive

    return Archive(archive_url).scene_pixels(scene_id, snapshot=snapshot, location=location or None)


def pixels_of(info: Any) -> Any:
    """:func:`scene_pixels` of a :class:`~sarray.engine.output.SceneInfo`."""
    return scene_pixels(info.archive_url, info.scene_id, info.snapshot, info.location)


def read_tiles(pixels: Any, tiles: list[Tile]) -> np.ndarray:
    """The model input of ``tiles``: each window padded to the tiles' uniform shape."""
    out = []
    for t in tiles:
        r0, r1, c0, c1 = t.src
        window = pixels.window((r0, r1), (c0, c1))
        pt, pb, pl, pr = t.pad
        out.append(np.pad(window, ((0, 0), (pt, pb), (pl, pr)), mode="reflect") if any(t.pad) else window)
    return np.stack(out)


def crop_prediction(tile: Tile, pred: np.ndarray, scale: int) -> np.ndarray:
    """The part of a padded tile's prediction that covers its window."""
    hs, ws = (tile.src[1] - tile.src[0]) * scale, (tile.src[3] - tile.src[2]) * scale
    return np.ascontiguousarray(pred[:, :hs, :ws], dtype=np.float32)


def tile_output(tile: Tile, tile_input: np.ndarray, pred: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """What a replica returns for one tile: its cropped prediction, and its input window
    (``tile.src``, without the padding). The window covers the consistency step's footprint of
    the tile's own chunk, so an assembler needs no read of its own."""
    pt, _, pl, _ = tile.pad
    h, w = tile.src[1] - tile.src[0], tile.src[3] - tile.src[2]
    return crop_prediction(tile, pred, scale), np.ascontiguousarray(tile_input[:, pt : pt + h, pl : pl + w])


_INFO: dict[str, Any] = {}
# Scenes' infos kept per worker process (a job rarely has more scenes in flight at once).
INFO_CACHE_SCENES = 64


def scene_info(box: list[Any]) -> Any:
    """The :class:`~sarray.engine.output.SceneInfo` in ``box``: an object ref (fetched once per
    worker process and cached), or the info itself (plain calls, tests)."""
    item = box[0]
    if not hasattr(item, "hex"):
        return item
    key = item.hex()
    if key not in _INFO:
        import ray

        if len(_INFO) >= INFO_CACHE_SCENES:
            _INFO.pop(next(iter(_INFO)))
        _INFO[key] = ray.get(item)
    return _INFO[key]


def warm_imports() -> int:
    """Import what assembly needs (before the first chunk); returns the pid."""
    import sarray.stitch.blend  # noqa: F401
    import sarray.stitch.writer  # noqa: F401

    return os.getpid()


def warm_scene(info_box: list[Any], inputs: bool = False) -> None:
    """Fetch a scene's info and open its dataset before its first tile or chunk arrives
    (``inputs``: a replica, which reads every tile; assemblers read only for consistency)."""
    info = scene_info(info_box)
    if inputs or info.consistency == "multilook":
        pixels_of(info)
    if not inputs and info.plan.todo:
        warm_chunk(info)


def warm_chunk(info: Any) -> None:
    """Assemble the scene's first chunk from flat stand-in predictions, written nowhere: the
    first chunk of a process otherwise pays for imports, factorisations and tables (about 2.5x
    a chunk), right when the replicas start."""
    key = info.plan.todo[0]
    neighbours = info.plan.neighbours(key)
    flat = 0.0 if info.units == "db" else 1.0
    preds = []
    for n in neighbours:
        y0, y1, x0, x1 = info.plan.tiles[n].out
        preds.append(np.full((len(info.meta.get("polarisations", [])) or 1, y1 - y0, x1 - x0), flat, np.float32))
    r0, r1, c0, c1 = info.plan.tiles[key].src
    tile_input = np.full((preds[0].shape[0], r1 - r0, c1 - c0), flat, np.float32)
    values = blend_chunk_of(info, key, preds, tile_input=tile_input, cache=False)
    from sarray.archive.write import block_stats

    block_stats(values, info.units, info.quantity)


_SPECKLE: dict[str, Any] = {}


@functools.lru_cache(maxsize=1)
def cell_cache() -> Any:
    """This worker's :class:`~sarray.stitch.blend.CellCache` (chunks share band cells)."""
    from sarray.config import CELL_CACHE_MB
    from sarray.stitch.blend import CellCache

    return CellCache(CELL_CACHE_MB * 2**20)


def speckle_model(info: Any) -> Any:
    """The job's :class:`~sarray.stitch.speckle.SpeckleModel` (built once per worker)."""
    from sarray.stitch.speckle import SpeckleModel, single_look

    key = info.out_id
    if key not in _SPECKLE:
        if len(_SPECKLE) >= INFO_CACHE_SCENES:
            _SPECKLE.pop(next(iter(_SPECKLE)))
        _SPECKLE[key] = SpeckleModel.from_dict(info.speckle) if info.speckle else single_look()
    return _SPECKLE[key]


def consistency_halo(spec: Any) -> int:
    """Output pixels of context the consistency step takes around a chunk: HALO_INPUT_PX input
    pixels, within what the chunk's 3 x 3 neighbours' predictions cover on their own."""
    from sarray.stitch.consistency import HALO_INPUT_PX

    s = spec.scale
    return max(0, min(HALO_INPUT_PX * s, spec.chunk_px - spec.band_px) // s * s)


def consistency_source(info: Any, key: tuple[int, int], region: tuple[int, int, int, int],
                       tile_input: np.ndarray | None) -> np.ndarray:
    """The input pixels under ``region`` (output pixels): sliced from the chunk's own tile
    input (``tile.src``) when it covers them, read from the archive otherwise."""
    s = info.spec.scale
    r0, r1, c0, c1 = region[0] // s, region[1] // s, region[2] // s, region[3] // s
    a0, a1, b0, b1 = info.plan.tiles[key].src
    if tile_input is not None and a0 <= r0 and r1 <= a1 and b0 <= c0 and c1 <= b1:
        return tile_input[:, r0 - a0 : r1 - a0, c0 - b0 : c1 - b0]
    return pixels_of(info).window((r0, r1), (c0, c1))


def blend_chunk_of(info: Any, key: tuple[int, int], predictions: list[np.ndarray],
                   tile_input: np.ndarray | None = None, cache: bool = True) -> np.ndarray:
    """The blended (and, if asked, radiometrically consistent) values of one chunk from its
    neighbours' predictions (in :func:`sarray.tiles.grid.neighbours` order); ``tile_input``
    is the chunk's own tile's input window (see :func:`tile_output`), or None to read it.

    With ``output`` speckled, the blended reflectivity is multiplied by the sensor's speckle
    (seamless: the same field at the same pixel for every chunk). With the consistency step,
    the chunk is blended, speckled and corrected with a halo (the same pixels its neighbours
    blend, bit for bit) and cropped, so chunk borders do not show.
    """
    from sarray.stitch.blend import Prediction, blend_chunk
    from sarray.stitch.speckle import synthesise
    from sarray.tiles.grid import tile_ramps

    plan = info.plan
    y0, y1, x0, x1 = plan.tiles[key].chunk
    preds = []
    for n, values in zip(plan.neighbours(key), predictions):
        tile = plan.tiles[n]
        wy, wx = tile_ramps(tile, info.shape_out, info.spec)
        preds.append(Prediction(tile.out, values, wy, wx,
                                key=(info.job, info.out_id, n) if info.job and cache else None))
    halo = consistency_halo(info.spec) if info.consistency == "multilook" else 0
    h, w = info.shape_out
    r = (max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo))
    values = blend_chunk(r, preds, units=info.units, quantity=info.quantity, cache=cell_cache())
    s = info.spec.scale
    src = consistency_source(info, key, r, tile_input) if info.consistency == "multilook" else None
    values = synthesise(values, r, scale=s, units=info.units, quantity=info.quantity,
                        speckle=speckle_model(info) if info.output == "speckled" else None,
                        seed=info.seed, scene=info.scene_id, source=src)
    return np.ascontiguousarray(values[:, y0 - r[0] : y1 - r[0], x0 - r[2] : x1 - r[2]])


def read_tile_batch(info: Any, keys: list[tuple[int, int]]) -> dict[str, Any]:
    """The replica batch of tiles ``keys``: their windows read from the archive, padded."""
    tiles = [info.plan.tiles[k] for k in keys]
    return {"tiles": read_tiles(pixels_of(info), tiles),
            "scene_id": [info.scene_id] * len(tiles),
            "tile_index": [list(k) for k in keys], "meta": info.meta}


def assemble_chunks(info_box: list[Any], keys: list[tuple[int, int]],
                    tile_keys: list[tuple[int, int]], fork: Any, index: list[tuple[int, int]],
                    *batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[Any, list[dict[str, Any]]]:
    """Blend, correct, measure and write chunks ``keys`` into ``fork``.

    ``batches`` are replica calls' outputs (each a list of ``(prediction, input window)`` per
    tile, :func:`tile_output`), and ``index`` says where each of ``tile_keys`` (the union of the
    chunks' neighbourhoods) is in them: ``(batch, position)``. Several chunks per task share
    their neighbours' predictions, so a task moves fewer objects than one chunk each would.

    Returns:
        (the fork, to merge; one note per chunk written: key, region, shape, node, pid).
    """
    from sarray.archive.write import block_stats
    from sarray.stitch.writer import ChunkWriter

    started = time.time()
    info = scene_info(info_box)
    by_key = {k: batches[b][i] for k, (b, i) in zip(tile_keys, index)}
    notes = []
    node, pid = _node_id(), os.getpid()
    writer = ChunkWriter(fork)
    cache = cell_cache()
    for key in keys:
        m0 = cache.misses
        c0 = time.thread_time()
        values = blend_chunk_of(info, key, [by_key[n][0] for n in info.plan.neighbours(key)],
                                tile_input=by_key[key][1])
        stats = block_stats(values, info.units, info.quantity)[:, 0, 0]
        region = info.plan.tiles[key].chunk
        c1, w1 = time.thread_time(), time.perf_counter()
        writer.write(key, region, values, stats)
        notes.append({"out_id": info.out_id, "key": key, "region": region,
                      "shape": tuple(values.shape), "node": node, "pid": pid, "t": time.time(),
                      "task_start": started,
                      # CPU seconds of the chunk's blend, speckle, consistency and statistics in
                      # this thread, and wall seconds of its write into the fork.
                      "compute_cpu_s": c1 - c0, "write_s": time.perf_counter() - w1,
                      # Band cells this chunk blended (not found in this worker's cell cache).
                      "cells_blended": cache.misses - m0})
    return fork, notes


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def trim_heap() -> None:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere a no-op)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # outside Ray (tests of the plain function)
        return None
