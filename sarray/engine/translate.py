"""The translate engine: the driver only schedules; the cluster reads, translates, blends, writes.

Parts (STYLE section 9):

- the plan (:mod:`sarray.engine.plan`): every output chunk of every scene of the job, keyed
  ``(scene, row, col)``, the tiles they need, what is already done (resume), and the pure
  bookkeeping of which chunks are ready and which predictions can be dropped;
- the pools (:mod:`sarray.engine.pool`): replica actors with two slots each (backpressure) and
  assembler actors, restarted by Ray when they die;
- the work (:mod:`sarray.engine.work`): a replica reads its own tile windows from the archive
  and returns predictions as Ray objects; an assembler blends chunks from their neighbours'
  predictions (object refs, resolved on the worker), applies the consistency step, computes
  statistics and writes the chunks into a fork of the output's session;
- the output side (:class:`sarray.engine.output.OutputWriter`, one actor per job): it creates
  the outputs, merges the forks and commits periodically, so resume stays per chunk and cheap;
- the dispatcher (:class:`sarray.engine.dispatch.Dispatcher`): the driver's loop over refs.

The driver holds object refs and small acknowledgements, never pixels: its cost is a few Ray
calls per tile. Each output chunk is written exactly once, whole; tiles are seeded by
(scene, tile key, seed), so a resumed output equals an uninterrupted one exactly.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sarray import __version__
from sarray.archive.store import Archive
from sarray.config import CHUNKS_IN_FLIGHT_PER_REPLICA, PREFETCH_BATCHES_PER_REPLICA
from sarray.engine.dispatch import Dispatcher, get
from sarray.engine.plan import Assembler
from sarray.engine.pool import (
    ASSEMBLY_GROUP,
    ActorPool,
    AssemblerPool,
    assembler_nodes,
    assembles_in_replicas,
    plan_pool,
    replica_nodes,
    start_actor,
    start_writer,
)
from sarray.engine.config import CONSISTENCY, DEVICES, ON_UNFINISHED, TranslateConfig  # noqa: F401  (re-exported)
from sarray.errors import ArchiveError, ConfigError

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
    model_spans: list[tuple[Any, ...]] = field(default_factory=list)  # (pid, node, start, end)

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
                  out_arch: Archive) -> dict[str, Any]:
    """Everything that can be checked before Ray starts; returns the scenes' records."""
    if not scene_ids:
        raise ConfigError("`scenes` is empty: name at least one scene (see `sarray ls`)")
    if config.out_scene is not None and len(scene_ids) > 1:
        raise ConfigError("`out_scene` names one output but several scenes were given")
    recs = arch.records(scene_ids)  # SceneNotFoundError names the archive and the fix
    for sid in scene_ids:
        rec = recs[sid]
        if config.scale == 1 and rec.platform != "simulated":
            raise ConfigError(
                f"`scale` (1) keeps the spacing: it is for simulated-to-real on platform "
                f"'simulated' scenes, and {sid!r} is {rec.platform!r}; use --scale 2 or more"
            )
        if rec.shape[1] < 1 or rec.shape[2] < 1:
            raise ArchiveError(f"scene {sid!r}: empty")
    out_arch.check_writable_target()
    return recs


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
    t_start = time.perf_counter()
    arch = Archive(archive).require()
    out_arch = Archive(out_archive) if out_archive is not None else arch
    recs = _check_scenes(arch, scene_ids, config, out_arch)
    if (cog or quicklook) and len(scene_ids) > 1:
        raise ConfigError("--cog/--quicklook take one scene; translate scenes one at a time")
    _check_exports(cog, quicklook)
    replica_cfg = config.replica_config()
    if config.output == "speckled":  # an unknown or unreadable set: one line, before Ray
        from sarray.stitch.speckle import load_speckle

        load_speckle(replica_cfg.get("weights"), config.speckle)
    outs = [config.out_scene_for(sid) for sid in scene_ids]
    if out_arch.have_scenes(outs) == set(outs):
        # Nothing to compute: no Ray, no model; exports still happen below.
        summaries = [TranslateSummary(source_scene=sid, out_scene=config.out_scene_for(sid),
                                      status="exists") for sid in scene_ids]
        return _export(arch, out_arch, scene_ids, summaries, cog, quicklook, t_start)

    # 1. Ray: an existing cluster (RAY_ADDRESS) or a local one started for the job.
    from sarray.raysession import connected

    with connected():
        summaries = _run_job(arch, out_arch, scene_ids, config, replica_cfg, progress, recs)

    return _export(arch, out_arch, scene_ids, summaries, cog, quicklook, t_start)


