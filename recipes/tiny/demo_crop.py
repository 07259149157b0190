"""The demo's quicklook crop and its artefact measures (``demo-quicklook-crop.png``).

Reads the output scene ``make demo`` wrote (``out/demo.zarr``, the Sentinel-1 sample x4 by the
tiny model), measures on the whole output, per polarisation, what shows blocks or a dot grid
(block-edge ratio across the input grid, periodic spectral peaks at 2/4/8 px, floor-clamped
share), and writes a 256 x 256 output-pixel crop of VV (rows and columns 896-1151, 2-98% dB
stretch, shown 2x) beside the input under it.

Run: make demo && python recipes/tiny/demo_crop.py --out recipes/tiny/demo-quicklook-crop.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SCALE = 4


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", default="out/demo.zarr")
    p.add_argument("--scene", default="Spain_7370579_S1Hand")
    p.add_argument("--out", type=Path, default=Path("recipes/tiny/demo-quicklook-crop.png"))
    p.add_argument("--at", type=int, default=896, help="first row and column of the crop")
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sarray.archive.radiometry import to_intensity
    from sarray.archive.store import Archive
    from sarray.evaluate import metrics as m

    arch = Archive(args.archive).require()
    src = arch.open_scene(args.scene)
    out = arch.open_scene(f"{args.scene}_x{SCALE}")
    units, quantity = out.attrs["units"], out.attrs.get("quantity", "unknown")
    fine = to_intensity(out["backscatter"].values.astype(np.float64), units=units, quantity=quantity)
    coarse = to_intensity(src["backscatter"].values.astype(np.float64), units=units, quantity=quantity)
    measures = {}
    for k, pol in enumerate(out["pol"].values.tolist()):
        floor = m.DB_FLOOR_REL * float(np.nanmean(fine[k]))
        measures[pol] = {"block_edge_ratio": m.block_edge_ratio(fine[k], SCALE),
                         **m.periodic_peaks_db(m.to_db_floored(fine[k], floor)),
                         "floor_share": m.floor_share(fine[k]),
                         "consistency_rms_db": m.consistency_rms_db(fine[k], coarse[k], SCALE)}
    a, s = args.at, 256
    crop = 10 * np.log10(np.maximum(fine[0, a : a + s, a : a + s], 1e-12))
    inp = 10 * np.log10(np.maximum(coarse[0, a // SCALE : (a + s) // SCALE, a // SCALE : (a + s) // SCALE], 1e-12))
    lo, hi = np.nanpercentile(crop, [2, 98])
    fig, ax = plt.subplots(1, 2, figsize=(10.6, 5.6))
    ax[0].imshow(np.repeat(np.repeat(inp, SCALE, 0), SCALE, 1), cmap="gray", vmin=lo, vmax=hi,
                 interpolation="nearest")
    ax[0].set_title(f"input VV (x{SCALE} pixels shown)", fontsize=10)
    ax[1].imshow(crop, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    vv = measures[next(iter(measures))]
    ax[1].set_title(f"output VV: block-edge {vv['block_edge_ratio']:.2f}, peaks "
                    f"{vv['peak_2px_db']:.1f}/{vv['peak_4px_db']:.1f}/{vv['peak_8px_db']:.1f} dB, "
                    f"floor {100 * vv['floor_share']:.3f}%", fontsize=9)
    for x in ax:
        x.set_xticks([])
        x.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.out, dpi=96)
    print(json.dumps(measures, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
