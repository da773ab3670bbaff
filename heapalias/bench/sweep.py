"""The heap-size sweep of GC papers: heapalias's collectors against the JVM's, program by program.

For each program and collector, the *minimum heap* is the smallest heap (to 1 MiB, or 1%) in
which one run completes. Each collector then runs at multiples of its own minimum (1.5x, 2x,
3x, 4x and 6x by default): the C plans in heapalias heaps, the JVM with ``-Xms = -Xmx`` at
that size and a pre-touched heap. The same statistic is taken on both sides:

- every sample is one run in a **fresh process** (a C driver in a child Python, or a fresh
  JVM), which first runs ``warmup`` rounds: its first round is the sample's *cold* round
  (page faults, caches, the JIT compiling), its last the *steady* one. By default a program
  warms up for about a second whatever its length (``Program.warmup``: GCBench's 40-100 ms
  rounds 20 times, binary-trees 21's 5 s rounds twice), so that the JIT's compiler threads,
  which share the pinned CPU, are done before the steady round on the JVM's side;
- the rounds are **interleaved**: round r runs every (collector, multiple) once, in an order
  that rotates from round to round, so a change in the machine's load hits all of them;
- every figure is the **median and IQR over rounds**, for the total time, the collector's time
  (the sum of the pauses: ``gc_ns`` in C, the ``-Xlog:gc`` pauses on the JVM) and the
  mutator's (total minus GC), so a table says which of the two a difference comes from;
- a **no-collection** run (a heap larger than everything the program allocates; the JVM with
  Epsilon) is the mutator's lower bound on each side.

The C runs are pinned to one CPU (``cpu``), and so are the JVMs, except ``jvm-parallel-2cpu``
which may use every CPU (ParallelGC's threads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ..backing import format_size
from ..collectors import registered
from ..errors import HeapAliasError, InvalidArgument
from . import jvm
from .stats import summarize

MIB = 1 << 20
MULTIPLES = (1.5, 2.0, 3.0, 4.0, 6.0)
JVM_COLLECTORS = {"jvm-serial": ("serial", True), "jvm-parallel": ("parallel", True),
                  "jvm-parallel-2cpu": ("parallel", False)}
#: The mutator's lower bound on each side: no collection at all.
NO_GC = {"c": "none", "jvm": "jvm-epsilon"}
PARTS = ("total", "mutator", "gc")


@dataclass(frozen=True)
class Program:
    """A driver program: ``gcbench``, or ``binary_trees`` of a depth."""

    name: str
    depth: int = 0

    @classmethod
    def parse(cls, text: str) -> Program:
        """``"gcbench"`` or ``"binary-trees:DEPTH"`` (or ``binary_trees:DEPTH``)."""
        name, _, depth = text.replace("-", "_").partition(":")
        if name == "gcbench" and not depth:
            return cls("gcbench")
        if name == "binary_trees" and depth.isdigit() and 0 <= int(depth) <= 30:
            return cls("binary_trees", int(depth))
        raise InvalidArgument(f"no program {text!r}: gcbench, or binary-trees:DEPTH (0..30)")

    @property
    def warmup(self) -> int:
        """Warm-up rounds before a sample's steady round, unless the sweep says: about a
        second of them (GCBench's rounds take 40-100 ms; binary-trees' double per level)."""
        if self.name == "gcbench":
            return 20
        return min(20, max(2, 2 ** max(0, 20 - self.depth)))

    @property
    def label(self) -> str:
        return self.name if self.name == "gcbench" else f"binary_trees:{self.depth}"


@dataclass(frozen=True)
class Round:
    """One run of a program: its times in nanoseconds, its collections, what it allocated."""

    total_ns: int
    gc_ns: int
    collections: int
    full: int = 0
    bytes_allocated: int = 0

    @property
    def mutator_ns(self) -> int:
        return self.total_ns - self.gc_ns

    def part(self, name: str) -> float:
        """``total``, ``mutator`` or ``gc``, in milliseconds."""
        return {"total": self.total_ns, "mutator": self.mutator_ns, "gc": self.gc_ns}[name] / 1e6


class Collector(ABC):
    """Something that runs a program in a fresh process at a given heap size."""

    name: str
    side: str  # "c" or "jvm"

    @abstractmethod
    def rounds(self, program: Program, heap_bytes: int, count: int,
               cpu: int | None) -> list[Round] | None:
        """``count`` rounds in one fresh process; None if the heap is too small."""


_CHILD = r"""
import json, sys, warnings
import heapalias as ha
from heapalias import collectors, drivers
name, depth, size, count, collector = sys.argv[1:6]
size, count = int(size), int(count)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ha.HeapAliasWarning)
    heap = ha.Heap(size, name="gc-sweep")
