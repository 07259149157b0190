"""Convert an archive of layout 1 (a plain Zarr hierarchy, catalog in the root attributes) into
the current layout (Icechunk repositories, columnar catalog, checksummed chunks)."""

from __future__ import annotations

import json
from pathlib import Path

from sarray.archive.layout import (
    ATTR_CATALOG,
    ATTR_LAYOUT_VERSION,
    LEGACY_LAYOUT_VERSION,
    SCENES_GROUP,
    VAR_BACKSCATTER,
    ArchiveLayout,
    SceneRecord,
)
from sarray.errors import ArchiveError


def migrate_archive(old: str | Path, new: str, *, progress: bool = False) -> list[str]:
    """Copy every catalogued scene of the layout-1 archive ``old`` into ``new``.

    Idempotent: scenes already in ``new`` (same source) are skipped, so an interrupted
    migration is finished by running it again. ``old`` is only read.

    Returns:
        The ids of the scenes added to ``new``.
    """
    import dask
    import xarray as xr

    from sarray.archive.store import Archive
    from sarray.archive.write import scene_encoding
    from sarray.progress import dask_progress

    old = Path(old)
    try:
        root = json.loads((old / "zarr.json").read_text())
    except (OSError, ValueError):
        raise ArchiveError(f"{old}: no readable zarr.json; not an archive of layout "
                           f"{LEGACY_LAYOUT_VERSION}") from None
    attrs = root.get("attributes", {})
    if attrs.get(ATTR_LAYOUT_VERSION) != LEGACY_LAYOUT_VERSION or ATTR_CATALOG not in attrs:
        raise ArchiveError(f"{old}: not an archive of layout {LEGACY_LAYOUT_VERSION}; "
                           "nothing to migrate")
    target = Archive(new)
    target.check_writable_target()
    added: list[str] = []
    for sid, raw in sorted(attrs[ATTR_CATALOG].items()):
        record = SceneRecord.from_dict(raw)
        if target.has_scene(sid):
            continue
        ds = xr.open_zarr(str(old), group=f"{SCENES_GROUP}/{sid}", consolidated=False,
                          zarr_format=3, decode_coords="all")
        enc = ds[VAR_BACKSCATTER].encoding
        chunk = int(enc.get("chunks", (1, 1024, 1024))[-1])
        shard = enc.get("shards")
        layout = ArchiveLayout(chunk_px=chunk, shard_px=int(shard[-1]) if shard else None)
        for v in ds.variables.values():
            v.encoding = {}
        writer = target.begin_scene(sid)
        try:
            write = ds.to_zarr(writer.store, mode="w-", zarr_format=3, consolidated=False,
                               compute=False, encoding=scene_encoding(ds, layout))
            with dask_progress(f"migrate {sid}", enabled=progress):
                dask.compute(write, scheduler="threads")
        except BaseException:
            target.discard(writer)
            raise
        res = target.commit_scene(writer, record, message=f"migrate {sid} from {old}")
        if res.status == "added":
            added.append(sid)
    target.ensure_created()
    return added
