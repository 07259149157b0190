"""Estimate the tiny model's speckle statistics and store them with its weights (speckle.json).

The statistics (:class:`sarray.stitch.speckle.SpeckleModel`) come from the *training* split of
the high-resolution scenes that ``sarray train prepare-data`` ingests (the held-out scenes of
:data:`sarray.train.sources.DEFAULT_VAL_SCENES` are left out): each plane in intensity, 8-bit DN
dequantised with a uniform dither (their zeros are clipped dark speckle), a central crop of at
most ``--max-px`` pixels a side.

Run:
    sarray train prepare-data --data ../shared/data --archive /tmp/sarray-train/real.zarr
    python recipes/tiny/speckle_stats.py --archive /tmp/sarray-train/real.zarr \
        --out sarray/models/weights/tiny
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def training_planes(archive: str, max_px: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Intensity planes of the training split's high-resolution scenes."""
    from sarray.archive.radiometry import to_intensity
    from sarray.archive.store import Archive
    from sarray.train.sources import DEFAULT_VAL_SCENES

    a = Archive(archive).require()
    rng = np.random.default_rng(seed)
    planes, used = [], []
    for rec in a.find():
        if rec.scene_id in DEFAULT_VAL_SCENES or not rec.pixel_spacing_m or max(rec.pixel_spacing_m) > 6.0:
            continue
        ds = a.open_scene(rec.scene_id)
        attrs = ds.attrs
        _, h, w = ds["backscatter"].shape
        y0, x0 = max(0, (h - max_px) // 2), max(0, (w - max_px) // 2)
        v = ds["backscatter"].isel(y=slice(y0, y0 + max_px), x=slice(x0, x0 + max_px)).values
        v = v.astype(np.float64)
        if attrs["units"] == "dn" and np.array_equal(v[np.isfinite(v)], np.round(v[np.isfinite(v)])):
            v = v + rng.uniform(0.0, 1.0, v.shape)  # dequantise 8-bit DN
        i = to_intensity(v, units=attrs["units"], quantity=attrs.get("quantity", "unknown"))
        for plane in i:
            if np.isfinite(plane).mean() > 0.95 and min(plane.shape) >= 64:
                planes.append(np.where(np.isfinite(plane), plane, np.nanmean(plane)))
        used.append(rec.scene_id)
    return planes, used


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", required=True)
    p.add_argument("--out", type=Path, default=Path("sarray/models/weights/tiny"))
    p.add_argument("--max-px", type=int, default=768)
    args = p.parse_args(argv)

    from sarray.stitch.speckle import SPECKLE_FILE, estimate_speckle

    planes, used = training_planes(args.archive, args.max_px)
    if not planes:
        print(f"speckle_stats: no training scene in {args.archive}", file=sys.stderr)
        return 1
    sensors = sorted({s.split("-")[0] for s in used})
    model = estimate_speckle(planes, source=(
        f"estimated by recipes/tiny/speckle_stats.py from {len(planes)} planes of {len(used)} "
        f"training scenes ({', '.join(sensors)}); held-out scenes excluded; 8-bit DN dequantised; "
        f"n = I / local mean over 5 px; looks and lag-1 on the most homogeneous quarter"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / SPECKLE_FILE).write_text(json.dumps(model.to_dict(), indent=1) + "\n")
    print(f"{args.out / SPECKLE_FILE}: {model.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