def _check_exports(cog: str | Path | None, quicklook: str | Path | None) -> None:
    """The export paths' suffixes, and an ``s3://`` one's bucket and endpoint: before the job,
    not after it."""
    from sarray.archive.export import check_suffix
    from sarray.archive.location import is_s3_url, s3_destination

    for what, dest, suffixes in (("--cog", cog, (".tif", ".tiff")), ("--quicklook", quicklook, (".png",))):
        if dest is None:
            continue
        check_suffix(dest, suffixes, what)
        if is_s3_url(dest):
            s3_destination(os.fspath(dest), what=what)


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


def _provenance(arch: Archive, config: TranslateConfig, replica_cfg: dict[str, Any]) -> dict[str, Any]:
    """What every output of the job records (each adds its source scene and snapshot)."""
    return {
        "source_archive": arch.url,
        "model": config.model,
        "preset": replica_cfg.get("preset"),
        "weights": replica_cfg.get("weights"),
        "seed": config.seed,
        "scale": config.scale,
        "chunk_px": config.chunk_px,
        "halo_px": config.halo_px,
        "consistency": config.consistency,
        "output": config.output,
        "speckle": config.speckle,
        "num_inference_steps": config.num_inference_steps,
        "replica_class": config.replica_class,
        "sarray_version": __version__,
    }


# Chunks per assembly task: neighbours along a row share predictions, so a task of 4 chunks
# moves 18 predictions instead of 36, and the driver makes a quarter of the calls.
CHUNKS_PER_ASSEMBLY = 4


class SceneIntake:
    """The job's scenes as the dispatcher plans them (its ``intake``, see
    :class:`~sarray.engine.dispatch.Dispatcher`): each scene's plan is asked of the writer
    (:meth:`~sarray.engine.output.OutputWriter.prepare`) when the queue runs short, and admitted
    with its summary and its info in the object store.

    Args:
        writer_of: the writer actor of a scene id.
        scenes: the scene ids still to plan, in the job's order.
        replicas: the job's replica count (for the summaries).
        planned: called with the chunks a scene admitted had done before the job (the progress
            bar counts every chunk of the job).
    """

    def __init__(self, writer_of: Any, scenes: list[str], *, replicas: int, planned: Any) -> None:
        self.writer_of, self.scenes, self.replicas, self.planned = writer_of, list(scenes), replicas, planned

    def submit(self, sid: str) -> Any:
        return self.writer_of(sid).prepare.remote(sid)

    def admit(self, p: Any) -> tuple[str, TranslateSummary, Any, Any]:
        import ray

        summary = TranslateSummary(source_scene=p.scene_id, out_scene=p.out_id,
                                   chunks_total=p.chunks_total, replicas=self.replicas,
                                   status="exists" if p.info is None else "complete")
        self.planned(p.chunks_total - (len(p.info.plan.todo) if p.info is not None else 0))
        box = [ray.put(p.info)] if p.info is not None else None  # fetched once per worker
        return p.out_id, summary, p.info, box


