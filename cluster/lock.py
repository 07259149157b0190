"""Refresh the pinned versions: ``make lock`` (see README "Reproducible installs").

1. Resolves sarray's dependencies afresh in a temporary virtual environment (torch first, kept
   at 2.13.0), or, with ``--from-env PYTHON``, takes an existing environment as it is.
2. Writes every installed package as ``name==version`` to ``constraints.txt`` (torch without
   its local build label, so the same pin takes the CPU wheel here and a CUDA wheel on GPUs).
3. Writes the same pins into the runtime environments of ``cluster/runtime_env.yaml`` and
   ``cluster/kuberay/rayjob.yaml``, between the ``# pins:begin`` / ``# pins:end`` markers.

``make`` installs with ``-c constraints.txt``; ``tests/test_lock.py`` checks that the
environment, the constraints file and the cluster files agree.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints.txt"
TORCH = "torch==2.13.0"
# The runtime environments that carry the pins (the files with the markers).
PIN_FILES = [REPO / "cluster" / "runtime_env.yaml", REPO / "cluster" / "kuberay" / "rayjob.yaml"]
HEADER = ("# Every package of sarray's environment, pinned (`make lock` refreshes it; see README).\n"
          "# `make` installs with `pip install -c constraints.txt`.\n")


def freeze(python: str) -> list[str]:
    """``name==version`` of every package in ``python``'s environment but sarray itself."""
    out = subprocess.run([python, "-m", "pip", "freeze", "--exclude-editable", "--all"],
                         capture_output=True, text=True, check=True).stdout
    pins = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-e")) or "==" not in line:
            continue
        name, version = line.split("==", 1)
        if name.lower() in ("pip", "setuptools", "wheel", "sarray"):
            continue
        pins.append(f"{name}=={version.split('+', 1)[0]}")  # no local label (+cpu)
    return sorted(pins, key=str.lower)


def resolve_fresh() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="sarray-lock-") as d:
        py = str(Path(d) / "bin" / "python")
        subprocess.run([sys.executable, "-m", "venv", d], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", TORCH], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "-e", f"{REPO}[all]"], check=True)
        return freeze(py)


def write_pins(pins: list[str]) -> None:
    CONSTRAINTS.write_text(HEADER + "\n".join(pins) + "\n")
    for path in PIN_FILES:
        text = path.read_text()
        m = re.search(r"^(?P<indent>[ \t]*)# pins:begin\n.*?^[ \t]*# pins:end\n", text, re.S | re.M)
        if not m:
            raise SystemExit(f"{path}: no '# pins:begin' / '# pins:end' markers; add them around "
                             "the runtime environment's pip list")
        ind = m.group("indent")
        block = "".join([f"{ind}# pins:begin\n", *(f'{ind}- "{p}"\n' for p in pins), f"{ind}# pins:end\n"])
        path.write_text(text[: m.start()] + block + text[m.end():])


def pins_in(path: Path) -> list[str]:
    """The pins written between the markers of ``path``."""
    m = re.search(r"# pins:begin\n(.*?)# pins:end", path.read_text(), re.S)
    return [] if not m else [l.strip().lstrip("-").strip().strip('"') for l in m.group(1).splitlines() if l.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from-env", default=None, metavar="PYTHON",
                   help="freeze this interpreter's environment instead of resolving afresh")
    args = p.parse_args(argv)
    pins = freeze(args.from_env) if args.from_env else resolve_fresh()
    write_pins(pins)
    print(f"{len(pins)} pins written to {CONSTRAINTS.name} and {', '.join(str(f.relative_to(REPO)) for f in PIN_FILES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
