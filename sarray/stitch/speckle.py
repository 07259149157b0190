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
  so that the multiplier's lag-1 autocorrelation matches the one measured;
- for a product whose recording is not linear in amplitude (an 8-bit product scaled in dB and
  clipped at 0 DN, as the Umbra GEC is), the same distribution *per level of reflectivity*
  (:attr:`SpeckleModel.levels`): at each level the share of pixels the product records as 0 and
  the table of the others. Such a product's fluctuations are additive in DN rather than
  multiplicative, and its floor takes a fifth of the pixels of a dark area and almost none of a
  bright one; one table for every level cannot say that, a table per level measures it.

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
        levels: ln of the local mean intensity (archive units) at which the per-level statistics
            below were measured, ascending; empty: one table (``log_table``) for every level.
        zero_shares: per level, the share of pixels the product records as exactly 0.
        level_tables: per level, ln n of the pixels not recorded as 0, at each value of
            :data:`Z_GRID`, shifted so that n has unit mean at that level, zeros included.
    """

    log_table: tuple[float, ...]
    sigma_px: float
    looks: float
    lag1: float
    bright_fraction: float
    source: str
    levels: tuple[float, ...] = ()
    zero_shares: tuple[float, ...] = ()
    level_tables: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        if len(self.log_table) != len(Z_GRID):
            raise ConfigError(f"`log_table` has {len(self.log_table)} values; {len(Z_GRID)} expected")
        if not (0.0 <= self.sigma_px <= 8.0):
            raise ConfigError(f"`sigma_px` ({self.sigma_px}) must be in [0, 8]")
        n = len(self.levels)
        if n == 1 or len(self.zero_shares) != n or len(self.level_tables) != n:
            raise ConfigError(f"`levels` ({n}), `zero_shares` ({len(self.zero_shares)}) and "
                              f"`level_tables` ({len(self.level_tables)}) must have one entry "
                              "per level, at least 2 (or none)")
        if n and (np.any(np.diff(self.levels) <= 0) or not all(0.0 <= p < 1.0 for p in self.zero_shares)
                  or any(len(t) != len(Z_GRID) for t in self.level_tables)):
            raise ConfigError("`levels` must ascend, `zero_shares` lie in [0, 1) and each of "
                              f"`level_tables` hold {len(Z_GRID)} values")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["log_table"] = [round(float(v), 6) for v in self.log_table]
        d["levels"] = [round(float(v), 6) for v in self.levels]
        d["zero_shares"] = [round(float(v), 6) for v in self.zero_shares]
        d["level_tables"] = [[round(float(v), 4) for v in t] for t in self.level_tables]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeckleModel:
        data = {k: v for k, v in data.items() if k != "set"}  # the set's name, as a job passes it
        return cls(**{**data, "log_table": tuple(float(v) for v in data["log_table"]),
                      "levels": tuple(float(v) for v in data.get("levels", ())),
                      "zero_shares": tuple(float(v) for v in data.get("zero_shares", ())),
                      "level_tables": tuple(tuple(float(v) for v in t)
                                            for t in data.get("level_tables", ()))})

    def summary(self) -> str:
        text = (f"ENL {self.looks:.2f}, lag-1 correlation {self.lag1:.2f} (impulse sigma "
                f"{self.sigma_px:.2f} px), bright scatterers {100 * self.bright_fraction:.2f}%")
        if self.levels:
            text += (f"; measured at {len(self.levels)} levels, recorded as 0: "
                     f"{100 * self.zero_shares[0]:.1f}% at the darkest, "
                     f"{100 * self.zero_shares[-1]:.1f}% at the brightest")
        return text


def single_look() -> SpeckleModel:
    """Fully developed single-look speckle without correlation (exponential intensity): the
    physical default for a model that ships no statistics."""
    from scipy.special import ndtr

    u = np.clip(ndtr(Z_GRID), 1e-12, 1 - 1e-12)
    table = np.log(-np.log1p(-u))  # exponential quantiles, unit mean
    return SpeckleModel(log_table=tuple(_unit_mean(table)), sigma_px=0.0, looks=1.0, lag1=0.0,
                        bright_fraction=float(np.exp(-10.0)),
                        source="default: single-look exponential speckle, uncorrelated")


# ``--speckle`` unset or ``auto``: the set of the scene's own sensor when the model stores one.
AUTO = "auto"


def speckle_name(weights: str | Path | None, name: str | None, sensor: str | None) -> str | None:
    """The set :func:`load_speckle` takes for a scene of ``sensor``: ``name`` when given (other
    than ``auto``); else the scene's sensor's own set when the model stores one (an Umbra scene
    made finer keeps the Umbra product's recording: its output is written in that product's
    units); else None (the model's default)."""
    if name not in (None, AUTO):
        return name
    sets, _ = speckle_sets(weights)
    return sensor if sensor in sets else None


def load_speckle(weights: str | Path | None, name: str | None = None, *,
                 sensor: str | None = None) -> SpeckleModel:
    """A set of speckle statistics stored with a model (``speckle.json``: ``{"default": NAME,
    "sets": {NAME: statistics}}``), or :func:`single_look` when the model stores none.

    Args:
        weights: the model's weights folder (None: no stored statistics).
        name: the set (a sensor, e.g. ``Umbra-04``, or ``pooled``); None or ``auto``: the set of
            ``sensor`` when the model stores one, else the model's default.
        sensor: the sensor of the scene to be speckled (see :func:`speckle_name`).

    Raises:
        ConfigError: an unreadable file, or a ``name`` the model does not store.
    """
    sets, default = speckle_sets(weights)
    name = speckle_name(weights, name, sensor) if sets else (None if name == AUTO else name)
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
    """Every set of statistics stored with a model, and the name of the default one (the file
    is parsed once per version of it: a job asks per scene)."""
    if weights is None:
        return {}, None
    path = Path(weights) / SPECKLE_FILE
    if not path.is_file():
        return {}, None
    st = path.stat()
    sets, default = _read_sets(str(path), st.st_mtime_ns, st.st_size)
    return dict(sets), default


@functools.lru_cache(maxsize=8)
def _read_sets(path_str: str, mtime_ns: int, size: int) -> tuple[dict[str, SpeckleModel], str | None]:
    """:func:`speckle_sets` of one version of a file (the statistics are frozen; callers get a
    copy of the dict)."""
    path = Path(path_str)
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
               seed: int, scene: str, log_level: np.ndarray | None = None) -> np.ndarray:
    """The speckle multiplier (P, h, w) over ``region`` of scene ``scene`` (unit mean)."""
    return np.exp(log_multiplier(model, region, n_pol, seed=seed, scene=scene, log_level=log_level))


