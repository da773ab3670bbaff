"""Each backing x pages x strategy: coherent where the probe says it works, else a typed error."""

from __future__ import annotations

import errno
import itertools
import os
import warnings

import numpy as np
import pytest

import heapalias as ha
from heapalias.probe import ALIAS_STRATEGIES, probe_backing
from heapalias.system import PAGE_SIZES

from conftest import mapping_count

COMBINATIONS = list(itertools.product(ha.BACKINGS, ha.PAGES, ALIAS_STRATEGIES))
DTYPES = [np.uint8, np.uint16, np.int32, np.float64, np.complex128]


def heap_size(pages: str) -> int:
    """Two pages, so a page boundary lies inside the heap (one page for 1 GiB)."""
    return PAGE_SIZES[pages] * (1 if pages == "1g" else 2)


def make_heap(backing: str, pages: str) -> ha.Heap:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ha.HeapAliasWarning)
        return ha.Heap(heap_size(pages), backing=backing, pages=pages, name="matrix")


def boundary_offsets(size: int, page: int, itemsize: int) -> list[int]:
    """Byte offsets at the start, either side of each 4 KiB and huge-page boundary, and the end."""
    offsets = {0, size - itemsize}
    for boundary in {4096, page, size // 2}:
        if 0 < boundary < size:
            offsets.update({boundary - itemsize, boundary})
    return sorted(offsets)


def assert_coherent(writer: ha.View, readers: list[ha.View], page: int) -> None:
    """Write each dtype at every boundary offset through ``writer``; all readers see it."""
    rng = np.random.default_rng(7)
    for dtype in DTYPES:
        itemsize = np.dtype(dtype).itemsize
        for offset in boundary_offsets(writer.size, page, itemsize):
            value = rng.integers(1, 120, size=2).astype(np.float64).view(np.uint8)[:itemsize]
            writer.array(np.uint8, offset, itemsize)[:] = value
            expected = value.view(dtype)[0]
            for reader in readers:
                got = reader.array(dtype, offset, 1)[0]
                assert got == expected, (dtype, offset, reader.role)


@pytest.mark.parametrize(("backing", "pages", "strategy"), COMBINATIONS)
def test_combination(backing: str, pages: str, strategy: str, pool_for) -> None:
    pool_for(pages)
    verdict = {c.strategy: c for c in probe_backing(backing, pages)}[strategy]
    if not verdict.obtained:  # the heap itself cannot be made: same typed error as the probe's
        with pytest.raises(ha.HeapAliasError) as caught:
            make_heap(backing, pages)
        assert (caught.value.errno, caught.value.remedy != "") == (verdict.errno, True)
        return
    if not verdict.ok:
        with make_heap(backing, pages) as heap, pytest.raises(ha.UnsupportedAlias) as caught:
            heap.alias(strategy)
        assert (caught.value.errno, caught.value.remedy != "") == (verdict.errno, True)
        return
    with make_heap(backing, pages) as heap:
        alias = heap.alias(strategy)
        readonly = heap.alias(strategy, prot="r")
        views = [heap.view, alias, readonly]
        assert len({v.address for v in views}) == 3
        assert_coherent(heap.view, [alias, readonly], PAGE_SIZES[pages])
        assert_coherent(alias, [heap.view, readonly], PAGE_SIZES[pages])
        with pytest.raises(ValueError, match="read-only"):
            readonly.array(np.uint64)[0] = 1


@pytest.mark.parametrize(("backing", "pages"), [
    (b, p) for b in ("memfd", "anon") for p in ha.PAGES
])
def test_multimap_colors_reach_the_same_bytes(backing: str, pages: str, pool_for) -> None:
    pool_for(pages)
    aliasable = any(c.ok for c in probe_backing(backing, pages))
    with make_heap(backing, pages) as heap:
        if not aliasable:  # e.g. anonymous hugetlb: refused, and the reservation is returned
            before = mapping_count()
            with pytest.raises(ha.UnsupportedAlias):
                heap.multimap(3, shift=40)
            assert mapping_count() == before
            return
        shift = max(heap.size - 1, 1).bit_length() + 1  # leave a PROT_NONE gap between colors
        colors = heap.multimap(3, shift=shift)
        assert [colors.address(k) - colors.base for k in range(3)] == [k << shift for k in range(3)]
        assert colors.base % heap.page_size == 0
        for k, view in enumerate(colors):
            assert view.address == colors.base + (k << shift)
            assert colors.color_of(view.address + heap.size - 1) == k
            others = [c for c in colors if c is not view] + [heap.view]
            assert_coherent(view, others, heap.page_size)


def test_probe_finds_the_documented_kernel_matrix(pool_2m) -> None:
    """kernel-facts.md: what works on Linux >= 4.14 with a filled 2 MiB pool."""
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    if release < (4, 14):
        pytest.fail(f"kernel {os.uname().release} predates the facts this test checks")
    result = {
        (c.backing, c.pages, c.strategy): c
        for pages in ("4k", "thp", "2m") for backing in ha.BACKINGS
        for c in probe_backing(backing, pages)
    }
    works = {key for key, c in result.items() if c.ok}
    assert works == {
        ("memfd", "4k", "mremap"), ("memfd", "4k", "memfd"),
        ("memfd", "thp", "mremap"), ("memfd", "thp", "memfd"),
        ("memfd", "2m", "memfd"),
        ("anon", "4k", "mremap"), ("anon", "thp", "mremap"),
    }
    for key in [("memfd", "2m", "mremap"), ("anon", "2m", "mremap")]:
        assert result[key].errno == errno.EINVAL, key
    for pages in ("4k", "thp", "2m"):
        assert result[("private", pages, "mremap")].errno == errno.EINVAL
        assert not result[("private", pages, "memfd")].applicable
