"""Quality measures of a translated tile against the high-resolution truth (pure numpy).

All measures work on one polarisation plane ``(H, W)``. Images in dB are 10 log10 of intensity
with a floor (:func:`to_db_floored`) so that zero-amplitude pixels (8-bit products quantise dark
speckle to 0) are finite; every method is floored the same way.

- :func:`psnr`: peak signal-to-noise ratio on dB, peak = the truth's dB range. Higher is better;
  identical images give ``inf``.
- :func:`ssim`: structural similarity on dB (Wang et al. 2004: Gaussian window sigma 1.5,
  K1 0.01, K2 0.03, data range = the truth's dB range). 1 for identical images.
- :func:`spectrum_distance`: mean absolute log10 ratio between the radially averaged power
  spectra of the two dB images (mean removed, Hann window), over all non-zero radial bins.
  0 for identical images. Measures texture scale: too smooth (upsampling) or too noisy shows.
- :func:`histogram_distance`: the 1-Wasserstein distance (dB) between the distributions of dB
  values. 0 for identical distributions.
- :func:`speckle_statistics`: ENL (mean^2 / variance of intensity) and CV (std / mean of
  amplitude) over homogeneous windows (given by a mask of window indices).
- :func:`consistency_rms_db`: RMS dB difference between the multilook of the output and the
  coarse input: how well the output keeps the input's calibration.
"""

from __future__ import annotations

import numpy as np

from sarray.archive.radiometry import multilook_intensity
from sarray.errors import ConfigError

#: Intensities are floored at this fraction of the truth tile's mean intensity (-40 dB below it)
#: before taking dB.
DB_FLOOR_REL = 1e-4
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 2:
        raise ConfigError(f"images must be 2-D and of one shape, got {a.shape} and {b.shape}")


