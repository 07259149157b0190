"""``sarray train ...``: train, size a run (plan), prepare the real training data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from sarray import clicompat

app = typer.Typer(
    help="Train the model (DeepSpeed ZeRO 1/2/3) and size training runs.\n\n"
    "Examples:\n\n  sarray train --config cfg.yaml\n\n"
    "  torchrun --nproc_per_node 2 jobs/train.py --config cfg.yaml\n\n"
    "  sarray train plan --preset sdxl --gpus 8 --gpu-mem-gb 80",
    no_args_is_help=True,
)


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML training config."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Override `steps` of the config."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="Override `output_dir`."),
    launcher: str = typer.Option("env", "--launcher", help="env: this process is one rank (plain, torchrun, deepspeed); ray: start --workers Ray Train workers."),
    workers: int = typer.Option(2, "--workers", help="Ray Train workers (--launcher ray)."),
    gpu: bool = typer.Option(False, "--gpu", help="One GPU per Ray Train worker."),
    local_rank: Optional[int] = typer.Option(None, "--local_rank", "--local-rank", hidden=True,
                                             help="Set by the deepspeed launcher."),
) -> None:
    """Train with the YAML config: one process, one rank under torchrun/deepspeed, or Ray Train.

    Example: sarray train --config cfg.yaml  (or: torchrun --nproc_per_node 2 jobs/train.py --config cfg.yaml)
    """
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise clicompat.UsageError("give --config FILE.yaml, or a subcommand", ctx=ctx)
    import os

    from sarray.train.config import TrainConfig

    if launcher not in ("env", "ray"):
        raise typer.BadParameter(f"{launcher!r}; use env or ray", ctx=ctx, param_hint="--launcher")
    cfg = TrainConfig.from_yaml(config, steps=steps, output_dir=output_dir)
    if launcher == "ray":
        from sarray.train.launch import train_with_ray

        result = train_with_ray(cfg, num_workers=workers, use_gpu=gpu)
    else:
        from sarray.train.loop import run_training

        result = run_training(cfg)
    if os.environ.get("RANK", "0") != "0" and not result.get("export"):
        return  # one summary per run, from the rank that exported
    losses = result.pop("losses")
    result["first_loss"], result["last_loss"] = (losses[0], losses[-1]) if losses else (None, None)
    typer.echo(json.dumps(result))  # one line: the last line of a job's log


@app.command()
def plan(
    preset: str = typer.Option("sdxl", "--preset", help="Model preset: sdxl or tiny."),
    gpus: int = typer.Option(8, "--gpus", help="GPUs per node."),
    gpu_mem_gb: float = typer.Option(80.0, "--gpu-mem-gb", help="Memory of one GPU, GB."),
    nodes: int = typer.Option(1, "--nodes", help="Nodes."),
    train: str = typer.Option("unet", "--train", help="What is trained: unet | controlnet | both | vae."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Memory per GPU of each ZeRO stage, with and without CPU offload, and a recommended stage.

    Example: sarray train plan --preset sdxl --gpus 8 --gpu-mem-gb 80
    """
    from sarray.train.plan import format_plan, plan_memory

    result = plan_memory(preset=preset, gpus=gpus, gpu_mem_gb=gpu_mem_gb, nodes=nodes, train=train)
    typer.echo(json.dumps(result, indent=1) if as_json else format_plan(result))


@app.command("prepare-data")
def prepare_data(
    data: Path = typer.Option(..., "--data", help="The shared data folder (umbra/, airborne/)."),
    archive: str = typer.Option(..., "--archive", "-a", help="Archive to create or extend (path or s3://)."),
) -> None:
    """Ingest the real high-resolution training scenes (Umbra, SpaceNet 6, UAVSAR, MSTAR).

    Example: sarray train prepare-data --data ../shared/data --archive /tmp/real.zarr
    """
    from sarray.train.sources import ingest_training_sources

    results = ingest_training_sources(data, archive)
    typer.echo(f"{len(results)} scene(s) in {archive}")
