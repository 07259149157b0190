"""The output side of a job: one place that owns the output scenes' sessions.

An :class:`OutputWriter` runs as one small Ray actor per job (no CPU slot, no pixels): it
creates or reopens each output scene and plans what is left (:meth:`prepare`), hands out forks
of the clean session (:meth:`fork`), merges the forks that assembly tasks return and commits them
periodically (:meth:`merge`), and finalises a scene when its last chunk is in (:meth:`finish`).
Assembly tasks pass their forks to it directly as object refs, so neither the forks nor the
archive's metadata work go through the driver.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

from sarray import __version__
from sarray.archive.layout import SceneRecord
from sarray.archive.store import Archive
from sarray.engine.config import TranslateConfig
from sarray.engine.plan import ScenePlan
from sarray.tiles.grid import TileSpec


@dataclass(frozen=True, kw_only=True)
class SceneInfo:
    """What every worker of a job needs to know about one scene (no pixels); put in the object
    store once per scene and passed by reference.

    Args:
        archive_url: the input archive; ``scene_id`` and ``snapshot`` what is read, and
            ``location`` the scene's repository folder in it (workers read the pixels without
            looking the scene up in the catalog; empty: they look it up).
        out_id: the output scene.
        plan: the scene's plan (tiles, chunks to write).
        shape_out: (y, x) of the output grid.
        spec: the tile geometry.
        consistency: ``multilook`` or ``off``.
        units, quantity: of the scene's values.
        meta: the scene attributes the replicas read.
        output: ``speckled`` or ``reflectivity``; ``speckle`` the statistics (a
            :class:`~sarray.stitch.speckle.SpeckleModel` as a dict) and ``seed`` its seed.
        job: a token unique to this job (workers key what they cache across calls by it).
    """

    archive_url: str
    scene_id: str
    snapshot: str
    out_id: str
    plan: ScenePlan
    shape_out: tuple[int, int]
    spec: TileSpec
    consistency: str
    units: str
    quantity: str
    meta: dict[str, Any]
    output: str = "reflectivity"
    speckle: dict[str, Any] | None = None
    seed: int = 0
    job: str = ""
    location: str = ""


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """:meth:`OutputWriter.prepare`'s answer: the scene's info, or ``exists``."""

    scene_id: str
    out_id: str
    chunks_total: int
    info: SceneInfo | None  # None when the output is already catalogued


# The scene attributes a replica reads (see sarray.models.replica).
REPLICA_META_KEYS = ("units", "quantity", "polarisations", "pixel_spacing_m", "sensor",
                     "platform", "statistics")


def replica_meta(attrs: dict[str, Any]) -> dict[str, Any]:
    """The part of a scene's attributes sent to the replicas."""
    return {k: attrs[k] for k in REPLICA_META_KEYS if k in attrs}


