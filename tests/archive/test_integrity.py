"""Chunks cannot rot silently: flipped, truncated and deleted chunks are one named error in
every reader, and `sarray check` finds each."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sarray.archive.layout import ArchiveLayout
from sarray.archive.store import Archive
from sarray.cli import app
from sarray.errors import ChunkError
from sarray.ingest.config import IngestConfig
from sarray.ingest.run import ingest
from sarray.testing.scenes import speckle_image, write_geotiff

LINE = re.compile(r"^sarray: error: .*a\.zarr: scene scene_vv, backscatter chunk \(0, \d+, \d+\): "
                  r"(checksum mismatch|truncated chunk|corrupt chunk \(does not decompress\)|"
                  r"chunk object missing from storage); re-ingest the scene")


def _flip(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit
    p.write_bytes(bytes(raw))


def _truncate(p: Path) -> None:
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


def _delete(p: Path) -> None:
    p.unlink()


@pytest.fixture
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    tif = write_geotiff(tmp_path / "scene_vv.tif", speckle_image((256, 384), seed=5))
    arch = tmp_path / "a.zarr"
    ingest([tif], arch, IngestConfig(layout=ArchiveLayout(chunk_px=128)))
    objects = sorted((arch / "scenes").glob("scene_vv.*/chunks/*"))
    assert len(objects) == 6  # 2 x 3 chunks of float32 speckle: none small enough to be inlined
    request.param(objects[3])
    return arch, request.param.__name__


CASES = [_flip, _truncate, _delete]


@pytest.mark.parametrize("damaged", CASES, indirect=True, ids=[c.__name__ for c in CASES])
def test_damaged_chunk_is_one_named_error_everywhere(damaged: tuple[Path, str], tmp_path: Path) -> None:
    arch, how = damaged
    runner = CliRunner()
    # sarray check finds exactly one damaged chunk and exits 1.
    res = runner.invoke(app, ["check", str(arch)])
    assert res.exit_code == 1, res.output
    bad = [ln for ln in res.output.splitlines() if "backscatter chunk" in ln]
    assert len(bad) == 1, res.output
    chunk = re.search(r"chunk (\(0, \d+, \d+\))", bad[0]).group(1)  # type: ignore[union-attr]
    assert "1 damaged chunk(s)" in res.output
    # Every reader fails with one line naming the same chunk.
    for cmd in (["export", str(arch), "scene_vv", "-o", str(tmp_path / "x.tif")],
                ["quicklook", str(arch), "scene_vv", "-o", str(tmp_path / "x.png")]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 1, (cmd, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and LINE.match(lines[0]), (cmd, res.output)
        assert chunk in lines[0]
    assert not (tmp_path / "x.tif").exists()
    # The Python API raises the same error (training pairs, evaluation and translate read here).
    with pytest.raises(ChunkError, match=re.escape(chunk)):
        Archive(arch).open_scene("scene_vv")["backscatter"].values
    if how == "_flip":
        with pytest.raises(ChunkError, match="checksum mismatch"):
            Archive(arch).open_scene("scene_vv")["backscatter"].values


def test_intact_scene_checks_clean_and_other_chunks_still_read(tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "scene_vv.tif", speckle_image((256, 384), seed=5))
    arch = tmp_path / "a.zarr"
    ingest([tif], arch)
    res = CliRunner().invoke(app, ["check", str(arch), "scene_vv"])
    assert res.exit_code == 0 and res.output.strip().endswith(": ok"), res.output
    import rasterio

    with rasterio.open(tif) as s:
        np.testing.assert_array_equal(Archive(arch).open_scene("scene_vv")["backscatter"].values[0],
                                      s.read(1))


def test_training_pairs_refuse_a_damaged_scene(tmp_path: Path) -> None:
    from sarray.train.pairs import PairConfig, PairSampler

    tif = write_geotiff(tmp_path / "scene_vv.tif", speckle_image((256, 384), seed=5))
    arch = tmp_path / "a.zarr"
    ingest([tif], arch, IngestConfig(platform="airborne", spacing_m=0.5))
    _flip(sorted((arch / "scenes").glob("scene_vv.*/chunks/*"))[0])
    with pytest.raises(ChunkError, match="scene scene_vv, backscatter chunk"):
        PairSampler(PairConfig(archive=str(arch), tile_px=64, val_fraction=0.0))