def log_multiplier(model: SpeckleModel, region: tuple[int, int, int, int], n_pol: int, *,
                   seed: int, scene: str, log_level: np.ndarray | None = None) -> np.ndarray:
    """ln of :func:`multiplier` (float32), without leaving the log domain.

    ``log_level`` (P, h, w): ln of the reflectivity's intensity the multiplier applies to; with a
    model measured per level (:attr:`SpeckleModel.levels`) each pixel draws from its level's
    statistics, and a pixel the product records as 0 gets ``-inf``. Without it, or without
    levels, every pixel draws from ``log_table``."""
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
    if model.levels and log_level is not None:
        return _level_lookup(model, z, log_level)
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


@functools.lru_cache(maxsize=8)
def _fine_level_tables(model: SpeckleModel) -> np.ndarray:
    """The per-level tables (L, F), each resampled :data:`_FINE` times finer."""
    fine_z = np.linspace(Z_GRID[0], Z_GRID[-1], (len(Z_GRID) - 1) * _FINE + 1)
    tables = np.stack([np.interp(fine_z, Z_GRID, np.asarray(t)) for t in model.level_tables])
    tables = tables.astype(np.float32)
    tables.setflags(write=False)
    return tables


def _level_lookup(model: SpeckleModel, z: np.ndarray, log_level: np.ndarray) -> np.ndarray:
    """ln n of the standard normal field ``z`` at each pixel's level.

    Between two measured levels the pixel draws from the mixture of their distributions (the
    weights linear in ln level): recorded as 0 with the interpolated share, and otherwise at the
    same conditional quantile of both levels' tables, interpolated. Beyond the ends, the end's.
    """
    from scipy.special import ndtr, ndtri

    lv = np.asarray(model.levels, np.float64)
    lvl = np.nan_to_num(np.asarray(log_level, np.float64), nan=lv[0], posinf=lv[-1], neginf=lv[0])
    t = np.interp(lvl, lv, np.arange(len(lv), dtype=np.float64))
    k = np.minimum(t.astype(np.int32), len(lv) - 2)
    w = (t - k).astype(np.float32)
    shares = np.asarray(model.zero_shares, np.float32)
    p0 = shares[k] * (1 - w) + shares[k + 1] * w
    u = ndtr(z).astype(np.float32)
    zero = u < p0
    cond = np.clip((u - p0) / np.maximum(1 - p0, np.float32(1e-6)), 1e-9, 1 - 1e-9)
    zc = ndtri(cond).astype(np.float32)
    tables = _fine_level_tables(model)
    step = np.float32(_FINE / (Z_GRID[1] - Z_GRID[0]))
    idx = np.clip((zc - np.float32(Z_GRID[0])) * step + np.float32(0.5), 0, tables.shape[1] - 1)
    idx = idx.astype(np.int32)
    out = tables[k, idx] * (1 - w) + tables[k + 1, idx] * w
    out[zero] = -np.inf
    return out.astype(np.float32)


