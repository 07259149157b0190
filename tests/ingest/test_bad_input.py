"""The bad-input corpus: one clear line naming the file, exit status 1, archive untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sarray.cli import app
from sarray.testing.scenes import speckle_image, tree_digest, write_corrupt_geotiff, write_geotiff


def write_worldfile_png(path: Path, bands: int = 1) -> Path:
    """An 8-bit PNG with a worldfile (.pgw): a geotransform GDAL reads, and no CRS."""
    from PIL import Image

    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (64, 80, bands) if bands > 1 else (64, 80), dtype=np.uint8)
    Image.fromarray(a).save(path)
    path.with_suffix(".pgw").write_text("10\n0\n0\n-10\n500005\n3999995\n")
    return path


def _good(tmp_path: Path) -> Path:
    return write_geotiff(tmp_path / "good_vv.tif", speckle_image((300, 400), seed=1))


def _missing(tmp_path: Path) -> list[Path]:
    return [tmp_path / "nope.tif"]


def _not_a_raster(tmp_path: Path) -> list[Path]:
    p = tmp_path / "notes.tif"
    p.write_text("this is not a raster\n")
    return [p]


def _truncated(tmp_path: Path) -> list[Path]:
    p = write_geotiff(tmp_path / "trunc.tif", speckle_image((1024, 1024), seed=2), tiled=True)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return [p]


def _corrupt_middle(tmp_path: Path) -> list[Path]:
    """Header and the first and last tiles intact, a tile in the middle damaged: only found
    while streaming, after other chunks have been staged."""
    return [write_corrupt_geotiff(tmp_path / "corrupt.tif")]


def _all_nan(tmp_path: Path) -> list[Path]:
    a = np.stack([speckle_image((64, 64), seed=3), np.full((64, 64), np.nan, np.float32)])
    return [write_geotiff(tmp_path / "nanband.tif", a, descriptions=("VV", "VH"))]


def _all_inf(tmp_path: Path) -> list[Path]:
    return [write_geotiff(tmp_path / "inf.tif", np.full((64, 64), np.inf, np.float32))]


def _bad_dtype(tmp_path: Path) -> list[Path]:
    return [write_geotiff(tmp_path / "int32.tif", np.ones((64, 64), np.int32))]


def _crs_conflict(tmp_path: Path) -> list[Path]:
    a = write_geotiff(tmp_path / "x_vv.tif", speckle_image((64, 64), seed=4), crs="EPSG:32631")
    b = write_geotiff(tmp_path / "x_vh.tif", speckle_image((64, 64), seed=5), crs="EPSG:32632")
    return [a, b]


def _no_crs(tmp_path: Path) -> list[Path]:
    return [write_geotiff(tmp_path / "nocrs.tif", speckle_image((64, 64), seed=6), crs=None,
                          transform=None) ]


def _zipped_safe(tmp_path: Path) -> list[Path]:
    import zipfile

    p = tmp_path / "S1A_IW_GRDH_1SDV_X.SAFE.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("S1A_IW_GRDH_1SDV_X.SAFE/manifest.safe", "<xfdu/>")
    return [p]


def _plain_zip(tmp_path: Path) -> list[Path]:
    import zipfile

    p = tmp_path / "rasters.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a.tif", b"not a tiff")
    return [p]


def _worldfile_no_crs(tmp_path: Path) -> list[Path]:
    return [write_worldfile_png(tmp_path / "quicklook.png")]


CORPUS = {
    "zipped SAFE, bad manifest": (_zipped_safe, [], "cannot read the SAFE manifest"),
    "zip of no product": (_plain_zip, [], "a zip archive that holds no SAFE product; unzip it first"),
    "worldfile without CRS": (_worldfile_no_crs, [], "no CRS; give it with --crs EPSG:XXXX"),
    "bad --crs": (_missing, ["--crs", "EPSG:99999999"], "is not a CRS pyproj knows"),
    "missing file": (_missing, [], "no such file"),
    "not a raster": (_not_a_raster, [], "not a readable raster"),
    "truncated tiff": (_truncated, [], "truncated or corrupt"),
    "corrupt tile mid-file": (_corrupt_middle, ["--chunk-px", "256"], "truncated or corrupt"),
    # With the units given there is no overview read: the damage is met while streaming.
    "corrupt tile mid-stream": (_corrupt_middle, ["--chunk-px", "256", "--units", "linear"],
                                "read failed at rows 512:768"),
    "all-NaN band": (_all_nan, [], "band VH is all NaN"),
    "all-inf band": (_all_inf, [], "is all NaN, inf"),
    "unsupported dtype": (_bad_dtype, [], "unsupported dtype int32"),
    "CRS conflict in stack": (_crs_conflict, ["--stack"], "CRS conflicts"),
    "no CRS": (_no_crs, [], "has a geotransform (from the file or its worldfile) but no CRS"),
    "unsafe scene id": (_missing, ["--scene-id", "../escape"], "not a safe scene id"),
}


@pytest.mark.parametrize("existing", [False, True], ids=["new-archive", "existing-archive"])
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_input_fails_cleanly(case: str, existing: bool, tmp_path: Path) -> None:
    make, extra, expected = CORPUS[case]
    runner = CliRunner()
    arch = tmp_path / "a.zarr"
    if existing:
        ok = runner.invoke(app, ["ingest", str(_good(tmp_path)), "-a", str(arch), "-q"])
        assert ok.exit_code == 0, ok.output
    before = tree_digest(arch)
    before_dir = sorted(p.name for p in tmp_path.iterdir())
    paths = make(tmp_path)
    res = runner.invoke(app, ["ingest", *map(str, paths), "-a", str(arch), "-q", *extra])
    assert res.exit_code == 1, res.output
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert expected in lines[0]
    if case not in ("unsafe scene id", "CRS conflict in stack", "bad --crs"):
        assert str(paths[0]) in lines[0] or paths[0].name in lines[0]
    assert tree_digest(arch) == before
    # No staging folder or other debris is left beside the archive either.
    inputs = {q.name for q in paths} | {q.with_suffix(".pgw").name for q in paths}  # + worldfiles
    after_dir = sorted(p.name for p in tmp_path.iterdir() if p.name not in inputs)
    assert [n for n in after_dir if n not in before_dir and not n.endswith(".lock")] == []


def test_truncated_file_among_good_ones_commits_nothing(tmp_path: Path) -> None:
    good = _good(tmp_path)
    (bad,) = _truncated(tmp_path)
    arch = tmp_path / "a.zarr"
    res = CliRunner().invoke(app, ["ingest", str(good), str(bad), "-a", str(arch), "-q"])
    assert res.exit_code == 1
    assert not arch.exists()


def test_a_worldfile_raster_is_georeferenced_with_crs(tmp_path: Path) -> None:
    from sarray.archive.store import Archive

    png = write_worldfile_png(tmp_path / "quicklook.png")
    res = CliRunner().invoke(app, ["ingest", str(png), "-a", str(tmp_path / "a.zarr"), "-q",
                                   "--crs", "EPSG:32631"])
    assert res.exit_code == 0, res.output
    scene = Archive(tmp_path / "a.zarr").open_scene("quicklook")
    assert scene.rio.crs.to_epsg() == 32631
    assert scene.rio.transform().to_gdal() == (500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0)
    # A raster with its own CRS keeps it: a different --crs is refused.
    tif = _good(tmp_path)
    res = CliRunner().invoke(app, ["ingest", str(tif), "-a", str(tmp_path / "a.zarr"), "-q",
                                   "--crs", "EPSG:4326"])
    assert res.exit_code == 1 and "has its own CRS" in res.stderr and "drop --crs" in res.stderr


def test_an_rgb_picture_warns_in_one_line_and_library_warnings_need_verbose(tmp_path: Path) -> None:
    png = write_worldfile_png(tmp_path / "photo.png", bands=3)
    res = CliRunner().invoke(app, ["ingest", str(png), "-a", str(tmp_path / "a.zarr"), "-q",
                                   "--crs", "EPSG:32631"])
    assert res.exit_code == 0, res.output
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"sarray: warning: {png}: a 3-band 8-bit picture (RGB?), not SAR")
    # An ungeoreferenced chip: rasterio's NotGeoreferencedWarning stays quiet unless --verbose.
    chip = tmp_path / "chip.png"
    from PIL import Image

    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(chip)
    quiet = CliRunner().invoke(app, ["ingest", str(chip), "-a", str(tmp_path / "b.zarr"), "-q",
                                     "--spacing-m", "0.3"])
    loud = CliRunner().invoke(app, ["ingest", str(chip), "-a", str(tmp_path / "c.zarr"), "-q",
                                    "--spacing-m", "0.3", "--verbose"])
    assert quiet.exit_code == 0 and loud.exit_code == 0
    assert quiet.stderr.strip() == ""
    assert "NotGeoreferencedWarning" in loud.stderr
