"""Ingest files into an archive: validate everything, stage every scene, then commit each.

All-or-nothing per call: every input is validated and fully staged (written, checked for
all-NaN bands) before the first commit, so a bad file among many leaves the archive as it was.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sarray import __version__
from sarray.archive.layout import (
    ATTR_BBOX,
    ATTR_CALIBRATION,
    ATTR_CHECKSUM,
    ATTR_GEOREF,
    ATTR_PLATFORM,
    ATTR_POLS,
    ATTR_QUANTITY,
    ATTR_SARRAY_VERSION,
    ATTR_SCENE_ID,
    ATTR_SENSOR,
    ATTR_SOURCE,
    ATTR_SPACING_M,
    ATTR_STATS,
    ATTR_TIME,
    ATTR_UNITS,
    SceneRecord,
)
from sarray.archive.store import ATTR_RECORD, Archive
from sarray.archive.write import combine_stats, stage_scene_graph
from sarray.errors import ArchiveError, ConfigError, IngestError
from sarray.ingest.config import IngestConfig
from sarray.ingest.source import (
    S3Path,
    SceneSource,
    bbox_from_gcps,
    bbox_from_transform,
    input_path,
    sha256_files,
)


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    """What happened to one scene: ``added`` or ``exists`` (already in the archive)."""

    scene_id: str
    status: str
    shape: tuple[int, int, int]
    units: str
    source_files: tuple[str, ...]
    requested_id: str | None = None  # set when the source is already listed under another id
    staged_on: tuple[str, ...] = ()  # Ray node ids that staged it (cluster ingest only)

    def line(self) -> str:
        """What `sarray ingest` prints for this scene."""
        shape = "x".join(map(str, self.shape))
        text = f"{self.status:6s} {self.scene_id}  {shape}  {self.units}"
        if self.requested_id and self.requested_id != self.scene_id:
            text += f"  (same source as requested id {self.requested_id}; not added again)"
        if self.staged_on:
            text += f"  staged on {','.join(n[:12] for n in self.staged_on)}"
        return text


def is_safe(path: str | Path) -> bool:
    """A Sentinel-1 SAFE product: a ``*.SAFE`` folder, its ``manifest.safe``, or its zip
    (``*.SAFE.zip``, or a local zip that holds a ``manifest.safe``)."""
    from sarray.ingest.product import is_safe_name

    return is_safe_name(str(path)) or (not str(path).startswith("s3://") and _zip_of_safe(Path(path)))


def open_sources(paths: list[str | Path], config: IngestConfig) -> list[SceneSource]:
    """Validate the inputs and describe the scenes they make. Touches no archive."""
    from sarray.ingest.geotiff import open_geotiffs
    from sarray.ingest.nisar import is_hdf5

    if not paths:
        raise ConfigError("`paths` is empty: give at least one file to ingest")
    safes: list[str] = []
    nisars: list[str] = []
    rasters: list[Path] = []
    for p in paths:
        text, remote = str(p), str(p).startswith("s3://")
        if is_safe(text):
            safes.append(text)
            continue
        if not remote:
            _refuse_zip(Path(text))
        if is_hdf5(text):
            nisars.append(text)
        else:
            rasters.append(input_path(text))
    if config.grouping == "stack" and (safes or nisars):
        raise ConfigError("`grouping`=stack applies to GeoTIFFs; a SAFE or NISAR product stacks "
                          "its own polarisations")
    sources: list[SceneSource] = []
    if safes:
        from sarray.ingest.safe import open_safe

        sources += [open_safe(p, config) for p in safes]
    if nisars:
        from sarray.ingest.nisar import open_nisar

        sources += [open_nisar(p, config) for p in nisars]
    if rasters:
        sources += open_geotiffs(rasters, config)
    if config.scene_id is not None and len(sources) > 1:
        raise ConfigError(
            f"`scene_id` ({config.scene_id}) names one scene but the inputs make {len(sources)}; "
            "drop --scene-id, or use --stack to make one scene of all files"
        )
    ids = [s.scene_id for s in sources]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"inputs map to the same scene id {dupes[0]!r}: ingest them separately "
                          "with --scene-id, or as one scene with --stack")
    return sources


def _zip_of_safe(path: Path) -> bool:
    """A local zip archive that holds a SAFE product's ``manifest.safe``."""
    import zipfile

    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("manifest.safe") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _refuse_zip(path: Path) -> None:
    """A zip archive that is not a SAFE product is refused with the command that unpacks it
    (a zipped SAFE is read in place: see :mod:`sarray.ingest.product`)."""
    import zipfile

    if path.is_file() and zipfile.is_zipfile(path):
        raise IngestError(f"{path}: a zip archive that holds no SAFE product; unzip it first "
                          f"(unzip {path.name}) and ingest the files it holds")


