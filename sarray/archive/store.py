"""The archive on disk: create, stage, commit atomically, recover, open and list scenes.

Commit protocol (local filesystem):

1. A scene is first written in full into a staging folder beside the archive,
   ``.<name>.zarr.staging/<scene_id>.<pid>.<token>/``, a standalone Zarr v3 group.
2. Under the archive lock, the staging folder is renamed into ``<archive>/scenes/<scene_id>``
   (one atomic ``rename``), then the catalog in the root ``zarr.json`` is replaced atomically
   (write a temporary file, ``os.replace``).

A crash in step 1 leaves only a staging folder, which the next ingest removes; the archive never
saw it. A crash between the rename and the catalog update leaves a complete scene the catalog
does not list; :meth:`Archive.recover` adds it from the record stored in its own attributes.
Bad input is detected while staging, so the archive stays byte-for-byte as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarray.archive.layout import (
    ATTR_CATALOG,
    ATTR_LAYOUT_VERSION,
    LAYOUT_VERSION,
    SCENES_GROUP,
    SceneRecord,
    scene_path,
    validate_scene_id,
)
from sarray.errors import ArchiveError, SceneNotFoundError

ATTR_RECORD = "sarray_record"
# Set on a scene group that a job is still producing in place (translate outputs, resumable);
# such a group is not in the catalog and recover() leaves it alone.
ATTR_IN_PROGRESS = "sarray_in_progress"


@dataclass(frozen=True, kw_only=True)
class SceneFilter:
    """Catalog filters; every field left None matches everything.

    Args:
        sensor: case-insensitive substring of the sensor name (``sentinel-1`` matches 1A and 1B).
        platform: exact platform.
        start: ISO time; scenes acquired before it are dropped (scenes without time too).
        end: ISO time; scenes acquired after it are dropped (scenes without time too).
        bbox_lonlat: (min_lon, min_lat, max_lon, max_lat); keeps scenes whose footprint box
            intersects it.
    """

    sensor: str | None = None
    platform: str | None = None
    start: str | None = None
    end: str | None = None
    bbox_lonlat: tuple[float, float, float, float] | None = None

    def matches(self, rec: SceneRecord) -> bool:
        if self.sensor is not None and self.sensor.lower() not in rec.sensor.lower():
            return False
        if self.platform is not None and rec.platform != self.platform:
            return False
        if self.start is not None or self.end is not None:
            if rec.acquisition_time is None:
                return False
            t = _parse_time(rec.acquisition_time)
            if self.start is not None and t < _parse_time(self.start):
                return False
            if self.end is not None and t > _parse_time(self.end):
                return False
        if self.bbox_lonlat is not None:
            if rec.bbox_lonlat is None:
                return False
            a = rec.bbox_lonlat
            b = self.bbox_lonlat
            if a[2] < b[0] or a[0] > b[2] or a[3] < b[1] or a[1] > b[3]:
                return False
        return True


def _parse_time(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


class Archive:
    """A sarray archive at a local path (a Zarr v3 hierarchy).

    Args:
        path: the archive folder, conventionally ``*.zarr``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # -- locations ---------------------------------------------------------------------------
    @property
    def staging_root(self) -> Path:
        """Where scenes are written before they are committed (beside the archive)."""
        return self.path.parent / f".{self.path.name}.staging"

    @property
    def _lock_path(self) -> Path:
        return self.path.parent / f".{self.path.name}.lock"

    def exists(self) -> bool:
        return (self.path / "zarr.json").is_file()

    def require(self) -> Archive:
        """Return self if the archive exists, else raise ArchiveError."""
        if not self.exists():
            raise ArchiveError(
                f"archive {self.path}: not found (no zarr.json); create it with `sarray ingest`"
            )
        root = self._read_root()
        if ATTR_LAYOUT_VERSION not in root.get("attributes", {}):
            raise ArchiveError(f"archive {self.path}: a Zarr group, but not a sarray archive")
        return self

    # -- root metadata and catalog ----------------------------------------------------------
    def _read_root(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "zarr.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ArchiveError(f"archive {self.path}: cannot read zarr.json ({e})") from None

    def _write_root(self, root: dict[str, Any]) -> None:
        tmp = self.path / f".zarr.json.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(root, indent=1, sort_keys=True))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path / "zarr.json")

    def catalog(self) -> dict[str, SceneRecord]:
        """All committed scenes, read from the root attributes only (no scene is opened)."""
        if not self.exists():
            return {}
        attrs = self._read_root().get("attributes", {})
        return {k: SceneRecord.from_dict(v) for k, v in attrs.get(ATTR_CATALOG, {}).items()}

    def find(self, flt: SceneFilter | None = None) -> list[SceneRecord]:
        """Scenes matching ``flt``, sorted by acquisition time then id."""
        recs = [r for r in self.catalog().values() if flt is None or flt.matches(r)]
        return sorted(recs, key=lambda r: (r.acquisition_time or "", r.scene_id))

    def record(self, scene_id: str) -> SceneRecord:
        """The catalog record of one scene."""
        cat = self.catalog()
        if scene_id not in cat:
            known = ", ".join(sorted(cat)[:10]) or "none"
            raise SceneNotFoundError(
                f"scene {scene_id!r}: not in archive {self.path} (scenes: {known}); "
                f"see `sarray ls {self.path}`"
            )
        return cat[scene_id]

    # -- creation, locking, recovery --------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive inter-process lock for commits (a lock file beside the archive)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _create(self) -> None:
        import zarr

        root = zarr.open_group(
            str(self.path),
            mode="w-",
            zarr_format=3,
            attributes={ATTR_LAYOUT_VERSION: LAYOUT_VERSION, ATTR_CATALOG: {}},
        )
        root.create_group(SCENES_GROUP)

    def recover(self) -> list[str]:
        """Finish interrupted commits and drop dead staging folders.

        Returns:
            The ids of scenes that were complete on disk but missing from the catalog and
            have been added to it.
        """
        added: list[str] = []
        with self.lock():
            self._remove_dead_staging()
            if not self.exists():
                return added
            root = self._read_root()
            cat = root.setdefault("attributes", {}).setdefault(ATTR_CATALOG, {})
            scenes_dir = self.path / SCENES_GROUP
            for d in sorted(scenes_dir.iterdir()) if scenes_dir.is_dir() else []:
                if not d.is_dir() or d.name in cat:
                    continue
                try:
                    attrs = json.loads((d / "zarr.json").read_text())["attributes"]
                    if attrs.get(ATTR_IN_PROGRESS):
                        continue  # an output being produced (resumable), not a crash leftover
                    rec = attrs[ATTR_RECORD]
                except (OSError, KeyError, json.JSONDecodeError):
                    shutil.rmtree(d)  # cannot be ours: a commit only moves complete groups
                    continue
                cat[d.name] = rec
                added.append(d.name)
            if added:
                self._write_root(root)
        return added

    def _remove_dead_staging(self) -> None:
        if not self.staging_root.is_dir():
            return
        for d in self.staging_root.iterdir():
            try:
                pid = int(d.name.rsplit(".", 2)[1])
            except (IndexError, ValueError):
                pid = -1
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.staging_root.rmdir()

    # -- staging and commit -----------------------------------------------------------------
    def new_staging_dir(self, scene_id: str) -> Path:
        """A fresh, empty staging folder name for ``scene_id`` (not yet created)."""
        validate_scene_id(scene_id)
        self.staging_root.mkdir(parents=True, exist_ok=True)
        return self.staging_root / f"{scene_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"

    def discard_staging(self, staged: Path) -> None:
        """Remove a staging folder (after a failure, or when the scene was a duplicate)."""
        shutil.rmtree(staged, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.staging_root.rmdir()

    def commit(self, staged: Path, record: SceneRecord) -> str:
        """Move a fully written staging group into the archive and list it in the catalog.

        Returns:
            ``"added"``, or ``"exists"`` when the same source is already in the archive under
            this or another id (then nothing changes).

        Raises:
            ArchiveError: if the scene id is taken by a different source.
        """
        with self.lock():
            if not self.exists():
                self._create()
            root = self._read_root()
            cat = root.setdefault("attributes", {}).setdefault(ATTR_CATALOG, {})
            key = (record.source_sha256, record.extra.get("selection"))
            if any((v.get("source_sha256"), v.get("extra", {}).get("selection")) == key
                   for v in cat.values()):
                self.discard_staging(staged)
                return "exists"
            if record.scene_id in cat:
                self.discard_staging(staged)
                raise ArchiveError(
                    f"scene {record.scene_id!r}: already in {self.path} from another source "
                    f"({cat[record.scene_id].get('source_files')}); pass --scene-id to pick a new id"
                )
            target = self.path / scene_path(record.scene_id)
            if target.exists():  # an uncatalogued leftover that recover() could not claim
                shutil.rmtree(target)
            os.rename(staged, target)
            cat[record.scene_id] = record.to_dict()
            self._write_root(root)
        with contextlib.suppress(OSError):
            self.staging_root.rmdir()
        return "added"

    def commit_in_place(self, record: SceneRecord) -> None:
        """List a scene that a job wrote in place (``scenes/<id>``, complete) in the catalog."""
        with self.lock():
            root = self._read_root()
            cat = root.setdefault("attributes", {}).setdefault(ATTR_CATALOG, {})
            cat[record.scene_id] = record.to_dict()
            self._write_root(root)

    def ensure_created(self) -> None:
        """Create an empty archive at ``path`` if there is none."""
        with self.lock():
            if not self.exists():
                self._create()

    # -- reading ----------------------------------------------------------------------------
    def open_scene(self, scene_id: str) -> Any:
        """The scene as a lazy ``xarray.Dataset`` (dask arrays on the Zarr chunks)."""
        import xarray as xr

        self.record(scene_id)
        return xr.open_zarr(
            str(self.path), group=scene_path(scene_id), zarr_format=3, consolidated=False,
            decode_coords="all",
        )


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
