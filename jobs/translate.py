"""Entry point for `ray job submit`: translate archive scenes on the cluster's replica pool.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python jobs/translate.py A.zarr SCENE --scale 4 --replicas 4

The arguments are those of `sarray translate` (this calls the same command, so an option cannot
exist in one and not the other). Inside a Ray job RAY_ADDRESS points at the cluster and the
engine uses it; run directly, it starts a local Ray.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from sarray.cli import main

    sys.exit(main(["translate", *sys.argv[1:]]))
