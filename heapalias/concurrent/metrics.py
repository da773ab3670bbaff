"""Pause percentiles and minimum mutator utilization (MMU) from a mutator's stall log.

MMU(w) is the smallest share of any window of length ``w`` in which the mutator
ran rather than stalled (Cheng and Blelloch's metric for pause-free collectors):
1.0 means no window ever lost time, 0.0 that some window was all stall.
"""

from __future__ import annotations

import numpy as np

#: One stall, as the C mutator records it (ha_stall).
STALL_DTYPE = np.dtype([("start_ns", "<u8"), ("ns", "<u8"), ("kind", "<u4"),
                        ("reserved", "<u4")])

#: ha_stall_kind, by value.
STALL_KINDS = ("safepoint", "allocation", "barrier", "fault")


def pause_percentiles(stalls: np.ndarray) -> dict[str, float]:
    """``count`` and p50/p99/p99.9/max of the stalls, in microseconds."""
    if not len(stalls):
        return {"count": 0, "p50_us": 0.0, "p99_us": 0.0, "p999_us": 0.0, "max_us": 0.0}
    us = stalls["ns"].astype(np.float64) / 1e3
    p50, p99, p999 = np.percentile(us, [50, 99, 99.9])
    return {"count": len(us), "p50_us": float(p50), "p99_us": float(p99),
            "p999_us": float(p999), "max_us": float(us.max())}


def _stalled_before(t: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                    before: np.ndarray) -> np.ndarray:
    """Stalled nanoseconds in ``[-inf, t)`` for each ``t``, given sorted, disjoint stalls
    and ``before[k]``, the stalled time of stalls ``0..k-1``."""
    k = np.searchsorted(starts, t, side="right")  # stalls that began before t
    last = np.maximum(k - 1, 0)
    partial = np.where(k > 0, np.clip(t - starts[last], 0, ends[last] - starts[last]), 0)
    return before[last] * (k > 0) + partial


def mmu(stalls: np.ndarray, start_ns: int, duration_ns: int, window_ns: int) -> float:
    """Minimum mutator utilization over windows of ``window_ns`` within the run
    ``[start_ns, start_ns + duration_ns)``; the run's own utilization if it is shorter."""
    window_ns = min(int(window_ns), int(duration_ns))
    if window_ns <= 0 or not len(stalls):
        return 1.0
    order = np.argsort(stalls["start_ns"], kind="stable")
    starts = stalls["start_ns"][order].astype(np.int64)
    ends = starts + stalls["ns"][order].astype(np.int64)
    before = np.concatenate(([0], np.cumsum(ends - starts)))[:-1]
    first, last = int(start_ns), int(start_ns) + int(duration_ns) - window_ns
    # The worst window starts at a stall's start or ends at a stall's end.
    candidates = np.clip(np.concatenate((starts, ends - window_ns, [first, last])), first, last)
    stalled = (_stalled_before(candidates + window_ns, starts, ends, before)
               - _stalled_before(candidates, starts, ends, before))
    return float(max(0.0, 1.0 - stalled.max() / window_ns))
