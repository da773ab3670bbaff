"""The physical memory of a heap: a memfd, or anonymous shared or private memory.

A :class:`Backing` owns the memory, not any address: :mod:`heapalias.views`
decides where it is mapped. Its :class:`MappingPolicy` says which flags every
mapping of it uses, in the spirit of MMTk's ``MmapStrategy``.
"""

from __future__ import annotations

import errno
import fcntl
import operator
import os
import re
import stat
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
    NotPermitted,
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
#: Seals every heap memfd carries once sized: nobody, this process or a peer it shared
#: the fd with, can resize it under a mapping (a shrunk memfd is SIGBUS to read), and
#: no further seal can be added.
HEAP_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
#: The seals an attached memfd must carry.
REQUIRED_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
ANON_THP_KNOB = "/sys/kernel/mm/transparent_hugepage/enabled"
#: A heap memfd's file mode: owner read-only, so a peer holding a read-only fd cannot
#: reopen it read-write through /proc/<pid>/fd/N (root bypasses file modes).
MEMFD_MODE = 0o400
#: The largest file descriptor number (fds are C ints).
FD_MAX = (1 << 31) - 1


def read_only(field: str, doc: str) -> property:
    """A property that reads ``field`` (a dotted path from self) and cannot be assigned:
    for what C loops and syscalls trust."""
    return property(operator.attrgetter(field), doc=doc)


def _units() -> dict[str, int]:
    table = {"": 1, "b": 1}
    for power, letter in enumerate("kmgt", start=1):
        table[letter] = table[letter + "b"] = table[letter + "ib"] = 1 << (10 * power)
    return table


_UNITS = _units()


def parse_size(size: int | str) -> int:
    """Bytes from an int (numpy integers too) or a string like ``"64M"``, ``"2MiB"``, ``"1g"``
    (binary units)."""
    if isinstance(size, str):
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", size)
        if match and match.group(2).lower() in _UNITS:
            return int(match.group(1)) * _UNITS[match.group(2).lower()]
    elif (nbytes := _integer(size)) is not None:
        return nbytes
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


