"""Helpers for tests and benchmarks: synthetic scenes, tiny archives, tiny models."""
