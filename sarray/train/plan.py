"""Memory per GPU of a training run, for each ZeRO stage, with and without CPU offload.

Parameter counts come from the preset built on the meta device (:func:`sarray.models.info.
model_info`: no memory, no download). Model-state memory comes from DeepSpeed's own estimators:

- ZeRO-2: ``deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs``
  (16-bit weights on every GPU; gradients, fp32 master weights and Adam moments partitioned;
  with offload, the partitioned states live in CPU memory).
- ZeRO-3: ``deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs`` (everything
  partitioned; the largest layer gathered; with offload, optimiser states and optionally the
  parameters in CPU memory).
- ZeRO-1 has no DeepSpeed estimator: the figure is the ZeRO paper's accounting with the terms of
  the stage-2 estimator, with the 16-bit gradients not partitioned:
  ``2 P + 2 P + 16 P / N`` bytes (offload: ``4 P``).

Frozen components (the VAE, text encoders without LoRA, the UNet when only the ControlNet is
trained) add their 16-bit weights: on every GPU for stages 1 and 2, partitioned for stage 3
(nothing on the GPU with parameter offload). Activations, the CUDA context and fragmentation
come on top: the recommendation keeps ``headroom`` of the GPU free for them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from sarray.errors import ConfigError
from sarray.train.config import TRAIN_TARGETS

#: Fraction of GPU memory left for activations, CUDA context and fragmentation. 1024 px SDXL
#: training with gradient checkpointing needs on the order of 10-20 GB of activations at batch 1.
DEFAULT_HEADROOM = 0.35
_GIB = 2**30


@dataclass(frozen=True, kw_only=True)
class PlanRow:
    """Memory per GPU of one (stage, offload) option, in bytes."""

    stage: int
    offload: str
    gpu_bytes_trained: int
    gpu_bytes_frozen: int
    cpu_bytes: int
    fits: bool

    @property
    def gpu_bytes(self) -> int:
        return self.gpu_bytes_trained + self.gpu_bytes_frozen

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gpu_bytes": self.gpu_bytes}


def _largest_layer(models: dict[str, Any], names: list[str]) -> int:
    """Parameters of the largest single module (its own parameters) among ``names``."""
    largest = 0
    for name in names:
        for module in models[name].modules():
            n = sum(p.numel() for p in module.parameters(recurse=False))
            largest = max(largest, n)
    return largest


def plan_memory(
    *,
    preset: str = "sdxl",
    gpus: int = 8,
    gpu_mem_gb: float = 80.0,
    train: str = "unet",
    nodes: int = 1,
    headroom: float = DEFAULT_HEADROOM,
) -> dict[str, Any]:
    """Memory per GPU of each ZeRO stage, with and without offload, and a recommended stage.

    Args:
        preset: the model preset (``sdxl``, ``tiny``).
        gpus: GPUs per node.
        gpu_mem_gb: memory of one GPU in GB (10**9 bytes, as vendors state it).
        train: ``unet``, ``controlnet``, ``both`` or ``vae`` (what is optimised).
        nodes: number of nodes.
        headroom: fraction of the GPU kept free for activations.

    Returns:
        ``{"preset", "train", "gpus", "nodes", "gpu_mem_bytes", "trained_params",
        "frozen_params", "total_params", "largest_layer_params", "rows": [PlanRow.to_dict()],
        "recommended": {"stage", "offload"} or None, "reason"}``.
    """
    if train not in TRAIN_TARGETS:
        raise ConfigError(f"`train` ({train!r}) must be one of {TRAIN_TARGETS}")
    if not isinstance(gpus, int) or gpus < 1 or not isinstance(nodes, int) or nodes < 1:
        raise ConfigError(f"`gpus` ({gpus!r}) and `nodes` ({nodes!r}) must be positive integers")
    if not gpu_mem_gb > 0:
        raise ConfigError(f"`gpu_mem_gb` ({gpu_mem_gb}) must be positive, e.g. 80")
    if not 0 <= headroom < 1:
        raise ConfigError(f"`headroom` ({headroom}) must be in [0, 1), e.g. 0.35")
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    from sarray.models.components import PARAMETER_COMPONENTS, build_models
    from sarray.models.presets import get_preset

    # 1. Parameter counts on the meta device.
    models = build_models(get_preset(preset), device="meta")
    counts = {n: sum(p.numel() for p in models[n].parameters()) for n in PARAMETER_COMPONENTS}
    trained_names = {"unet": ["unet"], "controlnet": ["controlnet"],
                     "both": ["unet", "controlnet"], "vae": ["vae"]}[train]
    # The ControlNet is in the pipeline only when it takes part (always, except VAE fitting).
    used = [n for n in PARAMETER_COMPONENTS if train != "vae" or n == "vae"]
    trained = sum(counts[n] for n in trained_names)
    frozen = sum(counts[n] for n in used if n not in trained_names)
    largest = _largest_layer(models, trained_names)
    total_gpus = gpus * nodes
    budget = gpu_mem_gb * 1e9
    usable = budget * (1 - headroom)

    # 2. Model states of the trained parameters, from DeepSpeed's estimators.
    rows: list[PlanRow] = []

    def add(stage: int, offload: str, gpu_trained: float, cpu: float, gpu_frozen: float) -> None:
        rows.append(PlanRow(stage=stage, offload=offload, gpu_bytes_trained=int(gpu_trained),
                            gpu_bytes_frozen=int(gpu_frozen), cpu_bytes=int(cpu),
                            fits=gpu_trained + gpu_frozen <= usable))

    frozen_full = 2 * frozen
    frozen_part = 2 * frozen / total_gpus
    # ZeRO-1: paper accounting with the stage-2 estimator's terms (no DeepSpeed estimator).
    add(1, "none", 4 * trained + 16 * trained / total_gpus, trained * 4 * gpus * 1.5, frozen_full)
    add(1, "optimizer", 4 * trained, trained * max(4 * total_gpus, 16) * 1.5, frozen_full)
    for offload in (False, True):
        cpu, gpu = estimate_zero2_model_states_mem_needs(
            trained, num_gpus_per_node=gpus, num_nodes=nodes, cpu_offload=offload)
        add(2, "optimizer" if offload else "none", gpu, cpu, frozen_full)
    for offload, offload_params, label in ((False, False, "none"), (True, False, "optimizer"),
                                           (True, True, "optimizer+params")):
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            trained, largest, num_gpus_per_node=gpus, num_nodes=nodes, cpu_offload=offload,
            cpu_offload_params=offload_params, zero_init=True)
        add(3, label, gpu, cpu, 0.0 if offload_params else frozen_part)

    # 3. Recommend: the lowest stage that fits, no offload first (offload costs PCIe time).
    order = [(1, "none"), (2, "none"), (3, "none"), (2, "optimizer"), (3, "optimizer"),
             (3, "optimizer+params")]
    by_key = {(r.stage, r.offload): r for r in rows}
    recommended = next((k for k in order if by_key[k].fits), None)
    if recommended is None:
        reason = (f"no option fits {gpu_mem_gb:g} GB with {headroom:.0%} headroom: add GPUs or "
                  "nodes, train a smaller part (controlnet), or use LoRA")
    else:
        r = by_key[recommended]
        reason = (f"ZeRO-{r.stage}{'' if r.offload == 'none' else ' + ' + r.offload + ' offload'} "
                  f"is the lowest stage whose model states ({r.gpu_bytes / 1e9:.1f} GB) fit in "
                  f"{1 - headroom:.0%} of {gpu_mem_gb:g} GB, leaving the rest for activations; "
                  "lower stages communicate less")
    return {
        "preset": preset, "train": train, "gpus": gpus, "nodes": nodes,
        "gpu_mem_bytes": int(budget), "headroom": headroom,
        "trained_params": int(trained), "frozen_params": int(frozen),
        "total_params": int(trained + frozen), "largest_layer_params": int(largest),
        "base_model_params": int(sum(counts[n] for n in PARAMETER_COMPONENTS if n != "controlnet")),
        "rows": [r.to_dict() for r in rows],
        "recommended": None if recommended is None else {"stage": recommended[0], "offload": recommended[1]},
        "reason": reason,
    }


def format_plan(plan: dict[str, Any]) -> str:
    """A plain-text table of :func:`plan_memory`'s result."""
    lines = [
        f"preset {plan['preset']}, training {plan['train']}: {plan['trained_params'] / 1e9:.3f} B "
        f"trained + {plan['frozen_params'] / 1e9:.3f} B frozen = {plan['total_params'] / 1e9:.3f} B "
        f"parameters (base model without ControlNet: {plan['base_model_params'] / 1e9:.3f} B); "
        f"largest trained layer {plan['largest_layer_params'] / 1e6:.1f} M",
        f"{plan['gpus']} GPU(s) x {plan['nodes']} node(s), {plan['gpu_mem_bytes'] / 1e9:g} GB each; "
        f"model states only (DeepSpeed estimators), {plan['headroom']:.0%} kept for activations",
        "",
        f"{'stage':<7}{'offload':<18}{'GPU trained':>13}{'GPU frozen':>12}{'GPU total':>12}"
        f"{'CPU (node)':>13}  fits",
        "-" * 80,
    ]
    for r in plan["rows"]:
        lines.append(
            f"ZeRO-{r['stage']:<2}{r['offload']:<18}{r['gpu_bytes_trained'] / _GIB:>9.1f} GiB"
            f"{r['gpu_bytes_frozen'] / _GIB:>8.1f} GiB{r['gpu_bytes'] / _GIB:>8.1f} GiB"
            f"{r['cpu_bytes'] / _GIB:>9.1f} GiB  {'yes' if r['fits'] else 'no'}"
        )
    lines += ["", f"recommended: {plan['reason']}"]
    return "\n".join(lines)
