"""``sarray model ...``: inspect model presets."""

from __future__ import annotations

import json

import typer

app = typer.Typer(
    help="Model presets and replicas.\n\nExample: sarray model info --preset sdxl --json",
    no_args_is_help=True,
)


@app.callback()
def _main() -> None:
    """Model presets and replicas."""


@app.command()
def info(
    preset: str = typer.Option("sdxl", "--preset", help="Preset to size: sdxl or tiny."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (total under total_params)."),
) -> None:
    """Parameter count per component and weight memory per dtype (built on the meta device).

    Example: sarray model info --preset sdxl
    """
    from sarray.models.info import format_info, model_info

    result = model_info(preset)
    typer.echo(json.dumps(result, indent=2) if as_json else format_info(result))


@app.command()
def speckle(
    model: str = typer.Option("tiny", "--model", help="tiny | tiny-random | sdxl | a weights folder."),
) -> None:
    """The speckle statistics stored with a model (the sets `sarray translate --speckle` takes).

    Example: sarray model speckle --model tiny
    """
    from sarray.models.resolve import resolve_model
    from sarray.stitch.speckle import single_look, speckle_sets

    sets, default = speckle_sets(resolve_model(model).get("weights"))
    if not sets:
        typer.echo(f"{model}: no stored statistics; translate uses {single_look().source}")
        return
    for name, m in sorted(sets.items()):
        mark = " (default)" if name == default else ""
        typer.echo(f"{name}{mark}: {m.summary()}\n    {m.source}")
