"""Benchmarks: asv suite (``bench_*.py``) and a side-by-side runner (``python -m benchmarks``).

See ``benchmarks/_harness.py`` for how to add a case.
"""
