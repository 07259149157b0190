"""What `sarray info` and `sarray ls` report about scenes."""

from __future__ import annotations

from typing import Any

from sarray.archive.layout import VAR_BACKSCATTER, VAR_SPATIAL_REF
from sarray.archive.store import Archive


def scene_geotransform(ds: Any) -> tuple[float, ...] | None:
    """The exact GDAL geotransform of a scene, parsed from ``spatial_ref.GeoTransform``."""
    if VAR_SPATIAL_REF not in ds.variables:
        return None
    text = ds[VAR_SPATIAL_REF].attrs.get("GeoTransform")
    return tuple(float(v) for v in text.split()) if text else None


def scene_crs_wkt(ds: Any) -> str | None:
    """The CRS WKT of the scene (of its transform, or of its GCPs)."""
    if VAR_SPATIAL_REF not in ds.variables:
        return None
    return ds[VAR_SPATIAL_REF].attrs.get("crs_wkt")


def pixel_corners(gt: tuple[float, ...], shape: tuple[int, int]) -> list[tuple[float, float]]:
    """The CRS coordinates of a grid's four corners, in ring order (top left, top right,
    bottom right, bottom left), from its GDAL geotransform (rotation included)."""
    c, a, b, f, d, e = gt
    h, w = shape
    return [(c + a * col + b * row, f + d * col + e * row)
            for row, col in ((0, 0), (0, w), (h, w), (h, 0))]


def describe_scene(archive: Archive, scene_id: str) -> dict[str, Any]:
    """Shape, spacing, CRS, geotransform, extent and statistics of one scene.

    Returns:
        A JSON-ready dict; ``geotransform`` holds the six GDAL coefficients
        (c, a, b, f, d, e), ``extent`` the footprint's min/max in CRS units.
    """
    rec = archive.record(scene_id)
    ds = archive.open_scene(scene_id)
    gt = scene_geotransform(ds)
    h, w = ds[VAR_BACKSCATTER].shape[1:]
    extent = None
    if gt is not None:
        xs, ys = zip(*pixel_corners(gt, (h, w)))
        extent = [min(xs), min(ys), max(xs), max(ys)]
    gcps = ds[VAR_SPATIAL_REF].attrs.get("gcps") if VAR_SPATIAL_REF in ds.variables else None
    if isinstance(gcps, str):  # rioxarray stores the GCPs as a GeoJSON string
        import json

        gcps = json.loads(gcps)
    return {
        "scene_id": scene_id,
        "shape": list(ds[VAR_BACKSCATTER].shape),
        "dims": list(ds[VAR_BACKSCATTER].dims),
        "chunks": list(ds[VAR_BACKSCATTER].encoding.get("chunks", ())),
        "polarisations": list(rec.polarisations),
        "units": rec.units,
        "quantity": ds.attrs.get("quantity"),
        "sensor": rec.sensor,
        "platform": rec.platform,
        "acquisition_time": rec.acquisition_time,
        "pixel_spacing_m": list(rec.pixel_spacing_m) if rec.pixel_spacing_m else None,
        "crs_wkt": scene_crs_wkt(ds),
        "georeferencing": ds.attrs.get("georeferencing"),
        "geotransform": list(gt) if gt else None,
        "gcp_count": len(gcps["features"]) if isinstance(gcps, dict) else 0,
        "extent": extent,
        "bbox_lonlat": list(rec.bbox_lonlat) if rec.bbox_lonlat else None,
        "calibration": ds.attrs.get("calibration"),
        "source_files": ds.attrs.get("source_files"),
        "source_sha256": rec.source_sha256,
        "statistics": ds.attrs.get("statistics"),
        "archive": archive.url,
        "snapshot": ds.encoding.get("snapshot"),
        "provenance": ds.attrs.get("provenance"),
    }
