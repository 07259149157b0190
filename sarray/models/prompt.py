"""Text prompts built from scene metadata: sensor, band, polarisation, target spacing, scene type.

The prompt describes the *output*: an airborne-resolution SAR image at the target spacing, and
says where it came from (a satellite sensor, or a simulated scene in simulated-to-real mode).
Example::

    airborne SAR amplitude image, C-band, VV+VH polarisation, 2.5 m pixel spacing,
    translated from Sentinel-1A, scene: flooded farmland
"""

from __future__ import annotations

from sarray.models.meta import SceneMeta

#: Radar band by sensor-name prefix (lower case). First match wins; unknown sensors: no band.
SENSOR_BANDS: tuple[tuple[str, str], ...] = (
    ("sentinel-1", "C"), ("sentinel1", "C"), ("s1a", "C"), ("s1b", "C"), ("s1c", "C"),
    ("radarsat", "C"), ("rcm", "C"), ("envisat", "C"), ("ers", "C"), ("gaofen-3", "C"),
    ("terrasar", "X"), ("tandem", "X"), ("paz", "X"), ("cosmo", "X"), ("csk", "X"),
    ("iceye", "X"), ("capella", "X"), ("umbra", "X"), ("kompsat-5", "X"), ("sethi", "X"),
    ("metasensing", "X"), ("mstar", "X"),
    ("alos", "L"), ("palsar", "L"), ("saocom", "L"), ("nisar", "L"), ("uavsar", "L"),
    ("jers", "L"), ("biomass", "P"),
)


def guess_band(sensor: str) -> str | None:
    """The radar band of ``sensor`` from :data:`SENSOR_BANDS`, or None when not known."""
    name = sensor.strip().lower()
    for prefix, band in SENSOR_BANDS:
        if name.startswith(prefix):
            return band
    return None


def format_spacing(spacing_m: float) -> str:
    """``2.5`` -> ``"2.5 m"``, ``0.3125`` -> ``"0.312 m"``, ``40.0`` -> ``"40 m"``."""
    return f"{spacing_m:.3g} m"


def build_prompt(
    meta: SceneMeta, *, scale: int, prefix: str = "airborne SAR amplitude image"
) -> str:
    """The prompt of a tile of ``meta`` translated at ``scale``.

    Args:
        meta: the tile's scene.
        scale: output spacing is input spacing / scale.
        prefix: first phrase (where a learned ``<SAR>`` token would go).
    """
    parts = [prefix]
    band = meta.band or guess_band(meta.sensor)
    if band:
        parts.append(f"{band}-band")
    parts.append("+".join(p.upper() for p in meta.polarisations) + " polarisation")
    if meta.pixel_spacing_m is not None:
        target = min(meta.pixel_spacing_m) / scale
        parts.append(f"{format_spacing(target)} pixel spacing")
    if meta.is_simulated:
        parts.append("realistic speckle and texture, from a simulated scene")
    elif meta.sensor and meta.sensor != "unknown":
        parts.append(f"translated from {meta.sensor}")
    if meta.scene_type:
        parts.append(f"scene: {meta.scene_type}")
    return ", ".join(parts)
