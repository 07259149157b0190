"""The held-out Umbra rows through the engine itself: degrade x4, ingest, `sarray translate`.

`sarray evaluate` translates each held-out tile the way the engine treats a chunk. This script
runs the real path instead, with default settings: the held-out scene (``umbra-yasur-val``,
rows 1200-1499 of the Umbra crop, 300 x 2000 px of 8-bit DN) is degraded by a 4 x 4 multilook of
intensity, written as a float GeoTIFF, ingested with its sensor (``--sensor Umbra-04``) and
translated x4 by ``sarray translate --model tiny`` (Ray, chunks, halos, blending, speckle,
consistency, Zarr writes). The output, rounded to whole DN as the product records it, is then
measured against the truth in the evaluation's 128 px tiles, beside the speckle-statistics
baseline built exactly as ``sarray evaluate`` builds it (same training split, same ratios).

Run (after ``sarray train prepare-data --data ../shared/data --archive /tmp/sarray-train/real.zarr``):
    python recipes/tiny/translate_check.py --out /tmp/umbra-engine
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TILE = 128
SCALE = 4


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", default="/tmp/sarray-train/real.zarr")
    p.add_argument("--out", type=Path, default=Path("/tmp/umbra-engine"))
    p.add_argument("--scene", default="umbra-yasur-val")
    args = p.parse_args(argv)

    import yaml

    from sarray.archive.radiometry import multilook_intensity, to_intensity
    from sarray.archive.store import Archive
    from sarray.evaluate import baselines as bl
    from sarray.evaluate import metrics as m
    from sarray.evaluate.run import quantise_dn_intensity, tile_metrics
    from sarray.testing.scenes import write_geotiff
    from sarray.train.pairs import PairConfig, PairSampler

    args.out.mkdir(parents=True, exist_ok=True)
    ds = Archive(args.archive).require().open_scene(args.scene)
    units, quantity = ds.attrs["units"], ds.attrs.get("quantity", "unknown")
    truth = to_intensity(ds["backscatter"].values[0].astype(np.float64), units=units, quantity=quantity)
    h, w = (truth.shape[0] // SCALE) * SCALE, (truth.shape[1] // SCALE) * SCALE
    truth = truth[:h, :w]
    coarse = multilook_intensity(truth, SCALE)
    tif = write_geotiff(args.out / "umbra_val_x4down.tif", np.sqrt(coarse).astype(np.float32)[None],
                        crs=None, transform=None)
    arch = args.out / "a.zarr"
    sarray = [sys.executable, "-m", "sarray.cli"]
    if not Archive(arch).exists() or not Archive(arch).has_scene("umbra_val"):
        subprocess.run([*sarray, "ingest", str(tif), "-a", str(arch), "--scene-id", "umbra_val",
                        "--sensor", "Umbra-04", "--units", "linear", "--spacing-m", str(0.59 * SCALE),
                        "-q"], check=True)
    subprocess.run([*sarray, "translate", str(arch), "umbra_val", "--model", "tiny",
                    "--scale", str(SCALE), "--quicklook", str(args.out / "quicklook.png")], check=True)
    out = Archive(arch).open_scene(f"umbra_val_x{SCALE}")
    prov = json.loads(out.attrs.get("provenance", "{}")) if isinstance(out.attrs.get("provenance"), str) \
        else out.attrs.get("provenance", {})
    model_i = out["backscatter"].values[0].astype(np.float64) ** 2
    # The speckle baseline of `sarray evaluate`: the training split's fine/coarse ratios.
    raw = yaml.safe_load((HERE / "eval-umbra.yaml").read_text())
    ratios = bl.ratio_distribution(PairSampler(PairConfig.from_dict(raw["data"]), "train"), tiles=64)
    rng = np.random.default_rng([0, 4242])
    rows = []
    for y in range(0, h - TILE + 1, TILE):
        for x in range(0, w - TILE + 1, TILE):
            t = truth[y : y + TILE, x : x + TILE]
            c = coarse[y // SCALE : (y + TILE) // SCALE, x // SCALE : (x + TILE) // SCALE]
            written = {"model": model_i[y : y + TILE, x : x + TILE],
                       "speckle": bl.speckle_baseline(c, SCALE, ratios, rng)}
            floor = m.DB_FLOOR_REL * float(np.nanmean(t))
            mask = m.homogeneous_windows(c, window=4)
            rows.append({k: tile_metrics(quantise_dn_intensity(v), t, c, scale=SCALE, floor=floor,
                                         mask=mask, written=v, zero_is_recorded=True)
                         for k, v in written.items()})
    keys = ("spectrum_distance", "histogram_w1_db", "histogram_w1_above_floor_db", "consistency_rms_db",
            "block_edge_ratio", "floor_share", "zero_share")
    means = {k: {q: float(np.mean([r[k][q] for r in rows])) for q in keys} for k in ("speckle", "model")}
    whole = {"consistency_rms_db_whole_scene": m.consistency_rms_db(model_i, coarse, SCALE),
             "truth_zero_share": float((truth == 0).mean()), "tiles": len(rows),
             "speckle_set": (prov or {}).get("speckle", {}).get("set")}
    result = {"means": means, **whole}
    (args.out / "translate_check.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
