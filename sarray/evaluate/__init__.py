"""sarray.evaluate."""
