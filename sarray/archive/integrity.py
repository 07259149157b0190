"""Chunks that cannot rot silently: checksums on write, named errors on read, ``sarray check``.

Every array sarray writes carries zarr's ``crc32c`` codec after the compressor, so a flipped
bit or a truncated chunk fails its checksum instead of decoding into changed pixels (Icechunk
checks none of its own on native chunks). A chunk object deleted from storage is reported by
Icechunk as "not found". Readers get one error naming the archive, scene, variable and chunk,
whatever the cause: :class:`CheckedArray` wraps the zarr array under the lazy dataset, so
export, quicklook, translate, training pairs and evaluation all fail the same way.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sarray.errors import ChunkError

# zstd level 3: zarr's default level, a good speed/ratio balance on float32 SAR.
ZSTD_LEVEL = 3
# Threads that verify chunks in `sarray check` (I/O bound on object storage).
CHECK_THREADS = 8


def checked_codecs() -> list[Any]:
    """Compressor chain of every array sarray writes: zstd, then a crc32c checksum."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return [ZstdCodec(level=ZSTD_LEVEL), Crc32cCodec()]


def describe_failure(e: BaseException) -> str:
    """A short reason for a failed chunk read."""
    text = str(e)
    low = text.lower()
    if "checksum" in low:
        return "checksum mismatch"
    if "not found" in low or isinstance(e, FileNotFoundError):
        return "chunk object missing from storage"
    if "decompress" in low or "zstd" in low or "frame" in low:
        return "corrupt chunk (does not decompress)"
    if "range" in low or "length" in low or "size" in low or "truncat" in low:
        return "truncated chunk"
    return f"unreadable chunk ({type(e).__name__}: {text.strip().splitlines()[0][:120] if text.strip() else ''})"


def chunk_index(key: tuple[slice, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    """The chunk that a read starting at ``key`` falls in."""
    return tuple((k.start or 0) // c for k, c in zip(key, chunks))


@dataclass(frozen=True)
class ChunkContext:
    """Where an array lives, for error messages."""

    archive: str
    scene_id: str
    variable: str

    def error(self, index: tuple[int, ...], reason: str) -> ChunkError:
        return ChunkError(
            f"{self.archive}: scene {self.scene_id}, {self.variable} chunk {index}: {reason}; "
            f"re-ingest the scene (`sarray check {self.archive} {self.scene_id}` lists every "
            "damaged chunk)"
        )


class CheckedArray:
    """A zarr array whose failed reads raise :class:`ChunkError` naming the chunk.

    Dask reads it through ``__getitem__`` with slices that never cross a chunk border (the dask
    chunks are the zarr chunks), so the chunk of a failure is known exactly.
    """

    def __init__(self, array: Any, context: ChunkContext) -> None:
        self.array = array
        self.context = context
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.ndim = len(self.shape)
        self.chunks = tuple(array.chunks)

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return self.array[key]
        except Exception as e:  # any decode or storage failure becomes one named error
            k = key if isinstance(key, tuple) else (key,)
            idx = chunk_index(tuple(s if isinstance(s, slice) else slice(s, s + 1) for s in k),
                              self.chunks)
            raise self.context.error(idx, describe_failure(e)) from None


def checked_dask(array: Any, context: ChunkContext, name: str) -> Any:
    """A dask array over ``array`` with one task per zarr chunk, reads checked."""
    import dask.array as da

    return da.from_array(CheckedArray(array, context), chunks=array.chunks, lock=False,
                         asarray=True, fancy=False, name=name, inline_array=True)


@dataclass(frozen=True, kw_only=True)
class Damage:
    """One damaged chunk found by :func:`check_group`."""

    scene_id: str
    variable: str
    chunk: tuple[int, ...]
    reason: str

    def line(self, archive: str) -> str:
        return f"{archive}: scene {self.scene_id}, {self.variable} chunk {self.chunk}: {self.reason}"


def _chunk_keys(array: Any) -> list[tuple[int, ...]]:
    grid = [range(max(1, math.ceil(s / c))) if s else range(0)
            for s, c in zip(array.shape, array.chunks)]
    return list(itertools.product(*grid)) if array.shape else [()]


def check_group(group: Any, scene_id: str) -> tuple[int, list[Damage]]:
    """Read back every chunk of every array in ``group``.

    Returns:
        (chunks checked, damaged chunks).
    """
    arrays = [(name, arr) for name, arr in group.arrays()]
    jobs = [(name, arr, key) for name, arr in arrays for key in _chunk_keys(arr)]

    def one(job: tuple[str, Any, tuple[int, ...]]) -> Damage | None:
        name, arr, key = job
        sl = tuple(slice(k * c, min((k + 1) * c, s)) for k, c, s in zip(key, arr.chunks, arr.shape))
        try:
            arr[sl] if sl else arr[...]
        except Exception as e:
            return Damage(scene_id=scene_id, variable=name, chunk=key, reason=describe_failure(e))
        return None

    with cf.ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        found = [d for d in pool.map(one, jobs) if d is not None]
    return len(jobs), sorted(found, key=lambda d: (d.variable, d.chunk))


@dataclass(frozen=True, kw_only=True)
class CheckReport:
    """What :func:`check_archive` found."""

    archive: str
    scenes: int
    chunks: int
    damage: list[Damage]
    problems: list[str]  # structural: unreadable repositories, orphans

    @property
    def ok(self) -> bool:
        return not self.damage and not self.problems

    def lines(self) -> list[str]:
        out = [d.line(self.archive) for d in self.damage] + [f"{self.archive}: {p}" for p in self.problems]
        verdict = "ok" if self.ok else f"{len(self.damage)} damaged chunk(s), {len(self.problems)} problem(s)"
        out.append(f"checked {self.scenes} scene(s), {self.chunks} chunk(s): {verdict}")
        return out


def check_archive(archive: Any, scene_ids: list[str] | None = None) -> CheckReport:
    """Verify every chunk of the given scenes (default: every catalogued scene).

    Checking the whole archive also reports repositories under ``scenes/`` that neither the
    catalog nor a write in progress accounts for.
    """
    import zarr

    from sarray.archive.layout import SCENES_GROUP
    from sarray.errors import ArchiveError

    archive.require()
    cat = archive.catalog_repo()
    cols = cat.columns(["scene_id", "location"])
    where = {str(i): str(loc) for i, loc in zip(cols["scene_id"], cols["location"])}
    ids = scene_ids if scene_ids is not None else list(where)
    if scene_ids is not None:
        archive.records(scene_ids)  # names the archive and the known scenes if one is unknown
    chunks, damage, problems = 0, [], []
    for sid in ids:
        try:
            session = archive.scene_repo(where[sid]).readonly_session(branch="main")
            group = zarr.open_group(store=session.store, mode="r", zarr_format=3)
        except (ArchiveError, Exception) as e:
            problems.append(f"scene {sid}: repository {SCENES_GROUP}/{where[sid]} unreadable "
                            f"({str(e).strip().splitlines()[0][:160]})")
            continue
        n, found = check_group(group, sid)
        chunks += n
        damage += found
    if scene_ids is None:
        busy = {str(i.get("location")) for i in archive.intents()}
        known = set(where.values()) | busy
        for name in archive.location.list_children(SCENES_GROUP):
            if name not in known:
                problems.append(f"{SCENES_GROUP}/{name}: a repository that no scene lists "
                                "and no write in progress owns; it is safe to delete")
    return CheckReport(archive=archive.url, scenes=len(ids), chunks=chunks, damage=damage,
                       problems=problems)
