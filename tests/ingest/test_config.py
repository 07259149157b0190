"""IngestConfig validation, window parsing and small pure helpers."""

from __future__ import annotations

import math

import pytest

from sarray.errors import ConfigError
from sarray.ingest.config import IngestConfig, Window
from sarray.ingest.source import infer_sensor, parse_time_from_name, spacing_from_transform


def test_window_parse_and_errors() -> None:
    assert Window.parse("1,2,30,40") == Window(row=1, col=2, height=30, width=40)
    with pytest.raises(ConfigError, match="ROW,COL,HEIGHT,WIDTH"):
        Window.parse("1,2,3")
    with pytest.raises(ConfigError, match="height, width > 0"):
        Window.parse("0,0,0,10")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"platform": "orbital"}, "`platform` \\('orbital'\\)"),
        ({"units": "decibel"}, "`units`"),
        ({"scene_id": "../x"}, "not a safe scene id"),
        ({"pols": ("VV", "VV")}, "distinct labels"),
        ({"spacing_m": -1.0}, "`spacing_m`"),
        ({"calibration": "sigma"}, "`calibration`"),
        ({"acquisition_time": "yesterday"}, "ISO 8601"),
    ],
)
def test_config_errors_name_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        IngestConfig(**kwargs)


def test_config_round_trips_through_dict() -> None:
    cfg = IngestConfig(platform="airborne", pols=("HH", "HV"), window=Window(row=0, col=0, height=8, width=8))
    assert IngestConfig.from_dict(cfg.to_dict()) == cfg


def test_names_give_time_and_sensor() -> None:
    assert parse_time_from_name("S1B_IW_GRDH_1SDV_20210401T052623_x") == "2021-04-01T05:26:23"
    assert parse_time_from_name("S32631X_vh_20150403_0001_A_amp.tif") == "2015-04-03T00:00:00"
    assert parse_time_from_name("umbra_yasur_train.tif") is None
    assert infer_sensor("S1A_IW_GRDH_1SDV.tif") == "Sentinel-1A"
    assert infer_sensor("s1b-iw-grd-vv.tiff") == "Sentinel-1B"
    assert infer_sensor("sar_hh.tif") == "unknown"


def test_spacing_from_rotated_and_geographic_transforms() -> None:
    from pyproj import CRS

    utm = CRS.from_epsg(32631).to_wkt()
    # A 0.6 m grid rotated by 30 degrees.
    a, th = 0.6, math.radians(30)
    gt = (500000.0, a * math.cos(th), -a * math.sin(th), 5e6, -a * math.sin(th), -a * math.cos(th))
    assert spacing_from_transform(gt, utm, (100, 100)) == (0.6, 0.6)
    # 1e-4 degree at the equator is ~11.1 m both ways.
    dy, dx = spacing_from_transform((0.0, 1e-4, 0.0, 0.0, 0.0, -1e-4), CRS.from_epsg(4326).to_wkt(), (10, 10))
    assert dx == pytest.approx(11.13, abs=0.01) and dy == pytest.approx(11.11, abs=0.01)
