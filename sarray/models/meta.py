"""What the replica needs to know about a tile's scene, read from the archive's attributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sarray.archive import layout
from sarray.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class SceneMeta:
    """The scene attributes the replica uses (a subset of the archive's scene attributes).

    Args:
        units: ``dn``, ``linear`` or ``db`` (archive attribute ``units``).
        quantity: ``amplitude``, ``intensity`` or ``unknown``.
        polarisations: labels along the tile's first axis, e.g. ``("VV", "VH")``.
        pixel_spacing_m: ``(dy, dx)`` input spacing in metres, or None when not known.
        sensor: e.g. ``"Sentinel-1A"``; ``"unknown"`` when not known.
        platform: spaceborne | airborne | simulated | synthetic. ``simulated`` switches the
            replica to simulated-to-real mode.
        statistics: the archive's per-polarisation ``statistics`` attribute.
        band: radar band letter (``"C"``, ``"X"``, ``"L"``...); None: guessed from ``sensor``.
        scene_type: e.g. ``"urban"``, ``"flooded farmland"``; None when not known.
    """

    units: str
    quantity: str = "unknown"
    polarisations: tuple[str, ...]
    pixel_spacing_m: tuple[float, float] | None = None
    sensor: str = "unknown"
    platform: str = "spaceborne"
    statistics: dict[str, Any] | None = field(default=None, compare=False)
    band: str | None = None
    scene_type: str | None = None

    def __post_init__(self) -> None:
        if self.units not in layout.UNITS:
            raise ConfigError(f"`units` ({self.units!r}) must be one of {layout.UNITS}")
        if self.quantity not in layout.QUANTITIES:
            raise ConfigError(f"`quantity` ({self.quantity!r}) must be one of {layout.QUANTITIES}")
        if self.platform not in layout.PLATFORMS:
            raise ConfigError(f"`platform` ({self.platform!r}) must be one of {layout.PLATFORMS}")
        if (
            not isinstance(self.polarisations, tuple)
            or not self.polarisations
            or not all(isinstance(p, str) and p for p in self.polarisations)
        ):
            raise ConfigError(
                f"`polarisations` ({self.polarisations!r}) must be a non-empty tuple of labels, "
                "e.g. ('VV', 'VH')"
            )
        if self.pixel_spacing_m is not None and (
            len(self.pixel_spacing_m) != 2 or not all(s > 0 for s in self.pixel_spacing_m)
        ):
            raise ConfigError(
                f"`pixel_spacing_m` ({self.pixel_spacing_m!r}) must be (dy, dx) in metres, both "
                "positive, or None"
            )
        if self.statistics is not None and not isinstance(self.statistics, dict):
            raise ConfigError(
                f"`statistics` ({type(self.statistics).__name__}) must be a dict keyed by "
                "polarisation, or None"
            )

    @property
    def is_simulated(self) -> bool:
        """True for simulated-to-real translation."""
        return self.platform == "simulated"

    def to_dict(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "quantity": self.quantity,
            "polarisations": list(self.polarisations),
            "pixel_spacing_m": list(self.pixel_spacing_m) if self.pixel_spacing_m else None,
            "sensor": self.sensor,
            "platform": self.platform,
            "statistics": self.statistics,
            "band": self.band,
            "scene_type": self.scene_type,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneMeta:
        """Build from scene attributes; keys the replica does not use are ignored.

        Raises:
            ConfigError: if ``units`` or ``polarisations`` is missing or a value is invalid.
        """
        if isinstance(data, SceneMeta):
            return data
        if not isinstance(data, dict):
            raise ConfigError(
                f"`meta` ({type(data).__name__}) must be a dict of scene attributes or a SceneMeta"
            )
        missing = [k for k in (layout.ATTR_UNITS, layout.ATTR_POLS) if data.get(k) is None]
        if missing:
            raise ConfigError(
                f"`meta` lacks {missing}: pass the scene's archive attributes (at least "
                f"{layout.ATTR_UNITS!r} and {layout.ATTR_POLS!r})"
            )
        spacing = data.get(layout.ATTR_SPACING_M)
        return cls(
            units=str(data[layout.ATTR_UNITS]),
            quantity=str(data.get(layout.ATTR_QUANTITY) or "unknown"),
            polarisations=tuple(str(p) for p in data[layout.ATTR_POLS]),
            pixel_spacing_m=tuple(float(s) for s in spacing) if spacing is not None else None,  # type: ignore[arg-type]
            sensor=str(data.get(layout.ATTR_SENSOR) or "unknown"),
            platform=str(data.get(layout.ATTR_PLATFORM) or "spaceborne"),
            statistics=data.get(layout.ATTR_STATS),
            band=data.get("band"),
            scene_type=data.get("scene_type"),
        )
