"""Benchmarks and the stale-read checker (see docs/benchmarks.md)."""