def selection_of(config: IngestConfig) -> dict[str, Any]:
    """The config fields that change which pixels a source gives. Together with the source
    checksum they decide whether an ingest is a repeat (a no-op) or a new scene."""
    d = config.to_dict()
    sel = {k: d[k] for k in ("window", "swath", "burst", "calibration", "units", "pols")}
    # Newer fields only when set, so that scenes ingested before them still match a repeat.
    sel.update({k: d[k] for k in ("frequency", "crs") if d[k] not in (None, "A")})
    return json.loads(json.dumps(sel))  # the form it takes once stored in the catalog


def _record(src: SceneSource, checksum: str, shape: tuple[int, int, int],
            selection: dict[str, Any]) -> SceneRecord:
    g = src.georef
    if g.transform is not None:
        bbox = bbox_from_transform(g.transform, g.crs_wkt, shape[1:])
    elif g.gcps:
        bbox = bbox_from_gcps(g.gcps, g.crs_wkt, shape[1:])
    else:
        bbox = None
    return SceneRecord(
        scene_id=src.scene_id,
        sensor=src.sensor,
        platform=src.platform,
        acquisition_time=src.acquisition_time,
        bbox_lonlat=bbox,
        shape=shape,
        pixel_spacing_m=src.spacing_m,
        polarisations=src.pols,
        units=src.units,
        source_sha256=checksum,
        extra={"selection": selection},
    )


def ingest(
    paths: list[str | Path],
    archive: str | Path,
    config: IngestConfig | None = None,
    *,
    progress: bool = False,
    on_ray: bool = False,
) -> list[IngestResult]:
    """Ingest raster files or SAFE products into an archive.

    Args:
        paths: inputs (GeoTIFF/COG/any GDAL raster, ``*.SAFE`` folders, NISAR HDF5 files).
        archive: the archive path (created on the first commit).
        config: how to read and label the inputs.
        progress: show a progress bar on stderr.
        on_ray: stage the scenes as Ray tasks across the cluster (``RAY_ADDRESS``, or a local
            Ray started for the call); the commits stay here, all or nothing as without Ray.

    Returns:
        One :class:`IngestResult` per scene.

    Raises:
        IngestError: a bad input, naming the file; the archive is left unchanged.
    """
    from rasterio.env import get_gdal_config, set_gdal_config

    from sarray.config import GDAL_CACHE_MB

    previous_cache = get_gdal_config("GDAL_CACHEMAX")
    set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_MB)
    try:
        return _ingest(paths, archive, config or IngestConfig(), progress, on_ray)
    finally:
        with contextlib.suppress(Exception):
            set_gdal_config("GDAL_CACHEMAX", previous_cache)


