"""The marking policy: trace from roots and set each reachable object's mark bit.

Marks live in the header's mark bit: that bit is all a mark leaves in the heap.
While it runs, the C loop also keeps a side bitmap of its own (a bit per heap
word, 1/64 of the heap up to the spaces' highest top, freed when it returns): an
edge is tested against the bitmap, and only the first edge to an object reads its
header. An object an earlier mark left marked is neither counted nor scanned. The
grey objects sit on an explicit stack; when it fills, the push is dropped and the
object is marked at once, and a heap walk afterwards rescans every marked object,
so overflow costs time but never recursion or a lost object.
"""

from __future__ import annotations

import numpy as np

from .. import native
from ..backing import require_int
from ..errors import InvalidArgument
from ..native import LoopStats
from ..objects import ObjectHeap, require_object_heap, roots_array
from .threads import require_threads


def mark(objects: ObjectHeap, roots, *, spaces: list[str] | None = None,
         stack_capacity: int = 1 << 16, threads: int | None = None) -> LoopStats:
    """Mark everything reachable from ``roots``; references must stay in ``spaces`` (all).

    Besides the stack, each call maps a bitmap of 1/64 of the heap up to the top of
    the spaces it marks (16 MiB for 1 GiB); InsufficientMemory if it cannot.

    ``stack_capacity`` entries of 8 bytes hold the grey objects. A smaller stack
    stays correct, but each overflow costs a walk of every space: on a 1 GiB random
    graph, a 1 Mi-entry stack makes marking about 1.4x slower than one that fits.
    A larger one than the spaces have objects is never used, and is not allocated.

    ``threads`` (default: one per core, see :mod:`.threads`) mark in parallel, each
    with a work-stealing deque of at most its share of ``stack_capacity``; 1 runs the
    single-thread loop. The marks and counts are the same whatever the threads.
    """
    threads = require_threads(threads)
    require_object_heap(objects, "mark").require_writable("mark (mark bits live in the headers)")
    roots = roots_array(roots)
    stack_capacity = require_int(stack_capacity, "stack_capacity")
    if stack_capacity < 1:
        raise InvalidArgument("stack_capacity must be at least 1")
    chosen = objects.checked_spaces(spaces)
    # An object is pushed once a thread (the bitmap's bit), and is at least 16 bytes long.
    most = sum((space.end - space.start) // 16 for space in chosen)
    stack = native.scratch(min(stack_capacity, max(most, 1)), np.uint64, "mark")
    return native.mark_parallel(objects.native(), chosen, roots, stack, threads)


def clear_marks(objects: ObjectHeap, space: str | None = None) -> LoopStats:
    """Clear the mark bit of every object in a space; ``objects`` counts those that had it."""
    require_object_heap(objects, "clear_marks").require_writable("clear_marks")
    return native.clear_marks(objects.native(), objects.space(space))
