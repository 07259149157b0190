"""sarray.testing."""
