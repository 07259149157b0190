"""The tile grid: output chunks, the input windows (with halo) that produce them, blend weights.

Geometry. The output scene is ``scale`` times finer than the input. It is cut into chunks of
``chunk_px`` output pixels (the Zarr chunks of the output array), and each chunk is produced by
one *tile*: the chunk's footprint on the input grid (``chunk_px / scale`` input pixels) grown by
``halo_px`` input pixels on every side. The halo gives the model context beyond the chunk (its
receptive field) and creates an overlap band of ``2 * halo_px * scale`` output pixels across
every chunk border, where neighbouring tiles are blended (see :mod:`sarray.stitch.blend`).

Every tile has the same input shape ``tile_px + 2 * halo_px``: at scene edges the window is
shifted inside the scene when the scene is large enough, else padded by reflection, so the
model always sees one shape (batchable, and identical compute for every tile).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np

from sarray.errors import ConfigError

SCALES: tuple[int, ...] = (1, 2, 4, 8, 16)
# The largest scale any stage accepts (replica, degradation); the engine's tiles stop at 16.
MAX_SCALE = 64


def check_scale(scale: object, *, max_scale: int = MAX_SCALE) -> int:
    """Return ``scale`` if it is a power of two in [1, ``max_scale``], else raise ConfigError."""
    if (
        not isinstance(scale, int)
        or isinstance(scale, bool)
        or not 1 <= scale <= max_scale
        or scale & (scale - 1)
    ):
        raise ConfigError(
            f"`scale` ({scale!r}) must be a power of two in [1, {max_scale}], e.g. 2, 4 or 8"
        )
    return scale


@dataclass(frozen=True, kw_only=True)
class TileSpec:
    """How a scene is cut into tiles.

    Args:
        scale: output spacing = input spacing / scale (a power of two up to 16).
        chunk_px: output chunk edge in output pixels; a multiple of ``scale``. 1024 matches
            SDXL's native resolution at scale 4 with a 256-pixel input footprint.
        halo_px: context around each chunk footprint, in input pixels; sets the blend band
            (``2 * halo_px * scale`` output pixels) and must be smaller than the footprint.
        pad_multiple: the model's input edge multiple (e.g. 8 // scale for an 8x VAE); tiles
            are padded up to it.
    """

    scale: int = 4
    chunk_px: int = 1024
    halo_px: int = 16
    pad_multiple: int = 1

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"`scale` ({self.scale!r}) must be one of {SCALES}")
        if not isinstance(self.chunk_px, int) or self.chunk_px <= 0 or self.chunk_px % self.scale:
            raise ConfigError(
                f"`chunk_px` ({self.chunk_px!r}) must be a positive multiple of `scale` "
                f"({self.scale}), e.g. {self.scale * 256}"
            )
        if not isinstance(self.halo_px, int) or self.halo_px < 0:
            raise ConfigError(f"`halo_px` ({self.halo_px!r}) must be an integer >= 0")
        if self.halo_px >= self.tile_px:
            raise ConfigError(
                f"`halo_px` ({self.halo_px}) must be smaller than the tile footprint "
                f"`chunk_px / scale` ({self.tile_px}): raise `chunk_px` or lower `halo_px`"
            )
        if self.pad_multiple < 1:
            raise ConfigError(f"`pad_multiple` ({self.pad_multiple}) must be >= 1")

    @property
    def tile_px(self) -> int:
        """The chunk's footprint on the input grid, in input pixels."""
        return self.chunk_px // self.scale

    @property
    def window_px(self) -> int:
        """Input edge of every tile sent to the model (footprint + 2 halo, padded)."""
        w = self.tile_px + 2 * self.halo_px
        return -(-w // self.pad_multiple) * self.pad_multiple

    @property
    def band_px(self) -> int:
        """Half-width of the blend band around a chunk border, in output pixels."""
        return self.halo_px * self.scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TileSpec:
        return cls(**data)


@dataclass(frozen=True)
class Tile:
    """One tile: the chunk it produces and the input window that feeds it.

    Windows are half-open ``(row0, row1, col0, col1)``. ``src`` is the part of the input that
    exists (inside the scene); ``pad`` is the reflection padding ``(top, bottom, left, right)``
    that brings it to ``window_px``. ``out`` is the output region the tile's prediction covers
    (``(src + pad) * scale`` minus the padding), ``chunk`` the output chunk it is responsible for.
    """

    key: tuple[int, int]
    chunk: tuple[int, int, int, int]
    src: tuple[int, int, int, int]
    pad: tuple[int, int, int, int]
    out: tuple[int, int, int, int]


def _axis(i: int, n_in: int, spec: TileSpec) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Along one axis: (chunk output range, source input range, (pad_before, pad_after))."""
    s, t, h, w = spec.scale, spec.tile_px, spec.halo_px, spec.window_px
    c0, c1 = i * t, min((i + 1) * t, n_in)
    lo, hi = c0 - h, c0 - h + w  # centred window of the uniform size
    if lo < 0:
        lo, hi = 0, w
    if hi > n_in:
        lo, hi = max(n_in - w, 0), n_in
    pad_before = 0
    pad_after = w - (hi - lo)  # only when the scene is smaller than one window
    return (c0 * s, c1 * s), (lo, hi), (pad_before, pad_after)


def chunk_grid(shape_in: tuple[int, int], spec: TileSpec) -> tuple[int, int]:
    """Number of output chunks along (y, x)."""
    return (-(-shape_in[0] // spec.tile_px), -(-shape_in[1] // spec.tile_px))


def make_tile(key: tuple[int, int], shape_in: tuple[int, int], spec: TileSpec) -> Tile:
    """The tile that produces output chunk ``key`` = (chunk row, chunk col)."""
    (y0, y1), (r0, r1), (pt, pb) = _axis(key[0], shape_in[0], spec)
    (x0, x1), (q0, q1), (pl, pr) = _axis(key[1], shape_in[1], spec)
    s = spec.scale
    return Tile(
        key=key,
        chunk=(y0, y1, x0, x1),
        src=(r0, r1, q0, q1),
        pad=(pt, pb, pl, pr),
        out=(r0 * s, r1 * s, q0 * s, q1 * s),
    )


def iter_tiles(shape_in: tuple[int, int], spec: TileSpec) -> Iterator[Tile]:
    """All tiles in row-major order (the order the engine streams them)."""
    ny, nx = chunk_grid(shape_in, spec)
    for i in range(ny):
        for j in range(nx):
            yield make_tile((i, j), shape_in, spec)


def neighbours(key: tuple[int, int], grid: tuple[int, int]) -> list[tuple[int, int]]:
    """The chunk keys whose tiles can overlap chunk ``key`` (itself and its 8 neighbours)."""
    i, j = key
    return [(a, b) for a in (i - 1, i, i + 1) for b in (j - 1, j, j + 1)
            if 0 <= a < grid[0] and 0 <= b < grid[1]]


def ramp_1d(out_range: tuple[int, int], chunk_range: tuple[int, int], n_out: int, band: int) -> np.ndarray:
    """Blend weight along one axis over a tile's output range.

    1 inside the chunk away from its borders, a raised-cosine fall to 0 across the band
    ``[border - band, border + band]`` at each chunk border that has a neighbour; 0 outside the
    band. Neighbouring tiles' ramps are complementary (they sum to 1 across the band).
    """
    o0, o1 = out_range
    c0, c1 = chunk_range
    x = np.arange(o0, o1, dtype=np.float64) + 0.5
    w = np.ones(o1 - o0, dtype=np.float64)
    if band > 0:
        if c0 > 0:  # a neighbour before
            t = np.clip((x - (c0 - band)) / (2 * band), 0.0, 1.0)
            w *= 0.5 - 0.5 * np.cos(np.pi * t)
        if c1 < n_out:  # a neighbour after
            t = np.clip(((c1 + band) - x) / (2 * band), 0.0, 1.0)
            w *= 0.5 - 0.5 * np.cos(np.pi * t)
    else:
        w *= (x >= c0) & (x < c1)
    return w


def tile_ramps(tile: Tile, shape_out: tuple[int, int], spec: TileSpec) -> tuple[np.ndarray, np.ndarray]:
    """The separable blend weights (along y, along x) over the tile's output region."""
    wy = ramp_1d(tile.out[:2], tile.chunk[:2], shape_out[0], spec.band_px)
    wx = ramp_1d(tile.out[2:], tile.chunk[2:], shape_out[1], spec.band_px)
    return wy, wx


def tile_weights(tile: Tile, shape_out: tuple[int, int], spec: TileSpec) -> np.ndarray:
    """2-D blend weights over the tile's output region ``tile.out``."""
    return np.outer(*tile_ramps(tile, shape_out, spec))
