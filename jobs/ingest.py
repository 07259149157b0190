"""Entry point for `ray job submit`: ingest files into an archive, staged across the cluster.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python jobs/ingest.py /shared/in/*.tif --archive /shared/A.zarr

The arguments are those of `sarray ingest` (this calls the same command); inside a Ray job
RAY_ADDRESS is set, so the staging runs as Ray tasks on the cluster's nodes (`--ray`).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from sarray.cli import main

    args = sys.argv[1:]
    if not any(a in ("--ray", "--no-ray") for a in args):
        args.append("--ray")
    sys.exit(main(["ingest", *args]))
