"""Model presets: the architecture of each component, as frozen configs.

A preset says *what* to build (sizes of the UNet, VAE, two CLIP text encoders and ControlNet,
and the default sampling knobs); :mod:`sarray.models.components` builds it with diffusers and
transformers. No torch import here, so presets can be listed, validated and written into job
configs on any machine.

Two presets ship:

- ``sdxl``: the SDXL-base architecture (UNet 2.57 B, CLIP ViT-L 123 M, OpenCLIP ViT-bigG 695 M,
  VAE 84 M: about 3.47 B parameters) plus an SDXL ControlNet (about 1.25 B). Weights come from a
  local directory or hub id in the diffusers layout.
- ``tiny``: the same classes at a tiny size (a 4-level VAE that downsamples 8x, as SDXL's does),
  for tests, benchmarks and CI: seeded random weights unless weights are given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from sarray.errors import ConfigError

# The UNet's added time ids: original size (2), crop top-left (2), target size (2).
_N_TIME_IDS = 6


def _tuple_of_positive_ints(name: str, value: Any) -> tuple[int, ...]:
    if (
        not isinstance(value, (tuple, list))
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ConfigError(
            f"`{name}` ({value!r}) must be a non-empty tuple of positive integers, e.g. (32, 64)"
        )
    return tuple(value)


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"`{name}` ({value!r}) must be a positive integer")
    return value


class _Spec:
    """Shared ``to_dict``/``from_dict`` for the frozen specs below (tuples become lists)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{cls.__name__}.from_dict got unknown keys {unknown}: expected a subset of "
                f"{sorted(names)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True, kw_only=True)
class UNetSpec(_Spec):
    """An SDXL-style ``UNet2DConditionModel``.

    Args:
        block_out_channels: channels per resolution level. Each level after the first halves the
            latent size, so the latent edge must be divisible by ``2 ** (levels - 1)``.
        layers_per_block: ResNet layers per level.
        transformer_layers_per_block: transformer depth per level (0 for plain levels).
        attention_heads: attention heads per level (diffusers' ``attention_head_dim``).
        addition_time_embed_dim: width of each embedded size/crop time id (SDXL: 256).
        norm_num_groups: GroupNorm groups; must divide every channel count.
    """

    block_out_channels: tuple[int, ...]
    layers_per_block: int
    transformer_layers_per_block: tuple[int, ...]
    attention_heads: tuple[int, ...]
    addition_time_embed_dim: int
    norm_num_groups: int = 32

    def __post_init__(self) -> None:
        levels = len(_tuple_of_positive_ints("block_out_channels", self.block_out_channels))
        _positive_int("layers_per_block", self.layers_per_block)
        _tuple_of_positive_ints("attention_heads", self.attention_heads)
        _positive_int("addition_time_embed_dim", self.addition_time_embed_dim)
        _positive_int("norm_num_groups", self.norm_num_groups)
        if len(self.transformer_layers_per_block) != levels or len(self.attention_heads) != levels:
            raise ConfigError(
                f"`transformer_layers_per_block` ({self.transformer_layers_per_block}) and "
                f"`attention_heads` ({self.attention_heads}) need one entry per level of "
                f"`block_out_channels` ({self.block_out_channels})"
            )
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ConfigError(
                f"`norm_num_groups` ({self.norm_num_groups}) must divide every entry of "
                f"`block_out_channels` ({self.block_out_channels})"
            )

    @property
    def downsample_factor(self) -> int:
        """How much the UNet shrinks its latent input at its deepest level."""
        return 2 ** (len(self.block_out_channels) - 1)

    def down_block_types(self) -> tuple[str, ...]:
        """Plain levels where there is no transformer, cross-attention levels elsewhere."""
        return tuple(
            "CrossAttnDownBlock2D" if n else "DownBlock2D"
            for n in self.transformer_layers_per_block
        )

    def up_block_types(self) -> tuple[str, ...]:
        """The mirror of :meth:`down_block_types`."""
        return tuple(
            "CrossAttnUpBlock2D" if n else "UpBlock2D"
            for n in reversed(self.transformer_layers_per_block)
        )

    def diffusers_kwargs(self, *, cross_attention_dim: int, pooled_dim: int) -> dict[str, Any]:
        """Keyword arguments of ``UNet2DConditionModel`` (and, minus the up path, ControlNet)."""
        return {
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": self.block_out_channels,
            "layers_per_block": self.layers_per_block,
            "down_block_types": self.down_block_types(),
            "up_block_types": self.up_block_types(),
            # Levels without a transformer still need a value; diffusers ignores it there.
            "transformer_layers_per_block": tuple(max(n, 1) for n in self.transformer_layers_per_block),
            "attention_head_dim": self.attention_heads,
            "cross_attention_dim": cross_attention_dim,
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": self.addition_time_embed_dim,
            "projection_class_embeddings_input_dim": _N_TIME_IDS * self.addition_time_embed_dim
            + pooled_dim,
            "norm_num_groups": self.norm_num_groups,
        }


