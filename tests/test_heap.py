"""Heap: construction, strategies, pages_report and close."""

from __future__ import annotations

import errno
import warnings

import numpy as np
import pytest

import heapalias as ha
from heapalias.system import thp_mode

from conftest import IS_ROOT, maps_text


@pytest.mark.parametrize(
    ("size", "pages", "nearest"),
    [
        (5000, "4k", "4 KiB or 8 KiB"),
        (0, "4k", "4 KiB"),
        (-4096, "4k", "4 KiB"),
        ("3M", "2m", "2 MiB or 4 MiB"),
        ("1M", "thp", "2 MiB"),
        ("1536M", "1g", "1 GiB or 2 GiB"),
        (1 << 47, "4k", "64 TiB"),
    ],
)
def test_bad_sizes_name_the_nearest_valid_ones(size, pages, nearest) -> None:
    with pytest.raises(ha.InvalidArgument) as caught:
        ha.Heap(size, pages=pages)
    assert isinstance(caught.value, ValueError)
    assert nearest in caught.value.remedy


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": "12 parsecs"},
        {"size": 4.0},
        {"size": True},
        {"size": 4096, "backing": "disk"},
        {"size": 4096, "pages": "64k"},
        {"size": 4096, "name": "no spaces"},
        {"size": 4096, "name": ""},
        {"size": 4096, "name": "x" * 49},
        {"size": 4096, "name": None},
    ],
)
def test_bad_arguments_raise_invalid_argument(kwargs) -> None:
    with pytest.raises(ha.InvalidArgument):
        ha.Heap(**kwargs)


def test_size_strings_are_binary_units() -> None:
    with ha.Heap("64K") as heap:
        assert heap.size == 65536 and heap.view.size == 65536
    assert ha.parse_size("2MiB") == ha.parse_size("2m") == 2 << 20


def test_heap_attributes_and_repr() -> None:
    with ha.Heap("1M", backing="memfd", name="attrs") as heap:
        described = (heap.backing, heap.pages, heap.page_size, heap.name)
        assert described == ("memfd", "4k", 4096, "attrs")
        assert heap.fd is not None and heap.view.strategy == "primary" and heap.view.prot == "rw"
        assert "attrs" in repr(heap) and "open" in repr(heap.view)
    assert heap.closed and heap.fd is None and "closed" in repr(heap)


def test_explicit_strategy_the_kernel_refuses_raises_unsupported_alias() -> None:
    with ha.Heap("64K", backing="private") as heap:
        with pytest.raises(ha.UnsupportedAlias) as caught:
            heap.alias("mremap")
        assert caught.value.errno == errno.EINVAL
        assert "dba58d3b8c50" in caught.value.reason
        with pytest.raises(ha.UnsupportedAlias) as caught:
            heap.alias("memfd")
        assert caught.value.errno is None
        with pytest.raises(ha.UnsupportedAlias):
            heap.alias("auto")
        with pytest.raises(ha.InvalidArgument):
            heap.alias("teleport")
        with pytest.raises(ha.InvalidArgument):
            heap.alias(prot="wx")
        assert len(heap.views) == 1


def test_auto_picks_a_working_strategy(pool_2m) -> None:
    with ha.Heap("4M", pages="2m") as heap:
        assert heap.alias().strategy == "memfd"  # mremap cannot mirror hugetlb
    with ha.Heap("64K", backing="anon") as heap:
        assert heap.alias().strategy == "mremap"


def test_alias_survives_closing_the_primary_view() -> None:
    with ha.Heap("64K", backing="anon") as heap:
        first = heap.alias()
        heap.view.close()
        second = heap.alias()  # mirrored from the alias that is still open
        first.array()[0] = 11
        assert second.array()[0] == 11


def test_pages_report_shows_4k_pages() -> None:
    with ha.Heap("1M") as heap:
        heap.alias()
        reports = heap.pages_report()
    assert [r.role for r in reports] == ["primary", "alias1"]
    for report in reports:
        assert report.kernel_page_kb == 4 and not report.hugetlb
        assert report.fields["Size"] == 1024
        assert report.fields["Rss"] == 1024  # populated
        assert report.obtained == "4 KiB pages"
    # Two views of the same pages: Pss splits them, Rss counts them twice.
    assert sum(r.fields["Pss"] for r in reports) <= 1024 + 8


