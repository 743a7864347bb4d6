"""Benchmark suite: Pawpost and a baseline on the same machine in one run (``python -m bench``)."""
