"""Blending overlapping tile predictions into one chunk: no seams, no smoothing, never negative.

Plain weighted averaging of two tiles is seam-free but not speckle-preserving: where two
independent textures are averaged with weights ``w`` and ``1 - w`` their variance drops by
``w**2 + (1 - w)**2`` (to one half in the middle of the band), a *statistical* seam that a
gradient check does not see. sarray blends in two parts, in the **amplitude** domain (square
root of intensity, whatever the archive's units: dB, linear intensity, amplitude, DN), so that the
mean intensity is kept too (E[a^2] is the variance plus the squared mean, both kept):

- the local mean of each prediction's amplitude (a box of ``MEAN_PX``) is blended linearly
  with the smooth weights: no seam in the signal;
- the fluctuations around it, ``d_i = x_i - m_i``, are blended with the same weights and divided
  by ``sqrt(sum_ij w_i w_j rho_ij)``, where ``rho_ij`` is the measured correlation of ``d_i``
  and ``d_j``: for independent textures (rho = 0) their variance is kept, and for identical
  predictions (rho = 1, e.g. an identity model) the formula is the plain weighted average, so
  tiling then adds nothing (and where every prediction agrees the value is kept exactly);
- the result is bounded: where the rescaled fluctuations would take an amplitude below a tenth
  of its local mean (or below zero: with independent 1-look speckle that happened on 2.5% of the
  band's pixels in linear intensity), the weighted geometric mean of the predictions is taken,
  which lies between them. No intensity comes out negative, and none is lost.

Work is done per *cell*: the rectangles between the predictions' edges, each covered by a fixed
set of predictions. A cell covered by one prediction is copied. A cell covered by several is
blended whole, with one ``rho`` per pair and band measured over the whole cell, so a pixel's
value depends only on the predictions, never on the region asked for: a chunk blended with a
halo agrees bit for bit with its neighbours on the pixels they share.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

# Box size of the local mean, in output pixels: a few speckle correlation lengths, well below
# the blend band so the mean follows the scene's structure.
MEAN_PX = 7

# Blended amplitudes below this fraction of the local mean are bounded (see _blend_cell).
MIN_FRACTION = 0.1

Region = tuple[int, int, int, int]  # (y0, y1, x0, x1)


@dataclass
class Prediction:
    """A tile's output on the output grid with its separable blend weights.

    ``wy`` and ``wx`` are the 1-D weights along y and x (the 2-D weight is their outer product,
    built only where it is used).
    """

    region: Region  # (y0, y1, x0, x1) on the output grid
    values: np.ndarray  # (P, h, w) float32 in archive units, NaN = no data
    wy: np.ndarray  # (h,)
    wx: np.ndarray  # (w,)
    # What identifies these values (e.g. job, scene and tile): with a CellCache, a cell blended
    # from the same predictions is computed once. None: never cached.
    key: Hashable | None = None


class CellCache:
    """Blended cells kept for the next chunk that needs them, bounded in bytes (least recently
    used out first).

    A blend-band cell lies in two chunks (a corner cell in four), and a chunk blended with a halo
    reaches into its neighbours' cells too, so without a cache each cell is blended two to four
    times. A cell's value depends only on its predictions, so a cached cell is the same bits.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._cells: OrderedDict[Hashable, np.ndarray] = OrderedDict()

    def get(self, key: Hashable) -> np.ndarray | None:
        v = self._cells.get(key)
        if v is None:
            self.misses += 1
            return None
        self._cells.move_to_end(key)
        self.hits += 1
        return v

    def put(self, key: Hashable, value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes or key in self._cells:
            return
        value.setflags(write=False)
        self._cells[key] = value
        self.nbytes += value.nbytes
        while self.nbytes > self.max_bytes:
            _, old = self._cells.popitem(last=False)
            self.nbytes -= old.nbytes


# -- the amplitude domain ------------------------------------------------------------------------
def to_blend_amplitude(values: np.ndarray, *, units: str, quantity: str) -> np.ndarray:
    """Amplitude (sqrt of intensity, float32) of values in archive units; negatives are NaN."""
    from sarray.archive.radiometry import to_amplitude

    v = np.asarray(values, dtype=np.float32)
    if units != "db":
        v = np.where(v < 0, np.float32(np.nan), v)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(to_amplitude(v, units=units, quantity=quantity), dtype=np.float32)


def from_blend_amplitude(a: np.ndarray, *, units: str, quantity: str) -> np.ndarray:
    """Inverse of :func:`to_blend_amplitude` (float32)."""
    from sarray.archive.radiometry import from_amplitude

    with np.errstate(divide="ignore"):
        return np.asarray(from_amplitude(a, units=units, quantity=quantity), dtype=np.float32)


# -- local means ---------------------------------------------------------------------------------
def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices mirrored at the edges (``d c b a | a b c d | d c b a``, scipy's "reflect")."""
    idx = np.where(idx < 0, -idx - 1, idx)
    return np.where(idx >= n, 2 * n - idx - 1, idx)


def _box_mean(filled: np.ndarray, size: int) -> np.ndarray:
    """Means over ``size`` x ``size`` windows of (..., h + size - 1, w + size - 1)."""
    from scipy.ndimage import uniform_filter1d

    r = size // 2
    out = uniform_filter1d(filled, size, axis=-1)[..., r : filled.shape[-1] - r]
    return uniform_filter1d(out, size, axis=-2)[..., r : filled.shape[-2] - r, :]


def _window(values: np.ndarray, ys: slice, xs: slice, r: int) -> np.ndarray:
    """Rows ``ys`` and columns ``xs`` of ``values`` (..., h, w) with ``r`` pixels of context on
    every side, reflected at the array's edges (``d c b a | a b c d``)."""
    h, w = values.shape[-2:]
    y0, y1, _ = ys.indices(h)
    x0, x1, _ = xs.indices(w)
    a0, a1, b0, b1 = max(0, y0 - r), min(h, y1 + r), max(0, x0 - r), min(w, x1 + r)
    win = values[..., a0:a1, b0:b1]
    pad = (max(0, r - y0), max(0, y1 + r - h), max(0, r - x0), max(0, x1 + r - w))
    if not any(pad):
        return win
    if max(pad) > min(h, w):  # wider than the array: index by reflection
        rows = _reflect(np.arange(y0 - r, y1 + r), h)
        cols = _reflect(np.arange(x0 - r, x1 + r), w)
        return values[..., rows, :][..., cols]
    lead = [(0, 0)] * (values.ndim - 2)
    return np.pad(win, [*lead, (pad[0], pad[1]), (pad[2], pad[3])], mode="symmetric")


def _nan_box_mean(win: np.ndarray, size: int, valid: np.ndarray | None = None) -> np.ndarray:
    """NaN-aware :func:`_box_mean` (NaN where a window has no finite value); ``valid``: the
    caller's ``isfinite(win)``, if it has it."""
    valid = np.isfinite(win) if valid is None else valid
    if valid.all():
        return _box_mean(np.asarray(win, dtype=np.float32), size)
    num = _box_mean(np.where(valid, win, 0.0).astype(np.float32), size)
    den = _box_mean(valid.astype(np.float32), size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-6, num / np.maximum(den, 1e-6), np.float32(np.nan)).astype(np.float32)


def local_mean_window(values: np.ndarray, ys: slice, xs: slice, size: int) -> np.ndarray:
    """NaN-aware box mean over ``size`` x ``size`` pixels (reflecting at the array's edges), per
    band, at rows ``ys`` and columns ``xs`` of ``values`` only (float32)."""
    return _nan_box_mean(_window(values, ys, xs, size // 2), size)


def local_mean(values: np.ndarray, size: int) -> np.ndarray:
    """NaN-aware box mean over ``size`` x ``size`` pixels, per band (reflecting edges)."""
    return local_mean_window(values, slice(None), slice(None), size)


# -- cells -------------------------------------------------------------------------------------------
def _cuts(edges: set[int], lo: int, hi: int) -> list[tuple[int, int]]:
    """The intervals between consecutive ``edges`` that intersect ``[lo, hi)``."""
    pts = sorted(edges)
    return [(a, b) for a, b in pairwise(pts) if a < hi and b > lo]


def blend_chunk(region: Region, preds: list[Prediction], *, units: str = "linear",
                quantity: str = "intensity", cache: CellCache | None = None) -> np.ndarray:
    """The rectangle ``region`` (y0, y1, x0, x1) blended from the predictions that cover it.

    Args:
        region: the rectangle on the output grid (a chunk, or a chunk with a halo).
        preds: every prediction that may overlap it.
        units, quantity: the values' archive units (the blend runs on amplitude).
        cache: blended cells shared between calls (predictions with a ``key`` only).

    Returns:
        float32 (P, y1 - y0, x1 - x0); NaN where no prediction has data.
    """
    y0, y1, x0, x1 = region
    n_p = preds[0].values.shape[0]
    out = np.full((n_p, y1 - y0, x1 - x0), np.nan, np.float32)
    # Cells come from the predictions' edges alone (not the region's), so that they, and every
    # pixel's value, do not depend on the region asked for.
    ys = {e for p in preds for e in p.region[:2]}
    xs = {e for p in preds for e in p.region[2:]}
    for cy in _cuts(ys, y0, y1):
        for cx in _cuts(xs, x0, x1):
            cell = (*cy, *cx)
            cover = [p for p in preds if p.region[0] <= cy[0] and cy[1] <= p.region[1]
                     and p.region[2] <= cx[0] and cx[1] <= p.region[3]]
            if not cover:
                continue
            # The part of the cell inside the region, in region and in cell coordinates.
            iy0, iy1, ix0, ix1 = max(cy[0], y0), min(cy[1], y1), max(cx[0], x0), min(cx[1], x1)
            into = (slice(None), slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
            if len(cover) == 1:
                p = cover[0]
                out[into] = p.values[:, iy0 - p.region[0] : iy1 - p.region[0],
                                     ix0 - p.region[2] : ix1 - p.region[2]]
                continue
            ckey = None
            if cache is not None and all(p.key is not None for p in cover):
                ckey = (cell, tuple(p.key for p in cover), units, quantity)
                values = cache.get(ckey)
            if ckey is None or values is None:
                values = _blend_cell(cell, cover, units=units, quantity=quantity)
                if ckey is not None:
                    cache.put(ckey, values)
            out[into] = values[:, iy0 - cy[0] : iy1 - cy[0], ix0 - cx[0] : ix1 - cx[0]]
    return out


def _blend_cell(cell: Region, preds: list[Prediction], *, units: str, quantity: str) -> np.ndarray:
    """One cell covered by every prediction of ``preds`` (at least two), blended whole.

    The weights are the same for every band: they are normalised once per pixel, at (k, 1, h, w),
    and broadcast over the bands."""
    cy0, cy1, cx0, cx1 = cell
    raws, amps, means, wts = [], [], [], []
    all_valid = True
    r = MEAN_PX // 2
    for p in preds:
        ys = slice(cy0 - p.region[0], cy1 - p.region[0])
        xs = slice(cx0 - p.region[2], cx1 - p.region[2])
        # The cell and its margin for the local mean (reflected at the prediction's edges), in
        # amplitude: the centre of the window is the cell itself.
        win = to_blend_amplitude(_window(p.values, ys, xs, r), units=units, quantity=quantity)
        finite = np.isfinite(win)
        all_valid = all_valid and bool(finite.all())
        raws.append(p.values[:, ys, xs])
        amps.append(win[:, r:-r, r:-r])
        means.append(_nan_box_mean(win, MEAN_PX, finite))
        wts.append(np.outer(p.wy[ys], p.wx[xs]).astype(np.float32))
    x = np.stack(amps)  # (k, P, h, w)
    m = np.stack(means)
    w1 = np.stack(wts)[:, None]  # (k, 1, h, w)
    if all_valid:
        wt = w1
        d = x - m
    else:
        valid = np.isfinite(x)
        wt = np.where(valid, w1, np.float32(0.0))
        m = np.nan_to_num(m)
        d = np.where(valid, x - m, np.float32(0.0))
    total = wt.sum(axis=0)
    ws = np.divide(wt, total, out=np.zeros(wt.shape, np.float32), where=total > 0)
    mean = (ws * m).sum(axis=0)
    num = (ws * d).sum(axis=0)
    den2 = np.broadcast_to((ws * ws).sum(axis=0), mean.shape)
    k = len(preds)
    active = ws > 0
    for i in range(k):
        for j in range(i + 1, k):
            rho = _corr_per_band(d[i], d[j], np.broadcast_to(active[i] & active[j], d[i].shape))
            den2 = den2 + np.float32(2.0) * rho[:, None, None] * ws[i] * ws[j]
    val = mean + num / np.sqrt(np.maximum(den2, np.float32(1e-12)))
    # The bound: where the rescaled fluctuation would push the amplitude below a tenth of the
    # local mean (or below zero), take the weighted geometric mean of the predictions instead,
    # which always lies between them.
    low = np.nonzero(val < np.float32(MIN_FRACTION) * mean)
    if low[0].size:
        wsb = np.broadcast_to(ws, x.shape)
        xl, wl = x[(slice(None), *low)], wsb[(slice(None), *low)]
        with np.errstate(divide="ignore"):
            val[low] = np.exp((wl * np.log(np.where(wl > 0, np.maximum(np.nan_to_num(xl), 0), 1))).sum(axis=0))
    out = from_blend_amplitude(val, units=units, quantity=quantity)
    # Where every prediction with weight agrees there is nothing to blend: keep the value exactly.
    raw = np.stack(raws)
    if active.all():
        hi, lo = raw.max(axis=0), raw.min(axis=0)
    else:
        inf = np.float32(np.inf)
        hi = np.where(active, raw, -inf).max(axis=0)
        lo = np.where(active, raw, inf).min(axis=0)
    out = np.where(hi == lo, hi, out)
    return np.where(total > 0, out, np.float32(np.nan)).astype(np.float32)


def _corr_per_band(a: np.ndarray, b: np.ndarray, both: np.ndarray) -> np.ndarray:
    """Per band, the correlation in [0, 1] of ``a`` and ``b`` where ``both`` (1 when identical,
    also when constant)."""
    out = np.ones(a.shape[0], np.float32)
    for band in range(a.shape[0]):
        sel = both[band]
        n = int(sel.sum())
        if n < 2:
            continue
        u, v = a[band], b[band]
        if not sel.all():
            u, v = u[sel], v[sel]
        su, sv = u.sum(dtype=np.float64), v.sum(dtype=np.float64)
        suu, svv = np.dot(u.ravel(), u.ravel()).astype(np.float64), np.dot(v.ravel(), v.ravel()).astype(np.float64)
        suv = np.dot(u.ravel(), v.ravel()).astype(np.float64)
        cov, vu, vv = suv - su * sv / n, suu - su * su / n, svv - sv * sv / n
        den = np.sqrt(max(vu, 0.0) * max(vv, 0.0))
        if den > 0:
            out[band] = float(np.clip(cov / den, 0.0, 1.0))
    return out
