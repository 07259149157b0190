"""The translate engine on a local Ray (num_cpus=2), with stand-in and tiny replicas."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sarray.archive.radiometry import multilook_intensity
from sarray.archive.store import Archive
from sarray.engine.translate import TranslateConfig, translate
from sarray.errors import ReplicaError
from sarray.ingest.config import IngestConfig, Window
from sarray.ingest.run import ingest
from sarray.testing.scenes import speckle_image, write_geotiff

REPLICAS = "sarray.testing.replicas"


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory):
    import ray

    with pytest.MonkeyPatch.context() as mp:  # restored after the module: nothing leaks
        mp.setenv("SARRAY_TEST_CRASH_MARKER", str(tmp_path_factory.mktemp("crash") / "marker"))
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def arch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive with a smooth-ish linear-intensity scene (speckle added by the replicas)."""
    d = tmp_path_factory.mktemp("engine")
    smooth = speckle_image((150, 230), seed=3, looks=64)  # 64 looks: nearly noise-free
    tif = write_geotiff(d / "smooth_vv.tif", smooth)
    a = d / "a.zarr"
    ingest([tif], a, IngestConfig(units="linear"))
    return a


def _run(arch: Path, out: str, **kw) -> np.ndarray:
    cfg = TranslateConfig(model="tiny-random", out_scene=out, **{"scale": 4, "chunk_px": 128,
                                                                 "halo_px": 8, **kw})
    (s,) = translate(arch, ["smooth_vv"], cfg, progress=False)
    assert s.status == "complete", s.line()
    return Archive(arch).open_scene(out)["backscatter"].values


def test_identity_replica_output_is_the_input_resampled(ray_local, arch: Path) -> None:
    out = _run(arch, "ident", consistency="off", output="reflectivity",
               replica_class=f"{REPLICAS}:IdentityReplica")
    src = Archive(arch).open_scene("smooth_vv")["backscatter"].values
    np.testing.assert_array_equal(out, np.repeat(np.repeat(src, 4, 1), 4, 2))
    attrs = Archive(arch).open_scene("ident").attrs
    assert attrs["platform"] == "synthetic"
    prov = attrs["provenance"]
    assert (prov["source_scene"], prov["scale"], prov["seed"], prov["model"]) == ("smooth_vv", 4, 0, "tiny-random")
    assert prov["sarray_version"] and prov["preset"] == "tiny"
    assert Archive(arch).record("ident").pixel_spacing_m == (2.5, 2.5)


