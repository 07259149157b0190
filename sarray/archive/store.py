"""The archive: scenes in Icechunk repositories, a catalog that scales, commits as transactions.

An archive lives at a local path or at ``s3://bucket/prefix`` (see :mod:`.location`); the
layout is in :mod:`.layout`. Writing a scene:

1. :meth:`Archive.begin_scene` records an intent (``pending/<id>.<token>.json``) and creates
   the scene's own repository ``scenes/<id>.<token>``. Nothing the catalog lists changes.
2. The writer fills the repository's writable session (dask, or Ray workers through forks).
3. :meth:`Archive.commit_scene` commits the scene repository (atomic: readers see all of it or
   nothing), then inserts its row in the catalog (a transaction that refuses a duplicate id or
   source, retried on conflicts), then removes the intent.

A crash in 2 leaves an uncommitted repository and its intent: :meth:`Archive.recover` removes
both once their writer is gone. A crash between the two commits of 3 leaves a committed scene
the catalog does not list: ``recover`` inserts it from the record stored in its attributes. So
bad input, a killed ingest or a lost race never leaves a half scene in the catalog, and the
recovery work is proportional to the writes in flight, not to the archive.

On a local disk Icechunk does not detect concurrent commits of one repository, so catalog
commits hold ``.sarray.lock`` (``flock``); on object storage Icechunk's conditional writes
detect them and the insert is retried.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sarray.archive.catalog import Catalog, CatalogRow, InsertResult, Query
from sarray.archive.layout import (
    ARCHIVE_MARKER,
    ATTR_CATALOG,
    ATTR_LAYOUT_VERSION,
    CATALOG_REPO,
    LAYOUT_VERSION,
    LEGACY_LAYOUT_VERSION,
    LOCK_NAME,
    PENDING_DIR,
    SCENES_GROUP,
    VAR_BACKSCATTER,
    SceneRecord,
    validate_scene_id,
)
from sarray.archive.location import Location, repository_config
from sarray.config import STALE_INTENT_S
from sarray.errors import ArchiveError, SceneNotFoundError

ATTR_RECORD = "sarray_record"
# Set on a scene that a job is still producing (translate outputs, resumable); such a scene is
# not in the catalog and recover() leaves it alone.
ATTR_IN_PROGRESS = "sarray_in_progress"
# Kinds of intent.
KIND_INGEST = "ingest"
KIND_OUTPUT = "output"

# Kept for callers of the first layout's name.
SceneFilter = Query


@dataclass
class SceneWriter:
    """A scene being written: its repository and writable session (see :class:`Archive`)."""

    archive: Archive
    scene_id: str
    location: str  # folder under scenes/
    repo: Any
    session: Any
    kind: str = KIND_INGEST

    @property
    def store(self) -> Any:
        """The Zarr store of the session: the scene's root group."""
        return self.session.store

    def commit(self, message: str) -> str:
        """Commit the scene repository (not the catalog); returns the snapshot id."""
        with self.archive.lock():
            snap = self.session.commit(message)
        self.session = self.repo.writable_session("main")
        return snap


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Archive:
    """A sarray archive at a local path or ``s3://bucket/prefix``.

    Args:
        url: the archive, conventionally ``*.zarr``; S3 is configured from the standard AWS
            environment variables (see :mod:`sarray.archive.location`).
    """

    def __init__(self, url: str | os.PathLike[str] | Location) -> None:
        self.location = Location.parse(url)
        self._catalog: Catalog | None = None
        self._made_root = False  # this handle created the local folder (removed if left empty)

    def __reduce__(self) -> tuple[Any, ...]:  # pickles as its URL (no client, no secret)
        return (Archive, (self.location,))

    def __repr__(self) -> str:
        return f"Archive({self.url!r})"

    @property
    def url(self) -> str:
        """Where the archive is, as users write it (recorded in provenance; no credentials)."""
        return self.location.url

    @property
    def path(self) -> Any:
        """The local folder (local archives only)."""
        return self.location.local_path

    # -- existence, creation, layout --------------------------------------------------------------
    def exists(self) -> bool:
        try:
            return self.location.read_bytes(ARCHIVE_MARKER) is not None
        except OSError as e:
            raise ArchiveError(f"{self.url}: cannot be read ({_os_reason(e)})") from None

    def _legacy(self) -> bool:
        raw = self.location.read_bytes("zarr.json")
        if raw is None:
            return False
        with contextlib.suppress(ValueError):
            attrs = json.loads(raw).get("attributes", {})
            return attrs.get(ATTR_LAYOUT_VERSION) == LEGACY_LAYOUT_VERSION and ATTR_CATALOG in attrs
        return False

    def require(self) -> Archive:
        """Return self if the archive exists in this layout, else raise ArchiveError."""
        if self.exists():
            raw = self.location.read_bytes(ARCHIVE_MARKER) or b"{}"
            try:
                version = json.loads(raw).get(ATTR_LAYOUT_VERSION)
            except ValueError:
                version = None
            if version != LAYOUT_VERSION:
                raise ArchiveError(f"{self.url}: {ARCHIVE_MARKER} is unreadable or of layout "
                                   f"{version!r}; this sarray reads layout {LAYOUT_VERSION}")
            return self
        if self._legacy():
            raise ArchiveError(
                f"{self.url}: written by an earlier sarray (layout {LEGACY_LAYOUT_VERSION}, a "
                f"plain Zarr hierarchy); convert it with `sarray migrate {self.url} NEW.zarr`"
            )
        if self.location.is_local and self.location.local_path.exists():
            raise ArchiveError(f"{self.url}: exists but is not a sarray archive (no "
                               f"{ARCHIVE_MARKER}); pick another path")
        raise ArchiveError(f"{self.url}: archive not found; create it with `sarray ingest`")

    def check_writable_target(self) -> None:
        """Refuse a path that holds something else than an archive, before any work."""
        if self.exists():
            self.require()
            return
        if self._legacy():
            self.require()
        if self.location.is_local:
            p = self.location.local_path
            own = {PENDING_DIR, SCENES_GROUP, LOCK_NAME, CATALOG_REPO}  # a first write cut short
            if p.exists() and (not p.is_dir() or any(c.name not in own for c in p.iterdir())):
                raise ArchiveError(f"{self.url}: exists but is not a sarray archive (no "
                                   f"{ARCHIVE_MARKER}); pick another path")

    def ensure_created(self) -> None:
        """Create the archive (catalog repository, then the marker) if there is none."""
        if self.exists():
            return
        with self.lock():
            if self.exists():
                return
            self.catalog_repo().create()  # idempotent, and safe against a concurrent creator
            self.location.write_bytes(ARCHIVE_MARKER, json.dumps(
                {ATTR_LAYOUT_VERSION: LAYOUT_VERSION, "created_by": "sarray"}).encode())

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The local commit guard (``flock`` on ``.sarray.lock``); a no-op on object storage."""
        if not self.location.is_local:
            yield
            return
        import fcntl

        root = self.location.local_path
        root.mkdir(parents=True, exist_ok=True)
        with open(root / LOCK_NAME, "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # -- catalog ------------------------------------------------------------------------------------
    def catalog_repo(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.location.child(CATALOG_REPO), guard=self.lock)
        return self._catalog

    def catalog(self) -> dict[str, SceneRecord]:
        """Every committed scene's record, by id (reads the catalog's records column)."""
        if not self.exists():
            return {}
        return {r.scene_id: r for r in self.catalog_repo().query()}

    def find(self, flt: Query | None = None) -> list[SceneRecord]:
        """Scenes matching ``flt``, sorted by acquisition time then id."""
        if not self.exists():
            return []
        recs = self.catalog_repo().query(flt)
        return sorted(recs, key=lambda r: (r.acquisition_time or "", r.scene_id))

    def has_scene(self, scene_id: str) -> bool:
        return self.exists() and self.catalog_repo().lookup(scene_id) is not None

    def have_scenes(self, scene_ids: list[str]) -> set[str]:
        """Which of ``scene_ids`` are catalogued (one read of the catalog)."""
        return set(self.catalog_repo().lookup_many(scene_ids)) if self.exists() else set()

    def _lookup(self, scene_id: str) -> tuple[SceneRecord, str]:
        hit = self.catalog_repo().lookup(scene_id) if self.exists() else None
        if hit is None:
            ids = self.catalog_repo().ids() if self.exists() else []
            known = ", ".join(sorted(ids)[:10]) or "none"
            more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
            raise SceneNotFoundError(
                f"scene {scene_id!r}: not in archive {self.url} (scenes: {known}{more}); "
                f"see `sarray ls {self.url}`"
            )
        return hit

    def record(self, scene_id: str) -> SceneRecord:
        """The catalog record of one scene."""
        return self._lookup(scene_id)[0]

    def records(self, scene_ids: list[str]) -> dict[str, SceneRecord]:
        """The records of several scenes, read at once; raises for the first unknown id."""
        found = self.catalog_repo().lookup_many(scene_ids) if self.exists() else {}
        for sid in scene_ids:
            if sid not in found:
                self._lookup(sid)  # raises SceneNotFoundError with the known ids
        return {sid: found[sid][0] for sid in scene_ids}

    def scene_location(self, scene_id: str) -> str:
        """The folder of a catalogued scene's repository under ``scenes/``."""
        return self._lookup(scene_id)[1]

    # -- scene repositories ---------------------------------------------------------------------
    def _scene_storage(self, location: str) -> Any:
        return self.location.child(SCENES_GROUP, location).icechunk_storage()

    def scene_repo(self, location: str) -> Any:
        import icechunk

        try:
            return icechunk.Repository.open(self._scene_storage(location), config=repository_config())
        except icechunk.IcechunkError as e:
            raise ArchiveError(
                f"{self.url}: scene repository {SCENES_GROUP}/{location} cannot be opened "
                f"({str(e).strip().splitlines()[0][:160]}); run `sarray check {self.url}`"
            ) from None

    def scene_session(self, scene_id: str, snapshot: str | None = None) -> Any:
        """A read-only session on a scene (its latest commit, or ``snapshot``)."""
        repo = self.scene_repo(self.scene_location(scene_id))
        if snapshot is not None:
            return repo.readonly_session(snapshot_id=snapshot)
        return repo.readonly_session(branch="main")

    def scene_snapshot(self, scene_id: str) -> str:
        """The snapshot id of a scene's latest commit (recorded in outputs' provenance)."""
        return str(self.scene_session(scene_id).snapshot_id)

    def open_scene(self, scene_id: str, snapshot: str | None = None) -> Any:
        """The scene as a lazy ``xarray.Dataset``: dask arrays on its Zarr chunks, every chunk
        read checked (a damaged chunk raises :class:`~sarray.errors.ChunkError` naming it).

        The dataset's ``encoding["snapshot"]`` is the snapshot it reads.
        """
        session = self.scene_session(scene_id, snapshot)
        return open_scene_dataset(session, archive=self.url, scene_id=scene_id)

    def scene_pixels(self, scene_id: str, *, snapshot: str, location: str | None = None,
                     variable: str = VAR_BACKSCATTER) -> Any:
        """One variable of a scene at ``snapshot``, read by window without xarray (see
        :mod:`sarray.archive.pixels`: the engine's workers). ``location``: the scene's
        repository folder, when the caller has it (no catalog lookup)."""
        from sarray.archive.pixels import ScenePixels

        repo = self.scene_repo(location or self.scene_location(scene_id))
        try:
            session = repo.readonly_session(snapshot_id=snapshot)
        except Exception as e:
            raise ArchiveError(f"{self.url}: scene {scene_id} has no snapshot {snapshot!r} "
                               f"({str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__}); "
                               "was it re-ingested while the job ran? Run the job again") from None
        return ScenePixels.open(session, archive=self.url, scene_id=scene_id, variable=variable)

    # -- writing ------------------------------------------------------------------------------------
    def begin_scene(self, scene_id: str, *, kind: str = KIND_INGEST,
                    location: str | None = None) -> SceneWriter:
        """Record the intent, then create the scene's repository (see the module docstring).

        Args:
            scene_id: the id the scene will be listed under.
            kind: ``ingest``, or ``output`` for a resumable translate output.
            location: the repository folder; default ``<id>.<random token>``. Outputs pass a
                token derived from their settings, so a rerun finds its unfinished output.
        """
        import icechunk

        validate_scene_id(scene_id)
        if self.location.is_local and not self.location.local_path.exists():
            self._made_root = True
        location = location or f"{scene_id}.{uuid.uuid4().hex[:12]}"
        intent = {"scene_id": scene_id, "location": location, "kind": kind,
                  "host": socket.gethostname(), "pid": os.getpid(), "created_s": time.time()}
        try:
            self.location.write_bytes(f"{PENDING_DIR}/{location}.json", json.dumps(intent).encode())
            storage = self._scene_storage(location)
            repo = (icechunk.Repository.open(storage, config=repository_config())
                    if icechunk.Repository.exists(storage)
                    else icechunk.Repository.create(storage, config=repository_config()))
        except OSError as e:
            raise ArchiveError(f"{self.url}: cannot write ({_os_reason(e)}); check the path and "
                               "its permissions") from None
        return SceneWriter(archive=self, scene_id=scene_id, location=location, repo=repo,
                           session=repo.writable_session("main"), kind=kind)

    def commit_scene(self, writer: SceneWriter, record: SceneRecord, *,
                     message: str | None = None) -> InsertResult:
        """Commit a fully written scene and list it (see the module docstring).

        Returns:
            The catalog's verdict: ``added``; ``exists`` (the same source is listed, under
            ``existing``); ``taken`` (the id is listed with another source). In the last two
            cases the new repository is removed and nothing changes.
        """
        if writer.session.has_uncommitted_changes:
            writer.commit(message or f"{writer.kind} {record.scene_id}")
        self.ensure_created()
        (res,) = self.catalog_repo().insert([CatalogRow(record=record, location=writer.location)],
                                            message=f"add {record.scene_id}")
        if res.status != "added":
            self.location.delete_tree(f"{SCENES_GROUP}/{writer.location}")
        self._drop_intent(writer.location)
        return res

    def discard(self, writer: SceneWriter) -> None:
        """Remove an uncommitted (or unwanted) scene repository and its intent."""
        self.discard_location(writer.location)

    def discard_location(self, location: str) -> None:
        self.location.delete_tree(f"{SCENES_GROUP}/{location}")
        self._drop_intent(location)

    def _drop_intent(self, location: str) -> None:
        self.location.delete(f"{PENDING_DIR}/{location}.json")
        if self.location.is_local:  # leave no empty folders behind (the archive as it was)
            root = self.location.local_path
            for sub in (root / PENDING_DIR, root / SCENES_GROUP):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            if not self.exists() and self._made_root:
                with contextlib.suppress(OSError):
                    (root / LOCK_NAME).unlink()
                with contextlib.suppress(OSError):
                    root.rmdir()

    def intents(self) -> list[dict[str, Any]]:
        """The commit intents in progress (one per scene being written)."""
        out = []
        for name in self.location.list_children(PENDING_DIR):
            if not name.endswith(".json"):
                continue
            raw = self.location.read_bytes(f"{PENDING_DIR}/{name}")
            with contextlib.suppress(ValueError, TypeError):
                if raw is not None:
                    out.append(json.loads(raw))
        return out

    def _abandoned(self, intent: dict[str, Any]) -> bool:
        if intent.get("host") == socket.gethostname() and intent.get("pid") != os.getpid():
            return not _pid_alive(int(intent.get("pid", -1)))
        return time.time() - float(intent.get("created_s", 0)) > STALE_INTENT_S

    def _committed_record(self, location: str) -> dict[str, Any] | None:
        """The record of a committed, finished scene repository, else None."""
        import icechunk
        import zarr

        storage = self._scene_storage(location)
        if not icechunk.Repository.exists(storage):
            return None
        repo = icechunk.Repository.open(storage, config=repository_config())
        session = repo.readonly_session(branch="main")
        try:
            attrs = dict(zarr.open_group(store=session.store, mode="r", zarr_format=3).attrs)
        except Exception:  # no root group yet: nothing was committed
            return None
        if attrs.get(ATTR_IN_PROGRESS) or ATTR_RECORD not in attrs:
            return None
        return attrs[ATTR_RECORD]

    def recover(self) -> list[str]:
        """Finish interrupted commits and remove abandoned writes.

        Returns:
            The ids of scenes that were committed but not listed, and are listed now.
        """
        added: list[str] = []
        for intent in self.intents():
            location = str(intent.get("location", ""))
            if not location or "/" in location:
                continue
            rec = self._committed_record(location)
            if rec is not None:
                self.ensure_created()
                row = CatalogRow(record=SceneRecord.from_dict(rec), location=location)
                (res,) = self.catalog_repo().insert([row], message=f"recover {row.record.scene_id}")
                if res.status == "added":
                    added.append(row.record.scene_id)
                elif self.catalog_repo().lookup(row.record.scene_id) != (row.record, location):
                    self.location.delete_tree(f"{SCENES_GROUP}/{location}")
                self._drop_intent(location)
            elif intent.get("kind") != KIND_OUTPUT and self._abandoned(intent):
                self.discard_location(location)
        return added


