"""The `sarray` command end to end on the bundled sample scene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from typer.testing import CliRunner

from sarray.cli import app

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "Spain_7370579_S1Hand.tif"


def test_ingest_ls_info_quicklook_export(tmp_path: Path) -> None:
    r = CliRunner()
    arch = str(tmp_path / "a.zarr")
    out = r.invoke(app, ["ingest", str(SAMPLE), "-a", arch, "--time", "2019-09-18T17:52:00"])
    assert out.exit_code == 0, out.output
    assert "added  Spain_7370579_S1Hand  2x512x512  db" in out.stdout

    out = r.invoke(app, ["ls", arch, "--json", "--sensor", "sentinel", "--start", "2019-01-01"])
    assert out.exit_code == 0
    (rec,) = json.loads(out.stdout)
    assert rec["scene_id"] == "Spain_7370579_S1Hand" and rec["polarisations"] == ["VV", "VH"]
    out = r.invoke(app, ["ls", arch, "--end", "2018-01-01"])
    assert out.stdout.startswith("0 scene(s)")

    out = r.invoke(app, ["info", arch, "Spain_7370579_S1Hand"])
    assert out.exit_code == 0 and "EPSG:4326" in out.stdout and "stats VV" in out.stdout

    png = tmp_path / "q.png"
    out = r.invoke(app, ["quicklook", arch, "Spain_7370579_S1Hand", "-o", str(png)])
    assert out.exit_code == 0, out.output
    img = np.asarray(Image.open(png))
    assert img.shape == (512, 1024) and img.std() > 20  # two panels, real contrast

    tif = tmp_path / "x.tif"
    out = r.invoke(app, ["export", arch, "Spain_7370579_S1Hand", "-o", str(tif)])
    assert out.exit_code == 0, out.output
    with rasterio.open(tif) as dst, rasterio.open(SAMPLE) as src:
        assert dst.transform == src.transform and dst.crs == src.crs
        assert dst.descriptions == ("VV", "VH") and dst.count == 2
        np.testing.assert_array_equal(dst.read(), src.read())
        assert dst.overviews(1) == [] or all(f > 1 for f in dst.overviews(1))


def test_unknown_scene_and_archive_fail_with_one_line(tmp_path: Path) -> None:
    r = CliRunner()
    out = r.invoke(app, ["info", str(tmp_path / "none.zarr"), "x"])
    assert out.exit_code == 1 and out.stderr.count("\n") == 1 and "not found" in out.stderr
    arch = str(tmp_path / "a.zarr")
    r.invoke(app, ["ingest", str(SAMPLE), "-a", arch, "-q"])
    out = r.invoke(app, ["quicklook", arch, "nope", "-o", str(tmp_path / "q.png")])
    assert out.exit_code == 1 and "scene 'nope': not in archive" in out.stderr


def test_console_script_help_shows_an_example() -> None:
    out = subprocess.run([sys.executable, "-m", "sarray.cli", "ingest", "--help"],
                         capture_output=True, text=True, check=True)
    assert "Example: sarray ingest" in out.stdout


# Each: a command line that fails, and a piece of its one-line message.
FAILING = [
    (["model", "info", "--bad"], "sarray model info: No such option: --bad"),
    (["model", "info", "--preset", "nope"], "nope"),
    (["model", "speckle", "--model", "/nonexistent/weights"], "/nonexistent/weights"),
    (["train", "--steps", "3"], "give --config"),
    (["train", "--config", "/nonexistent.yaml"], "/nonexistent.yaml"),
    (["train", "plan", "--gpus", "many"], "Invalid value for '--gpus'"),
    (["train", "plan", "--train", "everything"], "train"),
    (["train", "prepare-data", "--archive", "x.zarr"], "Missing option '--data'"),
    (["evaluate", "--model", "tiny"], "give --archive"),
    (["ingest", "/nonexistent.tif", "-a", "A.zarr"], "/nonexistent.tif: no such file"),
    (["ingest"], "Missing argument 'paths'; see"),
    (["ls", "/nonexistent.zarr"], "/nonexistent.zarr"),
    (["info", "/nonexistent.zarr", "s"], "/nonexistent.zarr"),
    (["translate", "/nonexistent.zarr", "s"], "/nonexistent.zarr"),
    (["translate", "A.zarr", "s", "--scale", "zero"], "Invalid value for '--scale'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["bench", "project", "--area-km2", "1e6"], "Missing option '--gpus'"),
    (["bench", "project", "--area-km2", "-5", "--gpus", "4"], "`area_km2` (-5.0) must be > 0"),
    (["bench", "project", "--area-km2", "5", "--gpus", "4", "--from", "/nonexistent.json"], "/nonexistent.json"),
]


@pytest.mark.parametrize("argv,text", FAILING, ids=[" ".join(a[:3]) for a, _ in FAILING])
def test_every_subcommand_fails_with_one_line_and_status_1(argv: list[str], text: str,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 1, res.output
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("sarray: error: "), res.stderr
    assert text in lines[0]
    assert not (tmp_path / "A.zarr").exists()


def _options(help_text: str) -> set[str]:
    import re

    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text))


@pytest.mark.parametrize("stage", [["ingest"], ["translate"], ["train"], ["evaluate"],
                                   ["bench", "run"], ["bench", "project"]], ids=" ".join)
def test_each_job_takes_exactly_its_subcommands_options(stage: list[str]) -> None:
    """jobs/<stage>.py runs `sarray <stage>`: its --help lists the same options."""
    import subprocess
    import sys

    job = subprocess.run([sys.executable, str(REPO / "jobs" / f"{stage[0]}.py"), *stage[1:], "--help"],
                         capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr
    cli = CliRunner().invoke(app, [*stage, "--help"], terminal_width=200)
    assert cli.exit_code == 0
    assert _options(job.stdout) == _options(cli.output) and len(_options(cli.output)) >= 2