def _run_job(arch: Archive, out_arch: Archive, scene_ids: list[str], config: TranslateConfig,
             replica_cfg: dict[str, Any], progress: bool,
             recs: dict[str, Any]) -> list[TranslateSummary]:
    """Plan the scenes (``recs``: their catalog records) as the job goes, stream their tiles through one pool, assemble and write
    on workers."""
    import ray
    from tqdm.auto import tqdm

    from sarray.tiles.grid import chunk_grid

    # 1. The job's output writer plans the first scene (output created, or reopened to resume);
    # 2. the pool starts meanwhile: its processes load the models while the writer plans. The
    # other scenes are planned as the job goes (SceneIntake), never all before the first tile.
    # With several writers, the scenes are dealt among them in turn.
    writers = [start_writer(arch.url, out_arch.url, config.to_dict(), _provenance(arch, config, replica_cfg))
               for _ in range(config.writers)]
    shard = {sid: writers[i % len(writers)] for i, sid in enumerate(scene_ids)}
    by_out = {config.out_scene_for(sid): w for sid, w in shard.items()}
    rest = list(scene_ids)
    first_plan = shard[rest[0]].prepare.remote(rest.pop(0))
    pool = assemblers = None
    try:
        plan = plan_pool(config.replicas, config.device)
        # GPU replicas packed onto nodes, and their assemblers beside them (one per few GPUs
        # of each node): assembly reads its predictions from its own node's object store.
        nodes = replica_nodes(plan)
        pool = ActorPool([start_actor(plan, config.replica_class, replica_cfg, node)
                          for node in nodes], slots=PREFETCH_BATCHES_PER_REPLICA)
        if assembles_in_replicas(plan):
            assemblers = AssemblerPool(plan.replicas, actors=pool.actors, group=ASSEMBLY_GROUP)
        else:
            asm_nodes = assembler_nodes(plan, nodes)
            assemblers = AssemblerPool(len(asm_nodes), nodes=asm_nodes)
        spec = config.tile_spec()
        grids = [chunk_grid(recs[sid].shape[1:], spec) for sid in scene_ids]
        bar = tqdm(total=sum(g[0] * g[1] for g in grids), unit="chunk",
                   desc=f"translate x{config.scale}", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        try:
            intake = SceneIntake(shard.__getitem__, [], replicas=config.replicas, planned=bar.update)
            # The scenes up to the first with chunks to do (a resumed job skips those done).
            summaries: dict[str, TranslateSummary] = {}
            infos: dict[str, Any] = {}
            boxes: dict[str, Any] = {}
            while True:
                out_id, summaries[out_id], info, box = intake.admit(get(first_plan))
                if info is not None:
                    infos[out_id], boxes[out_id] = info, box
                if info is not None or not rest:
                    break
                first_plan = intake.submit(rest.pop(0))
            intake.scenes = rest
            # Every model loaded before the first tile; meanwhile every worker opens the first
            # scene (queued behind __init__).
            first = list(boxes.values())
            asm_ready = assemblers.ready()
            get([a.ready.remote() for a in pool.actors] + asm_ready
                + [a.warm.remote(b) for a in pool.actors for b in first]
                + [ref for b in first for ref in assemblers.warm(b)])
            assemblers.learn_nodes(get(asm_ready))
            # 3. Stream every scene through the pool, the assembly tasks and the writer.
            from sarray.engine.metrics import SUMMARY_EVERY_S, JobMetrics

            metrics = JobMetrics(job_id=ray.get_runtime_context().get_job_id(),
                                 scenes={o: i.scene_id for o, i in infos.items()},
                                 replicas=plan.replicas,
                                 summary_every_s=float(os.environ.get("SARRAY_SUMMARY_EVERY_S",
                                                                     SUMMARY_EVERY_S)))
            Dispatcher(
                pool=pool, writer=writers[0], writer_of=by_out.__getitem__, assemble=assemblers, infos=infos,
                boxes=boxes,
                assembler=Assembler([i.plan for i in infos.values()], per_task=CHUNKS_PER_ASSEMBLY,
                                    key_of=lambda p: p.out_id),
                summaries=summaries, batch_size=config.batch_size, progress=bar.update,
                max_batch_size=config.call_size_limit(),
                max_chunks_in_flight=CHUNKS_IN_FLIGHT_PER_REPLICA * plan.replicas, metrics=metrics,
                intake=intake,
            ).run()
        finally:
            bar.close()
            # 4. Every chunk merged so far is whole: commit it, so a rerun resumes after it.
            get([w.flush_all.remote() for w in writers])
    finally:
        if pool is not None:
            pool.shutdown()
        if assemblers is not None:
            assemblers.shutdown()
        for w in writers:
            ray.kill(w)
    return [summaries[config.out_scene_for(sid)] for sid in scene_ids]
