"""SAR values <-> model space, both ways, and the polarisation-to-RGB channel mapping.

The diffusion model sees 3 channels in [0, 1]. Archive values (DN, linear amplitude or intensity,
or dB) are mapped there per polarisation with one of three methods:

- ``amplitude`` (the paper's): ``x = A / (amplitude_mean + k * amplitude_std)``, clipped to
  [0, 1], where ``A = to_amplitude(values)`` and the statistics are the scene's (archive
  attribute ``statistics``). ``k`` is 3 by default. Linear in amplitude, so speckle statistics
  are preserved up to a scale.
- ``db``: a fixed window, ``x = (dB - db_min) / (db_max - db_min)`` clipped, with
  ``dB = 20 log10(A)`` (dB of intensity). Good for quicklooks and wide dynamic ranges.
- ``db_stats``: the same with a per-scene window ``db_mean +/- k * db_std``.

The inverse (:func:`denormalise`) is exact on the unclipped range: for any value whose model
value lies in [0, 1], ``denormalise(normalise(v)) == v`` up to float rounding (computed in
float64).

Channel mapping (the model has 3 RGB channels):

- single-pol ``(P,)``: R = G = B = P. Back: the mean of the three channels.
- dual-pol: R = co-pol (``VV`` or ``HH``), G = cross-pol (``VH`` or ``HV``), B = (R + G) / 2.
  A pair given as (cross, co) is reordered so that co-pol is always red; back: co-pol from R,
  cross-pol from G, B dropped. Two polarisations that are both co- or both cross-pol keep their
  given order.
- Three or more polarisations are refused: select one or two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from sarray.archive.radiometry import from_amplitude, to_amplitude, to_db
from sarray.errors import ConfigError

NormalisationMethod = Literal["amplitude", "db", "db_stats"]
NORMALISATION_METHODS: tuple[str, ...] = ("amplitude", "db", "db_stats")

_CO_POLS = ("VV", "HH")
_CROSS_POLS = ("VH", "HV")

#: Keys of one polarisation's entry in the archive's ``statistics`` attribute.
STAT_KEYS: tuple[str, ...] = (
    "mean", "std", "min", "max", "valid_fraction",
    "amplitude_mean", "amplitude_std", "db_mean", "db_std",
)


@dataclass(frozen=True, kw_only=True)
class NormalisationConfig:
    """How archive values map into the model's [0, 1] space.

    Args:
        method: ``amplitude`` (A / (mu + k sigma)), ``db`` (fixed window) or ``db_stats``
            (window mu_dB +/- k sigma_dB).
        k_sigma: the ``k`` above; 3 keeps about 99% of Rayleigh-like amplitudes unclipped.
        db_min: lower end of the ``db`` window (dB).
        db_max: upper end of the ``db`` window (dB).
    """

    method: str = "amplitude"
    k_sigma: float = 3.0
    db_min: float = -30.0
    db_max: float = 5.0

    def __post_init__(self) -> None:
        if self.method not in NORMALISATION_METHODS:
            raise ConfigError(
                f"`method` ({self.method!r}) must be one of {NORMALISATION_METHODS}"
            )
        if not np.isfinite(self.k_sigma) or self.k_sigma <= 0:
            raise ConfigError(f"`k_sigma` ({self.k_sigma}) must be a positive number, e.g. 3.0")
        if not (np.isfinite(self.db_min) and np.isfinite(self.db_max)) or self.db_min >= self.db_max:
            raise ConfigError(
                f"`db_min` ({self.db_min}) must be below `db_max` ({self.db_max}), "
                "e.g. -30 and 5"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormalisationConfig:
        return cls(**data)


def compute_statistics(
    values: np.ndarray, *, units: str, quantity: str, polarisations: list[str] | tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Per-polarisation statistics in the archive's ``statistics`` layout.

    Args:
        values: ``(pol, y, x)`` array in archive units; NaN marks no data.
        units: ``dn``, ``linear`` or ``db``.
        quantity: ``amplitude``, ``intensity`` or ``unknown``.
        polarisations: one label per ``pol`` entry.

    Returns:
        ``{pol: {mean, std, min, max, valid_fraction, amplitude_mean, amplitude_std, db_mean,
        db_std}}``; moments are over finite values only.
    """
    values = np.asarray(values)
    if values.ndim != 3 or values.shape[0] != len(polarisations):
        raise ConfigError(
            f"`values` has shape {values.shape} but `polarisations` ({list(polarisations)}) "
            "asks for (pol, y, x) with one plane per label"
        )
    out: dict[str, dict[str, float]] = {}
    for label, plane in zip(polarisations, values):
        plane = plane.astype(np.float64)
        finite = np.isfinite(plane)
        v = plane[finite]
        if v.size == 0:
            raise ConfigError(f"polarisation {label!r} has no finite value: nothing to normalise")
        amp = np.asarray(to_amplitude(v, units=units, quantity=quantity))
        with np.errstate(divide="ignore", invalid="ignore"):
            db = np.asarray(to_db(v, units=units, quantity=quantity))
        db = db[np.isfinite(db)]
        out[str(label)] = {
            "mean": float(v.mean()),
            "std": float(v.std()),
            "min": float(v.min()),
            "max": float(v.max()),
            "valid_fraction": float(finite.mean()),
            "amplitude_mean": float(amp.mean()),
            "amplitude_std": float(amp.std()),
            "db_mean": float(db.mean()) if db.size else float("nan"),
            "db_std": float(db.std()) if db.size else float("nan"),
        }
    return out


