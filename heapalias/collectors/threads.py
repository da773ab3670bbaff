"""How many threads a parallel loop runs on: by default one per core this process may use.

``threads=1`` runs the single-thread loop itself; more run the parallel one
(cext/mark_parallel.c, cext/cheney_parallel.c), each thread joined before the call
returns.
"""

from __future__ import annotations

import os

from ..backing import require_int
from ..errors import InvalidArgument
from ..native import lib


def default_threads() -> int:
    """One thread per core this process may run on (its CPU affinity)."""
    return len(os.sched_getaffinity(0))


def require_threads(threads: int | None) -> int:
    """``threads`` checked (1 to ``HA_MAX_THREADS``), or :func:`default_threads` for None."""
    if threads is None:
        return default_threads()
    threads = require_int(threads, "threads")
    if not 1 <= threads <= lib.HA_MAX_THREADS:
        raise InvalidArgument(f"threads must lie in 1..{lib.HA_MAX_THREADS}, not {threads}")
    return threads
