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
"""

from __future__ import annotations

import contextlib
import errno
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from . import native
from .backing import Backing, explain, require_int
from .errors import InvalidArgument, SyscallFailed, UnsupportedAlias, ViewClosed, ViewInUse
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
    """A PROT_NONE range shared by several views (``Heap.multimap``).

    A closed view's part returns to PROT_NONE, so the hole stays reserved; the
    whole range is unmapped once the reservation and every view in it are gone.
    """

    def __init__(self, size: int, backing: Backing, label: str) -> None:
        self.size = size
        self.address = reserve(size, backing.page_size, backing)
        self.named = name_range(self.address, size, label)
        self._finalizer = weakref.finalize(self, _quietly, native.munmap, self.address, size)
        # Never at interpreter exit: views inside may still be released after this runs,
        # and re-reserving their part of a range we gave back would clobber whoever got it.
        self._finalizer.atexit = False

    def release(self) -> None:
        """Unmap the whole range now (only when no view lives in it). Idempotent."""
        self._finalizer()

    def vacate(self, address: int, size: int) -> None:
        """Put a view's part back to PROT_NONE."""
        _quietly(
            native.mmap, size, lib.PROT_NONE, _RESERVE_FLAGS | lib.MAP_FIXED, -1, 0, address
        )


class View:
    """One virtual mapping of a heap's memory, with its own protection.

    Attributes:
        address: first byte of the view.
        size: bytes mapped.
        prot: ``"rw"``, ``"r"`` or ``"none"``.
        strategy: ``"primary"``, ``"mremap"`` or ``"memfd"``: how the view was made.
        role: the view's part in the heap (``primary``, ``alias1``, ``color2``, ...).
        label: its name in /proc/self/maps (anonymous memory) or the memfd's name.
        backing: the Backing whose memory the view maps, or None for a view that
            maps several (``join``) or part of one (a relocated range).
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
        backing: Backing | None = None,
    ) -> None:
        self.address = address
        self.size = size
        self.prot = prot
        self.strategy = strategy
        self.role = role
        self.label = label
        self.backing = backing
        self._lock = threading.Lock()
        self._root: weakref.ref[np.ndarray] | None = None
        self._state = {"mapped": True}
        self.holes: list[tuple[int, int]] = []  # [start, end) offsets relocated away: PROT_NONE
        state = self._state

        def unmap(_pointer: object) -> None:
            release()
            state["mapped"] = False

        # Arrays reach the memory through buffers that hold this handle, so the
        # mapping is released only when the view and every array are gone.
        self._handle = ffi.gc(ffi.cast("void *", address), unmap)

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called: no new arrays can be made."""
        return self._handle is None

    @property
    def mapped(self) -> bool:
        """True while the memory is mapped: until close, or until the last array is gone."""
        return self._state["mapped"]

    @property
    def exported(self) -> bool:
        """True while a numpy array of this view is alive."""
        return self._root is not None and self._root() is not None

    @property
    def writable(self) -> bool:
        return self.prot == "rw"

    def _root_array(self) -> np.ndarray:
        root = self._root() if self._root is not None else None
        if root is None:
            buffer = memoryview(ffi.buffer(self._handle, self.size))
            root = np.frombuffer(buffer if self.writable else buffer.toreadonly(), np.uint8)
            self._root = weakref.ref(root)
        return root

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
        hole = first_overlap(self.holes, offset, offset + count * dtype.itemsize)
        if hole:
            raise InvalidArgument(
                f"bytes {hole[0]:#x}..{hole[1]:#x} of view {self.role} were relocated away "
                "and are PROT_NONE",
                remedy="ask for a range outside them, or read the relocated view",
            )
        with self._lock:
            if self.closed:
                raise ViewClosed(
                    f"view {self.role} at {self.address:#x} is closed",
                    remedy="create a new view with heap.alias()",
                )
            if self.prot == "none":
                raise InvalidArgument(
                    f"view {self.role} is PROT_NONE: its memory cannot be read",
                    remedy="call view.protect('r') or view.protect('rw') first",
                )
            root = self._root_array()
        return root[offset : offset + count * dtype.itemsize].view(dtype)

    def protect(self, prot: str) -> None:
        """Change this view's protection (mprotect); other views keep theirs.

        Raises ViewInUse when it would take access away from live arrays.
        """
        flags = prot_flags(prot)
        if self.holes:
            raise InvalidArgument(
                f"view {self.role} has relocated-away ranges; protecting it would expose them"
            )
        with self._lock:
            if self.closed:
                raise ViewClosed(f"view {self.role} at {self.address:#x} is closed")
            narrowing = (flags & PROTS[self.prot]) != PROTS[self.prot]
            if narrowing and self.exported:
                raise ViewInUse(
                    f"cannot change view {self.role} from {self.prot!r} to {prot!r}: "
                    "numpy arrays of it are alive",
                    remedy="delete the arrays first (del arr), then protect the view",
                )
            native.mprotect(self.address, self.size, flags)
            if prot != self.prot:
                self._root = None  # new arrays must carry the new writeability
            self.prot = prot

    def close(self) -> None:
        """Unmap now if no array is alive, else when the last one is gone. Idempotent."""
        with self._lock:
            handle, self._handle = self._handle, None
            if handle is not None and not self.exported:
                ffi.release(handle)

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


