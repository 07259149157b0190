"""``sarray bench ...``: run the benchmark suite, and project a run to a continental archive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Benchmarks: the whole suite (`make bench`), and projections to your own archive.\n\n"
    "Examples:\n\n  sarray bench run\n\n"
    "  sarray bench project --area-km2 10e6 --scale 4 --gpus 64",
    no_args_is_help=True,
)


def _suite() -> Path:
    """benchmarks/suite.py of the checkout this sarray runs from (or of the current folder)."""
    from sarray.errors import ConfigError

    here = Path(__file__).resolve().parents[1] / "benchmarks" / "suite.py"
    for path in (Path.cwd() / "benchmarks" / "suite.py", here):
        if path.is_file():
            return path
    raise ConfigError(f"benchmarks/suite.py: not found in {Path.cwd()} or beside the package; "
                      "run `sarray bench run` from a sarray checkout")


@app.command()
def run(
    out: Path = typer.Option(Path("benchmarks/results"), "--out", help="Results folder (bench.json, PNGs)."),
    quick: bool = typer.Option(False, "--quick", help="Smaller sizes (a smoke run of every stage)."),
    only: Optional[list[str]] = typer.Option(None, "--only", help="Stages to run (repeatable): ingest, catalog, replica, translate, train."),
) -> None:
    """Run every stage's benchmark into one bench.json (about 8 min on a 2-core CPU box).

    Example: sarray bench run --out benchmarks/results
    """
    import subprocess
    import sys

    cmd = [sys.executable, str(_suite()), "--out", str(out)] + (["--quick"] if quick else [])
    for stage in only or []:
        cmd += ["--only", stage]
    rc = subprocess.run(cmd).returncode
    if rc:
        raise typer.Exit(rc)


@app.command()
def project(
    area_km2: float = typer.Option(..., "--area-km2", help="Ground area to translate, km^2 (Europe: 10e6)."),
    scale: int = typer.Option(4, "--scale", help="Output spacing = input spacing / scale."),
    gpus: int = typer.Option(..., "--gpus", help="GPUs, one replica each."),
    tile_s: Optional[float] = typer.Option(None, "--tile-s", help="Seconds per output tile on one GPU (default: SDXL on an A100-class GPU, see the output)."),
    from_results: Optional[Path] = typer.Option(None, "--from", help="A results JSON of `sarray bench run` (the engine's measured throughput)."),
    input_spacing_m: float = typer.Option(10.0, "--input-spacing-m", help="Input pixel spacing (Sentinel-1 IW GRD: 10 m)."),
    tile_px: int = typer.Option(1024, "--tile-px", help="Output tile edge."),
    pols: int = typer.Option(2, "--pols", help="Polarisations per pixel."),
    gpus_per_node: int = typer.Option(1, "--gpus-per-node", help="GPUs per node (object-store headroom)."),
    fleet: Optional[Path] = typer.Option(None, "--fleet", help="The fleet benchmark's results (bench_fleet.json): driver, writer and object-store figures measured at fleet size (default: benchmarks/results/bench_fleet.json of this checkout, when there is one)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """GPU-hours, replicas, wall time, storage and headroom of a run, every assumption listed.

    Example: sarray bench project --area-km2 10e6 --scale 4 --gpus 64
    """
    from sarray.engine.projection import Projection, format_projection, project as run_projection
    from sarray.engine.projection import tile_s_from_results

    extra = {}
    if tile_s is not None and from_results is not None:
        raise typer.BadParameter("give --tile-s or --from, not both", param_hint="--tile-s")
    if tile_s is not None:
        extra = {"tile_s": tile_s, "tile_s_source": "given with --tile-s"}
    elif from_results is not None:
        t, source = tile_s_from_results(from_results, tile_px)
        extra = {"tile_s": t, "tile_s_source": source}
    from sarray.engine.projection import fleet_figures_from_results

    if fleet is None:
        fleet = next((f for f in (Path.cwd() / "benchmarks" / "results" / "bench_fleet.json",
                                  Path(__file__).resolve().parents[1] / "benchmarks" / "results"
                                  / "bench_fleet.json") if f.is_file()), None)
    figures = fleet_figures_from_results(fleet) if fleet is not None else None
    result = run_projection(Projection(area_km2=area_km2, scale=scale, gpus=gpus,
                                       input_spacing_m=input_spacing_m, tile_px=tile_px, pols=pols,
                                       gpus_per_node=gpus_per_node, fleet=figures, **extra))
    typer.echo(json.dumps(result, indent=1) if as_json else format_projection(result))
