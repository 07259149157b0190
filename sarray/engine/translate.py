"""The translate engine: the driver only schedules; the cluster reads, translates, blends, writes.

Parts (STYLE section 9):

- the plan (:mod:`sarray.engine.plan`): every output chunk of every scene of the job, keyed
  ``(scene, row, col)``, the tiles they need, what is already done (resume), and the pure
  bookkeeping of which chunks are ready and which predictions can be dropped;
- the pool (:class:`sarray.engine.pool.ActorPool`): replica actors with two slots each
  (backpressure), restarted by Ray when they die;
- the work (:mod:`sarray.engine.work`): a replica reads its own tile windows from the archive
  and returns predictions as Ray objects; an assembly task blends a chunk from its neighbours'
  predictions (object refs, resolved on the worker), applies the consistency step, computes
  statistics and writes the chunk into a fork of the output's session;
- the output scene (:class:`sarray.stitch.writer.OutputScene`): the driver merges the forks
  and commits periodically, so resume stays per chunk and cheap.

The driver holds object refs and small acknowledgements, never pixels: its cost is a few Ray
calls per tile. Each output chunk is written exactly once, whole; tiles are seeded by
(scene, tile key, seed), so a resumed output equals an uninterrupted one exactly.
"""

from __future__ import annotations

import collections
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
    validate_scene_id,
)
from sarray.archive.store import Archive
from sarray.config import MAX_TILE_ATTEMPTS, PREFETCH_BATCHES_PER_REPLICA
from sarray.errors import ArchiveError, ConfigError, ReplicaError, SarrayError
from sarray.tiles.grid import SCALES, Tile, TileSpec

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
    writes: list[dict[str, Any]] = field(default_factory=list)  # one note per chunk written

    @property
    def mpx_per_s(self) -> float:
        return self.output_px / 1e6 / self.compute_s if self.compute_s > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.out_scene}: {self.status}; {self.tiles} tiles, {self.chunks_written}/"
            f"{self.chunks_total} chunks, {self.mpx_per_s:.2f} Mpx/s, {self.replicas} replica(s), "
            f"wall {self.wall_s:.1f} s, retries {self.retries}"
        )


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
        prepared = [_prepare_scene(arch, out_arch, sid, config, replica_cfg) for sid in scene_ids]
        jobs = [p for p in prepared if isinstance(p, _SceneJob)]
        if jobs:
            _run_job(arch, out_arch, jobs, config, replica_cfg, progress)
        summaries = [p if isinstance(p, TranslateSummary) else p.summary for p in prepared]
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


@dataclass
class _SceneJob:
    """One scene of the job as the driver tracks it."""

    plan: Any  # ScenePlan
    out: Any  # OutputScene
    summary: TranslateSummary
    rec: SceneRecord
    snapshot: str
    meta: dict[str, Any]
    units: str
    quantity: str
    shape_out: tuple[int, int]
    provenance: dict[str, Any]
    spacing: list[float] | None
    merged: int = 0
    t0: float = field(default_factory=time.perf_counter)


@dataclass
class _TileCall:
    """A batch of tiles on a replica."""

    keys: list[tuple[str, int, int]]
    actor: int
    preds: list[Any]
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


# Assembly tasks in flight per replica: enough to keep the blend/write workers busy while the
# replicas compute, few enough that predictions waiting in the object store stay bounded.
ASSEMBLIES_PER_REPLICA = 4


