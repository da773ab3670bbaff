"""userfaultfd on this kernel: whether this process may use it, and which features the
kernel offers, found by asking the kernel (the UFFDIO_API handshake on a fresh
userfaultfd), never from a version table.

The page-trap designs of :mod:`heapalias.concurrent` (``minor``) need one feature each
per page size; :func:`require` raises :class:`~heapalias.errors.FeatureUnavailable`
with the remedy when it is missing.
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import asdict, dataclass, field

from . import native
from .errors import FeatureUnavailable, SyscallFailed, errno_name
from .native import lib
from .system import read_text

#: The features heapalias reports, by name: the kernel's UFFD_FEATURE_* bits.
FEATURES: dict[str, int] = {
    "MINOR_SHMEM": lib.UFFD_FEATURE_MINOR_SHMEM,
    "MINOR_HUGETLBFS": lib.UFFD_FEATURE_MINOR_HUGETLBFS,
    "MISSING_SHMEM": lib.UFFD_FEATURE_MISSING_SHMEM,
    "MISSING_HUGETLBFS": lib.UFFD_FEATURE_MISSING_HUGETLBFS,
    "MOVE": lib.UFFD_FEATURE_MOVE,
    "WP": lib.UFFD_FEATURE_PAGEFAULT_FLAG_WP,
    "WP_HUGETLBFS_SHMEM": lib.UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
}

SYSCTL = "/proc/sys/vm/unprivileged_userfaultfd"
DEVICE = "/dev/userfaultfd"


@dataclass(frozen=True)
class UffdCapability:
    """What the probe found: each way of opening a userfaultfd (the system call, the
    device), the sysctl, whether this process can use one, and each feature."""

    syscall: bool               #: the system call gave this process a userfaultfd
    syscall_error: str          #: why not (an errno name), or ""
    device: bool                #: /dev/userfaultfd gave it one
    device_error: str
    unprivileged: int | None    #: vm.unprivileged_userfaultfd, None if the kernel has none
    features: dict[str, bool] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """Whether this process can open a userfaultfd at all."""
        return self.syscall or self.device

    def as_dict(self) -> dict:
        return {**asdict(self), "usable": self.usable}


def _sysctl(path: str) -> int | None:
    """The sysctl's value; None if this kernel has none (or it is not a number)."""
    try:
        return int(read_text(path).strip())
    except SyscallFailed as exc:
        if exc.errno in (_errno.ENOENT, _errno.ENOTDIR):
            return None
        raise
    except ValueError:
        return None


def _try(via_device: bool) -> tuple[int | None, str]:
    try:
        return native.uffd_features(via_device)[0], ""
    except SyscallFailed as exc:
        return None, errno_name(exc.errno)


def capability() -> UffdCapability:
    """Ask the kernel, through each way in, what userfaultfd offers this process."""
    by_syscall, syscall_error = _try(False)
    by_device, device_error = (_try(True) if os.path.exists(DEVICE)
                               else (None, errno_name(_errno.ENOENT)))
    features = by_syscall if by_syscall is not None else by_device or 0
    return UffdCapability(by_syscall is not None, syscall_error, by_device is not None,
                          device_error, _sysctl(SYSCTL),
                          {name: bool(features & bit) for name, bit in FEATURES.items()})


def require(feature: str | None, why: str) -> None:
    """Raise FeatureUnavailable (with a remedy) unless this process can use userfaultfd
    and ``feature`` (None: userfaultfd alone)."""
    cap = capability()
    if not cap.usable:
        raise FeatureUnavailable(
            f"{why} needs userfaultfd, which this process cannot open "
            f"(system call: {cap.syscall_error or 'ok'}, {DEVICE}: {cap.device_error or 'ok'})",
            errno=_errno.EPERM,
            remedy="run as root, or allow it: `sysctl -w vm.unprivileged_userfaultfd=1` "
                   f"(or give this user read-write access to {DEVICE})")
    if feature is not None and not cap.features.get(feature):
        raise FeatureUnavailable(
            f"{why} needs the userfaultfd feature {feature}, which this kernel lacks",
            errno=_errno.EINVAL, remedy="run on a newer kernel (see `heapalias probe`)")


def relocate(source, target, move: bool) -> native.LoopStats:
    """Install the bytes of view ``source`` at view ``target`` (private anonymous 4k views
    of one size, as a compactor's heap) through a userfaultfd: fill the source, empty the
    target, then UFFDIO_MOVE (``move``: the pages themselves) or UFFDIO_COPY. Only the
    ioctl is timed (the relocation bench case)."""
    length = source.size
    native.touch(source.address, length, 4096, True)
    native.madvise(target.address, length, lib.MADV_DONTNEED)
    return native.relocate_uffd(target.address, source.address, length, move)
