"""sarray.models."""
