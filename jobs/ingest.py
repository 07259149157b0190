"""Entry point for `ray job submit`: ingest files into an archive, staged across the cluster.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python jobs/ingest.py /shared/in/*.tif --archive /shared/A.zarr

The arguments are those of `sarray ingest` (this calls the same command); inside a Ray job
RAY_ADDRESS is set, so the staging runs as Ray tasks on the cluster's nodes (`--ray`).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from sarray.cli import app

    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a in ("--ray", "--no-ray") for a in args):
        args.append("--ray")
    import click

    try:
        rc = app(["ingest", *args], standalone_mode=False)  # errors print their own line
    except click.exceptions.ClickException as e:  # usage errors, as the CLI shows them
        e.show()
        return e.exit_code
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
