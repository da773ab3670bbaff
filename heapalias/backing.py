"""The physical memory of a heap: a memfd, or anonymous shared or private memory.

A :class:`Backing` owns the memory, not any address: :mod:`heapalias.views`
decides where it is mapped. Its :class:`MappingPolicy` says which flags every
mapping of it uses, in the spirit of MMTk's ``MmapStrategy``.
"""

from __future__ import annotations

import errno
import os
import re
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import native
from .errors import (
    HeapAliasError,
    HugePagesUnavailable,
    InsufficientMemory,
    InvalidArgument,
    MapCountExceeded,
    SyscallFailed,
)
from .native import lib
from .system import (
    HUGETLB_PAGES,
    PAGE_SIZES,
    HugePagePool,
    hugepage_pool,
    map_count,
    max_map_count,
    memory_available,
    thp_mode,
)

BACKINGS = ("memfd", "anon", "private")
#: How long commit_file keeps retrying ENOSPC while a big-enough pool refills.
COMMIT_RETRY_SECONDS = 1.0
COMMIT_RETRY_SLEEP = 0.01
PAGES = tuple(PAGE_SIZES)
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,48}")
MAX_HEAP_SIZE = 1 << 46  # half the 47-bit user address space: views need room too
SHMEM_THP_KNOB = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
ANON_THP_KNOB = "/sys/kernel/mm/transparent_hugepage/enabled"


def _units() -> dict[str, int]:
    table = {"": 1, "b": 1}
    for power, letter in enumerate("kmgt", start=1):
        table[letter] = table[letter + "b"] = table[letter + "ib"] = 1 << (10 * power)
    return table


_UNITS = _units()


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string like ``"64M"``, ``"2MiB"``, ``"1g"`` (binary units)."""
    if isinstance(size, bool):
        raise InvalidArgument(f"size must be an int or a string like '64M', got {size!r}")
    if isinstance(size, int):
        return size
    if isinstance(size, str):
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", size)
        if match and match.group(2).lower() in _UNITS:
            return int(match.group(1)) * _UNITS[match.group(2).lower()]
    raise InvalidArgument(
        f"size must be an int or a string like '64M', '2MiB' or '1G', got {size!r}",
        remedy="pass a byte count, or a number with a binary unit (K, M, G, T)",
    )


def format_size(nbytes: int) -> str:
    """``2097152`` -> ``"2 MiB"``; exact when the size is a whole number of units."""
    for shift, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} B"


def require_int(value: object, what: str) -> int:
    """``value`` as an int (numpy integers too); InvalidArgument for bools, floats, strings."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgument(f"{what} must be an integer, got {value!r}")
    return int(value)