def _integer(value: object) -> int | None:
    """``value`` as an int if it is an integer (numpy's too, via ``__index__``), not a bool."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def require_int(value: object, what: str) -> int:
    """``value`` as an int (numpy integers too); InvalidArgument for bools, floats, strings."""
    result = _integer(value)
    if result is None:
        raise InvalidArgument(f"{what} must be an integer, got {value!r}")
    return result


def require_type(value: object, kind: type | tuple[type, ...], what: str):
    """``value`` if it is an instance of ``kind``; InvalidArgument naming ``what`` otherwise.

    The one check for the heaps, views and object heaps public calls take: a wrong
    object must not get as far as an AttributeError on its first use.
    """
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(k.__name__ for k in kinds)
        article = "an" if expected[0] in "AEIOU" else "a"
        raise InvalidArgument(f"{what}: expected {article} {expected}, "
                              f"got {type(value).__name__}")
    return value


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
    def inherited_by_fork(self) -> bool:
        """False for private hugetlb memory, mapped MADV_DONTFORK: its huge pages are
        reserved for this process only, so a child's copy-on-write could be SIGBUS."""
        return not (self.backing == "private" and self.hugetlb)

    @property
    def memfd_flags(self) -> int:
        flags = lib.MFD_CLOEXEC | lib.MFD_ALLOW_SEALING
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

    ``memfd`` memory is a file descriptor any number of mappings can share. Its
    memfd is sealed against shrinking and growing once sized.
    ``anon`` and ``private`` memory exist only as their first mapping, made by
    :meth:`map_at`; ``anon`` can be mirrored from it with mremap, ``private`` cannot.

    ``fd`` adopts a memfd another heap shared; ``writable=False`` then holds it
    through a read-only fd, and every read-write mapping is refused (NotPermitted).
    """

    def __init__(
        self, size: int | str, *, kind: str = "memfd", pages: str = "4k", name: str = "heap",
        fd: int | None = None, writable: bool = True,
    ) -> None:
        # Read-only from outside (properties below): every mapping and syscall trusts them.
        self._policy = MappingPolicy(kind, pages)
        self._size = validate_size(size, self._policy)
        self._name = validate_name(name)
        self._fd: int | None = None
        self._writable = True
        self._close_fd: Callable[[], object] = lambda: None
        self._closed = False
        self._anon_mapped = False
        self._commit_retries = 0
        if fd is not None:
            self._adopt(fd, bool(writable))
        elif kind == "memfd":
            self._create_memfd()

    policy = read_only("_policy", "How every mapping of it is made.")
    size = read_only("_size", "Bytes of memory.")
    name = read_only("_name", "The heap's name.")
    fd = read_only("_fd", "The memfd (owned by the backing), or None.")
    writable = read_only("_writable", "False when attached read-only: no view may be writable.")
    closed = read_only("_closed", "True once close() was called.")
    commit_retries = read_only("_commit_retries",
                               "fallocate retries after ENOSPC while the pool refilled.")

    def _adopt(self, fd: object, writable: bool) -> None:
        """Use a memfd another heap created, e.g. received from another process.

        Nothing the sender claims is trusted: the fd must be a memfd sealed against
        resizing (or a peer could shrink it under our mappings: SIGBUS), and its size
        and page size come from fstat. Read-only adoption holds its own read-only fd,
        so the kernel refuses writable mappings as well.
        """
        if self.kind != "memfd":
            raise InvalidArgument("only memfd memory can be attached from a file descriptor")
        fd = require_fd(fd)
        info, fd_writable = _shared_memfd(fd)
        # The seals were checked first, so this size can no longer change.
        if info.st_size != self.size:
            raise InvalidArgument(f"the memfd holds {info.st_size} bytes, the handle says "
                                  f"{self.size}")
        page = self.page_size if self.policy.hugetlb else os.sysconf("SC_PAGE_SIZE")
        if info.st_blksize != page:
            raise InvalidArgument(
                f"the memfd has {format_size(info.st_blksize)} pages, the handle says "
                f"{self.pages!r}"
            )
        if writable and not fd_writable:
            raise NotPermitted(
                f"heap {self.name!r} was shared read-only: its fd cannot map writable memory",
                errno=errno.EACCES,
                remedy="attach with prot='r', or have the owner share it with "
                       "heap.share(prot='rw')",
            )
        # Read-only: our own read-only fd, so the kernel, too, refuses writable mappings.
        self._fd = own_fd(fd, read_only=not writable)
        self._close_fd = weakref.finalize(self, native.close_quietly, self._fd)
        self._writable = writable

    def check_prot(self, prot: str, what: str) -> None:
        """NotPermitted when ``prot`` would write memory attached read-only."""
        if prot == "rw" and not self.writable:
            raise NotPermitted(
                f"{what}: heap {self.name!r} is attached read-only",
                errno=errno.EACCES,
                remedy="attach it with prot='r' only for reading; to write, attach a handle "
                       "shared with heap.share(prot='rw') with prot='rw'",
            )

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
            self._fd = native.memfd_create(self.memfd_name, self.policy.memfd_flags)
            self._close_fd = weakref.finalize(self, native.close_quietly, self._fd)
            native.ftruncate(self._fd, self.size)
            _add_seals(self._fd, HEAP_SEALS)
            # memfds are born 0777: anyone holding a read-only fd could reopen it
            # read-write through /proc/<pid>/fd. Owner read-only closes that (this
            # process keeps its O_RDWR fd, and dup()s it to share read-write).
            _chmod(self._fd, MEMFD_MODE)
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
                    if self._commit_retries and isinstance(error, HugePagesUnavailable):
                        error.message += f" (after {self._commit_retries} retries)"
                    raise error from None
                self._commit_retries += 1
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
        """Ask for the page size the policy names on a fresh mapping of this backing,
        and keep private hugetlb memory out of fork() children."""
        if not self.policy.inherited_by_fork:
            native.madvise(address, self.size, lib.MADV_DONTFORK)
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
        self._closed = True
        self._fd = None
        self._close_fd()  # a finalizer runs once, so close() is idempotent

    def __repr__(self) -> str:
        return (
            f"Backing(kind={self.kind!r}, pages={self.pages!r}, size={format_size(self.size)!r}, "
            f"fd={self.fd})"
        )


def _add_seals(fd: int, seals: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except OSError as exc:
        raise SyscallFailed.from_os_error("fcntl(F_ADD_SEALS)", exc) from None


def _chmod(fd: int, mode: int) -> None:
    try:
        os.fchmod(fd, mode)
    except OSError as exc:
        raise SyscallFailed.from_os_error("fchmod", exc) from None


def _shared_memfd(fd: int) -> tuple[os.stat_result, bool]:
    """fstat of ``fd`` and whether it is open for writing, once it proves to be a memfd
    sealed against resizing."""
    try:
        # Seals first: once they are there, the size fstat reads can no longer change.
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        info = os.fstat(fd)
        writable = fd_writable(fd)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise InvalidArgument(f"fd {fd} is not open", errno=exc.errno,
                                  remedy="pass the handle's fd while it is open") from None
        if exc.errno != errno.EINVAL:
            raise SyscallFailed.from_os_error("fcntl", exc, detail=f"fd {fd}") from None
        seals = None  # EINVAL: a file that cannot carry seals (not shmem or hugetlbfs)
    if seals is None or not stat.S_ISREG(info.st_mode):
        raise InvalidArgument(
            f"fd {fd} is not a memfd", errno=errno.EINVAL,
            remedy="attach only a handle made by heap.share()",
        )
    if seals & REQUIRED_SEALS != REQUIRED_SEALS:
        raise InvalidArgument(
            f"the memfd of fd {fd} is not sealed against shrinking and growing, so its "
            "owner or a peer could truncate it under our mappings (SIGBUS)",
            remedy="attach only a handle made by heap.share(), which seals its memfd",
        )
    return info, writable


def fd_writable(fd: int) -> bool:
    """True when ``fd`` was opened read-write."""
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR


def require_fd(value: object) -> int:
    """``value`` as a file descriptor number: InvalidArgument for anything but an int
    from 0 to the largest fd the kernel can have (a C int)."""
    fd = require_int(value, "fd")
    if not 0 <= fd <= FD_MAX:
        raise InvalidArgument(f"fd {fd} is not a file descriptor number", errno=errno.EBADF,
                              remedy="pass the handle's fd while it is open")
    return fd


def own_fd(fd: object, *, read_only: bool = False) -> int:
    """A new close-on-exec fd of the same file, for the caller to own.

    A duplicate keeps the original's access; ``read_only`` reopens a read-write fd
    through /proc/self/fd instead, so the new fd cannot write whatever the original
    can. A read-only fd is simply duplicated: a peer of another user could not reopen
    it (a heap memfd is owner-read-only, MEMFD_MODE).
    """
    fd = require_fd(fd)
    try:
        if read_only and fd_writable(fd):
            try:
                return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
            except PermissionError:
                # Not the memfd's owner: we can write it through `fd` anyway, so a
                # duplicate grants nothing new (heapalias still refuses writable views).
                pass
        return os.dup(fd)
    except OSError as exc:
        if exc.errno in (errno.EBADF, errno.ENOENT):  # ENOENT: gone from /proc/self/fd
            raise InvalidArgument(f"fd {fd} is not open", errno=errno.EBADF,
                                  remedy="pass the handle's fd while it is open") from None
        raise SyscallFailed.from_os_error("dup" if not read_only else "open /proc/self/fd",
                                          exc, detail=f"fd {fd}") from None
