"""Alias creation time per strategy, and populate time for 1 GiB per page size.

Each figure is a median of interleaved repeats, shown beside a floor measured
in the same run: a bare PROT_NONE mmap+munmap for alias creation, and the
bandwidth of zero-filling already-faulted memory for populate (the kernel must
at least zero every page it hands out).

    python benchmarks/alias_and_populate.py [--size 1G] [--repeat 5]
"""

from __future__ import annotations

import statistics
import time
import warnings
from functools import partial

import click
import numpy as np
from rich.console import Console
from rich.table import Table

import heapalias as ha
from heapalias import native
from heapalias.native import lib
from heapalias.system import PAGE_SIZES, hugepage_pool

ALIAS_CASES = [("memfd", "4k", "memfd"), ("memfd", "4k", "mremap"), ("anon", "4k", "mremap"),
               ("memfd", "2m", "memfd")]
POPULATE_CASES = [("memfd", "4k"), ("private", "4k"), ("memfd", "thp"), ("private", "thp"),
                  ("memfd", "2m"), ("memfd", "1g")]


def median_iqr(samples: list[float]) -> tuple[float, float]:
    q1, med, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return med, q3 - q1


def timed(fn) -> float:
    """Seconds one call of ``fn`` takes."""
    return timed_call(fn)[0]


def timed_call(fn):
    """``(seconds, result)`` of one call of ``fn``."""
    start = time.perf_counter_ns()
    result = fn()
    return (time.perf_counter_ns() - start) / 1e9, result


def bare_mapping(size: int) -> None:
    address = native.mmap(size, lib.PROT_NONE, lib.MAP_PRIVATE | lib.MAP_ANONYMOUS)
    native.munmap(address, size)


def pool_has(pages: str, size: int) -> bool:
    """True unless ``pages`` is hugetlb and its pool holds fewer than ``size`` bytes."""
    if pages not in ("2m", "1g"):
        return True
    return hugepage_pool(PAGE_SIZES[pages]).available * PAGE_SIZES[pages] >= size


@click.command()
@click.option("--size", default="1G", show_default=True, help="Heap size for populate.")
@click.option("--alias-size", default="64M", show_default=True, help="Heap size for aliasing.")
@click.option("--repeat", default=5, show_default=True, type=click.IntRange(min=3))
def main(size: str, alias_size: str, repeat: int) -> None:
    """Measure alias creation and populate, with same-run floors."""
    warnings.simplefilter("ignore", ha.HeapAliasWarning)
    console = Console()
    nbytes, alias_bytes = ha.parse_size(size), ha.parse_size(alias_size)
    info = ha.system_info()
    console.print(f"[bold]{info.kernel}[/bold], {info.cpu} x{info.cpus}, THP enabled="
                  f"{info.thp_enabled} shmem_enabled={info.thp_shmem_enabled}")

    # Alias creation: map + populate page tables + unmap, against a bare mmap+munmap.
    heaps = {case: ha.Heap(alias_bytes, backing=case[0], pages=case[1])
             for case in ALIAS_CASES if pool_has(case[1], alias_bytes * 2)}
    samples: dict[str, list[float]] = {"floor": []}
    for _ in range(repeat):
        samples["floor"].append(timed(lambda: bare_mapping(alias_bytes)))
        for (backing, pages, strategy), heap in heaps.items():
            for populate in (False, True):
                heap.populate = populate
                key = f"{backing}/{pages}/{strategy}" + (" +populate" if populate else "")
                run = timed(lambda h=heap, s=strategy: h.alias(s).close())
                samples.setdefault(key, []).append(run)
    floor, _ = median_iqr(samples.pop("floor"))
    table = Table(title=f"Alias creation, {ha.format_size(alias_bytes)} heap "
                  f"(floor: bare mmap+munmap {floor * 1e6:.1f} us)")
    for column in ("backing/pages/strategy", "median us", "IQR us", "x floor"):
        table.add_column(column, justify="right")
    for key, values in samples.items():
        med, iqr = median_iqr(values)
        table.add_row(key, f"{med * 1e6:.1f}", f"{iqr * 1e6:.1f}", f"{med / floor:.1f}")
    for heap in heaps.values():
        heap.close()
    console.print(table)

    # Populate: commit + fault every page of a fresh heap, against zero-fill bandwidth.
    with ha.Heap(min(nbytes, 256 << 20), backing="private") as warm:
        words = warm.view.array(np.uint64)
        fill = [timed(partial(words.fill, 0)) for _ in range(repeat)]
        del words
    fill_gbs = warm.size / median_iqr(fill)[0] / 1e9
    cases = [c for c in POPULATE_CASES if pool_has(c[1], nbytes)]
    skipped = [c for c in POPULATE_CASES if c not in cases]
    pop: dict[tuple[str, str], list[float]] = {c: [] for c in cases}
    obtained: dict[tuple[str, str], str] = {}
    for _ in range(repeat + 1):  # the first round warms the hugetlb pools up, and is dropped
        for case in cases:
            seconds, heap = timed_call(partial(ha.Heap, nbytes, backing=case[0], pages=case[1]))
            pop[case].append(seconds)
            obtained[case] = heap.pages_report()[0].obtained
            heap.close()
    table = Table(title=f"Populate {ha.format_size(nbytes)} (floor: zero-fill of faulted memory "
                  f"{fill_gbs:.2f} GB/s)")
    for column in ("backing/pages", "obtained", "median ms", "IQR ms", "GB/s", "x zero-fill"):
        table.add_column(column, justify="right")
    for case, values in pop.items():
        med, iqr = median_iqr(values[1:])
        gbs = nbytes / med / 1e9
        table.add_row("/".join(case), obtained[case], f"{med * 1e3:.1f}", f"{iqr * 1e3:.1f}",
                      f"{gbs:.2f}", f"{gbs / fill_gbs:.2f}")
    console.print(table)
    for case in skipped:
        console.print(f"skipped {'/'.join(case)}: hugetlb pool too small; "
                      f"`heapalias hugepages --reserve N --size {case[1]}`")


if __name__ == "__main__":
    main()