out = []
with heap:
    if collector == "none":  # no collection: one space for everything
        spaces = {"from": (8, size - (1 << 20)), "to": (size - (1 << 20), size)}
        plan = collectors.SemiSpace(ha.ObjectHeap(heap, spaces=spaces))
    else:
        plan = collectors.plan_named(collector).over(heap)
    for _ in range(count):
        full = getattr(plan, "full_collections", 0)
        try:
            run = (drivers.gcbench(plan) if name == "gcbench"
                   else drivers.binary_trees(plan, int(depth)))
        except ha.SpaceFull:
            out = None
            break
        if collector == "none" and run.collections:
            out = None
            break
        out.append({"total_ns": run.total_ns, "gc_ns": run.gc_ns,
                    "collections": run.collections, "bytes_allocated": run.bytes_allocated,
                    "full": getattr(plan, "full_collections", 0) - full})
print(json.dumps(out))
"""


class NativeCollector(Collector):
    """A heapalias plan (by its registered name), or ``"none"``: no collection at all."""

    side = "c"

    def __init__(self, name: str) -> None:
        if name != NO_GC["c"] and name not in registered():
            raise InvalidArgument(f"no collector {name!r}; registered: {sorted(registered())}")
        self.name = name

    def rounds(self, program, heap_bytes, count, cpu):
        pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
        args = [program.name, str(program.depth), str(heap_bytes), str(count), self.name]
        done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True,
                              text=True, cwd="/", preexec_fn=pin, env=os.environ.copy())
        if done.returncode:
            raise HeapAliasError(f"{self.name} {program.label} at {format_size(heap_bytes)} "
                                 f"failed: {done.stderr.strip()[-400:]}")
        runs = json.loads(done.stdout)
        return None if runs is None else [Round(**run) for run in runs]


class JvmCollector(Collector):
    """The JVM with one of its collectors (jvm.GC_FLAGS), pinned to ``cpu`` or not."""

    side = "jvm"

    def __init__(self, name: str, gc: str, pinned: bool) -> None:
        self.name, self.gc, self.pinned = name, gc, pinned

    def rounds(self, program, heap_bytes, count, cpu):
        out = []
        with jvm.JvmProgram(program.name, program.depth, heap_bytes, self.gc,
                            cpu if self.pinned else None) as session:
            for _ in range(count):
                result = session.round()
                if not result.completed:
                    return None
                out.append(Round(result.total_ns, result.gc_ns, result.collections,
                                 result.full))
        return out


def collector_named(name: str) -> Collector:
    """A C plan's name, ``none``, a key of JVM_COLLECTORS, or ``jvm-epsilon``."""
    if name in JVM_COLLECTORS:
        return JvmCollector(name, *JVM_COLLECTORS[name])
    if name == NO_GC["jvm"]:
        return JvmCollector(name, "epsilon", True)
    return NativeCollector(name)


