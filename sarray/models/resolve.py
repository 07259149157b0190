"""Model names as the CLI takes them (``--model``) -> :class:`ReplicaConfig` keyword arguments.

- ``tiny``: the tiny preset with the weights shipped in the package (trained on real data).
- ``tiny-random``: the tiny preset with seeded random weights (tests and benchmarks only).
- ``sdxl``: SDXL base from the hub plus :data:`SDXL_CONTROLNET`, an architecture-compatible SDXL
  ControlNet. It is *not* trained for SAR: fine-tune with ``sarray train`` and pass the exported
  folder instead.
- a path: a diffusers-layout folder (e.g. a ``sarray train`` export); the preset is read from
  its ``unet/config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sarray.errors import ConfigError

SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_CONTROLNET = "diffusers/controlnet-canny-sdxl-1.0"
MODEL_NAMES: tuple[str, ...] = ("tiny", "tiny-random", "sdxl")


def preset_of_folder(path: Path) -> str:
    """The preset whose UNet matches ``path/unet/config.json``.

    Raises:
        ConfigError: when the folder has no UNet config or matches no preset.
    """
    from sarray.models.presets import PRESETS

    config_path = path / "unet" / "config.json"
    try:
        unet = json.loads(config_path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"`model` ({str(path)!r}) has no readable unet/config.json ({e}): pass a "
            f"diffusers-layout folder or one of {MODEL_NAMES}"
        ) from None
    for name, preset in PRESETS.items():
        if (tuple(unet.get("block_out_channels", ())) == tuple(preset.unet.block_out_channels)
                and unet.get("cross_attention_dim") == preset.cross_attention_dim):
            return name
    raise ConfigError(
        f"`model` ({str(path)!r}) holds a UNet with block_out_channels "
        f"{unet.get('block_out_channels')} that matches no preset ({sorted(PRESETS)})"
    )


def resolve_model(name: str) -> dict[str, Any]:
    """``ReplicaConfig`` keyword arguments (``preset``, ``weights``, ``controlnet_weights``).

    Args:
        name: ``tiny``, ``tiny-random``, ``sdxl`` or a weights folder.

    Raises:
        ConfigError: for an unknown name that is not an existing folder.
        ModelError: for ``tiny`` when the shipped weights are missing.
    """
    if name == "tiny":
        from sarray.models.weights import shipped_tiny_weights

        return {"preset": "tiny", "weights": str(shipped_tiny_weights()), "controlnet_weights": None}
    if name == "tiny-random":
        return {"preset": "tiny", "weights": None, "controlnet_weights": None}
    if name == "sdxl":
        return {"preset": "sdxl", "weights": SDXL_BASE, "controlnet_weights": SDXL_CONTROLNET}
    path = Path(name)
    if path.is_dir():
        return {"preset": preset_of_folder(path), "weights": str(path), "controlnet_weights": None}
    raise ConfigError(
        f"`model` ({name!r}) is neither one of {MODEL_NAMES} nor an existing weights folder"
    )
