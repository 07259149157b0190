"""Training pairs from the archive: high-resolution tiles and their degraded, satellite-like twins.

A :class:`PairSampler` draws random tiles from the high-resolution scenes of an archive (targets)
and degrades each on the fly (:mod:`sarray.train.degrade`) into the condition the model learns
to translate from. Everything comes from the archive's Zarr layout: ``backscatter`` (pol, y, x)
and the scene attributes (units, quantity, polarisations, pixel spacing, sensor).

Split by scene: a scene is either in the training split or in the validation split, never both
(tiles of one scene are spatially correlated; splitting by tile would leak). Validation scenes
are named (``val_scenes``) and/or drawn by a stable hash of the scene id (``val_fraction``).

Determinism: sample ``index`` of a split is a pure function of ``(seed, split, index)``; the
training loop asks for indices from (step, rank), so a resumed run sees the same tiles.

Normalisation: both the target and the condition are mapped to model space with the statistics
of the *degraded* scene, because at inference the replica only knows the satellite scene's
statistics (:class:`sarray.models.replica.Replica` normalises and denormalises with them).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sarray.archive import layout
from sarray.errors import ConfigError
from sarray.models.meta import SceneMeta
from sarray.models.normalise import NormalisationConfig, compute_statistics, normalise, to_rgb
from sarray.models.prompt import build_prompt
from sarray.train.degrade import DegradationConfig, coarse_spacing, degrade

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val")
POL_MODES: tuple[str, ...] = ("single", "auto")
_CO = ("HH", "VV")
_CROSS = ("HV", "VH")
# Scene statistics of the degraded scene are computed on at most this many fine pixels (a
# central crop): enough for stable moments, bounded memory on large scenes.
_STATS_MAX_PX = 2048 * 2048
# A tile with more than this fraction of no-data (NaN) pixels is redrawn.
_MAX_INVALID_FRACTION = 0.05
_MAX_DRAWS = 64


TARGETS = ("speckled", "reflectivity")


@dataclass(frozen=True, kw_only=True)
class PairConfig:
    """Where training pairs come from and how they are made.

    Args:
        archive: the archive path.
        scenes: scene ids to use; None: every scene with spacing <= ``max_spacing_m``.
        max_spacing_m: only scenes at least this fine are high-resolution targets.
        val_scenes: scene ids held out for validation.
        val_fraction: additionally hold out scenes whose id hashes below this fraction.
        tile_px: edge of a target tile (fine pixels); the condition is ``tile_px // scale``.
        degradation: the degradation model (scale, low-pass, coarse speckle).
        pol_mode: ``single`` (each tile one random polarisation) or ``auto`` (a co-pol +
            cross-pol pair where the scene has one, else single).
        normalisation: SAR -> model space (the replica's default).
        target: what the network learns to generate: ``speckled`` (the fine tile itself) or
            ``reflectivity`` (its local mean of intensity over
            :data:`sarray.stitch.speckle.REFLECTIVITY_PX` pixels: structure without speckle,
            which the engine multiplies by the sensor's speckle).
        dequantise: integer DN tiles (8-bit products clip dark speckle to 0) get a uniform
            dither within their quantisation step, so zeros become small amplitudes.
        seed: seed of the tile sampler.
    """

    archive: str
    scenes: tuple[str, ...] | None = None
    max_spacing_m: float = 6.0
    val_scenes: tuple[str, ...] = ()
    val_fraction: float = 0.0
    tile_px: int = 128
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    pol_mode: str = "auto"
    normalisation: NormalisationConfig = field(default_factory=NormalisationConfig)
    target: str = "speckled"
    dequantise: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"`target` ({self.target!r}) must be one of {TARGETS}")
        if not isinstance(self.archive, str) or not self.archive:
            raise ConfigError(f"`archive` ({self.archive!r}) must be an archive path")
        if self.scenes is not None and (not isinstance(self.scenes, tuple) or not self.scenes):
            raise ConfigError(f"`scenes` ({self.scenes!r}) must be a non-empty tuple of ids or None")
        if not isinstance(self.val_scenes, tuple):
            raise ConfigError(f"`val_scenes` ({self.val_scenes!r}) must be a tuple of scene ids")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"`val_fraction` ({self.val_fraction}) must be in [0, 1)")
        if not self.max_spacing_m > 0:
            raise ConfigError(f"`max_spacing_m` ({self.max_spacing_m}) must be positive")
        scale = self.degradation.scale
        if not isinstance(self.tile_px, int) or self.tile_px < scale or self.tile_px % scale:
            raise ConfigError(
                f"`tile_px` ({self.tile_px!r}) must be a positive multiple of the degradation "
                f"scale ({scale}), e.g. {scale * 32}"
            )
        if self.pol_mode not in POL_MODES:
            raise ConfigError(f"`pol_mode` ({self.pol_mode!r}) must be one of {POL_MODES}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairConfig:
        d = dict(data)
        if isinstance(d.get("degradation"), dict):
            d["degradation"] = DegradationConfig.from_dict(d["degradation"])
        if isinstance(d.get("normalisation"), dict):
            d["normalisation"] = NormalisationConfig.from_dict(d["normalisation"])
        for key in ("scenes", "val_scenes"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(**d)


def is_validation_scene(scene_id: str, config: PairConfig) -> bool:
    """True when ``scene_id`` belongs to the validation split (named, or by stable hash)."""
    if scene_id in config.val_scenes:
        return True
    if config.val_fraction <= 0:
        return False
    digest = hashlib.sha256(f"{config.seed}:{scene_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < config.val_fraction


@dataclass
class _Scene:
    scene_id: str
    values: np.ndarray  # (P, y, x) float32, archive units
    attrs: dict[str, Any]
    coarse_stats: dict[str, Any]
    weight: float


def _pick_pols(pols: list[str], mode: str, rng: np.random.Generator) -> list[int]:
    """Indices of the polarisations of one sample."""
    upper = [p.upper() for p in pols]
    if mode == "auto":
        pairs = [(i, j) for i, a in enumerate(upper) for j, b in enumerate(upper)
                 if a in _CO and b in _CROSS and a[0] == b[0]]
        if pairs:
            return list(pairs[int(rng.integers(len(pairs)))])
    return [int(rng.integers(len(pols)))]


class PairSampler:
    """Random (target, condition) tiles from one split of the archive's high-resolution scenes.

    Args:
        config: the pair configuration.
        split: ``train`` or ``val``.

    Raises:
        ConfigError: when the split holds no scene large enough for one tile.
    """

    def __init__(self, config: PairConfig, split: str = "train") -> None:
        from sarray.archive.store import Archive

        if split not in SPLITS:
            raise ConfigError(f"`split` ({split!r}) must be one of {SPLITS}")
        self.config = config
        self.split = split
        archive = Archive(config.archive).require()
        records = archive.find()
        if config.scenes is not None:
            known = {r.scene_id for r in records}
            missing = sorted(set(config.scenes) - known)
            if missing:
                raise ConfigError(
                    f"`scenes` names {missing}, not in archive {config.archive!r}: check "
                    "`sarray ls` for the ids"
                )
            records = [r for r in records if r.scene_id in config.scenes]
        unknown_val = sorted(set(config.val_scenes) - {r.scene_id for r in records})
        if unknown_val:
            raise ConfigError(
                f"`val_scenes` names {unknown_val}, not among the training candidates of archive "
                f"{config.archive!r}: check the ids with `sarray ls`"
            )
        scale = config.degradation.scale
        self.scenes: list[_Scene] = []
        self.skipped: list[str] = []
        for rec in records:
            spacing = rec.pixel_spacing_m
            if spacing is None or max(spacing) > config.max_spacing_m:
                continue
            if is_validation_scene(rec.scene_id, config) != (split == "val"):
                continue
            _, h, w = rec.shape
            if h < config.tile_px or w < config.tile_px:
                self.skipped.append(rec.scene_id)
                logger.warning("scene %s (%dx%d) is smaller than one %d px tile: skipped",
                               rec.scene_id, h, w, config.tile_px)
                continue
            ds = archive.open_scene(rec.scene_id)
            values = np.asarray(ds[layout.VAR_BACKSCATTER].values, dtype=np.float32)
            attrs = dict(ds.attrs)
            self.scenes.append(_Scene(
                scene_id=rec.scene_id, values=values, attrs=attrs,
                coarse_stats=self._coarse_statistics(values, attrs),
                weight=float(h * w),
            ))
        if not self.scenes:
            raise ConfigError(
                f"split {split!r} of archive {config.archive!r} has no scene with spacing <= "
                f"{config.max_spacing_m} m and at least {config.tile_px} px on each side "
                f"(val_scenes={list(config.val_scenes)}, val_fraction={config.val_fraction}): "
                "ingest high-resolution scenes, lower `tile_px` or change the split"
            )
        weights = np.array([s.weight for s in self.scenes])
        self._p = weights / weights.sum()
        del scale

    @property
    def scene_ids(self) -> list[str]:
        """The scene ids of this split."""
        return [s.scene_id for s in self.scenes]

    def _coarse_statistics(self, values: np.ndarray, attrs: dict[str, Any]) -> dict[str, Any]:
        """Statistics of the degraded scene (central crop of at most _STATS_MAX_PX pixels)."""
        cfg = self.config
        _, h, w = values.shape
        side = int(np.sqrt(_STATS_MAX_PX))
        r0, c0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
        crop = values[:, r0 : r0 + side, c0 : c0 + side]
        rng = np.random.default_rng([cfg.seed, 7919])
        coarse = degrade(crop, units=attrs[layout.ATTR_UNITS], quantity=attrs[layout.ATTR_QUANTITY],
                         config=cfg.degradation, rng=rng)
        return compute_statistics(coarse, units=attrs[layout.ATTR_UNITS],
                                  quantity=attrs[layout.ATTR_QUANTITY],
                                  polarisations=list(attrs[layout.ATTR_POLS]))

    def sample(self, index: int) -> dict[str, Any]:
        """Pair number ``index`` of this split (deterministic).

        Returns:
            ``{"target": (P, T, T) float32, "condition": (P, T/s, T/s) float32`` (archive units),
            ``"meta"``: the condition's scene attributes (coarse spacing, degraded statistics,
            the replica's :class:`SceneMeta` keys), ``"scene_id"``, ``"window"`` (row, col),
            ``"pols"``, ``"prompt"``, ``"target_spacing_m"``, ``"condition_spacing_m"``}.
        """
        cfg = self.config
        split_id = SPLITS.index(self.split)
        rng = np.random.default_rng([cfg.seed, split_id, int(index)])
        T = cfg.tile_px
        for _ in range(_MAX_DRAWS):
            scene = self.scenes[int(rng.choice(len(self.scenes), p=self._p))]
            _, h, w = scene.values.shape
            row, col = int(rng.integers(h - T + 1)), int(rng.integers(w - T + 1))
            pols_i = _pick_pols(list(scene.attrs[layout.ATTR_POLS]), cfg.pol_mode, rng)
            target = scene.values[pols_i, row : row + T, col : col + T]
            # Only NaN is no-data: zeros are real (8-bit products quantise dark speckle to 0).
            bad = ~np.isfinite(target)
            if bad.mean() <= _MAX_INVALID_FRACTION:
                break
        else:
            raise ConfigError(
                f"no tile of split {self.split!r} with at most {_MAX_INVALID_FRACTION:.0%} no-data "
                f"after {_MAX_DRAWS} draws: check the scenes' no-data"
            )
        attrs = scene.attrs
        units, quantity = attrs[layout.ATTR_UNITS], attrs[layout.ATTR_QUANTITY]
        target = np.where(bad, np.nan, target).astype(np.float32)
        if cfg.dequantise and units == "dn" and np.array_equal(target[~bad], np.round(target[~bad])):
            target = (target + rng.uniform(0.0, 1.0, target.shape)).astype(np.float32)
        condition = degrade(target, units=units, quantity=quantity, config=cfg.degradation, rng=rng)
        pols = [str(attrs[layout.ATTR_POLS][i]) for i in pols_i]
        meta = {
            layout.ATTR_UNITS: units,
            layout.ATTR_QUANTITY: quantity,
            layout.ATTR_POLS: pols,
            layout.ATTR_SPACING_M: list(coarse_spacing(attrs[layout.ATTR_SPACING_M], cfg.degradation.scale)),
            layout.ATTR_SENSOR: attrs.get(layout.ATTR_SENSOR) or "unknown",
            layout.ATTR_PLATFORM: "spaceborne",
            layout.ATTR_STATS: {p: scene.coarse_stats[p] for p in pols},
        }
        prompt = build_prompt(SceneMeta.from_dict(meta), scale=cfg.degradation.scale)
        return {
            "target": target,
            "train_target": reflectivity_of(target, units=units, quantity=quantity)
            if cfg.target == "reflectivity" else target,
            "condition": condition,
            "meta": meta,
            "scene_id": scene.scene_id,
            "window": (row, col),
            "pols": pols,
            "prompt": prompt,
            "target_spacing_m": tuple(float(s) for s in attrs[layout.ATTR_SPACING_M]),
            "condition_spacing_m": tuple(meta[layout.ATTR_SPACING_M]),
        }


def reflectivity_of(values: np.ndarray, *, units: str, quantity: str) -> np.ndarray:
    """The despeckled target: local mean of intensity over REFLECTIVITY_PX (archive units)."""
    from scipy.ndimage import uniform_filter

    from sarray.archive.radiometry import from_intensity, to_intensity
    from sarray.stitch.speckle import REFLECTIVITY_PX

    i = to_intensity(values.astype(np.float64), units=units, quantity=quantity)
    bad = ~np.isfinite(i)
    filled = np.where(bad, 0.0, i)
    num = uniform_filter(filled, (1, REFLECTIVITY_PX, REFLECTIVITY_PX), mode="reflect")
    den = uniform_filter((~bad).astype(np.float64), (1, REFLECTIVITY_PX, REFLECTIVITY_PX), mode="reflect")
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, np.maximum(num, 0.0) / den, np.nan)  # running sums can dip below 0
    return np.where(bad, np.nan, from_intensity(r, units=units, quantity=quantity)).astype(np.float32)


def to_model_space(pair: dict[str, Any], normalisation: NormalisationConfig) -> tuple[np.ndarray, np.ndarray]:
    """A pair's target and condition as model RGB in [0, 1]: ``(3, T, T)`` and ``(3, t, t)``.

    The target is the pair's ``train_target`` (the tile, or its reflectivity). Uses the
    condition's (degraded) statistics for both, as the replica does at inference; no-data
    becomes 0, as in the replica.
    """
    meta = pair["meta"]
    out = []
    for key in ("train_target", "condition"):
        x = normalise(pair.get(key, pair["target"]), config=normalisation, units=meta[layout.ATTR_UNITS],
                      quantity=meta[layout.ATTR_QUANTITY], polarisations=meta[layout.ATTR_POLS],
                      statistics=meta[layout.ATTR_STATS])
        x = np.where(np.isfinite(x), x, 0.0)
        out.append(to_rgb(x, meta[layout.ATTR_POLS]).astype(np.float32))
    return out[0], out[1]