def open_scene_dataset(session: Any, *, archive: str, scene_id: str) -> Any:
    """The lazy dataset of a scene session, with checked chunk reads (see ``integrity``)."""
    import xarray as xr
    import zarr

    from sarray.archive.integrity import ChunkContext, checked_dask

    try:
        ds = xr.open_zarr(session.store, consolidated=False, zarr_format=3, decode_coords="all")
    except Exception as e:
        raise ArchiveError(f"{archive}: scene {scene_id}: cannot be opened "
                           f"({str(e).strip().splitlines()[0][:160]}); run `sarray check`") from None
    group = zarr.open_group(store=session.store, mode="r", zarr_format=3)
    snap = str(session.snapshot_id)
    for name in list(ds.data_vars):
        if name not in group or not hasattr(group[name], "chunks") or not ds[name].ndim:
            continue
        ctx = ChunkContext(archive=archive, scene_id=scene_id, variable=name)
        data = checked_dask(group[name], ctx, name=f"sarray-{archive}-{scene_id}-{name}-{snap}")
        var = ds[name].variable
        ds[name] = xr.Variable(var.dims, data, attrs=var.attrs, encoding=var.encoding)
    ds.encoding["snapshot"] = snap
    return ds


def _os_reason(e: OSError) -> str:
    name = getattr(e, "filename", None)
    return f"{e.strerror or type(e).__name__}{f': {name}' if name else ''}"


__all__ = ["ATTR_IN_PROGRESS", "ATTR_RECORD", "Archive", "SceneFilter", "SceneWriter",
           "VAR_BACKSCATTER", "open_scene_dataset"]