def _prepare_scene(arch: Archive, out_arch: Archive, sid: str, config: TranslateConfig,
                   replica_cfg: dict[str, Any]) -> _SceneJob | TranslateSummary:
    """1. The output scene (created, or reopened to resume) and the plan of what is left."""
    from sarray.archive.write import STAT_FIELDS
    from sarray.engine.plan import ScenePlan
    from sarray.stitch.writer import discard_output, georef_of, open_or_create_output, refine_georef
    from sarray.tiles.grid import chunk_grid

    spec = config.tile_spec()
    s = spec.scale
    out_id = config.out_scene_for(sid)
    rec = arch.record(sid)
    n_p, h_in, w_in = rec.shape
    grid = chunk_grid((h_in, w_in), spec)
    summary = TranslateSummary(source_scene=sid, out_scene=out_id, status="complete",
                               chunks_total=grid[0] * grid[1], replicas=config.replicas)
    if out_arch.has_scene(out_id):
        summary.status = "exists"
        return summary
    if config.on_unfinished == "restart":
        discard_output(out_arch, out_id)
    src_ds = arch.open_scene(sid)
    attrs = dict(src_ds.attrs)
    units, quantity = attrs["units"], attrs.get("quantity", "unknown")
    snapshot = src_ds.encoding["snapshot"]
    provenance = _provenance(sid, arch, config, replica_cfg, snapshot)
    georef = refine_georef(georef_of(src_ds), s)
    spacing = [v / s for v in rec.pixel_spacing_m] if rec.pixel_spacing_m else None
    out_attrs = {
        "scene_id": out_id, "sensor": rec.sensor, "platform": "synthetic",
        "pixel_spacing_m": spacing, "polarisations": list(rec.polarisations), "units": units,
        "quantity": quantity, "acquisition_time": rec.acquisition_time,
        "source_files": [f"{arch.url}::{sid}"], "georeferencing": georef.kind,
        "calibration": attrs.get("calibration", "none"), "sarray_version": __version__,
    }
    out = open_or_create_output(
        out_arch, out_id, shape=(n_p, h_in * s, w_in * s), pols=rec.polarisations, georef=georef,
        chunk_px=spec.chunk_px, grid=grid, attrs=out_attrs, provenance=provenance,
        n_stats=len(STAT_FIELDS))
    plan = ScenePlan.build(scene_id=sid, out_id=out_id, shape_in=(h_in, w_in), spec=spec,
                           done=out.done_mask(), max_chunks=config.max_chunks)
    return _SceneJob(plan=plan, out=out, summary=summary, rec=rec, snapshot=snapshot,
                     meta=replica_meta(attrs), units=units, quantity=quantity,
                     shape_out=(h_in * s, w_in * s), provenance=provenance, spacing=spacing)


