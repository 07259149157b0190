"""sarray.tiles."""
