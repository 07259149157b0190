"""The training configuration: one frozen dataclass, read from a YAML file.

Example ``cfg.yaml`` (the recipe of the shipped tiny weights is in
``sarray/models/weights/tiny/RECIPE.yaml``)::

    output_dir: runs/tiny
    model: tiny-random        # initial weights: tiny | tiny-random | sdxl | a folder
    train: both               # controlnet | unet | both | vae
    steps: 2000
    batch_size: 8             # per process
    learning_rate: 2.0e-4
    zero_stage: 2             # 1, 2 or 3
    offload: none             # none | optimizer | optimizer+params (stage 3)
    precision: auto           # auto | fp32 | bf16 | fp16
    gradient_checkpointing: false
    ema_decay: 0.999
    checkpoint_every: 500
    validate_every: 500
    data:
      archive: /tmp/real.zarr
      tile_px: 128
      val_scenes: [uavsar-grand-mesa-amp2]
      degradation: {scale: 4, lowpass: multilook, speckle_looks: 4.4}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from sarray.errors import ConfigError
from sarray.train.pairs import PairConfig

TRAIN_TARGETS: tuple[str, ...] = ("controlnet", "unet", "both", "vae")
ZERO_STAGES: tuple[int, ...] = (1, 2, 3)
OFFLOADS: tuple[str, ...] = ("none", "optimizer", "optimizer+params")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


def _positive_int(name: str, value: Any, *, zero_ok: bool = False) -> None:
    low = 0 if zero_ok else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"`{name}` ({value!r}) must be an integer >= {low}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """What to train, on what, and how.

    Args:
        output_dir: run folder: ``checkpoints/``, ``tensorboard/``, ``loss.jsonl``, ``val/``,
            ``export/`` (the final weights, diffusers layout, safetensors).
        data: where pairs come from (:class:`sarray.train.pairs.PairConfig`).
        model: initial weights (``tiny``, ``tiny-random``, ``sdxl`` or a folder; see
            :func:`sarray.models.resolve.resolve_model`).
        train: ``controlnet``, ``unet``, ``both`` (denoising loss) or ``vae`` (reconstruction
            loss: only for presets without a pretrained autoencoder, i.e. ``tiny``).
        text_encoder_lora_rank: LoRA rank on both text encoders' attention projections; 0: off.
            Merged into the text encoders at export.
        steps: optimiser steps in total (a resumed run continues up to this).
        batch_size: tiles per process per step.
        learning_rate: AdamW peak learning rate (after warm-up).
        warmup_steps: linear warm-up from 0.
        weight_decay: AdamW weight decay.
        grad_clip: gradient norm clipping (0: off).
        zero_stage: DeepSpeed ZeRO stage 1, 2 or 3.
        offload: ``none``, ``optimizer`` (ZeRO-Offload of optimizer states to CPU) or
            ``optimizer+params`` (ZeRO-3 only: parameters too).
        precision: ``auto`` (bf16 on GPUs that support it, else fp32), ``fp32``, ``bf16``, ``fp16``.
        gradient_checkpointing: recompute activations in the backward pass (less memory).
        ema_decay: decay of the exponential moving average of the trained weights (0: off; the
            export then holds the raw weights).
        checkpoint_every: a checkpoint every this many steps (0: only at the end).
        validate_every: validation loss, images and an export of the EMA weights every this
            many steps (0: only at the end).
        log_every: TensorBoard scalars every this many steps.
        val_tiles: validation tiles (the same ones at each validation).
        vae_kl_weight: weight of the KL term when ``train`` is ``vae``.
        vae_texture_weight: weight of a local-texture term when ``train`` is ``vae``: the L1
            distance between the standard deviations of 4 x 4 blocks of the reconstruction and
            of the target. Pixel losses alone teach an 8x autoencoder to return the local mean
            (speckle is not compressible); this term rewards reproducing the speckle's local
            contrast without asking for its exact pattern. 0: off.
        consistency_weight: weight of a multilook-consistency term of the denoising loss: the
            denoised estimate of the clean latent is decoded and its ``scale`` x ``scale`` box
            average is pulled towards the coarse condition (model space), weighted per sample by
            the signal share of its timestep (alphas_cumprod), so only near-clean estimates count.
            It works against the contrast compression a noise-prediction loss alone leaves
            (dark inputs coming out too bright). 0: off; not with ``train: vae``.
        resume: continue from the newest checkpoint in ``output_dir`` when there is one.
        seed: seed of noise, timesteps and LoRA initialisation (the tile sampler has its own,
            ``data.seed``).
    """

    output_dir: str
    data: PairConfig
    model: str = "tiny-random"
    train: str = "both"
    text_encoder_lora_rank: int = 0
    steps: int = 100
    batch_size: int = 4
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    zero_stage: int = 2
    offload: str = "none"
    precision: str = "auto"
    gradient_checkpointing: bool = False
    ema_decay: float = 0.999
    checkpoint_every: int = 0
    validate_every: int = 0
    log_every: int = 10
    val_tiles: int = 4
    vae_kl_weight: float = 1e-6
    vae_texture_weight: float = 0.0
    consistency_weight: float = 0.0
    resume: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise ConfigError(f"`output_dir` ({self.output_dir!r}) must be a folder path")
        if not isinstance(self.data, PairConfig):
            raise ConfigError(f"`data` ({type(self.data).__name__}) must be a PairConfig")
        if self.train not in TRAIN_TARGETS:
            raise ConfigError(f"`train` ({self.train!r}) must be one of {TRAIN_TARGETS}")
        if self.zero_stage not in ZERO_STAGES:
            raise ConfigError(
                f"`zero_stage` ({self.zero_stage!r}) must be one of {ZERO_STAGES}: see "
                "`sarray train plan` for the memory of each"
            )
        if self.offload not in OFFLOADS:
            raise ConfigError(f"`offload` ({self.offload!r}) must be one of {OFFLOADS}")
        if self.offload == "optimizer+params" and self.zero_stage != 3:
            raise ConfigError(
                f"`offload` 'optimizer+params' needs `zero_stage` 3 (got {self.zero_stage}): "
                "use offload 'optimizer' with stages 1 and 2"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"`precision` ({self.precision!r}) must be one of {PRECISIONS}")
        for name in ("steps", "batch_size", "log_every", "val_tiles"):
            _positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "checkpoint_every", "validate_every", "text_encoder_lora_rank"):
            _positive_int(name, getattr(self, name), zero_ok=True)
        if self.text_encoder_lora_rank and self.train == "vae":
            raise ConfigError("`text_encoder_lora_rank` must be 0 when `train` is 'vae'")
        if not self.learning_rate > 0:
            raise ConfigError(f"`learning_rate` ({self.learning_rate}) must be positive")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"`ema_decay` ({self.ema_decay}) must be in [0, 1), e.g. 0.999")
        if self.vae_texture_weight < 0:
            raise ConfigError(f"`vae_texture_weight` ({self.vae_texture_weight}) must be >= 0")
        if self.consistency_weight < 0:
            raise ConfigError(f"`consistency_weight` ({self.consistency_weight}) must be >= 0")
        if self.consistency_weight and self.train == "vae":
            raise ConfigError("`consistency_weight` must be 0 when `train` is 'vae' (it weighs a "
                              "term of the denoising loss)")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.vae_kl_weight < 0:
            raise ConfigError(
                f"`weight_decay` ({self.weight_decay}), `grad_clip` ({self.grad_clip}) and "
                f"`vae_kl_weight` ({self.vae_kl_weight}) must be >= 0"
            )

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"training config must be a mapping, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"training config has unknown keys {unknown}: expected a subset of {sorted(names)}"
            )
        d = dict(data)
        if "data" not in d:
            raise ConfigError("training config lacks `data` (at least `data: {archive: PATH}`)")
        if isinstance(d["data"], dict):
            d["data"] = PairConfig.from_dict(d["data"])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a YAML file; ``overrides`` (top-level keys) replace its values."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"`config` ({str(path)!r}) cannot be read: {e}") from None
        data = dict(data or {})
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)
