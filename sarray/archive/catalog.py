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
from sarray.archive.location import Location, repository_config
from sarray.config import MAX_COMMIT_ATTEMPTS
from sarray.errors import ArchiveError, CommitConflictError

# The arrays of the catalog: name -> (dtype, row chunk, columns). Few arrays, because an append
# rewrites the last chunk of each: numeric values share 2-D arrays (a query reads ``geo`` whole),
# text has one array per field, and the JSON records have small chunks (a lookup reads one).
GEO = "geo"  # float64 (row, 5): min_lon, min_lat, max_lon, max_lat, acquisition time (s)
HASH = "hash"  # uint64 (row, 3): scene id hash, source key hash (128 bits)
ARRAYS: dict[str, tuple[str, int, int | None]] = {
    GEO: ("float64", 8192, 5),
    HASH: ("uint64", 8192, 3),
    "scene_id": ("str", 4096, None),
    "location": ("str", 4096, None),
    "sensor": ("str", 4096, None),
    "platform": ("str", 4096, None),
    "record": ("str", 256, None),
}
GEO_FIELDS = ("min_lon", "min_lat", "max_lon", "max_lat", "time_s")
BBOX_COLUMNS = GEO_FIELDS[:4]
# Threads writing the arrays of one append at once (one per array).
WRITE_THREADS = len(ARRAYS)


_POOL: Any = None


def _writer_pool() -> Any:
    """Threads kept for the appends (starting threads per commit costs more than the writes)."""
    global _POOL
    import concurrent.futures as cf

    if _POOL is None:
        _POOL = cf.ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="sarray-catalog")
    return _POOL


