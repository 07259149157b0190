"""The training loop: DeepSpeed ZeRO 1/2/3, EMA, checkpoints with exact resume, validation, export.

:func:`run_training` is what every process runs, whatever started it: ``torchrun``, the
``deepspeed`` launcher, Ray Train's ``TorchTrainer`` (which sets up the process group before
calling it), or a plain ``python`` (one process). The process group is taken from the
environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...) or from an existing one.

Exact resume
------------
The batch of step ``k`` on rank ``r`` is a pure function of ``(data.seed, k, r)`` (tile indices
``(k * world + r) * batch_size + j``), and so are its noise, timesteps and VAE posterior draws
(a ``torch.Generator`` seeded from ``(seed, k, r)``). A checkpoint holds the DeepSpeed engine
(weights, optimiser and learning-rate scheduler states, per rank), the EMA weights and the step.
Resuming from it therefore replays the same computation: the loss sequence of a resumed run is
the uninterrupted run's (tests check this bit for bit on CPU, for ZeRO-2 and ZeRO-3). The
learning-rate schedule (linear warm-up, then constant) does not depend on ``steps``, so a run
may be resumed with a larger ``steps``.

Memory beyond DeepSpeed's model states
--------------------------------------
Every rank keeps a float32 EMA of the trained parameters (4 bytes each, unpartitioned: under
ZeRO-3 it is updated from gathered parameters), and rank 0 keeps a float32 CPU copy of every
component to export into. For SDXL that is about 10 GB per GPU for a UNet EMA (set
``ema_decay: 0`` to drop it) and about 19 GB of host memory on rank 0.

Run folder (``output_dir``)
---------------------------
``checkpoints/step-XXXXXXXX/`` (DeepSpeed's layout + ``ema.safetensors``) and ``latest``;
``tensorboard/``; ``loss.jsonl`` (one line per step, rank 0); ``val/step-XXXXXXXX.png``
(validation grids); ``val-export/`` (EMA weights of the latest validation); ``export/`` (final
weights, diffusers layout, safetensors, loadable by :class:`sarray.models.replica.Replica`);
``loss.png`` (the loss curve); ``result.json`` (rank 0's summary of the last run).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from sarray.errors import ConfigError
from sarray.train.config import TrainConfig

logger = logging.getLogger(__name__)

# Where DeepSpeed JIT-builds its ops (CPU Adam for offload...) unless TORCH_EXTENSIONS_DIR is set:
# a stable per-user folder, so the 60-100 s build happens once per machine.
DEFAULT_EXTENSIONS_DIR = Path.home() / ".cache" / "sarray" / "torch_extensions"
_CKPT_DIR = "checkpoints"
_TAG_FMT = "step-{:08d}"


def prepare_environment() -> None:
    """Environment DeepSpeed reads at import: CPU accelerator without CUDA, extension cache,
    and single-process rendezvous defaults when no launcher set them."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(DEFAULT_EXTENSIONS_DIR))
    if "RANK" not in os.environ and not _dist_ready():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                           "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(port)})