def to_db_floored(intensity: np.ndarray, floor: float) -> np.ndarray:
    """``10 log10(max(I, floor))``; NaN stays NaN."""
    i = np.asarray(intensity, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return 10.0 * np.log10(np.where(np.isnan(i), np.nan, np.maximum(i, floor)))


def _range(truth: np.ndarray) -> float:
    r = float(np.nanmax(truth) - np.nanmin(truth))
    return r if r > 0 else 1.0


def psnr(pred_db: np.ndarray, truth_db: np.ndarray) -> float:
    """PSNR (dB) of ``pred_db`` against ``truth_db``; ``inf`` when identical."""
    _check_pair(pred_db, truth_db)
    mse = float(np.nanmean((pred_db - truth_db) ** 2))
    if mse == 0:
        return float("inf")
    return 10.0 * np.log10(_range(truth_db) ** 2 / mse)


def gaussian_filter(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian filter (radius 3.5 sigma, reflect padding), as SSIM uses."""
    radius = int(3.5 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    out = np.asarray(image, dtype=np.float64)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        p = np.pad(out, pad, mode="reflect")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for i, w in enumerate(k):
            acc += w * (p[i : i + n, :] if axis == 0 else p[:, i : i + n])
        out = acc
    return out


def ssim(pred_db: np.ndarray, truth_db: np.ndarray) -> float:
    """Mean SSIM of ``pred_db`` against ``truth_db`` (1 when identical)."""
    _check_pair(pred_db, truth_db)
    L = _range(truth_db)
    c1, c2 = (_SSIM_K1 * L) ** 2, (_SSIM_K2 * L) ** 2
    a = np.nan_to_num(pred_db.astype(np.float64), nan=float(np.nanmean(truth_db)))
    b = np.nan_to_num(truth_db.astype(np.float64), nan=float(np.nanmean(truth_db)))
    mu_a, mu_b = gaussian_filter(a, _SSIM_SIGMA), gaussian_filter(b, _SSIM_SIGMA)
    saa = gaussian_filter(a * a, _SSIM_SIGMA) - mu_a**2
    sbb = gaussian_filter(b * b, _SSIM_SIGMA) - mu_b**2
    sab = gaussian_filter(a * b, _SSIM_SIGMA) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return float(s.mean())


def radial_power_spectrum(image_db: np.ndarray) -> np.ndarray:
    """Radially averaged power spectrum of a dB image (mean removed, 2-D Hann window).

    Returns:
        power per integer radial frequency bin ``1 .. min(H, W) // 2`` (DC dropped).
    """
    x = np.nan_to_num(np.asarray(image_db, dtype=np.float64), nan=float(np.nanmean(image_db)))
    h, w = x.shape
    x = (x - x.mean()) * np.outer(np.hanning(h), np.hanning(w))
    p = np.abs(np.fft.fftshift(np.fft.fft2(x))) ** 2
    yy, xx = np.indices((h, w))
    r = np.hypot((yy - h // 2) * (min(h, w) / h), (xx - w // 2) * (min(h, w) / w)).round().astype(int)
    n = min(h, w) // 2
    sums = np.bincount(r.ravel(), weights=p.ravel(), minlength=n + 1)
    counts = np.bincount(r.ravel(), minlength=n + 1)
    return sums[1 : n + 1] / np.maximum(counts[1 : n + 1], 1)


def spectrum_distance(pred_db: np.ndarray, truth_db: np.ndarray) -> float:
    """Mean |log10 P_pred(f) - log10 P_truth(f)| over radial frequency bins (0 when identical)."""
    _check_pair(pred_db, truth_db)
    tiny = 1e-30
    a = np.log10(radial_power_spectrum(pred_db) + tiny)
    b = np.log10(radial_power_spectrum(truth_db) + tiny)
    return float(np.mean(np.abs(a - b)))


def histogram_distance(pred_db: np.ndarray, truth_db: np.ndarray) -> float:
    """1-Wasserstein distance (dB) between the dB value distributions (0 when identical)."""
    a = np.sort(np.asarray(pred_db, dtype=np.float64)[np.isfinite(pred_db)])
    b = np.sort(np.asarray(truth_db, dtype=np.float64)[np.isfinite(truth_db)])
    if a.size == 0 or b.size == 0:
        return float("nan")
    # Quantile functions on a common grid: exact for equal sizes (mean |sorted a - sorted b|).
    q = (np.arange(max(a.size, b.size)) + 0.5) / max(a.size, b.size)
    qa = a[np.minimum((q * a.size).astype(int), a.size - 1)]
    qb = b[np.minimum((q * b.size).astype(int), b.size - 1)]
    return float(np.mean(np.abs(qa - qb)))


def homogeneous_windows(coarse_intensity: np.ndarray, *, window: int, fraction: float = 0.25) -> np.ndarray:
    """Boolean ``(h // window, w // window)``: the ``fraction`` most uniform windows of the input.

    Uniformity is the CV of the *coarse input's* intensity in each window, so the same windows
    are used for every method and the truth (the selection cannot favour a method).
    """
    c = np.asarray(coarse_intensity, dtype=np.float64)
    h, w = c.shape[0] // window, c.shape[1] // window
    if h == 0 or w == 0:
        raise ConfigError(f"input of shape {c.shape} is smaller than one {window} px window")
    blocks = c[: h * window, : w * window].reshape(h, window, w, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = blocks.std(axis=(1, 3)) / blocks.mean(axis=(1, 3))
    cv = np.where(np.isfinite(cv), cv, np.inf)
    k = max(1, int(round(fraction * cv.size)))
    threshold = np.sort(cv.ravel())[k - 1]
    return cv <= threshold


def speckle_statistics(intensity: np.ndarray, mask: np.ndarray, window: int) -> tuple[float, float]:
    """(ENL, CV) averaged over the windows of ``intensity`` where ``mask`` is True.

    ``window`` is the window edge in pixels of ``intensity`` (``mask`` has one entry per window).
    ENL = mean(I)^2 / var(I); CV = std(A) / mean(A) with A = sqrt(I).
    """
    i = np.asarray(intensity, dtype=np.float64)
    h, w = mask.shape
    blocks = i[: h * window, : w * window].reshape(h, window, w, window).transpose(0, 2, 1, 3)
    sel = blocks[mask].reshape(-1, window * window)
    sel = sel[np.isfinite(sel).all(axis=1)]
    if sel.size == 0:
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        enl = sel.mean(axis=1) ** 2 / sel.var(axis=1)
        amp = np.sqrt(np.maximum(sel, 0))
        cv = amp.std(axis=1) / amp.mean(axis=1)
    enl = enl[np.isfinite(enl)]
    cv = cv[np.isfinite(cv)]
    return (float(np.median(enl)) if enl.size else float("inf"),
            float(np.mean(cv)) if cv.size else float("nan"))


# How far off a block of zeros over a lit input pixel counts in :func:`consistency_rms_db`.
ZERO_BLOCK_DB = 30.0


def consistency_rms_db(output_intensity: np.ndarray, input_intensity: np.ndarray, scale: int) -> float:
    """RMS (dB) of ``multilook(output) - input`` over input pixels that are positive and
    finite. An output block that multilooks to 0 under a positive input counts as
    :data:`ZERO_BLOCK_DB` off (an output that zeroes a lit block is not consistent)."""
    looked = multilook_intensity(np.asarray(output_intensity, dtype=np.float64), scale)
    src = np.asarray(input_intensity, dtype=np.float64)
    ok = np.isfinite(looked) & np.isfinite(src) & (src > 0)
    if not ok.any():
        return float("nan")
    looked = np.maximum(looked, src * 10 ** (-ZERO_BLOCK_DB / 10))
    d = 10.0 * np.log10(looked[ok]) - 10.0 * np.log10(src[ok])
    return float(np.sqrt(np.mean(d * d)))


# -- artefacts -------------------------------------------------------------------------------------
def block_edge_ratio(intensity: np.ndarray, scale: int) -> float:
    """Mean |dB gradient| across the input-pixel grid over the mean inside its cells.

    1 for an image that does not know the input grid; a per-block gain (or a pixel-repeat
    decoder) raises it. Both directions; gradients between dB values of positive pixels only.
    """
    db = 10.0 * np.log10(np.where(intensity > 0, intensity, np.nan).astype(np.float64))
    across, inside = [], []
    for g in (np.abs(np.diff(db, axis=1)), np.abs(np.diff(db, axis=0)).T):
        # diff k is between pixels k and k + 1: across a cell border when k + 1 is a multiple.
        at = (np.arange(g.shape[1]) + 1) % scale == 0
        across.append(g[:, at])
        inside.append(g[:, ~at])
    a = np.concatenate([x[np.isfinite(x)] for x in across])
    b = np.concatenate([x[np.isfinite(x)] for x in inside])
    if a.size == 0 or b.size == 0 or b.mean() == 0:
        return float("nan")
    return float(a.mean() / b.mean())


PEAK_PERIODS_PX = (2, 4, 8)


def periodic_peaks_db(image_db: np.ndarray, periods: tuple[int, ...] = PEAK_PERIODS_PX) -> dict[str, float]:
    """Spectral peaks at the given periods (px): for each, the power at that frequency along
    rows and columns over the median of its neighbouring frequencies, in dB (0: no peak; a dot
    grid stamped every 4 px gives tens of dB)."""
    x = np.nan_to_num(np.asarray(image_db, dtype=np.float64), nan=float(np.nanmean(image_db)))
    x = x - x.mean()
    out = {}
    # Mean 1-D spectra along each axis (rows and columns), Hann-windowed.
    specs = []
    for a in (x, x.T):
        n = a.shape[1]
        s = (np.abs(np.fft.rfft(a * np.hanning(n), axis=1)) ** 2).mean(axis=0)
        specs.append((n, s))
    for period in periods:
        vals = []
        for n, s in specs:
            k = int(round(n / period))
            if k < 3 or k >= s.size:
                continue
            lo, hi = max(1, k - max(3, n // 64)), min(s.size, k + max(3, n // 64) + 1)
            ref = np.median(np.r_[s[lo : k - 1], s[k + 2 : hi]]) if hi - lo > 4 else np.median(s[1:])
            vals.append(10 * np.log10(max(s[max(1, k - 1) : k + 2].max(), 1e-30) / max(ref, 1e-30)))
        out[f"peak_{period}px_db"] = float(max(vals)) if vals else float("nan")
    return out


# Pixels this far below the image's median (dB) are floor-clamped: fully developed single-look
# speckle has 0.007% of its pixels there.
FLOOR_BELOW_MEDIAN_DB = 40.0


def floor_share(intensity: np.ndarray, below_median_db: float = FLOOR_BELOW_MEDIAN_DB, *,
                zero_is_recorded: bool = False) -> float:
    """Share of pixels at zero or more than ``below_median_db`` under the median: floor-clamped
    output (the tiny decoder's dot grid sat at -78 dB).

    ``zero_is_recorded``: the image is an integer DN product whose recording has a floor of
    exactly 0 (an 8-bit product clipped at 0 DN): a pixel written as exactly 0 is that floor, as
    the product records it (the zeros column counts those), and only pixels clamped *above* it,
    more than ``below_median_db`` under the median, are floor-clamped.
    """
    i = np.asarray(intensity, dtype=np.float64)
    i = i[np.isfinite(i)]
    if not i.size:
        return float("nan")
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(np.maximum(i, 0))
    med = np.median(db[np.isfinite(db)]) if np.isfinite(db).any() else 0.0
    clamped = db <= med - below_median_db
    if zero_is_recorded:
        clamped &= i > 0
    return float(np.mean(clamped))


def lag1_autocorrelation(intensity: np.ndarray) -> float:
    """Lag-1 autocorrelation of intensity, mean of rows and columns."""
    i = np.asarray(intensity, dtype=np.float64)
    vals = []
    for a, b in ((i[:, 1:], i[:, :-1]), (i[1:], i[:-1])):
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() > 2:
            vals.append(float(np.corrcoef(a[ok], b[ok])[0, 1]))
    return float(np.mean(vals)) if vals else float("nan")
