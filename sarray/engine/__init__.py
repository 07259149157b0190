"""sarray.engine."""
