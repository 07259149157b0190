"""Baselines for the same coarse input: bicubic, Lanczos, and a speckle-statistics baseline.

All baselines work on linear intensity ``(h, w)`` and return ``(h * scale, w * scale)``.

- :func:`bicubic`: bicubic upsampling of intensity (Pillow's float resampler, pixel-area
  aligned), negative overshoots clipped to a floor.
- :func:`lanczos`: the same with the Lanczos-3 kernel.
- :func:`speckle_baseline`: bicubic intensity multiplied by independent draws from the training
  set's distribution of fine-to-coarse intensity ratios (:class:`RatioDistribution`): each fine
  pixel gets the training set's amount of speckle, with no spatial structure beyond the bicubic
  one. The ratio is fine intensity over the intensity of the *degraded* coarse pixel above it
  (speckle of the coarse sensor included), so its mean is about ``L / (L - 1)`` for coarse
  speckle of ``L`` looks, not 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sarray.archive.radiometry import to_intensity
from sarray.errors import ConfigError

# Quantiles kept of the ratio distribution: enough for a smooth inverse CDF, small to store.
_N_QUANTILES = 2001


def _resize(intensity: np.ndarray, scale: int, method: str) -> np.ndarray:
    from PIL import Image

    resample = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}[method]
    x = np.asarray(intensity, dtype=np.float32)
    fill = float(np.nanmean(x)) if np.isfinite(x).any() else 0.0
    nan = ~np.isfinite(x)
    img = Image.fromarray(np.where(nan, fill, x).astype(np.float32), mode="F")
    h, w = x.shape
    up = np.asarray(img.resize((w * scale, h * scale), resample=resample), dtype=np.float64)
    floor = max(fill, 1e-12) * 1e-6
    up = np.maximum(up, floor)
    if nan.any():
        up[np.repeat(np.repeat(nan, scale, 0), scale, 1)] = np.nan
    return up


def bicubic(intensity: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upsampling of intensity by ``scale``."""
    return _resize(intensity, scale, "bicubic")


def lanczos(intensity: np.ndarray, scale: int) -> np.ndarray:
    """Lanczos-3 upsampling of intensity by ``scale``."""
    return _resize(intensity, scale, "lanczos")


@dataclass(frozen=True, kw_only=True)
class RatioDistribution:
    """The empirical distribution of fine-to-coarse intensity ratios, as quantiles.

    The ratio of a fine pixel is its intensity over the intensity of the coarse (degraded) pixel
    above it.

    Args:
        quantiles: ratio values at probabilities ``linspace(0, 1, len(quantiles))``.
        samples: how many ratios it was estimated from.
    """

    quantiles: tuple[float, ...]
    samples: int

    def __post_init__(self) -> None:
        q = np.asarray(self.quantiles)
        if q.ndim != 1 or q.size < 2 or not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0):
            raise ConfigError("`quantiles` must be a finite non-decreasing sequence of >= 2 values")

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Independent draws (inverse CDF with linear interpolation between quantiles)."""
        q = np.asarray(self.quantiles)
        u = rng.random(shape)
        return np.interp(u, np.linspace(0.0, 1.0, q.size), q)

    @property
    def mean(self) -> float:
        q = np.asarray(self.quantiles)
        return float(np.trapezoid(q, np.linspace(0, 1, q.size)))

    def to_dict(self) -> dict[str, Any]:
        return {"quantiles": list(self.quantiles), "samples": self.samples}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RatioDistribution:
        return cls(quantiles=tuple(float(v) for v in data["quantiles"]), samples=int(data["samples"]))


def ratio_distribution(sampler: Any, *, tiles: int, start: int = 0,
                       positive_only: bool = False) -> RatioDistribution:
    """Estimate the ratio distribution from ``tiles`` pairs of a (training) :class:`PairSampler`.

    Pixels whose coarse intensity is zero or not finite are skipped. ``positive_only`` also
    drops zero ratios (fine pixels of intensity 0: 8-bit products such as the Umbra GEC quantise
    dark speckle to 0, about a sixth of the training pixels here); it gives a stronger variant
    of the baseline on data without such quantisation.
    """
    scale = sampler.config.degradation.scale
    ratios = []
    for i in range(start, start + tiles):
        pair = sampler.sample(i)
        meta = pair["meta"]
        fine = to_intensity(pair["target"].astype(np.float64), units=meta["units"], quantity=meta["quantity"])
        coarse = to_intensity(pair["condition"].astype(np.float64), units=meta["units"], quantity=meta["quantity"])
        parent = np.repeat(np.repeat(coarse, scale, axis=-2), scale, axis=-1)
        ok = np.isfinite(fine) & np.isfinite(parent) & (parent > 0)
        if positive_only:
            ok &= fine > 0
        ratios.append(fine[ok] / parent[ok])
    r = np.concatenate(ratios) if ratios else np.empty(0)
    if r.size < 2:
        raise ConfigError("no valid fine-to-coarse ratio in the sampled tiles: check the training split")
    q = np.quantile(r, np.linspace(0.0, 1.0, _N_QUANTILES))
    return RatioDistribution(quantiles=tuple(float(v) for v in q), samples=int(r.size))


def speckle_baseline(intensity: np.ndarray, scale: int, ratios: RatioDistribution,
                     rng: np.random.Generator) -> np.ndarray:
    """Bicubic intensity times independent draws from ``ratios``."""
    up = bicubic(intensity, scale)
    return up * ratios.draw(up.shape, rng)
