"""Entry point for `ray job submit`: the benchmark suite, or a projection.

    ray job submit --working-dir . -- python jobs/bench.py run
    python jobs/bench.py project --area-km2 10e6 --scale 4 --gpus 64

The arguments are those of `sarray bench` (this calls the same command).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from sarray.cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
