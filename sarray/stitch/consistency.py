"""Radiometric consistency: the fine output multilooks back onto the coarse input, without blocks.

A per-block gain (each ``scale`` x ``scale`` block multiplied by ``I_in / mean(I_out)``) makes the
multilook exact but stamps the input grid onto the output: wherever the model's multilook is far
from the input, neighbouring blocks get very different gains and their edges show. sarray applies
the correction as a *smooth* field instead:

- in the log-intensity domain, a coarse log-gain ``G`` (one value per input pixel) is spread to
  the fine grid by bilinear interpolation (continuous: no edges on the input grid);
- ``G`` is iterated until the multilook of ``output * exp(up(G))`` equals the input, each step
  solving the linearised problem on the coarse grid (the block mean of the bilinear spread is a
  separable three-tap operator, inverted by a tridiagonal solve per axis), so a few iterations
  reach hundredths of a dB;
- the engine applies it to each chunk with a halo of :data:`HALO_INPUT_PX` input pixels: the
  influence of an input pixel on the solution falls by a factor of about 6 per input pixel, so
  neighbouring chunks agree on their shared border far below the speckle.

Input pixels that are NaN, or have no intensity, get no correction (the model's output is kept).
"""

from __future__ import annotations

import functools

import numpy as np

from sarray.archive.radiometry import (
    LOG_FLOOR,
    from_log_intensity,
    multilook_intensity,
    to_log_intensity,
)

# Input pixels of context around a chunk when the engine corrects it (see the module docstring).
HALO_INPUT_PX = 6
# Iterate until the multilook is this close to the input (RMS, dB: a fifth of the 0.1 dB asked
# of the product), or MAX_ITERATIONS. Each step cuts the error three- to fourfold.
TOLERANCE_DB = 0.02
MAX_ITERATIONS = 12
_DB = np.float32(10.0 / np.log(10.0))


