"""The ingest configuration."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sarray.archive.layout import PLATFORMS, POLARISATIONS, UNITS, ArchiveLayout, validate_scene_id
from sarray.errors import ConfigError

Calibration = Literal["sigma0", "beta0", "gamma0", "none"]
Grouping = Literal["per-file", "stack"]
CALIBRATIONS: tuple[str, ...] = ("sigma0", "beta0", "gamma0", "none")
GROUPINGS: tuple[str, ...] = ("per-file", "stack")


@dataclass(frozen=True, kw_only=True)
class Window:
    """A pixel window ``[row, row + height) x [col, col + width)`` of the source."""

    row: int
    col: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if min(self.row, self.col) < 0 or min(self.height, self.width) <= 0:
            raise ConfigError(
                f"`window` ({self.row},{self.col},{self.height},{self.width}) needs row, col >= 0 "
                "and height, width > 0: write it as ROW,COL,HEIGHT,WIDTH"
            )

    @classmethod
    def parse(cls, text: str) -> Window:
        """Parse ``"ROW,COL,HEIGHT,WIDTH"``."""
        try:
            row, col, height, width = (int(v) for v in text.split(","))
        except ValueError:
            raise ConfigError(
                f"`window` ({text!r}) must be four integers ROW,COL,HEIGHT,WIDTH, e.g. 0,0,2048,2048"
            ) from None
        return cls(row=row, col=col, height=height, width=width)


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """What to ingest and how to label it.

    Args:
        platform: spaceborne | airborne | simulated | synthetic.
        units: force the units of float inputs (``db`` or ``linear``); None infers them (negative
            values or "db" in the file name or band description mean dB).
        scene_id: the scene id; None derives it from the file name. With several files and
            ``grouping="per-file"`` it must be None.
        sensor: the sensor name; None infers Sentinel-1 from file names and SAFE manifests.
        acquisition_time: ISO 8601 time; None parses it from the file name or SAFE metadata.
        pols: polarisation labels, one per output band; None reads band descriptions and file
            names (``_vv``, ``-vh``...), else labels bands ``B1``, ``B2``...
        spacing_m: pixel spacing in metres for rasters without georeferencing (e.g. MSTAR
            chips). Without it such rasters are refused.
        grouping: ``per-file`` makes one scene of each path; ``stack`` makes one scene of all
            paths (a multi-file polarisation stack that must share grid and CRS).
        calibration: for Sentinel-1 SAFE: sigma0, beta0 or gamma0 from the product's LUTs, or
            none to keep DN.
        swath: SAFE swath to read (e.g. ``IW``, ``IW1``); None takes the first one.
        burst: SLC burst index within the swath; None reads the whole swath.
        window: ingest only this pixel window of the source.
        frequency: for NISAR products: frequency ``A`` or ``B``.
        crs: the CRS of a raster that has a geotransform (e.g. from a worldfile) or GCPs but
            no CRS, e.g. ``EPSG:32631``. A raster with its own, different CRS is refused.
        layout: chunking of the archive arrays.
        parallel_files: how many files are staged at once (their chunks share one dask pool).
    """

    platform: str = "spaceborne"
    units: str | None = None
    scene_id: str | None = None
    sensor: str | None = None
    acquisition_time: str | None = None
    pols: tuple[str, ...] | None = None
    spacing_m: float | None = None
    grouping: str = "per-file"
    calibration: str = "sigma0"
    swath: str | None = None
    burst: int | None = None
    window: Window | None = None
    frequency: str = "A"
    crs: str | None = None
    layout: ArchiveLayout = field(default_factory=ArchiveLayout)
    # Two files at once keeps both cores busy when one file is small; more only adds memory.
    parallel_files: int = 2

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise ConfigError(f"`platform` ({self.platform!r}) must be one of {PLATFORMS}")
        if self.units is not None and self.units not in UNITS:
            raise ConfigError(f"`units` ({self.units!r}) must be one of {UNITS}, or unset to infer")
        if self.scene_id is not None:
            validate_scene_id(self.scene_id)
        if self.pols is not None:
            bad = [p for p in self.pols if p not in POLARISATIONS and not p.startswith("B")]
            if bad or len(set(self.pols)) != len(self.pols):
                raise ConfigError(
                    f"`pols` ({','.join(self.pols)}) must be distinct labels from {POLARISATIONS}"
                )
        if self.spacing_m is not None and not self.spacing_m > 0:
            raise ConfigError(f"`spacing_m` ({self.spacing_m}) must be a positive number of metres")
        if self.grouping not in GROUPINGS:
            raise ConfigError(f"`grouping` ({self.grouping!r}) must be one of {GROUPINGS}")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"`calibration` ({self.calibration!r}) must be one of {CALIBRATIONS}")
        if self.frequency not in ("A", "B"):
            raise ConfigError(f"`frequency` ({self.frequency!r}) must be A or B (NISAR products)")
        if self.crs is not None:
            from pyproj import CRS
            from pyproj.exceptions import CRSError

            try:
                CRS.from_user_input(self.crs)
            except CRSError:
                raise ConfigError(f"`crs` ({self.crs!r}) is not a CRS pyproj knows; write it as "
                                  "EPSG:XXXX (e.g. EPSG:32631) or as WKT") from None
        if self.burst is not None and self.burst < 0:
            raise ConfigError(f"`burst` ({self.burst}) must be >= 0")
        if self.acquisition_time is not None:
            try:
                dt.datetime.fromisoformat(self.acquisition_time.replace("Z", "+00:00"))
            except ValueError:
                raise ConfigError(
                    f"`acquisition_time` ({self.acquisition_time!r}) must be ISO 8601, "
                    "e.g. 2023-02-12T10:31:00"
                ) from None
        if self.parallel_files < 1:
            raise ConfigError(f"`parallel_files` ({self.parallel_files}) must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IngestConfig:
        d = dict(data)
        if isinstance(d.get("layout"), dict):
            d["layout"] = ArchiveLayout.from_dict(d["layout"])
        if isinstance(d.get("window"), dict):
            d["window"] = Window(**d["window"])
        if d.get("pols") is not None:
            d["pols"] = tuple(d["pols"])
        return cls(**d)
