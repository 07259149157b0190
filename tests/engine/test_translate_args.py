"""Bad arguments fail before Ray starts (this module runs without a Ray fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sarray.engine.translate import TranslateConfig, translate
from sarray.errors import ConfigError, SceneNotFoundError
from sarray.ingest.run import ingest

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "Spain_7370579_S1Hand.tif"


@pytest.fixture
def arch(tmp_path: Path) -> Path:
    a = tmp_path / "a.zarr"
    ingest([SAMPLE], a)
    return a


def test_unknown_scene_fails_before_ray(arch: Path) -> None:
    import ray

    with pytest.raises(SceneNotFoundError, match="scene 'nope': not in archive"):
        translate(arch, ["nope"], TranslateConfig(model="tiny-random"), progress=False)
    assert not ray.is_initialized()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": 3}, "`scale` \\(3\\) must be one of"),
        ({"chunk_px": 64, "halo_px": 16}, "`halo_px` \\(16\\) must be smaller than the tile footprint"),
        ({"chunk_px": 130}, "`chunk_px` \\(130\\) must be a positive multiple of `scale`"),
        ({"model": "/no/such/weights"}, "`model`"),
        ({"replicas": 0}, "`replicas`"),
        ({"writers": 0}, "`writers`"),
        ({"consistency": "maybe"}, "`consistency`"),
        ({"micro_batch": 0}, "`micro_batch`"),
        ({"batch_size": 4, "max_batch_size": 2}, "`max_batch_size` \\(2\\) must be an integer of at least `batch_size` \\(4\\)"),
    ],
)
def test_bad_config_is_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TranslateConfig(**{"model": "tiny-random", **kwargs})


def test_calls_grow_only_where_batching_cannot_change_the_output() -> None:
    """Calls of fast replicas may grow (to 8 by default) only with micro_batch 1, where every
    tile runs alone whatever its call; with micro batches they keep batch_size."""
    assert TranslateConfig(model="tiny-random").call_size_limit() == 8
    assert TranslateConfig(model="tiny-random", batch_size=12).call_size_limit() == 12
    assert TranslateConfig(model="tiny-random", max_batch_size=3).call_size_limit() == 3
    assert TranslateConfig(model="tiny-random", batch_size=4, micro_batch=2).call_size_limit() == 4


def test_cli_bad_scale_exits_1_without_ray(arch: Path) -> None:
    from typer.testing import CliRunner

    from sarray.cli import app

    res = CliRunner().invoke(app, ["translate", str(arch), "Spain_7370579_S1Hand", "--scale", "3"])
    assert res.exit_code == 1 and "`scale` (3)" in res.stderr


def test_scale_one_is_for_simulated_scenes_only(arch: Path) -> None:
    import ray

    with pytest.raises(ConfigError, match="simulated-to-real"):
        translate(arch, ["Spain_7370579_S1Hand"], TranslateConfig(model="tiny-random", scale=1),
                  progress=False)
    assert not ray.is_initialized()


def test_replica_config_carries_the_run_settings() -> None:
    cfg = TranslateConfig(model="tiny-random", scale=8, seed=7, micro_batch=4, num_inference_steps=3)
    rc = cfg.replica_config()
    assert (rc["preset"], rc["weights"], rc["scale"], rc["seed"], rc["micro_batch"],
            rc["num_inference_steps"]) == ("tiny", None, 8, 7, 4, 3)
    assert cfg.tile_spec().pad_multiple == 2  # tiny's 16-pixel multiple at scale 8


def test_each_scene_is_speckled_with_its_own_sensors_statistics(tmp_path: Path, arch: Path) -> None:
    """Unset (``auto``), a scene of a sensor the model stores statistics for gets that set (an
    Umbra scene keeps the Umbra product's recording, measured per level); any other sensor the
    model's default; a named set wins. Chosen per scene, before any tile runs."""
    from sarray.engine.output import OutputWriter

    def writer(**kw: object) -> OutputWriter:
        cfg = TranslateConfig(model="tiny", scale=4, **kw)
        return OutputWriter(str(arch), str(tmp_path / "out.zarr"), cfg.to_dict(), {})

    auto = writer()
    umbra = auto.speckle_for("Umbra-04")
    assert umbra["set"] == "Umbra-04" and len(umbra["levels"]) >= 2
    assert auto.speckle_for("Sentinel-1A")["set"] is None
    assert auto.speckle_for(None)["levels"] == []  # the pooled default: one table
    assert writer(speckle="pooled").speckle_for("Umbra-04")["set"] == "pooled"
    assert writer(output="reflectivity").speckle_for("Umbra-04") is None
    with pytest.raises(ConfigError, match="'ERS'\\) is not stored with the model"):
        writer(speckle="ERS")


def test_an_unknown_speckle_set_fails_in_one_line_before_ray(arch: Path, capsys) -> None:
    import ray

    from sarray.cli import main

    assert main(["translate", str(arch), "Spain_7370579_S1Hand", "--speckle", "ERS"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sarray: error:") and "'ERS'" in err[0]
    assert "Traceback" not in err[0] and not ray.is_initialized()
