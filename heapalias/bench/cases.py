"""The benchmark cases, each defined once for the CLI and for pytest-benchmark.

A case lists its variants (backing x pages x strategy, or an encoding, or a
size), builds a :class:`Trial` for one variant, and each ``Trial.run()`` is one
timed sample. Variants the probe found broken are skipped with its reason.
"""

from __future__ import annotations

import itertools
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import collectors, drivers, hprof, native, workloads
from ..backing import format_size
from ..concurrent import TRAP_BACKING, TRAP_FEATURES
from ..errors import HeapAliasError, HeapAliasWarning
from ..heap import Heap
from ..hprof import capture
from ..hprof.measure import import_heap
from ..objects import ObjectHeap
from ..probe import Combination, ProbeResult
from ..relocation import RelocationArea
from ..relocation import copy as copy_range
from ..system import HUGETLB_PAGES, PAGE_SIZES
from . import floors, jvm, sweep


@dataclass(frozen=True)
class Variant:
    """One configuration of a case."""

    backing: str = "-"
    pages: str = "-"
    strategy: str = "-"
    detail: str = ""

    @property
    def label(self) -> str:
        parts = [p for p in (self.backing, self.pages, self.strategy) if p != "-"]
        return "/".join(parts) + (f" {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Sample:
    """What one timed run did: its time, and the bytes or operations it covered."""

    seconds: float
    bytes: int = 0
    ops: int = 1


@dataclass
class Trial:
    """A variant set up and ready to run; ``close()`` releases its heaps."""

    run: Callable[[], Sample]
    heaps: list[Heap] = field(default_factory=list)
    cleanup: Callable[[], None] | None = None
    #: Heap lines per op the loop must read (bench/floors.py): shown as ``x floor``, the
    #: time those lines take at the same run's memory-parallelism limit.
    lines: float | None = None

    @property
    def obtained(self) -> str:
        """The page size the first heap actually got (from smaps)."""
        if not self.heaps:
            return ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HeapAliasWarning)
            return self.heaps[0].pages_report()[0].obtained

    def close(self) -> None:
        if self.cleanup:
            self.cleanup()
        for heap in self.heaps:
            heap.close()


def _misfit(pages: str) -> str:
    """Why a heap of the run's size cannot use these pages."""
    return f"heap size is not a multiple of the {pages} page"


def pool_short(pages: str) -> str:
    """Why a variant could not get its hugetlb pages: one reason per pool, whatever the call."""
    return f"the {format_size(PAGE_SIZES[pages])} hugetlb pool is short of pages"


#: What Case.variants yields: a variant, and why it cannot run ("" when it can).
Choice = tuple["Variant", str]


@dataclass(frozen=True)
class Context:
    """What every case may use: the heap size, the suite, and the probe's findings."""

    size: int
    suite: str
    probe: ProbeResult
    #: An HPROF heap dump for the real_heap case (None: capture javac's, in the full suite).
    hprof: str | None = None
    #: The JVM's forced full-GC pauses (ms) on that dump's heap, by collector, if known.
    jvm_pauses: dict[str, list[float]] | None = None

    def why_not(self, combo: Combination) -> str:
        """Why a combination the probe saw fail cannot run: a hugetlb pool without a free page
        at probe time is the cause, whatever the call that found it out."""
        if combo.pages in HUGETLB_PAGES:
            pools = {pool.label: pool for pool in self.probe.system.hugepage_pools}
            pool = pools.get(combo.pages)
            if pool is not None and pool.available == 0:
                return pool_short(combo.pages)
        return combo.error

    def heaps(self, backings: tuple[str, ...] = ("memfd", "anon", "private")) -> Iterator[Choice]:
        """Each backing x pages, and why the probe could not create a heap with it ("" if it
        could)."""
        for backing in backings:
            for pages in PAGE_SIZES:
                combo = self.probe.get(backing, pages, "memfd" if backing == "memfd" else "mremap")
                if self.size % PAGE_SIZES[pages]:
                    yield Variant(backing, pages), _misfit(pages)
                elif not combo.obtained:
                    yield Variant(backing, pages), self.why_not(combo)
                else:
                    yield Variant(backing, pages), ""

    def aliases(self) -> Iterator[Choice]:
        """Each applicable backing x pages x strategy, and why it cannot run ("" if it can)."""
        for combo in self.probe.combinations:
            if not combo.applicable:
                continue
            variant = Variant(combo.backing, combo.pages, combo.strategy)
            if self.size % PAGE_SIZES[combo.pages]:
                yield variant, _misfit(combo.pages)
            elif not combo.ok:
                yield variant, self.why_not(combo)
            else:
                yield variant, ""