def _keep_one_per_lit_block(zero: np.ndarray, lg: np.ndarray, source_lg: np.ndarray,
                            scale: int) -> np.ndarray:
    """``zero`` without blocks that are all zeros under an input pixel with intensity
    (``source_lg``: its ln intensity, the log floor where it records 0): the output must
    multilook onto that input, so the pixel of the brightest reflectivity in such a block is
    kept (the consistency step then gives it the block's intensity, as a clipped product
    records a lone scatterer among zeros). Deterministic in the pixels, so seamless."""
    from sarray.archive.radiometry import LOG_FLOOR

    p, hh, ww = zero.shape
    h, w = min(hh // scale, source_lg.shape[-2]), min(ww // scale, source_lg.shape[-1])
    blocks = zero[:, : h * scale, : w * scale].reshape(p, h, scale, w, scale)
    with np.errstate(invalid="ignore"):
        lit = blocks.all(axis=(2, 4)) & (source_lg[:, :h, :w] > LOG_FLOOR)
    if not lit.any():
        return zero
    zero = zero.copy()
    cells = lg[:, : h * scale, : w * scale].reshape(p, h, scale, w, scale).transpose(0, 1, 3, 2, 4)
    cells = np.nan_to_num(cells.reshape(p, h, w, scale * scale), nan=-np.inf)
    best = cells.argmax(axis=-1)
    pp, by, bx = np.nonzero(lit)
    k = best[pp, by, bx]
    zero[pp, by * scale + k // scale, bx * scale + k % scale] = False
    return zero


def synthesise(reflectivity: np.ndarray, region: tuple[int, int, int, int], *, scale: int,
               units: str, quantity: str, speckle: SpeckleModel | None, seed: int, scene: str,
               source: np.ndarray | None) -> np.ndarray:
    """A chunk's output from its blended reflectivity (archive units, over ``region``): times
    the speckle (when ``speckle`` is given), then the smooth consistency against ``source`` (the
    input pixels under ``region``, when given), in one pass through the log domain."""
    from sarray.archive.radiometry import LOG_FLOOR, from_log_intensity, to_log_intensity
    from sarray.stitch.consistency import apply_consistency, correct_log, target_log_intensity

    if speckle is None:
        if source is None:
            return reflectivity
        return apply_consistency(reflectivity, source, scale=scale, units=units, quantity=quantity)
    lg = to_log_intensity(reflectivity, units=units, quantity=quantity)
    ln_n = log_multiplier(speckle, region, reflectivity.shape[0], seed=seed, scene=scene,
                          log_level=lg if speckle.levels else None)
    zero = None
    if speckle.levels:
        # Pixels the product records as 0: the consistency step sees them as the log floor,
        # and they are written as exactly 0 (the product's floor).
        drawn_zero = np.isneginf(ln_n)
        zero = drawn_zero & np.isfinite(lg)
        if source is not None and scale > 1:
            zero = _keep_one_per_lit_block(
                zero, lg, to_log_intensity(source, units=units, quantity=quantity), scale)
        lg = np.where(zero, LOG_FLOOR, lg + np.where(drawn_zero, np.float32(0.0), ln_n))
    else:
        lg = lg + ln_n
    if source is not None and scale > 1:
        lg = correct_log(lg, target_log_intensity(source, units=units, quantity=quantity), scale=scale)
    out = from_log_intensity(lg, units=units, quantity=quantity)
    if zero is not None and units != "db":
        out[zero & np.isfinite(out)] = 0.0
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
                     quanta: list[float | None] | None = None, by_level: bool = False) -> SpeckleModel:
    """The speckle statistics of high-resolution intensity images (2-D arrays, any scale).

    Args:
        intensities: the images, in intensity.
        source: how they were chosen (stored with the statistics).
        seed: of the simulation that fits the impulse width.
        quanta: per image, the amplitude step of an integer product (1 for 8-bit DN), or None
            for a float product. Integer products are measured only where the local mean is at
            least :data:`QUANTUM_MARGIN` steps, so the whole table, lower tail included, is
            measured speckle: dark areas clipped to 0 by the quantiser do not enter it.
        by_level: also measure the distribution per level of local mean, zeros included
            (:func:`level_statistics`): for a product whose recording is not linear in
            amplitude (dB-scaled 8-bit, clipped at 0 DN). Only for images of one product: the
            levels are in its units.
    """
    from scipy.special import ndtr

    quanta = quanta if quanta is not None else [None] * len(intensities)
    # Multipliers (all, homogeneous) where they can be measured, and everywhere (the fallback).
    kept, kept_h, every, every_h = [], [], [], []
    lag = []
    finite_nr: list[tuple[np.ndarray, np.ndarray]] = []  # (n, R) of every measurable pixel
    for img, q in zip(intensities, quanta):
        n, h, r = _ratio(img)
        if by_level:
            fin = np.isfinite(n)
            finite_nr.append((n[fin], r[fin]))
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
    levels: dict[str, Any] = {}
    if by_level:
        levels = level_statistics(np.concatenate([n for n, _ in finite_nr]),
                                  np.concatenate([r for _, r in finite_nr]))
        if multiplicative(levels):
            levels = {}
    draft = SpeckleModel(log_table=tuple(table), sigma_px=0.0, looks=looks, lag1=lag1,
                         bright_fraction=float((allv > 10).mean()), source=source, **levels)
    return SpeckleModel(**{**asdict(draft), "log_table": tuple(table),
                           "sigma_px": _fit_sigma(draft, lag1, seed)})


# Per-level statistics: this many levels (equal numbers of pixels), each of at least MIN_PER_LEVEL.
LEVELS = 16
MIN_PER_LEVEL = 2_000


def level_statistics(n: np.ndarray, r: np.ndarray) -> dict[str, tuple[Any, ...]]:
    """The distribution of the multiplier ``n = I / R`` per level of ``R`` (1-D arrays of the
    same pixels, zeros of ``n`` included): :class:`SpeckleModel`'s ``levels`` (median ln R of
    each level), ``zero_shares`` and ``level_tables`` (ln n of the nonzero pixels at
    :data:`Z_GRID`, shifted to a unit mean of n, zeros included). Levels are equal-count bins
    of ln R, at most :data:`LEVELS`, each of at least :data:`MIN_PER_LEVEL` pixels.

    Raises:
        ConfigError: fewer than 2 * MIN_PER_LEVEL pixels, or a level with only zeros.
    """
    from scipy.special import ndtr

    ok = np.isfinite(n) & np.isfinite(r) & (r > 0) & (n >= 0)
    n, lr = n[ok], np.log(r[ok])
    bins = min(LEVELS, n.size // MIN_PER_LEVEL)
    if bins < 2:
        raise ConfigError(f"{n.size} pixels are too few to measure speckle per level; "
                          f"at least {2 * MIN_PER_LEVEL} are needed")
    order = np.argsort(lr, kind="stable")
    p = np.clip(ndtr(Z_GRID), 0, 1)
    levels, shares, tables = [], [], []
    for part in np.array_split(order, bins):
        v = n[part]
        pos = v[v > 0]
        if pos.size < 2:
            raise ConfigError(f"a level of local mean {np.exp(np.median(lr[part])):.3g} holds only "
                              "zeros: the product records nothing there; measure more scenes")
        share = 1.0 - pos.size / v.size
        table = np.maximum.accumulate(np.quantile(np.log(pos), p))
        # Unit mean at this level: (1 - share) * E[n | n > 0] = 1.
        table = _unit_mean(table) - np.log1p(-share)
        levels.append(float(np.median(lr[part])))
        shares.append(float(share))
        tables.append(tuple(float(x) for x in table))
    keep = np.concatenate([[True], np.diff(levels) > 1e-6])  # ties of ln R (integer products)
    return {"levels": tuple(np.asarray(levels)[keep]),
            "zero_shares": tuple(np.asarray(shares)[keep]),
            "level_tables": tuple(t for t, k in zip(tables, keep) if k)}


# A recording is multiplicative (one table serves every level) when its per-level statistics
# differ by at most this much: the interquartile range of ln n over the inner levels (the darkest
# and brightest hold the extremes of the scene: shadow, bright targets), and the share of zeros.
MULTIPLICATIVE_IQR_SPREAD = 0.3
MULTIPLICATIVE_ZERO_SPREAD = 0.05


def multiplicative(levels: dict[str, tuple[Any, ...]]) -> bool:
    """Whether per-level statistics (:func:`level_statistics`) say the same at every level, so
    that the product's recording is linear in amplitude and one table serves (8-bit MSTAR: the
    inner levels' IQR of ln n within 0.07 nats, 0.6-2.3% zeros), or not (the dB-scaled Umbra
    GEC: IQR 2.2 nats at the dark end and 0.8 at the bright one, 57% zeros down to 3%)."""
    from scipy.special import ndtr

    p = ndtr(Z_GRID)
    q1, q3 = int(np.searchsorted(p, 0.25)), int(np.searchsorted(p, 0.75))
    iqr = np.array([t[q3] - t[q1] for t in levels["level_tables"]])
    inner = iqr[1:-1] if iqr.size > 2 else iqr
    shares = np.asarray(levels["zero_shares"])
    return bool(np.ptp(inner) <= MULTIPLICATIVE_IQR_SPREAD
                and np.ptp(shares) <= MULTIPLICATIVE_ZERO_SPREAD)


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
