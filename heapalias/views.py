"""Views: the virtual addresses at which a backing is mapped, and their numpy arrays.

Every view is mapped into an address range reserved first as ``PROT_NONE``, so
a view is aligned to its page size and never lands on someone else's mapping.
Two strategies build an alias of memory that is already mapped:

``mremap``  ``mremap(old, 0, size, MREMAP_MAYMOVE|MREMAP_FIXED, target)``: the
            mirror trick; shareable non-hugetlb memory only.
``memfd``   a second ``mmap`` of the memfd: any memfd, hugetlb included.

Lifetime rule: ``View.close()`` unmaps at once when no array of the view is
alive. Otherwise the view is closed (no new arrays) and the mapping is removed
when the last array is garbage-collected, so no array ever outlives its memory.
Operations that would pull memory from under a live array, such as narrowing
the protection, raise :class:`~heapalias.errors.ViewInUse` instead.

Private hugetlb memory is not inherited by ``fork()`` children (``MADV_DONTFORK``):
its huge pages are reserved for this process alone, so a child's copy-on-write
copy could die of SIGBUS at any access. In a child, such views are closed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from . import native
from .backing import Backing, explain, read_only, require_int
from .errors import (
    HeapAliasError,
    InvalidArgument,
    SyscallFailed,
    UnsupportedAlias,
    ViewClosed,
    ViewInUse,
)
from .native import ffi, lib

PROTS: dict[str, int] = {
    "rw": lib.PROT_READ | lib.PROT_WRITE,
    "r": lib.PROT_READ,
    "none": lib.PROT_NONE,
}
STRATEGIES = ("auto", "mremap", "memfd")
USER_ADDRESS_LIMIT = 1 << 47
_RESERVE_FLAGS = lib.MAP_PRIVATE | lib.MAP_ANONYMOUS


def prot_flags(prot: object) -> int:
    """``"rw"`` -> ``PROT_READ|PROT_WRITE``; InvalidArgument for anything else."""
    if not isinstance(prot, str) or prot not in PROTS:
        raise InvalidArgument(f"prot must be one of 'rw', 'r', 'none'; got {prot!r}")
    return PROTS[prot]


def _quietly(call: Callable[..., object], *args: object) -> None:
    """Run a cleanup syscall whose failure must not mask the error being raised."""
    with contextlib.suppress(SyscallFailed):
        call(*args)


def name_range(address: int, size: int, label: str) -> bool:
    """Name an anonymous range in /proc/self/maps; False where the kernel cannot."""
    return native.name_anon(address, size, label) == 0


def reserve(size: int, align: int, backing: Backing, address: int | None = None) -> int:
    """Reserve ``size`` bytes of address space as PROT_NONE and return its start.

    With ``address``, the range starts exactly there or the call fails; an
    existing mapping is never replaced (MAP_FIXED_NOREPLACE). Without it, the
    start is aligned to ``align``.
    """
    try:
        if address is not None:
            got = native.mmap(
                size, lib.PROT_NONE, _RESERVE_FLAGS | lib.MAP_FIXED_NOREPLACE, hint=address
            )
            if got != address:  # kernels before 4.17 treat NOREPLACE as a hint
                native.munmap(got, size)
                raise SyscallFailed("mmap", errno.EEXIST, detail="MAP_FIXED_NOREPLACE unsupported")
            return got
        span = size + (align - 4096 if align > 4096 else 0)
        start = native.mmap(span, lib.PROT_NONE, _RESERVE_FLAGS)
    except SyscallFailed as exc:
        if exc.errno == errno.EEXIST:
            raise InvalidArgument(
                f"address {address:#x}..{address + size:#x} overlaps an existing mapping",
                errno=exc.errno,
                remedy="pick a free range, or pass address=None",
            ) from None
        raise explain(exc, backing.policy, size) from None
    aligned = -(-start // align) * align
    if aligned > start:
        native.munmap(start, aligned - start)
    if start + span > aligned + size:
        native.munmap(aligned + size, start + span - aligned - size)
    return aligned


class Reservation:
    """A PROT_NONE range that views map parts of (``multimap``, ``join``, RelocationArea).

    The range is held by its owner, until :meth:`release`, and by every part mapped
    into it, from :meth:`hold` until :meth:`vacate` puts that part back to PROT_NONE.
    It is unmapped when the last hold goes, so a part never maps into address space
    already given back (and perhaps reused by someone else), in whatever order the
    owner and its parts are released or garbage-collected.
    """

    def __init__(self, size: int, backing: Backing, label: str) -> None:
        self._size = size
        self._address = reserve(size, backing.page_size, backing)
        self.named = name_range(self._address, size, label)
        self._holds = 1  # the owner's
        self._owned = True
        # Re-entrant: a part's release can run from the garbage collector while this
        # thread is inside hold() or release().
        self._lock = threading.RLock()
        # Reachable from the module while held, so the cyclic GC never clears it
        # under a part whose release still needs it.
        _HELD.add(self)

    address = read_only("_address", "First byte of the range.")
    size = read_only("_size", "Bytes reserved.")

    @property
    def held(self) -> bool:
        """True until the range is unmapped (its owner and every part are done)."""
        return self._holds > 0

    def hold(self, address: int, size: int) -> None:
        """Take a hold for a part about to be mapped at ``address``; drop it with vacate()."""
        self._check_inside(address, size)
        with self._lock:
            if not self._holds:
                raise ViewClosed(f"the range at {self._address:#x} was given back")
            self._holds += 1

    def vacate(self, address: int, size: int) -> None:
        """Put a part back to PROT_NONE and drop the hold it took."""
        with self._lock:
            if not self._holds:  # never map MAP_FIXED into a range given back
                return
            _quietly(
                native.mmap, size, lib.PROT_NONE, _RESERVE_FLAGS | lib.MAP_FIXED, -1, 0, address
            )
            self._drop()

    def release(self) -> None:
        """The owner is done: unmap now, or once the last part is vacated. Idempotent."""
        with self._lock:
            if self._owned:
                self._owned = False
                self._drop()

    def _drop(self) -> None:
        self._holds -= 1
        if not self._holds:
            _quietly(native.munmap, self._address, self._size)
            _HELD.discard(self)

    def _check_inside(self, address: int, size: int) -> None:
        if not self._address <= address <= address + size <= self._address + self._size:
            raise InvalidArgument(
                f"{address:#x}..{address + size:#x} is outside the reserved range "
                f"{self._address:#x}..{self._address + self._size:#x}"
            )


#: Reservations still held, and releases of views still mapped: kept reachable from the
#: module, so the cyclic GC never clears what a pending release needs.
_HELD: set[Reservation] = set()
_PENDING: set[_Release] = set()


class _Release:
    """Runs a view's release once, from close() or from the handle's garbage collection."""

    __slots__ = ("_release", "done")

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release
        self.done = False
        _PENDING.add(self)

    def cancel(self) -> None:
        """Never run the release: the range is no longer ours to give back."""
        self._release = None
        self.done = True
        _PENDING.discard(self)

    def __call__(self, _pointer: object = None) -> None:
        release, self._release = self._release, None
        if release is None:
            return
        try:
            release()
        finally:
            self.done = True
            _PENDING.discard(self)


class View:
    """One virtual mapping of a heap's memory, with its own protection.

    Attributes:
        address: first byte of the view.
        size: bytes mapped.
        prot: ``"rw"``, ``"r"`` or ``"none"``.
        strategy: ``"primary"``, ``"mremap"`` or ``"memfd"``: how the view was made.
        role: the view's part in the heap (``primary``, ``alias1``, ``color2``, ...).
        label: its name in /proc/self/maps (anonymous memory) or the memfd's name.
        backings: the memory the view maps, back to back from ``address`` (one
            Backing, or several for :func:`~heapalias.heap.join`).
        file_offset: the byte of the first backing that ``address`` shows (non-zero
            for a range moved by :class:`~heapalias.relocation.RelocationArea`).
    """

    def __init__(
        self,
        *,
        address: int,
        size: int,
        prot: str,
        strategy: str,
        role: str,
        label: str,
        release: Callable[[], None],
        backings: tuple[Backing, ...] = (),
        file_offset: int = 0,
    ) -> None:
        # Read-only once made: the C loops and every syscall trust these.
        self._address = address
        self._size = size
        self._prot = prot
        self._strategy = strategy
        self._role = role
        self._label = label
        self._backings = tuple(backings)
        self._file_offset = file_offset
        self._lock = threading.Lock()
        # The root array with the current writeability, reused by array(); protect()
        # forgets it. Every root made, whatever its writeability, stays in _roots:
        # while any is alive, the memory must stay mapped.
        self._root: weakref.ref[np.ndarray] | None = None
        self._roots: list[weakref.ref[np.ndarray]] = []
        self._closed_why = ""
        self._forgotten = False  # fork child: the memory was not inherited
        self._holes: list[tuple[int, int]] = []  # [start, end) relocated away: PROT_NONE
        # Arrays reach the memory through buffers that hold this handle, so the
        # mapping is released only when the view and every array are gone.
        self._release = _Release(release)
        self._handle = ffi.gc(ffi.cast("void *", address), self._release)

    address = read_only("_address", "First byte of the view.")
    size = read_only("_size", "Bytes mapped.")
    prot = read_only("_prot", "'rw', 'r' or 'none' (see protect()).")
    strategy = read_only("_strategy", "How the view was made.")
    role = read_only("_role", "The view's part in the heap.")
    label = read_only("_label", "Its name in /proc/self/maps.")
    backings = read_only("_backings", "The memory the view maps.")
    file_offset = read_only("_file_offset", "The byte of the first backing that ``address`` shows.")

    @property
    def holes(self) -> tuple[tuple[int, int], ...]:
        """``[start, end)`` offsets relocated away (RelocationArea.remap): PROT_NONE."""
        return tuple(self._holes)

    def _add_hole(self, start: int, end: int) -> None:
        """Record that ``[start, end)`` was relocated away (the caller made it PROT_NONE)."""
        self._holes.append((start, end))

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called: no new arrays can be made."""
        return self._handle is None

    @property
    def mapped(self) -> bool:
        """True while the memory is mapped: until close, or until the last array is gone."""
        return not (self._release.done or self._forgotten)

    @property
    def exported(self) -> bool:
        """True while a numpy array of this view is alive."""
        return any(root() is not None for root in self._roots)

    @property
    def writable(self) -> bool:
        return self.prot == "rw"

    @property
    def may_write(self) -> bool:
        """False when the memory was attached read-only: ``protect('rw')`` is refused."""
        return all(backing.writable for backing in self.backings)

    def same_memory(self, other: View) -> bool:
        """True when ``other`` shows the same bytes of the same backings at its own address."""
        return (  # Backing has no __eq__: the tuples compare backings by identity
            isinstance(other, View)
            and (self.backings, self.file_offset, self.size)
            == (other.backings, other.file_offset, other.size)
        )

    def _root_array(self) -> np.ndarray:
        root = self._root() if self._root is not None else None
        if root is None:
            buffer = memoryview(ffi.buffer(self._handle, self.size))
            root = np.frombuffer(buffer if self.writable else buffer.toreadonly(), np.uint8)
            self._root = weakref.ref(root)
            self._roots = [r for r in self._roots if r() is not None] + [self._root]
        return root

    def _closed_error(self) -> ViewClosed:
        return ViewClosed(
            f"view {self.role} at {self.address:#x} is closed{self._closed_why}",
            remedy="create a new view with heap.alias()" if not self._closed_why else
            "create the heap in this process, or share memory with backing='memfd'",
        )

    def array(
        self, dtype: np.typing.DTypeLike = np.uint8, offset: int = 0, count: int | None = None
    ) -> np.ndarray:
        """A zero-copy 1-D array of ``count`` items of ``dtype`` starting at byte ``offset``.

        Arrays of ``"r"`` views are not writeable, and cannot be made writeable.
        The array keeps the mapping alive, even past ``close()``.
        """
        dtype = _plain_dtype(dtype)
        offset = require_int(offset, "offset")
        if not 0 <= offset <= self.size:
            raise InvalidArgument(f"offset {offset} is outside the view's {self.size} bytes")
        fits = (self.size - offset) // dtype.itemsize
        count = fits if count is None else require_int(count, "count")
        if not 0 <= count <= fits:
            raise InvalidArgument(
                f"{count} items of {dtype} at offset {offset} overrun the view's "
                f"{self.size} bytes (at most {fits} fit)"
            )
        hole = first_overlap(self._holes, offset, offset + count * dtype.itemsize)
        if hole:
            raise InvalidArgument(
                f"bytes {hole[0]:#x}..{hole[1]:#x} of view {self.role} were relocated away "
                "and are PROT_NONE",
                remedy="ask for a range outside them, or read the relocated view",
            )
        with self._lock:
            if self.closed:
                raise self._closed_error()
            if self.prot == "none":
                raise InvalidArgument(
                    f"view {self.role} is PROT_NONE: its memory cannot be read",
                    remedy="call view.protect('r') or view.protect('rw') first",
                )
            root = self._root_array()
        return root[offset : offset + count * dtype.itemsize].view(dtype)

    def protect(self, prot: str) -> None:
        """Change this view's protection (mprotect); other views keep theirs.

        Raises ViewInUse when it would take access away from live arrays, and
        NotPermitted when it would make writable memory that was attached read-only.
        """
        flags = prot_flags(prot)
        if self._holes:
            raise InvalidArgument(
                f"view {self.role} has relocated-away ranges; protecting it would expose them"
            )
        for backing in self.backings:
            backing.check_prot(prot, f"protect view {self.role} {prot!r}")
        with self._lock:
            if self.closed:
                raise self._closed_error()
            narrowing = (flags & PROTS[self.prot]) != PROTS[self.prot]
            if narrowing and self.exported:
                raise ViewInUse(
                    f"cannot change view {self.role} from {self.prot!r} to {prot!r}: "
                    "numpy arrays of it are alive",
                    remedy="delete the arrays first (del arr), then protect the view",
                )
            native.mprotect(self.address, self.size, flags)
            if prot != self._prot:
                self._root = None  # new arrays must carry the new writeability
            self._prot = prot

    def close(self) -> None:
        """Unmap now if no array is alive, else when the last one is gone. Idempotent."""
        with self._lock:
            handle, self._handle = self._handle, None
            if handle is not None and not self.exported:
                ffi.release(handle)

    def _forget_after_fork(self) -> None:
        """In a fork child, for memory the child did not inherit (MADV_DONTFORK)."""
        if not self.mapped:
            return
        # Hold the range PROT_NONE, so a stale pointer faults rather than reaching
        # whatever the child maps there next; releasing the view unmaps it. NOREPLACE:
        # if something else already took the range here, it is not ours to replace,
        # nor to unmap later.
        try:
            reserve(self.size, self.size, self.backings[0], self.address)
        except HeapAliasError:
            self._release.cancel()
        self._closed_why = ": private hugetlb memory is not inherited by fork() children"
        self._forgotten = True
        for backing in self.backings:
            backing.close()
        self._handle = None

    def __enter__(self) -> View:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (
            f"View({self.role}, address={self.address:#x}, size={self.size}, prot={self.prot!r}, "
            f"strategy={self.strategy!r}, {state})"
        )


