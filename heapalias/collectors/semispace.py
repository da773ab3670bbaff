"""The semispace plan: Cheney copying between two equal spaces, swapped after each collection.

The mutator allocates in from-space; a collection evacuates what the roots reach
into to-space (cext/copy.c, through cext/semispace.c's hooks) and flips. No
barriers: nothing a mutator stores can hide an object from the next evacuation.
"""

from __future__ import annotations

from ..backing import read_only
from ..errors import InvalidArgument
from ..native import lib
from ..objects import ObjectHeap, Space
from .plan import Plan, register

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
    """

    name = "semispace"
    kind = lib.HA_PLAN_SEMISPACE
    write_barrier = "none"
    read_barrier = "none"
    steps = ("evacuate: copy what the roots reach from from-space into to-space (Cheney)",
             "flip: to-space becomes the allocation space; from-space is emptied")

    def __init__(self, objects: ObjectHeap, from_space: str = "from", to_space: str = "to") -> None:
        super().__init__(objects)
        self._from = objects.space(from_space)
        self._to = objects.space(to_space)
        if self._from is self._to:
            raise InvalidArgument("from-space and to-space must differ")

    from_space = read_only("_from", "The space the next collection empties.")
    to_space = read_only("_to", "The space the next collection fills.")

    layout = staticmethod(semispace_layout)

    @classmethod
    def halves(cls, heap, **objects_options) -> SemiSpace:
        """A SemiSpace over the two halves of ``heap`` (see :func:`semispace_layout`)."""
        return cls.over(heap, **objects_options)

    @property
    def spaces(self) -> tuple[Space, ...]:
        return self._from, self._to

    def _reorder(self, spaces: tuple[Space, ...]) -> None:
        self._from, self._to = spaces
