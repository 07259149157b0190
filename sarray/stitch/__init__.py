"""sarray.stitch."""
