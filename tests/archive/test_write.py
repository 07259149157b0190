"""Statistics merged from chunks equal the statistics of the whole; chunks align with writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sarray.archive.layout import ArchiveLayout
from sarray.archive.write import block_stats, combine_stats
from sarray.ingest.config import IngestConfig
from sarray.ingest.geotiff import open_geotiffs
from sarray.testing.scenes import speckle_image, write_geotiff


def test_chunked_stats_equal_whole_array_stats() -> None:
    rng = np.random.default_rng(0)
    a = (rng.gamma(1.0, 1.0, (2, 300, 500)) * 3).astype(np.float32)
    a[0, :10] = np.nan
    a[1, 5, 5] = np.inf
    parts = np.concatenate(
        [np.concatenate([block_stats(a[:, r : r + 100, c : c + 250], "linear", "intensity")
                         for c in (0, 250)], axis=2) for r in (0, 100, 200)], axis=1)
    st = combine_stats(parts, ("VV", "VH"), 300 * 500)
    for p, pol in enumerate(("VV", "VH")):
        v = a[p][np.isfinite(a[p])].astype(np.float64)
        assert st[pol]["valid_fraction"] == v.size / (300 * 500)
        np.testing.assert_allclose(st[pol]["mean"], v.mean(), rtol=1e-9)
        np.testing.assert_allclose(st[pol]["std"], v.std(), rtol=1e-6)
        assert (st[pol]["min"], st[pol]["max"]) == (v.min(), v.max())
        # Amplitude moments come from a 1-in-16 subsample: close to, not equal to, the full.
        np.testing.assert_allclose(st[pol]["amplitude_mean"], np.sqrt(v).mean(), rtol=0.05)


def test_dask_chunks_match_the_archive_write_blocks(tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "s_vv.tif", speckle_image((700, 900), seed=0))
    (src,) = open_geotiffs([tif], IngestConfig(layout=ArchiveLayout(chunk_px=256)))
    assert src.data.chunks == ((1,), (256, 256, 188), (256, 256, 256, 132))
    (src,) = open_geotiffs([tif], IngestConfig(layout=ArchiveLayout(chunk_px=128, shard_px=512)))
    assert src.data.chunks[1] == (512, 188)


def test_a_scene_written_in_waves_equals_one_written_at_once(tmp_path: Path) -> None:
    """Waves of whole block rows (what bounds ingest memory) write the same bytes and statistics
    as one pass, for a height that is not a multiple of the wave."""
    import dask
    import zarr

    from sarray.archive.write import stage_scene_graph
    from sarray.ingest.source import Georef

    tif = write_geotiff(tmp_path / "s_vv.tif", speckle_image((700, 300), seed=1))
    layout = ArchiveLayout(chunk_px=128)
    (src,) = open_geotiffs([tif], IngestConfig(layout=layout))
    out = {}
    for name, wave_px in (("one", 10**9), ("waves", 1)):
        store = zarr.storage.LocalStore(tmp_path / f"{name}.zarr")
        waves = stage_scene_graph(src.data, src.pols, Georef(), src.units, src.quantity, store,
                                  layout, wave_px=wave_px)
        parts = [dask.compute(w, s)[1] for w, s in waves]
        stats = combine_stats(np.concatenate(parts, axis=1), src.pols, 700 * 300)
        out[name] = (len(waves), zarr.open_group(store, mode="r")["backscatter"][:], stats)
    assert out["one"][0] == 1 and out["waves"][0] == 6  # 700 rows in waves of one 128-px row
    np.testing.assert_array_equal(out["one"][1], out["waves"][1])
    assert out["one"][2] == out["waves"][2]
    np.testing.assert_array_equal(out["waves"][1], src.data.compute())
