"""The `sarray` command. Each command parses, builds a config, calls one library function.

One application (ingest, ls, info, ..., translate, and the `model`, `train`, `evaluate` and
`bench` groups) with one error wrapper, :class:`SarrayGroup`: every error (sarray's own, an
operating-system error, a usage error such as an unknown option) prints one line,
``sarray: error: <input>: <problem>; <fix>``, on stderr and exits with status 1. The job entry
points (``jobs/*.py``) call this same application.
"""

from __future__ import annotations

import json
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from typer.core import TyperGroup

from sarray import clicompat

from sarray.errors import SarrayError


class SarrayGroup(TyperGroup):
    """The top-level group: runs a command and turns every failure into one line and exit 1."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            # Always `sarray`: the job entry points (jobs/*.py) run this same application.
            rv = super().main(args, "sarray", complete_var, standalone_mode=False, **extra)
        except clicompat.UsageError as e:
            if clicompat.NoArgsIsHelpError is not None and isinstance(e, clicompat.NoArgsIsHelpError):
                typer.echo(e.ctx.get_help() if e.ctx else "")  # `sarray model`: its help, status 0
                return self._exit(0, standalone_mode)
            where = e.ctx.command_path if e.ctx else "sarray"
            typer.echo(f"sarray: error: {where}: {e.format_message().rstrip('.')}; see `{where} --help`", err=True)
            rv = 1
        except typer.Abort:
            typer.echo("sarray: error: interrupted; rerun the same command (translate resumes from "
                       "its last commit; an interrupted ingest committed nothing)", err=True)
            rv = 1
        except SarrayError as e:
            typer.echo(f"sarray: error: {e}", err=True)
            rv = 1
        except OSError as e:
            typer.echo(f"sarray: error: {os_error_line(e)}", err=True)
            rv = 1
        except Exception as e:
            from sarray.archive.location import storage_failure

            line = storage_failure(e)
            if line is None:
                raise
            typer.echo(f"sarray: error: {line}", err=True)
            rv = 1
        return self._exit(rv, standalone_mode)

    @staticmethod
    def _exit(rv: Any, standalone_mode: bool) -> Any:
        import sys

        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=SarrayGroup,
    help="sarray: satellite SAR archives to airborne-resolution SAR.\n\n"
    "Example:\n\n  sarray ingest scene.tif --archive A.zarr && sarray ls A.zarr",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# Sub-commands that live with their stage (only typer is imported at module level there).
from sarray.bench import app as _bench_app  # noqa: E402
from sarray.evaluate.cli import app as _evaluate_app  # noqa: E402
from sarray.models.cli import app as _model_app  # noqa: E402
from sarray.train.cli import app as _train_app  # noqa: E402

app.add_typer(_model_app, name="model")
app.add_typer(_train_app, name="train")
app.add_typer(_evaluate_app, name="evaluate")
app.add_typer(_bench_app, name="bench")


def library_warnings(verbose: bool) -> Any:
    """A context in which sarray's own warnings print as ``sarray: warning: ...`` lines and
    other libraries' warnings (rasterio's NotGeoreferencedWarning, GDAL notices...) are shown
    only when ``verbose``."""
    import contextlib
    import logging
    import warnings

    from sarray.errors import SarrayWarning

    @contextlib.contextmanager
    def ctx() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("default" if verbose else "ignore")
            warnings.simplefilter("always", SarrayWarning)
            def show(message: Any, category: Any, filename: str, lineno: int, *args: Any,
                     **kwargs: Any) -> None:
                if issubclass(category, SarrayWarning):
                    typer.echo(f"sarray: warning: {message}", err=True)
                else:  # only reached with --verbose
                    typer.echo(warnings.formatwarning(message, category, filename, lineno).rstrip(),
                               err=True)

            warnings.showwarning = show
            logger = logging.getLogger("rasterio")
            level = logger.level
            if not verbose:
                logger.setLevel(logging.ERROR)
            try:
                yield
            finally:
                logger.setLevel(level)

    return ctx()


def os_error_line(e: OSError) -> str:
    """``<path>: <problem>; <fix>`` for an operating-system error (permissions, full disk...)."""
    import errno

    path = e.filename or "?"
    fixes = {
        errno.EACCES: "check the permissions of the path, or choose another one",
        errno.EPERM: "check the permissions of the path, or choose another one",
        errno.EROFS: "the file system is read-only; choose another path",
        errno.ENOSPC: "the disk is full; free space or choose another path",
        errno.EDQUOT: "the disk quota is exceeded; free space or choose another path",
        errno.ENOENT: "check that the path exists",
        errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    }
    fix = fixes.get(e.errno or -1, "check the path")
    return f"{path}: {(e.strerror or str(e)).lower()}; {fix}"


def strict_json(obj: Any) -> str:
    """JSON with NaN and infinities as ``null`` (what JSON readers accept)."""
    from sarray.archive.layout import json_safe

    return json.dumps(json_safe(obj), indent=1, allow_nan=False)


def _floats(text: str | None, n: int, name: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != n:
        raise typer.BadParameter(f"{name} ({text!r}) needs {n} comma-separated numbers")
    return vals


@app.command(
    epilog="Example: sarray ingest s1.tif umbra.tif --archive A.zarr --platform spaceborne"
)
def ingest(
    paths: list[str] = typer.Argument(..., help="GeoTIFF/COG files, Sentinel-1 *.SAFE folders or .SAFE.zip files (local or s3://), NISAR RSLC/GSLC .h5 files (or GDAL HDF5:\"f.h5\"://... subdatasets)."),
    archive: str = typer.Option(..., "--archive", "-a", help="Archive: a path or s3://bucket/prefix (created if missing)."),
    platform: str = typer.Option("spaceborne", help="spaceborne | airborne | simulated | synthetic."),
    units: Optional[str] = typer.Option(None, help="Units of float inputs: db | linear (default: inferred)."),
    scene_id: Optional[str] = typer.Option(None, "--scene-id", help="Scene id (default: from the file name)."),
    sensor: Optional[str] = typer.Option(None, help="Sensor name (default: inferred for Sentinel-1)."),
    time: Optional[str] = typer.Option(None, "--time", help="Acquisition time, ISO 8601."),
    pol: Optional[list[str]] = typer.Option(None, "--pol", help="Polarisation label per band, repeatable."),
    spacing_m: Optional[float] = typer.Option(None, "--spacing-m", help="Pixel spacing for rasters without georeferencing."),
    stack: bool = typer.Option(False, "--stack", help="Make one scene of all PATHs (a polarisation stack)."),
    calibration: str = typer.Option("sigma0", help="SAFE / NISAR calibration: sigma0 | beta0 | gamma0 | none."),
    frequency: str = typer.Option("A", help="NISAR frequency: A | B."),
    crs: Optional[str] = typer.Option(None, "--crs", help="CRS of a raster with a geotransform (e.g. a worldfile) or GCPs but no CRS, e.g. EPSG:32631."),
    swath: Optional[str] = typer.Option(None, help="SAFE swath, e.g. IW or IW1."),
    burst: Optional[int] = typer.Option(None, help="SLC burst index within the swath."),
    window: Optional[str] = typer.Option(None, help="Only this window: ROW,COL,HEIGHT,WIDTH."),
    chunk_px: int = typer.Option(1024, help="Chunk edge in pixels."),
    shard_px: Optional[int] = typer.Option(None, help="Zarr v3 shard edge in pixels (multiple of --chunk-px)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show other libraries' warnings (GDAL, rasterio...)."),
    on_ray: Optional[bool] = typer.Option(None, "--ray/--no-ray", help="Stage the files as Ray tasks across the cluster (default: on when RAY_ADDRESS is set)."),
) -> None:
    """Ingest rasters, Sentinel-1 SAFE or NISAR products into an archive (atomic, idempotent)."""
    from sarray.archive.layout import ArchiveLayout
    from sarray.ingest.config import IngestConfig, Window
    from sarray.ingest.run import ingest as run_ingest

    config = IngestConfig(
        platform=platform, units=units, scene_id=scene_id, sensor=sensor, acquisition_time=time,
        pols=tuple(p.upper() for p in pol) if pol else None, spacing_m=spacing_m,
        grouping="stack" if stack else "per-file", calibration=calibration, swath=swath,
        burst=burst, window=Window.parse(window) if window else None, frequency=frequency.upper(),
        crs=crs,
        layout=ArchiveLayout(chunk_px=chunk_px, shard_px=shard_px),
    )
    with library_warnings(verbose):
        import os

        ray_on = on_ray if on_ray is not None else bool(os.environ.get("RAY_ADDRESS"))
        results = run_ingest(paths, archive, config, progress=not quiet, on_ray=ray_on)
    for r in results:
        typer.echo(r.line())


@app.command(name="ls", epilog="Example: sarray ls A.zarr --platform airborne --bbox 4,51,5,52")
def ls_(
    archive: str = typer.Argument(..., help="Archive: a path or s3://bucket/prefix."),
    sensor: Optional[str] = typer.Option(None, help="Substring of the sensor name."),
    platform: Optional[str] = typer.Option(None, help="Exact platform."),
    start: Optional[str] = typer.Option(None, help="Acquired at or after (ISO 8601)."),
    end: Optional[str] = typer.Option(None, help="Acquired at or before (ISO 8601)."),
    bbox: Optional[str] = typer.Option(None, help="MINLON,MINLAT,MAXLON,MAXLAT that footprints intersect."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the scenes of an archive, filtered from the catalog (no scene is opened)."""
    from sarray.archive.store import Archive, SceneFilter

    flt = SceneFilter(sensor=sensor, platform=platform, start=start, end=end,
                      bbox_lonlat=_floats(bbox, 4, "--bbox"))  # type: ignore[arg-type]
    recs = Archive(archive).require().find(flt)
    if as_json:
        typer.echo(strict_json([r.to_dict() for r in recs]))
        return
    typer.echo(f"{len(recs)} scene(s) in {archive}")
    for r in recs:
        spacing = f"{r.pixel_spacing_m[1]:.3g} m" if r.pixel_spacing_m else "?"
        typer.echo(
            f"  {r.scene_id:40s} {r.platform:10s} {r.sensor:12s} {r.acquisition_time or '-':19s} "
            f"{'x'.join(map(str, r.shape)):>16s} {spacing:>8s} {','.join(r.polarisations)} {r.units}"
        )


