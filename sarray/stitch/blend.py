"""Blending overlapping tile predictions into one chunk without seams and without smoothing.

Plain weighted averaging of two tiles is seam-free but not speckle-preserving: where two
independent speckle draws are averaged with weights ``w`` and ``1 - w`` the variance of the
speckle drops by ``w**2 + (1 - w)**2`` (to one half in the middle of the band), which lowers the
local coefficient of variation: a *statistical* seam that a gradient check does not see.

sarray therefore blends in two parts (correlation-aware variance-preserving blending):

- the local mean of each prediction (a box filter of ``mean_px``) is blended linearly with the
  smooth weights: no seam in the signal;
- the fluctuations around it, ``d_i = x_i - m_i``, are blended with the same weights and divided
  by ``sqrt(sum_ij w_i w_j rho_ij)``, where ``rho_ij`` is the measured correlation of ``d_i``
  and ``d_j`` over their overlap: for independent speckle (rho = 0) the variance is kept, and
  for identical predictions (rho = 1, e.g. an identity model) the formula reduces to the plain
  weighted average, so tiling then adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Box size of the local mean, in output pixels: a few speckle correlation lengths, well below
# the blend band so the mean follows the scene's structure.
MEAN_PX = 7


@dataclass
class Prediction:
    """A tile's output on the output grid, with its local mean and separable blend weights.

    ``wy`` and ``wx`` are the 1-D weights along y and x (the 2-D weight is their outer product,
    built only where it is used). :meth:`crop` keeps only the part still needed, so that a
    buffered prediction costs memory only for the chunks that still wait for it.
    """

    region: tuple[int, int, int, int]  # (y0, y1, x0, x1) on the output grid
    values: np.ndarray  # (P, h, w) float32, NaN = no data
    wy: np.ndarray  # (h,) float64
    wx: np.ndarray  # (w,) float64
    mean: np.ndarray | None = None  # (P, h, w) float32 local mean; None: computed where used

    def mean_at(self, ys: slice, xs: slice) -> np.ndarray:
        """The local mean over rows ``ys`` and columns ``xs`` of this prediction. Computed on
        that window only (a chunk uses a small part of each neighbour's prediction), and equal
        to the same pixels of the whole prediction's local mean bit for bit."""
        if self.mean is not None:
            return self.mean[:, ys, xs]
        return local_mean_window(self.values, ys, xs, MEAN_PX)

    @property
    def weights(self) -> np.ndarray:
        return np.outer(self.wy, self.wx)

    def crop(self, region: tuple[int, int, int, int]) -> Prediction | None:
        """The part inside ``region`` (a copy, so the rest can be freed), or None."""
        y0, y1 = max(region[0], self.region[0]), min(region[1], self.region[1])
        x0, x1 = max(region[2], self.region[2]), min(region[3], self.region[3])
        if y0 >= y1 or x0 >= x1:
            return None
        ys = slice(y0 - self.region[0], y1 - self.region[0])
        xs = slice(x0 - self.region[2], x1 - self.region[2])
        return Prediction((y0, y1, x0, x1), self.values[:, ys, xs].copy(), self.wy[ys].copy(),
                          self.wx[xs].copy(), np.array(self.mean_at(ys, xs), copy=True))


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices mirrored at the edges (``d c b a | a b c d | d c b a``, scipy's "reflect")."""
    idx = np.where(idx < 0, -idx - 1, idx)
    return np.where(idx >= n, 2 * n - idx - 1, idx)


def _box_sum(a: np.ndarray, size: int) -> np.ndarray:
    """Sums over ``size`` x ``size`` windows of ``a`` (P, h + size - 1, w + size - 1), added in a
    fixed order per pixel: the same bits whatever window of a larger array is summed."""
    ny, nx = a.shape[1] - size + 1, a.shape[2] - size + 1
    sx = a[:, :, 0:nx].copy()
    for k in range(1, size):
        sx += a[:, :, k : k + nx]
    sy = sx[:, 0:ny].copy()
    for k in range(1, size):
        sy += sx[:, k : k + ny]
    return sy


def local_mean_window(values: np.ndarray, ys: slice, xs: slice, size: int) -> np.ndarray:
    """NaN-aware box mean over ``size`` x ``size`` pixels (reflecting edges), per band, at rows
    ``ys`` and columns ``xs`` of ``values`` only."""
    r = size // 2
    h, w = values.shape[1:]
    y0, y1, _ = ys.indices(h)
    x0, x1, _ = xs.indices(w)
    rows = _reflect(np.arange(y0 - r, y1 + r), h)
    cols = _reflect(np.arange(x0 - r, x1 + r), w)
    win = values[:, rows][:, :, cols]
    valid = np.isfinite(win)
    filled = np.where(valid, win, 0.0).astype(np.float64)
    num = _box_sum(filled, size)
    if valid.all():
        return (num / float(size * size)).astype(np.float32)
    den = _box_sum(valid.astype(np.float64), size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1e-12), np.nan).astype(np.float32)


def local_mean(values: np.ndarray, size: int) -> np.ndarray:
    """NaN-aware box mean over ``size`` x ``size`` pixels, per band (reflecting edges)."""
    return local_mean_window(values, slice(None), slice(None), size)


def _crop(p: Prediction, region: tuple[int, int, int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """(slices into the chunk, slices into the prediction) of their intersection, or None."""
    y0, y1 = max(region[0], p.region[0]), min(region[1], p.region[1])
    x0, x1 = max(region[2], p.region[2]), min(region[3], p.region[3])
    if y0 >= y1 or x0 >= x1:
        return None
    into = (slice(y0 - region[0], y1 - region[0]), slice(x0 - region[2], x1 - region[2]))
    frm = (slice(y0 - p.region[0], y1 - p.region[0]), slice(x0 - p.region[2], x1 - p.region[2]))
    return into, frm


def blend_chunk(region: tuple[int, int, int, int], preds: list[Prediction],
                band_px: int | None = None) -> np.ndarray:
    """The chunk ``region`` (y0, y1, x0, x1) blended from the predictions that cover it.

    Args:
        region: the chunk on the output grid.
        preds: every prediction that may overlap it.
        band_px: half-width of the blend bands; when given, only the border strips of that
            width are blended and the inside is copied from the single prediction covering it
            (the result is the same, at a fraction of the cost).

    Returns:
        float32 (P, y1 - y0, x1 - x0); NaN where no prediction has data.
    """
    y0, y1, x0, x1 = region
    if band_px is None or 2 * band_px >= min(y1 - y0, x1 - x0):
        return blend_region(region, preds)
    upper = blend_chunk_upper(region, preds, band_px)
    bottom = blend_region((y1 - band_px, y1, x0, x1), preds)
    return np.concatenate([upper, bottom], axis=1)


def blend_chunk_upper(region: tuple[int, int, int, int], preds: list[Prediction],
                      band_px: int) -> np.ndarray:
    """Rows ``[y0, y1 - band_px)`` of :func:`blend_chunk` (top, left, right strips and inside).

    They do not depend on the predictions of the chunk row below, so the engine blends them
    early and keeps only this part (and the bottom band) while it waits for that row.
    """
    y0, y1, x0, x1 = region
    b = band_px
    out = np.empty((preds[0].values.shape[0], y1 - b - y0, x1 - x0), np.float32)
    strips = [
        (y0, y0 + b, x0, x1),  # top (full width)
        (y0 + b, y1 - b, x0, x0 + b), (y0 + b, y1 - b, x1 - b, x1),  # left, right
        (y0 + b, y1 - b, x0 + b, x1 - b),  # inside
    ]
    for r in strips:
        out[:, r[0] - y0 : r[1] - y0, r[2] - x0 : r[3] - x0] = blend_region(r, preds)
    return out


def blend_region(region: tuple[int, int, int, int], preds: list[Prediction]) -> np.ndarray:
    """Blend the predictions over one rectangle (one ρ per pair, measured over it)."""
    n_p = preds[0].values.shape[0]
    h, w = region[1] - region[0], region[3] - region[2]
    cuts = []
    for p in preds:
        cut = _crop(p, region)
        if cut is None:
            continue
        into, frm = cut
        wt = np.zeros((h, w))
        wt[into] = np.outer(p.wy[frm[0]], p.wx[frm[1]])
        if wt.any():
            cuts.append((p, into, frm, wt))
    if not cuts:
        return np.full((n_p, h, w), np.nan, np.float32)
    if len(cuts) == 1:  # one prediction covers the rectangle: nothing to blend (no local mean)
        p, into, frm, _ = cuts[0]
        out1 = np.full((n_p, h, w), np.nan, np.float32)
        out1[(slice(None), *into)] = p.values[(slice(None), *frm)]
        return out1
    parts = []
    for p, into, frm, wt in cuts:
        x = np.full((n_p, h, w), np.nan)
        m = np.full((n_p, h, w), np.nan)
        x[(slice(None), *into)] = p.values[(slice(None), *frm)]
        m[(slice(None), *into)] = p.mean_at(*frm)
        parts.append((x, m, wt))

    out = np.empty((n_p, h, w), np.float32)
    for b in range(n_p):
        # Per-pixel weights, zero where a prediction has no data, normalised to sum to 1.
        ws = np.stack([np.where(np.isfinite(x[b]), wt, 0.0) for x, _, wt in parts])
        total = ws.sum(axis=0)
        ws = np.divide(ws, total, out=np.zeros_like(ws), where=total > 0)
        xs = np.stack([np.nan_to_num(x[b]) for x, _, _ in parts])
        mean = (ws * np.stack([np.nan_to_num(m[b]) for _, m, _ in parts])).sum(axis=0)
        ds = xs - mean  # fluctuations around the common (blended) local mean
        num = (ws * ds).sum(axis=0)
        den2 = (ws * ws).sum(axis=0)
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                both = (ws[i] > 0) & (ws[j] > 0)
                if both.any():
                    den2 += 2.0 * _corr(ds[i][both], ds[j][both]) * ws[i] * ws[j]
        with np.errstate(invalid="ignore", divide="ignore"):
            val = mean + num / np.sqrt(np.maximum(den2, 1e-12))
        # Where every prediction agrees there is nothing to blend: keep the value exactly.
        active = ws > 0
        hi = np.where(active, xs, -np.inf).max(axis=0)
        lo = np.where(active, xs, np.inf).min(axis=0)
        val = np.where(hi == lo, hi, val)
        out[b] = np.where(total > 0, val, np.nan)
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation in [0, 1] (1 when both are identical, also when constant)."""
    if a.size < 2:
        return 1.0
    if np.array_equal(a, b):
        return 1.0
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    if den == 0:
        return 1.0
    return float(np.clip((a * b).sum() / den, 0.0, 1.0))
