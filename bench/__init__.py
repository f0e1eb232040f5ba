"""Benchmarks of the writeback against the limits of its own parts: `make bench`."""
