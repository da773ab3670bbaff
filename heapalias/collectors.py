"""GC loops over an :class:`~heapalias.objects.ObjectHeap`, run in C without the GIL.

Each loop returns :class:`LoopStats`. A loop that meets a corrupt header or
reference stops there and raises :class:`~heapalias.errors.HeapCorruption`
naming the offset; it never reads outside the heap, even while another thread
or process writes it (each header and slot is read once, and that copy is
checked and used). A reference is followed only to a valid header whose object
fits its space; only :func:`verify` also knows that it is an object start.
Before each call, the spaces and the views the loop will read are checked.

- :class:`SemiSpace`: Cheney evacuation between two spaces of one heap,
  optionally reading from-space through another (e.g. read-only) view.
- :func:`mark`: trace from roots with an explicit mark stack. Marks live in
  the header's mark bit. When the stack fills, the push is dropped and the
  object stays marked; a heap walk afterwards rescans every marked object, so
  overflow costs time but never recursion or a lost object.
- :func:`walk`: parse headers bottom to top.
- :func:`verify`: every reference names an object start in one of the spaces.
- :class:`CardTable`: a write barrier that dirties cards, and a card scan.
"""

from __future__ import annotations

import numpy as np

from . import native
from .backing import read_only, require_int
from .errors import InsufficientMemory, InvalidArgument
from .native import (
    LoopStats,
    ffi,
    lib,
    loop_result,
    space_struct,
    spaces_struct,
    stats_of,
    words,
    words_or_null,
)
from .objects import MAX_REFS, Obj, ObjectHeap, Space, require_object_heap, view_of
from .views import View

# Temporary aliases while the loops move behind native.py.
_stats = stats_of
_check = loop_result
_REASONS = native._REASONS


def _space(objects: ObjectHeap, space: Space):
    """The space for C, checked against the heap first (its fields are plain attributes)."""
    space.check(objects.size)
    return space_struct(space)


def _spaces(objects: ObjectHeap, spaces: list[Space]):
    for space in spaces:
        space.check(objects.size)
    return spaces_struct(spaces)


