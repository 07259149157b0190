"""Reproducible installs: the environment `make` built holds exactly the pins of constraints.txt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_environment_is_exactly_the_constraints_file() -> None:
    from importlib import util

    spec = util.spec_from_file_location("lock", REPO / "cluster" / "lock.py")
    lock = util.module_from_spec(spec)
    spec.loader.exec_module(lock)  # type: ignore[union-attr]
    pins = [l for l in (REPO / "constraints.txt").read_text().splitlines() if l and not l.startswith("#")]
    installed = lock.freeze(sys.executable)
    missing = sorted(set(pins) - set(installed))
    extra = sorted(set(installed) - set(pins))
    assert not missing and not extra, f"not installed as pinned: {missing[:10]}; not pinned: {extra[:10]}"
    # The test sees a difference when there is one (it compares, it does not just run).
    assert sorted(set(pins) - set(installed[1:])) == [installed[0]]
    out = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