def first_overlap(
    ranges: Sequence[tuple[int, int]], start: int, end: int
) -> tuple[int, int] | None:
    """The first ``[a, b)`` of ``ranges`` that meets ``[start, end)``, or None."""
    return next(((a, b) for a, b in ranges if start < b and a < end), None)


def _plain_dtype(dtype: object) -> np.dtype:
    try:
        result = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError) as exc:  # numpy parses strings with all three
        raise InvalidArgument(f"not a numpy dtype: {dtype!r}") from exc
    if result.hasobject or result.itemsize == 0:
        raise InvalidArgument(f"dtype {result} cannot live in raw heap memory")
    if result.subdtype is not None:
        raise InvalidArgument(
            f"dtype {result} is a subarray dtype; a view's array is 1-D",
            remedy=f"ask for {result.base} and reshape the array to (-1, *{result.shape})",
        )
    return result


def _populate(address: int, size: int, prot: str, page_size: int) -> None:
    """Fault in page tables now (MADV_POPULATE_*), falling back to touching each page."""
    if prot == "none":
        return
    write = prot == "rw"
    advice = lib.MADV_POPULATE_WRITE if write else lib.MADV_POPULATE_READ
    try:
        native.madvise(address, size, advice)
    except SyscallFailed as exc:
        if exc.errno != errno.EINVAL:
            raise
        native.touch(address, size, min(page_size, 4096), write)  # kernels before 5.14


