"""System facts: pools, THP modes, limits and smaps parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import heapalias as ha
from heapalias import system

from conftest import IS_ROOT


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