@dataclass(frozen=True, kw_only=True)
class VAESpec(_Spec):
    """An ``AutoencoderKL``.

    Args:
        block_out_channels: channels per level; ``levels - 1`` downsamplings, so 4 levels give
            the 8x downsampling of SDXL's VAE.
        layers_per_block: ResNet layers per level.
        latent_channels: 4, as the SDXL UNet expects.
        norm_num_groups: GroupNorm groups; must divide every channel count.
        scaling_factor: latent scaling (SDXL: 0.13025).
        force_upcast: run the VAE in float32 even in a half-precision pipeline (SDXL's VAE
            overflows in float16).
    """

    block_out_channels: tuple[int, ...]
    layers_per_block: int
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.13025
    force_upcast: bool = True

    def __post_init__(self) -> None:
        _tuple_of_positive_ints("block_out_channels", self.block_out_channels)
        _positive_int("layers_per_block", self.layers_per_block)
        if self.latent_channels != 4:
            raise ConfigError(
                f"`latent_channels` ({self.latent_channels}) must be 4: the SDXL UNet and "
                "pipeline assume 4 latent channels"
            )
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ConfigError(
                f"`norm_num_groups` ({self.norm_num_groups}) must divide every entry of "
                f"`block_out_channels` ({self.block_out_channels})"
            )
        if not self.scaling_factor > 0:
            raise ConfigError(f"`scaling_factor` ({self.scaling_factor}) must be positive")

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent cell along each axis."""
        return 2 ** (len(self.block_out_channels) - 1)

    def diffusers_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``AutoencoderKL``."""
        n = len(self.block_out_channels)
        return {
            "in_channels": 3,
            "out_channels": 3,
            "block_out_channels": self.block_out_channels,
            "layers_per_block": self.layers_per_block,
            "down_block_types": ("DownEncoderBlock2D",) * n,
            "up_block_types": ("UpDecoderBlock2D",) * n,
            "latent_channels": self.latent_channels,
            "norm_num_groups": self.norm_num_groups,
            "scaling_factor": self.scaling_factor,
            "force_upcast": self.force_upcast,
        }


@dataclass(frozen=True, kw_only=True)
class TextEncoderSpec(_Spec):
    """A CLIP text transformer (``CLIPTextModel`` or ``CLIPTextModelWithProjection``).

    Args:
        hidden_size: token embedding width; the UNet's cross-attention width is the sum over
            both encoders (SDXL: 768 + 1280 = 2048).
        intermediate_size: MLP width.
        num_hidden_layers: transformer depth.
        num_attention_heads: heads (must divide ``hidden_size``).
        projection_dim: width of the pooled, projected embedding (used from the second encoder).
        vocab_size: tokenizer vocabulary size (CLIP BPE: 49408).
        hidden_act: ``quick_gelu`` (OpenAI CLIP-L) or ``gelu`` (OpenCLIP bigG).
        with_projection: build ``CLIPTextModelWithProjection`` (SDXL's second encoder).
        max_position_embeddings: maximum tokens per prompt (77).
        bos_token_id, eos_token_id, pad_token_id: the tokenizer's special ids; the pooled
            embedding is read at the first ``eos_token_id``.
    """

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    projection_dim: int
    vocab_size: int
    hidden_act: str = "quick_gelu"
    with_projection: bool = False
    max_position_embeddings: int = 77
    bos_token_id: int = 49406
    eos_token_id: int = 49407
    pad_token_id: int = 49407

    def __post_init__(self) -> None:
        for name in (
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "projection_dim", "vocab_size", "max_position_embeddings",
        ):
            _positive_int(name, getattr(self, name))
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"`num_attention_heads` ({self.num_attention_heads}) must divide `hidden_size` "
                f"({self.hidden_size})"
            )
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ConfigError(
                    f"`{name}` ({value!r}) must be a token id in [0, `vocab_size` "
                    f"({self.vocab_size}))"
                )
        if self.hidden_act not in ("quick_gelu", "gelu"):
            raise ConfigError(f"`hidden_act` ({self.hidden_act!r}) must be 'quick_gelu' or 'gelu'")

    def transformers_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``CLIPTextConfig``."""
        return {
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "projection_dim": self.projection_dim,
            "vocab_size": self.vocab_size,
            "hidden_act": self.hidden_act,
            "max_position_embeddings": self.max_position_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        }


@dataclass(frozen=True, kw_only=True)
class ControlNetSpec(_Spec):
    """A ControlNet mirroring the UNet's down path.

    Args:
        conditioning_embedding_out_channels: channels of the small CNN that embeds the
            conditioning image; ``len - 1`` stride-2 convolutions, so it must downsample by the
            VAE's factor to land on the latent grid.
    """

    conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256)

    def __post_init__(self) -> None:
        _tuple_of_positive_ints(
            "conditioning_embedding_out_channels", self.conditioning_embedding_out_channels
        )

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent cell of the conditioning embedding."""
        return 2 ** (len(self.conditioning_embedding_out_channels) - 1)


