"""Per-tile noise seeds: a tile's output depends on what it is, never on where it ran.

The seed of a tile is a hash of (global seed, scene id, tile index), so any replica, in any
batch and in any order, draws the same noise for it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sarray.errors import ConfigError

#: Seeds are drawn in [0, 2**63): valid for ``torch.Generator.manual_seed`` on every device.
SEED_BITS = 63


def normalise_tile_index(tile_index: Any) -> int | tuple[int, ...]:
    """An int, or a tuple of ints (e.g. ``(row, col)``), from numpy or Python values.

    Raises:
        ConfigError: for anything else (floats, strings, nested sequences).
    """
    try:
        import numpy as np

        if isinstance(tile_index, np.ndarray):
            tile_index = tile_index.tolist()
        elif isinstance(tile_index, np.integer):
            tile_index = int(tile_index)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    if isinstance(tile_index, int) and not isinstance(tile_index, bool):
        return tile_index
    if isinstance(tile_index, (tuple, list)) and tile_index and all(
        isinstance(v, int) and not isinstance(v, bool) for v in tile_index
    ):
        return tuple(tile_index)
    raise ConfigError(
        f"`tile_index` ({tile_index!r}) must be an int or a non-empty tuple of ints, "
        "e.g. 17 or (3, 5)"
    )


def derive_seed(scene_id: str, tile_index: Any, global_seed: int) -> int:
    """The noise seed of one tile.

    Args:
        scene_id: the scene key.
        tile_index: the tile's index in its scene's grid (int or tuple of ints).
        global_seed: the run's seed (``ReplicaConfig.seed``).

    Returns:
        An integer in ``[0, 2**63)``; BLAKE2b of a canonical JSON encoding, so it is stable
        across processes, machines and Python versions (unlike ``hash``).
    """
    if not isinstance(scene_id, str) or not scene_id:
        raise ConfigError(f"`scene_id` ({scene_id!r}) must be a non-empty string")
    if not isinstance(global_seed, int) or isinstance(global_seed, bool):
        raise ConfigError(f"`global_seed` ({global_seed!r}) must be an int")
    index = normalise_tile_index(tile_index)
    key = json.dumps(
        [global_seed, scene_id, list(index) if isinstance(index, tuple) else index],
        separators=(",", ":"),
    )
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - SEED_BITS)
