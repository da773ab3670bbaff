"""The exception hierarchy: types, errno and remedy on every error."""

from __future__ import annotations

import errno

import pytest

import heapalias as ha
from heapalias.errors import errno_name


def test_hierarchy() -> None:
    for cls in (
        ha.HugePagesUnavailable, ha.UnsupportedAlias, ha.MapCountExceeded, ha.InvalidArgument,
        ha.ViewInUse, ha.ViewClosed, ha.SyscallFailed, ha.NotPermitted,
    ):
        assert issubclass(cls, ha.HeapAliasError)
    assert issubclass(ha.InvalidArgument, ValueError)
    assert issubclass(ha.ViewClosed, ValueError)
    assert issubclass(ha.ViewInUse, BufferError)


def test_message_carries_errno_and_remedy() -> None:
    exc = ha.HeapAliasError("mmap failed", errno=errno.ENOMEM, remedy="free some memory")
    assert str(exc) == "mmap failed [ENOMEM: Cannot allocate memory]. Remedy: free some memory"
    assert (exc.errno, exc.remedy) == (errno.ENOMEM, "free some memory")
    assert str(ha.HeapAliasError("plain")) == "plain"


def test_hugepages_unavailable_names_pool_and_command() -> None:
    exc = ha.HugePagesUnavailable(10, 4, 2 << 20, total=8, errno=errno.ENOSPC, call="fallocate")
    assert (exc.needed, exc.free, exc.page_size) == (10, 4, 2 << 20)
    assert "2 MiB hugetlb pool has 4 free pages, this heap needs 10" in str(exc)
    assert "heapalias hugepages --reserve 14 --size 2m" in exc.remedy
    assert "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages" in exc.remedy
    big = ha.HugePagesUnavailable(1, 0, 1 << 30, total=0, errno=errno.ENOMEM, call="mmap")
    assert "--size 1g" in big.remedy and "1 GiB" in str(big)


def test_unsupported_alias_and_map_count() -> None:
    exc = ha.UnsupportedAlias("mremap", "anon", "2m", errno.EINVAL, "hugetlb cannot grow")
    assert (exc.strategy, exc.backing, exc.pages, exc.errno) == ("mremap", "anon", "2m", 22)
    assert "strategy='memfd'" in exc.remedy
    limit = ha.MapCountExceeded(65530, 65530, errno=errno.ENOMEM, call="mmap")
    assert (limit.in_use, limit.limit) == (65530, 65530)
    assert "sysctl -w vm.max_map_count=" in limit.remedy


@pytest.mark.parametrize(
    ("code", "name"), [(errno.EINVAL, "EINVAL"), (None, "-"), (9999, "errno 9999")]
)
def test_errno_name(code, name) -> None:
    assert errno_name(code) == name


def test_syscall_errors_name_the_fd_limit_when_it_is_the_cause() -> None:
    exc = ha.SyscallFailed.from_os_error("read", OSError(errno.EMFILE, "Too many open files"),
                                         detail="/proc/meminfo")
    assert (exc.call, exc.errno) == ("read", errno.EMFILE)
    assert str(exc).startswith("read failed: /proc/meminfo [EMFILE: Too many open files]")
    assert "ulimit -n" in exc.remedy
    assert ha.SyscallFailed("mmap", errno.EINVAL).remedy == "see the errno in the man page"


def test_not_permitted_for_a_read_only_heap_carries_eacces_and_a_remedy() -> None:
    with ha.Heap("64K") as heap, heap.share() as handle, ha.attach(handle) as attached, \
            pytest.raises(ha.NotPermitted) as caught:
        attached.alias(prot="rw")
    assert caught.value.errno == errno.EACCES
    assert "read-only" in str(caught.value) and "prot='rw'" in caught.value.remedy
