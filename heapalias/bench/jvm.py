"""Run the Java GCBench in ``java/GCBench.java`` on this machine's JVM, for a same-run baseline."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..drivers import expected_gcbench_checks
from ..errors import HeapAliasError

SOURCE = Path(__file__).with_name("java") / "GCBench.java"
WARMUP_ROUNDS = 3


def unavailable() -> str:
    """Why the JVM baseline cannot run here ('' when it can)."""
    if not (shutil.which("java") and shutil.which("javac")):
        return "no JDK on PATH (java and javac are needed for the JVM baseline)"
    return ""


def gcbench_ms(heap_bytes: int, rounds: int) -> list[float]:
    """In-program times of ``rounds`` GCBench runs after JIT warm-up, with ParallelGC and a
    pre-touched heap of ``heap_bytes``; the program's check values are verified."""
    mib = max(heap_bytes >> 20, 64)
    flags = ["-XX:+UseParallelGC", "-XX:+AlwaysPreTouch", f"-Xms{mib}m", f"-Xmx{mib}m"]
    with tempfile.TemporaryDirectory() as out:
        try:
            subprocess.run(["javac", "-d", out, str(SOURCE)], check=True, capture_output=True)
            proc = subprocess.run(["java", *flags, "-cp", out, "GCBench",
                                   str(rounds + WARMUP_ROUNDS)],
                                  check=True, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            raise HeapAliasError(f"the JVM baseline failed: {exc}",
                                 remedy="check `java -version`, or skip it with -k") from exc
    expected = "checks=" + " ".join(map(str, expected_gcbench_checks()))
    lines = proc.stdout.splitlines()
    if len(lines) != rounds + WARMUP_ROUNDS or not all(line.endswith(expected) for line in lines):
        raise HeapAliasError(f"the JVM GCBench printed unexpected output: {proc.stdout[:200]}")
    return [float(re.search(r"total_ms=([\d.]+)", line).group(1))
            for line in lines[WARMUP_ROUNDS:]]