def first_overlap(ranges: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """The first ``[a, b)`` of ``ranges`` that meets ``[start, end)``, or None."""
    return next(((a, b) for a, b in ranges if start < b and a < end), None)


def _plain_dtype(dtype: object) -> np.dtype:
    try:
        result = np.dtype(dtype)
    except TypeError as exc:
        raise InvalidArgument(f"not a numpy dtype: {dtype!r}") from exc
    if result.hasobject or result.itemsize == 0:
        raise InvalidArgument(f"dtype {result} cannot live in raw heap memory")
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
    size = backing.size
    if strategy == "memfd" and backing.fd is None:
        raise UnsupportedAlias(
            "memfd", backing.kind, backing.pages, None,
            "the memfd strategy maps a file descriptor, and this memory has none",
        )
    target = address if reservation else reserve(size, backing.page_size, backing, address)
    try:
        if strategy == "mremap":
            _mirror(backing, source.address, target)
            if prot != "rw":
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


def _mirror(backing: Backing, source: int, target: int) -> None:
    flags = lib.MREMAP_MAYMOVE | lib.MREMAP_FIXED
    try:
        native.mremap(source, 0, backing.size, flags, target)
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
    return View(
        address=address, size=size, prot=prot, strategy=strategy, role=role, label=label,
        release=release, backing=backing,
    )


class MultiView(Sequence[View]):
    """ZGC's colored layout: view ``k`` starts at ``base + (k << shift)``.

    Any address ``base + (k << shift) + offset`` reaches the heap byte ``offset``,
    whatever the color ``k``.
    """

    def __init__(self, views: list[View], reservation: Reservation, shift: int) -> None:
        self._views = views
        self._reservation: Reservation | None = reservation
        self.base = reservation.address
        self.shift = shift

    @property
    def closed(self) -> bool:
        return self._reservation is None

    def address(self, color: int, offset: int = 0) -> int:
        """The address of heap byte ``offset`` seen through color ``color``."""
        view = self._views[color]
        if not 0 <= offset < view.size:
            raise InvalidArgument(f"offset {offset} is outside the heap's {view.size} bytes")
        return self.base + (color << self.shift) + offset

    def color_of(self, address: int) -> int:
        """The color (view index) an address belongs to."""
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
        reservation, self._reservation = self._reservation, None
        if reservation is not None and not any(view.mapped for view in self._views):
            reservation.release()

    def __enter__(self) -> MultiView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MultiView(n={len(self)}, base={self.base:#x}, shift={self.shift})"
