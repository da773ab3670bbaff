"""One exception hierarchy: every error names its errno (when the kernel gave one) and a remedy."""

from __future__ import annotations

import errno as _errno
import os


def errno_name(code: int | None) -> str:
    """``ENOMEM`` for 12, ``"-"`` for None."""
    if code is None:
        return "-"
    return _errno.errorcode.get(code, f"errno {code}")


class HeapAliasError(Exception):
    """Base of every heapalias error.

    Attributes:
        errno: the kernel's errno, or None when the error was found in Python.
        remedy: one sentence telling the user what to do about it.
    """

    def __init__(self, message: str, *, errno: int | None = None, remedy: str = "") -> None:
        self.message = message
        self.errno = errno
        self.remedy = remedy
        super().__init__(message)

    def __str__(self) -> str:
        text = self.message
        if self.errno is not None:
            text += f" [{errno_name(self.errno)}: {os.strerror(self.errno)}]"
        if self.remedy:
            text += f". Remedy: {self.remedy}"
        return text


class SyscallFailed(HeapAliasError):
    """A system call failed in a way no more specific error describes."""

    def __init__(self, call: str, errno: int, *, detail: str = "", remedy: str = "") -> None:
        self.call = call
        message = f"{call} failed" + (f": {detail}" if detail else "")
        super().__init__(message, errno=errno, remedy=remedy or errno_remedy(errno))

    @classmethod
    def from_os_error(cls, call: str, exc: OSError, *, detail: str = "") -> SyscallFailed:
        """The typed form of an OSError that Python's own wrappers raised."""
        return cls(call, exc.errno or _errno.EIO, detail=detail)


def errno_remedy(code: int | None) -> str:
    """What to do about an errno that says more than the call that failed."""
    if code in (_errno.EMFILE, _errno.ENFILE):
        return ("this process ran out of file descriptors: close ones it no longer needs, "
                "or raise the limit (`ulimit -n`)")
    return "see the errno in the man page"


class InvalidArgument(HeapAliasError, ValueError):
    """A size, name, offset, protection or option that can never work."""


class ViewClosed(HeapAliasError, ValueError):
    """The view, or its heap, was closed; no new arrays or aliases can come from it."""


class ViewInUse(HeapAliasError, BufferError):
    """The operation would change memory under numpy arrays that are still alive."""


class UnsupportedAlias(HeapAliasError):
    """The kernel refused to map this backing at another address with this strategy."""

    def __init__(
        self, strategy: str, backing: str, pages: str, errno: int | None, reason: str
    ) -> None:
        self.strategy = strategy
        self.backing = backing
        self.pages = pages
        self.reason = reason
        super().__init__(
            f"alias strategy {strategy!r} does not work for backing={backing!r} "
            f"pages={pages!r}: {reason}",
            errno=errno,
            remedy=_alias_remedy(strategy, backing, pages),
        )


def _alias_remedy(strategy: str, backing: str, pages: str) -> str:
    if backing == "private":
        return "private memory cannot be aliased; use backing='memfd' or backing='anon'"
    if pages in ("2m", "1g"):
        return "alias hugetlb memory with backing='memfd' and strategy='memfd'"
    return "use strategy='auto', or run `heapalias probe` to see what works on this kernel"


class HugePagesUnavailable(HeapAliasError):
    """The hugetlb pool of this page size has fewer free pages than the heap needs."""

    def __init__(
        self, needed: int, free: int, page_size: int, *, total: int, errno: int | None, call: str
    ) -> None:
        self.needed = needed
        self.free = free
        self.page_size = page_size
        label = "1g" if page_size == 1 << 30 else "2m"
        reserve = total + max(needed - free, 1)
        super().__init__(
            f"{call}: the {_size_label(page_size)} hugetlb pool has {free} free pages, "
            f"this heap needs {needed}",
            errno=errno,
            remedy=(
                f"grow the pool as root: `heapalias hugepages --reserve {reserve} --size {label}` "
                f"(or `echo {reserve} > {hugepage_sysctl(page_size)}`)"
            ),
        )


def _size_label(page_size: int) -> str:
    return f"{page_size >> 30} GiB" if page_size >= 1 << 30 else f"{page_size >> 20} MiB"


def hugepage_sysctl(page_size: int) -> str:
    """The sysfs file that sets the pool size for one huge page size."""
    return f"/sys/kernel/mm/hugepages/hugepages-{page_size >> 10}kB/nr_hugepages"


class MapCountExceeded(HeapAliasError):
    """The process reached ``vm.max_map_count``: every view costs at least one mapping."""

    def __init__(self, in_use: int, limit: int, *, errno: int | None, call: str) -> None:
        self.in_use = in_use
        self.limit = limit
        super().__init__(
            f"{call}: the process uses {in_use} memory mappings and vm.max_map_count is {limit}",
            errno=errno,
            remedy=(
                f"close views you no longer need, or raise the limit as root: "
                f"`sysctl -w vm.max_map_count={max(limit * 2, 262144)}`"
            ),
        )


class InsufficientMemory(HeapAliasError):
    """Committing the heap now would exceed the memory the machine has available."""


class NotPermitted(HeapAliasError):
    """The operation needs a right this process lacks: root, or write access to a heap
    that was shared or attached read-only (errno EACCES)."""


class HeapAliasWarning(UserWarning):
    """The heap works, but not as asked: e.g. ``pages='thp'`` on shmem with shmem THP off."""


class HeapCorruption(HeapAliasError):
    """A GC loop found a header or reference that cannot be right; nothing was dereferenced past it.

    Attributes:
        offset: heap offset of the bad header, or of the slot holding the bad reference.
        reason: what was wrong.
        root: index of the root at fault, or None when the fault is in the heap.
    """

    def __init__(self, offset: int, reason: str, root: int | None = None) -> None:
        self.offset = offset
        self.reason = reason
        self.root = root
        where = f"root {root}" if root is not None else f"heap offset {offset:#x}"
        super().__init__(
            f"heap corruption at {where}: {reason}",
            remedy="run heapalias.collectors.verify() after each mutation to find the bad write",
        )


class SpaceFull(HeapAliasError):
    """An allocation or evacuation needed more room than the space has."""


class HeapDumpError(HeapAliasError):
    """An HPROF heap dump that cannot be read: truncated, corrupt, or not a heap dump.

    Attributes:
        offset: the file offset of the record or sub-record at fault.
        tag: its tag (``0x21`` an INSTANCE DUMP...), or None where no record is at fault
            (the file header, a file that changed between the passes).
        reason: what was wrong.
    """

    def __init__(self, offset: int, tag: int | None, reason: str, *, remedy: str = "") -> None:
        self.offset = offset
        self.tag = tag
        self.reason = reason
        where = f"offset {offset:#x}" + ("" if tag is None else f", record tag {tag:#04x}")
        super().__init__(
            f"heap dump corrupt at {where}: {reason}",
            remedy=remedy or "take the dump again (jcmd PID GC.heap_dump FILE); a dump that "
                             "was cut short or copied while it was written cannot be read",
        )


class FeatureUnavailable(HeapAliasError):
    """The kernel, or this process's rights, lack a feature the operation needs (a
    userfaultfd mode, say); ``remedy`` says what would provide it."""
