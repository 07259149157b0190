"""The demo job: ingest the bundled Sentinel-1 sample, translate it x4 with the tiny model on a
local Ray, and write the archive scene, a COG and a quicklook PNG under the output folder.

Run with `make demo` (or `python jobs/demo.py --out out`). A thin entry point: parse, build the
configs, call sarray.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "Spain_7370579_S1Hand.tif"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    parser.add_argument("--model", default="tiny", help="tiny | tiny-random | sdxl | PATH")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args(argv)

    from sarray.archive.describe import describe_scene
    from sarray.archive.store import Archive
    from sarray.engine.translate import TranslateConfig, translate
    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest

    t0 = time.perf_counter()
    archive = args.out / "demo.zarr"
    # 1. Ingest the sample scene (a no-op when it is already there).
    (res,) = ingest([SAMPLE], archive, IngestConfig(sensor="Sentinel-1"), progress=True)
    print(f"ingest: {res.status} {res.scene_id} {'x'.join(map(str, res.shape))} {res.units}")

    # 2. Translate it on a local Ray; a rerun resumes or finds the output complete.
    config = TranslateConfig(scale=args.scale, model=args.model, replicas=args.replicas)
    out_id = f"{res.scene_id}_x{args.scale}"
    (summary,) = translate(archive, [res.scene_id], config,
                           cog=args.out / f"{out_id}.tif",
                           quicklook=args.out / f"{out_id}_quicklook.png")
    print(f"translate: {summary.line()}")

    # 3. The archive summary.
    arch = Archive(archive)
    print(f"\narchive {archive}: {len(arch.catalog())} scene(s)")
    for rec in arch.find():
        d = describe_scene(arch, rec.scene_id)
        print(f"  {rec.scene_id}: {' x '.join(map(str, d['shape']))} (pol, y, x), "
              f"{rec.platform}, pols {', '.join(d['polarisations'])}, units {d['units']}, "
              f"spacing {[round(v, 3) for v in d['pixel_spacing_m']]} m")
    for path in (summary.cog, summary.quicklook):
        if path:
            print(f"  wrote {path}")
    print(f"demo done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