@app.command(epilog="Example: sarray info A.zarr my_scene --json")
def info(
    archive: str = typer.Argument(..., help="Archive: a path or s3://bucket/prefix."),
    scene: str = typer.Argument(..., help="Scene id."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Shape, spacing, CRS, extent and statistics of a scene."""
    from sarray.archive.describe import describe_scene
    from sarray.archive.store import Archive

    d = describe_scene(Archive(archive).require(), scene)
    if as_json:
        typer.echo(strict_json(d))
        return
    crs = d["crs_wkt"]
    if crs:
        from pyproj import CRS

        crs = CRS.from_wkt(crs).to_string()
    lines = [
        f"scene        {d['scene_id']}",
        f"shape        {' x '.join(map(str, d['shape']))} ({', '.join(d['dims'])})",
        f"pols         {', '.join(d['polarisations'])}",
        f"units        {d['units']} ({d['quantity']}), calibration {d['calibration']}",
        f"sensor       {d['sensor']} ({d['platform']}), acquired {d['acquisition_time'] or 'unknown'}",
        f"spacing      {d['pixel_spacing_m']} m (y, x)",
        f"crs          {crs or 'none'} ({d['georeferencing']}, {d['gcp_count']} GCPs)",
        f"geotransform {d['geotransform']}",
        f"extent       {d['extent']}",
        f"bbox lon/lat {d['bbox_lonlat']}",
    ]
    for pol, st in (d["statistics"] or {}).items():
        if "mean" in st:
            lines.append(
                f"stats {pol:5s}  mean {st['mean']:.4g}  std {st['std']:.4g}  min {st['min']:.4g}  "
                f"max {st['max']:.4g}  dB mean {st['db_mean']:.2f}  valid {st['valid_fraction']:.1%}"
            )
    typer.echo("\n".join(lines))


@app.command(epilog="Example: sarray quicklook A.zarr my_scene -o ql.png")
def quicklook(
    archive: str = typer.Argument(..., help="Archive: a path or s3://bucket/prefix."),
    scene: str = typer.Argument(..., help="Scene id."),
    out: str = typer.Option(..., "-o", "--out", help="PNG to write: a path or s3://bucket/key.png."),
    max_px: int = typer.Option(1024, help="Longest side of each panel."),
) -> None:
    """Write a dB-scaled PNG, one panel per polarisation."""
    from sarray.archive.export import write_quicklook
    from sarray.archive.store import Archive

    typer.echo(write_quicklook(Archive(archive).require(), scene, out, max_px=max_px))


@app.command(epilog="Example: sarray export A.zarr my_scene -o scene.tif")
def export(
    archive: str = typer.Argument(..., help="Archive: a path or s3://bucket/prefix."),
    scene: str = typer.Argument(..., help="Scene id."),
    out: str = typer.Option(..., "-o", "--out", help="GeoTIFF (COG) to write: a path or s3://bucket/key.tif."),
) -> None:
    """Export a scene as a Cloud-Optimised GeoTIFF with its georeferencing."""
    from sarray.archive.export import export_cog
    from sarray.archive.store import Archive

    typer.echo(export_cog(Archive(archive).require(), scene, out))


@app.command(epilog="Example: sarray check s3://bucket/A.zarr  (or: sarray check A.zarr my_scene)")
def check(
    archive: str = typer.Argument(..., help="Archive: a path or s3://bucket/prefix."),
    scenes: Optional[list[str]] = typer.Argument(None, help="Scene ids (default: every scene)."),
) -> None:
    """Verify every chunk's checksum; print what is damaged (exit 1 if anything is)."""
    from sarray.archive.integrity import check_archive
    from sarray.archive.store import Archive

    report = check_archive(Archive(archive), list(scenes) if scenes else None)
    for line in report.lines():
        typer.echo(line, err=not report.ok and not line.startswith("checked"))
    if not report.ok:
        raise typer.Exit(1)


@app.command(epilog="Example: sarray stac A.zarr --all -o stac/  (or: sarray stac A.zarr my_scene -o stac/)")
def stac(
    archive: str = typer.Argument(..., help="Archive: a path or s3://bucket/prefix."),
    scenes: Optional[list[str]] = typer.Argument(None, help="Scene ids (or --all)."),
    all_scenes: bool = typer.Option(False, "--all", help="Every scene, as one STAC Collection."),
    out: str = typer.Option(..., "-o", "--out", help="Folder to write the STAC JSON into: a path or s3://bucket/prefix."),
) -> None:
    """Write scenes as STAC Items, or the whole catalog as a STAC Collection."""
    from sarray.archive.stac import write_stac
    from sarray.archive.store import Archive
    from sarray.errors import ConfigError

    if bool(scenes) == all_scenes:
        raise ConfigError("`scenes`: name scene ids or pass --all (not both)")
    typer.echo(write_stac(Archive(archive).require(), None if all_scenes else list(scenes or []), out))


@app.command(epilog="Example: sarray migrate old.zarr new.zarr")
def migrate(
    old: Path = typer.Argument(..., help="Archive written by sarray's first layout (read only)."),
    new: str = typer.Argument(..., help="New archive: a path or s3://bucket/prefix."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Convert an archive of the first layout (plain Zarr) into the current one."""
    from sarray.archive.migrate import migrate_archive

    added = migrate_archive(old, new, progress=not quiet)
    typer.echo(f"migrated {len(added)} scene(s) into {new}")


@app.command(
    epilog="Example: sarray translate A.zarr my_scene --scale 4 --model tiny --replicas 2 "
    "--cog out/x4.tif --quicklook out/x4.png"
)
def translate(
    archive: str = typer.Argument(..., help="Archive holding the input scenes (path or s3://)."),
    scenes: list[str] = typer.Argument(..., help="Scene ids to translate."),
    scale: int = typer.Option(4, help="Output spacing = input spacing / scale (2, 4, 8, 16)."),
    model: str = typer.Option("tiny", help="tiny | tiny-random | sdxl | PATH to weights."),
    replicas: int = typer.Option(1, help="Model replicas (Ray actors; one per GPU on GPU clusters)."),
    writers: int = typer.Option(1, help="Output writer actors; the scenes are dealt among them (for fleets of hundreds of GPUs: see `sarray bench project`)."),
    out: Optional[str] = typer.Option(None, "--out", help="Output archive, path or s3:// (default: the input archive)."),
    out_scene: Optional[str] = typer.Option(None, "--out-scene", help="Output scene id (default: <scene>_x<scale>)."),
    cog: Optional[str] = typer.Option(None, help="Also write the output as a COG (a path or s3://bucket/key.tif)."),
    quicklook: Optional[str] = typer.Option(None, help="Also write an input/output PNG (a path or s3://bucket/key.png)."),
    chunk_px: int = typer.Option(512, help="Output chunk edge (one tile per chunk)."),
    halo_px: int = typer.Option(16, help="Context around each tile, in input pixels."),
    batch_size: int = typer.Option(2, help="Tiles per replica call (at first, and at the job's end)."),
    max_batch_size: Optional[int] = typer.Option(None, help="Tiles per replica call at most: calls of a fast replica grow up to it (default: batch size or 8, the larger)."),
    micro_batch: int = typer.Option(1, help="Tiles per pipeline call in a replica (>1: faster on GPUs, not bitwise batch-invariant)."),
    seed: int = typer.Option(0, help="Global seed of the per-tile noise."),
    consistency: str = typer.Option("multilook", help="multilook | off: keep the input's calibration."),
    output: str = typer.Option("speckled", "--output", help="speckled | reflectivity: the despeckled image the network generates."),
    speckle: Optional[str] = typer.Option(None, "--speckle", help="Speckle statistics stored with the model (a sensor, or pooled; default auto: the scene's sensor's set when stored, else the model's default)."),
    steps: Optional[int] = typer.Option(None, help="Sampler steps (default: the preset's)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    restart: bool = typer.Option(False, "--restart", help="Discard an unfinished output instead of resuming it."),
    max_chunks: Optional[int] = typer.Option(None, help="Stop after this many chunks (rerun to resume)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Translate scenes to airborne resolution on a Ray pool (local, or RAY_ADDRESS)."""
    from sarray.engine.translate import TranslateConfig, translate as run_translate

    config = TranslateConfig(
        scale=scale, model=model, replicas=replicas, writers=writers, chunk_px=chunk_px, halo_px=halo_px,
        batch_size=batch_size, max_batch_size=max_batch_size, micro_batch=micro_batch, seed=seed, consistency=consistency, output=output, speckle=speckle, out_scene=out_scene,
        on_unfinished="restart" if restart else "resume", max_chunks=max_chunks, device=device,
        num_inference_steps=steps,
    )
    for s in run_translate(archive, scenes, config, out_archive=out, cog=cog,
                           quicklook=quicklook, progress=not quiet):
        typer.echo(s.line())
        for extra in (s.cog, s.quicklook):
            if extra:
                typer.echo(f"  wrote {extra}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point (and the job entry points': ``main(["translate", ...])``)."""
    return int(app(argv, standalone_mode=False) or 0) if argv is not None else app()


if __name__ == "__main__":
    main()