def _local_cv(img: np.ndarray, rows: slice, cols: slice, box: int = 8) -> float:
    x = img[rows, cols]
    h, w = x.shape[0] // box * box, x.shape[1] // box * box
    b = x[:h, :w].reshape(h // box, box, w // box, box)
    return float(np.mean(b.std(axis=(1, 3)) / b.mean(axis=(1, 3))))


def test_no_seam_in_gradient_or_speckle_statistics(ray_local, arch: Path) -> None:
    # A model whose tiles carry texture of their own (the blend's hard case): reflectivity out.
    out = _run(arch, "speckled", consistency="off", output="reflectivity",
               replica_class=f"{REPLICAS}:SpeckleReplica")[0]
    chunk, band = 128, 8 * 4
    borders = list(range(chunk, out.shape[1], chunk))
    # Gradient across chunk borders vs inside chunks (columns and rows).
    # (4 columns each: every phase of the 4x upsampling grid, so both sides compare alike.)
    gx = np.abs(np.diff(out, axis=1))
    at_border = np.mean([gx[:, b - 2 : b + 2].mean() for b in borders])
    inside = np.mean([gx[:, b - chunk // 2 - 2 : b - chunk // 2 + 2].mean() for b in borders])
    assert at_border <= 1.1 * inside
    # Local coefficient of variation in the overlap bands vs the chunk interiors.
    cv_band = np.mean([_local_cv(out, slice(None), slice(b - band // 2, b + band // 2)) for b in borders])
    cv_inside = np.mean([_local_cv(out, slice(None), slice(b - chunk // 2 - 16, b - chunk // 2 + 16)) for b in borders])
    assert abs(cv_band / cv_inside - 1) <= 0.10, (cv_band, cv_inside)
    rb = list(range(chunk, out.shape[0], chunk))
    cv_rows = np.mean([_local_cv(out, slice(b - band // 2, b + band // 2), slice(None)) for b in rb])
    assert abs(cv_rows / cv_inside - 1) <= 0.10


def test_speckled_output_is_seamless_sensor_speckle_that_multilooks_to_the_input(
        ray_local, arch: Path) -> None:
    """The default output: the identity model's reflectivity times the speckle statistics
    (single-look without stored ones), chunk borders invisible, consistent with the input."""
    from sarray.stitch.speckle import multiplier, single_look

    out = _run(arch, "phys", replica_class=f"{REPLICAS}:IdentityReplica")
    src = Archive(arch).open_scene("smooth_vv")["backscatter"].values.astype(np.float64)
    assert np.isfinite(out).all() and (out > 0).all()
    err_db = 10 * np.log10(multilook_intensity(out.astype(np.float64) ** 2, 4) / src**2)
    assert np.sqrt(np.mean(err_db**2)) < 0.05
    # Fully developed single-look speckle: intensity over its parent pixel is about exponential.
    ratio = out.astype(np.float64) ** 2 / np.repeat(np.repeat(src**2, 4, 1), 4, 2)
    assert 0.8 < ratio.var() / ratio.mean() ** 2 < 1.25
    # Without the consistency step the output is exactly the reflectivity times one speckle
    # field over the whole scene: chunk borders cannot show.
    off = _run(arch, "phys_off", consistency="off", replica_class=f"{REPLICAS}:IdentityReplica")
    refl = np.repeat(np.repeat(src, 4, 1), 4, 2)
    field = multiplier(single_look(), (0, off.shape[1], 0, off.shape[2]), 1, seed=0, scene="smooth_vv")
    np.testing.assert_allclose(off.astype(np.float64) ** 2 / refl**2, field, rtol=1e-4)


def test_consistency_step_reproduces_the_input(ray_local, arch: Path) -> None:
    out = _run(arch, "consistent", consistency="multilook", replica_class=f"{REPLICAS}:SpeckleReplica")
    src = Archive(arch).open_scene("smooth_vv")["backscatter"].values.astype(np.float64)
    # Linear float values without "amp"/"db" hints are taken as amplitude: intensity = v**2.
    assert Archive(arch).open_scene("consistent").attrs["quantity"] == "unknown"
    # The smooth correction converges to a few hundredths of a dB RMS, chunk by chunk (halo).
    err_db = 10 * np.log10(multilook_intensity(out.astype(np.float64) ** 2, 4) / src**2)
    assert np.sqrt(np.mean(err_db**2)) < 0.05 and np.abs(err_db).max() < 1.0


def test_resume_equals_uninterrupted(ray_local, arch: Path) -> None:
    full = _run(arch, "full", replica_class=f"{REPLICAS}:SpeckleReplica")
    cfg = TranslateConfig(model="tiny-random", out_scene="resumed", scale=4, chunk_px=128,
                          halo_px=8, max_chunks=3, replica_class=f"{REPLICAS}:SpeckleReplica")
    (first,) = translate(arch, ["smooth_vv"], cfg, progress=False)
    assert first.status == "partial" and first.chunks_written == 3
    assert "resumed" not in Archive(arch).catalog()
    again = TranslateConfig(**{**cfg.to_dict(), "max_chunks": None})
    (second,) = translate(arch, ["smooth_vv"], again, progress=False)
    assert second.status == "complete"
    assert second.chunks_written == second.chunks_total - 3  # only what was missing
    np.testing.assert_array_equal(Archive(arch).open_scene("resumed")["backscatter"].values, full)


def test_dead_actor_is_replaced_and_its_tiles_retried(ray_local, arch: Path) -> None:
    marker = Path(os.environ["SARRAY_TEST_CRASH_MARKER"])
    marker.unlink(missing_ok=True)
    crashed = _run(arch, "crashed", replica_class=f"{REPLICAS}:CrashOnceReplica")
    assert marker.exists()  # the actor really died once
    clean = _run(arch, "clean", replica_class=f"{REPLICAS}:SpeckleReplica")
    np.testing.assert_array_equal(crashed, clean)


def test_tile_that_keeps_failing_stops_the_job_naming_it(ray_local, arch: Path) -> None:
    cfg = TranslateConfig(model="tiny-random", out_scene="failing", scale=4, chunk_px=128,
                          halo_px=8, replica_class=f"{REPLICAS}:AlwaysFailReplica")
    with pytest.raises(ReplicaError, match=r"tile\(s\) \(0, 1\): failed 3 times.*injected failure"):
        translate(arch, ["smooth_vv"], cfg, progress=False)
    assert "failing" not in Archive(arch).catalog()


def test_one_and_two_tiny_replicas_give_identical_output(ray_local, tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "s_vv.tif", speckle_image((48, 72), seed=5, looks=4))
    a = tmp_path / "a.zarr"
    ingest([tif], a, IngestConfig(units="linear"))
    outs = []
    for n in (1, 2):
        cfg = TranslateConfig(model="tiny-random", scale=2, chunk_px=64, halo_px=8, replicas=n,
                              out_scene=f"r{n}", num_inference_steps=2)
        (s,) = translate(a, ["s_vv"], cfg, progress=False)
        assert s.replicas == n and s.status == "complete"
        outs.append(Archive(a).open_scene(f"r{n}")["backscatter"].values)
    assert np.isfinite(outs[0]).all() and outs[0].std() > 0
    np.testing.assert_array_equal(outs[0], outs[1])


def test_rotated_umbra_output_geotransform(ray_local, data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "umbra/umbra_yasur_train.tif"
    a = tmp_path / "a.zarr"
    ingest([src], a, IngestConfig(scene_id="umbra", window=Window(row=0, col=0, height=96, width=128)))
    cfg = TranslateConfig(model="tiny-random", scale=4, chunk_px=128, halo_px=8,
                          replica_class=f"{REPLICAS}:IdentityReplica")
    (s,) = translate(a, ["umbra"], cfg, cog=tmp_path / "u.tif", quicklook=tmp_path / "u.png",
                     progress=False)
    with rasterio.open(src) as ds:
        c, a_, b, f, d, e = ds.transform.to_gdal()
        crs = ds.crs
    from sarray.archive.describe import describe_scene

    gt = describe_scene(Archive(a), s.out_scene)["geotransform"]
    assert tuple(gt) == (c, a_ / 4, b / 4, f, d / 4, e / 4)
    with rasterio.open(s.cog) as out:
        assert tuple(out.transform.to_gdal()) == (c, a_ / 4, b / 4, f, d / 4, e / 4)
        assert out.crs == crs and out.shape == (384, 512)
    from PIL import Image

    assert Image.open(s.quicklook).size[0] >= 512


def _committed_done(a: Path, out_id: str) -> int:
    """Chunks flagged done in the last commit of an unfinished output (read from outside)."""
    import icechunk
    import zarr

    for repo_dir in (a / "scenes").glob(f"{out_id}.*"):
        try:
            session = icechunk.Repository.open(
                icechunk.local_filesystem_storage(str(repo_dir))).readonly_session(branch="main")
            return int(np.asarray(zarr.open_group(store=session.store, mode="r")["translate_done"][...]).sum())
        except Exception:  # not created or not committed yet
            return 0
    return 0


def test_killed_cli_run_resumes_to_the_same_result(ray_local, tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "k_vv.tif", speckle_image((96, 128), seed=6, looks=4))
    a = tmp_path / "a.zarr"
    ingest([tif], a, IngestConfig(units="linear"))
    args = [sys.executable, "-m", "sarray.cli", "translate", str(a), "k_vv", "--scale", "2",
            "--chunk-px", "32", "--halo-px", "4", "--model", "tiny-random", "--steps", "2", "-q"]
    proc = subprocess.Popen(args + ["--out-scene", "killed"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    committed = 0
    while time.time() < deadline and proc.poll() is None:
        committed = _committed_done(a, "killed")
        if committed >= 1:  # at least one periodic commit landed; later chunks are in flight
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        f"the run ended before it could be killed (status {proc.returncode}): "
        f"{proc.stderr.read().decode()[-800:] if proc.stderr else ''}")
    assert "killed" not in Archive(a).catalog()
    assert 0 < _committed_done(a, "killed") < 48  # 6 x 8 chunks: some kept, the rest to resume
    res = subprocess.run(args + ["--out-scene", "killed"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "complete" in res.stdout
    cfg = TranslateConfig(model="tiny-random", scale=2, chunk_px=32, halo_px=4,
                          num_inference_steps=2, out_scene="straight")
    translate(a, ["k_vv"], cfg, progress=False)
    np.testing.assert_array_equal(Archive(a).open_scene("killed")["backscatter"].values,
                                  Archive(a).open_scene("straight")["backscatter"].values)


def test_simulated_scene_is_refined_at_the_same_spacing(ray_local, tmp_path: Path) -> None:
    """Simulated-to-real: the same replica, conditioned on a `simulated` scene, scale 1."""
    tif = write_geotiff(tmp_path / "sim_vv.tif", speckle_image((48, 64), seed=9, looks=16))
    a = tmp_path / "a.zarr"
    ingest([tif], a, IngestConfig(units="linear", platform="simulated"))
    cfg = TranslateConfig(model="tiny-random", scale=1, chunk_px=32, halo_px=8,
                          num_inference_steps=2, consistency="off")
    (s,) = translate(a, ["sim_vv"], cfg, progress=False)
    out = Archive(a).open_scene(s.out_scene)
    src = Archive(a).open_scene("sim_vv")
    assert out["backscatter"].shape == src["backscatter"].shape
    assert Archive(a).record(s.out_scene).pixel_spacing_m == Archive(a).record("sim_vv").pixel_spacing_m
    assert not np.array_equal(out["backscatter"].values, src["backscatter"].values)
    assert out.attrs["platform"] == "synthetic"


def test_engine_equals_one_shot_blend_of_every_chunk(ray_local, arch: Path) -> None:
    """Early (partial) blending while chunks wait for the row below changes nothing."""
    from sarray.models.replica import ReplicaConfig
    from sarray.stitch.blend import Prediction, blend_chunk
    from sarray.testing.replicas import SpeckleReplica
    from sarray.tiles.grid import iter_tiles, neighbours, tile_ramps

    got = _run(arch, "oneshot", consistency="off", output="reflectivity",
               replica_class=f"{REPLICAS}:SpeckleReplica")
    cfg = TranslateConfig(model="tiny-random", scale=4, chunk_px=128, halo_px=8)
    spec = cfg.tile_spec()
    src_ds = Archive(arch).open_scene("smooth_vv")
    src, attrs = src_ds["backscatter"].values, src_ds.attrs
    rep = SpeckleReplica(ReplicaConfig.from_dict(cfg.replica_config()))
    shape_out = (src.shape[1] * 4, src.shape[2] * 4)
    tiles = {t.key: t for t in iter_tiles(src.shape[1:], spec)}
    preds = {}
    for k, t in tiles.items():
        x = src[:, t.src[0] : t.src[1], t.src[2] : t.src[3]]
        y = rep({"tiles": x[None], "scene_id": ["smooth_vv"], "tile_index": [list(k)]})["output"][0]
        preds[k] = Prediction(t.out, y.astype(np.float32), *tile_ramps(t, shape_out, spec))
    grid = (max(k[0] for k in tiles) + 1, max(k[1] for k in tiles) + 1)
    want = np.empty_like(got)
    for k, t in tiles.items():
        y0, y1, x0, x1 = t.chunk
        want[:, y0:y1, x0:x1] = blend_chunk(t.chunk, [preds[n] for n in neighbours(k, grid)],
                                            units=attrs["units"], quantity=attrs["quantity"])
    np.testing.assert_array_equal(got, want)


def test_each_chunk_is_written_exactly_once_whole(ray_local, arch: Path) -> None:
    """Every chunk is written once, whole and grid-aligned, by a worker process (not the driver)."""
    cfg = TranslateConfig(model="tiny-random", out_scene="once", scale=4, chunk_px=128, halo_px=8,
                          replica_class=f"{REPLICAS}:SpeckleReplica")
    (s,) = translate(arch, ["smooth_vv"], cfg, progress=False)
    writes = s.writes
    keys = [w["key"] for w in writes]
    assert len(keys) == len(set(keys)) == 5 * 8  # 150x230 input, 32-px footprints
    for w in writes:
        (i, j), (y0, y1, x0, x1), shape = w["key"], w["region"], w["shape"]
        assert (y0, x0) == (i * 128, j * 128)  # aligned on the output chunk grid
        assert shape[1:] == (y1 - y0, x1 - x0) and y1 - y0 <= 128 and x1 - x0 <= 128
        assert w["pid"] != os.getpid()  # written on a worker


def test_damaged_input_chunk_stops_translate_naming_it(ray_local, tmp_path: Path) -> None:
    """A corrupt input chunk is not a NaN tile in a 'complete' output: the job stops with the
    chunk's name, read on the replica that needed it, and nothing is catalogued."""
    from sarray.archive.layout import ArchiveLayout
    from sarray.errors import ChunkError

    tif = write_geotiff(tmp_path / "d_vv.tif", speckle_image((128, 192), seed=9, looks=4))
    a = tmp_path / "a.zarr"
    ingest([tif], a, IngestConfig(units="linear", layout=ArchiveLayout(chunk_px=64)))
    chunk = sorted((a / "scenes").glob("d_vv.*/chunks/*"))[2]
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    chunk.write_bytes(bytes(raw))
    cfg = TranslateConfig(model="tiny-random", out_scene="d_out", scale=2, chunk_px=64, halo_px=4,
                          replica_class=f"{REPLICAS}:IdentityReplica")
    with pytest.raises(ChunkError, match=r"scene d_vv, backscatter chunk \(0, \d, \d\): checksum mismatch"):
        translate(a, ["d_vv"], cfg, progress=False)
    assert not Archive(a).has_scene("d_out")


def test_unfinished_output_with_other_settings_is_one_clear_error(ray_local, arch: Path) -> None:
    """The writer actor's refusal reaches the caller as the ArchiveError itself (one line, no
    remote traceback); --restart discards the unfinished output and goes on."""
    from sarray.errors import ArchiveError

    base = dict(model="tiny-random", out_scene="clash", scale=4, chunk_px=128, halo_px=8,
                replica_class=f"{REPLICAS}:IdentityReplica")
    (s,) = translate(arch, ["smooth_vv"], TranslateConfig(max_chunks=3, **base), progress=False)
    assert s.status == "partial"
    with pytest.raises(ArchiveError) as err:
        translate(arch, ["smooth_vv"], TranslateConfig(seed=7, **base), progress=False)
    assert "other settings" in str(err.value) and len(str(err.value).splitlines()) == 1
    assert type(err.value) is ArchiveError
    (s,) = translate(arch, ["smooth_vv"], TranslateConfig(seed=7, on_unfinished="restart", **base),
                     progress=False)
    assert s.status == "complete"
