"""Build the pipeline components of a preset with diffusers and transformers.

torch, diffusers and transformers are imported inside the functions: importing this module stays
cheap. Components can be built on the ``meta`` device (shapes only, no memory: for sizing the
real SDXL on a laptop) or on a real device with seeded random weights (the tiny preset).
"""

from __future__ import annotations

from typing import Any

from sarray.models.presets import ModelPreset

#: Component names in the diffusers layout that hold parameters, in build order.
PARAMETER_COMPONENTS: tuple[str, ...] = ("unet", "text_encoder", "text_encoder_2", "vae", "controlnet")


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte-to-symbol table: 256 printable symbols, one per byte value."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_tiny_tokenizer(max_length: int = 77) -> Any:
    """A CLIP tokenizer with a byte-level character vocabulary and no merges.

    It tokenizes any text (one token per byte, lower-cased as CLIP does) without downloading a
    vocabulary, so the tiny preset works offline. Its vocabulary size is
    :data:`sarray.models.presets.TINY_VOCAB_SIZE`.
    """
    from transformers import CLIPTokenizer

    symbols = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def build_scheduler(preset: ModelPreset) -> Any:
    """The preset's ``EulerDiscreteScheduler``."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**preset.scheduler.diffusers_kwargs())


def build_models(
    preset: ModelPreset, *, device: str = "cpu", seed: int = 0, live_controlnet: bool = True
) -> dict[str, Any]:
    """Instantiate the parameterised components of ``preset``.

    Args:
        preset: the architecture.
        device: ``"meta"`` for shapes only (no memory, no initialisation cost), else a torch
            device for seeded random weights.
        seed: seed of the random initialisation; the same seed gives bit-identical weights.
        live_controlnet: give the ControlNet's zero-initialised output convolutions small random
            weights, so that an untrained model still depends on its conditioning image (tests
            check this). A ControlNet to be trained normally starts from zeros.

    Returns:
        ``{"unet", "text_encoder", "text_encoder_2", "vae", "controlnet"}`` modules.
    """
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def text_model(spec: Any) -> Any:
        config = CLIPTextConfig(**spec.transformers_kwargs())
        cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
        return cls(config)

    def build() -> dict[str, Any]:
        unet = UNet2DConditionModel(**preset.unet_kwargs())
        controlnet_kwargs = {
            k: v for k, v in preset.unet_kwargs().items() if k not in ("out_channels", "up_block_types")
        }
        controlnet = ControlNetModel(
            **controlnet_kwargs,
            conditioning_embedding_out_channels=preset.controlnet.conditioning_embedding_out_channels,
        )
        return {
            "unet": unet,
            "text_encoder": text_model(preset.text_encoder),
            "text_encoder_2": text_model(preset.text_encoder_2),
            "vae": AutoencoderKL(**preset.vae.diffusers_kwargs()),
            "controlnet": controlnet,
        }

    if device == "meta":
        with torch.device("meta"):
            return build()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        models = build()
        if live_controlnet:
            controlnet = models["controlnet"]
            with torch.no_grad():
                for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                               controlnet.controlnet_cond_embedding.conv_out]:
                    for p in module.parameters():
                        p.normal_(0.0, 0.02)
    for m in models.values():
        m.to(device).eval()
    return models


def build_pipeline(components: dict[str, Any]) -> Any:
    """Assemble a ``StableDiffusionXLControlNetImg2ImgPipeline`` from components."""
    from diffusers import StableDiffusionXLControlNetImg2ImgPipeline

    pipe = StableDiffusionXLControlNetImg2ImgPipeline(**components, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_random_pipeline(preset: ModelPreset, *, device: str = "cpu", seed: int = 0) -> Any:
    """A full pipeline of ``preset`` with seeded random weights and the byte-level tokenizer.

    Meant for the tiny preset (tests, benchmarks); sizing the sdxl preset uses
    :func:`build_models` on the meta device instead.
    """
    models = build_models(preset, device=device, seed=seed)
    tokenizer = build_tiny_tokenizer(preset.text_encoder.max_position_embeddings)
    return build_pipeline(
        {
            **models,
            "tokenizer": tokenizer,
            "tokenizer_2": build_tiny_tokenizer(preset.text_encoder_2.max_position_embeddings),
            "scheduler": build_scheduler(preset),
        }
    )
