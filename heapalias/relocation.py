"""Relocation of page-aligned heap ranges: by remapping their pages, or by copying bytes.

Remapping maps the same physical pages at a new virtual address (a second
``mmap`` of the memfd, or ``mremap`` for shared anonymous memory) and turns the
old range ``PROT_NONE``, so a stale pointer faults instead of reading garbage.
This is how Mesh merges pages and C4 relocates without copying. Copying is the
baseline: ``memcpy`` into another range of the heap.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from . import native
from .backing import MAX_HEAP_SIZE, format_size, read_only, require_int, require_type
from .errors import InvalidArgument, SyscallFailed, ViewClosed, ViewInUse
from .heap import Heap
from .native import LoopStats
from .views import Reservation, View, first_overlap


def _aligned(value: int, granule: int, what: str) -> int:
    value = require_int(value, what)
    if value < 0 or value % granule:
        raise InvalidArgument(f"{what} {value!r} must be a non-negative multiple of {granule}")
    return value


class RelocationArea:
    """An address range, reserved PROT_NONE, that heap ranges are relocated into by remapping.

    Args:
        heap: a ``memfd`` or ``anon`` heap (private memory cannot be remapped shared).
        size: bytes of address space to reserve (a multiple of the page size).

    ``close()`` ends remapping into the area; the address space goes back once the
    last moved view is gone too.
    """

    def __init__(self, heap: Heap, size: int) -> None:
        require_type(heap, Heap, "a relocation area")
        if heap.backing == "private":
            raise InvalidArgument("private memory cannot be relocated by remapping; use copy()")
        if heap.closed:
            raise ViewClosed("the heap is closed", remedy="create the area before closing it")
        self._heap = heap
        self._size = _aligned(size, heap.page_size, "size")
        if not 0 < self._size <= MAX_HEAP_SIZE:
            raise InvalidArgument(f"a relocation area needs a size in 1 byte.."
                                  f"{format_size(MAX_HEAP_SIZE)}, got {self._size}")
        self._reservation = Reservation(self._size, heap._backing, f"heapalias:{heap.name}:moved")
        # The area's hold on its range: dropped by close(), or when the area is collected;
        # each moved view holds the range too, until it is unmapped.
        self._release = weakref.finalize(self, self._reservation.release)
        self._release.atexit = False
        self._used: list[tuple[int, int]] = []  # [at, at + length) of live moved views
        # Re-entrant: a moved view's release can run from the garbage collector
        # while this thread holds the lock.
        self._lock = threading.RLock()

    heap = read_only("_heap", "The heap whose ranges move here.")
    size = read_only("_size", "Bytes of address space reserved.")
    address = read_only("_reservation.address", "First byte of the area.")

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called: nothing more can be remapped into the area."""
        return not self._release.alive

    def remap(self, view: View, offset: int, length: int, at: int = 0, *,
              populate: bool = False) -> tuple[View, LoopStats]:
        """Move ``view[offset:offset+length]`` to ``area.address + at`` without copying.

        Returns the new view of the moved range and the stats (as a copy reports
        them). The old range of ``view`` becomes PROT_NONE: ``view.array`` refuses
        it from then on. ``populate`` faults in the new page tables, which a copy
        would have touched anyway.
        """
        page = self.heap.page_size
        offset, length, at = (_aligned(v, page, n) for v, n in
                              ((offset, "offset"), (length, "length"), (at, "at")))
        require_type(view, View, "remap")
        with self._lock, self.heap._lock, view._lock:
            # Held across the remap: close() must not give the area back, nor the heap or
            # anyone close the view, between these checks and the MAP_FIXED that trusts them.
            self._check_source(view)
            if view.prot != "rw":
                raise InvalidArgument("relocate from a read-write view of this heap")
            if not length or offset + length > view.size or at + length > self.size:
                raise InvalidArgument(
                    f"range of {length} bytes does not fit the view or the area"
                )
            if first_overlap(view.holes, offset, offset + length):
                raise InvalidArgument("part of that range was already relocated away")
            if first_overlap(self._used, at, at + length):
                raise InvalidArgument(f"area bytes {at:#x}..{at + length:#x} are already in use")
            if view.exported:
                raise ViewInUse(
                    f"numpy arrays of view {view.role} are alive; the relocated range turns "
                    "PROT_NONE",
                    remedy="delete the arrays (or relocate from an alias that has none)",
                )
            fd = self.heap.fd if self.heap.fd is not None else -1
            target = self.address + at
            self._reservation.hold(target, length)
            try:
                stats = native.relocate_remap(fd, view.address + offset, offset, length,
                                              target, populate)
            except SyscallFailed:  # nothing moved: the area's range goes back
                self._reservation.vacate(target, length)
                raise
            view._add_hole(offset, offset + length)
            self._used.append((at, at + length))
        moved = View(address=target, size=length, prot="rw", strategy="remap",
                     role=f"moved{offset:#x}", label=f"heapalias:{self.heap.name}:moved",
                     release=self._releaser(at, length),
                     backings=view.backings, file_offset=view.file_offset + offset)
        return moved, stats

    def _check_source(self, view: View) -> None:
        if self.closed:
            raise ViewClosed(
                f"the relocation area at {self.address:#x} is closed: its address space may "
                "belong to another mapping by now", remedy="create a new RelocationArea",
            )
        if self.heap.closed or view.closed:
            raise ViewClosed(f"view {view.role} or its heap is closed",
                             remedy="relocate from an open view")
        if view not in self.heap.views:
            raise InvalidArgument("relocate from a view of this heap (the area's)")

    def _releaser(self, at: int, length: int):
        """What unmapping a moved view does: vacate its part of the area (the area's
        range goes back once that was the last hold on it)."""
        reservation, used, lock = self._reservation, self._used, self._lock

        def release() -> None:
            with lock:
                reservation.vacate(reservation.address + at, length)
                used.remove((at, at + length))

        return release

    def close(self) -> None:
        """Stop remapping into the area; its address space goes back now, or when the
        last moved view is gone. Idempotent."""
        with self._lock:
            self._release()

    def __enter__(self) -> RelocationArea:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def copy(source: View, offset: int, length: int, target: View, target_offset: int) -> LoopStats:
    """Relocate by copying: ``target[target_offset:] = source[offset:offset+length]`` (memcpy)."""
    require_type(source, View, "copy's source")
    require_type(target, View, "copy's target")
    # Plain ints before any arithmetic: a numpy int16 offset would overflow in it.
    length = require_int(length, "length")
    offset = require_int(offset, "offset")
    target_offset = require_int(target_offset, "target_offset")
    for view, start in ((source, offset), (target, target_offset)):
        if start < 0 or start + length > view.size or length <= 0:
            raise InvalidArgument(f"{length} bytes at {start!r} do not fit view {view.role}")
    if target.prot != "rw" or source.prot == "none":
        raise InvalidArgument("copy from a readable view into a read-write one")
    if source.backings and source.backings == target.backings:
        start, end = source.file_offset + offset, target.file_offset + target_offset
        if start < end + length and end < start + length:
            raise InvalidArgument("the source and target ranges overlap in the heap; memcpy "
                                  "would mix them", remedy="copy between disjoint ranges")
    # The arrays hold both mappings (and check their holes) for the copy's duration.
    src = source.array(np.uint8, offset, length)
    dst = target.array(np.uint8, target_offset, length)
    stats = native.relocate_copy(dst.ctypes.data, src.ctypes.data, length)
    del src, dst
    return stats
