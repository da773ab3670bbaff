"""Capability probe: which backing x pages x strategy combinations work on this kernel.

Nothing here is looked up in a table: each combination is tried with a one-page
heap, and an alias counts as working only if bytes written through one view are
read back through the other, both ways.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

from .backing import BACKINGS, PAGES
from .errors import HeapAliasError, HeapAliasWarning, errno_name
from .heap import Heap
from .system import PAGE_SIZES, SystemInfo, system_info
from .uffd import UffdCapability, capability

ALIAS_STRATEGIES = ("mremap", "memfd")


@dataclass(frozen=True)
class Combination:
    """The outcome of trying one backing x pages x strategy combination."""

    backing: str
    pages: str
    strategy: str
    ok: bool
    errno: int | None
    error: str
    obtained: str
    applicable: bool = True

    @property
    def errno_name(self) -> str:
        return errno_name(self.errno) if self.errno is not None else ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ProbeResult:
    """System facts plus one :class:`Combination` per backing x pages x strategy, and
    what userfaultfd offers this process (None if it was not probed)."""

    system: SystemInfo
    combinations: tuple[Combination, ...]
    userfaultfd: UffdCapability | None = None

    def get(self, backing: str, pages: str, strategy: str) -> Combination:
        """The combination with these three names."""
        for combo in self.combinations:
            if (combo.backing, combo.pages, combo.strategy) == (backing, pages, strategy):
                return combo
        raise KeyError((backing, pages, strategy))

    def working(self) -> list[Combination]:
        """The combinations that work on this kernel."""
        return [c for c in self.combinations if c.ok]

    def as_dict(self) -> dict:
        """``{"system": {...}, "combinations": [{backing, pages, strategy, ok, errno, error}],
        "userfaultfd": {syscall, device, unprivileged, usable, features: {name: bool}}}``."""
        return {
            "system": self.system.as_dict(),
            "combinations": [c.as_dict() for c in self.combinations],
            "userfaultfd": self.userfaultfd.as_dict() if self.userfaultfd else None,
        }


def _check_coherent(heap: Heap, alias_array, primary_array) -> str:
    """'' if both views see each other's writes at the first and last byte."""
    last = heap.size - 1
    primary_array[0], primary_array[last] = 0xA5, 0x5A
    if (alias_array[0], alias_array[last]) != (0xA5, 0x5A):
        return "the new view does not see writes made through the first"
    alias_array[0] = 0x3C
    if primary_array[0] != 0x3C:
        return "the first view does not see writes made through the new one"
    return ""


def probe_backing(backing: str, pages: str) -> list[Combination]:
    """Try one backing and page size with every alias strategy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeapAliasWarning)
        return _probe_backing(backing, pages)


def _probe_backing(backing: str, pages: str) -> list[Combination]:
    try:
        heap = Heap(PAGE_SIZES[pages], backing=backing, pages=pages, name="probe")
    except HeapAliasError as exc:
        return [
            Combination(backing, pages, s, False, exc.errno, f"heap: {exc.message}", "")
            for s in ALIAS_STRATEGIES
        ]
    results = []
    with heap:
        obtained = heap.pages_report()[0].obtained
        for strategy in ALIAS_STRATEGIES:
            if strategy == "memfd" and heap.fd is None:
                results.append(Combination(
                    backing, pages, strategy, False, None,
                    "n/a: anonymous memory has no file descriptor to map",
                    obtained, applicable=False,
                ))
                continue
            try:
                alias = heap.alias(strategy)
            except HeapAliasError as exc:
                reason = getattr(exc, "reason", exc.message)
                results.append(
                    Combination(backing, pages, strategy, False, exc.errno, reason, obtained)
                )
                continue
            problem = _check_coherent(heap, alias.array(), heap.view.array())
            alias.close()
            results.append(
                Combination(backing, pages, strategy, not problem, None, problem, obtained)
            )
    return results


def probe() -> ProbeResult:
    """Try every backing x pages x strategy combination on the running kernel, and ask it
    what userfaultfd offers."""
    combos = [c for backing in BACKINGS for pages in PAGES for c in probe_backing(backing, pages)]
    return ProbeResult(system_info(), tuple(combos), capability())
