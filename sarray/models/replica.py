"""The model replica: satellite (or simulated) SAR tiles in, airborne-resolution tiles out.

A :class:`Replica` is a plain class: ``__init__`` loads an SDXL ControlNet img2img pipeline,
``__call__(batch) -> batch`` translates a batch. No Ray inside: the engine wraps it (Ray Data's
callable-class pattern).

Batch format
------------
Input, a dict (numpy arrays or lists; Ray Data batches of numpy arrays work as they are):

``tiles``
    float32 ``(N, P, h, w)``: N tiles in archive units (``units``/``quantity`` of their scene),
    polarisations along P (one or two). NaN marks no data.
``scene_id``
    N strings: each tile's scene key.
``tile_index``
    N tile indices: ints, or tuples of ints such as ``(row, col)`` (an int array ``(N,)`` or
    ``(N, k)`` works too).
``meta``
    the scene attributes (see :class:`sarray.models.meta.SceneMeta`; the archive's scene
    attribute dict works as is, e.g. ``Archive.open_scene(id).attrs``): one dict for the whole
    batch, or a sequence of N dicts (one per tile). Keys used: ``units``, ``quantity``, ``polarisations``, ``pixel_spacing_m``,
    ``sensor``, ``platform``, ``statistics``, and optionally ``band`` and ``scene_type``.

Output: the same dict (inputs untouched) plus

``output``
    float32 ``(N, P, h * scale, w * scale)``: in the same units and polarisation order as
    ``tiles``; NaN where the input pixel under it was NaN.
``output_spacing_m``
    float64 ``(N, 2)``: ``pixel_spacing_m / scale`` (NaN when the spacing is not known).
``prompt``
    N strings: the text prompt each tile was translated with.
``seed``
    uint64 ``(N,)``: each tile's noise seed, from (scene id, tile index, ``config.seed``).

Determinism: each tile runs through the pipeline with its own ``torch.Generator`` seeded from
:func:`sarray.models.seeding.derive_seed`, and, with ``micro_batch=1`` (the default), on its
own: batched CPU convolutions differ from unbatched ones in the last bits (measured: up to
4e-6 on the tiny preset), so running tile by tile is what makes a tile's output identical in
any batch, order or replica. Raise ``micro_batch`` for GPU throughput when bitwise
batch-invariance is not needed.

How one tile is translated
--------------------------
1. Archive units -> model space [0, 1] per polarisation (:mod:`sarray.models.normalise`, with
   the scene's statistics), NaN -> 0, polarisations -> 3 RGB channels.
2. Resample onto the output grid (``scale`` x finer): this is both the img2img init image and
   the ControlNet condition.
3. Diffuse: noise the init image to ``strength`` and denoise under the prompt and the
   ControlNet (``strength`` is ``simulated_strength`` for scenes on platform ``simulated``).
4. RGB -> polarisations -> archive units; NaN restored under no-data input pixels.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sarray.errors import ConfigError, ModelError, ReplicaError
from sarray.models import normalise as norm
from sarray.models.meta import SceneMeta
from sarray.models.presets import ModelPreset, get_preset
from sarray.models.prompt import build_prompt
from sarray.models.seeding import derive_seed, normalise_tile_index
from sarray.tiles.grid import check_scale

logger = logging.getLogger(__name__)

DEVICES_PREFIXES: tuple[str, ...] = ("cpu", "cuda", "mps")
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
RESAMPLINGS: tuple[str, ...] = ("nearest", "bilinear", "bicubic")

# Model values are floored here before conversion to dB, so that a black output pixel is a very
# low backscatter (-80 dB below the normalisation scale) rather than -inf.
_DB_FLOOR = 1e-4
# Prompt embeddings kept per replica: one per distinct prompt; prompts vary by sensor, band,
# polarisation and spacing only, so a few dozen cover an archive.
_PROMPT_CACHE_SIZE = 64


@dataclass(frozen=True, kw_only=True)
class ReplicaConfig:
    """Everything a replica needs: model, device, sampling and normalisation.

    Sampling knobs left as None take the preset's defaults (see :mod:`sarray.models.presets`).

    Args:
        preset: ``tiny`` or ``sdxl``.
        weights: a local folder or hub id in the diffusers layout. None: the tiny preset gets
            seeded random weights (``init_seed``), meaningful only for tests and benchmarks; the
            sdxl preset refuses.
        controlnet_weights: separate ControlNet folder or hub id; None: ``weights/controlnet``.
        cache_dir: Hugging Face cache folder for hub ids (None: the default cache).
        device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``...
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        scale: output spacing = input spacing / ``scale``; a power of two in [1, 64] (1 for
            simulated-to-real at the same spacing).
        num_inference_steps: sampler steps (the run executes ``int(steps * strength)``).
        strength: img2img strength in (0, 1]: how far the upsampled tile is noised.
        simulated_strength: strength for scenes on platform ``simulated`` (simulated-to-real);
            None: the same as ``strength``.
        guidance_scale: classifier-free guidance; <= 1 switches it off.
        controlnet_scale: weight of the ControlNet residuals.
        seed: global seed mixed into every tile's seed.
        normalisation: SAR <-> model space mapping.
        resample: how the tile is put onto the output grid: nearest, bilinear or bicubic.
        micro_batch: tiles per pipeline call. 1 (default) makes outputs bitwise independent of
            batch composition; larger is faster on GPUs.
        init_seed: seed of the random weights when ``weights`` is None.
        prompt_prefix: first phrase of every prompt.
        negative_prompt: used when guidance is on.
    """

    preset: str = "tiny"
    weights: str | None = None
    controlnet_weights: str | None = None
    cache_dir: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    scale: int = 4
    num_inference_steps: int | None = None
    strength: float | None = None
    simulated_strength: float | None = None
    guidance_scale: float | None = None
    controlnet_scale: float | None = None
    seed: int = 0
    normalisation: norm.NormalisationConfig = field(default_factory=norm.NormalisationConfig)
    resample: str = "bilinear"
    micro_batch: int = 1
    init_seed: int = 0
    prompt_prefix: str = "airborne SAR amplitude image"
    negative_prompt: str = ""

    def __post_init__(self) -> None:
        preset = get_preset(self.preset)
        if self.weights is None and self.preset != "tiny":
            raise ConfigError(
                f"`weights` is None but preset {self.preset!r} has no built-in weights: pass a "
                "local folder or hub id in the diffusers layout (e.g. a fine-tuned SDXL with a "
                "controlnet/ subfolder)"
            )
        if not isinstance(self.device, str) or not self.device.split(":")[0] in DEVICES_PREFIXES:
            raise ConfigError(f"`device` ({self.device!r}) must be 'cpu', 'cuda', 'cuda:N' or 'mps'")
        if self.dtype not in DTYPES:
            raise ConfigError(f"`dtype` ({self.dtype!r}) must be one of {DTYPES}")
        check_scale(self.scale)
        steps = self.num_inference_steps if self.num_inference_steps is not None else preset.default_steps
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"`num_inference_steps` ({steps!r}) must be a positive integer")
        for name in ("strength", "simulated_strength"):
            value = getattr(self, name)
            if value is None:
                continue
            if not 0 < value <= 1:
                raise ConfigError(f"`{name}` ({value}) must be in (0, 1], e.g. 0.75")
        for value in (self.resolved_strength(simulated=False), self.resolved_strength(simulated=True)):
            if int(steps * value) < 1:
                raise ConfigError(
                    f"`num_inference_steps` ({steps}) x strength ({value}) runs no denoising "
                    f"step: raise the steps to at least {int(np.ceil(1 / value))} or the strength"
                )
        for name in ("guidance_scale", "controlnet_scale"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"`{name}` ({value}) must be a finite number >= 0")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"`seed` ({self.seed!r}) must be an int")
        if not isinstance(self.normalisation, norm.NormalisationConfig):
            raise ConfigError(
                f"`normalisation` ({self.normalisation!r}) must be a NormalisationConfig"
            )
        if self.resample not in RESAMPLINGS:
            raise ConfigError(f"`resample` ({self.resample!r}) must be one of {RESAMPLINGS}")
        if not isinstance(self.micro_batch, int) or self.micro_batch < 1:
            raise ConfigError(f"`micro_batch` ({self.micro_batch!r}) must be a positive integer")

    @property
    def model_preset(self) -> ModelPreset:
        """The :class:`ModelPreset` named by ``preset``."""
        return get_preset(self.preset)

    @property
    def steps(self) -> int:
        """Sampler steps, with the preset default filled in."""
        return self.num_inference_steps or self.model_preset.default_steps

    def resolved_strength(self, *, simulated: bool) -> float:
        """The img2img strength for a satellite (or simulated) scene."""
        base = self.strength if self.strength is not None else self.model_preset.default_strength
        if simulated and self.simulated_strength is not None:
            return self.simulated_strength
        return base

    @property
    def resolved_guidance_scale(self) -> float:
        """Guidance scale, with the preset default filled in."""
        g = self.guidance_scale
        return self.model_preset.default_guidance_scale if g is None else g

    @property
    def resolved_controlnet_scale(self) -> float:
        """ControlNet weight, with the preset default filled in."""
        c = self.controlnet_scale
        return self.model_preset.default_controlnet_scale if c is None else c

    def check_tile_shape(self, h: int, w: int) -> None:
        """Raise if an ``h x w`` input tile does not give a valid output grid.

        Raises:
            ConfigError: unless ``h * scale`` and ``w * scale`` are multiples of the preset's
                ``pixel_multiple`` (VAE 8x times the UNet's own downsampling).
        """
        m = self.model_preset.pixel_multiple
        if h < 1 or w < 1 or (h * self.scale) % m or (w * self.scale) % m:
            step = m // np.gcd(m, self.scale)
            raise ConfigError(
                f"tile of {h} x {w} px at `scale` {self.scale} gives a {h * self.scale} x "
                f"{w * self.scale} output, but preset {self.preset!r} needs output edges that "
                f"are multiples of {m}: use input tile edges that are multiples of {step}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplicaConfig:
        d = dict(data)
        if isinstance(d.get("normalisation"), dict):
            d["normalisation"] = norm.NormalisationConfig.from_dict(d["normalisation"])
        return cls(**d)


def _as_list(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, np.ndarray):
        value = list(value) if value.ndim >= 1 else [value.item()]
    elif isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or len(value) != n:
        got = len(value) if hasattr(value, "__len__") else type(value).__name__
        raise ConfigError(
            f"batch[{name!r}] must hold one entry per tile ({n}), got {got}"
        )
    return value


class Replica:
    """One model replica: loads the pipeline once, then translates batches of tiles.

    Args:
        config: the replica configuration.

    Raises:
        ModelError: if weights are missing, pickled, unreachable or of another architecture.
    """

    def __init__(self, config: ReplicaConfig) -> None:
        if not isinstance(config, ReplicaConfig):
            raise ConfigError(f"`config` ({type(config).__name__}) must be a ReplicaConfig")
        import torch

        from sarray.models import components, loading

        self.config = config
        self.preset = config.model_preset
        self._torch = torch
        self._dtype = {"float32": torch.float32, "float16": torch.float16,
                       "bfloat16": torch.bfloat16}[config.dtype]
        if config.weights is None:
            logger.warning(
                "preset %r with random weights (init_seed=%d): outputs are meaningless, use for "
                "tests and benchmarks only", config.preset, config.init_seed,
            )
            pipe = components.build_random_pipeline(self.preset, seed=config.init_seed)
        else:
            pipe = loading.load_pipeline(
                config.weights, controlnet_weights=config.controlnet_weights,
                dtype=config.dtype, cache_dir=config.cache_dir,
            )
            self._check_architecture(pipe)
        try:
            if config.dtype != "float32" and config.weights is None:
                pipe.to(dtype=self._dtype)
            pipe.to(device=config.device)
        except (RuntimeError, AssertionError) as e:
            raise ModelError(f"cannot move the pipeline to `device` {config.device!r}: {e}") from e
        self.pipe = pipe
        self._prompt_cache: dict[str, tuple[Any, ...]] = {}

    def _check_architecture(self, pipe: Any) -> None:
        want = tuple(self.preset.unet.block_out_channels)
        got = tuple(pipe.unet.config.block_out_channels)
        xdim = pipe.unet.config.cross_attention_dim
        if got != want or xdim != self.preset.cross_attention_dim:
            raise ModelError(
                f"weights {self.config.weights!r} hold a UNet with block_out_channels {got} and "
                f"cross_attention_dim {xdim}, but preset {self.preset.name!r} expects {want} and "
                f"{self.preset.cross_attention_dim}: pick the matching `preset`"
            )

    # -- public API -------------------------------------------------------------------------

    def save_weights(self, path: Any) -> Any:
        """Save this replica's pipeline (safetensors, diffusers layout); return the folder."""
        from sarray.models.loading import save_pipeline

        return save_pipeline(self.pipe, path)

    def translate_tile(
        self, tile: np.ndarray, *, scene_id: str, tile_index: Any, meta: dict[str, Any] | SceneMeta
    ) -> np.ndarray:
        """Translate one ``(P, h, w)`` tile; see :meth:`__call__`."""
        out = self({"tiles": np.asarray(tile)[None], "scene_id": [scene_id],
                    "tile_index": [tile_index], "meta": meta})
        return out["output"][0]

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Translate a batch (format in the module docstring).

        Raises:
            ConfigError: for a malformed batch (shapes, lengths, metadata, tile size).
            ReplicaError: when the model fails on a tile; the message names the tile.
        """
        cfg = self.config
        # 1. Validate the batch before any model work.
        if not isinstance(batch, dict) or not {"tiles", "scene_id", "tile_index", "meta"} <= set(batch):
            raise ConfigError(
                "`batch` must be a dict with keys 'tiles', 'scene_id', 'tile_index' and 'meta' "
                f"(got {sorted(batch) if isinstance(batch, dict) else type(batch).__name__})"
            )
        tiles = np.asarray(batch["tiles"])
        if tiles.ndim != 4 or not np.issubdtype(tiles.dtype, np.number):
            raise ConfigError(
                f"batch['tiles'] has shape {tiles.shape} and dtype {tiles.dtype}: expected a "
                "numeric (N, P, h, w) array"
            )
        n, p, h, w = tiles.shape
        cfg.check_tile_shape(h, w)
        scene_ids = [str(s) for s in _as_list(batch["scene_id"], n, "scene_id")]
        indices = [normalise_tile_index(t) for t in _as_list(batch["tile_index"], n, "tile_index")]
        raw_meta = batch["meta"]
        metas_in = [raw_meta] * n if isinstance(raw_meta, (dict, SceneMeta)) else _as_list(raw_meta, n, "meta")
        parsed: dict[int, SceneMeta] = {}
        metas = []
        for m in metas_in:
            if id(m) not in parsed:
                parsed[id(m)] = SceneMeta.from_dict(m)
            metas.append(parsed[id(m)])
        for meta in set(metas):
            if len(meta.polarisations) != p:
                raise ConfigError(
                    f"batch['tiles'] has {p} polarisation planes but meta polarisations are "
                    f"{list(meta.polarisations)}: they must match one to one"
                )
            norm.channel_order(meta.polarisations)

        H, W = h * cfg.scale, w * cfg.scale
        output = np.full((n, p, H, W), np.nan, dtype=np.float32)
        prompts = [build_prompt(m, scale=cfg.scale, prefix=cfg.prompt_prefix) for m in metas]
        seeds = [derive_seed(s, t, cfg.seed) for s, t in zip(scene_ids, indices)]

        # 2. Normalise, fill no-data, map to RGB, resample to the output grid.
        jobs = []  # (tile number, rgb on the output grid, nodata mask of the input)
        for i in range(n):
            meta = metas[i]
            valid = np.isfinite(tiles[i])
            if not valid.any():
                continue  # nothing to translate: stays NaN
            x = norm.normalise(
                tiles[i], config=cfg.normalisation, units=meta.units, quantity=meta.quantity,
                polarisations=meta.polarisations, statistics=meta.statistics,
            )
            x = np.where(np.isfinite(x), x, 0.0)
            rgb = norm.to_rgb(x, meta.polarisations).astype(np.float32)
            jobs.append((i, self._resample(rgb, H, W), ~valid))

        # 3. Diffuse, micro-batch by micro-batch (tiles sharing prompt and strength).
        start = 0
        while start < len(jobs):
            i0 = jobs[start][0]
            key = (prompts[i0], metas[i0].is_simulated)
            group = [jobs[start]]
            while (
                len(group) < cfg.micro_batch
                and start + len(group) < len(jobs)
                and (prompts[jobs[start + len(group)][0]], metas[jobs[start + len(group)][0]].is_simulated) == key
            ):
                group.append(jobs[start + len(group)])
            start += len(group)
            try:
                rgb_out = self._diffuse(
                    np.stack([g[1] for g in group]), prompt=key[0],
                    strength=cfg.resolved_strength(simulated=key[1]),
                    seeds=[seeds[g[0]] for g in group],
                )
            except (ConfigError, ModelError):
                raise
            except Exception as e:
                names = ", ".join(f"({scene_ids[g[0]]!r}, {indices[g[0]]!r})" for g in group)
                raise ReplicaError(f"tile {names}: {type(e).__name__}: {e}") from e
            # 4. Back to polarisations and archive units; NaN under no-data input pixels.
            for (i, _, nodata), y in zip(group, rgb_out):
                meta = metas[i]
                planes = norm.from_rgb(y.astype(np.float64), meta.polarisations)
                if meta.units == "db" and cfg.normalisation.method == "amplitude":
                    planes = np.maximum(planes, _DB_FLOOR)
                values = norm.denormalise(
                    planes, config=cfg.normalisation, units=meta.units, quantity=meta.quantity,
                    polarisations=meta.polarisations, statistics=meta.statistics,
                )
                if nodata.any():
                    mask = nodata.repeat(cfg.scale, axis=1).repeat(cfg.scale, axis=2)
                    values[mask] = np.nan
                output[i] = values.astype(np.float32)

        out = dict(batch)
        out["output"] = output
        out["output_spacing_m"] = np.array(
            [np.asarray(m.pixel_spacing_m, dtype=np.float64) / cfg.scale
             if m.pixel_spacing_m is not None else np.full(2, np.nan) for m in metas],
            dtype=np.float64,
        ).reshape(n, 2)
        out["prompt"] = prompts
        out["seed"] = np.array(seeds, dtype=np.uint64)
        return out

    # -- internals --------------------------------------------------------------------------

    def _resample(self, rgb: np.ndarray, H: int, W: int) -> np.ndarray:
        """``(3, h, w)`` -> ``(3, H, W)`` in [0, 1] (pixel-area aligned, not corner aligned)."""
        torch = self._torch
        if rgb.shape[-2:] == (H, W):
            return rgb
        t = torch.from_numpy(np.ascontiguousarray(rgb))[None]
        mode = self.config.resample
        kwargs = {} if mode == "nearest" else {"align_corners": False}
        up = torch.nn.functional.interpolate(t, size=(H, W), mode=mode, **kwargs)
        return up[0].clamp_(0.0, 1.0).numpy()

    def _encode_prompt(self, prompt: str, guidance: bool) -> tuple[Any, ...]:
        """Prompt embeddings, computed once per prompt with a batch of one (batch-invariant)."""
        key = f"{guidance}|{prompt}"
        if key not in self._prompt_cache:
            if len(self._prompt_cache) >= _PROMPT_CACHE_SIZE:
                self._prompt_cache.pop(next(iter(self._prompt_cache)))
            with self._torch.inference_mode():
                self._prompt_cache[key] = self.pipe.encode_prompt(
                    prompt=prompt, device=self.pipe.device, num_images_per_prompt=1,
                    do_classifier_free_guidance=guidance,
                    negative_prompt=self.config.negative_prompt if guidance else None,
                )
        return self._prompt_cache[key]

    def _diffuse(self, rgb: np.ndarray, *, prompt: str, strength: float, seeds: list[int]) -> np.ndarray:
        """Run the pipeline on ``(B, 3, H, W)`` model-space images; return ``(B, 3, H, W)``."""
        torch = self._torch
        cfg = self.config
        device = self.pipe.device
        b = rgb.shape[0]
        guidance = cfg.resolved_guidance_scale > 1.0
        pe, npe, ppe, nppe = self._encode_prompt(prompt, guidance)

        def rep(t: Any) -> Any:
            return None if t is None else t.repeat(b, *([1] * (t.ndim - 1)))

        image = torch.from_numpy(rgb).to(device=device, dtype=self._dtype)
        generators = [torch.Generator(device=device.type).manual_seed(s) for s in seeds]
        with torch.inference_mode():
            result = self.pipe(
                prompt_embeds=rep(pe),
                negative_prompt_embeds=rep(npe) if guidance else None,
                pooled_prompt_embeds=rep(ppe),
                negative_pooled_prompt_embeds=rep(nppe) if guidance else None,
                image=image,
                control_image=image,
                height=rgb.shape[-2],
                width=rgb.shape[-1],
                strength=strength,
                num_inference_steps=cfg.steps,
                guidance_scale=cfg.resolved_guidance_scale,
                controlnet_conditioning_scale=cfg.resolved_controlnet_scale,
                generator=generators,
                output_type="pt",
            ).images
        return result.float().cpu().numpy()


__all__ = ["Replica", "ReplicaConfig"]
