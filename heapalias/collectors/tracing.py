"""The heap-parsing policy every plan checks its work with: walk a space, verify a heap.

Both run in C without the GIL and stop at the first corrupt header or reference
with :class:`~heapalias.errors.HeapCorruption` naming its offset.
"""

from __future__ import annotations

import numpy as np

from .. import native
from ..native import LoopStats
from ..objects import ObjectHeap, require_object_heap, roots_array


def walk(objects: ObjectHeap, space: str | None = None, *, offsets: bool = False):
    """Parse every header of a space bottom to top; ``refs`` counts reference slots.

    With ``offsets=True`` returns ``(stats, offsets_array)``.
    """
    target = require_object_heap(objects, "walk").space(space)
    capacity = target.used // 16 if offsets else 0  # every object is at least 16 bytes
    out = native.scratch(max(capacity, 1), np.uint64, "walk")
    stats = native.walk(objects.native(), target, out, capacity)
    return (stats, out[: stats.objects].copy()) if offsets else stats


def verify(objects: ObjectHeap, roots=(), spaces: list[str] | None = None) -> LoopStats:
    """Check every header, and that every reference names an object start; raise at the first."""
    roots = roots_array(roots)
    chosen = require_object_heap(objects, "verify").checked_spaces(spaces)
    bitmap = native.scratch(objects.size // 512 + 1, np.uint64, "verify", zeroed=True)
    return native.verify(objects.native(), chosen, roots, bitmap)