def _choice(value: object, allowed: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidArgument(
            f"{what} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class MappingPolicy:
    """How every mapping of one backing is made: the flags follow from these two names."""

    backing: str
    pages: str

    def __post_init__(self) -> None:
        _choice(self.backing, BACKINGS, "backing")
        _choice(self.pages, PAGES, "pages")

    @property
    def page_size(self) -> int:
        """The granule the heap size and every view address are aligned to."""
        return PAGE_SIZES[self.pages]

    @property
    def hugetlb(self) -> bool:
        return self.pages in HUGETLB_PAGES

    @property
    def shmem(self) -> bool:
        """True when the memory lives in shmem (memfd and shared anonymous do)."""
        return self.backing != "private" and not self.hugetlb

    @property
    def memfd_flags(self) -> int:
        flags = lib.MFD_CLOEXEC
        if self.hugetlb:
            size_flag = lib.MFD_HUGE_1GB if self.pages == "1g" else lib.MFD_HUGE_2MB
            flags |= lib.MFD_HUGETLB | size_flag
        return flags

    @property
    def anon_flags(self) -> int:
        """mmap flags for the first mapping of anonymous memory."""
        sharing = lib.MAP_PRIVATE if self.backing == "private" else lib.MAP_SHARED
        flags = lib.MAP_ANONYMOUS | sharing
        if self.hugetlb:
            size_flag = lib.MAP_HUGE_1GB if self.pages == "1g" else lib.MAP_HUGE_2MB
            flags |= lib.MAP_HUGETLB | size_flag
        return flags

    def thp_shortfall(self) -> str | None:
        """Why ``pages='thp'`` cannot give huge pages on this kernel, or None if it can."""
        if self.pages != "thp":
            return None
        if self.shmem:
            mode = thp_mode("shmem_enabled")
            if mode in ("never", "deny"):
                return (
                    f"shmem THP is off ({SHMEM_THP_KNOB} = {mode}): this {self.backing} heap gets "
                    f"4 KiB pages; `echo advise > {SHMEM_THP_KNOB}` enables it"
                )
        elif thp_mode("enabled") == "never":
            return (
                f"THP is off ({ANON_THP_KNOB} = never): this heap gets 4 KiB pages; "
                f"`echo madvise > {ANON_THP_KNOB}` enables it"
            )
        return None


def validate_size(size: int | str, policy: MappingPolicy) -> int:
    """The size in bytes, or InvalidArgument naming the nearest valid sizes."""
    nbytes = parse_size(size)
    granule = policy.page_size
    if 0 < nbytes <= MAX_HEAP_SIZE and nbytes % granule == 0:
        return nbytes
    largest = MAX_HEAP_SIZE // granule * granule
    below = min(max(nbytes // granule * granule, granule), largest)
    above = min(below + granule, largest) if nbytes > below else below
    nearest = [format_size(n) for n in dict.fromkeys((below, above))]
    raise InvalidArgument(
        f"heap size {nbytes} is not a positive multiple of the {policy.pages} page size "
        f"({format_size(granule)}) up to {format_size(MAX_HEAP_SIZE)}",
        remedy="use " + " or ".join(nearest),
    )


def validate_name(name: object) -> str:
    """A heap name usable in a memfd name and an anon VMA name."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidArgument(
            f"heap name must be 1-48 characters of letters, digits, '_', '.', '-'; got {name!r}"
        )
    return name


def explain(
    exc: SyscallFailed, policy: MappingPolicy, size: int, pool: HugePagePool | None = None
) -> HeapAliasError:
    """Turn a failed mapping call into the most specific error it can be.

    ``pool`` is the hugetlb pool as read before the call: a failed fallocate
    keeps the pages it got until the file is closed, so reading it after would
    understate what was free.
    """
    if exc.errno in (errno.ENOMEM, errno.ENOSPC) and policy.hugetlb:
        pool = pool or hugepage_pool(policy.page_size)
        needed = -(-size // policy.page_size)
        if exc.errno == errno.ENOSPC or pool.available < needed:
            return HugePagesUnavailable(
                needed, pool.available, policy.page_size, total=pool.total, errno=exc.errno,
                call=exc.call,
            )
    if exc.errno == errno.ENOMEM:
        in_use, limit = map_count(), max_map_count()
        if in_use >= limit - 2:
            return MapCountExceeded(in_use, limit, errno=exc.errno, call=exc.call)
    return exc


class Backing:
    """The physical memory of one heap.

    ``memfd`` memory is a file descriptor any number of mappings can share.
    ``anon`` and ``private`` memory exist only as their first mapping, made by
    :meth:`map_at`; ``anon`` can be mirrored from it with mremap, ``private`` cannot.
    """

    def __init__(
        self, size: int | str, *, kind: str = "memfd", pages: str = "4k", name: str = "heap",
        fd: int | None = None,
    ) -> None:
        self.policy = MappingPolicy(kind, pages)
        self.size = validate_size(size, self.policy)
        self.name = validate_name(name)
        self.fd: int | None = None
        self._close_fd: Callable[[], object] = lambda: None
        self.closed = False
        self._anon_mapped = False
        #: fallocate retries after ENOSPC while the pool refilled (see commit_file).
        self.commit_retries = 0
        if fd is not None:
            self._adopt(fd)
        elif kind == "memfd":
            self._create_memfd()

    def _adopt(self, fd: int) -> None:
        """Use (a duplicate of) a memfd another heap created, e.g. received from another process."""
        if self.kind != "memfd":
            raise InvalidArgument("only memfd memory can be attached from a file descriptor")
        try:
            actual = os.fstat(fd).st_size
            self.fd = os.dup(fd)
        except OSError as exc:
            raise InvalidArgument(f"fd {fd} is not an open memfd", errno=exc.errno,
                                  remedy="pass the handle's fd while it is open") from exc
        self._close_fd = weakref.finalize(self, native.close, self.fd)
        if actual != self.size:
            self.close()
            raise InvalidArgument(f"the memfd holds {actual} bytes, the handle says {self.size}")

    @property
    def kind(self) -> str:
        return self.policy.backing

    @property
    def pages(self) -> str:
        return self.policy.pages

    @property
    def page_size(self) -> int:
        return self.policy.page_size

    @property
    def memfd_name(self) -> str:
        return f"heapalias:{self.name}"

    def _create_memfd(self) -> None:
        try:
            self.fd = native.memfd_create(self.memfd_name, self.policy.memfd_flags)
            self._close_fd = weakref.finalize(self, native.close, self.fd)
            native.ftruncate(self.fd, self.size)
        except SyscallFailed as exc:
            self.close()
            raise explain(exc, self.policy, self.size) from None

    def check_committable(self) -> None:
        """Refuse to populate more base-page memory than the machine has.

        Faulting in a memfd past free memory would summon the OOM killer rather
        than return an error. Hugetlb pages come from their pool, checked by the kernel.
        """
        if self.policy.hugetlb:
            return
        available = memory_available()
        if self.size > available:
            raise InsufficientMemory(
                f"populating {format_size(self.size)} needs more than the "
                f"{available >> 20} MiB this machine has available (MemAvailable + SwapFree)",
                errno=errno.ENOMEM,
                remedy="use a smaller heap, or populate=False to fault pages in lazily",
            )

    def commit_file(self) -> None:
        """Allocate every hugetlb page of a memfd now, so a short pool fails here.

        Only hugetlb files are committed this way: fallocate on shmem would skip
        the THP advice a mapping carries, so shmem commits by populating a view.
        """
        if self.fd is None or not self.policy.hugetlb:
            return
        pool = hugepage_pool(self.page_size)
        needed = self.size // self.page_size
        deadline = time.monotonic() + COMMIT_RETRY_SECONDS
        while True:
            try:
                native.fallocate(self.fd, self.size)
                return
            except SyscallFailed as exc:
                # Like ZGC: pages a process is giving back (it just exited) reach the pool
                # a moment later, so a pool big enough overall is worth a few more tries.
                big_enough = hugepage_pool(self.page_size).total >= needed
                if exc.errno != errno.ENOSPC or not big_enough or time.monotonic() > deadline:
                    error = explain(exc, self.policy, self.size, pool)
                    if self.commit_retries and isinstance(error, HugePagesUnavailable):
                        error.message += f" (after {self.commit_retries} retries)"
                    raise error from None
                self.commit_retries += 1
                time.sleep(COMMIT_RETRY_SLEEP)

    def map_at(self, address: int, prot: int) -> None:
        """Map the memory at ``address`` (a range the caller reserved), replacing it."""
        if self.fd is not None:
            flags, fd = lib.MAP_SHARED | lib.MAP_FIXED, self.fd
        elif self._anon_mapped:
            raise InvalidArgument(
                f"{self.kind} memory exists only as its first mapping; alias it with mremap"
            )
        else:
            flags, fd = self.policy.anon_flags | lib.MAP_FIXED, -1
        try:
            native.mmap(self.size, prot, flags, fd, 0, address)
        except SyscallFailed as exc:
            raise explain(exc, self.policy, self.size) from None
        self._anon_mapped = self.fd is None

    def advise(self, address: int) -> None:
        """Ask for the page size the policy names on a fresh mapping of this backing."""
        if self.policy.hugetlb:
            return
        advice = lib.MADV_HUGEPAGE if self.pages == "thp" else lib.MADV_NOHUGEPAGE
        try:
            native.madvise(address, self.size, advice)
        except SyscallFailed as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: kernel built without THP
                raise

    def close(self) -> None:
        """Close the memfd; existing mappings keep the memory alive. Idempotent."""
        self.closed = True
        self.fd = None
        self._close_fd()  # a finalizer runs once, so close() is idempotent

    def __repr__(self) -> str:
        return (
            f"Backing(kind={self.kind!r}, pages={self.pages!r}, size={format_size(self.size)!r}, "
            f"fd={self.fd})"
        )
