"""`import sarray` (and the CLI module) must stay light."""

import subprocess
import sys


def test_import_sarray_does_not_import_heavy_stacks() -> None:
    code = (
        "import sys, sarray, sarray.cli, sarray.archive.layout, sarray.ingest.config\n"
        "heavy = [m for m in ('torch', 'ray', 'deepspeed', 'diffusers', 'transformers') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
