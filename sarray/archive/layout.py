"""Names and rules of the archive layout, in one place.

An archive is a folder or an ``s3://bucket/prefix`` holding Icechunk repositories of Zarr v3
data (transactional commits on object storage as on disk)::

    A.zarr/
      sarray.json                   marker: layout version (written once, when created)
      catalog/                      Icechunk repository: one row per scene, as columns
      scenes/<scene_id>.<token>/    Icechunk repository per scene; its root group is the scene:
        backscatter   (pol, y, x)   float32, chunked (1, chunk_px, chunk_px), zstd + crc32c
        spatial_ref   ()            CRS and geotransform (or GCPs), rioxarray's convention
        pol           (pol,)        polarisation labels, e.g. "VV", "VH"
      pending/<scene_id>.<token>.json   intent of a commit in progress (see store.recover)
      .sarray.lock                  local archives only: the commit guard

A repository per scene keeps every commit's cost independent of the archive's size (an
Icechunk snapshot lists every node of its repository); the ``<token>`` makes concurrent writers
of one id write to different places, and the catalog's transactional insert decides which wins.

Scene attributes (keys below) carry sensor, platform, spacing, units, time, source and stats.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sarray.errors import ConfigError

# Dimensions and variables.
DIM_POL = "pol"
DIM_Y = "y"
DIM_X = "x"
VAR_BACKSCATTER = "backscatter"
VAR_SPATIAL_REF = "spatial_ref"
SCENES_GROUP = "scenes"

# The archive's own objects.
ARCHIVE_MARKER = "sarray.json"
CATALOG_REPO = "catalog"
PENDING_DIR = "pending"
LOCK_NAME = ".sarray.lock"
ATTR_LAYOUT_VERSION = "sarray_layout_version"
LAYOUT_VERSION = 2
# Layout 1 (a plain Zarr hierarchy with the catalog in the root attributes): migrated by
# `sarray migrate`.
ATTR_CATALOG = "sarray_catalog"
LEGACY_LAYOUT_VERSION = 1

# Names the layout uses (and Zarr's own): never valid scene ids, whatever the case.
RESERVED_NAMES = frozenset(n.lower() for n in (
    ARCHIVE_MARKER, CATALOG_REPO, SCENES_GROUP, PENDING_DIR, "zarr.json", ".zattrs", ".zgroup",
    ".zarray", "c", VAR_BACKSCATTER, VAR_SPATIAL_REF, "refs", "snapshots", "manifests",
    "chunks", "transactions", "config.yaml",
))

# Scene attribute keys.
ATTR_SCENE_ID = "scene_id"
ATTR_SENSOR = "sensor"
ATTR_PLATFORM = "platform"
ATTR_SPACING_M = "pixel_spacing_m"
ATTR_POLS = "polarisations"
ATTR_UNITS = "units"
ATTR_QUANTITY = "quantity"
ATTR_TIME = "acquisition_time"
ATTR_SOURCE = "source_files"
ATTR_CHECKSUM = "source_sha256"
ATTR_STATS = "statistics"
ATTR_BBOX = "bbox_lonlat"
ATTR_GEOREF = "georeferencing"
ATTR_CALIBRATION = "calibration"
ATTR_SARRAY_VERSION = "sarray_version"

Platform = Literal["spaceborne", "airborne", "simulated", "synthetic"]
Units = Literal["dn", "linear", "db"]
Quantity = Literal["amplitude", "intensity", "unknown"]
Georeferencing = Literal["affine", "gcps", "none"]

PLATFORMS: tuple[str, ...] = ("spaceborne", "airborne", "simulated", "synthetic")
UNITS: tuple[str, ...] = ("dn", "linear", "db")
QUANTITIES: tuple[str, ...] = ("amplitude", "intensity", "unknown")
POLARISATIONS: tuple[str, ...] = ("HH", "HV", "VH", "VV")

# A scene id is a single safe path component: it can never escape the archive.
_SCENE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None, tuples as lists, numpy scalars as Python ones:
    what strict JSON (Zarr metadata in Icechunk, ``--json`` output) accepts."""
    import math

    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    return value


