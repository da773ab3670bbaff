"""The C core built with -fsanitize=address,undefined runs the loop tests without a report.

The extension is rebuilt into a temporary copy of the package (cext/build_native.py
with HEAPALIAS_CFLAGS), and the tests that drive the loops hardest (corrupt heaps,
racing writers, every collector) run in a child Python with gcc's libasan preloaded.
Every sanitizer report, from the child or any process it starts, lands in one
directory, which must stay empty.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import heapalias

ROOT = Path(__file__).resolve().parents[1]
FLAGS = "-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined"
LOOP_TESTS = ["test_collectors.py", "test_corruption.py", "test_races.py", "test_objects.py",
              "test_generational.py", "test_parallel.py", "test_uffd.py"]


def _asan_runtime() -> str | None:
    """gcc's libasan, which must be loaded before anything else in an uninstrumented python."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    try:
        found = subprocess.run([compiler, "-print-file-name=libasan.so"], capture_output=True,
                               text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if os.path.isabs(found) and os.path.exists(found) else None


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory) -> dict[str, str]:
    """Environment for a child that imports the sanitized build."""
    runtime = _asan_runtime()
    if runtime is None:
        pytest.skip(reason="no C compiler with gcc's AddressSanitizer runtime (libasan.so)")
    work = tmp_path_factory.mktemp("sanitized")
    shutil.copytree(ROOT / "cext", work / "cext")
    build = subprocess.run(
        [sys.executable, "cext/build_native.py"], cwd=work, capture_output=True, text=True,
        timeout=300, env={**os.environ, "HEAPALIAS_CFLAGS": FLAGS},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    package = work / "pkg" / "heapalias"
    shutil.copytree(Path(heapalias.__file__).parent, package,
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(next((work / "heapalias").glob("_native*.so")), package)
    reports = work / "reports"
    reports.mkdir()
    return {
        **os.environ,
        "PYTHONPATH": str(package.parent),
        "LD_PRELOAD": runtime,
        # CPython keeps some memory until exit by design: no leak reports.
        "ASAN_OPTIONS": f"detect_leaks=0:halt_on_error=1:log_path={reports}/asan",
        "UBSAN_OPTIONS": f"halt_on_error=1:print_stacktrace=1:log_path={reports}/ubsan",
    }


def run_sanitized(env: dict[str, str], *args: str, timeout: float = 300):
    """Run ``python args`` on the sanitized build; returns (process, sanitizer reports)."""
    reports = Path(env["ASAN_OPTIONS"].split("log_path=")[1]).parent
    for old in reports.iterdir():
        old.unlink()
    proc = subprocess.run([sys.executable, *args], cwd=env["PYTHONPATH"], env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, [path.read_text() for path in sorted(reports.iterdir())]


def test_the_build_is_sanitized(sanitized) -> None:
    """A loop given a buffer smaller than the capacity it is told: ASan must say so,
    or the runs below would prove nothing."""
    proc, reports = run_sanitized(sanitized, "-c", textwrap.dedent("""
        import numpy as np, heapalias as ha
        from heapalias import workloads
        from heapalias.native import ffi, lib
        objects = ha.Heap("1M").objects
        workloads.linked_list(objects, 100)
        space, st = objects.space(), ffi.new("ha_stats *")
        offsets = np.empty(1, dtype=np.uint64)
        lib.ha_walk(objects.native(), ffi.new("ha_space *", (space.start, space.end, space.top)),
                    ffi.from_buffer("uint64_t[]", offsets), 100, st)
    """), timeout=120)
    assert proc.returncode != 0
    assert any("heap-buffer-overflow" in report and "ha_walk" in report for report in reports), \
        proc.stderr + "".join(reports)


def test_loop_tests_run_clean_under_asan_and_ubsan(sanitized) -> None:
    tests = [str(ROOT / "tests" / name) for name in LOOP_TESTS]
    # --confcutdir keeps the checkout's root conftest.py, and with it the checkout on
    # sys.path, out of the child: it must import the sanitized package.
    proc, reports = run_sanitized(sanitized, "-m", "pytest", "-x", "-p", "no:cacheprovider",
                                  f"--confcutdir={ROOT / 'tests'}", *tests)
    assert f"heapalias from {sanitized['PYTHONPATH']}" in proc.stdout, proc.stdout[-3000:]
    assert not reports, "".join(reports)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
