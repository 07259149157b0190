"""The real high-resolution training data shipped in ``../shared/data``, ingested into an archive.

Four sources, each a target set for training (all finer than the satellite scenes sarray
translates):

- ``umbra``: Umbra-04 X-band spotlight GEC, Mount Yasur, 0.59 m, 8-bit DN (training split).
- ``spacenet6``: Capella/MetaSensing airborne X-band quad-pol, Rotterdam, 2.5 m (complex,
  ingested as amplitude), one stacked 4-pol scene.
- ``uavsar``: UAVSAR L-band HH amplitudes, Grand Mesa, 5.3 m: two dates, two scenes.
- ``mstar``: MSTAR X-band target chips, about 0.3 m, 8-bit JPEG, one scene per chip
  (``mstar-c<class>-<n>``).

:data:`DEFAULT_VAL_SCENES` holds out, by scene, the second UAVSAR date and MSTAR classes 8 and 9,
and, by area (ingested as scenes of their own), the last :data:`UMBRA_VAL_ROWS` rows of the Umbra
scene and the last :data:`SPACENET6_VAL_ROWS` rows of SpaceNet 6: the sub-metre single-look
held-out data that quality is reported on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sarray.errors import ConfigError

UAVSAR_VAL = "uavsar-grand-mesa-amp2"
UMBRA_ROWS, UMBRA_VAL_ROWS = 1500, 300  # of umbra_yasur_train.tif (1500 x 2000)
SPACENET6_ROWS, SPACENET6_VAL_ROWS = 200, 64  # of the 200 x 200 SpaceNet 6 rasters
UMBRA_VAL = "umbra-yasur-val"
SPACENET6_VAL = "spacenet6-rotterdam-val"
#: MSTAR classes held out for validation (class index = folder name).
MSTAR_VAL_CLASSES: tuple[int, ...] = (8, 9)
MSTAR_CLASSES: tuple[int, ...] = tuple(range(10))
MSTAR_PER_CLASS = 10


def mstar_scene_id(cls: int, n: int) -> str:
    """Scene id of MSTAR chip ``n`` (1-based) of class ``cls``."""
    return f"mstar-c{cls}-{n:05d}"


DEFAULT_VAL_SCENES: tuple[str, ...] = (UAVSAR_VAL, UMBRA_VAL, SPACENET6_VAL) + tuple(
    mstar_scene_id(c, n) for c in MSTAR_VAL_CLASSES for n in range(1, MSTAR_PER_CLASS + 1)
)


def ingest_training_sources(data_dir: str | Path, archive: str | Path) -> list[Any]:
    """Ingest the four high-resolution sources of ``data_dir`` into ``archive`` (idempotent).

    Args:
        data_dir: the shared data folder (with ``umbra/`` and ``airborne/``).
        archive: the archive to create or extend.

    Returns:
        The ingest results, one per scene.
    """
    from sarray.ingest.config import IngestConfig, Window
    from sarray.ingest.run import ingest

    d = Path(data_dir)
    air = d / "airborne"
    if not (d / "umbra" / "umbra_yasur_train.tif").is_file() or not air.is_dir():
        raise ConfigError(
            f"`data_dir` ({str(d)!r}) lacks umbra/umbra_yasur_train.tif or airborne/: pass the "
            "shared data folder"
        )
    results: list[Any] = []
    umbra = d / "umbra" / "umbra_yasur_train.tif"
    cut = UMBRA_ROWS - UMBRA_VAL_ROWS
    for sid, win in (("umbra-yasur-train", Window(row=0, col=0, height=cut, width=2000)),
                     (UMBRA_VAL, Window(row=cut, col=0, height=UMBRA_VAL_ROWS, width=2000))):
        results += ingest([umbra], archive, IngestConfig(
            platform="spaceborne", sensor="Umbra-04", pols=("VV",), scene_id=sid, window=win))
    sn6 = sorted((air / "spacenet6-capella").glob("sar_*.tif"))
    cut = SPACENET6_ROWS - SPACENET6_VAL_ROWS
    for sid, win in (("spacenet6-rotterdam", Window(row=0, col=0, height=cut, width=200)),
                     (SPACENET6_VAL, Window(row=cut, col=0, height=SPACENET6_VAL_ROWS, width=200))):
        results += ingest(sn6, archive, IngestConfig(
            platform="airborne", sensor="MetaSensing", grouping="stack", scene_id=sid, window=win))
    for k, sid in ((1, "uavsar-grand-mesa-amp1"), (2, UAVSAR_VAL)):
        results += ingest([air / "uavsar-grand-mesa" / f"uavsar_utm.amp{k}.real.tif"], archive,
                          IngestConfig(platform="airborne", sensor="UAVSAR", pols=("HH",), scene_id=sid))
    for cls in MSTAR_CLASSES:
        chips = sorted((air / "mstar-chips" / str(cls)).glob("*.jpeg"))[:MSTAR_PER_CLASS]
        for n, chip in enumerate(chips, start=1):
            results += ingest([chip], archive, IngestConfig(
                platform="airborne", sensor="MSTAR", spacing_m=0.3, pols=("HH",),
                scene_id=mstar_scene_id(cls, n)))
    return results
