"""The concurrent C code under ThreadSanitizer: tests/tsan/concurrent_main.c, compiled with
every cext/*.c and -fsanitize=thread, runs each design beside its mutator thread, and
tests/tsan/parallel_main.c runs parallel mark and parallel Cheney.

CPython cannot run with libtsan preloaded on this system (it crashes at start-up), so
the harness is driven from a C program instead of through cffi.
"""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

import pytest

from heapalias import concurrent as cc

ROOT = Path(__file__).resolve().parents[1]
TSAN_OPTIONS = "halt_on_error=0:exitcode=66:second_deadlock_stack=1"


def build(tmp_path_factory, main: str) -> Path:
    """tests/tsan/MAIN.c and every cext/*.c, compiled with -fsanitize=thread."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    binary = tmp_path_factory.mktemp("tsan") / main
    sources = [*sorted(map(str, (ROOT / "cext").glob("*.c"))),
               str(ROOT / "tests" / "tsan" / f"{main}.c")]
    try:
        made = subprocess.run([compiler, "-O1", "-g", "-std=gnu11", "-fsanitize=thread",
                               f"-I{ROOT / 'cext'}", *sources, "-o", str(binary), "-lpthread"],
                              capture_output=True, text=True, timeout=300)
    except OSError as exc:
        pytest.skip(reason=f"no C compiler to build the TSan program: {exc}")
    # The runtime's name, not "tsan": that is in this directory's name, and in every error.
    if made.returncode and ("-ltsan" in made.stderr or "libtsan" in made.stderr):
        pytest.skip(reason=f"the compiler has no ThreadSanitizer runtime: {made.stderr[-300:]}")
    assert made.returncode == 0, made.stderr
    return binary


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    return build(tmp_path_factory, "concurrent_main")


@pytest.fixture(scope="module")
def parallel(tmp_path_factory) -> Path:
    return build(tmp_path_factory, "parallel_main")


def run(program: Path, *args: str):
    return subprocess.run([str(program), *args], capture_output=True, text=True, timeout=300,
                          env={"TSAN_OPTIONS": TSAN_OPTIONS})


def test_the_program_is_instrumented(program) -> None:
    proc = run(program, "race")
    assert "ThreadSanitizer: data race" in proc.stderr and proc.returncode == 66


@pytest.mark.parametrize("design", [name for name in cc.DESIGNS if name != "none"])
@pytest.mark.parametrize("seed", ["1", "2"])
def test_every_design_runs_race_free(program, design, seed) -> None:
    proc = run(program, design, "200000", "40", seed)
    assert "ThreadSanitizer" not in proc.stderr, proc.stderr[-4000:]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("collections 40 ")
    if design in cc.TRAP_FEATURES:  # the trap path ran: the mutator met pages not yet scanned
        assert int(proc.stdout.split("faults ")[1]) > 0, proc.stdout


@pytest.mark.parametrize("encoding", ["offset", "address", "colored", "masked"])
@pytest.mark.parametrize("threads", ["2", "4"])
def test_parallel_mark_and_cheney_run_race_free(parallel, encoding, threads) -> None:
    proc = run(parallel, encoding, threads, "3")
    assert "ThreadSanitizer" not in proc.stderr, proc.stderr[-4000:]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("objects ")


def test_parallel_loops_stop_at_a_corrupt_header_race_free(parallel) -> None:
    proc = run(parallel, "corrupt", "3")
    assert "ThreadSanitizer" not in proc.stderr, proc.stderr[-4000:]
    assert proc.returncode == 0, proc.stdout + proc.stderr
