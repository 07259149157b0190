"""The configuration of a translate job: one frozen dataclass that every part of the engine reads.

It lives apart from the job's entry point (:mod:`sarray.engine.translate`) so that the parts the
entry point starts (the pool, the output writer) can import it without importing the entry
point: the engine's modules import one another in one direction only (a test keeps it so).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sarray.archive.layout import validate_scene_id
from sarray.errors import ConfigError
from sarray.stitch.speckle import OUTPUTS
from sarray.tiles.grid import SCALES, TileSpec

CONSISTENCY = ("multilook", "off")
ON_UNFINISHED = ("resume", "restart")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True, kw_only=True)
class TranslateConfig:
    """What to translate and how.

    Args:
        scale: output spacing = input spacing / scale; 1 (same spacing) is for
            simulated-to-real on scenes of platform ``simulated``.
        model: ``tiny`` (shipped weights), ``tiny-random`` (seeded random weights, for tests and
            benchmarks), ``sdxl`` (hub id), or a local folder in the diffusers layout.
        replicas: actors in the pool (one per GPU on GPU clusters).
        writers: output writer actors of the job; scenes are dealt among them in turn, each
            scene's merges, commits and catalog row made by its own writer. One merges and
            commits for dozens of GPUs (``benchmarks/bench_fleet.py``: its CPU per tile);
            ``sarray bench project`` says when a fleet needs more.
        chunk_px: output chunk edge (output pixels); one tile per chunk.
        halo_px: context around each tile, in input pixels; the blend band is
            ``2 * halo_px * scale`` output pixels wide.
        batch_size: tiles per actor call (two halve the Ray calls per tile; the tiles of a
            call still run one by one unless ``micro_batch`` says otherwise).
        max_batch_size: tiles per actor call at most (None: ``batch_size`` or 8, the larger).
            Calls of a fast replica grow from ``batch_size`` towards it while they last less
            than ``BATCH_TARGET_S`` of model time (:mod:`sarray.config`): fewer Ray calls per
            tile for the driver. Only with ``micro_batch`` 1, where the output does not depend
            on how tiles are batched; set it to ``batch_size`` for calls of a fixed size.
        seed: global seed mixed into every tile's noise seed.
        consistency: ``multilook`` corrects the output smoothly so that its multilook (box
            average of intensity over scale x scale) reproduces the input; ``off`` keeps the raw
            model output.
        output: ``speckled`` (the model's reflectivity times speckle with the sensor statistics
            stored with the model, :mod:`sarray.stitch.speckle`) or ``reflectivity`` (the
            despeckled image the network generates).
        speckle: which speckle statistics stored with the model to synthesise (a sensor, e.g.
            ``Umbra-04``, or ``pooled``; ``sarray model speckle`` lists them); None or ``auto``:
            each scene's own sensor's set when the model stores one (the output is written in
            the input product's units, so it keeps that product's recording), else the model's
            default.
        out_scene: output scene id; None gives ``<scene>_x<scale>``.
        on_unfinished: ``resume`` an unfinished output with the same settings, or ``restart`` it.
        max_chunks: stop after writing this many chunks (a time-boxed run; rerun to resume).
        device: ``auto``, ``cpu`` or ``cuda``.
        dtype: replica dtype (float32, float16, bfloat16).
        num_inference_steps: sampler steps; None takes the preset's default.
        micro_batch: tiles per pipeline call inside a replica. 1 keeps every tile bitwise
            independent of batching (CPU convolutions differ in the last bits when batched);
            raise it with ``batch_size`` for GPU throughput.
        replica_class: importable ``module:Class`` of the replica (tests use stand-ins).
    """

    scale: int = 4
    model: str = "tiny"
    replicas: int = 1
    writers: int = 1
    chunk_px: int = 512
    halo_px: int = 16
    batch_size: int = 2
    max_batch_size: int | None = None
    seed: int = 0
    consistency: str = "multilook"
    output: str = "speckled"
    speckle: str | None = None
    out_scene: str | None = None
    on_unfinished: str = "resume"
    max_chunks: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    num_inference_steps: int | None = None
    micro_batch: int = 1
    replica_class: str = "sarray.models.replica:Replica"

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"`scale` ({self.scale!r}) must be one of {SCALES}")
        if not isinstance(self.replicas, int) or self.replicas < 1:
            raise ConfigError(f"`replicas` ({self.replicas!r}) must be a positive integer")
        if not isinstance(self.writers, int) or self.writers < 1:
            raise ConfigError(f"`writers` ({self.writers!r}) must be a positive integer")
        if not isinstance(self.micro_batch, int) or self.micro_batch < 1:
            raise ConfigError(f"`micro_batch` ({self.micro_batch!r}) must be a positive integer")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"`batch_size` ({self.batch_size!r}) must be a positive integer")
        if self.max_batch_size is not None and (not isinstance(self.max_batch_size, int)
                                                or self.max_batch_size < self.batch_size):
            raise ConfigError(f"`max_batch_size` ({self.max_batch_size!r}) must be an integer of at "
                              f"least `batch_size` ({self.batch_size}), or None")
        if self.consistency not in CONSISTENCY:
            raise ConfigError(f"`consistency` ({self.consistency!r}) must be one of {CONSISTENCY}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"`output` ({self.output!r}) must be one of {OUTPUTS}")
        if self.on_unfinished not in ON_UNFINISHED:
            raise ConfigError(f"`on_unfinished` ({self.on_unfinished!r}) must be one of {ON_UNFINISHED}")
        if self.device not in DEVICES:
            raise ConfigError(f"`device` ({self.device!r}) must be one of {DEVICES}")
        if self.max_chunks is not None and self.max_chunks < 1:
            raise ConfigError(f"`max_chunks` ({self.max_chunks}) must be >= 1")
        if self.out_scene is not None:
            validate_scene_id(self.out_scene)
        self.tile_spec()  # chunk/halo/scale consistency

    def call_size_limit(self) -> int:
        """Tiles per replica call at most (see ``max_batch_size``)."""
        if self.micro_batch != 1:
            return self.batch_size
        return self.max_batch_size if self.max_batch_size is not None else max(self.batch_size, 8)

    def replica_config(self) -> dict[str, Any]:
        """The :class:`~sarray.models.replica.ReplicaConfig` fields for this run."""
        from sarray.models.resolve import resolve_model

        cfg = {**resolve_model(self.model), "scale": self.scale, "seed": self.seed,
               "dtype": self.dtype, "micro_batch": self.micro_batch}
        if self.num_inference_steps is not None:
            cfg["num_inference_steps"] = self.num_inference_steps
        return cfg

    def tile_spec(self) -> TileSpec:
        """Tile geometry; tiles are padded to the model preset's pixel multiple."""
        from sarray.models.presets import get_preset

        multiple = get_preset(self.replica_config()["preset"]).pixel_multiple
        return TileSpec(scale=self.scale, chunk_px=self.chunk_px, halo_px=self.halo_px,
                        pad_multiple=max(1, -(-multiple // self.scale)))

    def out_scene_for(self, scene_id: str) -> str:
        """The output scene id of ``scene_id``: ``out_scene``, or ``<scene>_x<scale>``."""
        return self.out_scene or f"{scene_id}_x{self.scale}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranslateConfig:
        return cls(**data)