def _stat(statistics: dict[str, Any] | None, pol: str, key: str) -> float:
    try:
        value = float(statistics[pol][key])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise ConfigError(
            f"`statistics` has no {key!r} for polarisation {pol!r} (got keys "
            f"{sorted((statistics or {}).get(pol, {}) or {}) if isinstance(statistics, dict) else statistics!r}): "
            "ingest the scene with statistics, compute them with "
            "sarray.models.normalise.compute_statistics, or use method='db'"
        ) from None
    if not np.isfinite(value):
        raise ConfigError(f"`statistics[{pol!r}][{key!r}]` ({value}) must be finite")
    return value


def window(
    config: NormalisationConfig, pol: str, statistics: dict[str, Any] | None
) -> tuple[float, float]:
    """The affine window ``(lo, hi)`` of one polarisation: ``x = (q - lo) / (hi - lo)``.

    ``q`` is amplitude for the ``amplitude`` method (``lo = 0``) and dB otherwise.
    """
    if config.method == "amplitude":
        hi = _stat(statistics, pol, "amplitude_mean") + config.k_sigma * _stat(
            statistics, pol, "amplitude_std"
        )
        if hi <= 0:
            raise ConfigError(
                f"amplitude scale of {pol!r} ({hi}) must be positive: check its statistics"
            )
        return 0.0, hi
    if config.method == "db":
        return config.db_min, config.db_max
    mean = _stat(statistics, pol, "db_mean")
    std = _stat(statistics, pol, "db_std")
    if std <= 0:
        raise ConfigError(
            f"`statistics[{pol!r}]['db_std']` ({std}) must be positive for method='db_stats': "
            "use method='db' on constant scenes"
        )
    return mean - config.k_sigma * std, mean + config.k_sigma * std