def _ingest(paths: list[str | Path], archive: str | Path, config: IngestConfig,
            progress: bool, on_ray: bool) -> list[IngestResult]:
    arch = Archive(archive)
    arch.check_writable_target()

    # 1. Validate every input and describe its scene (headers only).
    sources = open_sources(list(paths), config)

    # 2. Scenes already listed: decide now, from the checksum, without staging.
    arch.recover()  # finish any commit a crash interrupted, drop abandoned writes
    catalog = arch.catalog_repo() if arch.exists() else None
    selection = selection_of(config)
    results: list[IngestResult] = []
    todo: list[tuple[SceneSource, Any]] = []
    pool = cf.ThreadPoolExecutor(max_workers=1)  # hashes overlap with the pixel work
    try:
        listed = catalog.lookup_many([s.scene_id for s in sources]) if catalog is not None else {}
        for src in sources:
            files = [input_path(f) for f in src.source_files]
            hit = listed.get(src.scene_id)
            if hit is None:
                # The same source under another id is found by the catalog's insert at commit
                # time (reported as `exists`), so the hashes keep overlapping the pixel work.
                todo.append((src, pool.submit(sha256_files, _hash_inputs(files))))
                continue
            rec = hit[0]
            digest = sha256_files(_hash_inputs(files))
            if rec.source_sha256 != digest or rec.extra.get("selection") != selection:
                raise ArchiveError(
                    f"scene {src.scene_id!r}: already in {arch.url} from another source "
                    f"({src.source_files[0]}, or its window/burst/calibration, differs); "
                    "pass --scene-id to pick a new id"
                )
            results.append(IngestResult(scene_id=src.scene_id, status="exists", shape=rec.shape,
                                        units=rec.units, source_files=src.source_files))
        if not todo:
            return results

        # 3. Stage every scene into its own (uncommitted) repository, statistics in the same pass.
        writers: list[Any] = []
        parts: list[Any] = []
        try:
            if on_ray:
                from sarray.ingest.cluster import stage_on_ray

                parts, nodes = stage_on_ray(arch, [src for src, _ in todo], config, writers,
                                            progress=progress)
            else:
                parts = _stage_local(arch, [src for src, _ in todo], config, writers, progress)
                nodes = [() for _ in todo]
            # 4. Check the content, then write the scene attributes.
            finals = []
            for (src, fut), writer, part, staged_on in zip(todo, writers, parts, nodes):
                shape = tuple(int(v) for v in src.data.shape)
                stats = combine_stats(part, src.pols, shape[1] * shape[2])
                for pol, st in stats.items():
                    if st["valid_fraction"] == 0.0:
                        raise IngestError(
                            f"{src.source_files[0]}: band {pol} is all NaN, inf or nodata; "
                            "nothing to ingest"
                        )
                record = _record(src, fut.result(), shape, selection)  # type: ignore[arg-type]
                _write_attrs(writer.store, src, record, stats, config)
                finals.append((writer, record, src, staged_on))
        except BaseException:
            for writer in writers:
                # The store may be what failed (an endpoint gone): the unlisted repository and
                # its intent then stay, listed nowhere, until a later run sweeps stale intents.
                with contextlib.suppress(Exception):
                    arch.discard(writer)
            raise

        # 5. Commit each scene (its repository, then its catalog row).
        for writer, record, src, staged_on in finals:
            res = arch.commit_scene(writer, record)
            if res.status == "taken":
                raise ArchiveError(
                    f"scene {record.scene_id!r}: listed in {arch.url} by another writer meanwhile, "
                    "from another source; pass --scene-id to pick a new id"
                )
            existing = res.existing if res.status == "exists" else None  # same source, listed
            results.append(IngestResult(
                scene_id=existing or record.scene_id, status=res.status, shape=record.shape,
                units=record.units, source_files=src.source_files, staged_on=staged_on,
                requested_id=record.scene_id if existing not in (None, record.scene_id) else None))
        return results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stage_local(arch: Archive, sources: list[SceneSource], config: IngestConfig,
                 writers: list[Any], progress: bool) -> list[Any]:
    """Stage the scenes in this process, ``parallel_files`` at a time; returns each scene's
    per-chunk statistics. Each new scene's writer is appended to ``writers`` as it begins."""
    import dask

    from sarray.progress import dask_progress

    parts: list[Any] = []
    for i in range(0, len(sources), config.parallel_files):
        batch = sources[i : i + config.parallel_files]
        waves = []
        for src in batch:
            writers.append(arch.begin_scene(src.scene_id))
            waves.append(stage_scene_graph(src.data, src.pols, src.georef, src.units,
                                           src.quantity, writers[-1].store, config.layout))
        label = batch[0].scene_id if len(batch) == 1 else f"{len(batch)} scenes"
        # Wave by wave (the i-th wave of every file of the batch together), so that memory
        # holds one wave per file, not reads dask scheduled far ahead of their writes. Our own
        # pool, so that after a failure every running task has finished before the
        # repositories are removed (no chunk is written after the cleanup).
        computed: list[list[Any]] = [[] for _ in batch]
        with cf.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as workers:
            with dask_progress(f"ingest {label}", enabled=progress):
                for k in range(max(len(w) for w in waves)):
                    now = [(f, w[k]) for f, w in enumerate(waves) if k < len(w)]
                    _, stats = dask.compute([w for _, (w, _) in now], [s for _, (_, s) in now],
                                            scheduler="threads", pool=workers)
                    for (f, _), part in zip(now, stats):
                        computed[f].append(part)
        parts += [np.concatenate(c, axis=1) for c in computed]
    return parts


def _hash_inputs(files: list[Path]) -> list[Path]:
    """The files whose bytes define a source (every file inside a SAFE folder)."""
    from sarray.ingest.product import s3_folder_objects

    out: list[Path] = []
    for f in files:
        if isinstance(f, Path) and f.is_dir():
            out += sorted(p for p in f.rglob("*") if p.is_file())
        elif isinstance(f, S3Path) and not f.name.upper().endswith(".ZIP") and is_safe(str(f)):
            out += [S3Path(u) for u in s3_folder_objects(str(f))]  # a SAFE folder in a bucket
        else:
            out.append(f)
    return out


def _write_attrs(store: Any, src: SceneSource, record: SceneRecord, stats: dict[str, Any],
                 config: IngestConfig) -> None:
    import zarr

    from sarray.archive.layout import json_safe

    group = zarr.open_group(store=store, mode="r+", zarr_format=3)
    group.attrs.update(json_safe(
        {
            ATTR_SCENE_ID: src.scene_id,
            ATTR_SENSOR: src.sensor,
            ATTR_PLATFORM: src.platform,
            ATTR_SPACING_M: list(src.spacing_m) if src.spacing_m else None,
            ATTR_POLS: list(src.pols),
            ATTR_UNITS: src.units,
            ATTR_QUANTITY: src.quantity,
            ATTR_TIME: src.acquisition_time,
            ATTR_SOURCE: list(src.source_files),
            ATTR_CHECKSUM: record.source_sha256,
            ATTR_STATS: stats,
            ATTR_BBOX: list(record.bbox_lonlat) if record.bbox_lonlat else None,
            ATTR_GEOREF: src.georef.kind,
            ATTR_CALIBRATION: src.calibration,
            ATTR_SARRAY_VERSION: __version__,
            "ingested_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "layout": config.layout.to_dict(),
            ATTR_RECORD: record.to_dict(),
            **src.extra_attrs,
        }
    ))