def map_primary(backing: Backing, *, populate: bool, prot: str = "rw") -> View:
    """Map the backing for the first time: the heap's primary view (read-write unless
    an attached heap asks for ``"r"``)."""
    backing.check_prot(prot, f"map the primary view {prot!r}")
    address = reserve(backing.size, backing.page_size, backing)
    try:
        backing.map_at(address, prot_flags(prot))
        backing.advise(address)
        if populate:
            _populate(address, backing.size, prot, backing.page_size)
    except BaseException:
        _quietly(native.munmap, address, backing.size)
        raise
    return _finish(backing, address, prot, "primary", "primary", None)


def map_alias(
    backing: Backing,
    source: View,
    *,
    strategy: str,
    prot: str,
    role: str,
    populate: bool,
    address: int | None = None,
    reservation: Reservation | None = None,
) -> View:
    """Map one more view of ``backing``; ``source`` is a live view to mirror from.

    ``address`` places the view exactly there. With ``reservation``, ``address``
    lies inside it and the view replaces that part of it.
    """
    flags = prot_flags(prot)
    backing.check_prot(prot, f"map view {role} {prot!r}")
    size = backing.size
    if strategy == "memfd" and backing.fd is None:
        raise UnsupportedAlias(
            "memfd", backing.kind, backing.pages, None,
            "the memfd strategy maps a file descriptor, and this memory has none",
        )
    if reservation:
        reservation.hold(address, size)
        target = address
    else:
        target = reserve(size, backing.page_size, backing, address)
    try:
        if strategy == "mremap":
            _mirror(backing, source, target)
            # The mirror inherits the protection of the source's mapping, whatever the
            # view asked for: set it before anything (populate, an array) touches it.
            native.mprotect(target, size, flags)
        else:
            backing.map_at(target, flags)
        backing.advise(target)
        if populate:
            _populate(target, size, prot, backing.page_size)
    except BaseException:
        if reservation:
            reservation.vacate(target, size)
        else:
            _quietly(native.munmap, target, size)
        raise
    return _finish(backing, target, prot, strategy, role, reservation)


