"""Shared fixtures: hugetlb pools filled (and restored) on demand, and isolated child runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from heapalias.errors import hugepage_sysctl
from heapalias.system import PAGE_SIZES, hugepage_pool

REQUIRE_HUGETLB = os.environ.get("HEAPALIAS_REQUIRE_HUGETLB") == "1"
IS_ROOT = os.geteuid() == 0

#: Pages each pool must have available for the suite.
POOL_NEEDS = {"2m": 64, "1g": 1}


class SysctlRestorer:
    """Writes sysctl and sysfs knobs, remembering each original value to restore later."""

    def __init__(self) -> None:
        self.originals: dict[str, str] = {}

    def write(self, path: str, value: str | int) -> None:
        current = Path(path).read_text().strip()
        selected = re.search(r"\[([\w-]+)\]", current)  # THP knobs list modes, one bracketed
        self.originals.setdefault(path, selected.group(1) if selected else current)
        Path(path).write_text(f"{value}\n")

    def restore(self) -> None:
        for path, value in reversed(list(self.originals.items())):
            Path(path).write_text(f"{value}\n")
        self.originals.clear()


@pytest.fixture(scope="session")
def session_sysctl():
    """Knobs changed for the whole session (the hugetlb pools), restored at its end."""
    restorer = SysctlRestorer()
    yield restorer.write
    restorer.restore()


@pytest.fixture
def sysctl():
    """Knobs changed for one test, restored right after it."""
    restorer = SysctlRestorer()
    yield restorer.write
    restorer.restore()


def _ensure_pool(pages: str, write) -> None:
    page_size = PAGE_SIZES[pages]
    need = POOL_NEEDS[pages]
    pool = hugepage_pool(page_size)
    if pool.available >= need:
        return
    why = f"the {pages} hugetlb pool has {pool.available} pages available, the tests need {need}"
    if IS_ROOT:
        try:
            write(hugepage_sysctl(page_size), pool.total + need - pool.available)
        except OSError as exc:
            why += f"; filling it failed: {exc}"
        pool = hugepage_pool(page_size)
        if pool.available >= need:
            return
        why += f"; after filling it holds {pool.available} (memory too fragmented)"
    else:
        why += "; filling it needs root"
    if REQUIRE_HUGETLB:
        pytest.fail(f"HEAPALIAS_REQUIRE_HUGETLB=1 but the pool cannot be filled: {why}")
    pytest.skip(reason=f"hugetlb pool cannot be filled: {why}")


@pytest.fixture(scope="session")
def pool_2m(session_sysctl) -> int:
    """Ensure the 2 MiB pool has pages; returns the page size."""
    _ensure_pool("2m", session_sysctl)
    return PAGE_SIZES["2m"]


@pytest.fixture(scope="session")
def pool_1g(session_sysctl) -> int:
    """Ensure the 1 GiB pool has a page; returns the page size."""
    _ensure_pool("1g", session_sysctl)
    return PAGE_SIZES["1g"]


@pytest.fixture
def pool_for(request):
    """``pool_for(pages)`` fills the pool that ``pages`` needs (no-op for 4k/thp)."""

    def ensure(pages: str) -> None:
        if pages in POOL_NEEDS:
            request.getfixturevalue(f"pool_{pages}")

    return ensure


def run_isolated(
    code: str, timeout: float = 120, stdin: str | None = None,
    expect_signal: signal.Signals | None = None,
) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python; fail (never crash pytest) if it dies of a signal.

    ``expect_signal``: the child must die of exactly this signal instead.
    """
    # cwd "/" so the child imports the installed package, not a source checkout.
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, cwd="/", input=stdin,
    )
    if expect_signal is not None:
        if proc.returncode != -expect_signal:
            pytest.fail(f"child should die of {expect_signal.name}, exited {proc.returncode}:\n"
                        f"{proc.stdout}\n{proc.stderr}")
    elif proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        pytest.fail(f"child died of {name}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def mapping_count() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


def maps_text() -> str:
    with open("/proc/self/maps") as maps:
        return maps.read()


def asan_loaded() -> bool:
    """Whether ASan's runtime is in this process (the sanitized test run preloads it). Its
    allocator maps regions of its own and keeps freed memory in a quarantine, so counting
    mappings says nothing about heapalias's there."""
    return "libasan" in maps_text()


def mapped_at(address: int) -> str | None:
    """The /proc/self/maps line whose range holds ``address``, or None."""
    for line in maps_text().splitlines():
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        if start <= address < end:
            return line
    return None


def pytest_report_header() -> str:
    """Which heapalias the run imports: the installed one, a checkout, or a sanitized copy."""
    import heapalias

    return f"heapalias from {Path(heapalias.__file__).resolve().parent.parent}"