def _run_job(arch: Archive, out_arch: Archive, jobs: list[_SceneJob], config: TranslateConfig,
             replica_cfg: dict[str, Any], progress: bool) -> None:
    """2-4. Stream every scene's tiles through one pool; assemble and write on the workers."""
    import ray
    from tqdm.auto import tqdm

    from sarray.engine.plan import Assembler, tile_order
    from sarray.engine.pool import ActorPool, assemble_remote, plan_pool, start_actor
    from sarray.engine.work import ChunkJob

    spec = config.tile_spec()
    by_scene = {j.plan.scene_id: j for j in jobs}
    assembler = Assembler([j.plan for j in jobs])
    # 2. The pool: started (models loaded) before the first tile.
    plan = plan_pool(config.replicas, config.device)
    pool = ActorPool([start_actor(plan, config.replica_class, replica_cfg)
                      for _ in range(plan.replicas)], slots=PREFETCH_BATCHES_PER_REPLICA)
    ray.get([a.ready.remote() for a in pool.actors])
    assemble = assemble_remote()
    queue = collections.deque(_batches(tile_order([j.plan for j in jobs]), config.batch_size))
    tile_calls: dict[Any, _TileCall] = {}
    chunk_calls: dict[Any, _SceneJob] = {}
    max_assembling = ASSEMBLIES_PER_REPLICA * len(pool.actors)
    bar = tqdm(total=sum(len(j.plan.todo) for j in jobs), desc=f"translate x{spec.scale}",
               unit="chunk", file=sys.stderr, disable=not progress, dynamic_ncols=True)

    def submit(keys: list[tuple[str, int, int]], attempts: int = 0, errors: list[str] | None = None) -> None:
        job = by_scene[keys[0][0]]
        tiles = [job.plan.tiles[k[1:]] for k in keys]
        i = pool.pick()
        refs = pool.submit(i, arch.url, job.plan.scene_id, job.snapshot, tiles, job.meta,
                           spec.scale, returns=1 + len(tiles))
        tile_calls[refs[0]] = _TileCall(keys=keys, actor=i, preds=refs[1:], attempts=attempts,
                                        errors=errors or [])

    def tiles_back(ack: Any, call: _TileCall) -> None:
        pool.release(call.actor)
        try:
            ray.get(ack)
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, SarrayError):  # bad input (a damaged chunk...): no retry
                raise cause from None
            call.errors.append(str(cause or e).strip().splitlines()[-1][:300])
            by_scene[call.keys[0][0]].summary.retries += 1
            if call.attempts + 1 >= MAX_TILE_ATTEMPTS:
                keys = ", ".join(str(k[1:]) for k in call.keys)
                raise ReplicaError(
                    f"scene {call.keys[0][0]!r}, tile(s) {keys}: failed {call.attempts + 1} times; "
                    f"last error: {call.errors[-1]}") from None
            queue.appendleft(call.keys)
            retry[tuple(call.keys)] = (call.attempts + 1, call.errors)
            return
        for key, pred in zip(call.keys, call.preds):
            job = by_scene[key[0]]
            job.summary.tiles += 1
            for (sid, i, j), preds in assembler.add(key, pred):
                tiles = tuple(job.plan.tiles[n] for n in job.plan.neighbours((i, j)))
                cj = ChunkJob(archive_url=arch.url, scene_id=sid, snapshot=job.snapshot,
                              out_id=job.plan.out_id, key=(i, j), chunk=job.plan.tiles[(i, j)].chunk,
                              tiles=tiles, shape_out=job.shape_out, spec=spec,
                              consistency=config.consistency, units=job.units, quantity=job.quantity)
                chunk_calls[assemble.remote(cj, job.out.fork(), *preds)] = job

    def chunk_back(ref: Any, job: _SceneJob) -> None:
        try:
            fork, note = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            raise (cause if isinstance(cause, SarrayError) else ReplicaError(
                f"scene {job.plan.scene_id!r}: a chunk could not be assembled: "
                f"{str(cause or e).strip().splitlines()[-1][:300]}")) from None
        job.out.merge(fork)
        job.merged += 1
        job.summary.chunks_written += 1
        job.summary.output_px += note["shape"][1] * note["shape"][2]
        job.summary.writes.append(note)
        bar.update(1)
        if job.merged == len(job.plan.todo):
            _finish_scene(job)

    # 3. Stream: keep every replica's slots full, assemble chunks as their neighbours return.
    retry: dict[tuple[Any, ...], tuple[int, list[str]]] = {}
    try:
        for j in jobs:
            if not j.plan.todo:
                _finish_scene(j)
        while queue or tile_calls or chunk_calls:
            while queue and pool.has_slot() and len(chunk_calls) < max_assembling:
                keys = queue.popleft()
                submit(keys, *retry.pop(tuple(keys), (0, [])))
            ready, _ = ray.wait([*tile_calls, *chunk_calls], num_returns=1, fetch_local=False)
            ref = ready[0]
            if ref in tile_calls:
                tiles_back(ref, tile_calls.pop(ref))
            else:
                chunk_back(ref, chunk_calls.pop(ref))
    finally:
        bar.close()
        pool.shutdown()
        for j in jobs:
            j.out.flush()  # every chunk merged so far is whole: commit it, a rerun resumes after it


def _batches(keys: Any, size: int) -> Any:
    """Consecutive keys of one scene, ``size`` at a time."""
    batch: list[tuple[str, int, int]] = []
    for k in keys:
        if batch and (len(batch) == size or batch[0][0] != k[0]):
            yield batch
            batch = []
        batch.append(k)
    if batch:
        yield batch


def _finish_scene(job: _SceneJob) -> None:
    """4. When every chunk is done: statistics, record, catalog (else the run is partial)."""
    from sarray.archive.write import combine_stats

    job.summary.compute_s = time.perf_counter() - job.t0
    job.out.flush()
    if not job.out.done_mask().all():
        job.summary.status = "partial"
        return
    rec, out_id = job.rec, job.plan.out_id
    stats = combine_stats(job.out.stats(), rec.polarisations, job.shape_out[0] * job.shape_out[1])
    digest = hashlib.sha256(json.dumps(job.provenance, sort_keys=True).encode()).hexdigest()
    record = SceneRecord(
        scene_id=out_id, sensor=rec.sensor, platform="synthetic",
        acquisition_time=rec.acquisition_time, bbox_lonlat=rec.bbox_lonlat,
        shape=(rec.shape[0], *job.shape_out),
        pixel_spacing_m=tuple(job.spacing) if job.spacing else None,  # type: ignore[arg-type]
        polarisations=rec.polarisations, units=job.units, source_sha256=digest,
        extra={"provenance": job.provenance,
               "selection": {"output_of": job.plan.scene_id, "out_scene": out_id}},
    )
    from sarray.stitch.writer import finalize_output

    finalize_output(job.out, record, stats)
