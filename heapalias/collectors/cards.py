"""The card-marking policy: a write barrier that dirties one byte per card, and a card scan."""

from __future__ import annotations

import numpy as np

from .. import native
from ..backing import read_only, require_int
from ..errors import InvalidArgument
from ..native import LoopStats
from ..objects import MAX_REFS, Obj, ObjectHeap, require_object_heap


class CardTable:
    """One byte per ``2**card_shift`` heap bytes; a slot's card is dirtied when it is written.

    ``objects``, ``card_shift`` and ``cards`` are read-only: the C loops index the
    cards by ``offset >> card_shift``, and the table is sized for that shift.
    """

    def __init__(self, objects: ObjectHeap, card_shift: int = 9) -> None:
        card_shift = require_int(card_shift, "card_shift")
        if not 3 <= card_shift <= 30:
            raise InvalidArgument(f"card_shift must be in 3..30, got {card_shift}")
        self._objects = require_object_heap(objects, "a card table")
        self._card_shift = card_shift
        self._cards = native.scratch((objects.size >> card_shift) + 1, np.uint8, "a card table",
                                     zeroed=True)

    objects = read_only("_objects", "The heap whose slots the cards cover.")
    card_shift = read_only("_card_shift", "log2 of the bytes per card.")
    cards = read_only("_cards", "One byte per card, nonzero when dirty.")

    def _checked_cards(self) -> np.ndarray:
        """The cards for C; the array must still hold a card for every heap byte."""
        if self._cards.shape != ((self._objects.size >> self._card_shift) + 1,):
            raise InvalidArgument("the card array was resized; make a new CardTable")
        return self._cards

    def write(self, obj: Obj, slot: int, target: Obj | None) -> None:
        """``obj.refs[slot] = target`` with the write barrier (C, bounds-checked)."""
        self._objects.require_writable("the write barrier")
        if not self._objects.owns(obj) or not (target is None or self._objects.owns(target)):
            raise InvalidArgument(f"write needs Objs of this heap, not {obj!r} and {target!r}")
        slot = require_int(slot, "slot")
        if not 0 <= slot <= MAX_REFS:
            raise InvalidArgument(f"slot {slot} is not a reference slot of {obj!r}")
        ref = 0 if target is None else target.ref
        native.write_ref(self._objects.native(), self._checked_cards(), self._card_shift,
                         obj.offset, slot, ref)

    def clear(self) -> None:
        self._cards[:] = 0

    @property
    def dirty(self) -> int:
        return int(np.count_nonzero(self._cards))

    def scan(self, space: str, target: str) -> tuple[LoopStats, np.ndarray]:
        """Slots in dirty cards of ``space`` that refer into ``target``: (stats, slot offsets)."""
        source, into = self._objects.space(space), self._objects.space(target)
        found = native.scratch(max(source.used // 8, 1), np.uint64, "card_scan")
        stats = native.card_scan(self._objects.native(), source, self._checked_cards(),
                                 self._card_shift, into.start, into.end, found)
        return stats, found[: stats.refs].copy()
