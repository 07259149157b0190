"""The torch modules that DeepSpeed trains: denoiser (UNet + ControlNet + text encoders), VAE, LoRA.

Imports torch at module level: import this module only inside training code.

The denoiser computes exactly what :class:`diffusers.StableDiffusionXLControlNetImg2ImgPipeline`
computes at inference for one denoising step (same text embeddings: penultimate hidden states of
both encoders concatenated, pooled output of the second; same added time ids; same ControlNet
conditioning in [0, 1]), so that what is trained is what the replica runs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

#: Attention projections of the CLIP text encoders that get LoRA adapters.
LORA_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * B(A(x))`` with ``base`` frozen and ``B`` zero-initialised.

    Args:
        base: the frozen linear layer.
        rank: the LoRA rank ``r``.
        alpha: the scale numerator (default: ``rank``, i.e. scale 1).
        generator: seeds the initialisation of ``A``.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        with torch.no_grad():
            bound = 1.0 / math.sqrt(base.in_features)
            self.lora_A.copy_(torch.rand(rank, base.in_features, generator=generator) * 2 * bound - bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale

    def merged_weight(self, lora_A: torch.Tensor, lora_B: torch.Tensor) -> torch.Tensor:
        """The base weight with the (given) adapter merged in."""
        return self.base.weight.detach().float() + (lora_B.float() @ lora_A.float()) * self.scale


def add_lora(text_encoder: nn.Module, rank: int, seed: int) -> list[str]:
    """Wrap every attention projection of ``text_encoder`` in a :class:`LoRALinear` (in place).

    Returns:
        The dotted names of the wrapped layers.
    """
    generator = torch.Generator().manual_seed(seed)
    wrapped = []
    for name, module in list(text_encoder.named_modules()):
        for child_name in LORA_TARGETS:
            child = getattr(module, child_name, None)
            if isinstance(child, nn.Linear):
                setattr(module, child_name, LoRALinear(child, rank, generator=generator))
                wrapped.append(f"{name}.{child_name}" if name else child_name)
    return wrapped


def merge_lora(text_encoder: nn.Module, state: dict[str, torch.Tensor] | None = None,
               prefix: str = "") -> nn.Module:
    """Replace every :class:`LoRALinear` of ``text_encoder`` by a plain merged ``nn.Linear``.

    Args:
        text_encoder: the encoder with adapters (modified in place).
        state: adapter tensors by full name (``prefix + layer + ".lora_A"``); None: the layers'
            own current values.
        prefix: prefix of the names in ``state``.
    """
    for name, module in list(text_encoder.named_modules()):
        for child_name in LORA_TARGETS:
            child = getattr(module, child_name, None)
            if isinstance(child, LoRALinear):
                key = f"{prefix}{name}.{child_name}" if name else f"{prefix}{child_name}"
                a = state[f"{key}.lora_A"] if state is not None else child.lora_A.detach()
                b = state[f"{key}.lora_B"] if state is not None else child.lora_B.detach()
                merged = nn.Linear(child.base.in_features, child.base.out_features,
                                   bias=child.base.bias is not None)
                with torch.no_grad():
                    merged.weight.copy_(child.merged_weight(a, b))
                    if child.base.bias is not None:
                        merged.bias.copy_(child.base.bias.detach())
                setattr(module, child_name, merged)
    return text_encoder


class Denoiser(nn.Module):
    """UNet + ControlNet + both text encoders: predicts the noise of noisy latents.

    Args:
        unet, controlnet, text_encoder, text_encoder_2: the pipeline's components.
        train_text: text encoders carry trainable LoRA adapters (else run without gradients).
    """

    def __init__(self, *, unet: nn.Module, controlnet: nn.Module, text_encoder: nn.Module,
                 text_encoder_2: nn.Module, train_text: bool) -> None:
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet
        self.text_encoder = text_encoder
        self.text_encoder_2 = text_encoder_2
        self.train_text = train_text

    def encode_text(self, ids_1: torch.Tensor, ids_2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt_embeds (B, L, D1 + D2), pooled (B, P)) as the SDXL pipeline computes them."""
        with torch.set_grad_enabled(self.train_text and torch.is_grad_enabled()):
            out_1 = self.text_encoder(ids_1, output_hidden_states=True)
            out_2 = self.text_encoder_2(ids_2, output_hidden_states=True)
        embeds = torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2]], dim=-1)
        return embeds, out_2[0]

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, ids_1: torch.Tensor,
                ids_2: torch.Tensor, time_ids: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        embeds, pooled = self.encode_text(ids_1, ids_2)
        embeds = embeds.to(noisy.dtype)
        added = {"text_embeds": pooled.to(noisy.dtype), "time_ids": time_ids.to(noisy.dtype)}
        down, mid = self.controlnet(
            noisy, timesteps, encoder_hidden_states=embeds, controlnet_cond=control.to(noisy.dtype),
            conditioning_scale=1.0, added_cond_kwargs=added, return_dict=False,
        )
        return self.unet(
            noisy, timesteps, encoder_hidden_states=embeds, added_cond_kwargs=added,
            down_block_additional_residuals=down, mid_block_additional_residual=mid,
            return_dict=False,
        )[0]


class Autoencoder(nn.Module):
    """The VAE, for the reconstruction loss (``train: vae``)."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, images: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [-1, 1] -> (reconstruction, KL per sample), sampling with ``noise``."""
        posterior = self.vae.encode(images).latent_dist
        z = posterior.mean + posterior.std * noise
        recon = self.vae.decode(z).sample
        return recon, posterior.kl()


def tokenize(tokenizer: Any, prompts: list[str]) -> torch.Tensor:
    """Token ids as the pipeline makes them (padded to ``model_max_length``, truncated)."""
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids
