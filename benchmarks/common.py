"""Shared benchmark helpers: the environment block, JSON results and medians."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from statistics import median
from typing import Any, Callable

RESULTS_DIR = Path(__file__).parent / "results"

# The benchmarks start Ray clusters of their own. With token authentication (Ray's default)
# and no token given, Ray would write ~/.ray/auth_token into the user's home: a token for this
# run, in the environment (inherited by the benchmarks' child processes), keeps the home as it
# was.
if "RAY_AUTH_TOKEN" not in os.environ:
    import secrets

    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def environment(device: str = "cpu") -> dict[str, Any]:
    """Cores, RAM, device, commit and versions: printed next to every figure."""
    import psutil

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "device": device,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def timed_median(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Run ``fn`` ``repeats`` times; return the median wall time and all times (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times), times


def write_results(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Write ``payload`` to ``<out_dir>/<name>.json`` and return the path."""
    out = Path(out_dir or RESULTS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def save_figure(fig: Any, out: Path, env: dict[str, Any], prefix: str = "") -> None:
    """Title a benchmark figure with the machine it ran on, and write it."""
    fig.suptitle(f"{prefix}{env['cores']} cores, {env['ram_gib']} GiB, {env['device']}, "
                 f"commit {env['commit']}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
