"""Speckle from physics: the synthesised intensity is a reflectivity times fully developed speckle.

The network generates the reflectivity (structure, edges, targets). The speckle is a unit-mean
multiplicative field with the target sensor's statistics, estimated from its high-resolution
scenes (:func:`estimate_speckle`) and stored with the model (``speckle.json`` in the weights
folder, :func:`load_speckle`):

- the distribution of the multiplier ``n = I / R`` (``R`` the local mean of intensity over
  :data:`REFLECTIVITY_PX` pixels), as a table of ``ln n`` against a standard normal value: its
  spread gives the number of looks, and its upper tail the distribution of bright scatterers;
- its spatial correlation (the impulse response), as the width of a Gaussian kernel applied to a
  white Gaussian field before the table maps it onto the multiplier (a Gaussian copula), tuned
  so that the multiplier's lag-1 autocorrelation matches the one measured.

Sampling is seamless and resumable: the white field is drawn in fixed blocks of
:data:`NOISE_BLOCK_PX` output pixels, each seeded from (seed, scene, block, polarisation), so any
region of a scene (a chunk, with or without a halo) gets the same multiplier at the same pixel.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sarray.errors import ConfigError

# The reflectivity the speckle multiplies: the local mean of intensity over this many pixels.
REFLECTIVITY_PX = 5
# The white field is drawn in blocks of this many output pixels (fixed: the seed layout).
NOISE_BLOCK_PX = 128
# The table of ln(multiplier) against a standard normal value z, on this grid.
Z_GRID = np.linspace(-5.5, 5.5, 1101)
# Sampling looks the table up on a grid this many times finer (nearest value: one gather).
_FINE = 8
SPECKLE_FILE = "speckle.json"
# What a translation writes: the speckled image, or the network's reflectivity alone.
OUTPUTS = ("speckled", "reflectivity")
_SALT = 0x5BECC1E


@dataclass(frozen=True, kw_only=True)
class SpeckleModel:
    """The statistics of a sensor's fully developed speckle (see the module docstring).

    Args:
        log_table: ln of the unit-mean intensity multiplier at each value of :data:`Z_GRID`.
        sigma_px: width of the Gaussian impulse response of the field (output pixels; 0: white).
        looks: equivalent number of looks on homogeneous areas: of the Gamma speckle with the
            upper-quartile-to-median ratio of n there (robust to 8-bit zeros below it).
        lag1: lag-1 autocorrelation of n (mean of rows and columns), on homogeneous areas.
        bright_fraction: share of pixels brighter than ten times their local mean.
        source: how and from what the statistics were estimated.
    """

    log_table: tuple[float, ...]
    sigma_px: float
    looks: float
    lag1: float
    bright_fraction: float
    source: str

    def __post_init__(self) -> None:
        if len(self.log_table) != len(Z_GRID):
            raise ConfigError(f"`log_table` has {len(self.log_table)} values; {len(Z_GRID)} expected")
        if not (0.0 <= self.sigma_px <= 8.0):
            raise ConfigError(f"`sigma_px` ({self.sigma_px}) must be in [0, 8]")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["log_table"] = [round(float(v), 6) for v in self.log_table]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeckleModel:
        return cls(**{**data, "log_table": tuple(float(v) for v in data["log_table"])})

    def summary(self) -> str:
        return (f"ENL {self.looks:.2f}, lag-1 correlation {self.lag1:.2f} (impulse sigma "
                f"{self.sigma_px:.2f} px), bright scatterers {100 * self.bright_fraction:.2f}%")


def single_look() -> SpeckleModel:
    """Fully developed single-look speckle without correlation (exponential intensity): the
    physical default for a model that ships no statistics."""
    from scipy.special import ndtr

    u = np.clip(ndtr(Z_GRID), 1e-12, 1 - 1e-12)
    table = np.log(-np.log1p(-u))  # exponential quantiles, unit mean
    return SpeckleModel(log_table=tuple(_unit_mean(table)), sigma_px=0.0, looks=1.0, lag1=0.0,
                        bright_fraction=float(np.exp(-10.0)),
                        source="default: single-look exponential speckle, uncorrelated")


def load_speckle(weights: str | Path | None, name: str | None = None) -> SpeckleModel:
    """A set of speckle statistics stored with a model (``speckle.json``: ``{"default": NAME,
    "sets": {NAME: statistics}}``), or :func:`single_look` when the model stores none.

    Args:
        weights: the model's weights folder (None: no stored statistics).
        name: the set (a sensor, e.g. ``Umbra-04``, or ``pooled``); None: the model's default.

    Raises:
        ConfigError: an unreadable file, or a ``name`` the model does not store.
    """
    sets, default = speckle_sets(weights)
    if not sets:
        if name not in (None, "single-look"):
            raise ConfigError(f"`speckle` ({name!r}): the model stores no speckle statistics; "
                              "leave it unset (single-look speckle)")
        return single_look()
    key = default if name is None else name
    if key not in sets:
        raise ConfigError(f"`speckle` ({name!r}) is not stored with the model; it has "
                          f"{sorted(sets)} (default {default!r})")
    return sets[key]


def speckle_sets(weights: str | Path | None) -> tuple[dict[str, SpeckleModel], str | None]:
    """Every set of statistics stored with a model, and the name of the default one."""
    if weights is None:
        return {}, None
    path = Path(weights) / SPECKLE_FILE
    if not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text())
        if "log_table" in data:  # a single set
            return {"default": SpeckleModel.from_dict(data)}, "default"
        sets = {k: SpeckleModel.from_dict(v) for k, v in data["sets"].items()}
        default = str(data["default"])
        if default not in sets:
            raise KeyError(default)
        return sets, default
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"speckle statistics {str(path)!r} are unreadable ({e}); re-estimate "
                          "them with `python recipes/tiny/speckle_stats.py`") from None


def _unit_mean(table: np.ndarray) -> np.ndarray:
    """Shift a ln-multiplier table so that E[n] = 1 under a standard normal z."""
    pdf = np.exp(-0.5 * Z_GRID**2)
    mean = np.trapezoid(np.exp(table) * pdf, Z_GRID) / np.trapezoid(pdf, Z_GRID)
    return table - np.log(mean)


def _kernel(sigma: float) -> np.ndarray:
    """A 1-D Gaussian impulse response with unit energy (the field keeps unit variance)."""
    if sigma <= 1e-3:
        return np.ones(1, np.float32)
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return (k / np.sqrt((k * k).sum())).astype(np.float32)


@functools.lru_cache(maxsize=512)
def _white_block(scene: str, by: int, bx: int, p: int, seed: int) -> np.ndarray:
    """One seeded :data:`NOISE_BLOCK_PX` block of the white field (cached per process: the
    blocks under a chunk's halo are its neighbours' too; 512 blocks are 32 MiB)."""
    from sarray.models.seeding import derive_seed

    b = NOISE_BLOCK_PX
    rng = np.random.default_rng(derive_seed(scene, (by, bx, p), seed ^ _SALT))
    blk = rng.standard_normal((b, b), dtype=np.float32)
    blk.setflags(write=False)
    return blk


def _white(region: tuple[int, int, int, int], n_pol: int, seed: int, scene: str) -> np.ndarray:
    """The white Gaussian field over ``region`` (the same values whatever region asks)."""
    y0, y1, x0, x1 = region
    b = NOISE_BLOCK_PX
    out = np.empty((n_pol, y1 - y0, x1 - x0), np.float32)
    for p in range(n_pol):
        for by in range(y0 // b, (y1 - 1) // b + 1):
            for bx in range(x0 // b, (x1 - 1) // b + 1):
                blk = _white_block(scene, by, bx, p, seed)
                a0, a1 = max(y0, by * b), min(y1, (by + 1) * b)
                c0, c1 = max(x0, bx * b), min(x1, (bx + 1) * b)
                out[p, a0 - y0 : a1 - y0, c0 - x0 : c1 - x0] = blk[a0 - by * b : a1 - by * b,
                                                                   c0 - bx * b : c1 - bx * b]
    return out


def multiplier(model: SpeckleModel, region: tuple[int, int, int, int], n_pol: int, *,
               seed: int, scene: str) -> np.ndarray:
    """The speckle multiplier (P, h, w) over ``region`` of scene ``scene`` (unit mean)."""
    return np.exp(log_multiplier(model, region, n_pol, seed=seed, scene=scene))


def log_multiplier(model: SpeckleModel, region: tuple[int, int, int, int], n_pol: int, *,
                   seed: int, scene: str) -> np.ndarray:
    """ln of :func:`multiplier` (float32), without leaving the log domain."""
    from scipy.ndimage import correlate1d

    k = _kernel(model.sigma_px)
    r = len(k) // 2
    y0, y1, x0, x1 = region
    # Regions near the scene's top/left edge draw blocks at negative indices: fine, they are
    # seeded like any other block.
    z = _white((y0 - r, y1 + r, x0 - r, x1 + r), n_pol, seed, scene)
    if r:
        z = correlate1d(z, k, axis=-1, mode="constant")[..., :, r:-r]
        z = correlate1d(z, k, axis=-2, mode="constant")[..., r:-r, :]
    table = _fine_table(model)
    step = np.float32(_FINE / (Z_GRID[1] - Z_GRID[0]))
    idx = np.clip((z - np.float32(Z_GRID[0])) * step + np.float32(0.5), 0, len(table) - 1)
    return table[idx.astype(np.int32)]


@functools.lru_cache(maxsize=8)
def _fine_table(model: SpeckleModel) -> np.ndarray:
    """The model's table resampled :data:`_FINE` times finer (cached per model)."""
    fine_z = np.linspace(Z_GRID[0], Z_GRID[-1], (len(Z_GRID) - 1) * _FINE + 1)
    table = np.interp(fine_z, Z_GRID, np.asarray(model.log_table)).astype(np.float32)
    table.setflags(write=False)
    return table


