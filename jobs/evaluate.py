"""Evaluation entry point: ``python jobs/evaluate.py --config cfg.yaml --model tiny --out DIR``.

The same as ``sarray evaluate`` (see ``sarray evaluate --help``); kept next to jobs/train.py for
``ray job submit`` and batch schedulers.
"""

from __future__ import annotations

import sys

from sarray.evaluate.cli import app

if __name__ == "__main__":
    sys.exit(app())
