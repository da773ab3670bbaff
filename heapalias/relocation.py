"""Relocation of page-aligned heap ranges: by remapping their pages, or by copying bytes.

Remapping maps the same physical pages at a new virtual address (a second
``mmap`` of the memfd, or ``mremap`` for shared anonymous memory) and turns the
old range ``PROT_NONE``, so a stale pointer faults instead of reading garbage.
This is how Mesh merges pages and C4 relocates without copying. Copying is the
baseline: ``memcpy`` into another range of the heap.
"""

from __future__ import annotations

import numpy as np

from .collectors import LoopStats, _stats
from .errors import InvalidArgument, SyscallFailed, ViewInUse
from .heap import Heap
from .native import ffi, lib
from .views import Reservation, View, first_overlap


def _aligned(value: int, granule: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value % granule:
        raise InvalidArgument(f"{what} {value!r} must be a non-negative multiple of {granule}")
    return value


class RelocationArea:
    """An address range, reserved PROT_NONE, that heap ranges are relocated into by remapping.

    Args:
        heap: a ``memfd`` or ``anon`` heap (private memory cannot be remapped shared).
        size: bytes of address space to reserve (a multiple of the page size).
    """

    def __init__(self, heap: Heap, size: int) -> None:
        if heap.backing == "private":
            raise InvalidArgument("private memory cannot be relocated by remapping; use copy()")
        self.heap = heap
        self.size = _aligned(size, heap.page_size, "size")
        if not self.size:
            raise InvalidArgument("a relocation area needs a positive size")
        self._reservation = Reservation(self.size, heap._backing, f"heapalias:{heap.name}:moved")
        self.address = self._reservation.address
        self._used: list[tuple[int, int]] = []

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
        if view not in self.heap.views or view.prot != "rw":
            raise InvalidArgument("relocate from an open read-write view of this heap")
        if not length or offset + length > view.size or at + length > self.size:
            raise InvalidArgument(f"range of {length} bytes does not fit the view or the area")
        if first_overlap(view.holes, offset, offset + length):
            raise InvalidArgument("part of that range was already relocated away")
        if first_overlap(self._used, at, at + length):
            raise InvalidArgument(f"area bytes {at:#x}..{at + length:#x} are already in use")
        if view.exported:
            raise ViewInUse(
                f"numpy arrays of view {view.role} are alive; the relocated range turns PROT_NONE",
                remedy="delete the arrays (or relocate from an alias that has none)",
            )
        fd = self.heap.fd if self.heap.fd is not None else -1
        target = self.address + at
        st = ffi.new("ha_stats *")
        rc = lib.ha_relocate_remap(fd, view.address + offset, offset, length, target,
                                   int(populate), st)
        if rc < 0:
            raise SyscallFailed("relocate", -rc, detail="remapping the range failed")
        view.holes.append((offset, offset + length))
        self._used.append((at, at + length))
        reservation, used = self._reservation, self._used

        def release() -> None:
            reservation.vacate(target, length)
            used.remove((at, at + length))

        moved = View(address=target, size=length, prot="rw", strategy="remap",
                     role=f"moved{offset:#x}", label=f"heapalias:{self.heap.name}:moved",
                     release=release)
        return moved, _stats(st)

    def close(self) -> None:
        """Give the address space back once every moved view is closed."""
        if not self._used:
            self._reservation.release()


def copy(source: View, offset: int, length: int, target: View, target_offset: int) -> LoopStats:
    """Relocate by copying: ``target[target_offset:] = source[offset:offset+length]`` (memcpy)."""
    for view, start in ((source, offset), (target, target_offset)):
        if not isinstance(start, int) or start < 0 or start + length > view.size or length <= 0:
            raise InvalidArgument(f"{length} bytes at {start!r} do not fit view {view.role}")
    if target.prot != "rw" or source.prot == "none":
        raise InvalidArgument("copy from a readable view into a read-write one")
    # The arrays hold both mappings (and check their holes) for the copy's duration.
    src = source.array(np.uint8, offset, length)
    dst = target.array(np.uint8, target_offset, length)
    st = ffi.new("ha_stats *")
    lib.ha_relocate_copy(dst.ctypes.data, src.ctypes.data, length, st)
    del src, dst
    return _stats(st)