def synthesise(reflectivity: np.ndarray, region: tuple[int, int, int, int], *, scale: int,
               units: str, quantity: str, speckle: SpeckleModel | None, seed: int, scene: str,
               source: np.ndarray | None) -> np.ndarray:
    """A chunk's output from its blended reflectivity (archive units, over ``region``): times
    the speckle (when ``speckle`` is given), then the smooth consistency against ``source`` (the
    input pixels under ``region``, when given), in one pass through the log domain."""
    from sarray.archive.radiometry import from_log_intensity, to_log_intensity
    from sarray.stitch.consistency import apply_consistency, correct_log, target_log_intensity

    if speckle is None:
        if source is None:
            return reflectivity
        return apply_consistency(reflectivity, source, scale=scale, units=units, quantity=quantity)
    lg = to_log_intensity(reflectivity, units=units, quantity=quantity)
    lg = lg + log_multiplier(speckle, region, reflectivity.shape[0], seed=seed, scene=scene)
    if source is not None and scale > 1:
        lg = correct_log(lg, target_log_intensity(source, units=units, quantity=quantity), scale=scale)
    out = from_log_intensity(lg, units=units, quantity=quantity)
    if source is not None and scale == 1:
        out = apply_consistency(out, source, scale=1, units=units, quantity=quantity)
    return np.where(np.isfinite(reflectivity), out, reflectivity).astype(np.float32)


