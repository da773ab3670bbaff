"""System facts: pools, THP modes, limits and smaps parsing."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

import heapalias as ha
from heapalias import system

from conftest import IS_ROOT, run_isolated


def test_system_info_reads_the_kernel() -> None:
    info = ha.system_info()
    assert info.kernel.startswith("Linux ")
    assert info.thp_enabled in ("always", "madvise", "never")
    assert info.thp_shmem_enabled in ("always", "within_size", "advise", "never", "deny", "force")
    assert info.max_map_count > 0 and 0 < info.map_count < info.max_map_count
    assert info.overcommit_memory in (0, 1, 2)
    assert info.base_page_size == 4096
    assert 2 << 20 in {p.page_size for p in info.hugepage_pools}
    data = json.loads(json.dumps(info.as_dict()))
    assert {"kernel", "hugepage_pools", "max_map_count"} <= data.keys()


def test_pool_available_subtracts_reserved() -> None:
    pool = system.HugePagePool(2 << 20, total=10, free=6, reserved=4, surplus=0)
    assert pool.available == 2 and pool.label == "2m"


def test_missing_pool_reads_as_empty() -> None:
    pool = system.hugepage_pool(16 << 30)
    assert (pool.total, pool.free, pool.available) == (0, 0, 0)


def test_smaps_parser_finds_a_heap() -> None:
    with ha.Heap("256K", name="smaps") as heap:
        entries = system.smaps_range(heap.view.address, heap.view.address + heap.size)
    assert len(entries) == 1
    entry = entries[0]
    assert entry.name == "/memfd:heapalias:smaps (deleted)"
    assert entry.fields["Size"] == 256 and "sh" in entry.vmflags


def test_reserve_rejects_bad_counts_and_missing_pools() -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(ha.InvalidArgument):
            system.reserve_hugepages(bad)
    with pytest.raises(ha.InvalidArgument, match="no 16777216 kB"):
        system.reserve_hugepages(1, 16 << 30)


def test_reserve_without_permission_raises_not_permitted(monkeypatch) -> None:
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_text", refuse)
    with pytest.raises(ha.NotPermitted) as caught:
        system.reserve_hugepages(4)
    assert caught.value.errno == 13 and "root" in caught.value.remedy


@pytest.mark.skipif(not IS_ROOT, reason="resizing a hugetlb pool needs root")
def test_reserve_resizes_the_pool(sysctl) -> None:
    before = system.hugepage_pool(2 << 20)
    sysctl(ha.errors.hugepage_sysctl(2 << 20), before.total)  # restore to this afterwards
    pool = system.reserve_hugepages(before.total + 3)
    assert pool.total == before.total + 3


EXHAUSTED_FDS = """
import errno, json, os, resource
import heapalias as ha
from heapalias import system

def without_fds(call):
    # Fill every fd up to RLIMIT_NOFILE, so the next open() is EMFILE.
    limit = len(os.listdir("/proc/self/fd")) + 8
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    for _ in range({spare}):
        os.close(held.pop())
    try:
        return call()
    except ha.HeapAliasError as exc:
        return [type(exc).__name__, errno.errorcode.get(exc.errno), exc.remedy]
    finally:
        for fd in held:
            os.close(fd)
"""


@pytest.mark.parametrize(
    ("spare", "call"),
    [(1, 'ha.Heap("64K")'),  # memfd_create takes the last fd; reading meminfo fails
     (0, 'ha.Heap("64K")'),  # memfd_create itself fails
     (0, "system.meminfo_kb()"), (0, "system.memory_available()"), (0, "system.map_count()"),
     (0, "system.hugepage_pool(2 << 20)"), (0, "system.hugepage_pools()"),
     (0, "system.max_map_count()"), (0, "system.read_smaps()"), (0, "system.system_info()")],
)
def test_running_out_of_fds_is_reported_as_emfile_not_as_a_wrong_reading(spare, call) -> None:
    """A tiny RLIMIT_NOFILE used to read as '0 MiB available' (InsufficientMemory), an
    empty hugetlb pool, or the default max_map_count."""
    proc = run_isolated(EXHAUSTED_FDS.format(spare=spare)
                        + f"print(json.dumps(without_fds(lambda: {call})))")
    name, code, remedy = json.loads(proc.stdout)
    assert (name, code) == ("SyscallFailed", "EMFILE"), proc.stdout
    assert "ulimit -n" in remedy


def test_readings_of_absent_files_fall_back_but_other_errors_raise(tmp_path) -> None:
    assert system._read_int(tmp_path / "absent", 7) == 7
    assert system._read(tmp_path / "absent" / "below", "x") == "x"
    with pytest.raises(ha.SyscallFailed) as caught:
        system._read(tmp_path, "x")  # a directory: EISDIR is not "absent"
    assert caught.value.errno == errno.EISDIR
    with pytest.raises(ha.SyscallFailed):
        system.read_text(tmp_path / "absent")


def test_reserve_accepts_numpy_integers_and_refuses_bools() -> None:
    for bad in (np.bool_(True), np.float64(2.0), "2"):
        with pytest.raises(ha.InvalidArgument):
            system.reserve_hugepages(bad)
    with pytest.raises(ha.InvalidArgument, match="no 16777216 kB"):
        system.reserve_hugepages(np.int64(1), np.int64(16 << 30))