def _mirror(backing: Backing, source: View, target: int) -> None:
    if source.backings != (backing,) or source.file_offset or first_overlap(source.holes, 0, 1):
        # The mirror maps the memory from the page at source.address on: it must be byte 0.
        raise UnsupportedAlias("mremap", backing.kind, backing.pages, None,
                               f"view {source.role} does not show byte 0 of the heap at its "
                               "address (relocated away), so it cannot be mirrored")
    flags = lib.MREMAP_MAYMOVE | lib.MREMAP_FIXED
    try:
        native.mremap(source.address, 0, backing.size, flags, target)
    except SyscallFailed as exc:
        if exc.errno != errno.EINVAL:
            raise explain(exc, backing.policy, backing.size) from None
        raise UnsupportedAlias(
            "mremap", backing.kind, backing.pages, exc.errno, _mirror_refusal(backing)
        ) from None


def _mirror_refusal(backing: Backing) -> str:
    if backing.kind == "private":
        return "only shared mappings can be mirrored (since Linux 4.14, commit dba58d3b8c50)"
    if backing.policy.hugetlb:
        return "hugetlb mappings cannot grow, and mremap counts old_size=0 as growth"
    return "the kernel refused mremap(old_size=0) for this mapping"


def _finish(
    backing: Backing,
    address: int,
    prot: str,
    strategy: str,
    role: str,
    reservation: Reservation | None,
) -> View:
    size = backing.size
    if backing.fd is not None:
        label = backing.memfd_name
    else:
        label = f"heapalias:{backing.name}:{role}"
        name_range(address, size, label)
    if reservation is None:
        def release() -> None:
            _quietly(native.munmap, address, size)
    else:
        def release() -> None:
            reservation.vacate(address, size)
    view = View(
        address=address, size=size, prot=prot, strategy=strategy, role=role, label=label,
        release=release, backings=(backing,),
    )
    if not backing.policy.inherited_by_fork:
        _NOT_INHERITED.add(view)
    return view