class Case:
    """A benchmark: its variants, how to set one up, and what its metric means."""

    name = ""
    description = ""
    unit = "GB/s"  # or "us/op", "ns/obj", "ns/op", "ms"
    limit: str | None = None  # a key of runner.limit_values: "copy", "write", "read", ...
    #: Figures shown beside the limit, never bounds: "latency" (one dependent load at a time).
    beside: tuple[str, ...] = ()
    suites = ("quick", "full")
    #: Backings the case runs on, in the full suite and in the quick one.
    backings: tuple[str, ...] = ("memfd", "anon", "private")
    quick_backings: tuple[str, ...] = ("memfd",)
    #: Whether the case runs on a heap dump: given one, every suite runs it.
    wants_dump = False

    @property
    def higher_is_better(self) -> bool:
        return self.unit == "GB/s"

    def metric(self, sample: Sample) -> float:
        """The sample in this case's unit."""
        if self.unit == "GB/s":
            return sample.bytes / sample.seconds / 1e9
        scale = {"us/op": 1e6, "ns/obj": 1e9, "ns/op": 1e9, "ms": 1e3}[self.unit]
        return sample.seconds / sample.ops * scale

    def variants(self, ctx: Context) -> Iterator[Choice]:
        """Every variant, with why it cannot run on this machine ("" when it can)."""
        yield from ctx.heaps(self.quick_backings if ctx.suite == "quick" else self.backings)

    def limit_for(self, variant: Variant) -> str | None:
        """The limit ``variant`` is judged against (by default the case's)."""
        return self.limit

    def beside_for(self, variant: Variant) -> tuple[str, ...]:
        """The figures ``variant`` is shown against beside its limit (by default the case's)."""
        return self.beside

    def footprint(self, ctx: Context, variant: Variant) -> tuple[int, int]:
        """Bytes of heap a variant holds once set up, and bytes more while one sample runs:
        what the hugetlb pool must hold for it."""
        return ctx.size, 0

    def reference(self, variant: Variant, variants: list[Variant]) -> Variant | None:
        """The variant this one is compared with (by default the first); None if not among
        ``variants`` (filtered out), and the runner then uses the first."""
        return variants[0]

    def setup(self, ctx: Context, variant: Variant) -> Trial:
        raise NotImplementedError


def _each_detail(variants: Iterator[Choice], details: tuple[str, ...]) -> Iterator[Choice]:
    """Each variant once per detail (skips pass through unchanged)."""
    for variant, reason in variants:
        if reason:
            yield variant, reason
        else:
            for detail in details:
                yield Variant(variant.backing, variant.pages, variant.strategy, detail), ""


def _heap(size: int, variant: Variant, populate: bool = True) -> Heap:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeapAliasWarning)
        return Heap(size, backing=variant.backing, pages=variant.pages, name="bench",
                    populate=populate)


def _sample(stats: collectors.LoopStats) -> Sample:
    """A loop's own timing and counts as one sample."""
    return Sample(stats.seconds, stats.bytes, max(stats.objects, 1))


def _copied(name: str, stats: collectors.LoopStats, expected: int) -> Sample:
    """The sample of a collection that must copy ``expected`` objects; RuntimeError if it
    did not: timing an empty collection reads as nonsense per object, as cheney_small's
    fresh case once reported for every sample after its first."""
    if stats.objects != expected:
        raise RuntimeError(f"{name} copied {stats.objects} objects, not {expected}")
    return _sample(stats)


def _forget(cache: dict, key: object) -> Callable[[], None]:
    """A Trial's cleanup for a case that shares heaps between its variants: drop ``key`` from
    the case's cache once a trial closes, or what it holds would keep the closed heap's memory
    (a heap is unmapped only once no array refers to it)."""
    return lambda: cache.pop(key, None)


def _timed(call: Callable[[], object]) -> float:
    begin = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - begin) / 1e9