def roots_array(roots) -> np.ndarray:
    """Roots as a 1-D contiguous uint64 array (a copy unless it already is one)."""
    try:
        array = np.asarray(roots)
    except (TypeError, ValueError) as exc:  # e.g. ragged nested sequences
        raise InvalidArgument(f"roots must be reference words, got {roots!r}") from exc
    if array.ndim != 1 or (array.size and (array.dtype.kind not in "iu" or array.min() < 0)):
        raise InvalidArgument(f"roots must be a 1-D sequence of reference words (unsigned "
                              f"integers), got {array.dtype} of shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.uint64)


def _scratch(count: int, dtype, what: str, *, zeroed: bool = False) -> np.ndarray:
    """An array of ``count`` items for a loop (uninitialised unless ``zeroed``);
    InsufficientMemory if the allocation fails, as the C loops say for their own buffers."""
    try:
        return (np.zeros if zeroed else np.empty)(count, dtype=dtype)
    except MemoryError as exc:
        size = count * np.dtype(dtype).itemsize
        raise InsufficientMemory(f"{what}: no memory for a scratch buffer of {size} bytes",
                                 remedy="free memory, or use a smaller heap") from exc


_buffer = words
_roots_buffer = words_or_null


def _chosen_spaces(objects: ObjectHeap, names: list[str] | None) -> list[Space]:
    """The named spaces, or every space of the heap."""
    return [objects.space(n) for n in names] if names else list(objects.spaces.values())


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


class SemiSpace:
    """Cheney copying between two spaces of one ObjectHeap; they swap after each collection.

    Args:
        objects: the heap; it must have the two spaces.
        from_space, to_space: their names (default ``"from"`` and ``"to"``).
    """

    def __init__(self, objects: ObjectHeap, from_space: str = "from", to_space: str = "to") -> None:
        require_object_heap(objects, "a SemiSpace").require_writable("evacuation")
        self._objects = objects
        self._from = objects.space(from_space)
        self._to = objects.space(to_space)
        if self._from is self._to:
            raise InvalidArgument("from-space and to-space must differ")

    objects = read_only("_objects", "The heap being collected.")
    from_space = read_only("_from", "The space the next collection empties.")
    to_space = read_only("_to", "The space the next collection fills.")

    @classmethod
    def halves(cls, heap, **kwargs) -> SemiSpace:
        """A SemiSpace over the two halves of ``heap`` (see :func:`semispace_layout`)."""
        return cls(ObjectHeap(heap, spaces=semispace_layout(view_of(heap).size), **kwargs))

    def collect(self, roots: np.ndarray, *, through: View | None = None) -> LoopStats:
        """Evacuate everything reachable from ``roots`` (updated in place) to to-space.

        ``through``: read from-space objects through this view instead of the
        primary one, e.g. a read-only alias, as a concurrent copier would.
        """
        # Updated in place, so the roots must already be what roots_array would give.
        if (not isinstance(roots, np.ndarray) or roots_array(roots) is not roots
                or not roots.flags.writeable):
            raise InvalidArgument(
                "roots must be a writeable 1-D contiguous uint64 array (see roots_array)")
        h = self._objects.native()
        loads = None if through is None else _whole_view_of(self._objects, through)
        if loads is not None:
            h.load_base = loads.ctypes.data  # the array holds the mapping during the copy
        to = _space(self._objects, self._to)
        st = ffi.new("ha_stats *")
        rc = lib.ha_cheney(h, _space(self._objects, self._from), to,
                           _roots_buffer(roots), len(roots), st)
        del loads
        self._to.top = int(to.top)
        stats = _check(rc, st, "cheney")
        self._from.reset()
        self._from, self._to = self._to, self._from
        return stats


def _whole_view_of(objects: ObjectHeap, view: View) -> np.ndarray:
    """An array over all of ``view``, which must map the same memory as ``objects``,
    readable and whole (no range relocated away): the copy reads any byte of it."""
    if not isinstance(view, View) or not objects.same_memory(view):
        raise InvalidArgument(f"`through` must be a view of this heap's memory, not {view!r}",
                              remedy="make it with heap.alias()")
    # ViewClosed if closed; InvalidArgument if PROT_NONE or if a range was relocated away.
    return view.array(np.uint8)


def mark(objects: ObjectHeap, roots, *, spaces: list[str] | None = None,
         stack_capacity: int = 1 << 16) -> LoopStats:
    """Mark everything reachable from ``roots``; references must stay in ``spaces`` (all).

    ``stack_capacity`` entries of 8 bytes hold the grey objects. A smaller stack
    stays correct, but each overflow costs a walk of every space: on a 1 GiB random
    graph, a 1 Mi-entry stack makes marking about 1.4x slower than one that fits.
    A larger one than the spaces have objects is never used, and is not allocated.
    """
    require_object_heap(objects, "mark").require_writable("mark (mark bits live in the headers)")
    roots = roots_array(roots)
    stack_capacity = require_int(stack_capacity, "stack_capacity")
    if stack_capacity < 1:
        raise InvalidArgument("stack_capacity must be at least 1")
    chosen = _chosen_spaces(objects, spaces)
    native_spaces = _spaces(objects, chosen)  # checks them
    # An object is pushed when it is marked, once, and is at least 16 bytes long.
    most = sum((space.end - space.start) // 16 for space in chosen)
    stack_capacity = min(stack_capacity, max(most, 1))
    stack = _scratch(stack_capacity, np.uint64, "mark")
    st = ffi.new("ha_stats *")
    rc = lib.ha_mark(objects.native(), native_spaces, len(chosen),
                     _roots_buffer(roots), len(roots),
                     _buffer(stack), stack_capacity, st)
    return _check(rc, st, "mark")


def clear_marks(objects: ObjectHeap, space: str | None = None) -> LoopStats:
    """Clear the mark bit of every object in a space; ``objects`` counts those that had it."""
    require_object_heap(objects, "clear_marks").require_writable("clear_marks")
    st = ffi.new("ha_stats *")
    target = _space(objects, objects.space(space))
    return _check(lib.ha_clear_marks(objects.native(), target, st), st, "clear_marks")


def walk(objects: ObjectHeap, space: str | None = None, *, offsets: bool = False):
    """Parse every header of a space bottom to top; ``refs`` counts reference slots.

    With ``offsets=True`` returns ``(stats, offsets_array)``.
    """
    target = require_object_heap(objects, "walk").space(space)
    capacity = target.used // 16 if offsets else 0  # every object is at least 16 bytes
    out = _scratch(max(capacity, 1), np.uint64, "walk")
    st = ffi.new("ha_stats *")
    rc = lib.ha_walk(objects.native(), _space(objects, target), _buffer(out), capacity, st)
    stats = _check(rc, st, "walk")
    return (stats, out[: stats.objects].copy()) if offsets else stats


def verify(objects: ObjectHeap, roots=(), spaces: list[str] | None = None) -> LoopStats:
    """Check every header, and that every reference names an object start; raise at the first."""
    roots = roots_array(roots)
    chosen = _chosen_spaces(require_object_heap(objects, "verify"), spaces)
    bitmap = _scratch(objects.size // 512 + 1, np.uint64, "verify", zeroed=True)
    st = ffi.new("ha_stats *")
    rc = lib.ha_verify(objects.native(), _spaces(objects, chosen), len(chosen),
                       _roots_buffer(roots), len(roots), _buffer(bitmap), st)
    return _check(rc, st, "verify")


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
        self._cards = _scratch((objects.size >> card_shift) + 1, np.uint8, "a card table",
                               zeroed=True)

    objects = read_only("_objects", "The heap whose slots the cards cover.")
    card_shift = read_only("_card_shift", "log2 of the bytes per card.")
    cards = read_only("_cards", "One byte per card, nonzero when dirty.")

    def _cards_buffer(self):
        """The cards for C; the array must still hold a card for every heap byte."""
        if self._cards.shape != ((self._objects.size >> self._card_shift) + 1,):
            raise InvalidArgument("the card array was resized; make a new CardTable")
        return _buffer(self._cards, "uint8_t[]")

    def write(self, obj: Obj, slot: int, target: Obj | None) -> None:
        """``obj.refs[slot] = target`` with the write barrier (C, bounds-checked)."""
        self._objects.require_writable("the write barrier")
        if not self._objects.owns(obj) or not (target is None or self._objects.owns(target)):
            raise InvalidArgument(f"write needs Objs of this heap, not {obj!r} and {target!r}")
        slot = require_int(slot, "slot")
        if not 0 <= slot <= MAX_REFS:
            raise InvalidArgument(f"slot {slot} is not a reference slot of {obj!r}")
        ref = 0 if target is None else target.ref
        self._cards_buffer()
        native.write_ref(self._objects.native(), self._cards, self._card_shift, obj.offset,
                         slot, ref)

    def clear(self) -> None:
        self._cards[:] = 0

    @property
    def dirty(self) -> int:
        return int(np.count_nonzero(self._cards))

    def scan(self, space: str, target: str) -> tuple[LoopStats, np.ndarray]:
        """Slots in dirty cards of ``space`` that refer into ``target``: (stats, slot offsets)."""
        source, into = self._objects.space(space), self._objects.space(target)
        capacity = source.used // 8
        found = _scratch(max(capacity, 1), np.uint64, "card_scan")
        st = ffi.new("ha_stats *")
        rc = lib.ha_card_scan(self._objects.native(), _space(self._objects, source),
                              self._cards_buffer(), self._card_shift,
                              into.start, into.end, _buffer(found), capacity, st)
        stats = _check(rc, st, "card_scan")
        return stats, found[: stats.refs].copy()