def validate_scene_id(scene_id: str) -> str:
    """Return ``scene_id`` if it is a safe archive key, else raise.

    Args:
        scene_id: the proposed id.

    Raises:
        ConfigError: if the id is empty, too long, contains a path separator, ``..``, or any
            character outside ``[A-Za-z0-9._-]``, or starts with something else than a letter or
            digit.
    """
    if not isinstance(scene_id, str) or not _SCENE_ID_RE.match(scene_id) or ".." in scene_id:
        raise ConfigError(
            f"`scene_id` ({scene_id!r}) is not a safe scene id: use 1-128 characters from "
            "[A-Za-z0-9._-], starting with a letter or digit, without '..'"
        )
    if scene_id.lower() in RESERVED_NAMES:
        raise ConfigError(
            f"`scene_id` ({scene_id!r}) is reserved: the archive layout uses that name; "
            f"pick another id, e.g. {scene_id.replace('.', '_')}_scene"
        )
    return scene_id


def sanitize_scene_id(stem: str) -> str:
    """Turn a file stem into a valid scene id (unsafe characters become ``_``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", stem).replace("..", "_")
    cleaned = cleaned.lstrip("._-") or "scene"
    if cleaned.lower() in RESERVED_NAMES:
        cleaned = f"{cleaned}_scene"
    return validate_scene_id(cleaned[:128])


@dataclass(frozen=True, kw_only=True)
class ArchiveLayout:
    """How scenes are chunked on disk.

    Args:
        chunk_px: chunk edge in pixels along y and x (one polarisation per chunk). 1024 keeps a
            float32 chunk at 4 MiB: large enough for object stores, small enough to stream.
        shard_px: optional Zarr v3 shard edge in pixels (a multiple of ``chunk_px``); shards
            group many chunks in one file, which keeps file counts low for continental archives.
    """

    chunk_px: int = 1024
    shard_px: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_px, int) or not 16 <= self.chunk_px <= 16384:
            raise ConfigError(
                f"`chunk_px` ({self.chunk_px!r}) must be an integer in [16, 16384]; 1024 is usual"
            )
        if self.shard_px is not None and (
            not isinstance(self.shard_px, int)
            or self.shard_px < self.chunk_px
            or self.shard_px % self.chunk_px
        ):
            raise ConfigError(
                f"`shard_px` ({self.shard_px!r}) must be a multiple of `chunk_px` "
                f"({self.chunk_px}): e.g. {self.chunk_px * 8}, or leave it unset for no sharding"
            )

    @property
    def write_block_px(self) -> int:
        """Edge of the blocks that are written in one piece (a shard if sharded, else a chunk)."""
        return self.shard_px or self.chunk_px

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchiveLayout:
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class SceneRecord:
    """One catalog entry: what ``ls`` and filters need without opening the scene.

    Args:
        scene_id: the scene key.
        sensor: e.g. ``"Sentinel-1B"``, ``"Umbra-04"``; ``"unknown"`` when not known.
        platform: spaceborne | airborne | simulated | synthetic.
        acquisition_time: ISO 8601 UTC string, or None when not known.
        bbox_lonlat: (min_lon, min_lat, max_lon, max_lat), or None without georeferencing.
        shape: (pol, y, x).
        pixel_spacing_m: (y, x) spacing in metres.
        polarisations: labels along ``pol``.
        units: dn | linear | db.
        source_sha256: checksum of the source file(s); ingesting the same source is a no-op.
    """

    scene_id: str
    sensor: str
    platform: str
    acquisition_time: str | None
    bbox_lonlat: tuple[float, float, float, float] | None
    shape: tuple[int, int, int]
    pixel_spacing_m: tuple[float, float] | None
    polarisations: tuple[str, ...]
    units: str
    source_sha256: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneRecord:
        d = dict(data)
        for key in ("bbox_lonlat", "shape", "pixel_spacing_m", "polarisations"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)
