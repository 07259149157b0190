"""The translate engine: archive tiles -> Ray pool of replicas -> blended chunks -> output scene.

Design (see also :mod:`sarray.tiles.grid` and :mod:`sarray.stitch.blend`):

- Work unit = one output chunk. Its tile is the chunk's input footprint plus a halo, read
  lazily through xarray/dask from the archive's Zarr chunks, in row-major order.
- A reader thread pool prefetches windows; at most ``PREFETCH_BATCHES_PER_REPLICA`` batches are
  in flight per actor (backpressure: memory does not grow with the scene), and every actor
  always has its next batch queued, so replicas never wait on I/O.
- Predictions of neighbouring tiles overlap by ``2 * halo * scale`` output pixels across each
  chunk border. A chunk is blended (speckle-preserving, see stitch.blend) and written as soon as
  the tiles of its 3 x 3 neighbourhood are back; a prediction is dropped once every chunk it
  touches is written. The buffer therefore holds about two rows of tiles.
- Each output chunk is written exactly once, whole, then flagged done (resume unit). Tiles are
  seeded by (scene, tile key, seed), so a rerun recomputes identical predictions and a resumed
  output equals an uninterrupted one exactly.
- A dead actor is replaced and its tiles retried; a tile that fails ``MAX_TILE_ATTEMPTS`` times
  stops the job with an error naming it.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sarray import __version__
from sarray.archive.layout import (
    SceneRecord,
    VAR_BACKSCATTER,
    validate_scene_id,
)
from sarray.archive.store import Archive
from sarray.config import MAX_TILE_ATTEMPTS, PREFETCH_BATCHES_PER_REPLICA
from sarray.errors import ArchiveError, ConfigError, ReplicaError
from sarray.tiles.grid import SCALES, Tile, TileSpec, chunk_grid, make_tile, neighbours, tile_ramps

CONSISTENCY = ("multilook", "off")
ON_UNFINISHED = ("resume", "restart")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True, kw_only=True)
class TranslateConfig:
    """What to translate and how.

    Args:
        scale: output spacing = input spacing / scale; 1 (same spacing) is for
            simulated-to-real on scenes of platform ``simulated``.
        model: ``tiny`` (shipped weights), ``tiny-random`` (seeded random weights, for tests and
            benchmarks), ``sdxl`` (hub id), or a local folder in the diffusers layout.
        replicas: actors in the pool (one per GPU on GPU clusters).
        chunk_px: output chunk edge (output pixels); one tile per chunk.
        halo_px: context around each tile, in input pixels; the blend band is
            ``2 * halo_px * scale`` output pixels wide.
        batch_size: tiles per actor call.
        seed: global seed mixed into every tile's noise seed.
        consistency: ``multilook`` rescales the output so that its multilook (box average of
            intensity over scale x scale) reproduces the input; ``off`` keeps the raw model output.
        out_scene: output scene id; None gives ``<scene>_x<scale>``.
        on_unfinished: ``resume`` an unfinished output with the same settings, or ``restart`` it.
        max_chunks: stop after writing this many chunks (a time-boxed run; rerun to resume).
        device: ``auto``, ``cpu`` or ``cuda``.
        dtype: replica dtype (float32, float16, bfloat16).
        num_inference_steps: sampler steps; None takes the preset's default.
        micro_batch: tiles per pipeline call inside a replica. 1 keeps every tile bitwise
            independent of batching (CPU convolutions differ in the last bits when batched);
            raise it with ``batch_size`` for GPU throughput.
        replica_class: importable ``module:Class`` of the replica (tests use stand-ins).
    """

    scale: int = 4
    model: str = "tiny"
    replicas: int = 1
    chunk_px: int = 512
    halo_px: int = 16
    batch_size: int = 1
    seed: int = 0
    consistency: str = "multilook"
    out_scene: str | None = None
    on_unfinished: str = "resume"
    max_chunks: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    num_inference_steps: int | None = None
    micro_batch: int = 1
    replica_class: str = "sarray.models.replica:Replica"

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"`scale` ({self.scale!r}) must be one of {SCALES}")
        if not isinstance(self.replicas, int) or self.replicas < 1:
            raise ConfigError(f"`replicas` ({self.replicas!r}) must be a positive integer")
        if not isinstance(self.micro_batch, int) or self.micro_batch < 1:
            raise ConfigError(f"`micro_batch` ({self.micro_batch!r}) must be a positive integer")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"`batch_size` ({self.batch_size!r}) must be a positive integer")
        if self.consistency not in CONSISTENCY:
            raise ConfigError(f"`consistency` ({self.consistency!r}) must be one of {CONSISTENCY}")
        if self.on_unfinished not in ON_UNFINISHED:
            raise ConfigError(f"`on_unfinished` ({self.on_unfinished!r}) must be one of {ON_UNFINISHED}")
        if self.device not in DEVICES:
            raise ConfigError(f"`device` ({self.device!r}) must be one of {DEVICES}")
        if self.max_chunks is not None and self.max_chunks < 1:
            raise ConfigError(f"`max_chunks` ({self.max_chunks}) must be >= 1")
        if self.out_scene is not None:
            validate_scene_id(self.out_scene)
        self.tile_spec()  # chunk/halo/scale consistency

    def replica_config(self) -> dict[str, Any]:
        """The :class:`~sarray.models.replica.ReplicaConfig` fields for this run."""
        from sarray.models.resolve import resolve_model

        cfg = {**resolve_model(self.model), "scale": self.scale, "seed": self.seed,
               "dtype": self.dtype, "micro_batch": self.micro_batch}
        if self.num_inference_steps is not None:
            cfg["num_inference_steps"] = self.num_inference_steps
        return cfg

    def tile_spec(self) -> TileSpec:
        """Tile geometry; tiles are padded to the model preset's pixel multiple."""
        from sarray.models.presets import get_preset

        multiple = get_preset(self.replica_config()["preset"]).pixel_multiple
        return TileSpec(scale=self.scale, chunk_px=self.chunk_px, halo_px=self.halo_px,
                        pad_multiple=max(1, -(-multiple // self.scale)))

    def out_scene_for(self, scene_id: str) -> str:
        """The output scene id of ``scene_id``: ``out_scene``, or ``<scene>_x<scale>``."""
        return self.out_scene or f"{scene_id}_x{self.scale}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranslateConfig:
        return cls(**data)


@dataclass
class TranslateSummary:
    """What a run did, printed at the end."""

    source_scene: str
    out_scene: str
    status: str  # "complete", "partial" (max_chunks reached) or "exists"
    tiles: int = 0
    chunks_written: int = 0
    chunks_total: int = 0
    output_px: int = 0
    replicas: int = 0
    wall_s: float = 0.0
    compute_s: float = 0.0  # from the first submitted batch to the last chunk written
    retries: int = 0
    cog: str | None = None
    quicklook: str | None = None

    @property
    def mpx_per_s(self) -> float:
        return self.output_px / 1e6 / self.compute_s if self.compute_s > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.out_scene}: {self.status}; {self.tiles} tiles, {self.chunks_written}/"
            f"{self.chunks_total} chunks, {self.mpx_per_s:.2f} Mpx/s, {self.replicas} replica(s), "
            f"wall {self.wall_s:.1f} s, retries {self.retries}"
        )


@dataclass
class _Work:
    tiles: list[Tile]
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


def _check_scenes(arch: Archive, scene_ids: list[str], config: TranslateConfig,
                  out_arch: Archive) -> None:
    """Everything that can be checked before Ray starts."""
    if not scene_ids:
        raise ConfigError("`scenes` is empty: name at least one scene (see `sarray ls`)")
    if config.out_scene is not None and len(scene_ids) > 1:
        raise ConfigError("`out_scene` names one output but several scenes were given")
    for sid in scene_ids:
        rec = arch.record(sid)  # SceneNotFoundError names the archive and the fix
        if config.scale == 1 and rec.platform != "simulated":
            raise ConfigError(
                f"`scale` (1) keeps the spacing: it is for simulated-to-real on platform "
                f"'simulated' scenes, and {sid!r} is {rec.platform!r}; use --scale 2 or more"
            )
        if rec.shape[1] < 1 or rec.shape[2] < 1:
            raise ArchiveError(f"scene {sid!r}: empty")
    out_arch.check_writable_target()


def translate(
    archive: str | Path,
    scene_ids: list[str],
    config: TranslateConfig,
    *,
    out_archive: str | Path | None = None,
    cog: str | Path | None = None,
    quicklook: str | Path | None = None,
    progress: bool = True,
) -> list[TranslateSummary]:
    """Translate scenes of ``archive`` into finer synthetic scenes (see the module docstring).

    Args:
        archive: the input archive.
        scene_ids: scenes to translate.
        config: the run configuration.
        out_archive: where the outputs go (default: the input archive).
        cog: optional COG path for the (single) output scene.
        quicklook: optional PNG path for an input/output side-by-side view.
        progress: show a progress bar on stderr.

    Raises:
        SarrayError: bad arguments (before Ray starts), or a tile that keeps failing.
    """
    import ray

    t_start = time.perf_counter()
    arch = Archive(archive).require()
    out_arch = Archive(out_archive) if out_archive is not None else arch
    _check_scenes(arch, scene_ids, config, out_arch)
    if (cog or quicklook) and len(scene_ids) > 1:
        raise ConfigError("--cog/--quicklook take one scene; translate scenes one at a time")
    replica_cfg = config.replica_config()
    if all(out_arch.has_scene(config.out_scene_for(sid)) for sid in scene_ids):
        # Nothing to compute: no Ray, no model; exports still happen below.
        summaries = [TranslateSummary(source_scene=sid, out_scene=config.out_scene_for(sid),
                                      status="exists") for sid in scene_ids]
        return _export(arch, out_arch, scene_ids, summaries, cog, quicklook, t_start)

    # 1. Ray: an existing cluster (RAY_ADDRESS) or a local one started for the job.
    started_here = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        started_here = True
    try:
        from sarray.engine.pool import plan_pool, start_actor

        plan = plan_pool(config.replicas, config.device)
        actors = [start_actor(plan, config.replica_class, replica_cfg) for _ in range(plan.replicas)]
        ray.get([a.ready.remote() for a in actors])
        summaries = []
        for sid in scene_ids:
            summaries.append(_translate_scene(arch, out_arch, sid, config, plan, actors,
                                              replica_cfg, progress))
        for a in actors:
            ray.kill(a)
    finally:
        if started_here:
            ray.shutdown()

    return _export(arch, out_arch, scene_ids, summaries, cog, quicklook, t_start)


def _export(arch: Archive, out_arch: Archive, scene_ids: list[str], summaries: list[TranslateSummary],
            cog: str | Path | None, quicklook: str | Path | None, t_start: float) -> list[TranslateSummary]:
    """2. Optional exports of the (single) output, then the wall time."""
    s = summaries[0]
    if cog is not None and s.status != "partial":
        from sarray.archive.export import export_cog

        s.cog = str(export_cog(out_arch, s.out_scene, cog))
    if quicklook is not None and s.status != "partial":
        from sarray.stitch.quicklook import write_side_by_side

        s.quicklook = str(write_side_by_side(arch, scene_ids[0], out_arch, s.out_scene, quicklook))
    for s in summaries:
        s.wall_s = time.perf_counter() - t_start
    return summaries


# The scene attributes a replica reads (see sarray.models.replica).
REPLICA_META_KEYS = ("units", "quantity", "polarisations", "pixel_spacing_m", "sensor",
                     "platform", "statistics")


def replica_meta(attrs: dict[str, Any]) -> dict[str, Any]:
    """The part of a scene's attributes sent to the replicas with every batch."""
    return {k: attrs[k] for k in REPLICA_META_KEYS if k in attrs}


def read_tile(backscatter: Any, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """(model input padded to the tile's uniform shape, the window as read) of one tile."""
    r0, r1, c0, c1 = tile.src
    window = np.asarray(backscatter[:, r0:r1, c0:c1].values, dtype=np.float32)
    pt, pb, pl, pr = tile.pad
    padded = np.pad(window, ((0, 0), (pt, pb), (pl, pr)), mode="reflect") if any(tile.pad) else window
    return padded, window


def _provenance(sid: str, arch: Archive, config: TranslateConfig, replica_cfg: dict[str, Any],
                snapshot: str) -> dict[str, Any]:
    return {
        "source_scene": sid,
        "source_archive": arch.url,
        "source_snapshot": snapshot,
        "model": config.model,
        "preset": replica_cfg.get("preset"),
        "weights": replica_cfg.get("weights"),
        "seed": config.seed,
        "scale": config.scale,
        "chunk_px": config.chunk_px,
        "halo_px": config.halo_px,
        "consistency": config.consistency,
        "num_inference_steps": config.num_inference_steps,
        "replica_class": config.replica_class,
        "sarray_version": __version__,
    }


def _translate_scene(
    arch: Archive, out_arch: Archive, sid: str, config: TranslateConfig, plan: Any,
    actors: list[Any], replica_cfg: dict[str, Any], progress: bool,
) -> TranslateSummary:
    import ray
    from tqdm.auto import tqdm

    from sarray.archive.write import STAT_FIELDS, block_stats, combine_stats
    from sarray.ingest.source import Georef
    from sarray.stitch.blend import Prediction, blend_chunk, blend_chunk_upper, blend_region
    from sarray.stitch.consistency import apply_consistency
    from sarray.stitch.writer import (
        discard_output,
        finalize_output,
        georef_of,
        open_or_create_output,
        refine_georef,
    )

    spec = config.tile_spec()
    s = spec.scale
    out_id = config.out_scene_for(sid)
    rec = arch.record(sid)
    src_ds = arch.open_scene(sid)
    attrs = dict(src_ds.attrs)
    units, quantity = attrs["units"], attrs.get("quantity", "unknown")
    n_p, h_in, w_in = rec.shape
    shape_out = (h_in * s, w_in * s)
    grid = chunk_grid((h_in, w_in), spec)
    summary = TranslateSummary(source_scene=sid, out_scene=out_id, status="complete",
                               chunks_total=grid[0] * grid[1], replicas=len(actors))
    if out_arch.has_scene(out_id):
        summary.status = "exists"
        return summary
    if config.on_unfinished == "restart":
        discard_output(out_arch, out_id)

    # 1. The output scene (created, or reopened to resume).
    provenance = _provenance(sid, arch, config, replica_cfg, src_ds.encoding["snapshot"])
    georef: Georef = refine_georef(georef_of(src_ds), s)
    spacing = [v / s for v in rec.pixel_spacing_m] if rec.pixel_spacing_m else None
    out_attrs = {
        "scene_id": out_id, "sensor": rec.sensor, "platform": "synthetic",
        "pixel_spacing_m": spacing, "polarisations": list(rec.polarisations), "units": units,
        "quantity": quantity, "acquisition_time": rec.acquisition_time,
        "source_files": [f"{arch.url}::{sid}"], "georeferencing": georef.kind,
        "calibration": attrs.get("calibration", "none"), "sarray_version": __version__,
    }
    out = open_or_create_output(
        out_arch, out_id, shape=(n_p, *shape_out), pols=rec.polarisations, georef=georef,
        chunk_px=spec.chunk_px, grid=grid, attrs=out_attrs, provenance=provenance,
        n_stats=len(STAT_FIELDS))

    # 2. What is left: chunks not done, and the tiles they need (neighbours included).
    done = out.done_mask()
    todo = [(i, j) for i in range(grid[0]) for j in range(grid[1]) if not done[i, j]]
    if config.max_chunks is not None:
        todo = todo[: config.max_chunks]
    todo_set = set(todo)
    needed = sorted({n for c in todo for n in neighbours(c, grid)})
    tiles = {k: make_tile(k, (h_in, w_in), spec) for k in needed}
    backscatter = src_ds[VAR_BACKSCATTER]
    meta = replica_meta(attrs)

    def read(tile: Tile) -> tuple[Tile, np.ndarray, np.ndarray]:
        return (tile, *read_tile(backscatter, tile))

    # 3. Stream: prefetch reads, keep every actor fed, blend and write chunks as they complete.
    per_actor = PREFETCH_BATCHES_PER_REPLICA
    queue = collections.deque(_Work(tiles=[tiles[k] for k in needed[i : i + config.batch_size]])
                              for i in range(0, len(needed), config.batch_size))
    reader = cf.ThreadPoolExecutor(max_workers=2)
    prefetched: collections.deque[tuple[_Work, list[cf.Future]]] = collections.deque()
    in_flight: dict[Any, tuple[_Work, Any, list[np.ndarray]]] = {}
    load = {id(a): 0 for a in actors}
    buffer: dict[tuple[int, int], tuple[Prediction, np.ndarray]] = {}
    bar = tqdm(total=len(todo), desc=f"translate {sid} x{s}", unit="chunk", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    tiles_done = 0

    def prefetch() -> None:
        while queue and len(prefetched) < per_actor * len(actors) + 1:
            work = queue.popleft()
            prefetched.append((work, [reader.submit(read, t) for t in work.tiles]))

    def submit() -> None:
        while prefetched:
            actor = min(actors, key=lambda a: load[id(a)])
            if load[id(actor)] >= per_actor:
                return
            work, futs = prefetched.popleft()
            got = [f.result() for f in futs]
            batch = {
                "tiles": np.stack([g[1] for g in got]),
                "scene_id": [sid] * len(got),
                "tile_index": [list(g[0].key) for g in got],
                "meta": meta,
            }
            ref = actor.run.remote(batch)
            in_flight[ref] = (work, actor, [g[2] for g in got])
            load[id(actor)] += 1
            prefetch()

    band = spec.band_px
    # Rows [y0, y1 - band) of chunks whose own and upper neighbours are back: blended early, so
    # that while a chunk waits for the row below only its final values and the bottom band of
    # the predictions are kept (about half the memory of whole predictions).
    partial: dict[tuple[int, int], np.ndarray] = {}

    def pending(m: tuple[int, int]) -> tuple[int, int, int, int]:
        """The part of chunk ``m`` that still has to be blended."""
        y0, y1, x0, x1 = tiles[m].chunk
        return (y1 - band, y1, x0, x1) if m in partial else tiles[m].chunk

    def trim(n: tuple[int, int]) -> None:
        """Keep only the part of tile ``n``'s prediction that waiting chunks still need."""
        if n not in buffer:
            return
        waiting = [pending(m) for m in neighbours(n, grid) if m in todo_set]
        if not waiting:
            del buffer[n]
            return
        box = (min(r[0] for r in waiting), max(r[1] for r in waiting),
               min(r[2] for r in waiting), max(r[3] for r in waiting))
        pred, src = buffer[n]
        buffer[n] = (pred.crop(box) or pred, src)

    def finish(c: tuple[int, int], values: np.ndarray) -> None:
        tile = tiles[c]
        if config.consistency == "multilook":
            y0, y1, x0, x1 = tile.chunk
            r0, c0 = tile.src[0], tile.src[2]
            src = buffer[c][1][:, y0 // s - r0 : y1 // s - r0, x0 // s - c0 : x1 // s - c0]
            values = apply_consistency(values, src, scale=s, units=units, quantity=quantity)
        out.write_chunk(c, tile.chunk, values, block_stats(values, units, quantity)[:, 0, 0])
        todo_set.discard(c)
        summary.output_px += values.shape[1] * values.shape[2]
        summary.chunks_written += 1
        bar.update(1)

    def write_ready(key: tuple[int, int]) -> None:
        for c in neighbours(key, grid):
            if c not in todo_set:
                continue
            ns = neighbours(c, grid)
            chunk = tiles[c].chunk
            if all(n in buffer for n in ns):
                preds = [buffer[n][0] for n in ns]
                if c in partial:
                    bottom = blend_region((chunk[1] - band, chunk[1], chunk[2], chunk[3]), preds)
                    values = np.concatenate([partial.pop(c), bottom], axis=1)
                else:
                    values = blend_chunk(chunk, preds, band_px=band)
                finish(c, values)
            elif (c not in partial and band > 0 and c[0] + 1 < grid[0]
                  and 2 * band < min(chunk[1] - chunk[0], chunk[3] - chunk[2])
                  and all(n in buffer for n in ns if n[0] <= c[0])):
                partial[c] = blend_chunk_upper(chunk, [buffer[n][0] for n in ns if n[0] <= c[0]], band)
            else:
                continue
            for n in ns:
                trim(n)

    try:
        prefetch()
        submit()
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            work, actor, sources = in_flight.pop(ref)
            if id(actor) in load:  # not if the actor died and was replaced already
                load[id(actor)] -= 1
            try:
                outputs = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
                # 4. Faults: replace a dead actor, retry its tiles, give up after N attempts.
                work.attempts += 1
                work.errors.append(str(e).strip().splitlines()[-1][:300])
                summary.retries += 1
                if isinstance(e, ray.exceptions.RayActorError) and actor in actors:
                    from sarray.engine.pool import start_actor

                    replacement = start_actor(plan, config.replica_class, replica_cfg)
                    ray.get(replacement.ready.remote())
                    actors[actors.index(actor)] = replacement
                    load.pop(id(actor), None)
                    load[id(replacement)] = 0
                if work.attempts >= MAX_TILE_ATTEMPTS:
                    keys = ", ".join(str(t.key) for t in work.tiles)
                    raise ReplicaError(
                        f"scene {sid!r}, tile(s) {keys}: failed {work.attempts} times; last error: "
                        f"{work.errors[-1]}"
                    ) from None
                prefetched.appendleft((work, [reader.submit(read, t) for t in work.tiles]))
                submit()
                continue
            for tile, pred, src in zip(work.tiles, outputs, sources):
                hs, ws = (tile.src[1] - tile.src[0]) * s, (tile.src[3] - tile.src[2]) * s
                values = np.asarray(pred[:, :hs, :ws], dtype=np.float32)
                wy, wx = tile_ramps(tile, shape_out, spec)
                buffer[tile.key] = (Prediction(tile.out, values, wy, wx), src)
                tiles_done += 1
                write_ready(tile.key)
            bar.set_postfix(tiles_per_s=f"{tiles_done / (time.perf_counter() - t0):.2f}")
            submit()
    finally:
        bar.close()
        reader.shutdown(wait=True, cancel_futures=True)
        out.flush()  # every chunk written so far is whole: commit it, a rerun resumes after it
    summary.tiles = tiles_done
    summary.compute_s = time.perf_counter() - t0

    # 5. Finalise when every chunk is done: statistics, record, catalog.
    if not out.done_mask().all():
        summary.status = "partial"
        return summary
    stats = combine_stats(out.stats(), rec.polarisations, shape_out[0] * shape_out[1])
    digest = hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()
    record = SceneRecord(
        scene_id=out_id, sensor=rec.sensor, platform="synthetic",
        acquisition_time=rec.acquisition_time, bbox_lonlat=rec.bbox_lonlat,
        shape=(n_p, *shape_out), pixel_spacing_m=tuple(spacing) if spacing else None,
        polarisations=rec.polarisations, units=units, source_sha256=digest,
        extra={"provenance": provenance, "selection": {"output_of": sid, "out_scene": out_id}},
    )
    finalize_output(out, record, stats)
    return summary
