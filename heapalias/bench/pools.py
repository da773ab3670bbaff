"""Hugetlb pages for a benchmark run: how many it needs, and a guard that lends them.

A fresh machine has empty hugetlb pools, and the 2m and 1g variants, which the
project exists for, would all be skipped. :func:`demand` adds up what the
selected variants hold at once (a case sets up all its variants before it
runs them). :class:`PoolGuard` fills the pools for a run, as root, and puts
back the sizes it found when the run ends, on an exception, Ctrl-C, SIGTERM or
SIGHUP alike.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
from collections.abc import Callable, Iterable

from ..backing import format_size
from ..errors import HeapAliasError
from ..probe import ProbeResult
from ..system import HUGETLB_PAGES, PAGE_SIZES, hugepage_pool, reserve_hugepages
from .cases import Case, Context, Variant

#: Signals that end a run; the guard turns them into SystemExit so the pools are restored.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def demand(ctx: Context, selection: Iterable[tuple[Case, list[Variant]]]) -> dict[str, int]:
    """Pages each hugetlb pool must have available for the run: the most any one case holds
    (every variant of a case is set up at once, and one sample runs at a time)."""
    needs: dict[str, int] = {}
    for case, variants in selection:
        held = dict.fromkeys(HUGETLB_PAGES, 0)
        running = dict.fromkeys(HUGETLB_PAGES, 0)
        for variant in variants:
            if variant.pages in held:
                setup_bytes, sample_bytes = case.footprint(ctx, variant)
                held[variant.pages] += setup_bytes
                running[variant.pages] = max(running[variant.pages], sample_bytes)
        for pages in HUGETLB_PAGES:
            pages_needed = math.ceil((held[pages] + running[pages]) / PAGE_SIZES[pages])
            needs[pages] = max(needs.get(pages, 0), pages_needed)
    return {pages: n for pages, n in needs.items() if n}


def as_if_filled(result: ProbeResult) -> ProbeResult:
    """The probe as it would read with the pools filled, as far as can be told without pages:
    a hugetlb combination whose pool had no free page counts as working when the same backing
    and strategy work on 4 KiB pages. An upper bound, for :func:`demand`."""
    empty = {pool.label for pool in result.system.hugepage_pools if pool.available == 0}
    combos = []
    for combo in result.combinations:
        if combo.pages in empty and not combo.obtained:
            small = result.get(combo.backing, "4k", combo.strategy)
            combo = dataclasses.replace(combo, ok=small.ok, applicable=small.applicable,
                                        obtained=combo.pages, error=small.error)
        combos.append(combo)
    return dataclasses.replace(result, combinations=tuple(combos))


def shortage(needs: dict[str, int]) -> str:
    """One line naming the command that fills the pools, or '' when they hold ``needs``."""
    short, commands = [], []
    for pages, need in needs.items():
        pool = hugepage_pool(PAGE_SIZES[pages])
        if pool.available < need:
            short.append(f"the {format_size(PAGE_SIZES[pages])} hugetlb pool has "
                         f"{pool.available} free of the up to {need} pages this run uses")
            size = "" if pages == "2m" else f" --size {pages}"
            total = pool.total + need - pool.available
            commands.append(f"`sudo heapalias hugepages --reserve {total}{size}`")
    if not short:
        return ""
    return (f"heapalias: note: {'; '.join(short)}, so those variants will be skipped: "
            f"{' and '.join(commands)} fills it, or run the bench as root, which fills the "
            "pools for the run and gives them back")


class PoolGuard:
    """Fills hugetlb pools for a run and puts back the sizes it found when the run ends.

    Use it as a context manager around the whole run. While it is open, SIGTERM
    and SIGHUP raise SystemExit (Ctrl-C already raises KeyboardInterrupt), so the
    ``with`` block unwinds and the pools are restored; the restore itself runs
    with those signals ignored, so a second Ctrl-C cannot cut it short.
    """

    def __init__(self, say: Callable[[str], None] = lambda line: None) -> None:
        self.say = say
        self.found: dict[str, int] = {}   # pool -> nr_hugepages before the run
        self.set_to: dict[str, int] = {}  # pool -> nr_hugepages the guard left it at
        self._previous: dict[int, object] = {}

    def ensure(self, pages: str, available: int) -> int:
        """Grow the pool until ``available`` pages are free to reserve (the kernel may grant
        fewer); returns how many are. Nothing is done when there are enough already."""
        pool = hugepage_pool(PAGE_SIZES[pages])
        if pool.available >= available:
            return pool.available
        self.found.setdefault(pages, pool.total)
        grown = reserve_hugepages(pool.total + available - pool.available, PAGE_SIZES[pages])
        self.set_to[pages] = grown.total
        return grown.available

    def fill(self, needs: dict[str, int]) -> str:
        """Fill every pool to ``needs``; one line saying what was done ('' if nothing was)."""
        done = []
        for pages, need in needs.items():
            before = hugepage_pool(PAGE_SIZES[pages]).total
            try:
                available = self.ensure(pages, need)
            except HeapAliasError as exc:
                done.append(f"the {format_size(PAGE_SIZES[pages])} pool could not grow ({exc})")
                continue
            after = hugepage_pool(PAGE_SIZES[pages]).total
            if after != before or pages in self.found:
                granted = "" if available >= need else f", {available} of {need} granted"
                done.append(f"{format_size(PAGE_SIZES[pages])} pool {self.found[pages]} -> "
                            f"{after} pages{granted}")
        if not done:
            return ""
        return ("heapalias: reserved hugetlb pages for this run (" + "; ".join(done)
                + "); the pools are given back when it ends (--no-reserve to skip)")

    def lent(self) -> dict[str, dict[str, int]]:
        """For the report: each pool the guard resized, its size before and during the run."""
        return {pages: {"found": total, "run_with": self.set_to.get(pages, total)}
                for pages, total in self.found.items()}

    def restore(self) -> list[str]:
        """Put every pool back to the size found; lines about the pools that could not be."""
        problems = []
        for pages, total in self.found.items():
            now = hugepage_pool(PAGE_SIZES[pages]).total
            if now != self.set_to.get(pages, now):  # someone else resized it meanwhile
                problems.append(f"heapalias: warning: the {format_size(PAGE_SIZES[pages])} pool "
                                f"was resized to {now} during the run by another process; "
                                f"left as it is (it held {total} before)")
                continue
            try:
                reserve_hugepages(total, PAGE_SIZES[pages])
            except HeapAliasError as exc:
                problems.append(f"heapalias: warning: could not give back the "
                                f"{format_size(PAGE_SIZES[pages])} pool's pages: {exc}")
        self.found.clear()
        self.set_to.clear()
        return problems

    @staticmethod
    def _end(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    def _set_handlers(self, handlers: dict[int, object]) -> dict[int, object]:
        """Install ``handlers``; the ones they replace (signals only work in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, handler) or signal.SIG_DFL
                for sig, handler in handlers.items()}

    def __enter__(self) -> PoolGuard:
        self._previous = self._set_handlers(dict.fromkeys(ENDING_SIGNALS, self._end))
        return self

    def __exit__(self, *exc_info: object) -> None:
        quiet = self._set_handlers(dict.fromkeys((*ENDING_SIGNALS, signal.SIGINT),
                                                 signal.SIG_IGN))
        try:
            for problem in self.restore():
                self.say(problem)
        finally:
            self._set_handlers({**quiet, **self._previous})
