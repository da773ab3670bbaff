"""Whole programs run by a C mutator over any collector: GCBench and binary-trees.

The mutator allocates by bumping a pointer in the plan's allocation space, keeps
every live reference on a shadow stack, and goes through the plan's hooks
(cext/plan.h) for everything else: its allocation slow path (a collection) when
the space fills, and its write and read barriers on reference stores and loads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import native
from .backing import require_int
from .collectors import Plan, SemiSpace
from .errors import InvalidArgument
from .objects import ObjectHeap

SHADOW_CAPACITY = 4096
MAX_PAUSES = 1 << 16


@dataclass(frozen=True)
class GCRun:
    """One program run: its check values, and how the time split between mutator and GC."""

    program: str
    checks: tuple[int, ...]
    collections: int
    pauses_ns: np.ndarray
    bytes_copied: int
    objects_allocated: int
    bytes_allocated: int
    total_ns: int
    gc_ns: int

    @property
    def mutator_ns(self) -> int:
        return self.total_ns - self.gc_ns

    def pause_summary(self) -> dict[str, float]:
        """min / median / max pause in milliseconds (zeros when nothing was collected)."""
        if not len(self.pauses_ns):
            return {"min_ms": 0.0, "median_ms": 0.0, "max_ms": 0.0}
        ms = self.pauses_ns / 1e6
        return {"min_ms": float(ms.min()), "median_ms": float(np.median(ms)),
                "max_ms": float(ms.max())}


def as_plan(collector: Plan | ObjectHeap) -> Plan:
    """``collector`` itself, or a :class:`SemiSpace` over an ObjectHeap's two spaces
    (the first one allocated in first), as the drivers took before plans existed."""
    if isinstance(collector, Plan):
        return collector
    if not isinstance(collector, ObjectHeap) or len(collector.spaces) != 2:
        raise InvalidArgument("a driver runs on a collector (a Plan such as SemiSpace), or an "
                              f"ObjectHeap with exactly two spaces; got {collector!r}")
    return SemiSpace(collector, *collector.spaces)


def _run(collector: Plan | ObjectHeap, program: str, *args) -> GCRun:
    plan = as_plan(collector)
    plan.objects.require_writable(program)
    plan.reset()
    gc = plan.to_native()
    shadow = np.zeros(SHADOW_CAPACITY, dtype=np.uint64)
    pauses = np.zeros(MAX_PAUSES, dtype=np.uint64)
    rc, st, run = native.gc_program(program, gc, shadow, pauses, *args)
    plan.from_native(gc)  # the live data is in the allocation space, even after a failure
    native.loop_result(rc, st, program)
    count = min(int(run.collections), MAX_PAUSES)
    return GCRun(
        program, tuple(int(run.check[i]) for i in range(run.nchecks)), int(run.collections),
        pauses[:count].copy(), int(run.bytes_copied), int(run.objects_allocated),
        int(run.bytes_allocated), int(run.total_ns), int(run.gc_ns),
    )


def gcbench(collector: Plan | ObjectHeap) -> GCRun:
    """Boehm's GCBench: stretch tree depth 18, long-lived tree 16, 500,000 doubles,
    trees of depth 4..16 step 2, each built top-down and bottom-up.

    ``checks``: stretch-tree nodes, nodes built per depth (4, 6, ..., 16), the
    long-lived tree's nodes at the end, and 1 if ``array[1000] == 1/1000``.
    """
    return _run(collector, "gcbench")


def binary_trees(collector: Plan | ObjectHeap, max_depth: int) -> GCRun:
    """The Benchmarks Game's binary-trees; ``checks`` are the lines it prints:
    stretch tree, one per depth (4, 6, ..., max), long-lived tree."""
    max_depth = require_int(max_depth, "max_depth")
    if not 0 <= max_depth <= 30:
        raise InvalidArgument(f"max_depth must be in 0..30, got {max_depth}")
    return _run(collector, "binary_trees", max_depth)


def expected_gcbench_checks() -> tuple[int, ...]:
    """GCBench's check values, from its parameters."""
    def size(d: int) -> int:
        return (1 << (d + 1)) - 1
    per_depth = [2 * (2 * size(18) // size(d)) * size(d) for d in range(4, 17, 2)]
    return (size(18), *per_depth, size(16), 1)


def expected_binary_trees_checks(max_depth: int) -> tuple[int, ...]:
    """The check values binary-trees prints, from its parameters."""
    depth = max(6, max_depth)
    def size(d: int) -> int:
        return (1 << (d + 1)) - 1
    lines = [(1 << (depth - d + 4)) * size(d) for d in range(4, depth + 1, 2)]
    return (size(depth + 1), *lines, size(depth))
