"""Weights shipped inside the package.

``tiny/``: the tiny preset trained by ``jobs/train.py`` on the real high-resolution data of
``../shared/data`` (recipe: ``sarray/models/weights/tiny/RECIPE.yaml``; loss curve and a
validation grid next to it). A few MB of safetensors in the diffusers layout, loadable with
``ReplicaConfig(preset="tiny", weights=str(shipped_tiny_weights()))``.
"""

from __future__ import annotations

from pathlib import Path

from sarray.errors import ModelError

TINY_DIR = Path(__file__).resolve().parent / "tiny"


def shipped_tiny_weights() -> Path:
    """The folder of the shipped tiny weights (diffusers layout, safetensors).

    Raises:
        ModelError: when the package was installed without them.
    """
    if not (TINY_DIR / "model_index.json").is_file():
        raise ModelError(
            f"the shipped tiny weights are missing from {TINY_DIR}: reinstall sarray with its "
            "package data, or use `--model tiny-random` (seeded random weights, for tests)"
        )
    return TINY_DIR


__all__ = ["TINY_DIR", "shipped_tiny_weights"]