def normalise(
    values: np.ndarray,
    *,
    config: NormalisationConfig,
    units: str,
    quantity: str,
    polarisations: list[str] | tuple[str, ...],
    statistics: dict[str, Any] | None,
    clip: bool = True,
) -> np.ndarray:
    """Map archive values ``(..., P, y, x)`` to model space, per polarisation.

    Args:
        values: array whose third-last axis is the polarisation.
        config: the method and its parameters.
        units, quantity: the archive's radiometric description of ``values``.
        polarisations: one label per plane.
        statistics: the scene's ``statistics`` attribute (needed by ``amplitude`` and
            ``db_stats``).
        clip: clip to [0, 1] (the model's range). Without clipping the map is exactly
            invertible everywhere.

    Returns:
        float64 array of the same shape; NaN stays NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 3 or values.shape[-3] != len(polarisations):
        raise ConfigError(
            f"`values` has shape {values.shape}: expected (..., {len(polarisations)}, y, x) "
            f"for polarisations {list(polarisations)}"
        )
    out = np.empty_like(values)
    for i, pol in enumerate(polarisations):
        lo, hi = window(config, pol, statistics)
        plane = values[..., i, :, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            if config.method == "amplitude":
                q = to_amplitude(plane, units=units, quantity=quantity)
            else:
                q = to_db(plane, units=units, quantity=quantity)
            out[..., i, :, :] = (q - lo) / (hi - lo)
    if clip:
        # NaN stays NaN; -inf dB (zero amplitude) becomes 0.
        out = np.clip(out, 0.0, 1.0)
    return out


def denormalise(
    x: np.ndarray,
    *,
    config: NormalisationConfig,
    units: str,
    quantity: str,
    polarisations: list[str] | tuple[str, ...],
    statistics: dict[str, Any] | None,
) -> np.ndarray:
    """Inverse of :func:`normalise` (without clipping): model space back to archive units.

    Returns:
        float64 array of the shape of ``x``. A model value of 0 under the ``amplitude`` method
        is zero amplitude, which is ``-inf`` in dB units.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 3 or x.shape[-3] != len(polarisations):
        raise ConfigError(
            f"`x` has shape {x.shape}: expected (..., {len(polarisations)}, y, x)"
        )
    out = np.empty_like(x)
    for i, pol in enumerate(polarisations):
        lo, hi = window(config, pol, statistics)
        q = x[..., i, :, :] * (hi - lo) + lo
        with np.errstate(divide="ignore", invalid="ignore"):
            if config.method == "amplitude":
                out[..., i, :, :] = from_amplitude(q, units=units, quantity=quantity)
            elif units == "db":
                out[..., i, :, :] = q
            else:
                out[..., i, :, :] = from_amplitude(10.0 ** (q / 20.0), units=units, quantity=quantity)
    return out


def channel_order(polarisations: list[str] | tuple[str, ...]) -> tuple[int, ...]:
    """Indices of ``polarisations`` in model channel order (co-pol first for dual-pol).

    Raises:
        ConfigError: for zero or more than two polarisations.
    """
    pols = [str(p).upper() for p in polarisations]
    if len(pols) == 1:
        return (0,)
    if len(pols) == 2:
        if pols[0] in _CROSS_POLS and pols[1] in _CO_POLS:
            return (1, 0)
        return (0, 1)
    raise ConfigError(
        f"`polarisations` ({list(polarisations)}) must hold one or two labels: the model has 3 "
        "RGB channels (single-pol: R=G=B; dual-pol: R=co, G=cross, B=mean); select one or two "
        "polarisations"
    )


def to_rgb(x: np.ndarray, polarisations: list[str] | tuple[str, ...]) -> np.ndarray:
    """Model-space planes ``(..., P, y, x)`` to model channels ``(..., 3, y, x)``."""
    order = channel_order(polarisations)
    if len(order) == 1:
        p = x[..., 0:1, :, :]
        return np.concatenate([p, p, p], axis=-3)
    r = x[..., order[0] : order[0] + 1, :, :]
    g = x[..., order[1] : order[1] + 1, :, :]
    return np.concatenate([r, g, (r + g) / 2.0], axis=-3)


def from_rgb(rgb: np.ndarray, polarisations: list[str] | tuple[str, ...]) -> np.ndarray:
    """Model channels ``(..., 3, y, x)`` back to planes ``(..., P, y, x)`` in the given order."""
    order = channel_order(polarisations)
    if rgb.shape[-3] != 3:
        raise ConfigError(f"`rgb` has shape {rgb.shape}: expected 3 channels on axis -3")
    if len(order) == 1:
        return rgb.mean(axis=-3, keepdims=True)
    out = np.empty(rgb.shape[:-3] + (2,) + rgb.shape[-2:], dtype=rgb.dtype)
    out[..., order[0], :, :] = rgb[..., 0, :, :]
    out[..., order[1], :, :] = rgb[..., 1, :, :]
    return out
