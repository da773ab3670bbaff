"""Capture a real heap: javac's, with the installed JDK, and time the JVM's own full GCs.

``java/JavacHeap.java`` makes javac parse and attribute generated sources in-process,
forces full collections (logged by ``-Xlog:gc``), then waits. While it waits,
``jcmd`` dumps its live heap (``GC.heap_dump``) and takes its class histogram
(``GC.class_histogram``); jcmd's commands run inside the VM and create no Java object,
so the two see the same objects. A first ``jcmd VM.version`` starts the VM's attach
listener (a thread, and its objects) before either.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HeapAliasError, InvalidArgument

SOURCE = Path(__file__).with_name("java") / "JavacHeap.java"

#: Generated classes javac compiles: about 55 MB of live heap (JDK 17), for benchmarks.
BENCH_CLASSES = 300
#: A small heap (about 8 MB live) for the tests.
TEST_CLASSES = 10
#: Forced full collections per run: the first collects what javac left; the others run
#: on the live heap, the one the dump holds.
FULL_GCS = 6
#: The collectors a capture can run, by name: the JVM flag that selects each.
COLLECTORS = {"serial": "-XX:+UseSerialGC", "parallel": "-XX:+UseParallelGC"}
#: The JVM's heap: fixed, so that the collections do not resize it.
HEAP_FLAGS = ("-Xms1g", "-Xmx1g")
TIMEOUT = 600

_FULL_GC = re.compile(r"Pause Full \(System\.gc\(\)\) (\d+)M->(\d+)M\(\d+M\) ([\d.]+)ms")
_HISTOGRAM_ROW = re.compile(r"^\s*\d+:\s+(\d+)\s+(\d+)\s+(\S+)", re.M)


def unavailable() -> str:
    """Why a capture cannot run here ('' when it can)."""
    missing = [tool for tool in ("java", "javac", "jcmd") if shutil.which(tool) is None]
    if missing:
        return (f"no JDK on PATH ({', '.join(missing)} missing): capturing a heap dump needs "
                "java, javac and jcmd")
    return ""


@dataclass(frozen=True)
class Capture:
    """One run of the javac program: its dump, the JVM's histogram and pauses."""

    dump: Path | None
    histogram: dict[str, tuple[int, int]]   # class name -> (instances, shallow bytes)
    version: str                            # e.g. "17.0.15"
    collector: str
    full_gc_ms: list[float]                 # each forced full collection's pause
    live_bytes: int                         # after the last one (the log's MB)
    log: list[str] = field(repr=False, default_factory=list)

    @property
    def feature(self) -> int:
        """The JDK's feature version (17 for 17.0.15)."""
        return int(re.match(r"\d+", self.version).group())


def parse_histogram(text: str) -> dict[str, tuple[int, int]]:
    """``GC.class_histogram``'s rows by class name (rows of one name added up)."""
    rows: dict[str, tuple[int, int]] = {}
    for count, size, name in _HISTOGRAM_ROW.findall(text):
        old = rows.get(name, (0, 0))
        rows[name] = (old[0] + int(count), old[1] + int(size))
    if not rows:
        raise HeapAliasError(f"the JVM's class histogram could not be read: {text[:200]!r}")
    return rows


def parse_full_gcs(lines: list[str]) -> tuple[list[float], int]:
    """The forced full collections' pauses (ms), and the live MB after the last, in bytes."""
    pauses, live = [], 0
    for line in lines:
        found = _FULL_GC.search(line)
        if found:
            pauses.append(float(found.group(3)))
            live = int(found.group(2)) << 20
    return pauses, live


def steady(pauses: list[float]) -> list[float]:
    """The pauses of the full collections on the live heap: all but the first."""
    return pauses[1:] or pauses


def _compiled(folder: Path) -> Path:
    """JavacHeap compiled into ``folder``."""
    _run(["javac", "-d", str(folder), str(SOURCE)], "compiling JavacHeap.java")
    return folder


def _run(command: list[str], what: str, timeout: float = TIMEOUT) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HeapAliasError(f"{what} failed: {exc}", remedy="check `java -version`") from exc
    if done.returncode != 0:
        raise HeapAliasError(f"{what} failed ({done.returncode}): "
                             f"{(done.stderr or done.stdout).strip()[-400:]}",
                             remedy="check `java -version` and `jcmd -l`")
    return done.stdout


def capture(dump: str | Path | None, *, classes: int = BENCH_CLASSES, collector: str = "serial",
            full_gcs: int = 5) -> Capture:
    """Run javac over ``classes`` generated classes under ``collector``, force ``full_gcs``
    full collections, then dump the live heap to ``dump`` (None: no dump) and take the
    class histogram. HeapAliasError if the JDK fails; the JVM never outlives the call."""
    why = unavailable()
    if why:
        raise HeapAliasError(why, remedy="install a JDK (java, javac and jcmd on PATH)")
    if collector not in COLLECTORS:
        raise InvalidArgument(f"collector must be one of {sorted(COLLECTORS)}, not {collector!r}")
    target = None if dump is None else Path(dump).resolve()
    if target is not None and target.is_dir():
        raise InvalidArgument(f"{target} is a directory, not a file to dump into")
    with tempfile.TemporaryDirectory(prefix="heapalias-javac-") as work:
        classpath = _compiled(Path(work))
        command = ["java", COLLECTORS[collector], *HEAP_FLAGS, "-Xlog:gc", "-cp",
                   str(classpath), "JavacHeap", str(classes), str(full_gcs)]
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            raise HeapAliasError(f"starting java failed: {exc}") from exc
        watchdog = threading.Timer(TIMEOUT, process.kill)  # a hung JVM must not hang us
        watchdog.start()
        try:
            log = _until_ready(process)
            pid = str(process.pid)
            version = re.search(r"\bJDK (\d[\w.+-]*)", _run(["jcmd", pid, "VM.version"], "jcmd"))
            if target is not None:
                # jcmd refuses to overwrite: dump beside the target, then move it there.
                partial = target.with_name(target.name + ".partial")
                partial.unlink(missing_ok=True)
                _run(["jcmd", pid, "GC.heap_dump", str(partial)], "jcmd GC.heap_dump")
                partial.replace(target)
            histogram = parse_histogram(_run(["jcmd", pid, "GC.class_histogram"],
                                             "jcmd GC.class_histogram"))
            process.stdin.close()
            process.wait(timeout=TIMEOUT)
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                stream.close()
    pauses, live = parse_full_gcs(log)
    if len(pauses) != full_gcs:
        raise HeapAliasError(f"the JVM logged {len(pauses)} forced full collections, not "
                             f"{full_gcs}: {log[-3:]}")
    return Capture(target, histogram, version.group(1) if version else "unknown", collector,
                   pauses, live, log)


def _until_ready(process: subprocess.Popen) -> list[str]:
    """The program's output up to its "ready" line (its -Xlog:gc lines among them)."""
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.strip() == "ready":
            return lines
    error = process.stderr.read()
    raise HeapAliasError(f"the javac program ended before its heap was ready: "
                         f"{error.strip()[-400:] or lines[-3:]}")
