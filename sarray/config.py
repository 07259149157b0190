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

# A replica call's model time that the engine aims for: the calls of a fast replica (a few-step
# sampler on a GPU, the identity stand-in) take more tiles, up to TranslateConfig.max_batch_size,
# until one lasts about this long. A Ray call costs the driver one to a few milliseconds of CPU
# however many tiles it carries (measured on 2 slow cores); half a second of model time per call
# keeps that under 1%. The job's tail (single-tile calls) is unchanged.
BATCH_TARGET_S = 0.5
# The replica calls per second the driver aims to stay under, whatever each call's time: a
# fleet of slow replicas (GPUs at seconds per tile) asks for tiles at replicas / tile_s per
# second, and its calls take that rate / DRIVER_CALLS_PER_S tiles (up to max_batch_size), so the
# driver's Ray cost stays flat as the fleet grows. Measured by benchmarks/bench_fleet.py (8
# replicas at 10 tiles/s, 60 scenes): 4.9 ms of driver CPU per tile with calls of 2 tiles,
# 3.9 with 4 (``--config batch_size=4``), about 4 ms per call.
DRIVER_CALLS_PER_S = 2.5

# Attempts of one tile before the translate job stops with an error naming it.
MAX_TILE_ATTEMPTS = 3

# Attempts of one catalog commit against concurrent writers (each retry re-reads the branch
# tip and re-applies the change): enough for dozens of writers committing at the same moment.
MAX_COMMIT_ATTEMPTS = 50

# An intent (pending/<scene>.json) whose writer cannot be checked (another host) is taken as
# abandoned after this long: far beyond any single scene's ingest, so a live writer is never
# cleaned up under its feet.
STALE_INTENT_S = 6 * 3600

# Output chunks between two commits of a translate output: a killed job recomputes at most this
# many chunks on resume, and a commit (a few ms) stays negligible against the chunks' compute.
COMMIT_EVERY_CHUNKS = 16

# ... or this long between two commits, whichever comes first.
COMMIT_INTERVAL_S = 20.0

# Blended cells an assembler keeps for the neighbouring chunks that need them again (a band
# cell lies in two chunks, a corner cell in four): one row of band cells of a 16k-pixel-wide
# output at the default chunk is about 12 MiB, so this holds a few rows whatever the scene's
# height; beyond it the oldest cells are blended again (same bits, more CPU).
CELL_CACHE_MB = 64

# Ingest writes a scene in waves of whole write-block rows, each about this many output pixels
# (per polarisation) and computed on its own: dask may otherwise read bands of a wide swath far
# ahead of their writes (a calibrated IW SLC swath peaked at 2.8 GB in one pass). A wave of
# 32 Mpx keeps a 25k-pixel-wide swath to one block row and still gives both cores ~25 tasks.
INGEST_WAVE_MPX = 32

# Chunks in flight per replica (ready, or in assembly: the ones whose predictions are held):
# enough that a replica never waits for the assembly of the previous scene's last rows (a scene
# boundary releases two rows of chunks at once), few enough that the predictions waiting in the
# object store stay bounded whatever the scene's size (about 24 x 18 / 4 predictions per
# replica). The projection sizes the object store from it.
CHUNKS_IN_FLIGHT_PER_REPLICA = 24

# Object storage that stops answering for a while (throttling, a failover, a network blip) is
# waited out by the clients' own retries, never by a loop of sarray's: Icechunk's
# (StorageRetriesSettings, every repository sarray opens) and obstore's (retry_config, the
# archive's plain objects and the products read from a bucket). Each request is tried up to
# S3_MAX_TRIES times, the waits doubling from S3_INITIAL_BACKOFF_MS up to S3_MAX_BACKOFF_MS:
# about 45 s of outage survived by any one request; beyond it, one line naming the endpoint,
# and a rerun resumes (tests/archive/test_s3_outage.py). SARRAY_S3_MAX_TRIES overrides the tries
# (read where the clients are made: a job's Ray workers inherit it from the driver).
S3_MAX_TRIES = 10
S3_INITIAL_BACKOFF_MS = 200
S3_MAX_BACKOFF_MS = 10_000
