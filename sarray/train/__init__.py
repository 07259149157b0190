"""sarray.train."""
