"""Input and output side by side: the whole scene, and a full-resolution zoom of its centre."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sarray.archive.export import save_png, stretch_db
from sarray.archive.layout import VAR_BACKSCATTER
from sarray.archive.radiometry import to_db
from sarray.archive.store import Archive


def _db(archive: Archive, scene: str, window: tuple[int, int, int, int] | None, step: int) -> np.ndarray:
    ds = archive.open_scene(scene)
    arr = ds[VAR_BACKSCATTER][0]
    if window is not None:
        arr = arr[window[0] : window[1], window[2] : window[3]]
    vals = arr[::step, ::step].values.astype(np.float64)
    return to_db(vals, units=ds.attrs["units"], quantity=ds.attrs.get("quantity", "unknown"))


def _fit(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize (keeps pixels visible as pixels)."""
    ys = (np.arange(shape[0]) * img.shape[0] / shape[0]).astype(int)
    xs = (np.arange(shape[1]) * img.shape[1] / shape[1]).astype(int)
    return img[np.ix_(ys, xs)]


def write_side_by_side(
    in_archive: Archive, in_scene: str, out_archive: Archive, out_scene: str, path: str | Path,
    *, panel_px: int = 512, zoom_px: int = 128,
) -> Path:
    """A 2 x 2 PNG (first polarisation, dB): top the whole input and output, bottom a zoom.

    The zoom shows ``zoom_px`` output pixels at the scene centre at full resolution next to
    the input pixels under them, so the added detail is visible; each panel is stretched on its
    own 2-98% dB range.
    """
    out_shape = out_archive.record(out_scene).shape[1:]
    in_shape = in_archive.record(in_scene).shape[1:]
    scale = out_shape[0] // in_shape[0]
    step_in = max(1, math.ceil(max(in_shape) / panel_px))
    step_out = max(1, math.ceil(max(out_shape) / panel_px))
    top_in = _db(in_archive, in_scene, None, step_in)
    top_out = _db(out_archive, out_scene, None, step_out)
    cy, cx = out_shape[0] // 2, out_shape[1] // 2
    z = min(zoom_px, out_shape[0], out_shape[1]) // scale * scale
    oy, ox = (cy - z // 2) // scale * scale, (cx - z // 2) // scale * scale
    zoom_out = _db(out_archive, out_scene, (oy, oy + z, ox, ox + z), 1)
    zoom_in = _db(in_archive, in_scene, (oy // scale, (oy + z) // scale, ox // scale, (ox + z) // scale), 1)
    shape = (panel_px, round(panel_px * out_shape[1] / out_shape[0]))
    top = np.concatenate([_fit(stretch_db(top_in), shape), _fit(stretch_db(top_out), shape)], axis=1)
    zshape = (panel_px, panel_px)
    bottom = np.concatenate([_fit(stretch_db(zoom_in), zshape), _fit(stretch_db(zoom_out), zshape)], axis=1)
    if bottom.shape[1] != top.shape[1]:
        bottom = _fit(bottom, (bottom.shape[0], top.shape[1]))
    gap = np.full((4, top.shape[1]), 255, np.uint8)
    return save_png(np.concatenate([top, gap, bottom], axis=0), path)
