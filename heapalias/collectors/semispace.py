"""The semispace plan: Cheney copying between two equal spaces, swapped after each collection.

The mutator allocates in from-space; a collection evacuates what the roots reach
into to-space (cext/copy.c, through cext/semispace.c's hooks) and flips. No
barriers: nothing a mutator stores can hide an object from the next evacuation.
"""

from __future__ import annotations

import numpy as np

from .. import native
from ..backing import read_only
from ..errors import InvalidArgument
from ..native import LoopStats, lib
from ..objects import ObjectHeap, Space
from ..views import View
from .plan import Plan, register
from .threads import require_threads

#: Gap left between the semispaces; see semispace_layout.
SEMISPACE_GAP = 64 << 10


def semispace_layout(size: int) -> dict[str, tuple[int, int]]:
    """``{"from": ..., "to": ...}``: two equal spaces in a heap of ``size`` bytes.

    The spaces are not exactly half a heap apart. When an object and its copy
    lie a multiple of 256 MiB apart, AMD Zen's L1 way predictor (a hash of
    address bits 12-27) aliases them, and Cheney evacuation ran 3x slower on the
    machine this was measured on. A 64 KiB gap breaks the pattern.
    """
    half = size // 2 // 8 * 8
    gap = SEMISPACE_GAP // 2 if half > SEMISPACE_GAP else 0
    return {"from": (8, half - gap), "to": (half + gap, size // 8 * 8)}


@register
class SemiSpace(Plan):
    """Cheney copying between two spaces of one ObjectHeap; they swap after each collection.

    Args:
        objects: the heap; it must have the two spaces.
        from_space, to_space: their names (default ``"from"`` and ``"to"``).
        threads: the threads each collection copies on (default: one per core; 1 runs
            the single-thread Cheney loop). In parallel each thread copies into its own
            64 KiB buffers, so the copies lie in another order, the ends of buffers hold
            fillers (walks skip them), and to-space needs up to 1/8 more room than the
            objects take.
    """

    name = "semispace"
    kind = lib.HA_PLAN_SEMISPACE
    write_barrier = "none"
    read_barrier = "none"
    steps = ("evacuate: copy what the roots reach from from-space into to-space (Cheney)",
             "flip: to-space becomes the allocation space; from-space is emptied")

    def __init__(self, objects: ObjectHeap, from_space: str = "from", to_space: str = "to",
                 *, threads: int | None = None) -> None:
        super().__init__(objects)
        self._threads = require_threads(threads)
        self._from = objects.space(from_space)
        self._to = objects.space(to_space)
        if self._from is self._to:
            raise InvalidArgument("from-space and to-space must differ")

    from_space = read_only("_from", "The space the next collection empties.")

    @property
    def threads(self) -> int:
        """The threads each collection copies on (settable; None: one per core)."""
        return self._threads

    @threads.setter
    def threads(self, threads: int | None) -> None:
        self._threads = require_threads(threads)
    to_space = read_only("_to", "The space the next collection fills.")

    layout = staticmethod(semispace_layout)

    @classmethod
    def halves(cls, heap, **objects_options) -> SemiSpace:
        """A SemiSpace over the two halves of ``heap`` (see :func:`semispace_layout`)."""
        return cls.over(heap, **objects_options)

    def to_native(self):
        gc = super().to_native()
        gc.threads = self._threads
        return gc

    def collect(self, roots: np.ndarray, *, through: View | None = None,
                threads: int | None = None) -> LoopStats:
        """Collect (see :meth:`Plan.collect`); ``threads`` overrides the plan's for this one."""
        if threads is None:
            return super().collect(roots, through=through)
        threads = require_threads(threads)

        def on_threads(gc, roots):
            gc.threads = threads
            return native.collect(gc, roots)

        return self._run_collection(on_threads, roots, through)

    @property
    def spaces(self) -> tuple[Space, ...]:
        return self._from, self._to

    def _reorder(self, spaces: tuple[Space, ...]) -> None:
        self._from, self._to = spaces
