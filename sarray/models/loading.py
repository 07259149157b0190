"""Load and save pipeline weights: diffusers layout, safetensors only, offline-aware.

A weights location is either a local directory or a Hugging Face hub id, in the diffusers
layout::

    weights/
      model_index.json
      unet/            config.json  diffusion_pytorch_model.safetensors
      vae/             config.json  diffusion_pytorch_model.safetensors
      text_encoder/    config.json  model.safetensors
      text_encoder_2/  config.json  model.safetensors
      controlnet/      config.json  diffusion_pytorch_model.safetensors   (or `controlnet_weights`)
      tokenizer/  tokenizer_2/  scheduler/

Pickled checkpoints (``.bin``, ``.pt``, ``.ckpt``) are never loaded: unpickling runs arbitrary
code. ``HF_HUB_OFFLINE=1`` is honoured (hub ids then resolve from the local cache only).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sarray.errors import ModelError

#: Components with weights that the replica's pipeline needs, besides the ControlNet.
WEIGHT_COMPONENTS: tuple[str, ...] = ("unet", "vae", "text_encoder", "text_encoder_2")
#: Components without weights.
PLAIN_COMPONENTS: tuple[str, ...] = ("tokenizer", "tokenizer_2", "scheduler")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (read at call time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def is_hub_id(location: str) -> bool:
    """True for ``owner/name`` strings that are not an existing local path."""
    return bool(_HUB_ID_RE.match(location)) and not Path(location).exists()


def _check_component(folder: Path, name: str) -> str | None:
    """Why ``folder`` is not a loadable weights component, or None when it is."""
    if not folder.is_dir():
        return f"{name}/ (folder {folder} is missing)"
    if not (folder / "config.json").is_file():
        return f"{name}/config.json (missing in {folder})"
    if not any(p.suffix == ".safetensors" for p in folder.iterdir()):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickles:
            return (
                f"{name}/*.safetensors (found only pickle weights {pickles}, which sarray never "
                "loads: convert them with safetensors, or save_pretrained(safe_serialization=True))"
            )
        return f"{name}/*.safetensors (no weights file in {folder})"
    return None


def check_local_weights(path: Path, *, need_controlnet: bool) -> None:
    """Raise a ModelError naming everything missing from a local diffusers-layout folder.

    Args:
        path: the weights folder.
        need_controlnet: also require ``controlnet/`` (False when ControlNet weights come from
            elsewhere).
    """
    if not path.is_dir():
        raise ModelError(
            f"`weights` ({str(path)!r}) is not a directory: expected a diffusers-layout folder "
            f"with model_index.json and {', '.join(WEIGHT_COMPONENTS + PLAIN_COMPONENTS)} "
            "subfolders (save one with Replica.save_weights or pipeline.save_pretrained), or a "
            "hub id like 'owner/name'"
        )
    problems = []
    if not (path / "model_index.json").is_file():
        problems.append("model_index.json")
    names = WEIGHT_COMPONENTS + (("controlnet",) if need_controlnet else ())
    for name in names:
        problem = _check_component(path / name, name)
        if problem:
            problems.append(problem)
    for name in PLAIN_COMPONENTS:
        if not (path / name).is_dir():
            problems.append(f"{name}/")
    if problems:
        hint = (
            " (pass `controlnet_weights` when the ControlNet is stored separately)"
            if need_controlnet and any(p.startswith("controlnet") for p in problems)
            else ""
        )
        raise ModelError(
            f"weights folder {str(path)!r} is incomplete: looked for " + "; ".join(problems) + hint
        )


def realign(module: Any) -> Any:
    """Copy every parameter and buffer of ``module`` into freshly allocated storage.

    safetensors hands out tensors at arbitrary byte offsets of the file; CPU BLAS kernels take
    different paths for unaligned data and differ in the last bits. Fresh (64-byte aligned)
    copies make a loaded model compute bit-identically to the one that was saved.
    """
    import torch

    with torch.no_grad():
        for p in module.parameters():
            p.data = p.data.clone(memory_format=torch.contiguous_format)
        for b in module.buffers():
            b.data = b.data.clone(memory_format=torch.contiguous_format)
    return module


def _from_pretrained(cls: Any, location: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` without the ``torch_dtype`` deprecation noise of newer diffusers."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        return cls.from_pretrained(location, **kwargs)


def _torch_dtype(dtype: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def _hub_error(location: str, what: str, cache_dir: str | None, error: Exception) -> ModelError:
    try:
        from huggingface_hub import constants

        cache = cache_dir or constants.HF_HUB_CACHE
    except ImportError:  # pragma: no cover - a diffusers dependency
        cache = cache_dir or "the Hugging Face cache"
    mode = (
        "HF_HUB_OFFLINE is set, so only the local cache was searched: download the weights "
        "on a connected machine (huggingface-cli download) or unset HF_HUB_OFFLINE"
        if hub_offline()
        else "the hub could not be reached or the repo does not hold these files"
    )
    return ModelError(
        f"could not load {what} from hub id {location!r} (cache {cache}): {mode}. "
        f"Cause: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    )


def load_controlnet(location: str, *, dtype: str = "float32", cache_dir: str | None = None) -> Any:
    """Load a ``ControlNetModel`` from a local folder or hub id (safetensors only)."""
    from diffusers import ControlNetModel

    if not is_hub_id(location):
        problem = _check_component(Path(location), "controlnet")
        if problem:
            raise ModelError(
                f"`controlnet_weights` ({location!r}) is not a ControlNet folder: looked for "
                f"{problem.replace('controlnet/', '')}"
            )
    try:
        return realign(_from_pretrained(
            ControlNetModel,
            location,
            torch_dtype=_torch_dtype(dtype),
            use_safetensors=True,
            local_files_only=hub_offline() or not is_hub_id(location),
            cache_dir=cache_dir,
        ))
    except ModelError:
        raise
    except Exception as e:  # diffusers/hub raise OSError, ValueError, EnvironmentError...
        if is_hub_id(location):
            raise _hub_error(location, "ControlNet weights", cache_dir, e) from e
        raise ModelError(f"could not load ControlNet weights from {location!r}: {e}") from e


def load_pipeline(
    location: str,
    *,
    controlnet_weights: str | None = None,
    dtype: str = "float32",
    cache_dir: str | None = None,
) -> Any:
    """Load a ``StableDiffusionXLControlNetImg2ImgPipeline`` (safetensors only).

    Args:
        location: local folder or hub id in the diffusers layout (see the module docstring).
        controlnet_weights: a separate ControlNet folder or hub id; None: the ``controlnet/``
            subfolder of ``location``.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        cache_dir: hub cache folder (default: the Hugging Face cache).

    Raises:
        ModelError: naming what was looked for and where, when weights are missing, pickled,
            or cannot be fetched (e.g. with ``HF_HUB_OFFLINE=1`` and an empty cache).
    """
    from diffusers import StableDiffusionXLControlNetImg2ImgPipeline

    hub = is_hub_id(location)
    if not hub:
        check_local_weights(Path(location), need_controlnet=controlnet_weights is None)
    extra: dict[str, Any] = {}
    if controlnet_weights is not None:
        extra["controlnet"] = load_controlnet(controlnet_weights, dtype=dtype, cache_dir=cache_dir)
    try:
        pipe = _from_pretrained(
            StableDiffusionXLControlNetImg2ImgPipeline,
            location,
            torch_dtype=_torch_dtype(dtype),
            use_safetensors=True,
            local_files_only=hub_offline() or not hub,
            cache_dir=cache_dir,
            add_watermarker=False,
            **extra,
        )
    except Exception as e:
        if hub:
            raise _hub_error(location, "pipeline weights", cache_dir, e) from e
        raise ModelError(f"could not load pipeline weights from {location!r}: {e}") from e
    if getattr(pipe, "controlnet", None) is None:
        raise ModelError(
            f"weights {location!r} hold no ControlNet: pass `controlnet_weights` (a ControlNet "
            "folder or hub id)"
        )
    for name in ("unet", "vae", "text_encoder", "text_encoder_2", "controlnet"):
        realign(getattr(pipe, name))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_pipeline(pipe: Any, path: str | Path) -> Path:
    """Save every component of ``pipe`` under ``path`` as safetensors (diffusers layout)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    return out
