"""Heap: one backing, its views, and what the kernel actually gave it."""

from __future__ import annotations

import json
import socket
import threading
import warnings
import weakref
from dataclasses import dataclass, field

from . import native
from .backing import (
    PAGES,
    Backing,
    MappingPolicy,
    fd_writable,
    format_size,
    own_fd,
    read_only,
    require_int,
    require_type,
    validate_name,
)
from .errors import (
    HeapAliasWarning,
    InvalidArgument,
    SyscallFailed,
    UnsupportedAlias,
    ViewClosed,
)
from .objects import ObjectHeap
from .system import SMAPS_FIELDS, read_smaps, smaps_range
from .views import (
    STRATEGIES,
    MultiView,
    Reservation,
    View,
    first_overlap,
    map_alias,
    map_primary,
    prot_flags,
)

MAX_COLORS = 16


def _strategy_order(policy: MappingPolicy, strategy: object) -> tuple[str, ...]:
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise InvalidArgument(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy != "auto":
        return (strategy,)
    return ("memfd", "mremap") if policy.backing == "memfd" else ("mremap",)


#: The most bytes of metadata a handle carries over a socket.
MAX_HANDLE_MESSAGE = 1 << 16


class HeapHandle:
    """What another process needs to map a shared heap: a memfd and its description.

    The handle owns its fd, and closes it on :meth:`close`, at the end of a
    ``with`` block, or when it is garbage-collected. Built from an fd (say, one a
    child inherited), it holds a duplicate; the caller keeps its own.

    Attributes:
        size, pages, name: what the sender says the heap is; :func:`attach` checks
            them against the memfd itself.
        meta: the JSON-serialisable dict passed to :meth:`Heap.share`.
    """

    def __init__(self, fd: int, size: int, pages: str, name: str, meta: dict | None = None
                 ) -> None:
        fields = _handle_fields(size, pages, name, {} if meta is None else meta)
        self._take(own_fd(fd), *fields)

    @classmethod
    def _owning(cls, fd: int, size: int, pages: str, name: str, meta: dict) -> HeapHandle:
        """A handle that takes ``fd`` over (fields already checked)."""
        handle = cls.__new__(cls)
        handle._take(fd, size, pages, name, meta)
        return handle

    def _take(self, fd: int, size: int, pages: str, name: str, meta: dict) -> None:
        self._fd = fd
        self._finalizer = weakref.finalize(self, native.close_quietly, fd)
        self._size, self._pages, self._name, self._meta = size, pages, name, meta

    size = read_only("_size", "Heap size in bytes, as the sender says.")
    pages = read_only("_pages", "Page size name, as the sender says.")
    name = read_only("_name", "The heap's name.")
    meta = read_only("_meta", "What the sender passed to Heap.share.")

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    @property
    def fd(self) -> int:
        """The memfd (owned by the handle); ViewClosed once the handle is closed."""
        if self.closed:
            raise ViewClosed("the heap handle is closed", remedy="share the heap again")
        return self._fd

    @property
    def writable(self) -> bool:
        """True when the fd may map the heap read-write (``heap.share(prot='rw')``)."""
        return fd_writable(self.fd)

    def send(self, sock: socket.socket) -> None:
        """Pass the handle over a connected UNIX socket (the fd goes with SCM_RIGHTS)."""
        info = {"size": self.size, "pages": self.pages, "name": self.name, "meta": self.meta}
        _require_socket(sock)
        message = json.dumps(info).encode()
        if len(message) > MAX_HANDLE_MESSAGE:
            raise InvalidArgument(
                f"the handle's metadata takes {len(message)} bytes, more than "
                f"{MAX_HANDLE_MESSAGE}", remedy="pass less metadata, or a path to it",
            )
        try:
            socket.send_fds(sock, [message], [self.fd])
        except OSError as exc:
            raise SyscallFailed.from_os_error("sendmsg", exc) from None

    @classmethod
    def receive(cls, sock: socket.socket) -> HeapHandle:
        """The handle another process sent with :meth:`send`.

        Whatever arrives, a received fd is either owned by the returned handle or
        closed: malformed metadata raises InvalidArgument.
        """
        _require_socket(sock)
        try:
            data, fds, _, _ = socket.recv_fds(sock, MAX_HANDLE_MESSAGE, 1)
        except OSError as exc:
            raise SyscallFailed.from_os_error("recvmsg", exc) from None
        try:
            if len(fds) != 1:
                raise InvalidArgument("no heap file descriptor arrived on the socket")
            try:
                info = json.loads(data)
            except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, deep nesting
                raise InvalidArgument(f"the handle's metadata is not JSON: {exc}") from None
            if not isinstance(info, dict) or not {"size", "pages", "name", "meta"} <= info.keys():
                raise InvalidArgument(
                    "the handle's metadata must be an object with size, pages, name and meta"
                )
            fields = _handle_fields(info["size"], info["pages"], info["name"], info["meta"])
        except BaseException:
            for fd in fds:
                native.close_quietly(fd)
            raise
        return cls._owning(fds[0], *fields)

    def close(self) -> None:
        """Close this handle's fd (heaps attached from it keep their own). Idempotent."""
        self._finalizer()

    def __enter__(self) -> HeapHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"HeapHandle({self.name!r}, {format_size(self.size)}, {self.pages!r}, {state})"


def _handle_fields(size: object, pages: object, name: object, meta: object
                   ) -> tuple[int, str, str, dict]:
    """A handle's description, checked for type (attach checks it against the memfd)."""
    size = require_int(size, "the handle's size")
    if not isinstance(pages, str) or pages not in PAGES:
        raise InvalidArgument(f"the handle's pages must be one of {PAGES}, got {pages!r}")
    if not isinstance(meta, dict):
        raise InvalidArgument(f"the handle's meta must be a dict, got {type(meta).__name__}")
    return size, pages, validate_name(name), meta


def _require_socket(sock: object) -> None:
    if not isinstance(sock, socket.socket) or sock.family != socket.AF_UNIX:
        raise InvalidArgument(f"handles travel over a UNIX socket, got {sock!r}")


def _sharing_prot(prot: object, what: str) -> None:
    """InvalidArgument unless ``prot`` is "r" or "rw" (a string: ``in`` on an array is
    an elementwise test, whose truth is a ValueError)."""
    if not isinstance(prot, str) or prot not in ("r", "rw"):
        raise InvalidArgument(f"{what} with prot 'r' or 'rw', got {prot!r}")


def attach(handle: HeapHandle, prot: str = "r", *, populate: bool = False) -> Heap:
    """Map a heap another process shared with :meth:`Heap.share` (see :meth:`Heap.attach`)."""
    return Heap.attach(handle, prot, populate=populate)


@dataclass(frozen=True)
class ViewPages:
    """What ``/proc/self/smaps`` says about one view. Sizes are in kB, as smaps gives them."""

    role: str
    address: int
    size: int
    kernel_page_kb: int
    fields: dict[str, int]
    vmflags: tuple[str, ...]
    obtained: str
    notes: tuple[str, ...] = field(default=())

    @property
    def hugetlb(self) -> bool:
        """True when the view is hugetlb memory (VmFlags ``ht``)."""
        return "ht" in self.vmflags


class Heap:
    """A heap of ``size`` bytes, mapped at one or more virtual addresses.

    Args:
        size: bytes, or a string like ``"64M"``; a positive multiple of the page size.
        backing: ``"memfd"`` (a memfd, aliasable by either strategy), ``"anon"``
            (``MAP_SHARED|MAP_ANONYMOUS``, aliasable by mremap) or ``"private"``
            (``MAP_PRIVATE|MAP_ANONYMOUS``, the no-alias baseline).
        pages: ``"4k"``, ``"thp"`` (transparent huge pages), ``"2m"`` or ``"1g"`` (hugetlb).
        name: shown in /proc/self/maps as the memfd name or the VMA name.
        populate: commit and fault in every page now (the default), so the first
            access costs no fault. With ``populate=False`` pages are faulted on first
            touch; hugetlb pages are still reserved when mapped, so a short pool
            fails here with HugePagesUnavailable and never with SIGBUS later.
            Populating more base-page memory than the machine has available raises
            InsufficientMemory instead of waking the OOM killer.
    """

    def __init__(
        self,
        size: int | str,
        *,
        backing: str = "memfd",
        pages: str = "4k",
        name: str = "heap",
        populate: bool = True,
    ) -> None:
        self._start(Backing(size, kind=backing, pages=pages, name=name), populate, "rw")
        shortfall = self._backing.policy.thp_shortfall()
        if shortfall:
            warnings.warn(shortfall, HeapAliasWarning, stacklevel=2)

    def _start(self, backing: Backing, populate: bool, prot: str) -> None:
        self._backing = backing
        self.populate = bool(populate)
        self._lock = threading.RLock()  # guards the view lists against concurrent alias/close
        self._views: list[View] = []
        self._layouts: list[MultiView] = []
        self._objects: ObjectHeap | None = None
        self._aliases = 0
        try:
            if self.populate and backing.fd is not None and prot == "rw":
                backing.check_committable()
                backing.commit_file()
            self._views.append(map_primary(backing, populate=self.populate, prot=prot))
        except BaseException:
            backing.close()
            raise

    def share(self, prot: str = "r", **meta: object) -> HeapHandle:
        """A handle another process can :func:`attach` to: the memfd, and what it holds.

        ``prot="r"`` (the default) hands out a read-only fd: the peer can map the heap
        for reading only, and the kernel refuses it anything else. ``"rw"`` lets it
        write (mark bits, evacuation). The memfd is sealed, so no peer can resize it.
        ``meta`` travels with it (JSON-serialisable), e.g. the spaces of an ObjectHeap.
        Pass the handle with ``handle.send(sock)`` over a UNIX socket, or let a child
        inherit ``handle.fd`` (``subprocess.run(..., pass_fds=[handle.fd])``).
        """
        _sharing_prot(prot, "share")
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"meta must be JSON-serialisable: {exc}") from None
        if self.closed:
            raise ViewClosed("the heap is closed", remedy="share it before closing it")
        if self.fd is None:
            raise UnsupportedAlias("share", self.backing, self.pages, None,
                                   "only memfd memory has a file descriptor to pass on")
        self._backing.check_prot(prot, "it cannot be shared read-write")
        fd = own_fd(self.fd, read_only=prot == "r")
        return HeapHandle._owning(fd, self.size, self.pages, self.name, dict(meta))

    @classmethod
    def attach(cls, handle: HeapHandle, prot: str = "r", *, populate: bool = False) -> Heap:
        """Map a heap that another process shared; its memory stays that process's heap.

        ``prot="r"`` gives read-only arrays (walks, verify, card scans), and the heap
        refuses every writable view (NotPermitted); ``"rw"`` lets loops that write
        (mark bits, evacuation) run over the shared heap, and needs a handle shared
        with ``prot="rw"``. The memfd must be sealed against resizing (every
        :meth:`share` handle is), and its size and page size must match the handle's.
        """
        require_type(handle, HeapHandle, "attach")
        _sharing_prot(prot, "attach")
        heap = cls.__new__(cls)
        backing = Backing(handle.size, kind="memfd", pages=handle.pages, name=handle.name,
                          fd=handle.fd, writable=prot == "rw")
        heap._start(backing, populate, prot)
        return heap

    size = read_only("_backing.size", "Heap size in bytes.")
    backing = read_only("_backing.kind", "'memfd', 'anon' or 'private'.")
    pages = read_only("_backing.pages", "'4k', 'thp', '2m' or '1g'.")
    page_size = read_only("_backing.page_size", "Granule in bytes.")
    name = read_only("_backing.name", "The heap's name.")
    fd = read_only("_backing.fd", "The memfd, or None.")
    commit_retries = read_only("_backing.commit_retries",
                               "Times committing hugetlb pages was retried after ENOSPC.")

    @property
    def closed(self) -> bool:
        return self._backing.closed

    @property
    def view(self) -> View:
        """The primary view: read-write, created with the heap."""
        return self._views[0]

    @property
    def objects(self) -> ObjectHeap:
        """Objects in this heap: offset references, one space (made on first use).

        For another encoding or layout, build ``ObjectHeap(heap, ...)`` yourself.
        """
        if self._objects is None:
            if self.closed:
                raise ViewClosed("the heap is closed", remedy="create a new Heap")
            self._objects = ObjectHeap(self)
        return self._objects

    @property
    def views(self) -> tuple[View, ...]:
        """Every view of this heap that is still open, the primary first."""
        return tuple(v for v in self._views if not v.closed)

    def _open_source(self) -> View:
        if self.closed:
            raise ViewClosed("the heap is closed", remedy="create a new Heap")
        # Forget closed views and layouts, so a long-lived heap does not accumulate them.
        self._views = [self._views[0]] + [v for v in self._views[1:] if not v.closed]
        self._layouts = [layout for layout in self._layouts if not layout.closed]
        open_views = [view for view in self._views if not view.closed]
        # Prefer a view that still shows byte 0 at its address: mremap mirrors from there.
        for view in sorted(open_views, key=lambda view: bool(first_overlap(view.holes, 0, 1))):
            return view
        raise ViewClosed("every view of this heap is closed; nothing is left to alias")

    def alias(self, strategy: str = "auto", prot: str = "rw", address: int | None = None) -> View:
        """Map the heap once more and return the new View.

        Args:
            strategy: ``"mremap"``, ``"memfd"`` or ``"auto"`` (the first that works).
            prot: ``"rw"``, ``"r"`` or ``"none"``.
            address: map exactly here (page-aligned); an existing mapping is never replaced.
        """
        prot_flags(prot)
        order = _strategy_order(self._backing.policy, strategy)
        if address is not None:
            address = self._check_address(address, self.size)
        with self._lock:
            source = self._open_source()
            self._aliases += 1
            role = f"alias{self._aliases}"
            view = self._first_working(
                order,
                lambda s: map_alias(
                    self._backing, source, strategy=s, prot=prot, role=role,
                    populate=self.populate, address=address,
                ),
            )
            self._views.append(view)
        return view

    def multimap(
        self, n: int, *, shift: int, strategy: str = "auto", prot: str = "rw"
    ) -> MultiView:
        """Map the heap ``n`` times at ``base + (k << shift)``, ZGC's colored layout.

        The views share one PROT_NONE reservation aligned to the page size; the
        gaps between them stay PROT_NONE, so a wrong color faults.
        """
        n, shift = require_int(n, "n"), require_int(shift, "shift")
        if not 1 <= n <= MAX_COLORS:
            raise InvalidArgument(f"n must be between 1 and {MAX_COLORS}, got {n}")
        stride = 1 << shift if 0 <= shift < 64 else 0
        if stride < self.size or stride % self.page_size:
            raise InvalidArgument(
                f"1 << shift must be at least the heap size ({format_size(self.size)}) and a "
                f"multiple of the page size; shift={shift} gives {stride}",
                remedy=f"use shift >= {max(self.size - 1, 1).bit_length()}",
            )
        span = (n - 1) * stride + self.size
        if span >= 1 << 46:
            raise InvalidArgument(
                f"{n} views at shift {shift} need {span:#x} bytes of address space"
            )
        prot_flags(prot)
        order = _strategy_order(self._backing.policy, strategy)
        with self._lock:
            return self._map_layout(n, shift, span, order, prot)

    def _map_layout(
        self, n: int, shift: int, span: int, order: tuple[str, ...], prot: str
    ) -> MultiView:
        source = self._open_source()
        reservation = Reservation(span, self._backing, f"heapalias:{self.name}:colors")
        views: list[View] = []
        try:
            for color in range(n):
                views.append(self._first_working(
                    order,
                    lambda s, c=color: map_alias(
                        self._backing, source, strategy=s, prot=prot, role=f"color{c}",
                        populate=self.populate, address=reservation.address + (c << shift),
                        reservation=reservation,
                    ),
                ))
        except BaseException:
            for view in views:
                view.close()
            reservation.release()
            raise
        self._views.extend(views)
        layout = MultiView(views, reservation, shift)
        self._layouts.append(layout)
        return layout

    def _first_working(self, order: tuple[str, ...], make) -> View:
        refusals: list[UnsupportedAlias] = []
        for strategy in order:
            try:
                return make(strategy)
            except UnsupportedAlias as exc:
                refusals.append(exc)
        if len(refusals) == 1:
            raise refusals[0]
        raise UnsupportedAlias(
            "auto", self.backing, self.pages, refusals[-1].errno,
            "; ".join(f"{r.strategy}: {r.reason}" for r in refusals),
        )

    def _check_address(self, address: object, size: int) -> int:
        address = require_int(address, "address")
        if address <= 0 or address % self.page_size or address + size > 1 << 47:
            raise InvalidArgument(
                f"address {address:#x} must be a non-zero multiple of the page size "
                f"({format_size(self.page_size)}) with the view below 1 << 47"
            )
        return address

    def pages_report(self) -> list[ViewPages]:
        """Per open view: the smaps fields and the page size actually obtained."""
        entries = read_smaps()
        notes = tuple(n for n in [self._backing.policy.thp_shortfall()] if n)
        for note in notes:
            warnings.warn(note, HeapAliasWarning, stacklevel=2)
        reports = []
        for view in self.views:
            vmas = smaps_range(view.address, view.address + view.size, entries)
            totals = {f: sum(v.fields.get(f, 0) for v in vmas) for f in SMAPS_FIELDS}
            page_kb = max((v.fields.get("KernelPageSize", 4) for v in vmas), default=4)
            totals["KernelPageSize"] = page_kb
            flags = tuple(sorted({flag for v in vmas for flag in v.vmflags}))
            reports.append(ViewPages(
                role=view.role, address=view.address, size=view.size, kernel_page_kb=page_kb,
                fields=totals, vmflags=flags, obtained=_obtained(totals, flags), notes=notes,
            ))
        return reports

    def close(self) -> None:
        """Close every view and the memfd. Idempotent; see View.close for live arrays."""
        with self._lock:
            self._objects = None  # its array would keep the primary view mapped
            for layout in self._layouts:
                layout.close()
            for view in self._views:
                view.close()
            self._backing.close()

    def __enter__(self) -> Heap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.views)} views"
        return (
            f"Heap({format_size(self.size)}, backing={self.backing!r}, pages={self.pages!r}, "
            f"name={self.name!r}, {state})"
        )


