"""Projection of a translate run to a continental archive: GPU-hours, replicas, wall time,
storage, and the driver's and object store's headroom, with every assumption shown.

``sarray bench project --area-km2 10e6 --scale 4 --gpus 64`` (one Sentinel-1 IW coverage of
Europe at x4). The per-tile time comes from ``--tile-s`` (seconds per output tile on one GPU),
from a results file of this project's benchmarks (``--from``), or from the default below.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sarray.config import CHUNKS_IN_FLIGHT_PER_REPLICA
from sarray.errors import ConfigError

# SDXL + ControlNet, 30 steps, one 1024^2 output tile on one A100-class GPU: 2.4-7.4 s (the
# range quoted in this project's engine issue, #9, from published SDXL timings); the midpoint
# is the default. H100-class GPUs are faster: measure yours and pass --tile-s.
DEFAULT_TILE_S = 4.9
DEFAULT_TILE_S_SOURCE = ("SDXL 30 steps, 1024^2, A100-class: 2.4-7.4 s per tile (engine issue #9); "
                         "midpoint 4.9 s")
# Measured by benchmarks/bench_translate.py on this project's CPU box (README, Benchmarks).
DRIVER_CPU_S_PER_MPX = 0.019
ENGINE_EFFICIENCY = 0.95
OBJECT_STORE_GB_PER_NODE = 16.0
# The share of one core a job's output writer may take: beyond it, its merges and commits queue
# behind one another (commit latency grows, and the chunks waiting for them hold memory), and
# the projection asks for more writers (``sarray translate --writers``).
WRITER_CORES_EACH = 0.5


@dataclass(frozen=True, kw_only=True)
class FleetFigures:
    """What the fleet benchmark (``benchmarks/bench_fleet.py``) measured, per tile and per
    replica, at its largest replica count.

    Args:
        driver_cpu_s_per_tile: the driver's CPU seconds per tile.
        writer_cpu_s_per_tile: the output writer's CPU seconds per tile.
        object_store_mb_per_replica: the peak object store in use / replicas, in MB.
        bench_tile_mb: the bytes of one of the benchmark's tiles (prediction and input
            window), in MB: the store figure is scaled from it to the projected tile.
        replicas: the replica count those figures come from.
        source: the results file and run they come from.
    """

    driver_cpu_s_per_tile: float
    writer_cpu_s_per_tile: float
    object_store_mb_per_replica: float
    bench_tile_mb: float
    replicas: int
    source: str


def _read_json(p: Path, option: str, what: str, fix: str) -> Any:
    """The JSON in results file ``p`` given with ``option``, or one error naming it and the fix."""
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"`{option}` ({p}): cannot read {what} ({e}); {fix}") from None


def _tile_mb(tile_px: int, pols: int, scale: int) -> float:
    """One tile in flight: its prediction and its input window (float32)."""
    return pols * tile_px**2 * 4 / 1e6 * (1 + 1 / scale**2)


def fleet_figures_from_results(path: str | Path) -> FleetFigures:
    """The fleet benchmark's figures (``bench_fleet.json``), from its run with the most
    replicas that finished."""
    p = Path(path)
    data = _read_json(p, "--fleet", "a fleet results JSON", "run `python benchmarks/bench_fleet.py` first")
    runs = [r for r in data.get("runs", []) if isinstance(r, dict) and "error" not in r
            and r.get("tiles") and r.get("compute_window_s")]
    if not runs:
        raise ConfigError(f"`--fleet` ({p}): no finished run in it (a 'runs' list of "
                          "bench_fleet.py); run `python benchmarks/bench_fleet.py`")
    r = max(runs, key=lambda x: x["replicas"])
    window, tiles, reps = float(r["compute_window_s"]), int(r["tiles"]), int(r["replicas"])
    cfg = data.get("config", {})
    bench_tile = _tile_mb(int(cfg.get("chunk_px", 64)), 1, int(cfg.get("scale", 2)))
    env = data.get("environment", {})
    fig = FleetFigures(
        driver_cpu_s_per_tile=float(r["driver_cpu_share"]) * window / tiles,
        writer_cpu_s_per_tile=float(r["writer_cpu_share"]) * window / tiles,
        object_store_mb_per_replica=float(r.get("object_store_peak_mib") or 0.0) * 1.048576 / reps,
        bench_tile_mb=bench_tile, replicas=reps,
        source=(f"{p}: run at {reps} replicas, {tiles} tiles, CPU headroom "
                f"{r.get('cpu_headroom', float('nan')):.2f} ({env.get('cores', '?')} cores, "
                f"commit {env.get('commit', '?')}, {env.get('date', '?')})"))
    return fig


@dataclass(frozen=True, kw_only=True)
class Projection:
    """The inputs of a projection (each is printed as an assumption).

    Args:
        area_km2: ground area to translate.
        scale: output spacing = input spacing / scale.
        gpus: GPUs (one replica each).
        tile_s: seconds per output tile of ``tile_px``^2 on one GPU.
        tile_s_source: where ``tile_s`` comes from.
        input_spacing_m: pixel spacing of the input scenes (Sentinel-1 IW GRD: 10 m).
        tile_px: output tile (chunk) edge.
        pols: polarisations per pixel (stored, and carried in each tile).
        bytes_per_value: stored bytes per value before compression (float32).
        compression: compressed / raw size of the stored output (zstd on speckled float32).
        efficiency: engine throughput / bare replicas (measured by bench_translate).
        model_load_s: replica start (weights from the node's cache to the GPU).
        driver_cpu_s_per_mpx: the driver's CPU per output Mpx.
        chunks_in_flight_per_replica: the engine's window of chunks per replica.
        object_store_gb_per_node: object store of one GPU node.
        gpus_per_node: GPUs per node.
        fleet: the per-tile driver and writer CPU and the object store per replica measured
            by the fleet benchmark (:func:`fleet_figures_from_results`); None: the driver from
            ``driver_cpu_s_per_mpx`` and the store from the chunks in flight, as before.
    """

    area_km2: float
    scale: int
    gpus: int
    tile_s: float = DEFAULT_TILE_S
    tile_s_source: str = DEFAULT_TILE_S_SOURCE
    input_spacing_m: float = 10.0
    tile_px: int = 1024
    pols: int = 2
    bytes_per_value: int = 4
    compression: float = 0.9
    efficiency: float = ENGINE_EFFICIENCY
    model_load_s: float = 120.0
    driver_cpu_s_per_mpx: float = DRIVER_CPU_S_PER_MPX
    chunks_in_flight_per_replica: int = CHUNKS_IN_FLIGHT_PER_REPLICA
    object_store_gb_per_node: float = OBJECT_STORE_GB_PER_NODE
    gpus_per_node: int = 1
    fleet: FleetFigures | None = None

    def __post_init__(self) -> None:
        for name in ("area_km2", "tile_s", "input_spacing_m", "efficiency", "compression"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"`{name}` ({getattr(self, name)}) must be > 0")
        if self.scale < 1 or self.gpus < 1 or self.tile_px < 16 or self.pols < 1:
            raise ConfigError(f"`scale` ({self.scale}), `gpus` ({self.gpus}), `tile_px` "
                              f"({self.tile_px}) and `pols` ({self.pols}) must be positive "
                              "(tile_px >= 16)")


def tile_s_from_results(path: str | Path, tile_px: int) -> tuple[float, str]:
    """Seconds per ``tile_px``^2 output tile on one replica, from a benchmark results file
    (``bench.json`` of ``make bench``, or ``bench_raydata.json``): the engine's measured output
    Mpx/s per replica, scaled to the tile's pixels."""
    p = Path(path)
    data = _read_json(p, "--from", "a results JSON", "run `make bench` first or give --tile-s")
    rd = data.get("raydata") or data.get("stages", {}).get("translate", {}).get("raydata")
    if not rd:
        raise ConfigError(f"`--from` ({p}): no 'raydata' section with the engine's throughput; "
                          "use benchmarks/results/bench.json or give --tile-s")
    mpx_s = float(rd["median"]["sarray"]["mpx_s"]) / int(rd["replicas"])
    env = data.get("environment", {})
    device = env.get("device", "?")
    return (tile_px * tile_px / 1e6 / mpx_s,
            f"{p.name}: {mpx_s:.3f} output Mpx/s per replica, tiny model on {device} "
            f"({env.get('cores', '?')} cores, commit {env.get('commit', '?')})")


def project(p: Projection) -> dict[str, Any]:
    """The projected figures (see the module docstring)."""
    out_spacing = p.input_spacing_m / p.scale
    pixels = p.area_km2 * 1e6 / out_spacing**2
    tiles = math.ceil(pixels / p.tile_px**2)
    gpu_hours = tiles * p.tile_s / p.efficiency / 3600
    wall_h = gpu_hours / p.gpus + p.model_load_s / 3600
    raw_tb = pixels * p.pols * p.bytes_per_value / 1e12
    mpx_per_s = pixels / 1e6 / (wall_h * 3600)
    tile_mb = _tile_mb(p.tile_px, p.pols, p.scale)
    writer_cores = None
    if p.fleet is None:
        driver_cores = mpx_per_s * p.driver_cpu_s_per_mpx
        store_gb = p.chunks_in_flight_per_replica * tile_mb * p.gpus_per_node / 1e3
    else:  # measured per tile and per replica at fleet size
        tiles_per_s = p.gpus * p.efficiency / p.tile_s
        driver_cores = tiles_per_s * p.fleet.driver_cpu_s_per_tile
        writer_cores = tiles_per_s * p.fleet.writer_cpu_s_per_tile
        store_gb = (p.fleet.object_store_mb_per_replica * tile_mb / p.fleet.bench_tile_mb
                    * p.gpus_per_node / 1e3)
    return {
        "assumptions": asdict(p),
        "output_spacing_m": out_spacing,
        "output_gpx": pixels / 1e9,
        "tiles": tiles,
        "gpu_hours": gpu_hours,
        "replicas": p.gpus,
        "wall_hours": wall_h,
        "storage_tb_raw": raw_tb,
        "storage_tb": raw_tb * p.compression,
        "output_mpx_per_s": mpx_per_s,
        "driver_cores_needed": driver_cores,
        "driver_headroom": 1.0 / driver_cores if driver_cores else math.inf,
        # GPUs one driver can feed at a whole core (its loop is one thread): one job's ceiling.
        "driver_max_gpus": int(p.gpus / driver_cores) if driver_cores else None,
        "writer_cores_needed": writer_cores,
        "writers_needed": (max(1, math.ceil(writer_cores / WRITER_CORES_EACH))
                           if writer_cores is not None else None),
        "object_store_gb_per_node_needed": store_gb,
        "object_store_headroom": p.object_store_gb_per_node / store_gb if store_gb else math.inf,
    }


def format_projection(r: dict[str, Any]) -> str:
    a = r["assumptions"]
    lines = [
        f"Projection: {a['area_km2']:,.0f} km^2 at x{a['scale']} on {a['gpus']} GPUs",
        "",
        "assumptions",
        f"  input spacing            {a['input_spacing_m']} m -> output {r['output_spacing_m']:.2f} m",
        f"  output pixels            {r['output_gpx']:,.1f} Gpx ({a['pols']} polarisations each)",
        f"  tile                     {a['tile_px']}^2 output px, {a['tile_s']:.3g} s per tile on one GPU",
        f"  tile time source         {a['tile_s_source']}",
        f"  engine efficiency        {a['efficiency']:.2f} of bare replicas (the target; bench_translate "
        "measured 0.91-1.04 on a 2-core CPU box)",
        f"  model load per replica   {a['model_load_s']:.0f} s",
        f"  stored values            {a['bytes_per_value']} bytes, compressed to {a['compression']:.2f} (assumed: "
        "zstd on speckled float32 barely compresses)",
        *_engine_assumptions(a),
        "",
        "projection",
        f"  tiles                    {r['tiles']:,}",
        f"  GPU-hours                {r['gpu_hours']:,.0f}",
        f"  replicas                 {r['replicas']} (one per GPU)",
        f"  wall time                {r['wall_hours']:,.1f} h ({r['wall_hours'] / 24:,.1f} days)",
        f"  storage written          {r['storage_tb']:,.1f} TB ({r['storage_tb_raw']:,.1f} TB raw)",
        f"  throughput               {r['output_mpx_per_s']:,.1f} output Mpx/s",
        f"  driver                   {r['driver_cores_needed']:.3f} of one core "
        f"(headroom x{r['driver_headroom']:,.1f}"
        + (f"; one job feeds up to {r['driver_max_gpus']:,} GPUs at one core: split larger fleets "
           "into jobs)" if r.get("driver_max_gpus") else ")"),
        *([f"  writer                   {r['writer_cores_needed']:.3f} of one core: "
           f"--writers {r['writers_needed']} (each at most {WRITER_CORES_EACH} of a core)"]
          if r.get("writer_cores_needed") is not None else []),
        f"  object store per node    {r['object_store_gb_per_node_needed']:.2f} GB needed "
        f"(headroom x{r['object_store_headroom']:,.1f})",
    ]
    return "\n".join(lines)


def _engine_assumptions(a: dict[str, Any]) -> list[str]:
    """The driver, writer and object-store lines of the assumptions: measured at fleet size
    when a fleet results file was read, else the two-replica figures."""
    f = a.get("fleet")
    store = f"  object store             {a['object_store_gb_per_node']:.0f} GB per node, {a['gpus_per_node']} GPU(s) per node"
    if not f:
        return [f"  driver CPU               {a['driver_cpu_s_per_mpx']} s per output Mpx (bench_translate, "
                "2 replicas; no fleet results read)",
                f"{store}, {a['chunks_in_flight_per_replica']} chunks in flight per replica"]
    return [f"  fleet results            {f['source']}",
            f"  driver CPU               {1e6 * f['driver_cpu_s_per_tile']:.0f} us per tile "
            f"(measured at {f['replicas']} replicas)",
            f"  writer CPU               {1e6 * f['writer_cpu_s_per_tile']:.0f} us per tile",
            f"{store}, {f['object_store_mb_per_replica']:.3f} MB per replica measured with "
            f"{f['bench_tile_mb'] * 1e3:.0f} kB tiles, scaled to the projected tile"]
