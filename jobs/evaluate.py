"""Entry point for `ray job submit` and batch schedulers: evaluate on held-out scenes.

    python jobs/evaluate.py --config cfg.yaml --model tiny --out DIR

The arguments are those of `sarray evaluate` (this calls the same command).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from sarray.cli import main

    sys.exit(main(["evaluate", *sys.argv[1:]]))
