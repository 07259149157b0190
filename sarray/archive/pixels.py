"""A scene's pixels by window, straight from its Zarr array: the read of the engine's workers.

:meth:`sarray.archive.store.Archive.open_scene` gives the lazy ``xarray.Dataset`` (coordinates,
CRS, dask arrays), which is what users and the driver want. A replica or an assembler reads
nothing but windows of ``backscatter`` at a snapshot the driver planned on, in processes that a
fleet multiplies: importing xarray, pandas, dask and the catalog's pyarrow for that costs about
50 MiB of private memory in each (measured with ``psutil``'s USS after the imports). A
:class:`ScenePixels` opens the array with zarr and Icechunk only, and returns the same values as
the dataset's ``isel(...).values`` (``_FillValue`` masked to NaN, ``scale_factor`` and
``add_offset`` applied, as xarray decodes them), read one chunk at a time so that a damaged
chunk is named exactly (:class:`~sarray.archive.integrity.CheckedArray`).
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import numpy as np

from sarray.archive.integrity import ChunkContext, CheckedArray
from sarray.errors import ArchiveError


def _fill_value(attrs: dict[str, Any]) -> float | None:
    """The ``_FillValue`` xarray wrote (a base64 float64 in Zarr v3 attributes), or None."""
    raw = attrs.get("_FillValue")
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            return struct.unpack("<d", base64.b64decode(raw))[0]
        except (ValueError, struct.error):
            return None
    return float(raw)


class ScenePixels:
    """One variable of a scene (``(pol, y, x)``), read by window.

    Args:
        array: the scene's zarr array.
        archive, scene_id, variable: where it lives (for error messages).
    """

    def __init__(self, array: Any, *, archive: str, scene_id: str, variable: str) -> None:
        attrs = dict(array.attrs)
        self.array = CheckedArray(array, ChunkContext(archive=archive, scene_id=scene_id,
                                                       variable=variable))
        self.shape = self.array.shape
        self.chunks = self.array.chunks
        self.fill = _fill_value(attrs)
        self.scale = float(attrs.get("scale_factor", 1.0))
        self.offset = float(attrs.get("add_offset", 0.0))

    @classmethod
    def open(cls, session: Any, *, archive: str, scene_id: str, variable: str) -> ScenePixels:
        """The array ``variable`` of a scene's read-only Icechunk ``session``."""
        import zarr

        try:
            array = zarr.open_array(store=session.store, path=variable, mode="r", zarr_format=3)
        except Exception as e:
            raise ArchiveError(f"{archive}: scene {scene_id}: its {variable!r} array cannot be "
                               f"opened ({str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__}); "
                               f"run `sarray check {archive} {scene_id}`") from None
        return cls(array, archive=archive, scene_id=scene_id, variable=variable)

    def window(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """``(pol, y, x)`` float32 values of rows ``[r0, r1)`` and columns ``[c0, c1)`` (every
        polarisation), decoded as xarray decodes them."""
        (r0, r1), (c0, c1) = rows, cols
        n_p, h, w = self.shape
        if not (0 <= r0 <= r1 <= h and 0 <= c0 <= c1 <= w):
            raise ValueError(f"window rows {rows}, cols {cols} is outside the scene's {h} x {w}")
        out = np.empty((n_p, r1 - r0, c1 - c0), np.float32)
        cp, cy, cx = self.chunks
        for p0 in range(0, n_p, cp):
            p1 = min(n_p, p0 + cp)
            for y0 in range(r0 // cy * cy, r1, cy):
                ya, yb = max(r0, y0), min(r1, y0 + cy)
                for x0 in range(c0 // cx * cx, c1, cx):
                    xa, xb = max(c0, x0), min(c1, x0 + cx)
                    out[p0:p1, ya - r0 : yb - r0, xa - c0 : xb - c0] = \
                        self.array[p0:p1, ya:yb, xa:xb]
        if self.fill is not None and not math.isnan(self.fill):
            out[out == np.float32(self.fill)] = np.nan
        if self.scale != 1.0 or self.offset != 0.0:
            out = (out * np.float32(self.scale) + np.float32(self.offset)).astype(np.float32)
        return out


__all__ = ["ScenePixels"]
