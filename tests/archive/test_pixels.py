"""A scene's pixels by window without xarray (the engine's workers' read): the same values as
the lazy dataset's, a damaged chunk named exactly, an unknown snapshot one message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sarray.archive.layout import ArchiveLayout
from sarray.archive.store import Archive
from sarray.errors import ArchiveError, ChunkError
from sarray.ingest.config import IngestConfig
from sarray.ingest.run import ingest
from sarray.testing.scenes import speckle_image, write_geotiff


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    img = speckle_image((200, 300), seed=3)
    img[10:20, 130:140] = np.nan  # nodata across a chunk border
    tif = write_geotiff(tmp_path / "scene_vv.tif", img)
    arch = tmp_path / "a.zarr"
    ingest([tif], arch, IngestConfig(layout=ArchiveLayout(chunk_px=128)))
    return Archive(arch)


WINDOWS = [((0, 200), (0, 300)), ((5, 140), (100, 260)), ((127, 129), (127, 129)),
           ((199, 200), (0, 1)), ((50, 50), (0, 10))]


@pytest.mark.parametrize("rows, cols", WINDOWS)
def test_a_window_is_the_lazy_datasets_window(archive: Archive, rows: tuple[int, int],
                                              cols: tuple[int, int]) -> None:
    snap = archive.scene_snapshot("scene_vv")
    px = archive.scene_pixels("scene_vv", snapshot=snap)
    want = archive.open_scene("scene_vv", snapshot=snap)["backscatter"].isel(
        y=slice(*rows), x=slice(*cols)).values
    got = px.window(rows, cols)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # With the location given, the catalog is not looked up, and the values are the same.
    loc = archive.scene_location("scene_vv")
    np.testing.assert_array_equal(
        archive.scene_pixels("scene_vv", snapshot=snap, location=loc).window(rows, cols), want)


def test_nodata_stays_nan(archive: Archive) -> None:
    px = archive.scene_pixels("scene_vv", snapshot=archive.scene_snapshot("scene_vv"))
    w = px.window((0, 30), (120, 150))
    assert np.isnan(w[0, 10:20, 10:20]).all() and np.isfinite(w[0, :10]).all()


def test_a_window_outside_the_scene_is_refused(archive: Archive) -> None:
    px = archive.scene_pixels("scene_vv", snapshot=archive.scene_snapshot("scene_vv"))
    with pytest.raises(ValueError, match="outside the scene's 200 x 300"):
        px.window((190, 210), (0, 10))


def test_a_damaged_chunk_is_named_exactly(archive: Archive, tmp_path: Path) -> None:
    objects = sorted((tmp_path / "a.zarr" / "scenes").glob("scene_vv.*/chunks/*"))
    raw = bytearray(objects[3].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    objects[3].write_bytes(bytes(raw))
    px = archive.scene_pixels("scene_vv", snapshot=archive.scene_snapshot("scene_vv"))
    bad = []
    for cy in range(2):
        for cx in range(3):
            try:  # a window that starts in the chunk before and ends in this one
                px.window((max(0, cy * 128 - 3), min(200, cy * 128 + 5)),
                          (max(0, cx * 128 - 3), min(300, cx * 128 + 5)))
            except ChunkError as e:
                bad.append((cy, cx, str(e)))
    assert len(bad) >= 1
    # Every failing window names the one damaged chunk, whichever chunk the window starts in.
    named = {e.split("backscatter chunk ")[1].split(":")[0] for _, _, e in bad}
    assert len(named) == 1 and "checksum mismatch" in bad[0][2]


def test_an_unknown_snapshot_is_one_message(archive: Archive) -> None:
    with pytest.raises(ArchiveError, match="scene scene_vv has no snapshot 'NOSUCHSNAPSHOT'"):
        archive.scene_pixels("scene_vv", snapshot="NOSUCHSNAPSHOT")


def test_reading_pixels_imports_neither_xarray_nor_pandas(archive: Archive) -> None:
    snap = archive.scene_snapshot("scene_vv")
    loc = archive.scene_location("scene_vv")
    code = ("import sys; from sarray.engine.work import scene_pixels; "
            f"w = scene_pixels({archive.url!r}, 'scene_vv', {snap!r}, {loc!r}).window((0, 9), (0, 9)); "
            "assert w.shape == (1, 9, 9), w.shape; "
            "print(sorted(m for m in ('xarray', 'pandas', 'dask', 'pyarrow', 'rioxarray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
