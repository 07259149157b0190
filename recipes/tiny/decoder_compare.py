"""Which decoder for the tiny preset: the 8x autoencoder it ships, or a 4x one? Measured.

Both autoencoders have the tiny preset's channels and layers (8x: levels (8, 8, 16, 16); 4x: the
same without the last level), start from the same seed and train with the same budget and loss
as stage 1 (``stage1-vae.yaml``: MSE + KL + the 4 x 4 local-texture term, AdamW) on the same
reflectivity targets of the training split. Each then encodes and decodes the held-out tiles
(``DEFAULT_VAL_SCENES``, never trained on), and the reconstructions are measured in model space
([0, 1], the space the network works in):

- RMS error against the target;
- the texture kept: the mean standard deviation of 4 x 4 and 8 x 8 blocks of the reconstruction
  over the target's (1: all the local contrast kept; an 8x latent cell covers 8 x 8 pixels with
  4 numbers, so it tends to return the block mean);
- periodic spectral peaks at 2, 4 and 8 px (dB over the neighbouring frequencies): the latent
  grid stamped onto the output;
- the share of pixels clamped at the bottom of the range (the dot grid of the first tiny model);
- encode + decode time per 128 px tile on this machine, and the latent size the UNet then works
  on (4x the cells for the 4x decoder, hence about 4x the UNet's work per tile).

Run:
    sarray train prepare-data --data ../shared/data --archive /tmp/sarray-train/real.zarr
    python recipes/tiny/decoder_compare.py --archive /tmp/sarray-train/real.zarr --out recipes/tiny/decoder
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

LEVELS = {"8x": (8, 8, 16, 16), "4x": (8, 8, 16)}


def model_space_batch(sampler, indices: list[int]) -> np.ndarray:
    from sarray.train.pairs import to_model_space

    return np.stack([to_model_space(sampler.sample(i), sampler.config.normalisation)[0] for i in indices])


def train_autoencoder(levels: tuple[int, ...], sampler, *, steps: int, batch: int, seed: int) -> tuple:
    """An AutoencoderKL of the tiny preset's kind, trained as stage 1 trains it."""
    import torch
    from diffusers import AutoencoderKL

    from sarray.models.presets import TINY, VAESpec
    from sarray.train.loop import block_std

    spec = VAESpec(**{**TINY.vae.__dict__, "block_out_channels": levels})
    torch.manual_seed(seed)
    vae = AutoencoderKL(**spec.diffusers_kwargs())
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        lr = 1e-3 * min(1.0, (step + 1) / 20)
        for g in opt.param_groups:
            g["lr"] = lr
        x = torch.from_numpy(model_space_batch(sampler, list(rng.integers(0, 1_000_000, batch)))) * 2 - 1
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        loss = (torch.nn.functional.mse_loss(recon, x) + 1e-6 * post.kl().mean()
                + (block_std(recon, 4) - block_std(x, 4)).abs().mean())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        losses.append(float(loss))
    return vae.eval(), losses, time.perf_counter() - t0


def block_contrast(img: np.ndarray, block: int) -> float:
    h, w = (img.shape[-2] // block) * block, (img.shape[-1] // block) * block
    b = img[..., :h, :w].reshape(*img.shape[:-2], h // block, block, w // block, block)
    return float(b.std(axis=(-3, -1)).mean())


def measure(vae, tiles: np.ndarray) -> dict[str, float]:
    import torch

    from sarray.evaluate.metrics import periodic_peaks_db

    x = torch.from_numpy(tiles) * 2 - 1
    t0 = time.perf_counter()
    with torch.no_grad():
        lat = vae.encode(x).latent_dist.mean
        recon = ((vae.decode(lat).sample.clamp(-1, 1) + 1) / 2).numpy()
    per_tile_s = (time.perf_counter() - t0) / len(tiles)
    plane = recon[:, 0]
    truth = tiles[:, 0]
    peaks = [periodic_peaks_db(p) for p in plane]
    return {
        "rms_error": float(np.sqrt(np.mean((recon - tiles) ** 2))),
        "texture_kept_4px": block_contrast(plane, 4) / block_contrast(truth, 4),
        "texture_kept_8px": block_contrast(plane, 8) / block_contrast(truth, 8),
        **{k: float(np.mean([p[k] for p in peaks])) for k in peaks[0]},
        "truth_peak_4px_db": float(np.mean([periodic_peaks_db(t)["peak_4px_db"] for t in truth])),
        "clamped_share": float(np.mean(plane <= 1e-3)),
        "encode_decode_s_per_tile": per_tile_s,
        "latent_cells_per_tile": int(np.prod(lat.shape[-2:])),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", required=True)
    p.add_argument("--out", type=Path, default=Path("recipes/tiny/decoder"))
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--val-tiles", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    from sarray.train.degrade import DegradationConfig
    from sarray.train.pairs import PairConfig, PairSampler
    from sarray.train.sources import DEFAULT_VAL_SCENES

    torch.set_num_threads(1)
    cfg = PairConfig(archive=args.archive, tile_px=128, val_scenes=tuple(DEFAULT_VAL_SCENES),
                     degradation=DegradationConfig(scale=4, lowpass="multilook"),
                     target="reflectivity", seed=args.seed)
    train, val = PairSampler(cfg, "train"), PairSampler(cfg, "val")
    tiles = model_space_batch(val, list(range(args.val_tiles)))
    results = {}
    for name, levels in LEVELS.items():
        vae, losses, train_s = train_autoencoder(levels, train, steps=args.steps, batch=args.batch, seed=args.seed)
        results[name] = {"levels": list(levels), "train_s": round(train_s, 1),
                         "loss_first_last_50": [float(np.mean(losses[:50])), float(np.mean(losses[-50:]))],
                         **measure(vae, tiles)}
        print(name, json.dumps(results[name]), file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"steps": args.steps, "batch": args.batch, "val_tiles": args.val_tiles,
           "val_scenes": sorted(DEFAULT_VAL_SCENES), "results": results}
    (args.out / "decoder_compare.json").write_text(json.dumps(doc, indent=1) + "\n")
    keys = ["rms_error", "texture_kept_4px", "texture_kept_8px", "peak_2px_db", "peak_4px_db",
            "peak_8px_db", "clamped_share", "encode_decode_s_per_tile", "latent_cells_per_tile"]
    lines = ["| decoder | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.4g}" for k in keys) + " |")
    (args.out / "decoder_compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
