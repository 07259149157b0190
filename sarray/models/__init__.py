"""sarray.models: SAR normalisation, model presets and the Replica (a plain class, no Ray).

Light to import: the names below load lazily, and torch is imported only when a replica or a
model component is built.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS: dict[str, str] = {
    "Replica": "sarray.models.replica",
    "ReplicaConfig": "sarray.models.replica",
    "SceneMeta": "sarray.models.meta",
    "ModelPreset": "sarray.models.presets",
    "PRESETS": "sarray.models.presets",
    "get_preset": "sarray.models.presets",
    "NormalisationConfig": "sarray.models.normalise",
    "denormalise": "sarray.models.normalise",
    "compute_statistics": "sarray.models.normalise",
    "build_prompt": "sarray.models.prompt",
    "derive_seed": "sarray.models.seeding",
    "model_info": "sarray.models.info",
    "resolve_model": "sarray.models.resolve",
    "shipped_tiny_weights": "sarray.models.weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sarray.models' has no attribute {name!r}")
