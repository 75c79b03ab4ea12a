"""Benchmarks: python -m bench (and python -m bench.NAME)."""

import os

# As the site sets it (mysite/__init__.py), before any benchmark imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
