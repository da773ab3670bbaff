"""Family ``corruption``: the GC loops run on a heap that a second thread rewrites meanwhile.

A case builds a random graph (any encoding) in a 1 MiB heap, may corrupt a few
words for good, then hands the heap to the rewriter thread and runs 3-5 rounds of
loops (verify, walk, mark, clear_marks, card scan, Cheney collection) while the
rewriter flips one word at a time (a header to 65535 references, to size 0, to a
stale FORWARDED bit...; a reference slot; a to-space word) between a bad value
and its own. The loops run in C without the GIL, so the flips land mid-loop, and
a loop often reads a header valid and, a moment later, flipped: exactly the
check-then-use window. Each loop must end, with its result or a HeapCorruption /
SpaceFull, before the case's timeout; none may crash.

The rewriter has its own seeded stream, so what it writes replays exactly; when
it writes, relative to the loops, does not: a replay may need a few runs, and
the race needs the two threads on two cores at once.
"""

from __future__ import annotations

import queue
import random
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import as_strided

import heapalias as ha
from heapalias import collectors, workloads
from heapalias.objects import FORWARDED, MARKED, make_header

from .harness import Case, Outcome, where_of

#: A burst writes one word this many times, in one numpy copy through a zero-stride view:
#: HOLD times the bad value, HOLD times its own, and again. numpy runs the copy without the
#: GIL (about a millisecond), so the word flips while the loops run on the other core, the
#: bad value is up half the time, and the rewriter hardly waits for the GIL when a loop starts.
WRITES = 1 << 21
HOLD = 4096
#: Copies a burst makes before it picks another word.
BURST = 2
#: What the rewriter writes over a header or a reference slot, and how often a job picks
#: each: mostly the two a check-then-use loop trips on (many references, a zero size).
CORRUPTIONS = {"nrefs": 6, "zero": 4, "one-word": 1, "huge": 1, "forwarded": 2, "marked": 1,
               "random-header": 1, "random-ref": 1, "interior-ref": 1, "ref-past-top": 1,
               "to-space-zero": 2, "to-space-nrefs": 2}
#: Which headers it aims at: the last of from-space (whose slots, with 65535 references,
#: run off the end of the heap), a few anywhere, or any.
FOCUS = ("last", "last", "few", "all")
#: A quarter of the jobs leave one burst's value in place for good (one, so that the race
#: is not over once a loop finds a header that stays bad).
STICKY_JOBS = 0.25
ENCODINGS = ("offset", "offset", "address", "colored", "masked")
#: The loops that read a header twice (verify, mark, Cheney's scan) come up twice as often.
LOOPS = ("verify", "verify", "mark", "mark", "collect", "collect", "walk", "clear_marks", "scan")