class AliasCreation(Case):
    name = "alias"
    description = "map one more view and unmap it (no page tables populated)"
    unit = "us/op"

    def variants(self, ctx):
        yield from ctx.aliases()

    def footprint(self, ctx, variant):
        page = PAGE_SIZES[variant.pages]
        return max(min(ctx.size, 64 << 20) // page * page, page), 0

    def setup(self, ctx, variant):
        heap = _heap(self.footprint(ctx, variant)[0], variant)
        heap.populate = False  # time the mapping, not faulting in page tables
        return Trial(lambda: Sample(_timed(lambda: heap.alias(variant.strategy).close())), [heap])


class Populate(Case):
    name = "populate"
    description = ("get a heap's memory: `populate` commits and faults it in when the heap is "
                   "created; `touch` maps it lazily and first-touches one byte per page")
    limit = "write"  # the kernel zeroes every page it hands out: at best a memset
    quick_backings = ("memfd", "private")

    def variants(self, ctx):
        return _each_detail(super().variants(ctx), ("populate", "touch"))

    def reference(self, variant, variants):
        return next((v for v in variants if v.detail == variant.detail), None)

    def footprint(self, ctx, variant):
        return PAGE_SIZES[variant.pages], ctx.size  # a one-page heap, and each sample's heap

    def setup(self, ctx, variant):
        page = min(PAGE_SIZES[variant.pages], 4096 if variant.pages == "thp" else 1 << 30)

        def run() -> Sample:
            box: list[Heap] = []
            if variant.detail == "populate":
                seconds = _timed(lambda: box.append(_heap(ctx.size, variant)))
            else:
                box.append(_heap(ctx.size, variant, populate=False))
                data = box[0].view.array(np.uint8)
                seconds = _timed(lambda: data[::page].fill(1))
                del data
            box[0].close()
            return Sample(seconds, ctx.size)

        probe_heap = _heap(PAGE_SIZES[variant.pages], variant)
        return Trial(run, [probe_heap])


class AliasedReadWrite(Case):
    name = "alias_rw"
    description = "write the heap through one view, read it through another (or the same)"
    limit = "write+read"

    def variants(self, ctx):
        yield Variant("memfd", "4k", "single"), ""
        yield from ctx.aliases()

    def setup(self, ctx, variant):
        heap = _heap(ctx.size, variant)
        reader = heap.view if variant.strategy == "single" else heap.alias(variant.strategy)
        def run() -> Sample:  # the write+read limit's own loop, through two views
            ns = native.write_read_ns(heap.view.address, reader.address, heap.size)
            return Sample(ns / 1e9, 2 * heap.size)

        return Trial(run, [heap])


#: Heap bytes per graph object: objects average 48 bytes, so the graph fills half the heap.
GRAPH_BYTES_PER_OBJECT = 96


def graph_size(size: int, suite: str) -> int:
    """The heap size of the graph cases: the run's size, capped at 64 MiB in the quick suite."""
    return size if suite == "full" else min(size, 64 << 20)


#: floors.count of each graph the cases build, by (case, heap size): every backing, page
#: size and encoding lays one graph out alike, so it is counted once per run and size.
_GRAPH_LINES: dict[tuple[str, int], floors.Lines] = {}


def _graph_lines(case: str, objects: ObjectHeap, roots: np.ndarray) -> floors.Lines:
    """The lines a trace of ``case``'s graph must read, counted on its first variant."""
    key = (case, objects.size)
    if key not in _GRAPH_LINES:
        _GRAPH_LINES[key] = floors.count(objects, roots)
    return _GRAPH_LINES[key]


def _graph_heap(ctx: Context, variant: Variant, encoding: str = "offset",
                colors: int = 0) -> tuple[Heap, ObjectHeap, np.ndarray]:
    """A heap half full of a random graph (see graph_size)."""
    heap = _heap(graph_size(ctx.size, ctx.suite), variant)
    layout = heap.multimap(colors, shift=max(heap.size - 1, 1).bit_length()) if colors else None
    objects = ObjectHeap(heap, encoding=encoding, colors=layout)
    n = heap.size // GRAPH_BYTES_PER_OBJECT
    work = workloads.random_graph(objects, n, 2, (0, 6), seed=11, nroots=64)
    return heap, objects, work.roots


class GraphCase(Case):
    """A case over a heap half full of a random graph (see graph_size)."""

    def footprint(self, ctx, variant):
        return graph_size(ctx.size, ctx.suite), 0


class Scan(GraphCase):
    name = "scan"
    description = "linear heap walk: parse every header, bottom to top"
    limit = "read"

    def setup(self, ctx, variant):
        heap, objects, _ = _graph_heap(ctx, variant)

        def run() -> Sample:
            return _sample(collectors.walk(objects))

        return Trial(run, [heap])


def _marking(heap: Heap, objects: ObjectHeap, roots: np.ndarray) -> Trial:
    """Each sample: clear the marks (untimed), then mark from the roots (the C loop's time),
    on one thread (the parallel case has the others). The stack can hold every object, so
    the figure is the trace itself, not overflow rescans."""
    stack = heap.size // GRAPH_BYTES_PER_OBJECT

    def run() -> Sample:
        collectors.clear_marks(objects)
        return _sample(collectors.mark(objects, roots, stack_capacity=stack, threads=1))

    return Trial(run, [heap], lines=_graph_lines("mark", objects, roots).mark)


class Mark(GraphCase):
    name = "mark"
    description = "trace a random graph from 64 roots (marks cleared between samples)"
    unit = "ns/obj"
    limit = "mlp"
    beside = ("latency",)

    def setup(self, ctx, variant):
        heap, objects, roots = _graph_heap(ctx, variant)

        return _marking(heap, objects, roots)


class Encodings(GraphCase):
    name = "encodings"
    description = "mark the same graph with offset, address, colored and masked references"
    unit = "ns/obj"
    limit = "mlp"
    beside = ("latency",)

    def variants(self, ctx):
        for variant, reason in ctx.heaps(("memfd",)):
            if reason:
                yield variant, reason
            elif ctx.suite == "full" or variant.pages != "thp":
                for encoding in ("offset", "address", "colored", "masked"):
                    yield Variant(variant.backing, variant.pages, detail=encoding), ""

    def reference(self, variant, variants):
        return next((v for v in variants
                     if v.pages == variant.pages and v.detail == "offset"), None)

    def setup(self, ctx, variant):
        colored = variant.detail in ("colored", "masked")
        heap, objects, roots = _graph_heap(ctx, variant, variant.detail, 3 if colored else 0)

        return _marking(heap, objects, roots)


def _one_thread(heap: Heap) -> collectors.SemiSpace:
    """A SemiSpace over ``heap`` that collects on one thread: the cases that time the loops
    on one (the parallel case has the others)."""
    semi = collectors.SemiSpace.over(heap)
    semi.threads = 1
    return semi


class Evacuation(Case):
    """Cheney evacuation between the halves of one heap, on one thread."""

    limit = "copy"

    def build(self, objects: ObjectHeap, space: str) -> np.ndarray:
        """Allocate the workload in ``space`` (the plan's from-space); its roots."""
        raise NotImplementedError

    backings = quick_backings = ("memfd",)

    def setup(self, ctx, variant):
        heap = _heap(ctx.size, variant)
        semi = _one_thread(heap)
        roots = self.build(semi.objects, semi.from_space.name)
        semi.collect(roots)  # survivors now lie in breadth-first order, as in steady state

        def run() -> Sample:
            return _sample(semi.collect(roots))

        return Trial(run, [heap])


class EvacuateLarge(Evacuation):
    name = "cheney_large"
    description = "evacuate 1 MiB objects (a chain filling 3/8 of the heap)"

    def build(self, objects, space):
        count = max(objects.size * 3 // 8 // (1 << 20), 1)
        return workloads.large_objects(objects, count, 1 << 20, space=space).roots.copy()


class EvacuateSmall(Evacuation):
    name = "cheney_small"
    description = ("evacuate 40-byte tree nodes (2 refs, 2 payload words): freshly allocated "
                   "(depth-first order), or again after a copy (breadth-first, steady state)")
    unit = "ns/obj"
    limit = None

    def variants(self, ctx):
        return _each_detail(super().variants(ctx), ("steady", "fresh"))

    def beside_for(self, variant):
        """A fresh tree is copied in scattered order, but a node often shares a line or a
        page with its left child: the mlp limit is a figure to compare with, not a bound
        (on 4 KiB pages the copy beat it)."""
        return ("latency", "mlp") if variant.detail == "fresh" else ()

    def reference(self, variant, variants):
        return next((v for v in variants
                     if v.pages == variant.pages and v.detail == "steady"), None)

    @staticmethod
    def depth(heap_bytes: int) -> int:
        """The tree's depth: its nodes fill about 3/8 of a heap of ``heap_bytes``."""
        return max((heap_bytes * 3 // 8 // 40).bit_length() - 2, 1)

    def build(self, objects, space):
        return workloads.binary_tree(objects, self.depth(objects.size), payload_words=2,
                                     space=space).roots.copy()

    def setup(self, ctx, variant):
        if variant.detail == "steady":
            return super().setup(ctx, variant)
        heap = _heap(ctx.size, variant)
        semi = _one_thread(heap)

        nodes = 2 ** (self.depth(semi.objects.size) + 1) - 1

        def run() -> Sample:  # a new tree each time: the copy reads it in allocation order
            semi.reset()
            # In the space the plan empties next: after a collection the two have swapped.
            return _copied(self.name, semi.collect(self.build(semi.objects,
                                                              semi.from_space.name)), nodes)

        return Trial(run, [heap])


class EvacuateGraph(GraphCase):
    name = "cheney_graph"
    description = ("evacuate a random graph (mean degree 2, 16-88 byte objects, a quarter of "
                   "the heap) freshly built in random order, on one thread: each first copy "
                   "and each edge to an object copied already is a miss in from-space")
    unit = "ns/obj"
    limit = "mlp"
    beside = ("latency",)
    backings = quick_backings = ("memfd",)

    def setup(self, ctx, variant):
        heap = _heap(graph_size(ctx.size, ctx.suite), variant)
        semi = _one_thread(heap)
        objects, start = semi.objects, semi.from_space.start
        first = workloads.random_graph(objects, heap.size // GRAPH_BYTES_PER_OBJECT // 2, 2,
                                       (0, 6), seed=11, nroots=64, space=semi.from_space.name)
        top, roots = semi.from_space.top, first.roots.copy()
        lines = _graph_lines(self.name, objects, roots).copy
        graph = objects.words[start >> 3:top >> 3].copy()
        first_copy: dict[str, int] = {}

        def run() -> Sample:  # the graph laid out as built again (untimed), then copied
            plan = collectors.SemiSpace(objects, "from", "to", threads=1)
            plan.to_space.reset()
            plan.from_space.top = top
            objects.words[start >> 3:top >> 3] = graph
            stats = plan.collect(roots.copy())
            return _copied(self.name, stats, first_copy.setdefault("objects", stats.objects))

        return Trial(run, [heap], lines=lines)


#: The relocation case's userfaultfd methods, and the feature each needs beyond MISSING on
#: anonymous memory.
UFFD_RELOCATIONS = {"uffd-copy": None, "uffd-move": "MOVE"}


class Relocation(Case):
    name = "relocation"
    description = ("move a page-aligned range: memcpy, or remap its pages (then populate them); "
                   "on 4k pages also through a userfaultfd into private anonymous memory, "
                   "UFFDIO_COPY or UFFDIO_MOVE (the ioctl alone)")
    unit = "us/op"

    def sizes(self, ctx: Context) -> list[int]:
        top = min(64 << 20, ctx.size // 4)
        if ctx.suite == "quick":
            return [s for s in (64 << 10, 1 << 20, 4 << 20, 16 << 20) if s <= top]
        return [4096 << k for k in range(15) if 4096 << k <= top]

    def variants(self, ctx):
        for variant, reason in ctx.heaps(("memfd",)):
            if reason:
                yield variant, reason
                continue
            if variant.pages == "thp":
                continue
            uffd_skips = self.uffd_skips() if variant.pages == "4k" else {}
            for size in self.sizes(ctx):
                if size % PAGE_SIZES[variant.pages] == 0:
                    for method in ("copy", "remap", "remap+populate", *uffd_skips):
                        backing = "private" if method in uffd_skips else "memfd"
                        yield (Variant(backing, variant.pages, method, _size_label(size)),
                               uffd_skips.get(method, ""))

    def uffd_skips(self) -> dict[str, str]:
        """Each userfaultfd method, with the reason it cannot run here ("" if it can)."""
        from ..uffd import capability

        cap = capability()
        return {method: "" if cap.usable and (not need or cap.features.get(need))
                else f"userfaultfd {need or 'MISSING'} is not available to this process"
                for method, need in UFFD_RELOCATIONS.items()}

    def footprint(self, ctx, variant):
        return 2 * _parse_label(variant.detail), 0  # the range and room to copy it to

    def reference(self, variant, variants):
        return next((v for v in variants if v.pages == variant.pages
                     and v.detail == variant.detail and v.strategy == "copy"), None)

    def setup(self, ctx, variant):
        size = _parse_label(variant.detail)
        if variant.strategy in UFFD_RELOCATIONS:
            from ..uffd import relocate

            source, target = _heap(size, variant), _heap(size, variant)
            move = variant.strategy == "uffd-move"
            return Trial(lambda: _sample(relocate(source.view, target.view, move)),
                         [source, target])
        # Every alias is populated, as a heap in use would be.
        heap = _heap(self.footprint(ctx, variant)[0], variant)
        if variant.strategy == "copy":
            return Trial(lambda: _sample(copy_range(heap.view, 0, size, heap.view, size)), [heap])

        def run() -> Sample:
            source = heap.alias()
            area = RelocationArea(heap, size)
            moved, stats = area.remap(source, 0, size, populate=variant.strategy != "remap")
            moved.close()
            source.close()
            area.close()
            return _sample(stats)

        return Trial(run, [heap])


def _size_label(size: int) -> str:
    return f"{size >> 20}M" if size >= 1 << 20 else f"{size >> 10}K"


def _parse_label(label: str) -> int:
    return int(label[:-1]) << (20 if label.endswith("M") else 10)


class Program(Case):
    """A whole program driven in C over the semispace plan, on a heap of the run's size,
    collecting on one thread."""

    unit = "ms"
    backings = quick_backings = ("memfd",)

    def go(self, plan: collectors.Plan, ctx: Context) -> drivers.GCRun:
        raise NotImplementedError

    def setup(self, ctx, variant):
        heap = _heap(ctx.size, variant)
        plan = _one_thread(heap)

        def run() -> Sample:
            result = self.go(plan, ctx)
            return Sample(result.total_ns / 1e9, result.bytes_allocated, 1)

        return Trial(run, [heap])


class BinaryTrees(Program):
    name = "binary_trees"
    description = "the Benchmarks Game's binary-trees, depth 14 (16 in the full suite)"

    def go(self, plan, ctx):
        return drivers.binary_trees(plan, 14 if ctx.suite == "quick" else 16)


class GCBench(Program):
    name = "gcbench"
    description = ("Boehm's GCBench (needs a heap of 64 MiB or more), and the same program on "
                   "this machine's JVM with ParallelGC and a pre-touched heap of the same size: "
                   "one JVM round per sample, from a JVM warmed by 3 rounds (steady) or from a "
                   "fresh JVM (cold, JIT compilation included)")
    suites = ("full",)
    #: JVM rounds run before the steady variant's first sample (JIT compilation).
    jvm_warmup = 3

    def variants(self, ctx):
        yield from super().variants(ctx)
        for detail in ("steady", "cold"):
            yield Variant(strategy="jvm-parallelgc", detail=detail), jvm.unavailable()

    def go(self, plan, ctx):
        return drivers.gcbench(plan)

    def setup(self, ctx, variant):
        if variant.strategy != "jvm-parallelgc":
            return super().setup(ctx, variant)

        def one_round(session: jvm.JvmProgram) -> Sample:
            result = session.round()
            if not result.completed:
                raise HeapAliasError(f"GCBench ran out of a {format_size(ctx.size)} JVM heap")
            return Sample(result.total_ns / 1e9)

        if variant.detail == "cold":
            def cold() -> Sample:
                with jvm.JvmProgram("gcbench", 0, ctx.size) as fresh:
                    return one_round(fresh)
            return Trial(cold)
        session = jvm.JvmProgram("gcbench", 0, ctx.size)
        for _ in range(self.jvm_warmup):
            one_round(session)
        return Trial(lambda: one_round(session), cleanup=session.close)


class Concurrent(Case):
    """A C mutator thread with each design collecting beside it (heapalias.concurrent)."""

    name = "concurrent"
    description = ("a C mutator's time per operation over a random graph with each design "
                   "collecting beside it (10 cycles), against the same program with no barrier "
                   "and no collection on a plain heap (`heapalias concurrent` has pauses and MMU)")
    unit = "ns/op"
    backings = quick_backings = ("memfd",)
    DESIGNS = ("none", "stw", "colored", "masked", "minor", "copy", "move")

    def objects(self, ctx: Context) -> int:
        """Objects in the graph: about a fifth of the heap's bytes at ~56 bytes each."""
        return max(ctx.size // 5 // 56, 1000)

    def operations(self, ctx: Context) -> int:
        return 300_000 if ctx.suite == "quick" else 3_000_000

    def variants(self, ctx):
        for variant, why in ctx.heaps(self.backings):
            if variant.pages in ("4k", "2m"):
                for design in self.DESIGNS:
                    if variant.pages not in TRAP_FEATURES.get(design, {variant.pages: None}):
                        continue
                    backing = TRAP_BACKING.get(design, variant.backing)
                    yield (replace(variant, backing=backing, detail=design),
                           why or self.unavailable(design, variant.pages))

    @staticmethod
    def unavailable(design: str, pages: str) -> str:
        """Why ``design`` cannot run on ``pages`` here (a page-trap design without its
        userfaultfd feature), or ""."""
        from ..errors import FeatureUnavailable
        from ..uffd import require

        if design not in TRAP_FEATURES:
            return ""
        try:
            require(TRAP_FEATURES[design][pages], f"design {design!r}")
        except FeatureUnavailable as exc:
            return f"{exc.message} ({exc.remedy})"
        return ""

    def reference(self, variant, variants):
        return next((v for v in variants
                     if v.pages == variant.pages and v.detail == "none"), None)

    def setup(self, ctx, variant):
        from .. import concurrent

        heap = _heap(ctx.size, variant)
        design = variant.detail
        plan = concurrent.plan_for(heap, design)
        mix = concurrent.MutatorMix(operations=self.operations(ctx))
        objects = self.objects(ctx)

        def run() -> Sample:
            roots = concurrent.live_graph(plan, objects)
            result = concurrent.run(plan, roots, design, mix=mix,
                                    collections=0 if design == "none" else 10)
            return Sample(result.mutator_ns / 1e9, 0, result.operations)

        return Trial(run, [heap])


def thread_counts() -> list[int]:
    """1, 2, 4 ... up to one thread per core, and that count: the scaling the bench reports."""
    most = collectors.default_threads()
    return sorted({1 << k for k in range(most.bit_length()) if 1 << k < most} | {most})


def threads_label(threads: int) -> str:
    return f"{threads} thread{'s' if threads > 1 else ''}"


class Parallel(GraphCase):
    """Mark and Cheney on 1 to N threads over one big graph per loop and page size."""

    name = "parallel"
    description = ("mark the random graph, and evacuate one a quarter of the heap back and "
                   "forth (Cheney), on 1, 2, 4 ... threads up to one per core; x ref is the "
                   "speed-up over one thread, and the limits line has the cap memory sets on it "
                   "(every core reading at once, against one)")
    unit = "ns/obj"
    limit = "mlp"
    beside = ("latency",)
    backings = quick_backings = ("memfd",)
    loops = ("mark", "cheney")

    def __init__(self) -> None:
        self._graphs: dict[tuple[str, str], tuple[Heap, Callable[[int], Sample]]] = {}

    def variants(self, ctx):
        for variant, reason in ctx.heaps(self.backings):
            if variant.pages not in ("4k", "2m"):
                continue
            for loop in self.loops:
                for threads in thread_counts():
                    yield replace(variant, strategy=loop, detail=threads_label(threads)), reason

    def reference(self, variant, variants):
        return next((v for v in variants if v.pages == variant.pages
                     and v.strategy == variant.strategy and v.detail == threads_label(1)), None)

    def limit_for(self, variant):
        """The memory-parallelism limit is one core's: it bounds one thread only."""
        return self.limit if variant.detail == threads_label(1) else None

    def beside_for(self, variant):
        return self.beside if variant.detail == threads_label(1) else (*self.beside, "mlp")

    def footprint(self, ctx, variant):
        """The variants of one loop and page size share a heap: the one-thread one holds it."""
        return (graph_size(ctx.size, ctx.suite) if variant.detail == threads_label(1) else 0), 0

    def _graph(self, ctx: Context, variant: Variant) -> tuple[Heap, Callable[[int], Sample]]:
        """The heap of this loop and page size, built once and shared by its thread counts,
        and a sample on n threads: mark's graph as the mark case has it (half the heap), or
        Cheney's a quarter of the heap (half of from-space), evacuated back and forth."""
        key = (variant.pages, variant.strategy)
        if key not in self._graphs or self._graphs[key][0].closed:
            if variant.strategy == "mark":
                heap, objects, roots = _graph_heap(ctx, variant)
                stack = heap.size // GRAPH_BYTES_PER_OBJECT

                def sample(threads: int) -> Sample:
                    collectors.clear_marks(objects)  # untimed
                    return _sample(collectors.mark(objects, roots, stack_capacity=stack,
                                                   threads=threads))
            else:
                heap = _heap(graph_size(ctx.size, ctx.suite), variant)
                semi = collectors.SemiSpace.over(heap)
                n = heap.size // GRAPH_BYTES_PER_OBJECT // 2
                roots = workloads.random_graph(semi.objects, n, 2, (0, 6), seed=11, nroots=64,
                                               space=semi.from_space.name).roots.copy()

                def sample(threads: int) -> Sample:
                    return _sample(semi.collect(roots, threads=threads))
            self._graphs[key] = (heap, sample)
        return self._graphs[key]

    def setup(self, ctx, variant):
        heap, sample = self._graph(ctx, variant)
        threads = int(variant.detail.split()[0])
        return Trial(lambda: sample(threads), [heap],
                     cleanup=_forget(self._graphs, (variant.pages, variant.strategy)))


def dump_cache() -> Path:
    """Where captured heap dumps are kept between runs: the user's cache, never a checkout."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "heapalias"


class RealHeap(Case):
    """A real JVM heap imported from an HPROF dump, and the JVM's own collector on it."""

    name = "real_heap"
    description = ("a real JVM heap (javac's, captured with the JDK, or `--hprof FILE`): mark, "
                   "walk, verify and Cheney evacuation of the imported graph, each a whole pass "
                   "(after the warm-up's first evacuation), beside the JVM's forced full-GC "
                   "pauses on the same live heap with SerialGC and ParallelGC")
    unit = "ms"
    suites = ("full",)  # and any suite given a dump (runner.plan)
    wants_dump = True
    backings = quick_backings = ("memfd",)
    loops = ("mark", "walk", "verify", "cheney")
    collectors = ("serial", "parallel")

    def __init__(self) -> None:
        self._dumps: dict[str, hprof.HeapDump] = {}
        self._imports: dict[tuple[str, str], tuple[Heap, collectors.SemiSpace, np.ndarray]] = {}
        self._pauses: dict[str, list[float]] = {}

    def _path(self, ctx: Context) -> Path:
        """The dump this run uses: the one given, or javac's, captured once into the cache."""
        if ctx.hprof:
            return Path(ctx.hprof)
        path = dump_cache() / f"javac-{capture.BENCH_CLASSES}.hprof"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            capture.capture(path, classes=capture.BENCH_CLASSES, full_gcs=1)
        return path

    def dump(self, ctx: Context) -> hprof.HeapDump:
        """The dump, read once per process."""
        path = str(self._path(ctx))
        if path not in self._dumps:
            self._dumps[path] = hprof.read(path)
        return self._dumps[path]

    def variants(self, ctx):
        why = "" if ctx.hprof else capture.unavailable()
        if why:
            yield Variant(detail="capture"), why
            return
        for pages in PAGE_SIZES:
            combo = ctx.probe.get("memfd", pages, "memfd")
            reason = "" if combo.obtained else ctx.why_not(combo)
            for loop in self.loops:
                yield Variant("memfd", pages, detail=loop), reason
        for collector in self.collectors:
            if ctx.jvm_pauses is not None and collector in ctx.jvm_pauses:
                reason = ""
            elif ctx.hprof:
                reason = ("the dump was given, not captured in this run: the JVM's pauses on "
                          "its heap are unknown (`heapalias heapdump --capture` measures them)")
            else:
                reason = capture.unavailable()
            yield Variant(strategy=f"jvm-{collector}"), reason

    def reference(self, variant, variants):
        return next((v for v in variants if v.strategy == "jvm-serial"), variants[0])

    def footprint(self, ctx, variant):
        if variant.strategy != "-":
            return 0, 0
        return self.dump(ctx).semispace_bytes(PAGE_SIZES[variant.pages]), 0

    def _jvm(self, ctx: Context, collector: str) -> list[float]:
        """The JVM's forced full-GC pauses on the heap: given, or measured now."""
        if ctx.jvm_pauses and collector in ctx.jvm_pauses:
            return ctx.jvm_pauses[collector]
        if collector not in self._pauses:
            run = capture.capture(None, classes=capture.BENCH_CLASSES, collector=collector,
                                  full_gcs=capture.FULL_GCS)
            self._pauses[collector] = capture.steady(run.full_gc_ms)
        return self._pauses[collector]

    def _imported(self, ctx: Context, variant: Variant):
        """The dump imported into a semispace heap of the variant's pages, shared by the
        loops of one page size (each sample leaves the graph whole)."""
        key = (str(self._path(ctx)), variant.pages)
        if key not in self._imports or self._imports[key][0].closed:
            run = import_heap(key[0], pages=variant.pages, dump=self.dump(ctx))
            self._imports[key] = (run.heap, run.semi, run.imported.roots.copy())
        return self._imports[key]

    def setup(self, ctx, variant):
        if variant.strategy.startswith("jvm-"):
            rounds = itertools.cycle(self._jvm(ctx, variant.strategy[len("jvm-"):]))
            return Trial(lambda: Sample(next(rounds) / 1e3))
        heap, semi, roots = self._imported(ctx, variant)
        objects = semi.objects

        stack = self.dump(ctx).heap_objects

        def mark() -> collectors.LoopStats:
            collectors.clear_marks(objects, semi.from_space.name)  # untimed
            return collectors.mark(objects, roots, stack_capacity=stack, threads=1)

        loop = {  # on one thread, as the JVM's SerialGC
            "mark": mark,
            "walk": lambda: collectors.walk(objects, semi.from_space.name),
            "verify": lambda: collectors.verify(objects, roots),
            "cheney": lambda: semi.collect(roots, threads=1),
        }[variant.detail]

        def run() -> Sample:  # one whole pass over the heap, as a full GC is
            stats = loop()
            return Sample(stats.seconds, stats.bytes, 1)

        return Trial(run, [heap],
                     cleanup=_forget(self._imports, (str(self._path(ctx)), variant.pages)))


class GCSweep(Case):
    """Each collector at multiples of its own minimum heap, the JVM's among them: the
    comparison of GC papers, on its total time (``heapalias gcsweep`` splits each sample into
    mutator and GC time, adds the cold round and the no-collection bound, and sweeps more
    multiples)."""

    name = "gc_sweep"
    description = ("GCBench and binary-trees 18 at 2x and 4x each collector's minimum heap: "
                   "the heapalias plans and the JVM's Serial and Parallel collectors; a sample "
                   "is the steady round of a fresh process that ran 2 warm-up rounds first "
                   "(use --pin to pin the processes to one CPU)")
    unit = "ms"
    suites = ("full",)
    programs = ("gcbench", "binary-trees:18")
    multiples = (2.0, 4.0)
    warmup = 2
    jvm_collectors = ("jvm-serial", "jvm-parallel")

    def __init__(self) -> None:
        self._minimum: dict[tuple[str, str], int] = {}

    def variants(self, ctx):
        for program in self.programs:
            for name in (*collectors.registered(), *self.jvm_collectors):
                for multiple in self.multiples:
                    yield (Variant(strategy=name, detail=f"{program} {multiple:g}x"),
                           jvm.unavailable() if name in self.jvm_collectors else "")

    def footprint(self, ctx, variant):
        return 0, 0  # the heaps live in child processes, on 4 KiB pages

    def reference(self, variant, variants):
        """The JVM's Serial collector at the same program and multiple."""
        return next((v for v in variants if v.strategy == "jvm-serial"
                     and v.detail == variant.detail), None)

    def setup(self, ctx, variant):
        text, multiple = variant.detail.rsplit(" ", 1)
        program = sweep.Program.parse(text)
        collector = sweep.collector_named(variant.strategy)
        key = (program.label, collector.name)
        if key not in self._minimum:  # once per run, shared by the multiples
            self._minimum[key] = sweep.minimum_heap(collector, program, None)[0]
        heap = sweep.heap_at(float(multiple[:-1]), self._minimum[key])

        def run() -> Sample:
            runs = collector.rounds(program, heap, self.warmup + 1, None)
            if runs is None:
                raise HeapAliasError(f"{collector.name} did not complete {program.label} in "
                                     f"{format_size(heap)}, {multiple} its minimum heap")
            return Sample(runs[-1].total_ns / 1e9)

        return Trial(run)


#: Every case, in the order they run and are reported.
CASES: list[Case] = [
    AliasCreation(), Populate(), AliasedReadWrite(), Scan(), Mark(), Encodings(),
    EvacuateLarge(), EvacuateSmall(), EvacuateGraph(), Relocation(), BinaryTrees(), GCBench(),
    GCSweep(), Concurrent(), RealHeap(), Parallel(),
]


def case_named(name: str) -> Case:
    for case in CASES:
        if case.name == name:
            return case
    raise KeyError(name)
