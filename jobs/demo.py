"""The demo job: ingest the bundled Sentinel-1 sample and print the archive summary.

Run with `make demo` (or `python jobs/demo.py --out out`). Until the translate engine lands this
is the main job; it stays a thin entry point: parse, build the config, call sarray.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "Spain_7370579_S1Hand.tif"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    args = parser.parse_args(argv)

    from sarray.archive.describe import describe_scene
    from sarray.archive.export import write_quicklook
    from sarray.archive.store import Archive
    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest

    archive = args.out / "demo.zarr"
    config = IngestConfig(platform="spaceborne", sensor="Sentinel-1")
    for r in ingest([SAMPLE], archive, config, progress=True):
        print(f"{r.status}: {r.scene_id} {'x'.join(map(str, r.shape))} {r.units}")

    arch = Archive(archive)
    print(f"\narchive {archive}: {len(arch.catalog())} scene(s)")
    for rec in arch.find():
        d = describe_scene(arch, rec.scene_id)
        print(f"  {rec.scene_id}: {' x '.join(map(str, d['shape']))} (pol, y, x), "
              f"pols {', '.join(d['polarisations'])}, units {d['units']}, "
              f"spacing {d['pixel_spacing_m']} m, bbox {[round(v, 4) for v in d['bbox_lonlat']]}")
        for pol, st in d["statistics"].items():
            print(f"    {pol}: mean {st['mean']:.2f} dB, std {st['std']:.2f}, "
                  f"range [{st['min']:.1f}, {st['max']:.1f}]")
        png = write_quicklook(arch, rec.scene_id, args.out / f"{rec.scene_id}_quicklook.png")
        print(f"  quicklook: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