@dataclass(frozen=True, kw_only=True)
class SchedulerSpec(_Spec):
    """The noise scheduler (SDXL's ``EulerDiscreteScheduler`` configuration by default)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    timestep_spacing: str = "leading"
    steps_offset: int = 1

    def __post_init__(self) -> None:
        _positive_int("num_train_timesteps", self.num_train_timesteps)
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ConfigError(
                f"`beta_start` ({self.beta_start}) and `beta_end` ({self.beta_end}) must satisfy "
                "0 < beta_start < beta_end < 1"
            )
        if self.timestep_spacing not in ("leading", "trailing", "linspace"):
            raise ConfigError(
                f"`timestep_spacing` ({self.timestep_spacing!r}) must be leading|trailing|linspace"
            )

    def diffusers_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``EulerDiscreteScheduler``."""
        return self.to_dict()


@dataclass(frozen=True, kw_only=True)
class ModelPreset:
    """Everything needed to build (or size) a replica's pipeline.

    Args:
        name: preset name (``tiny``, ``sdxl`` or a custom one).
        unet, vae, text_encoder, text_encoder_2, controlnet, scheduler: component specs.
        default_steps: inference steps when the replica config leaves them unset.
        default_strength: img2img strength (fraction of the schedule run from the noised input).
        default_guidance_scale: classifier-free guidance scale; 1.0 switches guidance off and
            halves the cost.
        default_controlnet_scale: weight of the ControlNet residuals.
    """

    name: str
    unet: UNetSpec
    vae: VAESpec
    text_encoder: TextEncoderSpec
    text_encoder_2: TextEncoderSpec
    controlnet: ControlNetSpec
    scheduler: SchedulerSpec = SchedulerSpec()
    default_steps: int = 30
    default_strength: float = 0.75
    default_guidance_scale: float = 5.0
    default_controlnet_scale: float = 0.8

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"`name` ({self.name!r}) must be a non-empty string")
        if self.vae.downsample_factor != 8:
            raise ConfigError(
                f"`vae.block_out_channels` ({self.vae.block_out_channels}) gives a "
                f"{self.vae.downsample_factor}x VAE: the SDXL pipeline assumes 8x, use 4 levels"
            )
        if self.controlnet.downsample_factor != self.vae.downsample_factor:
            raise ConfigError(
                "`controlnet.conditioning_embedding_out_channels` "
                f"({self.controlnet.conditioning_embedding_out_channels}) downsamples "
                f"{self.controlnet.downsample_factor}x but the VAE downsamples "
                f"{self.vae.downsample_factor}x: give it {len(self.vae.block_out_channels)} entries"
            )
        if not self.text_encoder_2.with_projection:
            raise ConfigError(
                "`text_encoder_2.with_projection` must be True: SDXL pools the second encoder"
            )
        _positive_int("default_steps", self.default_steps)
        if not 0 < self.default_strength <= 1:
            raise ConfigError(f"`default_strength` ({self.default_strength}) must be in (0, 1]")
        if int(self.default_steps * self.default_strength) < 1:
            raise ConfigError(
                f"`default_steps` ({self.default_steps}) x `default_strength` "
                f"({self.default_strength}) runs no step: raise either"
            )
        if self.default_guidance_scale < 0 or self.default_controlnet_scale < 0:
            raise ConfigError(
                f"`default_guidance_scale` ({self.default_guidance_scale}) and "
                f"`default_controlnet_scale` ({self.default_controlnet_scale}) must be >= 0"
            )

    @property
    def cross_attention_dim(self) -> int:
        """Width of the concatenated token embeddings of both text encoders."""
        return self.text_encoder.hidden_size + self.text_encoder_2.hidden_size

    @property
    def pixel_multiple(self) -> int:
        """Output tile edges must be multiples of this (VAE factor x UNet downsampling)."""
        return self.vae.downsample_factor * self.unet.downsample_factor

    def unet_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the UNet, with the widths the text encoders imply."""
        return self.unet.diffusers_kwargs(
            cross_attention_dim=self.cross_attention_dim,
            pooled_dim=self.text_encoder_2.projection_dim,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelPreset:
        d = dict(data)
        for key, spec in (
            ("unet", UNetSpec), ("vae", VAESpec), ("text_encoder", TextEncoderSpec),
            ("text_encoder_2", TextEncoderSpec), ("controlnet", ControlNetSpec),
            ("scheduler", SchedulerSpec),
        ):
            if isinstance(d.get(key), dict):
                d[key] = spec.from_dict(d[key])
        return cls(**d)


# Vocabulary of the byte-level character tokenizer built for the tiny preset: 256 byte symbols,
# each also as a word end, plus start and end tokens (see components.build_tiny_tokenizer).
TINY_VOCAB_SIZE = 2 * 256 + 2
# One token per character: 192 positions hold a full metadata prompt (SDXL's BPE needs 77).
_TINY_TOKENS = {
    "bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513, "max_position_embeddings": 192,
}

SDXL = ModelPreset(
    name="sdxl",
    unet=UNetSpec(
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        transformer_layers_per_block=(0, 2, 10),
        attention_heads=(5, 10, 20),
        addition_time_embed_dim=256,
    ),
    vae=VAESpec(block_out_channels=(128, 256, 512, 512), layers_per_block=2),
    text_encoder=TextEncoderSpec(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        projection_dim=768, vocab_size=49408, hidden_act="quick_gelu",
    ),
    text_encoder_2=TextEncoderSpec(
        hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
        projection_dim=1280, vocab_size=49408, hidden_act="gelu", with_projection=True,
    ),
    controlnet=ControlNetSpec(conditioning_embedding_out_channels=(16, 32, 96, 256)),
    default_steps=30,
    default_strength=0.75,
    default_guidance_scale=5.0,
    default_controlnet_scale=0.8,
)

TINY = ModelPreset(
    name="tiny",
    unet=UNetSpec(
        block_out_channels=(32, 64),
        layers_per_block=1,
        transformer_layers_per_block=(0, 1),
        attention_heads=(2, 4),
        addition_time_embed_dim=8,
        norm_num_groups=8,
    ),
    vae=VAESpec(
        block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4,
        scaling_factor=1.0, force_upcast=False,
    ),
    text_encoder=TextEncoderSpec(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        projection_dim=32, vocab_size=TINY_VOCAB_SIZE, hidden_act="quick_gelu", **_TINY_TOKENS,
    ),
    text_encoder_2=TextEncoderSpec(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        projection_dim=32, vocab_size=TINY_VOCAB_SIZE, hidden_act="gelu", with_projection=True,
        **_TINY_TOKENS,
    ),
    controlnet=ControlNetSpec(conditioning_embedding_out_channels=(8, 8, 16, 16)),
    # 4 steps at strength 0.75 run 3 UNet+ControlNet evaluations; no guidance halves the cost.
    default_steps=4,
    default_strength=0.75,
    default_guidance_scale=1.0,
    default_controlnet_scale=1.0,
)

PRESETS: dict[str, ModelPreset] = {"tiny": TINY, "sdxl": SDXL}


def get_preset(name: str) -> ModelPreset:
    """Return the preset called ``name``.

    Raises:
        ConfigError: if there is no such preset.
    """
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"`preset` ({name!r}) is not a known preset: choose one of {sorted(PRESETS)}"
        ) from None
