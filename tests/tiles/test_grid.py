"""Tile grid maths against hand-computed windows, and the blend weights' partition of unity."""

from __future__ import annotations

import numpy as np

from sarray.tiles.grid import TileSpec, chunk_grid, iter_tiles, make_tile, ramp_1d, tile_weights


def test_tiles_by_hand() -> None:
    spec = TileSpec(scale=4, chunk_px=128, halo_px=8)  # footprint 32, window 48
    assert (spec.tile_px, spec.window_px, spec.band_px) == (32, 48, 32)
    shape = (100, 70)
    assert chunk_grid(shape, spec) == (4, 3)
    t = make_tile((0, 0), shape, spec)
    assert t.chunk == (0, 128, 0, 128) and t.src == (0, 48, 0, 48) and t.pad == (0, 0, 0, 0)
    t = make_tile((1, 1), shape, spec)  # centred in y; shifted inside the 70-wide scene in x
    assert t.chunk == (128, 256, 128, 256) and t.src == (24, 72, 22, 70) and t.out == (96, 288, 88, 280)
    t = make_tile((3, 2), shape, spec)  # last, partial chunk: window shifted inside the scene
    assert t.chunk == (384, 400, 256, 280) and t.src == (52, 100, 22, 70)


def test_small_scene_is_padded() -> None:
    spec = TileSpec(scale=2, chunk_px=64, halo_px=8, pad_multiple=8)  # window 48
    t = make_tile((0, 0), (20, 30), spec)
    assert t.src == (0, 20, 0, 30) and t.pad == (0, 28, 0, 18)


def test_weights_partition_unity_inside_the_scene() -> None:
    spec = TileSpec(scale=4, chunk_px=128, halo_px=8)
    shape_in = (100, 70)
    shape_out = (400, 280)
    total = np.zeros(shape_out)
    for t in iter_tiles(shape_in, spec):
        w = tile_weights(t, shape_out, spec)
        total[t.out[0] : t.out[1], t.out[2] : t.out[3]] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_ramp_is_one_inside_and_zero_beyond_the_band() -> None:
    w = ramp_1d((96, 288), (128, 256), 1000, 32)
    x = np.arange(96, 288)
    assert np.all(w[(x >= 160) & (x < 224)] == 1.0)
    assert w[0] < 0.01 and w[-1] < 0.01
