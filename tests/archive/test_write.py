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
