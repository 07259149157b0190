"""``sarray evaluate``: held-out high-resolution tiles -> degrade -> translate -> compare.

For each held-out tile (the validation split of the pair configuration: whole scenes the model
never trained on), the same coarse input is turned into a fine tile by

- ``model``: what ``sarray translate`` does to a chunk: the replica's reflectivity, times the
  speckle stored with the model (``output: speckled``, the default;
  :mod:`sarray.stitch.speckle`), then the smooth consistency step
  (:func:`sarray.stitch.consistency.apply_consistency`, ``consistency: true``) so that the
  output multilooks back onto the input;
- ``bicubic`` and ``lanczos``: upsampling of intensity;
- ``speckle``: bicubic intensity times independent draws of the training split's fine-to-coarse
  intensity ratios;
- ``speckle_nz``: the same with zero ratios left out of the distribution (a stronger variant:
  8-bit training products quantise dark speckle to 0, which the held-out scenes may not do);

and each is compared with the truth (:mod:`sarray.evaluate.metrics`): spectrum and histogram
distances, consistency, and the artefacts a user sees (block-edge ratio across the input grid,
periodic spectral peaks at 2, 4 and 8 px, floor-clamped pixels, ENL and CV on homogeneous areas,
lag-1 autocorrelation). The truth's own values are reported as the reference row. Where the truth
is an integer DN product (8-bit Umbra: a fifth of its pixels are clipped to 0), every method's
output is rounded to whole DN first, as that product would record it. Outputs: ``metrics.json`` (per tile and means),
``metrics.md`` (the table) and ``evaluate.png`` (example tiles and mean spectra).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sarray.archive.radiometry import to_intensity
from sarray.errors import ConfigError
from sarray.evaluate import baselines as bl
from sarray.evaluate import metrics as m
from sarray.train.pairs import PairConfig

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("bicubic", "lanczos", "speckle", "speckle_nz", "model")
#: Homogeneous windows: edge in coarse pixels, and the fraction of most uniform windows kept.
HOMOGENEOUS_WINDOW_COARSE_PX = 4
HOMOGENEOUS_FRACTION = 0.25


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """What to evaluate, on which held-out tiles.

    Args:
        data: pair configuration; its ``val`` split (by scene) gives the held-out tiles and its
            ``train`` split the ratio distribution of the speckle baseline.
        model: ``tiny``, ``tiny-random``, ``sdxl`` or a weights folder.
        output_dir: where the table, JSON and PNG go.
        tiles: held-out tiles to evaluate.
        ratio_tiles: training tiles the ratio distribution is estimated from.
        consistency: apply the radiometric consistency step to the model output.
        output: ``speckled`` (reflectivity times the model's speckle statistics) or
            ``reflectivity``.
        speckle: the statistics set (see ``sarray translate --speckle``); ``auto``: the one of
            each held-out tile's sensor where the model stores it, else the default.
        seed: seed of the speckle baseline's draws and of the replica.
        num_inference_steps: sampler steps of the replica (None: the preset default).
    """

    data: PairConfig
    model: str = "tiny"
    output_dir: str = "out/evaluate"
    tiles: int = 32
    ratio_tiles: int = 64
    consistency: bool = True
    output: str = "speckled"
    speckle: str | None = "auto"
    seed: int = 0
    num_inference_steps: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, PairConfig):
            raise ConfigError(f"`data` ({type(self.data).__name__}) must be a PairConfig")
        from sarray.stitch.speckle import OUTPUTS

        if self.output not in OUTPUTS:
            raise ConfigError(f"`output` ({self.output!r}) must be one of {OUTPUTS}")
        for name in ("tiles", "ratio_tiles"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"`{name}` ({v!r}) must be a positive integer")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluateConfig:
        d = dict(data)
        if isinstance(d.get("data"), dict):
            d["data"] = PairConfig.from_dict(d["data"])
        return cls(**d)


def tile_metrics(pred_i: np.ndarray, truth_i: np.ndarray, input_i: np.ndarray, *, scale: int,
                 floor: float, mask: np.ndarray, written: np.ndarray | None = None,
                 zero_is_recorded: bool = False) -> dict[str, float]:
    """Every measure of one method on one single-plane tile (intensities); ``written`` is the
    method's output before it was rounded to the truth's DN (None: not rounded);
    ``zero_is_recorded``: the truth is an integer DN product with a floor of 0 DN."""
    pd, td = m.to_db_floored(pred_i, floor), m.to_db_floored(truth_i, floor)
    return {
        "psnr_db": m.psnr(pd, td),
        "ssim_db": m.ssim(pd, td),
        "spectrum_distance": m.spectrum_distance(pd, td),
        "histogram_w1_db": m.histogram_distance(pd, td),
        # The same above the product's floor: pixels at 0 left out of both (an 8-bit product
        # clipping part of its scene to 0 DN; equal to the above where neither has zeros).
        "histogram_w1_above_floor_db": m.histogram_distance(np.where(pred_i > 0, pd, np.nan),
                                                            np.where(truth_i > 0, td, np.nan)),
        **image_statistics(pred_i, input_i, scale=scale, floor=floor, mask=mask, written=written,
                           zero_is_recorded=zero_is_recorded),
    }


def image_statistics(img_i: np.ndarray, input_i: np.ndarray, *, scale: int, floor: float,
                     mask: np.ndarray, written: np.ndarray | None = None,
                     zero_is_recorded: bool = False) -> dict[str, float]:
    """The measures of one image on its own (no truth needed): the truth's are the reference.

    ``floor_share`` is measured on the image as its generator wrote it (``written``, before any
    rounding to whole DN): a floor the generator clamps to. On an integer DN product
    (``zero_is_recorded``) a pixel written as exactly 0 is the product's own floor, not a clamp:
    ``zero_share``, the share of zeros in the image as measured, counts those, to be read against
    the truth's (23% of the held-out Umbra truth is 0 DN).
    """
    enl, cv = m.speckle_statistics(img_i, mask, HOMOGENEOUS_WINDOW_COARSE_PX * scale)
    return {
        "enl": enl,
        "cv": cv,
        "consistency_rms_db": m.consistency_rms_db(img_i, input_i, scale),
        "block_edge_ratio": m.block_edge_ratio(img_i, scale),
        **m.periodic_peaks_db(m.to_db_floored(img_i, floor)),
        "floor_share": m.floor_share(img_i if written is None else written,
                                     zero_is_recorded=zero_is_recorded),
        "zero_share": float(np.mean(img_i[np.isfinite(img_i)] == 0)),
        "lag1": m.lag1_autocorrelation(img_i),
    }


def evaluate(config: EvaluateConfig, *, progress: bool = False) -> dict[str, Any]:
    """Run the evaluation; write ``metrics.json``, ``metrics.md`` and ``evaluate.png``.

    Returns:
        ``{"config", "means": {method: {measure: mean}}, "truth": {"enl", "cv"}, "tiles":
        [per-tile results], "scenes", "ratio_distribution_samples", "files"}``.
    """
    from sarray.models.replica import Replica, ReplicaConfig
    from sarray.models.resolve import resolve_model
    from sarray.stitch.speckle import load_speckle, speckle_name, synthesise
    from sarray.train.pairs import PairSampler

    scale = config.data.degradation.scale
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # 1. Held-out tiles, the ratio distribution, the replica.
    val = PairSampler(config.data, "val")
    train = PairSampler(config.data, "train")
    ratios = bl.ratio_distribution(train, tiles=config.ratio_tiles)
    ratios_nz = bl.ratio_distribution(train, tiles=config.ratio_tiles, positive_only=True)
    resolved = resolve_model(config.model)
    replica = Replica(ReplicaConfig(**resolved, scale=scale, seed=config.seed,
                                    num_inference_steps=config.num_inference_steps))
    loaded: dict[str | None, Any] = {}

    def speckle_for(sensor: str | None) -> Any:
        """The statistics a tile of ``sensor`` is speckled with (read once per set), chosen as
        ``sarray translate`` chooses them."""
        if config.output != "speckled":
            return None
        name = speckle_name(resolved.get("weights"), config.speckle, sensor)
        if name not in loaded:
            loaded[name] = load_speckle(resolved.get("weights"), name)
        return loaded[name]
    rng = np.random.default_rng([config.seed, 4242])
    rows: list[dict[str, Any]] = []
    examples: list[dict[str, np.ndarray]] = []
    spectra: dict[str, list[np.ndarray]] = {k: [] for k in (*METHODS, "truth")}
    t0 = time.perf_counter()
    iterator: Any = range(config.tiles)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="evaluate", unit="tile")
    for i in iterator:
        pair = val.sample(i)
        meta = pair["meta"]
        units, quantity = meta["units"], meta["quantity"]
        # 2. Translate with the model (+ consistency) and the baselines.
        out = replica.translate_tile(pair["condition"], scene_id=pair["scene_id"], tile_index=i, meta=meta)
        out = synthesise(out, (0, out.shape[1], 0, out.shape[2]), scale=scale, units=units,
                         quantity=quantity, speckle=speckle_for(meta.get("sensor")), seed=config.seed,
                         scene=f"{pair['scene_id']}#{i}",
                         source=pair["condition"] if config.consistency else None)
        truth_i = to_intensity(pair["target"].astype(np.float64), units=units, quantity=quantity)
        finite = pair["target"][np.isfinite(pair["target"])]
        quantised = units == "dn" and bool(np.array_equal(finite, np.round(finite)))
        input_i = to_intensity(pair["condition"].astype(np.float64), units=units, quantity=quantity)
        model_i = to_intensity(out.astype(np.float64), units=units, quantity=quantity)
        # 3. Measure each polarisation plane against the truth.
        for p, pol in enumerate(pair["pols"]):
            floor = m.DB_FLOOR_REL * float(np.nanmean(truth_i[p]))
            preds = {
                "bicubic": bl.bicubic(input_i[p], scale),
                "lanczos": bl.lanczos(input_i[p], scale),
                "speckle": bl.speckle_baseline(input_i[p], scale, ratios, rng),
                "speckle_nz": bl.speckle_baseline(input_i[p], scale, ratios_nz, rng),
                "model": model_i[p],
            }
            written = dict(preds)
            if quantised:
                # The truth is an integer DN product (8-bit: dark speckle clipped to 0): every
                # method is measured as that product would record it, rounded to whole DN.
                preds = {k: quantise_dn_intensity(v) for k, v in preds.items()}
            mask = m.homogeneous_windows(input_i[p], window=HOMOGENEOUS_WINDOW_COARSE_PX)
            row: dict[str, Any] = {"tile": i, "scene_id": pair["scene_id"], "pol": pol,
                                   "window": list(pair["window"])}
            for name, pred in preds.items():
                row[name] = tile_metrics(pred, truth_i[p], input_i[p], scale=scale, floor=floor, mask=mask,
                                         written=written[name], zero_is_recorded=quantised)
                spectra[name].append(m.radial_power_spectrum(m.to_db_floored(pred, floor)))
            row["truth"] = image_statistics(truth_i[p], input_i[p], scale=scale, floor=floor, mask=mask,
                                            zero_is_recorded=quantised)
            spectra["truth"].append(m.radial_power_spectrum(m.to_db_floored(truth_i[p], floor)))
            rows.append(row)
            if len(examples) < 3:
                examples.append({"input": input_i[p], "truth": truth_i[p], "floor": np.array(floor),
                                 **preds, "scene": np.array(pair["scene_id"])})
    elapsed = time.perf_counter() - t0
    # 4. Aggregate, write.
    measures = list(rows[0]["model"])
    means = {
        name: {k: _mean([r[name][k] for r in rows]) for k in measures} for name in METHODS
    }
    truth = {k: _mean([r["truth"][k] for r in rows]) for k in rows[0]["truth"]}
    result = {
        "config": config.to_dict(),
        "scenes": sorted({r["scene_id"] for r in rows}),
        "tiles_evaluated": len(rows),
        "ratio_distribution_samples": ratios.samples,
        "ratio_distribution_mean": ratios.mean,
        "ratio_distribution_zero_fraction": float(np.mean(np.asarray(ratios.quantiles) == 0)),
        "means": means,
        "truth": truth,
        "elapsed_s": round(elapsed, 1),
        "tiles": rows,
    }
    md = format_table(result)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=1, default=float))
    (out_dir / "metrics.md").write_text(md)
    plot_evaluation(examples, spectra, out_dir / "evaluate.png")
    result["files"] = [str(out_dir / f) for f in ("metrics.json", "metrics.md", "evaluate.png")]
    return result


def quantise_dn_intensity(intensity: np.ndarray) -> np.ndarray:
    """Intensity of an amplitude rounded to whole DN (as an integer DN product records it)."""
    a = np.round(np.sqrt(np.maximum(intensity, 0.0)))
    return np.where(np.isfinite(intensity), a * a, np.nan)


def _mean(values: list[float]) -> float:
    """Mean over finite values (PSNR of identical tiles is inf: counted as such if all are)."""
    a = np.asarray(values, dtype=np.float64)
    finite = a[np.isfinite(a)]
    if finite.size:
        return float(finite.mean())
    return float(a[0]) if a.size else float("nan")


def format_table(result: dict[str, Any]) -> str:
    """The markdown table of an evaluation."""
    cfg = result["config"]
    means, truth = result["means"], result["truth"]
    lines = [
        f"# sarray evaluate: model `{cfg['model']}`, scale {cfg['data']['degradation']['scale']}",
        "",
        f"{result['tiles_evaluated']} held-out tile-planes of {cfg['data']['tile_px']} px from "
        f"scenes {', '.join(result['scenes'])}; output {cfg.get('output', 'reflectivity')}; "
        f"consistency step {'on' if cfg['consistency'] else 'off'}; degradation "
        f"{cfg['data']['degradation']}.",
        "",
        "| method | log-PSD L1 ↓ | dB-histogram W1 ↓ | W1 above the 0-DN floor ↓ | consistency RMS dB | block-edge ratio "
        "(truth ~1) | peaks 2/4/8 px dB | floor-clamped % (as written) | zeros % (as measured) | ENL | CV "
        "| lag-1 | PSNR dB | SSIM |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cells(r: dict[str, Any]) -> str:
        return (f"{r['consistency_rms_db']:.3f} | {r['block_edge_ratio']:.2f} | "
                f"{r['peak_2px_db']:.1f}/{r['peak_4px_db']:.1f}/{r['peak_8px_db']:.1f} | "
                f"{100 * r['floor_share']:.2f} | {100 * r.get('zero_share', 0.0):.2f} | {r['enl']:.2f} | "
                f"{r['cv']:.3f} | {r['lag1']:.2f}")

    for name in METHODS:
        r = means[name]
        lines.append(f"| {name} | {r['spectrum_distance']:.3f} | {r['histogram_w1_db']:.3f} | "
                     f"{r['histogram_w1_above_floor_db']:.3f} | {cells(r)} | {r['psnr_db']:.2f} | "
                     f"{r['ssim_db']:.3f} |")
    lines.append(f"| truth | 0 | 0 | 0 | {cells(truth)} | | |")
    lines += ["", "speckle: bicubic intensity x draws of the training split's fine-to-coarse intensity "
              f"ratios ({result['ratio_distribution_samples']:,} ratios, mean "
              f"{result['ratio_distribution_mean']:.3f}, {result['ratio_distribution_zero_fraction']:.1%} "
              "zeros from 8-bit quantisation); speckle_nz: the same without the zero ratios.",
              "", "ENL and CV: homogeneous windows (the most uniform quarter of the input's "
              f"{HOMOGENEOUS_WINDOW_COARSE_PX}x{HOMOGENEOUS_WINDOW_COARSE_PX} coarse-pixel windows); "
              "closer to the truth row is better. Means over tiles (ENL: medians per tile)."]
    return "\n".join(lines) + "\n"


def plot_evaluation(examples: list[dict[str, np.ndarray]], spectra: dict[str, list[np.ndarray]],
                    png: Path) -> Path:
    """Example tiles (dB) for each method and the mean radial spectra."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["input", *METHODS, "truth"]
    n = len(examples)
    fig = plt.figure(figsize=(2.2 * len(cols), 2.2 * n + 3.2))
    grid = fig.add_gridspec(n + 1, len(cols), height_ratios=[1] * n + [1.4])
    for row, ex in enumerate(examples):
        floor = float(ex["floor"])
        tdb = m.to_db_floored(ex["truth"], floor)
        lo, hi = np.nanpercentile(tdb, [2, 98])
        for c, name in enumerate(cols):
            ax = fig.add_subplot(grid[row, c])
            ax.imshow(m.to_db_floored(ex[name], floor), cmap="gray", vmin=lo, vmax=hi,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(str(ex["scene"])[:20], fontsize=7)
    ax = fig.add_subplot(grid[n, :])
    for name, lst in spectra.items():
        if lst:
            size = min(len(s) for s in lst)
            ax.loglog(np.arange(1, size + 1), np.mean([s[:size] for s in lst], axis=0), label=name,
                      lw=2.5 if name in ("truth", "model") else 1.2)
    ax.set_xlabel("radial frequency (cycles per tile)")
    ax.set_ylabel("power of dB image")
    ax.legend(fontsize=8, ncol=5)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png
