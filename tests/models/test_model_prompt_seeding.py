"""Prompts from metadata and per-tile seeds."""

from __future__ import annotations

import numpy as np
import pytest

from sarray.errors import ConfigError
from sarray.models.meta import SceneMeta
from sarray.models.prompt import build_prompt, guess_band
from sarray.models.seeding import derive_seed


def test_seed_is_stable_and_depends_on_every_part():
    s = derive_seed("scene-a", 3, 0)
    assert s == derive_seed("scene-a", 3, 0)
    assert 0 <= s < 2**63
    # Pinned: a change here changes every output ever produced.
    assert s == 1493614830693698772
    others = {derive_seed("scene-b", 3, 0), derive_seed("scene-a", 4, 0), derive_seed("scene-a", 3, 1),
              derive_seed("scene-a", (0, 3), 0)}
    assert s not in others and len(others) == 4
    assert derive_seed("x", (1, 2), 5) == derive_seed("x", np.array([1, 2]), 5)
    assert derive_seed("x", np.int64(7), 5) == derive_seed("x", 7, 5)


@pytest.mark.parametrize("bad", [1.5, "3", (), (1, "a"), None, True])
def test_bad_tile_index(bad):
    with pytest.raises(ConfigError, match="`tile_index`"):
        derive_seed("x", bad, 0)


def test_prompt_from_metadata():
    meta = SceneMeta(units="db", quantity="intensity", polarisations=("VV", "VH"),
                     pixel_spacing_m=(10.0, 10.0), sensor="Sentinel-1A", scene_type="flooded farmland")
    p = build_prompt(meta, scale=4)
    assert p == ("airborne SAR amplitude image, C-band, VV+VH polarisation, 2.5 m pixel spacing, "
                 "translated from Sentinel-1A, scene: flooded farmland")
    sim = SceneMeta(units="linear", polarisations=("HH",), platform="simulated", band="X")
    p = build_prompt(sim, scale=1)
    assert "X-band" in p and "simulated" in p and "pixel spacing" not in p
    assert guess_band("Umbra-04") == "X" and guess_band("ALOS-2") == "L" and guess_band("foo") is None


def test_scene_meta_from_archive_attrs_ignores_extras_and_validates():
    attrs = {"units": "dn", "quantity": "amplitude", "polarisations": ["VV"], "sensor": "S1",
             "pixel_spacing_m": [10, 10], "source_files": ["a.tif"], "acquisition_time": None}
    meta = SceneMeta.from_dict(attrs)
    assert meta.polarisations == ("VV",) and meta.pixel_spacing_m == (10.0, 10.0)
    assert SceneMeta.from_dict(meta.to_dict()) == meta
    with pytest.raises(ConfigError, match="lacks"):
        SceneMeta.from_dict({"units": "db"})
    with pytest.raises(ConfigError, match="`units`"):
        SceneMeta.from_dict({"units": "watts", "polarisations": ["VV"]})
    with pytest.raises(ConfigError, match="`platform`"):
        SceneMeta.from_dict({"units": "db", "polarisations": ["VV"], "platform": "drone"})
    with pytest.raises(ConfigError, match="`pixel_spacing_m`"):
        SceneMeta.from_dict({"units": "db", "polarisations": ["VV"], "pixel_spacing_m": [0, 1]})
