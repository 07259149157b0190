"""Runtime knobs: named defaults, each with the reason for its value.

Science parameters (scale, calibration, normalisation) never live here or in environment
variables; they are fields of the stage configs.
"""

from __future__ import annotations

# GDAL's block cache while ingesting. Each source window is read exactly once, so a cache only
# has to hold the blocks of the windows in flight; GDAL's default (5% of RAM) would otherwise
# grow with the scene and make peak memory depend on its size.
GDAL_CACHE_MB = 64

# Tiles read ahead of the model per replica: one batch in flight on the replica and one ready
# to send hides the read + transfer time behind the model without buffering the scene.
PREFETCH_BATCHES_PER_REPLICA = 2

# Attempts of one tile before the translate job stops with an error naming it.
MAX_TILE_ATTEMPTS = 3
