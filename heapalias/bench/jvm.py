"""The same programs on this machine's JVM, a round at a time, for same-run baselines.

``java/Harness.java`` runs GCBench or binary-trees one round per request, and logs every
collection pause (``-Xlog:gc``) between the round's markers, so a JVM round gives what a C
driver run gives: total time, GC time (the sum of its pauses, to the microsecond), the
collections, and the program's check values, verified against the C driver's. A JVM round is
a sample like any other: it runs when the caller asks, interleaved with the C rounds.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ..drivers import expected_binary_trees_checks, expected_gcbench_checks
from ..errors import HeapAliasError, InvalidArgument

JAVA = Path(__file__).with_name("java")
SOURCES = ("GCBench.java", "BinaryTrees.java", "Harness.java")
#: The collectors a JVM can run the programs with; "epsilon" never collects (the lower bound).
GC_FLAGS = {
    "serial": ("-XX:+UseSerialGC",),
    "parallel": ("-XX:+UseParallelGC",),
    "epsilon": ("-XX:+UnlockExperimentalVMOptions", "-XX:+UseEpsilonGC"),
}
PROGRAMS = ("gcbench", "binary_trees")
#: Seconds a round may take before the JVM is presumed stuck and killed.
ROUND_TIMEOUT = 600.0

_PAUSE = re.compile(r"GC\(\d+\) Pause (Young|Full|Remark|Cleanup)\b.* ([\d.]+)ms$")
_classes: tempfile.TemporaryDirectory | None = None


def unavailable() -> str:
    """Why the JVM baseline cannot run here ('' when it can)."""
    if not (shutil.which("java") and shutil.which("javac")):
        return "no JDK on PATH (java and javac are needed for the JVM baseline)"
    return ""


def _compiled() -> str:
    """The directory of the compiled harness, built once per process."""
    global _classes
    if _classes is None:
        out = tempfile.TemporaryDirectory(prefix="heapalias-jvm-")
        try:
            subprocess.run(["javac", "-d", out.name, *(str(JAVA / s) for s in SOURCES)],
                           check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            out.cleanup()
            detail = getattr(exc, "stderr", "") or exc
            raise HeapAliasError(f"javac failed on the JVM baseline: {detail}",
                                 remedy="check `javac -version`, or skip it with -k") from exc
        _classes = out
        atexit.register(out.cleanup)
    return _classes.name


def expected_checks(program: str, depth: int) -> tuple[int, ...]:
    """The check values a correct round of ``program`` gives (the C driver's)."""
    return (expected_gcbench_checks() if program == "gcbench"
            else expected_binary_trees_checks(depth))


@dataclass(frozen=True)
class JvmRound:
    """One round on the JVM: in-program time, the pauses' sum and count, the checks.
    ``checks`` is None when the heap was too small (OutOfMemoryError)."""

    total_ns: int
    gc_ns: int
    young: int
    full: int
    checks: tuple[int, ...] | None

    @property
    def mutator_ns(self) -> int:
        return self.total_ns - self.gc_ns

    @property
    def collections(self) -> int:
        return self.young + self.full

    @property
    def completed(self) -> bool:
        return self.checks is not None


class JvmProgram:
    """A JVM running ``program`` (``"gcbench"`` or ``"binary_trees"`` of ``depth``) with a
    fixed, pre-touched heap of ``heap_bytes`` and collector ``gc`` (a key of GC_FLAGS);
    :meth:`round` runs one round. ``cpu`` pins the JVM (and so its GC threads) to one CPU.
    A context manager: :meth:`close` ends the JVM."""

    def __init__(self, program: str, depth: int, heap_bytes: int, gc: str = "parallel",
                 cpu: int | None = None) -> None:
        if program not in PROGRAMS or gc not in GC_FLAGS:
            raise InvalidArgument(f"no JVM baseline for {program!r} with {gc!r}: programs "
                                  f"{PROGRAMS}, collectors {tuple(GC_FLAGS)}")
        self.program, self.depth, self.gc = program, depth, gc
        mib = max(heap_bytes >> 20, 2)  # the JVM's smallest heap
        self.heap_bytes = mib << 20
        command = ["java", *GC_FLAGS[gc], "-XX:+AlwaysPreTouch", f"-Xms{mib}m", f"-Xmx{mib}m",
                   "-Xlog:gc:stdout:none", "-cp", _compiled(), "Harness",
                   "gcbench" if program == "gcbench" else "binary-trees", str(depth)]
        pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
        try:
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, preexec_fn=pin)
        except OSError as exc:
            raise HeapAliasError(f"the JVM baseline could not start: {exc}",
                                 remedy="check `java -version`") from exc
        self.rounds = 0

    def _line(self) -> str:
        line = self._proc.stdout.readline()
        if not line:
            killed = self._proc.poll() == -9
            error = self._proc.stderr.read()[-500:] if self._proc.stderr else ""
            self.close()
            if killed:
                raise HeapAliasError(f"the JVM took over {ROUND_TIMEOUT:.0f} s for one round "
                                     "and was killed")
            raise HeapAliasError(f"the JVM baseline ended: {error.strip()}",
                                 remedy=f"run the JVM by hand with {self.gc} and -Xmx"
                                        f"{self.heap_bytes >> 20}m to see why")
        return line.rstrip("\n")

    def round(self) -> JvmRound:
        """Run one round and return it; HeapAliasError if its checks are wrong, or if it
        takes over ROUND_TIMEOUT seconds (the JVM is then killed)."""
        watchdog = threading.Timer(ROUND_TIMEOUT, self._proc.kill)
        watchdog.start()
        try:
            self._proc.stdin.write("run\n")
            self._proc.stdin.flush()
            while self._line() != "begin":
                pass
            gc_ns = young = full = 0
            while not (line := self._line()).startswith("end"):
                pause = _PAUSE.search(line)
                if pause:
                    gc_ns += round(float(pause.group(2)) * 1e6)
                    young += pause.group(1) == "Young"
                    full += pause.group(1) != "Young"
        finally:
            watchdog.cancel()
        self.rounds += 1
        if line == "end oom":
            return JvmRound(0, gc_ns, young, full, None)
        fields = dict(part.split("=", 1) for part in line[4:].split(" ", 1))
        checks = tuple(int(c) for c in fields["checks"].split())
        if checks != expected_checks(self.program, self.depth):
            raise HeapAliasError(f"the JVM {self.program} printed wrong check values: {checks}")
        return JvmRound(int(fields["total_ns"]), gc_ns, young, full, checks)

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> JvmProgram:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
