"""Scenes as STAC Items and the catalog as a STAC Collection."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sarray.cli import app


def test_items_and_collection(data_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    arch = str(tmp_path / "a.zarr")
    umbra = data_dir / "umbra" / "umbra_yasur_train.tif"
    s1 = data_dir / "sentinel1" / "sen1floods11" / "Spain_7370579_S1Hand.tif"
    for src, sid, sensor in ((umbra, "umbra", "Umbra-04"), (s1, "s1", "Sentinel-1")):
        res = runner.invoke(app, ["ingest", str(src), "-a", arch, "-q", "--scene-id", sid,
                                  "--sensor", sensor])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["stac", arch, "umbra", "-o", str(tmp_path / "one")])
    assert res.exit_code == 0, res.output
    item = json.loads((tmp_path / "one" / "umbra.json").read_text())
    assert item["type"] == "Feature" and item["id"] == "umbra"
    ring = item["geometry"]["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    lon = [p[0] for p in ring]
    assert 169.4 < min(lon) < max(lon) < 169.5  # Mount Yasur
    # The rotated grid: the footprint is a rotated quadrilateral, not the bbox rectangle.
    assert len({round(p[0], 6) for p in ring[:4]}) == 4
    assert item["properties"]["proj:shape"] == [1500, 2000]
    assert item["properties"]["sar:frequency_band"] == "X"  # Umbra
    asset = item["assets"]["backscatter"]
    assert asset["href"].startswith(arch + "/scenes/umbra.") and "icechunk" in asset["type"]
    res = runner.invoke(app, ["stac", arch, "--all", "-o", str(tmp_path / "all")])
    assert res.exit_code == 0, res.output
    coll = json.loads((tmp_path / "all" / "collection.json").read_text())
    assert coll["type"] == "Collection"
    items = sorted(p.parent.name for p in (tmp_path / "all").glob("*/*.json"))
    assert items == ["s1", "umbra"]
    s1_item = json.loads((tmp_path / "all" / "s1" / "s1.json").read_text())
    assert s1_item["properties"]["sar:polarizations"] == ["VV", "VH"]
    assert s1_item["properties"]["sar:frequency_band"] == "C"
    res = runner.invoke(app, ["stac", arch, "-o", str(tmp_path / "x")])
    assert res.exit_code == 1 and "--all" in res.output
