"""Readers that turn GeoTIFF / COG / Sentinel-1 SAFE inputs into archive scenes."""
