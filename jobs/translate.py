"""Entry point for `ray job submit`: translate archive scenes on the cluster's replica pool.

    ray job submit --working-dir . -- python jobs/translate.py A.zarr SCENE --scale 4 --replicas 4

Inside a Ray job, RAY_ADDRESS points at the cluster, and the engine uses it; run directly, it
starts a local Ray. Parse, build the config, call sarray: nothing else lives here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("archive", type=Path)
    p.add_argument("scenes", nargs="+")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--model", default="tiny", help="tiny | tiny-random | sdxl | PATH")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="output archive (default: input)")
    p.add_argument("--cog", type=Path, default=None)
    p.add_argument("--quicklook", type=Path, default=None)
    p.add_argument("--chunk-px", type=int, default=512)
    p.add_argument("--halo-px", type=int, default=16)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    from sarray.engine.translate import TranslateConfig, translate
    from sarray.errors import SarrayError

    try:
        config = TranslateConfig(scale=args.scale, model=args.model, replicas=args.replicas,
                                 chunk_px=args.chunk_px, halo_px=args.halo_px,
                                 num_inference_steps=args.steps, device=args.device)
        for s in translate(args.archive, args.scenes, config, out_archive=args.out, cog=args.cog,
                           quicklook=args.quicklook, progress=not args.quiet):
            print(s.line())
    except SarrayError as e:
        print(f"sarray: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
