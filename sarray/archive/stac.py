"""Scenes as STAC Items, the catalog as a STAC Collection (pystac).

Each Item carries the scene's footprint (the image corners mapped to lon/lat, so rotated grids
get their true outline), the acquisition time, the SAR extension (polarisations, frequency band
where the sensor is known) and the projection extension (CRS, exact transform, shape), and one
asset: the scene's Icechunk repository, which ``Archive(...).open_scene`` reads.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

from sarray.archive.catalog import parse_time
from sarray.archive.layout import SCENES_GROUP, SceneRecord

# Radar band of the sensors sarray meets (STAC sar:frequency_band).
FREQUENCY_BANDS = {"sentinel-1": "C", "umbra": "X", "capella": "X", "terrasar": "X",
                   "tandem": "X", "iceye": "X", "uavsar": "L", "nisar": "L", "alos": "L",
                   "radarsat": "C", "sethi": "X", "mstar": "X"}
ICECHUNK_MEDIA_TYPE = "application/vnd.zarr+icechunk"


def _band(sensor: str) -> str | None:
    low = sensor.lower()
    return next((b for k, b in FREQUENCY_BANDS.items() if k in low), None)


def _footprint(archive: Any, rec: SceneRecord, ds: Any) -> dict[str, Any] | None:
    """A GeoJSON polygon of the scene's corners in lon/lat (None without georeferencing)."""
    from pyproj import CRS, Transformer

    from sarray.archive.describe import pixel_corners, scene_crs_wkt, scene_geotransform

    gt, wkt = scene_geotransform(ds), scene_crs_wkt(ds)
    if gt is not None and wkt:
        corners = pixel_corners(gt, rec.shape[1:])
        tr = Transformer.from_crs(CRS.from_wkt(wkt), CRS.from_epsg(4326), always_xy=True)
        ring = [list(tr.transform(x, y)) for x, y in corners]
    elif rec.bbox_lonlat is not None:
        w0, s0, e0, n0 = rec.bbox_lonlat
        ring = [[w0, s0], [e0, s0], [e0, n0], [w0, n0]]
    else:
        return None
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def scene_item(archive: Any, scene_id: str) -> Any:
    """The STAC Item of one catalogued scene."""
    import pystac
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.sar import SarExtension

    from sarray.archive.describe import scene_crs_wkt, scene_geotransform

    rec = archive.record(scene_id)
    ds = archive.open_scene(scene_id)
    geometry = _footprint(archive, rec, ds)
    bbox = list(rec.bbox_lonlat) if rec.bbox_lonlat else None
    props: dict[str, Any] = {
        "platform": rec.sensor, "sarray:platform_kind": rec.platform, "sarray:units": rec.units,
        "sarray:quantity": ds.attrs.get("quantity"), "sarray:snapshot": ds.encoding.get("snapshot"),
    }
    when = parse_time(rec.acquisition_time) if rec.acquisition_time else None
    if when is None:  # STAC needs a time: the ingest time, said so
        ingested = ds.attrs.get("ingested_at")
        t = parse_time(ingested) if ingested else dt.datetime.now(dt.timezone.utc)
        props.update({"start_datetime": t.isoformat(), "end_datetime": t.isoformat(),
                      "sarray:acquisition_time_unknown": True})
    if ds.attrs.get("provenance"):
        props["sarray:provenance"] = ds.attrs["provenance"]
    item = pystac.Item(id=scene_id, geometry=geometry, bbox=bbox, datetime=when, properties=props)
    location = archive.scene_location(scene_id)
    item.add_asset("backscatter", pystac.Asset(
        href=archive.location.child(SCENES_GROUP, location).url, media_type=ICECHUNK_MEDIA_TYPE,
        roles=["data"], title=f"backscatter (pol, y, x), {rec.units}",
        extra_fields={"sarray:archive": archive.url, "sarray:scene_id": scene_id}))
    sar = SarExtension.ext(item, add_if_missing=True)
    sar.polarizations = [pystac.extensions.sar.Polarization(p) for p in rec.polarisations
                         if p in ("HH", "HV", "VH", "VV")]
    sar.instrument_mode = str(ds.attrs.get("mode") or "unknown")
    band = _band(rec.sensor)
    if band is not None:
        sar.frequency_band = pystac.extensions.sar.FrequencyBand(band)
    sar.product_type = "synthetic" if rec.platform == "synthetic" else str(ds.attrs.get("product_type") or rec.units)
    if rec.pixel_spacing_m:
        sar.pixel_spacing_azimuth, sar.pixel_spacing_range = rec.pixel_spacing_m
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    wkt = scene_crs_wkt(ds)
    proj.wkt2 = wkt
    proj.shape = list(rec.shape[1:])
    gt = scene_geotransform(ds)
    if gt is not None:
        c, a, b, f, d, e = gt
        proj.transform = [a, b, c, d, e, f]
    return item


def write_stac(archive: Any, scene_ids: list[str] | None, out: str | Path) -> Path | str:
    """Write Items (and, for several scenes, a Collection) under ``out``: a folder, or
    ``s3://bucket/prefix`` (written locally, then uploaded with ``collection.json`` last, so
    that a reader never finds a collection whose items are not there yet). The catalog is
    self-contained (relative links), so both read the same.

    Returns:
        The path (URL) of ``collection.json``, or of the single Item's JSON file.
    """
    from sarray.archive.location import is_s3_url, s3_destination, upload_file

    if not is_s3_url(out):
        return _write_stac(archive, scene_ids, Path(out))
    loc = s3_destination(os.fspath(out).rstrip("/"), what="out")
    with tempfile.TemporaryDirectory(prefix="sarray-stac-") as tmp:
        top = _write_stac(archive, scene_ids, Path(tmp))
        files = sorted((p for p in Path(tmp).rglob("*") if p.is_file()), key=lambda p: p == top)
        for f in files:
            upload_file(f, loc.child(f.relative_to(tmp).as_posix()), what="out")
        return loc.child(top.relative_to(tmp).as_posix()).url


def _write_stac(archive: Any, scene_ids: list[str] | None, out: Path) -> Path:
    import pystac

    ids = scene_ids if scene_ids is not None else archive.catalog_repo().ids()
    items = [scene_item(archive, sid) for sid in ids]
    if scene_ids is not None and len(items) == 1:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{items[0].id}.json"
        items[0].set_self_href(str(path))
        items[0].save_object(include_self_link=False, dest_href=str(path))
        return path
    boxes = [i.bbox for i in items if i.bbox]
    spatial = [[min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes)]] if boxes else [[-180, -90, 180, 90]]
    times = [i.datetime or parse_time(i.properties["start_datetime"]) for i in items]
    temporal = [[min(times), max(times)]] if times else [[None, None]]
    coll = pystac.Collection(
        id=archive.location.name.replace(".", "_") or "sarray",
        description=f"Scenes of the sarray archive {archive.url}",
        extent=pystac.Extent(pystac.SpatialExtent(spatial), pystac.TemporalExtent(temporal)),
        license="other",
    )
    for item in items:
        coll.add_item(item)
    coll.normalize_hrefs(str(out))
    coll.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out / "collection.json"