def _dist_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _step_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> ``bf16`` on a CUDA device that supports it, else ``fp32``."""
    import torch

    if precision != "auto":
        return precision
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def deepspeed_config(config: TrainConfig, *, precision: str, client_optimizer: bool) -> dict[str, Any]:
    """The DeepSpeed JSON config of ``config``."""
    zero: dict[str, Any] = {"stage": config.zero_stage}
    if config.offload in ("optimizer", "optimizer+params"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if config.offload == "optimizer+params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": False}
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": config.batch_size,
        "gradient_accumulation_steps": 1,
        "zero_optimization": zero,
        "scheduler": {"type": "WarmupLR", "params": {
            "warmup_min_lr": 0.0 if config.warmup_steps else config.learning_rate,
            "warmup_max_lr": config.learning_rate,
            "warmup_num_steps": max(config.warmup_steps, 1), "warmup_type": "linear"}},
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "initial_scale_power": 16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if config.grad_clip > 0:
        ds["gradient_clipping"] = config.grad_clip
    if not client_optimizer:
        ds["optimizer"] = {"type": "AdamW", "params": {
            "lr": config.learning_rate, "weight_decay": config.weight_decay,
            "betas": [0.9, 0.999], "eps": 1e-8}}
    return ds


def load_components(config: TrainConfig) -> dict[str, Any]:
    """The pipeline components to start from (``config.model``), on CPU, float32."""
    from sarray.models import components as comp
    from sarray.models.loading import load_pipeline
    from sarray.models.presets import get_preset
    from sarray.models.resolve import resolve_model

    spec = resolve_model(config.model)
    preset = get_preset(spec["preset"])
    if spec["weights"] is None:
        models = comp.build_models(preset, seed=config.seed, live_controlnet=False)
        models["tokenizer"] = comp.build_tiny_tokenizer(preset.text_encoder.max_position_embeddings)
        models["tokenizer_2"] = comp.build_tiny_tokenizer(preset.text_encoder_2.max_position_embeddings)
    else:
        pipe = load_pipeline(spec["weights"], controlnet_weights=spec["controlnet_weights"])
        models = {name: getattr(pipe, name) for name in (
            "unet", "controlnet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")}
    models["preset"] = preset
    return models


class EMA:
    """Exponential moving average of named parameters, in float32, full (unpartitioned) copies.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
    averages are not dominated by the initial weights.
    """

    def __init__(self, named: dict[str, Any], decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().float().clone() for k, v in named.items()}

    def update(self, named: dict[str, Any]) -> None:
        import torch

        self.updates += 1
        d = 0.0 if self.decay == 0 else min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for k, v in named.items():
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1.0 - d)

    def state(self) -> dict[str, Any]:
        import torch

        return {**{k: v.contiguous() for k, v in self.shadow.items()},
                "__updates__": torch.tensor([self.updates], dtype=torch.int64)}

    def load(self, state: dict[str, Any]) -> None:
        self.updates = int(state.pop("__updates__")[0])
        missing = set(self.shadow) - set(state)
        if missing:
            raise ConfigError(f"EMA checkpoint lacks {sorted(missing)[:3]}...: it is from another run")
        self.shadow = {k: state[k].float().clone() for k in self.shadow}


@contextlib.contextmanager
def gathered(params: list[Any], zero_stage: int) -> Iterator[None]:
    """Full parameter values inside the block (ZeRO-3 gathers; a collective on every rank)."""
    if zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            yield
    else:
        yield


class Trainer:
    """One process's share of a training run. Use :func:`run_training`."""

    def __init__(self, config: TrainConfig) -> None:
        prepare_environment()
        import deepspeed
        import torch
        import torch.distributed as dist

        from sarray.train.modules import Autoencoder, Denoiser, add_lora
        from sarray.train.pairs import PairSampler

        self.config = config
        self.torch = torch
        # 1. Process group (gloo on CPU, nccl on GPUs); an existing one (Ray Train) is reused.
        self.device = (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
                       if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda"):
            torch.cuda.set_device(self.device)
        if not _dist_ready():
            deepspeed.init_distributed(
                dist_backend="nccl" if self.device.startswith("cuda") else "gloo",
                auto_mpi_discovery=False, verbose=False)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if self.device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            # Split the cores between the processes of this machine (OMP_NUM_THREADS wins:
            # on a shared machine, 1 thread avoids OpenMP spin-waiting against other work).
            local = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(local, 1)))
        self.precision = resolve_precision(config.precision, self.device)
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
        self.run_dir = config.run_dir
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
        dist.barrier()

        # 2. Data: one sampler per split, the same on every rank.
        self.train_pairs = PairSampler(config.data, "train")
        try:
            self.val_pairs: PairSampler | None = PairSampler(config.data, "val")
        except ConfigError as e:
            logger.warning("no validation split: %s", e)
            self.val_pairs = None

        # 3. Models: what trains, what stays frozen.
        models = load_components(config)
        self.preset = models.pop("preset")
        self.tokenizers = (models.pop("tokenizer"), models.pop("tokenizer_2"))
        for m in models.values():
            m.requires_grad_(False)
        lora = config.text_encoder_lora_rank
        if lora:
            add_lora(models["text_encoder"], lora, seed=config.seed)
            add_lora(models["text_encoder_2"], lora, seed=config.seed + 1)
        if config.train == "vae":
            models["vae"].requires_grad_(True)
            trainee: Any = Autoencoder(models["vae"])
            self.vae = None
        else:
            if config.train in ("unet", "both"):
                models["unet"].requires_grad_(True)
            if config.train in ("controlnet", "both"):
                models["controlnet"].requires_grad_(True)
            trainee = Denoiser(unet=models["unet"], controlnet=models["controlnet"],
                               text_encoder=models["text_encoder"],
                               text_encoder_2=models["text_encoder_2"], train_text=bool(lora))
            self.vae = models["vae"].to(self.device).eval()
        if config.gradient_checkpointing:
            for name in ("unet", "controlnet", "vae"):
                if any(p.requires_grad for p in models[name].parameters()):
                    models[name].enable_gradient_checkpointing()
            if lora:
                models["text_encoder"].gradient_checkpointing_enable()
                models["text_encoder_2"].gradient_checkpointing_enable()
        # Rank 0 keeps a full float32 copy of every component to export into.
        self.reference = copy.deepcopy(models) if self.rank == 0 else None
        self.trainable = {n: p for n, p in trainee.named_parameters() if p.requires_grad}
        if not self.trainable:
            raise ConfigError(f"`train` ({config.train!r}) leaves no parameter to train")
        self.ema = EMA(self.trainable, config.ema_decay)

        # 4. DeepSpeed engine. A plain torch AdamW unless offloading (DeepSpeed's CPU Adam).
        client_opt = config.offload == "none"
        optimizer = (torch.optim.AdamW(list(self.trainable.values()), lr=config.learning_rate,
                                       weight_decay=config.weight_decay)
                     if client_opt else None)
        self.engine, _, _, self.lr_scheduler = deepspeed.initialize(
            model=trainee, model_parameters=list(self.trainable.values()), optimizer=optimizer,
            config=deepspeed_config(config, precision=self.precision, client_optimizer=client_opt),
        )
        from diffusers import DDPMScheduler

        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=self.preset.scheduler.num_train_timesteps,
            beta_start=self.preset.scheduler.beta_start, beta_end=self.preset.scheduler.beta_end,
            beta_schedule=self.preset.scheduler.beta_schedule, prediction_type="epsilon")
        self.step = 0
        self.writer: Any = None

    # -- data -------------------------------------------------------------------------------

    def batch(self, sampler: Any, indices: list[int]) -> dict[str, Any]:
        """Model-space tensors of the pairs ``indices``."""
        torch = self.torch
        from sarray.train.modules import tokenize
        from sarray.train.pairs import to_model_space

        targets, conds, prompts, pairs = [], [], [], []
        for i in indices:
            pair = sampler.sample(i)
            t, c = to_model_space(pair, self.config.data.normalisation)
            targets.append(t)
            conds.append(c)
            prompts.append(pair["prompt"])
            pairs.append(pair)
        x = torch.from_numpy(np.stack(targets))
        coarse = torch.from_numpy(np.stack(conds))
        # The ControlNet condition: the coarse tile on the fine grid, as the replica resamples it.
        c = torch.nn.functional.interpolate(coarse, size=x.shape[-2:], mode="bilinear",
                                            align_corners=False).clamp_(0.0, 1.0)
        T = x.shape[-1]
        return {
            "target": x.to(self.device), "control": c.to(self.device), "prompts": prompts,
            "coarse": coarse.to(self.device),
            "ids_1": tokenize(self.tokenizers[0], prompts).to(self.device),
            "ids_2": tokenize(self.tokenizers[1], prompts).to(self.device),
            "time_ids": torch.tensor([[T, T, 0, 0, T, T]] * len(indices), dtype=torch.float32,
                                     device=self.device),
            "pairs": pairs,
        }

    def loss(self, b: dict[str, Any], generator: Any) -> Any:
        """The loss of a batch: noise-prediction MSE, or reconstruction + KL for the VAE."""
        torch = self.torch
        x = b["target"] * 2.0 - 1.0
        if self.config.train == "vae":
            lat = self.preset.vae.downsample_factor
            noise = torch.randn((x.shape[0], 4, x.shape[2] // lat, x.shape[3] // lat),
                                generator=generator).to(self.device, self.dtype)
            recon, kl = self.engine(x.to(self.dtype), noise)
            recon = recon.float()
            loss = torch.nn.functional.mse_loss(recon, x) + self.config.vae_kl_weight * kl.float().mean()
            if self.config.vae_texture_weight:
                loss = loss + self.config.vae_texture_weight * (
                    block_std(recon, 4) - block_std(x, 4)).abs().mean()
            return loss
        with torch.no_grad():
            posterior = self.vae.encode(x).latent_dist
            eps = torch.randn(posterior.mean.shape, generator=generator).to(self.device)
            latents = (posterior.mean + posterior.std * eps) * self.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator).to(self.device)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                          generator=generator).to(self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        pred = self.engine(noisy.to(self.dtype), t, b["ids_1"], b["ids_2"], b["time_ids"],
                           b["control"].to(self.dtype))
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        if self.config.consistency_weight:
            loss = loss + self.config.consistency_weight * consistency_term(
                self.vae, self.noise_scheduler.alphas_cumprod.to(self.device), noisy, pred, t,
                b["coarse"], dtype=self.dtype)
        return loss

    # -- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Engine (all ranks) + EMA (rank 0) under ``checkpoints/step-XXXXXXXX``."""
        from safetensors.torch import save_file

        root = self.run_dir / _CKPT_DIR
        tag = _TAG_FMT.format(self.step)
        self.engine.save_checkpoint(str(root), tag=tag, client_state={"step": self.step})
        if self.rank == 0:
            save_file(self.ema.state(), str(root / tag / "ema.safetensors"))
        self.torch.distributed.barrier()
        return root / tag

    def maybe_resume(self) -> bool:
        """Load the newest checkpoint of the run folder, if any; True when resumed.

        DeepSpeed checkpoints are torch pickles: they are only ever read from this run's own
        output folder (written by this job). Model weights, the only thing read from paths a
        user hands over, load as safetensors only (:mod:`sarray.models.loading`).
        """
        from safetensors.torch import load_file

        root = self.run_dir / _CKPT_DIR
        if not self.config.resume or not (root / "latest").is_file():
            return False
        tag = (root / "latest").read_text().strip()
        path, client = self.engine.load_checkpoint(str(root), tag=tag)
        if path is None:
            raise ConfigError(f"checkpoint {root / tag} could not be loaded: delete it or set resume: false")
        self.step = int(client["step"])
        self.ema.load(load_file(str(root / tag / "ema.safetensors")))
        logger.info("resumed from %s at step %d", root / tag, self.step)
        return True

    # -- export and validation --------------------------------------------------------------

    def export(self, out: Path) -> Path:
        """Rank 0: the EMA weights in the replica's layout (diffusers, safetensors)."""
        from sarray.models.components import build_pipeline, build_scheduler
        from sarray.models.loading import save_pipeline
        from sarray.train.modules import merge_lora

        torch = self.torch
        assert self.reference is not None
        models = copy.deepcopy(self.reference)
        with torch.no_grad():
            for name, value in self.ema.shadow.items():
                if ".lora_" in name:
                    continue
                component, _, rest = name.partition(".")
                param = models[component].get_parameter(rest)
                param.copy_(value.to(param.dtype))
        for enc in ("text_encoder", "text_encoder_2"):
            merge_lora(models[enc], {k: v for k, v in self.ema.shadow.items() if k.startswith(enc + ".")},
                       prefix=enc + ".")
        pipe = build_pipeline({**models, "tokenizer": self.tokenizers[0],
                               "tokenizer_2": self.tokenizers[1],
                               "scheduler": build_scheduler(self.preset)})
        save_pipeline(pipe, out)
        (out / "sarray_training.json").write_text(json.dumps(
            {"step": self.step, "ema_decay": self.config.ema_decay, "config": self.config.to_dict()},
            indent=1))
        return out

    def validate(self) -> dict[str, float]:
        """Validation loss (all ranks) and, on rank 0, an image grid from the exported EMA."""
        torch = self.torch
        if self.val_pairs is None:
            return {}
        n = self.config.val_tiles
        b = self.batch(self.val_pairs, list(range(n)))
        self.engine.eval()
        with torch.no_grad():
            loss = float(self.loss(b, torch.Generator().manual_seed(_step_seed(self.config.seed, 99))))
        self.engine.train()
        out = {"val/loss": loss}
        if self.rank == 0:
            weights = self.export(self.run_dir / "val-export")
            if self.config.train != "vae":
                png = self.run_dir / "val" / f"{_TAG_FMT.format(self.step)}.png"
                grid = write_validation_grid(weights, b["pairs"], png, scale=self.config.data.degradation.scale,
                                             preset=self.preset.name, title=f"step {self.step}")
                if self.writer is not None:
                    self.writer.add_image("val/grid", grid, self.step, dataformats="HWC")
        self.torch.distributed.barrier()
        return out

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        torch = self.torch
        cfg = self.config
        # 1. Resume, logs.
        resumed = self.maybe_resume()
        log_path = self.run_dir / "loss.jsonl"
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            kept = []
            if resumed and log_path.is_file():
                kept = [line for line in log_path.read_text().splitlines()
                        if line and json.loads(line)["step"] < self.step]
            log_path.write_text("".join(line + "\n" for line in kept))
        losses: list[float] = []
        self.engine.train()
        t0 = time.perf_counter()
        # 2. Steps.
        while self.step < cfg.steps:
            k = self.step
            base = (k * self.world + self.rank) * cfg.batch_size
            b = self.batch(self.train_pairs, list(range(base, base + cfg.batch_size)))
            generator = torch.Generator().manual_seed(_step_seed(cfg.seed, k, self.rank))
            loss = self.loss(b, generator)
            self.engine.backward(loss)
            self.engine.step()
            with gathered(list(self.trainable.values()), cfg.zero_stage):
                self.ema.update(self.trainable)
            mean = loss.detach().float().clone()
            torch.distributed.all_reduce(mean)
            value = float(mean) / self.world
            losses.append(value)
            self.step = k + 1
            if self.rank == 0:
                lr = float(self.lr_scheduler.get_last_lr()[0]) if self.lr_scheduler else cfg.learning_rate
                with log_path.open("a") as f:
                    f.write(json.dumps({"step": k, "loss": value, "lr": lr,
                                        "time_s": round(time.perf_counter() - t0, 3)}) + "\n")
                if self.step % cfg.log_every == 0:
                    self.writer.add_scalar("train/loss", value, self.step)
                    self.writer.add_scalar("train/lr", lr, self.step)
            # 3. Periodic checkpoint and validation.
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            if cfg.validate_every and self.step % cfg.validate_every == 0 and self.step < cfg.steps:
                for key, v in self.validate().items():
                    if self.rank == 0:
                        self.writer.add_scalar(key, v, self.step)
        # 4. Final checkpoint, validation, export, loss curve.
        if not (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or not losses:
            self.save_checkpoint()
        val = self.validate()
        result: dict[str, Any] = {"step": self.step, "losses": losses, "resumed": resumed, **val,
                                  "world_size": self.world, "zero_stage": cfg.zero_stage,
                                  "precision": self.precision}
        if self.rank == 0:
            for key, v in val.items():
                self.writer.add_scalar(key, v, self.step)
            result["export"] = str(self.export(self.run_dir / "export"))
            plot_loss_curve(log_path, self.run_dir / "loss.png")
            self.writer.close()
            summary = {k: v for k, v in result.items() if k != "losses"}
            summary["first_loss"], summary["last_loss"] = (losses[0], losses[-1]) if losses else (None, None)
            (self.run_dir / "result.json").write_text(json.dumps(summary, indent=1))
        torch.distributed.barrier()
        return result


def consistency_term(vae: Any, alphas_cumprod: Any, noisy: Any, pred: Any, t: Any, coarse: Any, *,
                     dtype: Any = None) -> Any:
    """Multilook consistency of the denoised estimate (``TrainConfig.consistency_weight``).

    The clean latent implied by the noise prediction, ``(noisy - sqrt(1 - a) pred) / sqrt(a)``,
    is decoded; the squared distance between its ``scale`` x ``scale`` box average and the
    coarse condition (both in model space, [0, 1]) is weighted by each sample's signal share
    ``a`` (alphas_cumprod at its timestep), so near-clean estimates count and pure-noise ones
    do not. Gradients reach the prediction through the frozen decoder.
    """
    import torch

    alpha = alphas_cumprod[t].float().view(-1, 1, 1, 1)
    x0 = (noisy.float() - (1 - alpha).sqrt() * pred.float()) / alpha.sqrt()
    latents = x0 / vae.config.scaling_factor
    image = vae.decode(latents.to(dtype) if dtype is not None else latents).sample.float()
    looked = torch.nn.functional.avg_pool2d((image.clamp(-1, 1) + 1) / 2,
                                            image.shape[-1] // coarse.shape[-1])
    per_sample = ((looked - coarse.float()) ** 2).mean(dim=(1, 2, 3))
    return (alpha.view(-1) * per_sample).mean()


def block_std(images: Any, block: int) -> Any:
    """Standard deviation of every ``block`` x ``block`` block of ``(B, C, H, W)`` images."""
    b, c, h, w = images.shape
    x = images[..., : h // block * block, : w // block * block]
    x = x.reshape(b, c, h // block, block, w // block, block)
    return x.std(dim=(3, 5))


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Train (or resume) the run described by ``config``; every process of the job calls this.

    Returns:
        ``{"step", "losses" (this process's run, averaged over ranks), "resumed", "val/loss",
        "export" (rank 0: the final weights folder), "world_size", "zero_stage", "precision"}``.
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"`config` ({type(config).__name__}) must be a TrainConfig")
    return Trainer(config).run()


def write_validation_grid(weights: Path, pairs: list[dict[str, Any]], png: Path, *, scale: int,
                          preset: str, title: str = "") -> np.ndarray:
    """Translate the conditions of ``pairs`` with the replica (and the consistency step) and
    write condition | output | target in dB, one row per tile. Returns the RGB image (H, W, 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sarray.archive.radiometry import to_db
    from sarray.models.replica import Replica, ReplicaConfig
    from sarray.stitch.consistency import apply_consistency

    replica = Replica(ReplicaConfig(preset=preset, weights=str(weights), scale=scale))
    fig, axes = plt.subplots(len(pairs), 3, figsize=(7.5, 2.5 * len(pairs)), squeeze=False)
    for row, pair in enumerate(pairs):
        meta = pair["meta"]
        out = replica.translate_tile(pair["condition"], scene_id=pair["scene_id"],
                                     tile_index=row, meta=meta)
        out = apply_consistency(out, pair["condition"], scale=scale, units=meta["units"],
                                quantity=meta["quantity"])
        db = [np.asarray(to_db(a[0].astype(np.float64), units=meta["units"], quantity=meta["quantity"]))
              for a in (pair["condition"], out, pair["target"])]
        finite = db[2][np.isfinite(db[2])]
        lo, hi = np.percentile(finite, [2, 98]) if finite.size else (0, 1)
        for col, (img, name) in enumerate(zip(db, ("condition (coarse)", "model + consistency", "target"))):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
        axes[row, 0].set_ylabel(pair["scene_id"][:22], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    fig.canvas.draw()
    grid = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return grid


def plot_loss_curve(log_path: Path, png: Path, *, window: int = 25) -> Path:
    """The loss curve of ``loss.jsonl`` (raw and a running mean) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line]
    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss, lw=0.5, alpha=0.4, label="loss")
    if len(loss) >= window:
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, lw=1.5, label=f"running mean ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