#: Views of memory mapped MADV_DONTFORK: closed in a fork child.
_NOT_INHERITED: weakref.WeakSet[View] = weakref.WeakSet()


def _forget_views_not_inherited() -> None:
    for view in list(_NOT_INHERITED):
        view._forget_after_fork()


os.register_at_fork(after_in_child=_forget_views_not_inherited)


class MultiView(Sequence[View]):
    """ZGC's colored layout: view ``k`` starts at ``base + (k << shift)``.

    Any address ``base + (k << shift) + offset`` reaches the heap byte ``offset``,
    whatever the color ``k``.
    """

    def __init__(self, views: list[View], reservation: Reservation, shift: int) -> None:
        self._views = tuple(views)
        self._base = reservation.address
        self._shift = shift
        # The layout's hold on the reservation: dropped by close(), or when the layout is
        # garbage-collected; the range goes back once its views are unmapped too.
        self._release = weakref.finalize(self, reservation.release)
        self._release.atexit = False

    base = read_only("_base", "Address of color 0.")
    shift = read_only("_shift", "Color ``k`` starts at base + (k << shift).")

    @property
    def closed(self) -> bool:
        return not self._release.alive

    def address(self, color: int, offset: int = 0) -> int:
        """The address of heap byte ``offset`` seen through color ``color``."""
        color, offset = require_int(color, "color"), require_int(offset, "offset")
        if not 0 <= color < len(self._views):
            raise InvalidArgument(f"color {color} is not one of this layout's {len(self)} views")
        size = self._views[color].size
        if not 0 <= offset < size:
            raise InvalidArgument(f"offset {offset} is outside the heap's {size} bytes")
        return self.base + (color << self.shift) + offset

    def color_of(self, address: int) -> int:
        """The color (view index) an address belongs to."""
        address = require_int(address, "address")
        color, offset = divmod(address - self.base, 1 << self.shift)
        if not 0 <= color < len(self._views) or offset >= self._views[0].size:
            raise InvalidArgument(f"address {address:#x} is in no view of this layout")
        return color

    def __getitem__(self, index):  # type: ignore[override]
        return self._views[index]

    def __len__(self) -> int:
        return len(self._views)

    def __iter__(self) -> Iterator[View]:
        return iter(self._views)

    def close(self) -> None:
        """Close every view and return the reservation, once no array of it is alive.

        Views with live arrays stay mapped (see View.close); they hold the
        reservation until the last of those arrays is gone. Idempotent.
        """
        for view in self._views:
            view.close()
        self._release()

    def __enter__(self) -> MultiView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MultiView(n={len(self)}, base={self.base:#x}, shift={self.shift})"