@dataclass
class Job:
    """One case's heap, handed to the rewriter until ``stop`` is set."""

    semi: ha.SemiSpace
    seed: int
    focus: str
    kinds: tuple[str, ...]
    started: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    flips: int = 0
    targets: tuple = ()

    def __post_init__(self) -> None:
        self.words = self.semi.objects.words
        self.rng = random.Random(self.seed)
        self.bursts = 0
        self.sticky_burst = self.rng.randrange(5, 40) if self.rng.random() < STICKY_JOBS else -1
        self.retarget()

    def retarget(self) -> None:
        """Aim at the objects now in from-space (a collection moves them and swaps the spaces)."""
        space, to = self.semi.from_space, self.semi.to_space
        try:
            _, offsets = collectors.walk(self.semi.objects, space.name, offsets=True)
        except ha.HeapCorruption:
            offsets = np.arange(space.start, space.top, 64, dtype=np.uint64)
        headers = [int(h) >> 3 for h in offsets]
        if self.focus == "last":
            headers = headers[-1:]
        elif self.focus == "few" and headers:
            headers = [self.rng.choice(headers) for _ in range(8)]
        # A collection copies the live objects to the bottom of to-space and scans them there.
        copies = (to.start >> 3, max(to.start + space.top - space.start, to.start + 8) >> 3)
        self.targets = (headers, space.top, *copies)

    def bad_word(self, kind: str) -> tuple[int, int]:
        """(word index, bad value) for one burst of ``kind``."""
        headers, top, to_start, to_end = self.targets
        header = self.rng.choice(headers)
        old = int(self.words[header])
        size = old & 0xFFFFFFFF
        codec = self.semi.objects.codec
        table = {
            "nrefs": lambda: (header, make_header(size, 0xFFFF)),
            "zero": lambda: (header, 0),
            "one-word": lambda: (header, make_header(1, 0)),
            "huge": lambda: (header, make_header(0xFFFFFFFF, 1)),
            "forwarded": lambda: (header, old | FORWARDED),  # slot 1, a reference, goes stale
            "marked": lambda: (header, old ^ MARKED),
            "random-header": lambda: (header, self.rng.getrandbits(64)),
            "random-ref": lambda: (header + 1, self.rng.getrandbits(64)),
            "interior-ref": lambda: (header + 1, codec.encode(header * 8 + 8)),
            "ref-past-top": lambda: (header + 1, codec.encode(top + 8)),
            "to-space-zero": lambda: (self.rng.randrange(to_start, to_end), 0),
            "to-space-nrefs": lambda: (self.rng.randrange(to_start, to_end),
                                       make_header(4, 0xFFFF)),
        }
        where, bad = table[kind]()
        return where, int(bad)

    def burst(self) -> None:
        """Toggle one word between a bad value and its own; leave it good (mostly)."""
        if not self.targets[0]:
            self.stop.wait(0.001)
            return
        where, bad = self.bad_word(self.rng.choice(self.kinds))
        cell = self.words[where : where + 1]
        good = int(cell[0])
        pattern = np.array([[bad], [good]], dtype=np.uint64)
        toggling = as_strided(cell, shape=(WRITES // (2 * HOLD), 2, HOLD), strides=(0, 0, 0),
                              writeable=True)
        for _ in range(BURST):
            np.copyto(toggling, pattern)
        if self.bursts == self.sticky_burst:
            cell[0] = bad
        self.bursts += 1
        self.flips += BURST * WRITES // HOLD


class Rewriter(threading.Thread):
    """One thread for the whole batch (a thread per case would map a new stack now and then)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.jobs: queue.Queue[Job] = queue.Queue()

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            finished = job.finished
            try:
                self.work(job)
            finally:
                # A job holds the case's heap: drop it before the case may count leaks.
                del job
                finished.set()

    @staticmethod
    def work(job: Job) -> None:
        job.started.set()
        while not job.stop.is_set():
            job.burst()


_rewriter: Rewriter | None = None


def rewriter() -> Rewriter:
    global _rewriter
    if _rewriter is None:
        _rewriter = Rewriter()
        _rewriter.start()
    return _rewriter


def build(case: Case, colors: ha.MultiView) -> tuple[ha.ObjectHeap, np.ndarray]:
    """A random graph filling most of from-space, in a random encoding.

    The objects live in color 0 of a two-color layout: the PROT_NONE gap before
    color 1 makes any read past the end of the heap fault, whatever else is mapped
    nearby.

    From-space is mostly the upper half of a 1 MiB heap, so that a header flipped to
    65535 references (512 KiB) sends an unchecked loop past the end of the heap.
    """
    rng = case.rng
    encoding = rng.choice(ENCODINGS)
    layout = collectors.semispace_layout(colors[0].size)
    if rng.random() < 0.7:
        layout = {"from": layout["to"], "to": layout["from"]}
    objects = ha.ObjectHeap(colors[0], encoding=encoding, spaces=layout,
                            colors=colors if encoding in ("colored", "masked") else None)
    degree, seed, fill = rng.randrange(1, 4), rng.randrange(1 << 32), rng.uniform(0.3, 0.93)
    start, end = layout["from"]
    n = int(fill * (end - start) / (8 * (2.5 + degree)))  # the mean object has 2.5 + degree words
    case.step(f"objects = ObjectHeap(Heap(1M), encoding={encoding!r}, spaces={layout}); "
              f"random_graph(objects, {n}, {degree}, (0, 3), seed={seed}, space='from')")
    graph = workloads.random_graph(objects, n, degree, (0, 3), seed=seed,
                                   nroots=rng.randrange(1, 9), space="from")
    return objects, graph.roots.copy()


def corrupt_for_good(case: Case, objects: ha.ObjectHeap) -> None:
    """A few permanent single-word corruptions before the race starts (deterministic)."""
    top = objects.space("from").top >> 3
    for _ in range(case.rng.choice((0, 0, 1, 2))):
        index, value = case.rng.randrange(1, top), case.rng.getrandbits(64)
        case.step(f"objects.words[{index}] = {value:#x}")
        objects.words[index] = value


def run_loop(case: Case, name: str, semi: ha.SemiSpace, roots: np.ndarray,
             cards: ha.CardTable, capacity: int) -> Outcome:
    """Run one loop without logging it (a log line is a GIL hand-over to the rewriter)."""
    objects, space, other = semi.objects, semi.from_space.name, semi.to_space.name
    calls = {
        "verify": (collectors.verify, (objects, roots), {}),
        "walk": (collectors.walk, (objects, space), {}),
        "mark": (collectors.mark, (objects, roots), {"stack_capacity": capacity}),
        "clear_marks": (collectors.clear_marks, (objects, space), {}),
        "scan": (cards.scan, (space, other), {}),
        "collect": (semi.collect, (roots,), {}),
    }
    fn, args, kwargs = calls[name]
    if name == "scan":
        cards.cards[:] = 1
    return case.attempt(fn, args, kwargs, where_of(fn), quiet=True)


def plan(case: Case) -> list[tuple[str, int, int]]:
    """Rounds of (loop, repetitions, mark stack capacity), drawn before the race starts."""
    rng = case.rng
    return [(rng.choice(LOOPS), rng.choice((1, 4, 8, 16)), rng.choice((2, 64, 1 << 16)))
            for _ in range(rng.randrange(3, 6))]


def run_case(case: Case) -> None:
    rng = case.rng
    with ha.Heap("1M", name="corrupt") as heap:
        colors = heap.multimap(2, shift=21)
        objects, roots = build(case, colors)
        corrupt_for_good(case, objects)
        semi, cards = ha.SemiSpace(objects), ha.CardTable(objects, rng.choice((6, 9, 12)))
        kinds = tuple(sorted(set(rng.choices(list(CORRUPTIONS), list(CORRUPTIONS.values()),
                                             k=rng.choice((1, 1, 2))))))
        job = Job(semi, rng.randrange(1 << 32), rng.choice(FOCUS), kinds)
        rounds = plan(case)
        case.step(f"rewriter: Job(seed={job.seed}, focus={job.focus!r}, kinds={kinds}); loops: "
                  + ", ".join(f"{loop} x{times}" + (f" (stack {capacity})" if loop == "mark"
                                                    else "") for loop, times, capacity in rounds))
        outcomes: Counter[str] = Counter()
        rewriter().jobs.put(job)
        job.started.wait()
        try:
            for loop, times, capacity in rounds:
                for _ in range(times):
                    outcome = run_loop(case, loop, semi, roots, cards, capacity)
                    outcomes[type(outcome.error).__name__ if outcome.error else "ok"] += 1
                    if loop == "collect" and outcome.ok:
                        job.retarget()
        finally:
            job.stop.set()
            job.finished.wait()
        case.step(f"rewriter stopped after {job.flips} flips; outcomes {dict(outcomes)}; "
                  "a last verify and walk")
        for loop in ("verify", "walk"):
            run_loop(case, loop, semi, roots, cards, 1)
        colors.close()


def warm_up() -> None:
    """Start the rewriter (its stack and malloc arena stay mapped) before leaks are counted."""
    sys.setswitchinterval(1e-4)  # hand the GIL back to the loops quickly
    with ha.Heap("1M") as heap:
        semi = ha.SemiSpace.halves(heap)
        workloads.random_graph(semi.objects, 100, space="from")
        job = Job(semi, 0, "all", ("marked",))
        rewriter().jobs.put(job)
        collectors.walk(semi.objects, "from")
        job.stop.set()
        job.finished.wait()
