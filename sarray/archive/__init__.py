"""The Zarr v3 archive: one group per scene, CRS kept, and a catalog of scenes."""
