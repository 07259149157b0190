"""Size a preset without memory: parameter counts on the meta device, and weight memory per dtype."""

from __future__ import annotations

from typing import Any

from sarray.models.components import PARAMETER_COMPONENTS, build_models
from sarray.models.presets import get_preset

#: Bytes per parameter of each dtype the replica supports.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2}


def model_info(preset: str) -> dict[str, Any]:
    """Instantiate ``preset`` on the meta device and count its parameters.

    Args:
        preset: preset name (``sdxl`` or ``tiny``).

    Returns:
        ``{"preset", "components": {name: {"class", "params"}}, "total_params"`` (without the
        ControlNet, i.e. the SDXL base model), ``"controlnet_params"``,
        ``"total_params_with_controlnet"``, ``"memory_bytes": {dtype: bytes of weights, with
        ControlNet}``, ``"memory_bytes_without_controlnet"``}.
    """
    spec = get_preset(preset)
    models = build_models(spec, device="meta")
    components = {
        name: {
            "class": type(models[name]).__name__,
            "params": int(sum(p.numel() for p in models[name].parameters())),
        }
        for name in PARAMETER_COMPONENTS
    }
    base = sum(c["params"] for n, c in components.items() if n != "controlnet")
    full = base + components["controlnet"]["params"]
    return {
        "preset": spec.name,
        "components": components,
        "total_params": base,
        "controlnet_params": components["controlnet"]["params"],
        "total_params_with_controlnet": full,
        "memory_bytes": {d: full * b for d, b in DTYPE_BYTES.items()},
        "memory_bytes_without_controlnet": {d: base * b for d, b in DTYPE_BYTES.items()},
    }


def _human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e9, " B"), (1e6, " M"), (1e3, " k")):
        if n >= div:
            return f"{n / div:.3f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def format_info(info: dict[str, Any]) -> str:
    """A plain-text table of :func:`model_info`'s result."""
    lines = [f"preset {info['preset']}: parameters and weight memory", ""]
    header = f"{'component':<16}{'class':<30}{'params':>16}" + "".join(
        f"{d:>12}" for d in DTYPE_BYTES
    )
    lines += [header, "-" * len(header)]
    for name, c in info["components"].items():
        lines.append(
            f"{name:<16}{c['class']:<30}{c['params']:>16,}"
            + "".join(f"{c['params'] * b / 2**30:>8.2f} GiB" for b in DTYPE_BYTES.values())
        )
    lines.append("-" * len(header))
    for label, n in (
        ("total (no ControlNet)", info["total_params"]),
        ("total + ControlNet", info["total_params_with_controlnet"]),
    ):
        lines.append(
            f"{label:<46}{n:>16,}"
            + "".join(f"{n * b / 2**30:>8.2f} GiB" for b in DTYPE_BYTES.values())
        )
    lines += ["", f"total_params = {info['total_params']:,} ({_human(info['total_params'])})",
              "memory: weights only; activations, optimiser state and CUDA context come on top."]
    return "\n".join(lines)