class OutputWriter:
    """Creates, merges, commits and finalises the output scenes of one job (see module doc).

    Args:
        archive_url: the input archive.
        out_url: the output archive.
        config: the job's :class:`~sarray.engine.config.TranslateConfig` as a dict.
        provenance_base: the provenance fields shared by every scene of the job.
    """

    def __init__(self, archive_url: str, out_url: str, config: dict[str, Any],
                 provenance_base: dict[str, Any]) -> None:
        self.arch = Archive(archive_url)
        self.out_arch = Archive(out_url)
        self.config = TranslateConfig.from_dict(config)
        self.provenance_base = provenance_base
        self.job = uuid.uuid4().hex
        self.pid = os.getpid()
        self.outputs: dict[str, Any] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self._speckle: dict[str | None, dict[str, Any]] = {}
        if self.config.output == "speckled":
            self.speckle_for(None)  # an unknown or unreadable set fails the job before any scene

    def speckle_for(self, sensor: str | None) -> dict[str, Any] | None:
        """The speckle statistics (as a dict) a scene of ``sensor`` is synthesised with: the
        job's ``speckle`` set, or unset, the sensor's own set when the model stores one, else
        the model's default (:func:`sarray.stitch.speckle.speckle_name`); None: not speckled."""
        if self.config.output != "speckled":
            return None
        from sarray.stitch.speckle import load_speckle, speckle_name

        weights = self.config.replica_config().get("weights")
        name = speckle_name(weights, self.config.speckle, sensor)
        if name not in self._speckle:
            self._speckle[name] = {"set": name, **load_speckle(weights, name).to_dict()}
        return self._speckle[name]

    def prepare(self, sid: str) -> Prepared:
        """Create (or reopen, to resume) the output of ``sid`` and plan what is left."""
        from sarray.archive.write import STAT_FIELDS
        from sarray.stitch.writer import (
            discard_output,
            georef_of,
            open_or_create_output,
            refine_georef,
        )
        from sarray.tiles.grid import chunk_grid

        config = self.config
        spec = config.tile_spec()
        s = spec.scale
        out_id = config.out_scene_for(sid)
        rec = self.arch.record(sid)
        n_p, h_in, w_in = rec.shape
        grid = chunk_grid((h_in, w_in), spec)
        if self.out_arch.has_scene(out_id):
            return Prepared(scene_id=sid, out_id=out_id, chunks_total=grid[0] * grid[1], info=None)
        if config.on_unfinished == "restart":
            discard_output(self.out_arch, out_id)
        src_ds = self.arch.open_scene(sid)
        attrs = dict(src_ds.attrs)
        units, quantity = attrs["units"], attrs.get("quantity", "unknown")
        snapshot = src_ds.encoding["snapshot"]
        provenance = {**self.provenance_base, "source_scene": sid, "source_snapshot": snapshot}
        speckle = self.speckle_for(rec.sensor)
        if speckle is not None:
            provenance["speckle"] = {k: v for k, v in speckle.items()
                                     if k not in ("log_table", "level_tables")}
        georef = refine_georef(georef_of(src_ds), s)
        spacing = [v / s for v in rec.pixel_spacing_m] if rec.pixel_spacing_m else None
        out_attrs = {
            "scene_id": out_id, "sensor": rec.sensor, "platform": "synthetic",
            "pixel_spacing_m": spacing, "polarisations": list(rec.polarisations), "units": units,
            "quantity": quantity, "acquisition_time": rec.acquisition_time,
            "source_files": [f"{self.arch.url}::{sid}"], "georeferencing": georef.kind,
            "calibration": attrs.get("calibration", "none"), "sarray_version": __version__,
        }
        out = open_or_create_output(
            self.out_arch, out_id, shape=(n_p, h_in * s, w_in * s), pols=rec.polarisations,
            georef=georef, chunk_px=spec.chunk_px, grid=grid, attrs=out_attrs,
            provenance=provenance, n_stats=len(STAT_FIELDS))
        plan = ScenePlan.build(scene_id=sid, out_id=out_id, shape_in=(h_in, w_in), spec=spec,
                               done=out.done_mask(), max_chunks=config.max_chunks)
        self.outputs[out_id] = out
        self.jobs[out_id] = {"rec": rec, "provenance": provenance, "spacing": spacing,
                             "shape_out": (h_in * s, w_in * s), "units": units}
        info = SceneInfo(archive_url=self.arch.url, scene_id=sid, snapshot=snapshot, out_id=out_id,
                         plan=plan, shape_out=(h_in * s, w_in * s), spec=spec,
                         consistency=config.consistency, units=units, quantity=quantity,
                         meta=replica_meta(attrs), output=config.output, speckle=speckle,
                         seed=config.seed, job=self.job, location=self.arch.scene_location(sid))
        return Prepared(scene_id=sid, out_id=out_id, chunks_total=grid[0] * grid[1], info=info)

    def fork(self, out_id: str) -> Any:
        """A fork of the output's clean session (at its last commit); the driver asks for one
        per commit and passes it by reference to every assembler."""
        return self.outputs[out_id].fork()

    def merge(self, out_id: str, assembled: tuple[Any, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Merge one assembly task's fork; returns its chunks' notes (``committed`` is True
        when this merge triggered a commit, after which :meth:`fork` gives a new fork)."""
        fork, notes = assembled
        out = self.outputs[out_id]
        before = out.commits
        out.merge(fork, chunks=len(notes))
        return [{**n, "committed": out.commits != before, "merged_by": self.pid} for n in notes]

    def merge_many(self, out_id: str, *assembled: tuple[Any, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """:meth:`merge` of several assembly tasks' results (passed as refs, resolved by Ray)."""
        return [n for a in assembled for n in self.merge(out_id, a)]

    def finish(self, out_id: str) -> str:
        """Commit what is left; finalise the scene if every chunk is done.

        Returns:
            ``complete`` or ``partial``.
        """
        from sarray.archive.write import combine_stats
        from sarray.stitch.writer import finalize_output

        out = self.outputs[out_id]
        out.flush()
        if not out.done_mask().all():
            return "partial"
        job = self.jobs[out_id]
        rec = job["rec"]
        stats = combine_stats(out.stats(), rec.polarisations, job["shape_out"][0] * job["shape_out"][1])
        digest = hashlib.sha256(json.dumps(job["provenance"], sort_keys=True).encode()).hexdigest()
        record = SceneRecord(
            scene_id=out_id, sensor=rec.sensor, platform="synthetic",
            acquisition_time=rec.acquisition_time, bbox_lonlat=rec.bbox_lonlat,
            shape=(rec.shape[0], *job["shape_out"]),
            pixel_spacing_m=tuple(job["spacing"]) if job["spacing"] else None,  # type: ignore[arg-type]
            polarisations=rec.polarisations, units=job["units"], source_sha256=digest,
            extra={"provenance": job["provenance"],
                   "selection": {"output_of": rec.scene_id, "out_scene": out_id}},
        )
        finalize_output(out, record, stats)
        # Done with it: a job of 10^4 scenes holds the sessions of the scenes in flight only.
        del self.outputs[out_id], self.jobs[out_id]
        return "complete"

    def flush_all(self) -> None:
        """Commit every chunk merged so far (on the way out of a failed or stopped job)."""
        for out in self.outputs.values():
            out.flush()