@pytest.mark.parametrize("backing", ["memfd", "anon", "private"])
def test_pages_report_shows_2m_hugetlb(backing, pool_2m) -> None:
    with ha.Heap("4M", backing=backing, pages="2m") as heap:
        (report,) = heap.pages_report()
    assert report.kernel_page_kb == 2048 and report.hugetlb
    assert report.fields["Rss"] == 0  # hugetlb memory is not in Rss...
    hugetlb_kb = report.fields["Shared_Hugetlb"] + report.fields["Private_Hugetlb"]
    assert hugetlb_kb == 4096  # ...only in the *_Hugetlb fields
    assert report.obtained == "2 MiB hugetlb"


def test_pages_report_1g(pool_1g) -> None:
    with ha.Heap("1G", pages="1g") as heap:
        (report,) = heap.pages_report()
    assert report.kernel_page_kb == 1 << 20 and report.obtained == "1 GiB hugetlb"


def test_thp_on_shmem_warns_when_shmem_thp_is_off(sysctl) -> None:
    if IS_ROOT:
        sysctl("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "never")
    elif thp_mode("shmem_enabled") not in ("never", "deny"):
        pytest.skip(reason="shmem THP is on here, and turning it off needs root")
    with pytest.warns(ha.HeapAliasWarning, match="shmem_enabled"):
        heap = ha.Heap("4M", pages="thp")
    with heap, pytest.warns(ha.HeapAliasWarning, match="shmem_enabled"):
        (report,) = heap.pages_report()
    assert report.obtained == "4 KiB pages" and report.notes


@pytest.mark.skipif(not IS_ROOT, reason="switching shmem_enabled needs root")
def test_thp_on_shmem_gets_pmd_mappings_when_enabled(sysctl) -> None:
    sysctl("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "advise")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ha.HeapAliasWarning)
        heap = ha.Heap("8M", pages="thp")
    with heap:
        heap.alias("mremap")
        heap.alias("memfd")
        reports = heap.pages_report()
    for report in reports:
        assert report.fields["ShmemPmdMapped"] == 8192, report
        assert report.obtained.startswith("THP")


def test_private_thp_gets_anon_huge_pages() -> None:
    if thp_mode("enabled") == "never":
        pytest.skip(reason="THP is disabled on this kernel (enabled = never)")
    with ha.Heap("8M", backing="private", pages="thp") as heap:
        (report,) = heap.pages_report()
    assert report.fields["AnonHugePages"] > 0


def test_4k_anon_memory_opts_out_of_thp() -> None:
    with ha.Heap("8M", backing="private") as heap:
        (report,) = heap.pages_report()
        assert "nh" in report.vmflags and report.fields["AnonHugePages"] == 0


def test_populate_false_faults_lazily_and_safely() -> None:
    with ha.Heap("1M", populate=False) as heap:
        assert heap.pages_report()[0].fields["Rss"] == 0
        heap.view.array(np.uint8)[::4096] = 1
        assert heap.pages_report()[0].fields["Rss"] == 1024


def test_close_is_idempotent_and_unmaps() -> None:
    heap = ha.Heap("64K", name="closing")
    heap.alias()
    heap.multimap(2, shift=20)
    assert maps_text().count("heapalias:closing") == 4
    heap.close()
    heap.close()
    assert "heapalias:closing" not in maps_text()
    with pytest.raises(ha.ViewClosed):
        heap.alias()


def test_populating_more_than_the_machine_has_is_refused() -> None:
    huge = 1 << 45  # 32 TiB: more than any test machine, and never touched
    with pytest.raises(ha.InsufficientMemory) as caught:
        ha.Heap(huge)
    assert caught.value.errno == errno.ENOMEM and "populate=False" in caught.value.remedy
    with ha.Heap(huge, populate=False) as lazy:  # reserving address space is fine
        lazy.view.array(np.uint8, offset=huge - 4096)[:] = 1
        assert lazy.pages_report()[0].fields["Rss"] == 4


def test_numpy_integers_are_accepted_wherever_ints_are() -> None:
    with ha.Heap(np.int64(1 << 20)) as heap:
        layout = heap.multimap(np.int64(2), shift=np.uint8(21))
        assert len(layout) == 2 and layout.shift == 21
        probe = heap.alias()
        address = probe.address
        probe.close()
        assert heap.alias(address=np.uint64(address)).address == address
        for bad in (np.bool_(True), np.float32(2)):
            with pytest.raises(ha.InvalidArgument):
                heap.multimap(bad, shift=21)
