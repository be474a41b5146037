"""What every benchmark here shares: timing one call."""

from __future__ import annotations

import time


def timed(fn):
    """(fn(), seconds it took), by the wall clock."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start
