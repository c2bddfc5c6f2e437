"""Benchmarks: switching, mixed batches, scale in characters, end to end (`neeko bench`)."""