def minimum_heap(collector: Collector, program: Program, cpu: int | None,
                 too_small: int = MIB // 2, limit: int | None = None) -> tuple[int, Round]:
    """The smallest heap, to 1 MiB or 1%, in which one run of ``program`` completes, and
    that run. Doubles from twice ``too_small`` (a size known or assumed not to fit), then
    bisects; HeapAliasError past ``limit`` bytes."""
    limit = limit or _memory_available() // 2
    low, fitted = too_small, None
    size = max(2 * too_small // MIB, 1) * MIB
    while fitted is None:
        if size > limit:
            raise HeapAliasError(f"{collector.name} cannot run {program.label} in "
                                 f"{format_size(limit)} or less", remedy="free memory")
        runs = collector.rounds(program, size, 1, cpu)
        if runs:
            fitted = runs[0]
        else:
            low, size = size, size * 2
    high = size
    while high - low > max(MIB, high // 100):
        middle = (low + high) // 2 // MIB * MIB
        runs = collector.rounds(program, middle, 1, cpu)
        if runs:
            high, fitted = middle, runs[0]
        else:
            low = middle
    return high, fitted


def _memory_available() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 32


@dataclass
class Sweep:
    """What a sweep runs; :func:`run_sweep` fills ``minimum``, ``samples`` and ``notes``."""

    programs: list[Program]
    collectors: list[str]
    multiples: tuple[float, ...] = MULTIPLES
    rounds: int = 5
    #: warm-up rounds for every program; None: each program's own (Program.warmup)
    warmup: int | None = None
    cpu: int | None = None
    no_gc: bool = True
    #: program label -> collector -> (minimum heap bytes, bytes the minimum run allocated);
    #: entries given before the sweep runs (from an earlier sweep) are not searched again
    minimum: dict = field(default_factory=dict)
    #: program label -> collector -> str(multiple) -> {"heap_bytes", "cold": [], "steady": []}
    samples: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def warmup_for(self, program: Program) -> int:
        """The warm-up rounds of ``program``'s samples."""
        return program.warmup if self.warmup is None else self.warmup

    def as_dict(self) -> dict:
        data = asdict(self)
        data["programs"] = [p.label for p in self.programs]
        data["warmup"] = {p.label: self.warmup_for(p) for p in self.programs}
        return data


def heap_at(multiple: float, minimum: int) -> int:
    """The heap ``multiple`` times ``minimum`` bytes, rounded up to a whole MiB."""
    return -(-int(multiple * minimum) // MIB) * MIB


def _jobs(sweep: Sweep, program: Program) -> list[tuple[str, str, int, int]]:
    """(collector, multiple key, heap bytes, rounds per sample) for one program."""
    jobs, warmup = [], sweep.warmup_for(program)
    for name in sweep.collectors:
        minimum = sweep.minimum[program.label].get(name)
        if minimum:
            for multiple in sweep.multiples:
                heap = heap_at(multiple, minimum[0])
                jobs.append((name, f"{multiple:g}", heap, warmup + 1))
    if not sweep.no_gc:
        return jobs
    allocated = max(m[1] for m in sweep.minimum[program.label].values()) + 64 * MIB
    room = int(_memory_available() * 0.6)
    for side, name in NO_GC.items():
        if side == "jvm" and jvm.unavailable():
            continue
        # The C run reuses its heap; Epsilon never frees, so its heap holds every round.
        # 10% headroom over what the rounds allocate; Epsilon runs as many rounds as fit.
        count = warmup + 1 if side == "c" else min(warmup + 1, int(room / (allocated * 1.1)))
        heap = -(-int(allocated * (1 if side == "c" else max(count, 1)) * 1.1) // MIB) * MIB
        if count < 1 or heap > room:
            sweep.notes.append(f"{program.label}: no no-collection run on {name}: it needs a "
                               f"{format_size(heap)} heap, over 60% of the memory available")
            continue
        if count < warmup + 1:
            sweep.notes.append(f"{program.label}: {name} runs {count} rounds per sample, not "
                               f"{warmup + 1}: its heap must hold all of them")
        jobs.append((name, "no-gc", heap, count))
    return jobs


def run_sweep(sweep: Sweep, say: Callable[[str], None] = lambda line: None) -> Sweep:
    """Find every minimum heap, then run the interleaved rounds; returns ``sweep`` filled in."""
    if sweep.rounds < 1 or (sweep.warmup or 0) < 0 or not sweep.multiples:
        raise InvalidArgument("a sweep needs rounds >= 1, warmup >= 0 and some multiples")
    for program in sweep.programs:
        known = sweep.minimum.setdefault(program.label, {})
        for name in sweep.collectors:
            if name in known:
                found = known[name][0]
                say(f"{program.label}: {name} needs a {format_size(found)} heap at least "
                    "(from an earlier sweep)")
                continue
            found, run = minimum_heap(collector_named(name), program, sweep.cpu)
            known[name] = (found, run.bytes_allocated)
            say(f"{program.label}: {name} needs a {format_size(found)} heap at least")
        sweep.minimum[program.label] = {name: known[name] for name in sweep.collectors}
    jobs = {program.label: _jobs(sweep, program) for program in sweep.programs}
    for program in sweep.programs:
        sweep.samples[program.label] = {}
        for name, key, heap, _ in jobs[program.label]:
            sweep.samples[program.label].setdefault(name, {})[key] = {
                "heap_bytes": heap, "cold": [], "steady": []}
    for round_no in range(sweep.rounds):
        for program in sweep.programs:
            todo = jobs[program.label]
            shift = round_no * len(todo) // sweep.rounds  # each round starts elsewhere
            for name, key, heap, count in todo[shift:] + todo[:shift]:
                runs = collector_named(name).rounds(program, heap, count, sweep.cpu)
                entry = sweep.samples[program.label][name][key]
                if runs is None:
                    sweep.notes.append(f"{program.label}: {name} did not complete in "
                                       f"{format_size(heap)} in round {round_no + 1}")
                    continue
                entry["cold"].append(asdict(runs[0]))
                entry["steady"].append(asdict(runs[-1]))
        say(f"round {round_no + 1}/{sweep.rounds} done")
    return sweep


def summary(entry: dict, phase: str, part: str) -> dict | None:
    """Median and IQR of one part (``total``, ``mutator``, ``gc``, ms) over the rounds of
    one (collector, multiple) entry's ``cold`` or ``steady`` phase; None without samples."""
    values = [Round(**r).part(part) for r in entry[phase]]
    if not values:
        return None
    s = summarize(values)
    return {"median": s.median, "iqr": s.iqr, "n": s.n}


def metadata() -> dict:
    """The machine a sweep ran on (as ``heapalias bench`` records it), with its load."""
    from .runner import metadata as bench_metadata

    return {**bench_metadata(), "load_average": os.getloadavg()}
