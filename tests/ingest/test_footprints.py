"""Footprints of windows and bursts are the box of their own pixels, not of the whole swath."""

from __future__ import annotations

from pathlib import Path

import rasterio

from sarray.archive.store import Archive, SceneFilter
from sarray.ingest.config import IngestConfig, Window
from sarray.ingest.run import ingest

GRD = "sentinel1/safe/S1B_IW_GRDH_1SDV_20210401T052623_20210401T052648_026269_032297_ECC8.SAFE"


def test_a_box_at_the_far_corner_does_not_return_the_near_corner_window(data_dir: Path,
                                                                      tmp_path: Path) -> None:
    safe = data_dir / GRD
    tiff = sorted((safe / "measurement").glob("*vv*.tiff"))[0]
    with rasterio.open(tiff) as f:
        h, w = f.height, f.width
    arch = tmp_path / "a.zarr"
    for sid, row, col in (("near", 0, 0), ("far", h - 512, w - 512)):
        ingest([safe], arch, IngestConfig(scene_id=sid, calibration="none", pols=None,
                                          window=Window(row=row, col=col, height=512, width=512)))
    a = Archive(arch)
    near, far = a.record("near").bbox_lonlat, a.record("far").bbox_lonlat
    assert near is not None and far is not None
    # A 512-px window of 10 m pixels is about 5 km across: its box is not the swath's (~250 km).
    for box in (near, far):
        assert box[2] - box[0] < 0.2 and box[3] - box[1] < 0.2
    # The two corners are far apart, and a query around one finds only that one.
    assert abs(near[0] - far[0]) > 1.0 or abs(near[1] - far[1]) > 1.0
    pad = 0.01
    around_far = (far[0] - pad, far[1] - pad, far[2] + pad, far[3] + pad)
    assert [r.scene_id for r in a.find(SceneFilter(bbox_lonlat=around_far))] == ["far"]


def test_default_scene_ids_differ_per_swath_burst_and_window(data_dir: Path) -> None:
    from sarray.ingest.safe import open_safe

    slc = data_dir / "sentinel1/safe/S1B_IW_SLC__1SDV_20210401T052622_20210401T052650_026269_032297_EFA4.SAFE"
    stem = slc.name.removesuffix(".SAFE")
    ids = [open_safe(slc, IngestConfig(calibration="none", **kw)).scene_id for kw in (
        {"swath": "IW1", "burst": 1}, {"swath": "IW1", "burst": 2}, {"swath": "IW2", "burst": 1},
        {"swath": "IW1", "window": Window(row=0, col=0, height=64, width=64)})]
    assert ids == [f"{stem}_IW1_b1", f"{stem}_IW1_b2", f"{stem}_IW2_b1", f"{stem}_IW1_r0_c0_64x64"]
    # A one-swath GRD product keeps its plain name.
    assert open_safe(data_dir / GRD, IngestConfig(calibration="none")).scene_id == \
        GRD.split("/")[-1].removesuffix(".SAFE")