def _hash64(text: str) -> tuple[int, int]:
    d = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(d[:8], "little"), int.from_bytes(d[8:16], "little")


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
        """The row's value in each array of :data:`ARRAYS`."""
        r = self.record
        bbox = r.bbox_lonlat or (np.nan,) * 4
        t = parse_time(r.acquisition_time).timestamp() if r.acquisition_time else np.nan
        key = source_key(r.source_sha256, r.extra.get("selection"))
        return {
            GEO: [float(v) for v in bbox] + [float(t)],
            HASH: [_hash64(r.scene_id)[0], *_hash64(key)],
            "scene_id": r.scene_id, "location": self.location, "sensor": r.sensor,
            "platform": r.platform,
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

    def mask(self, geo: np.ndarray) -> np.ndarray:
        """Rows that pass the numeric filters (bbox, time); ``geo`` is the (row, 5) array."""
        cols = {k: geo[:, i] for i, k in enumerate(GEO_FIELDS)}
        keep = np.ones(geo.shape[0], dtype=bool)
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
        geo = np.array([CatalogRow(record=rec, location="").values()[GEO]], dtype=np.float64)
        if not self.mask(geo)[0]:
            return False
        if self.platform is not None and rec.platform != self.platform:
            return False
        return self.sensor is None or self.sensor.lower() in rec.sensor.lower()

    @property
    def numeric(self) -> bool:
        """Whether the query filters on the ``geo`` array."""
        return self.bbox_lonlat is not None or self.start is not None or self.end is not None


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
                self._repo = icechunk.Repository.open(self.location.icechunk_storage(),
                                                      config=repository_config())
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
        repo = None
        for attempt in range(MAX_COMMIT_ATTEMPTS):
            try:
                repo = icechunk.Repository.create(storage, config=repository_config())
                break
            except icechunk.IcechunkError:
                try:  # created by another writer meanwhile (maybe not visible yet: retry)
                    repo = icechunk.Repository.open(storage, config=repository_config())
                    break
                except icechunk.IcechunkError:
                    time.sleep(0.05 * (1 + attempt))
        if repo is None:
            raise CommitConflictError(f"{self.location.url}: the catalog could not be created; "
                                      "run the command again")
        self._repo = repo
        for _ in range(MAX_COMMIT_ATTEMPTS):
            session = repo.writable_session("main")
            try:
                zarr.open_group(store=session.store, mode="r", zarr_format=3)
                return  # the columns exist
            except FileNotFoundError:
                pass
            root = zarr.group(store=session.store, zarr_format=3,
                              attributes={"sarray_catalog_arrays": list(ARRAYS),
                                          "sarray_geo_fields": list(GEO_FIELDS)})
            for name, (dtype, rows, width) in ARRAYS.items():
                fill = {"float64": np.nan, "uint64": 0, "str": ""}[dtype]
                root.create_array(name, shape=(0, width) if width else (0,),
                                  chunks=(rows, width) if width else (rows,),
                                  dtype=str if dtype == "str" else dtype, fill_value=fill,
                                  compressors=checked_codecs(),
                                  dimension_names=("row", "field") if width else ("row",))
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

    def _rows_of_ids(self, g: Any, scene_ids: list[str]) -> np.ndarray:
        """Rows whose id is one of ``scene_ids``: candidates by hash, confirmed on the text."""
        h = np.asarray(g[HASH][:, 0])
        keys = np.array([_hash64(sid)[0] for sid in scene_ids], dtype=np.uint64)
        # A few ids: one scan each (cheaper than sorting the whole column); many: np.isin.
        maybe = (h[:, None] == keys).any(axis=1) if keys.size <= 16 else np.isin(h, keys)
        cand = np.flatnonzero(maybe)
        if cand.size == 0:
            return cand
        ids = np.asarray(g["scene_id"].get_coordinate_selection((cand,)))
        return cand[np.isin(ids, scene_ids)]

    def lookup(self, scene_id: str) -> tuple[SceneRecord, str] | None:
        """(record, repository folder) of one scene, or None."""
        return self.lookup_many([scene_id]).get(scene_id)

    def lookup_many(self, scene_ids: list[str]) -> dict[str, tuple[SceneRecord, str]]:
        """:meth:`lookup` of several ids from one snapshot (unknown ids are left out)."""
        g = self._group()
        rows = self._rows_of_ids(g, scene_ids)
        if rows.size == 0:
            return {}
        locs = np.asarray(g["location"].get_coordinate_selection((rows,)))
        return {r.scene_id: (r, str(loc)) for r, loc in zip(self._records(g, rows), locs)}

    def find_source(self, key: str) -> str | None:
        """The id of the scene ingested from the source with this :func:`source_key`, if any."""
        g = self._group()
        h = np.asarray(g[HASH][...])
        k0, k1 = _hash64(key)
        hit = np.flatnonzero((h[:, 1] == np.uint64(k0)) & (h[:, 2] == np.uint64(k1)))
        return str(g["scene_id"].get_coordinate_selection((hit[:1],))[0]) if hit.size else None

    def query(self, flt: Query | None = None) -> list[SceneRecord]:
        """Records matching ``flt``: numeric filters on the ``geo`` array first, text filters on
        the candidates, and the JSON records of the matches last."""
        flt = flt or Query()
        g = self._group()
        n = int(g["scene_id"].shape[0])
        rows = np.arange(n)
        if flt.numeric:
            rows = rows[flt.mask(np.asarray(g[GEO][...]))]
        if flt.platform is not None and rows.size:
            plat = np.asarray(g["platform"][...])[rows]
            rows = rows[plat == flt.platform]
        if flt.sensor is not None and rows.size:
            sens = np.asarray(g["sensor"][...])[rows]
            want = flt.sensor.lower()
            rows = rows[np.array([want in str(s).lower() for s in sens], dtype=bool)]
        return self._records(g, rows)

    # -- writing ----------------------------------------------------------------------------------
    def _decide(self, g: Any, rows: list[CatalogRow],
                vals: list[dict[str, Any]]) -> tuple[list[InsertResult], list[int]]:
        """Which rows are new: a source already listed is ``exists``, an id ``taken``."""
        h = np.asarray(g[HASH][...])
        batch = np.array([v[HASH] for v in vals], dtype=np.uint64).reshape(-1, 3)
        if len(rows) <= 16:  # one scan per row: cheaper than sorting the whole column
            maybe_key = np.array([bool((h[:, 1] == k).any()) for k in batch[:, 1]], dtype=bool)
            maybe_id = np.array([bool((h[:, 0] == k).any()) for k in batch[:, 0]], dtype=bool)
        else:  # bulk: vectorised first pass; exact check below
            maybe_key = np.isin(batch[:, 1], h[:, 1])
            maybe_id = np.isin(batch[:, 0], h[:, 0])
        results: list[InsertResult] = []
        new: list[int] = []
        seen_ids: set[str] = set()
        seen_keys: dict[tuple[int, int], str] = {}
        for i, row in enumerate(rows):
            sid = row.record.scene_id
            _, k0, k1 = (int(x) for x in batch[i])
            key_rows = (np.flatnonzero((h[:, 1] == batch[i, 1]) & (h[:, 2] == batch[i, 2]))
                        if maybe_key[i] else np.empty(0, dtype=np.int64))
            if key_rows.size or (k0, k1) in seen_keys:
                other = (str(g["scene_id"].get_coordinate_selection((key_rows[:1],))[0])
                         if key_rows.size else seen_keys[(k0, k1)])
                results.append(InsertResult(scene_id=sid, status="exists", existing=other))
            elif sid in seen_ids or (maybe_id[i] and self._rows_of_ids(g, [sid]).size):
                results.append(InsertResult(scene_id=sid, status="taken", existing=sid))
            else:
                results.append(InsertResult(scene_id=sid, status="added"))
                seen_ids.add(sid)
                seen_keys[(k0, k1)] = sid
                new.append(i)
        return results, new

    def _append(self, g: Any, new: list[dict[str, Any]]) -> None:
        """Grow every array by ``len(new)`` rows and write them (the arrays in parallel)."""
        n0 = int(g["scene_id"].shape[0])
        n1 = n0 + len(new)

        def write(name: str) -> None:
            dtype, _, width = ARRAYS[name]
            arr = g[name]
            arr.resize((n1, width) if width else (n1,))
            values = [v[name] for v in new]
            np_dtype = {"float64": np.float64, "uint64": np.uint64, "str": object}[dtype]
            arr[n0:n1] = np.asarray(values, dtype=np_dtype)

        list(_writer_pool().map(write, ARRAYS))

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
        vals = [row.values() for row in rows]
        for attempt in range(MAX_COMMIT_ATTEMPTS):
            with self._guard():
                session = repo.writable_session("main")
                g = zarr.open_group(store=session.store, mode="r+", zarr_format=3)
                results, new = self._decide(g, rows, vals)
                if not new:
                    return results
                self._append(g, [vals[i] for i in new])
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