def apply_speckle(values: np.ndarray, region: tuple[int, int, int, int], model: SpeckleModel, *,
                  seed: int, scene: str, units: str, quantity: str) -> np.ndarray:
    """``values`` (reflectivity, archive units, over ``region``) times the speckle multiplier:
    :func:`synthesise` without the consistency step (for callers of a bare replica)."""
    return synthesise(values, region, scale=1, units=units, quantity=quantity, speckle=model,
                      seed=seed, scene=scene, source=None)


# -- estimation ----------------------------------------------------------------------------------
def _ratio(intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n = I / R (R the local mean over REFLECTIVITY_PX), a mask of homogeneous pixels, and R."""
    from scipy.ndimage import uniform_filter

    i = intensity.astype(np.float64)
    valid = np.isfinite(i)
    num = uniform_filter(np.where(valid, i, 0.0), REFLECTIVITY_PX, mode="reflect")
    den = uniform_filter(valid.astype(np.float64), REFLECTIVITY_PX, mode="reflect")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0.5, num / den, np.nan)
        n = np.where(valid & (r > 0), i / r, np.nan)
        # Homogeneous: the reflectivity varies little around the pixel (lowest quarter of the
        # local spread of ln R over 15 px).
        lr = np.log(np.where(r > 0, r, np.nan))
    lr_f = np.nan_to_num(lr, nan=np.nanmean(lr))
    var = uniform_filter(lr_f**2, 15) - uniform_filter(lr_f, 15) ** 2
    ok = np.isfinite(n)
    homog = ok & (var <= np.quantile(var[ok], 0.25))
    return n, homog, r


def _lag1(n: np.ndarray, mask: np.ndarray) -> float:
    vals = []
    for a, b, m in ((n[:, 1:], n[:, :-1], mask[:, 1:] & mask[:, :-1]),
                    (n[1:], n[:-1], mask[1:] & mask[:-1])):
        if m.sum() > 10:
            vals.append(np.corrcoef(a[m], b[m])[0, 1])
    return float(np.mean(vals)) if vals else 0.0


# Where an image is an integer product (8-bit DN), the multiplier is measured only where the
# local mean amplitude is at least this many quantisation steps: there rounding to whole DN
# clips under 0.4% of single-look pixels to zero, so the table's lower tail is the speckle's,
# not the quantiser's (a fifth of the Umbra training plane is 0 DN).
QUANTUM_MARGIN = 8
# Fewer measured multipliers than this (too little bright-enough area): the lower tail falls
# back to Gamma speckle of the looks fitted on the upper quartile over the median.
MIN_MEASURED = 20_000


def estimate_speckle(intensities: list[np.ndarray], *, source: str, seed: int = 0,
                     quanta: list[float | None] | None = None) -> SpeckleModel:
    """The speckle statistics of high-resolution intensity images (2-D arrays, any scale).

    Args:
        intensities: the images, in intensity.
        source: how they were chosen (stored with the statistics).
        seed: of the simulation that fits the impulse width.
        quanta: per image, the amplitude step of an integer product (1 for 8-bit DN), or None
            for a float product. Integer products are measured only where the local mean is at
            least :data:`QUANTUM_MARGIN` steps, so the whole table, lower tail included, is
            measured speckle: dark areas clipped to 0 by the quantiser do not enter it.
    """
    from scipy.special import ndtr

    quanta = quanta if quanta is not None else [None] * len(intensities)
    # Multipliers (all, homogeneous) where they can be measured, and everywhere (the fallback).
    kept, kept_h, every, every_h = [], [], [], []
    lag = []
    for img, q in zip(intensities, quanta):
        n, h, r = _ratio(img)
        ok = np.isfinite(n) & (n > 0)
        keep = ok
        if q:
            with np.errstate(invalid="ignore"):
                keep = ok & (r >= (QUANTUM_MARGIN * q) ** 2)
        kept.append(n[keep])
        kept_h.append(n[h & keep])
        every.append(n[ok])
        every_h.append(n[h])
        lag.append(_lag1(n, h))
    measured = (sum(v.size for v in kept) >= MIN_MEASURED
                and sum(v.size for v in kept_h) >= MIN_MEASURED // 4)
    # Too little bright-enough area: every positive multiplier, Gamma speckle below the median.
    allv = np.concatenate(kept if measured else every)
    hom = np.concatenate(kept_h if measured else every_h)
    table = np.quantile(np.log(allv), np.clip(ndtr(Z_GRID), 0, 1))
    lag1 = float(np.mean(lag))
    looks = _looks_from_quantiles(hom)
    table = np.maximum.accumulate(table) if measured else _physical_lower_tail(table, looks)
    table = _unit_mean(table)
    draft = SpeckleModel(log_table=tuple(table), sigma_px=0.0, looks=looks, lag1=lag1,
                         bright_fraction=float((allv > 10).mean()), source=source)
    return SpeckleModel(**{**asdict(draft), "log_table": tuple(table),
                           "sigma_px": _fit_sigma(draft, lag1, seed)})


# When too little of an integer product is bright enough to measure (MIN_MEASURED), the table
# follows Gamma speckle of the fitted looks below this probability (the median): there the dark
# pixels would be dominated by quantisation (8-bit zeros), not by speckle, and would otherwise
# put whole percents of pixels 40 dB down.
LOWER_TAIL_P = 0.5


def _looks_from_quantiles(n: np.ndarray) -> float:
    """The looks L of Gamma speckle whose upper-quartile-to-median ratio is that of ``n``: scale
    free, so neither what lies below the median (8-bit zeros, clipping) nor the normalisation
    moves it, unlike 1 / var(n)."""
    from scipy.optimize import brentq
    from scipy.special import gammaincinv

    q50, q75 = np.quantile(n, [0.5, 0.75])
    if not q50 > 0:
        return 0.3
    ratio = float(q75 / q50)
    def f(looks: float) -> float:
        return float(gammaincinv(looks, 0.75) / gammaincinv(looks, 0.5)) - ratio

    lo, hi = 0.3, 200.0
    if f(lo) <= 0:
        return lo
    if f(hi) >= 0:
        return hi
    return float(brentq(f, lo, hi))


def _physical_lower_tail(table: np.ndarray, looks: float) -> np.ndarray:
    """The empirical ln-multiplier table with its lower tail replaced by Gamma(looks) speckle's,
    shifted to meet the empirical value at :data:`LOWER_TAIL_P`; the upper tail (bright
    scatterers) stays as measured."""
    from scipy.special import gammaincinv, ndtr

    p = np.clip(ndtr(Z_GRID), 1e-300, 1 - 1e-16)
    gamma = np.log(np.maximum(gammaincinv(looks, p) / looks, 1e-300))
    j = int(np.searchsorted(p, LOWER_TAIL_P))
    out = np.array(table, dtype=np.float64)
    out[:j] = gamma[:j] + (out[j] - gamma[j])
    return np.maximum.accumulate(out)


def _fit_sigma(model: SpeckleModel, lag1: float, seed: int) -> float:
    """The impulse width whose sampled multiplier has lag-1 autocorrelation ``lag1``."""
    sigmas = np.array([0.0, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3, 1.7, 2.2, 3.0])
    got = []
    for s in sigmas:
        m = SpeckleModel(**{**asdict(model), "sigma_px": float(s)})
        n = multiplier(m, (0, 256, 0, 256), 1, seed=seed, scene="fit")[0]
        got.append(_lag1(n, np.ones_like(n, bool)))
    got = np.maximum.accumulate(np.array(got))
    if lag1 <= got[0]:
        return 0.0
    return float(np.interp(lag1, got, sigmas))
