"""The catalog: one row per committed scene, as columns in an Icechunk repository of its own.

Why columns in their own repository: a commit of an Icechunk repository rewrites its snapshot,
which lists every node, so one repository holding every scene would make each commit cost grow
with the archive. The catalog repository holds a fixed set of 1-D arrays (one per column); an
append resizes them and rewrites only their last chunk, so a commit costs the same at 100 and
at 100,000 scenes. A bbox + time query reads five float64 columns (0.8 MB at 100,000 rows),
filters them with numpy and then reads the JSON records of the matching rows only.

Inserts are transactions: the change is applied to the branch tip and committed; when another
writer committed first (a conflict, on object storage), it is re-applied on the new tip, so
nothing is lost and an id or a source can never be inserted twice. On a local disk Icechunk does
not detect concurrent commits, so the archive passes a lock as ``guard``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from sarray.archive.layout import SceneRecord
from sarray.archive.location import Location
from sarray.config import MAX_COMMIT_ATTEMPTS
from sarray.errors import ArchiveError, CommitConflictError

# Column name -> (dtype, rows per chunk). Numeric columns have large chunks (a query reads them
# whole); the JSON record has small ones (an append rewrites one chunk, a lookup reads one).
NUMERIC_CHUNK_ROWS = 16384
TEXT_CHUNK_ROWS = 4096
RECORD_CHUNK_ROWS = 1024
COLUMNS: dict[str, tuple[str, int]] = {
    "scene_id": ("str", TEXT_CHUNK_ROWS),
    "location": ("str", TEXT_CHUNK_ROWS),
    "source_key": ("str", TEXT_CHUNK_ROWS),
    "sensor": ("str", TEXT_CHUNK_ROWS),
    "platform": ("str", TEXT_CHUNK_ROWS),
    "min_lon": ("float64", NUMERIC_CHUNK_ROWS),
    "min_lat": ("float64", NUMERIC_CHUNK_ROWS),
    "max_lon": ("float64", NUMERIC_CHUNK_ROWS),
    "max_lat": ("float64", NUMERIC_CHUNK_ROWS),
    "time_s": ("float64", NUMERIC_CHUNK_ROWS),
    "record": ("str", RECORD_CHUNK_ROWS),
}
BBOX_COLUMNS = ("min_lon", "min_lat", "max_lon", "max_lat")


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time; naive times are UTC."""
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def source_key(sha256: str, selection: Any) -> str:
    """What makes two ingests the same: the source checksum and the pixel selection."""
    sel = json.dumps(selection, sort_keys=True)
    return hashlib.sha256(f"{sha256}\0{sel}".encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class CatalogRow:
    """A scene as the catalog lists it: its record and the repository that holds it."""

    record: SceneRecord
    location: str  # repository folder under scenes/

    def values(self) -> dict[str, Any]:
        r = self.record
        bbox = r.bbox_lonlat or (np.nan,) * 4
        t = parse_time(r.acquisition_time).timestamp() if r.acquisition_time else np.nan
        return {
            "scene_id": r.scene_id, "location": self.location, "source_key": source_key(r.source_sha256, r.extra.get("selection")),
            "sensor": r.sensor, "platform": r.platform,
            **{c: float(v) for c, v in zip(BBOX_COLUMNS, bbox)},
            "time_s": float(t),
            "record": json.dumps(r.to_dict(), sort_keys=True, allow_nan=False),
        }


@dataclass(frozen=True, kw_only=True)
class InsertResult:
    """``added``; ``exists`` (the same source is listed as ``existing``); or ``taken`` (the id
    is listed with another source)."""

    scene_id: str
    status: str
    existing: str | None = None


@dataclass(frozen=True, kw_only=True)
class Query:
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

    def mask(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        """Rows that pass the numeric filters (bbox, time); ``cols`` holds those columns."""
        n = len(next(iter(cols.values()))) if cols else 0
        keep = np.ones(n, dtype=bool)
        with np.errstate(invalid="ignore"):
            if self.bbox_lonlat is not None:
                w, s, e, nn = self.bbox_lonlat
                keep &= (cols["max_lon"] >= w) & (cols["min_lon"] <= e)
                keep &= (cols["max_lat"] >= s) & (cols["min_lat"] <= nn)
            if self.start is not None:
                keep &= cols["time_s"] >= parse_time(self.start).timestamp()
            if self.end is not None:
                keep &= cols["time_s"] <= parse_time(self.end).timestamp()
        return keep

    def matches(self, rec: SceneRecord) -> bool:
        """The same filters on one in-memory record (what :meth:`Catalog.query` computes)."""
        vals = CatalogRow(record=rec, location="").values()
        cols = {k: np.array([vals[k]], dtype=np.float64) for k in (*BBOX_COLUMNS, "time_s")}
        if not self.mask(cols)[0]:
            return False
        if self.platform is not None and rec.platform != self.platform:
            return False
        return self.sensor is None or self.sensor.lower() in rec.sensor.lower()

    def numeric_columns(self) -> tuple[str, ...]:
        out: tuple[str, ...] = ()
        if self.bbox_lonlat is not None:
            out += BBOX_COLUMNS
        if self.start is not None or self.end is not None:
            out += ("time_s",)
        return out


class Catalog:
    """The catalog repository of an archive.

    Args:
        location: where the catalog repository lives (``<archive>/catalog``).
        guard: a context manager factory held around each commit (the archive's local lock;
            a no-op on object storage, where Icechunk itself detects conflicting commits).
    """

    def __init__(self, location: Location,
                 guard: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext) -> None:
        self.location = location
        self._guard = guard
        self._repo: Any = None

    # -- repository ------------------------------------------------------------------------------
    def _repository(self) -> Any:
        import icechunk

        if self._repo is None:
            try:
                self._repo = icechunk.Repository.open(self.location.icechunk_storage())
            except icechunk.IcechunkError as e:
                raise ArchiveError(
                    f"{self.location.url}: the catalog repository cannot be opened "
                    f"({str(e).strip().splitlines()[0][:200]}); run `sarray check`"
                ) from None
        return self._repo

    def create(self) -> None:
        """Create the empty catalog (every column with 0 rows), unless it exists.

        Safe against concurrent creators: the repository creation and the first commit both
        tolerate losing the race to another writer.
        """
        import icechunk
        import zarr

        from sarray.archive.integrity import checked_codecs

        storage = self.location.icechunk_storage()
        try:
            repo = icechunk.Repository.create(storage)
        except icechunk.IcechunkError:
            repo = icechunk.Repository.open(storage)  # created by another writer meanwhile
        self._repo = repo
        for _ in range(MAX_COMMIT_ATTEMPTS):
            session = repo.writable_session("main")
            try:
                zarr.open_group(store=session.store, mode="r", zarr_format=3)
                return  # the columns exist
            except FileNotFoundError:
                pass
            root = zarr.group(store=session.store, zarr_format=3,
                              attributes={"sarray_catalog_columns": list(COLUMNS)})
            for name, (dtype, rows) in COLUMNS.items():
                root.create_array(name, shape=(0,), chunks=(rows,),
                                  dtype=str if dtype == "str" else dtype,
                                  fill_value=np.nan if dtype == "float64" else "",
                                  compressors=checked_codecs(), dimension_names=("row",))
            try:
                session.commit("create the catalog")
                return
            except (icechunk.ConflictError, icechunk.RebaseFailedError):
                time.sleep(0.05 * (0.5 + random.random()))
        raise CommitConflictError(f"{self.location.url}: the catalog could not be created; "
                                  "run the command again")

    # -- reading -----------------------------------------------------------------------------------
    def _group(self) -> Any:
        import zarr

        session = self._repository().readonly_session(branch="main")
        return zarr.open_group(store=session.store, mode="r", zarr_format=3)

    def columns(self, names: Iterable[str], group: Any = None) -> dict[str, np.ndarray]:
        """Whole columns, read from one snapshot."""
        g = group if group is not None else self._group()
        return {n: np.asarray(g[n][...]) for n in names}

    def __len__(self) -> int:
        return int(self._group()["scene_id"].shape[0])

    def ids(self) -> list[str]:
        """Every scene id, in commit order."""
        return [str(v) for v in self.columns(["scene_id"])["scene_id"]]

    def _records(self, g: Any, rows: np.ndarray) -> list[SceneRecord]:
        if rows.size == 0:
            return []
        arr = g["record"]
        texts = arr.get_coordinate_selection((rows,)) if rows.size < arr.shape[0] else arr[...]
        return [SceneRecord.from_dict(json.loads(str(t))) for t in texts]

    def lookup(self, scene_id: str) -> tuple[SceneRecord, str] | None:
        """(record, repository folder) of one scene, or None."""
        g = self._group()
        cols = self.columns(["scene_id", "location"], g)
        hit = np.flatnonzero(cols["scene_id"] == scene_id)
        if hit.size == 0:
            return None
        return self._records(g, hit[:1])[0], str(cols["location"][hit[0]])

    def find_source(self, key: str) -> str | None:
        """The id of the scene ingested from the source with this :func:`source_key`, if any."""
        cols = self.columns(["scene_id", "source_key"])
        hit = np.flatnonzero(cols["source_key"] == key)
        return str(cols["scene_id"][hit[0]]) if hit.size else None

    def query(self, flt: Query | None = None) -> list[SceneRecord]:
        """Records matching ``flt``: numeric filters on whole columns first, text filters on the
        candidates, and the JSON records of the matches last."""
        flt = flt or Query()
        g = self._group()
        n = int(g["scene_id"].shape[0])
        rows = np.arange(n)
        if flt.numeric_columns():
            rows = rows[flt.mask(self.columns(flt.numeric_columns(), g))]
        if flt.platform is not None and rows.size:
            plat = np.asarray(g["platform"][...])[rows]
            rows = rows[plat == flt.platform]
        if flt.sensor is not None and rows.size:
            sens = np.asarray(g["sensor"][...])[rows]
            want = flt.sensor.lower()
            rows = rows[np.array([want in str(s).lower() for s in sens], dtype=bool)]
        return self._records(g, rows)

    # -- writing ----------------------------------------------------------------------------------
    def insert(self, rows: list[CatalogRow], *, message: str = "add scenes") -> list[InsertResult]:
        """Append rows whose id and source are new, in one commit; retried on conflicts.

        Returns:
            One :class:`InsertResult` per row, in order.

        Raises:
            CommitConflictError: still conflicting after ``MAX_COMMIT_ATTEMPTS``.
        """
        import icechunk
        import zarr

        repo = self._repository()
        for attempt in range(MAX_COMMIT_ATTEMPTS):
            with self._guard():
                session = repo.writable_session("main")
                g = zarr.open_group(store=session.store, mode="r+", zarr_format=3)
                cols = self.columns(["scene_id", "source_key"], g)
                ids = {str(v) for v in cols["scene_id"]}
                keys = {str(k): str(i) for k, i in zip(cols["source_key"], cols["scene_id"])}
                results, new = [], []
                for row in rows:
                    vals = row.values()
                    if vals["source_key"] in keys:
                        results.append(InsertResult(scene_id=row.record.scene_id, status="exists",
                                                    existing=keys[vals["source_key"]]))
                    elif vals["scene_id"] in ids:
                        results.append(InsertResult(scene_id=row.record.scene_id, status="taken",
                                                    existing=vals["scene_id"]))
                    else:
                        results.append(InsertResult(scene_id=row.record.scene_id, status="added"))
                        ids.add(vals["scene_id"])
                        keys[vals["source_key"]] = vals["scene_id"]
                        new.append(vals)
                if not new:
                    return results
                n0 = len(cols["scene_id"])
                for name, (dtype, _) in COLUMNS.items():
                    arr = g[name]
                    arr.resize((n0 + len(new),))
                    values = [v[name] for v in new]
                    arr[n0:] = np.asarray(values, dtype=np.float64 if dtype == "float64" else object)
                try:
                    session.commit(message)
                    return results
                except (icechunk.ConflictError, icechunk.RebaseFailedError):
                    pass  # another writer committed first: re-apply on the new tip
            time.sleep(min(2.0, 0.01 * 2 ** min(attempt, 8)) * (0.5 + random.random()))
        raise CommitConflictError(
            f"{self.location.url}: the catalog commit conflicted {MAX_COMMIT_ATTEMPTS} times with "
            "other writers; nothing was listed, run the command again"
        )