def join(*heaps: Heap, prot: str = "rw") -> View:
    """One view that maps several heaps back to back in one address range.

    Heap ``k`` starts at ``view.address + sum(size of heaps before k)``, so
    loops that take one base and one size (an :class:`ObjectHeap`, a
    SemiSpace whose spaces are two heaps) run across all of them. Each part is
    an alias of its heap; heap sizes must be multiples of the largest page size.
    """
    if not heaps or not all(isinstance(h, Heap) for h in heaps):
        raise InvalidArgument("join() takes one or more Heap objects")
    prot_flags(prot)
    granule = max(h.page_size for h in heaps)
    if any(h.size % granule for h in heaps):
        raise InvalidArgument(f"every joined heap must be a multiple of {format_size(granule)}")
    total = sum(h.size for h in heaps)
    reservation = Reservation(total, heaps[0]._backing, "heapalias:joined")
    parts: list[View] = []

    def release() -> None:
        for part in parts:
            part.close()
        reservation.release()

    try:
        start = reservation.address
        for heap in heaps:
            with heap._lock:
                source = heap._open_source()
                parts.append(heap._first_working(
                    _strategy_order(heap._backing.policy, "auto"),
                    lambda s, h=heap, at=start, src=source: map_alias(
                        h._backing, src, strategy=s, prot=prot, role="joined",
                        populate=h.populate, address=at, reservation=reservation,
                    ),
                ))
            start += heap.size
    except BaseException:
        release()
        raise

    label = "+".join(h.name for h in heaps)
    return View(address=reservation.address, size=total, prot=prot, strategy="joined",
                role="joined", label=f"heapalias:{label}:joined", release=release,
                backings=tuple(h._backing for h in heaps))


def _obtained(fields: dict[str, int], vmflags: tuple[str, ...]) -> str:
    """Describe the page size a view got: hugetlb, THP (with its share), or base pages."""
    if "ht" in vmflags:
        return f"{format_size(fields['KernelPageSize'] << 10)} hugetlb"
    huge_kb = fields["ShmemPmdMapped"] + fields["AnonHugePages"]
    if huge_kb and fields["Rss"]:
        return f"THP 2 MiB ({100 * huge_kb // fields['Rss']}% of resident)"
    return f"{format_size(fields['KernelPageSize'] << 10)} pages"
