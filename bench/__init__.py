"""Benchmarks: measurements against real services, run by hand (``make bench``), never in CI."""