@functools.lru_cache(maxsize=64)
def _lerp_1d(n_coarse: int, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear spread along one axis: (lower index, upper index, upper weight) per fine pixel;
    fine pixel centres beyond the first and last coarse centres take the edge value."""
    u = (np.arange(n_coarse * scale) + 0.5) / scale - 0.5
    i0 = np.clip(np.floor(u).astype(np.int64), 0, n_coarse - 1)
    i1 = np.clip(i0 + 1, 0, n_coarse - 1)
    f = np.clip(u - np.floor(u), 0.0, 1.0)
    f = np.where(u < 0, 0.0, np.where(u > n_coarse - 1, 0.0, f)).astype(np.float32)
    for a in (i0, i1, f):
        a.setflags(write=False)  # cached: shared by every call of this size
    return i0, i1, f


@functools.lru_cache(maxsize=16)
def _phases(scale: int) -> tuple[tuple[int, float], ...]:
    """Per fine phase k (pixel ``i * scale + k``): the offset (0 or -1) of the lower coarse
    neighbour and the weight of the upper one, for interior pixels."""
    out = []
    for k in range(scale):
        u = (k + 0.5) / scale - 0.5  # position relative to the coarse centre i
        lo = int(np.floor(u))
        out.append((lo, float(u - lo)))
    return tuple(out)


def _spread_axis(g: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` (-1 or -2) onto a grid ``scale`` times finer (edge
    values kept beyond the first and last coarse centres): one strided slice per phase, written
    in place into the phase's plane, no gathers and no transposes."""
    n = g.shape[axis]
    if axis == -1:
        pad = np.concatenate([g[..., :1], g, g[..., -1:]], axis=-1)
        out = np.empty((*g.shape, scale), dtype=g.dtype)  # (..., n, phase)
    else:
        pad = np.concatenate([g[..., :1, :], g, g[..., -1:, :]], axis=-2)
        out = np.empty((*g.shape[:-1], scale, g.shape[-1]), dtype=g.dtype)  # (..., n, phase, w)
    # Coarse values padded by one at each end with the edge value: index i + 1 is pixel i.
    for k, (lo, f) in enumerate(_phases(scale)):
        if axis == -1:
            a, b, dst = pad[..., 1 + lo : 1 + lo + n], pad[..., 2 + lo : 2 + lo + n], out[..., k]
        else:
            a, b = pad[..., 1 + lo : 1 + lo + n, :], pad[..., 2 + lo : 2 + lo + n, :]
            dst = out[..., k, :]
        np.multiply(a, np.asarray(1 - f, g.dtype), out=dst)
        dst += b * np.asarray(f, g.dtype)
    if axis == -1:
        return out.reshape(*g.shape[:-1], n * scale)
    return out.reshape(*g.shape[:-2], n * scale, g.shape[-1])


def spread(g: np.ndarray, scale: int) -> np.ndarray:
    """Bilinear interpolation of a coarse field (..., h, w) onto the fine grid (..., h*s, w*s).

    Along x first, on the coarse rows, then along y, where each output row is a weighted sum of
    two whole rows: the full-size pass writes whole contiguous rows."""
    if scale == 1:
        return g
    return _spread_axis(_spread_axis(g, scale, -1), scale, -2)


def _spread_operator(n: int, scale: int) -> np.ndarray:
    """The n x n matrix of 'block mean of the bilinear spread' along one axis (banded)."""
    i0, i1, f = _lerp_1d(n, scale)
    m = np.zeros((n, n))
    block = np.arange(n * scale) // scale
    np.add.at(m, (block, i0), (1 - f) / scale)
    np.add.at(m, (block, i1), f / scale)
    return m


@functools.lru_cache(maxsize=64)
def _solver(n: int, scale: int):
    """A solve of the spread operator along one axis: the operator is tridiagonal (a block's
    pixels reach only its two neighbours' centres), so a banded solve, O(n) per column, where a
    dense LU was O(n^2)."""
    from scipy.linalg import solve_banded

    m = _spread_operator(n, scale)
    if n > 1 and np.abs(np.triu(m, 2)).max(initial=0.0) + np.abs(np.tril(m, -2)).max(initial=0.0) > 0:
        raise AssertionError("the spread operator is not tridiagonal")  # pragma: no cover
    ab = np.zeros((3, n))
    ab[0, 1:] = np.diagonal(m, 1)
    ab[1] = np.diagonal(m)
    ab[2, :-1] = np.diagonal(m, -1)
    ab.setflags(write=False)

    def solve(r: np.ndarray, axis: int) -> np.ndarray:
        b = np.moveaxis(r, axis, 0)
        x = solve_banded((1, 1), ab, b.reshape(n, -1), check_finite=False).reshape(b.shape)
        return np.moveaxis(x, 0, axis)

    return solve


def _multilook_log_into(lg: np.ndarray, scale: int, offset: float, scratch: np.ndarray) -> np.ndarray:
    """ln of the block mean of intensity, from fine log intensity ``lg`` (..., h*s, w*s), with
    ``scratch`` (like ``lg``) for the fine intensities; ``offset`` (at least the largest value)
    keeps ``exp`` in range."""
    np.subtract(lg, np.float32(offset), out=scratch)
    np.exp(scratch, out=scratch)
    with np.errstate(divide="ignore"):
        return np.log(multilook_intensity(scratch, scale)) + np.float32(offset)


def correct_log(lg: np.ndarray, target: np.ndarray, *, scale: int,
                tolerance_db: float = TOLERANCE_DB, max_iterations: int = MAX_ITERATIONS) -> np.ndarray:
    """The smooth correction in the log domain: fine ln-intensity ``lg`` (P, h*s, w*s) such that
    its multilook matches the coarse ln-intensity ``target`` (P, h, w). NaN stays NaN.

    Each step costs one spread, one add and one ``exp`` over the fine grid, into one reused
    buffer; the corrected field itself (``lg + spread(g)``) is built once, at the end."""
    fine_ok = np.isfinite(lg)
    all_ok = bool(fine_ok.all())
    lg_filled = lg if all_ok else np.where(fine_ok, lg, LOG_FLOOR)
    offset = float(lg_filled.max())
    scratch = np.empty_like(lg_filled)
    looked = _multilook_log_into(lg_filled, scale, offset, scratch)
    # Blocks the correction may touch: an input with intensity, a whole finite output block.
    whole = True if all_ok else multilook_intensity(fine_ok.astype(np.float32), scale) == 1
    ok = np.isfinite(target) & (target > LOG_FLOOR) & np.isfinite(looked) & (looked > LOG_FLOOR) & whole
    sy = _solver(target.shape[-2], scale)
    sx = _solver(target.shape[-1], scale)
    g = np.zeros(target.shape, np.float32)
    lg_off = None  # lg_filled - offset, once a step is taken
    for _ in range(max_iterations):
        r = np.where(ok, target - looked, np.float32(0.0))
        if not ok.any() or np.sqrt(np.mean(r[ok] ** 2)) * _DB <= tolerance_db:
            break
        g += sx(sy(r, -2), -1).astype(np.float32)
        if lg_off is None:
            lg_off = lg_filled - np.asarray(offset, lg_filled.dtype)
        top = np.float32(g.max())  # exp(lg - offset + spread(g - top)) <= 1: in range
        np.add(spread(g - top, scale), lg_off, out=scratch)
        np.exp(scratch, out=scratch)
        with np.errstate(divide="ignore"):
            looked = np.log(multilook_intensity(scratch, scale)) + np.float32(offset + float(top))
    if lg_off is None:  # nothing to correct: a new array all the same
        out = lg_filled.copy()
    else:
        out = spread(g, scale).astype(lg_filled.dtype, copy=False)  # lg's precision
        out += lg_filled
    return out if all_ok else np.where(fine_ok, out, lg)


# An integer DN of 0 records any value in [0, 0.5): as amplitude, an intensity of 1/12 on average
# (amplitude uniform over the cell); as intensity, 0.25. Without this, an input pixel of 0 DN (a
# dark area of an 8-bit product, or one its scaling clips) has no intensity to match, and the
# model's output over it would be left as it comes.
DN_ZERO_INTENSITY = {"amplitude": 1.0 / 12.0, "intensity": 0.25}


def target_log_intensity(source: np.ndarray, *, units: str, quantity: str) -> np.ndarray:
    """ln intensity of the input the output must multilook to (``source`` in archive units):
    a DN of exactly 0 is taken as the mean of its quantisation cell (:data:`DN_ZERO_INTENSITY`)."""
    lg = to_log_intensity(source, units=units, quantity=quantity)
    if units == "dn":
        zero = np.float32(np.log(DN_ZERO_INTENSITY.get(quantity, DN_ZERO_INTENSITY["amplitude"])))
        lg = np.where(source == 0, zero, lg).astype(np.float32)
    return lg


def apply_consistency(output: np.ndarray, source: np.ndarray, *, scale: int, units: str,
                      quantity: str, tolerance_db: float = TOLERANCE_DB,
                      max_iterations: int = MAX_ITERATIONS) -> np.ndarray:
    """Correct ``output`` (P, h*scale, w*scale) smoothly so that it multilooks to ``source``
    (P, h, w), both in archive units (see the module docstring). NaN stays NaN."""
    if output.shape[-2:] != (source.shape[-2] * scale, source.shape[-1] * scale):
        raise ValueError(
            f"`output` shape {output.shape} is not `source` shape {source.shape} times {scale}"
        )
    if scale == 1:
        return _pixel_gain(output, source, units=units, quantity=quantity)
    lg = correct_log(to_log_intensity(output, units=units, quantity=quantity),
                     target_log_intensity(source, units=units, quantity=quantity), scale=scale,
                     tolerance_db=tolerance_db, max_iterations=max_iterations)
    fixed = from_log_intensity(lg, units=units, quantity=quantity)
    return np.where(np.isfinite(output), fixed, output).astype(output.dtype, copy=False)


def _pixel_gain(output: np.ndarray, source: np.ndarray, *, units: str, quantity: str) -> np.ndarray:
    """Scale 1 (same grid): the correction is per pixel, which is already smooth as the input."""
    lg = to_log_intensity(output, units=units, quantity=quantity)
    target = target_log_intensity(source, units=units, quantity=quantity)
    ok = np.isfinite(lg) & np.isfinite(target) & (target > LOG_FLOOR) & (lg > LOG_FLOOR)
    fixed = from_log_intensity(np.where(ok, target, lg), units=units, quantity=quantity)
    return np.where(np.isfinite(output), fixed, output).astype(output.dtype)
