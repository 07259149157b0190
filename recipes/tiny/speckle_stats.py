"""Estimate the tiny model's speckle statistics and store them with its weights (speckle.json).

The statistics (:class:`sarray.stitch.speckle.SpeckleModel`) come from the *training* split of
the high-resolution scenes that ``sarray train prepare-data`` ingests (the held-out scenes of
:data:`sarray.train.sources.DEFAULT_VAL_SCENES` are left out): each plane in intensity, 8-bit DN
(an integer product is measured only where its local mean is well above the quantisation step,
so its 8-bit zeros do not enter the table), a central crop of at most ``--max-px`` pixels a side.

Run:
    sarray train prepare-data --data ../shared/data --archive /tmp/sarray-train/real.zarr
    python recipes/tiny/speckle_stats.py --archive /tmp/sarray-train/real.zarr \
        --out sarray/models/weights/tiny
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np


def training_planes(archive: str, max_px: int) -> tuple[list[np.ndarray], list[str], list[float | None]]:
    """Intensity planes of the training split's high-resolution scenes, each plane's sensor, and
    its amplitude quantisation step (1 for an integer DN product, None for a float one)."""
    from sarray.archive.radiometry import to_intensity
    from sarray.archive.store import Archive
    from sarray.train.sources import DEFAULT_VAL_SCENES

    a = Archive(archive).require()
    planes, used, quanta = [], [], []
    for rec in a.find():
        if rec.scene_id in DEFAULT_VAL_SCENES or not rec.pixel_spacing_m or max(rec.pixel_spacing_m) > 6.0:
            continue
        ds = a.open_scene(rec.scene_id)
        attrs = ds.attrs
        _, h, w = ds["backscatter"].shape
        y0, x0 = max(0, (h - max_px) // 2), max(0, (w - max_px) // 2)
        v = ds["backscatter"].isel(y=slice(y0, y0 + max_px), x=slice(x0, x0 + max_px)).values
        v = v.astype(np.float64)
        i = to_intensity(v, units=attrs["units"], quantity=attrs.get("quantity", "unknown"))
        for plane in i:
            if np.isfinite(plane).mean() > 0.5 and min(plane.shape) >= 64:
                amp = np.sqrt(plane[np.isfinite(plane)])
                planes.append(plane)
                used.append(rec.sensor or "unknown")
                quanta.append(1.0 if np.array_equal(amp, np.round(amp)) else None)
    return planes, used, quanta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", required=True)
    p.add_argument("--out", type=Path, default=Path("sarray/models/weights/tiny"))
    p.add_argument("--max-px", type=int, default=768)
    p.add_argument("--default", default="pooled", help="the set translate uses unless told")
    args = p.parse_args(argv)

    from sarray.stitch.speckle import SPECKLE_FILE, estimate_speckle

    planes, sensors, quanta = training_planes(args.archive, args.max_px)
    if not planes:
        print(f"speckle_stats: no training scene in {args.archive}", file=sys.stderr)
        return 1
    how = ("held-out scenes excluded; n = I / local mean over 5 px, its whole distribution "
           "measured (bright scatterers above the median, the speckle's dark tail below), on "
           "integer DN products only where the local mean amplitude is at least 8 DN so that "
           "8-bit zeros do not enter it; looks (upper quartile over median) and lag-1 on the "
           "most homogeneous quarter")
    groups = {"pooled": list(range(len(planes)))}
    for k, s in enumerate(sensors):
        groups.setdefault(s, []).append(k)
    sets = {}
    for name, idx in groups.items():
        what = "every sensor" if name == "pooled" else name
        # One sensor's integer DN product: measured per level too, kept where its recording is
        # not multiplicative (dB-scaled 8-bit clipped at 0 DN). Not a float product (a 0 there
        # is no-data, not a recorded value), nor the pooled set (its planes are in different
        # units).
        by_level = name != "pooled" and all(quanta[k] for k in idx)
        source = f"recipes/tiny/speckle_stats.py: {len(idx)} training planes of {what}; {how}"
        model = estimate_speckle([planes[k] for k in idx], quanta=[quanta[k] for k in idx],
                                 by_level=by_level, source=source)
        if by_level:
            source += ("; per level of local mean too (16 equal-count levels, zeros included), kept "
                       "because the product's recording is not multiplicative" if model.levels else
                       "; measured per level of local mean too and found multiplicative (one table)")
        sets[name] = replace(model, source=source)
        print(f"{name}: {sets[name].summary()}")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"default": args.default, "sets": {k: v.to_dict() for k, v in sets.items()}}
    (args.out / SPECKLE_FILE).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out / SPECKLE_FILE} (default {args.default!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
