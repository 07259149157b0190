"""``sarray evaluate ...``: compare the model with baselines on held-out high-resolution scenes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from sarray import clicompat

app = typer.Typer(
    help="Evaluate translation on held-out high-resolution scenes against bicubic, Lanczos and "
    "speckle-statistics baselines.\n\n"
    "Example:\n\n  sarray evaluate --archive /tmp/real.zarr --model tiny --out out/eval",
    no_args_is_help=True,
)


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="YAML: an EvaluateConfig, or a training config (its `data`)."),
    archive: Optional[str] = typer.Option(None, "--archive", "-a", help="Archive (overrides the config's)."),
    model: str = typer.Option("tiny", "--model", help="tiny | tiny-random | sdxl | a weights folder."),
    out: str = typer.Option("out/evaluate", "--out", "-o", help="Output folder."),
    tiles: int = typer.Option(32, "--tiles", help="Held-out tiles."),
    val_scene: Optional[list[str]] = typer.Option(None, "--val-scene",
                                                  help="Held-out scene id (repeatable)."),
    scale: int = typer.Option(4, "--scale", help="Degradation scale (without --config)."),
    tile_px: int = typer.Option(128, "--tile-px", help="Target tile edge (without --config)."),
    no_consistency: bool = typer.Option(False, "--no-consistency", help="Skip the consistency step."),
    output: str = typer.Option("speckled", "--output", help="speckled | reflectivity (as sarray translate)."),
    speckle: str = typer.Option("auto", "--speckle", help="Speckle statistics set; auto: the held-out scene's sensor's set when stored, else the model's default (as sarray translate)."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
) -> None:
    """Degrade held-out tiles, translate them, compare with the truth and the baselines.

    Example: sarray evaluate -c recipes/tiny/stage2-diffusion.yaml --model tiny
    """
    if ctx.invoked_subcommand is not None:
        return
    from sarray.evaluate.run import EvaluateConfig, evaluate, format_table
    from sarray.train.degrade import DegradationConfig
    from sarray.train.pairs import PairConfig

    if config is not None:
        import yaml

        raw = yaml.safe_load(config.read_text()) or {}
        data = dict(raw.get("data") or {})
    else:
        data = {"degradation": DegradationConfig(scale=scale).to_dict(), "tile_px": tile_px}
    if archive:
        data["archive"] = archive
    if val_scene:
        data["val_scenes"] = list(val_scene)
    if "archive" not in data:
        raise clicompat.UsageError("give --archive, or a --config with data.archive", ctx=ctx)
    cfg = EvaluateConfig(data=PairConfig.from_dict(data), model=model, output_dir=out,
                         tiles=tiles, consistency=not no_consistency, output=output, speckle=speckle, seed=seed)
    result = evaluate(cfg, progress=True)
    typer.echo(format_table(result))
    typer.echo(json.dumps({"files": result["files"]}))
