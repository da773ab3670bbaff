"""The benchmark cases, each defined once for the CLI and for pytest-benchmark.

A case lists its variants (backing x pages x strategy, or an encoding, or a
size), builds a :class:`Trial` for one variant, and each ``Trial.run()`` is one
timed sample. Variants the probe found broken are skipped with its reason.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .. import collectors, drivers, workloads
from ..errors import HeapAliasWarning
from ..heap import Heap
from ..native import ffi, lib
from ..objects import ObjectHeap
from ..probe import ProbeResult
from ..relocation import RelocationArea
from ..relocation import copy as copy_range
from ..system import PAGE_SIZES
from . import jvm


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


@dataclass(frozen=True)
class Context:
    """What every case may use: the heap size, the suite, and the probe's findings."""

    size: int
    suite: str
    probe: ProbeResult

    def heaps(self, backings: tuple[str, ...] = ("memfd", "anon", "private")) -> Iterator[
            tuple[Variant | None, str, str]]:
        """Each (backing, pages) the probe could create a heap for; a reason when it could not."""
        for backing in backings:
            for pages in PAGE_SIZES:
                combo = self.probe.get(backing, pages, "memfd" if backing == "memfd" else "mremap")
                if self.size % PAGE_SIZES[pages]:
                    yield None, f"{backing}/{pages}", _misfit(pages)
                elif not combo.obtained:
                    yield None, f"{backing}/{pages}", combo.error
                else:
                    yield Variant(backing, pages), "", ""

    def aliases(self) -> Iterator[tuple[Variant | None, str, str]]:
        """Each working backing/pages/strategy combination, or why it was skipped."""
        for combo in self.probe.combinations:
            label = f"{combo.backing}/{combo.pages}/{combo.strategy}"
            if not combo.applicable:
                continue
            if not combo.ok:
                yield None, label, combo.error
            elif self.size % PAGE_SIZES[combo.pages]:
                yield None, label, _misfit(combo.pages)
            else:
                yield Variant(combo.backing, combo.pages, combo.strategy), "", ""


class Case:
    """A benchmark: its variants, how to set one up, and what its metric means."""

    name = ""
    description = ""
    unit = "GB/s"  # or "us/op", "ns/obj", "ms"
    limit: str | None = None  # "memcpy", "read", "latency", "fault"
    suites = ("quick", "full")
    #: Backings the case runs on, in the full suite and in the quick one.
    backings: tuple[str, ...] = ("memfd", "anon", "private")
    quick_backings: tuple[str, ...] = ("memfd",)

    @property
    def higher_is_better(self) -> bool:
        return self.unit == "GB/s"

    def metric(self, sample: Sample) -> float:
        """The sample in this case's unit."""
        if self.unit == "GB/s":
            return sample.bytes / sample.seconds / 1e9
        scale = {"us/op": 1e6, "ns/obj": 1e9, "ms": 1e3}[self.unit]
        return sample.seconds / sample.ops * scale

    def variants(self, ctx: Context) -> Iterator[tuple[Variant | None, str, str]]:
        yield from ctx.heaps(self.quick_backings if ctx.suite == "quick" else self.backings)

    def reference(self, variant: Variant, variants: list[Variant]) -> Variant | None:
        """The variant this one is compared with (by default the first); None if not among
        ``variants`` (filtered out), and the runner then uses the first."""
        return variants[0]

    def setup(self, ctx: Context, variant: Variant) -> Trial:
        raise NotImplementedError


def _each_detail(variants: Iterator[tuple[Variant | None, str, str]],
                 details: tuple[str, ...]) -> Iterator[tuple[Variant | None, str, str]]:
    """Each variant once per detail (skips pass through unchanged)."""
    for variant, label, reason in variants:
        if variant is None:
            yield variant, label, reason
        else:
            for detail in details:
                yield Variant(variant.backing, variant.pages, variant.strategy, detail), "", ""


def _heap(size: int, variant: Variant, populate: bool = True) -> Heap:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeapAliasWarning)
        return Heap(size, backing=variant.backing, pages=variant.pages, name="bench",
                    populate=populate)


def _sample(stats: collectors.LoopStats) -> Sample:
    """A loop's own timing and counts as one sample."""
    return Sample(stats.seconds, stats.bytes, max(stats.objects, 1))


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

    def setup(self, ctx, variant):
        page = PAGE_SIZES[variant.pages]
        heap = _heap(max(min(ctx.size, 64 << 20) // page * page, page), variant)
        heap.populate = False  # time the mapping, not faulting in page tables
        return Trial(lambda: Sample(_timed(lambda: heap.alias(variant.strategy).close())), [heap])


class Populate(Case):
    name = "populate"
    description = ("get a heap's memory: `populate` commits and faults it in when the heap is "
                   "created; `touch` maps it lazily and first-touches one byte per page")
    limit = "fault"
    quick_backings = ("memfd", "private")

    def variants(self, ctx):
        return _each_detail(super().variants(ctx), ("populate", "touch"))

    def reference(self, variant, variants):
        return next((v for v in variants if v.detail == variant.detail), None)

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
    limit = "read"

    def variants(self, ctx):
        yield Variant("memfd", "4k", "single"), "", ""
        yield from ctx.aliases()

    def setup(self, ctx, variant):
        heap = _heap(ctx.size, variant)
        writer = heap.view.array(np.uint64)
        reader = heap.view if variant.strategy == "single" else heap.alias(variant.strategy)
        total = ffi.new("uint64_t *")

        def run() -> Sample:
            seconds = _timed(lambda: writer.fill(1))
            seconds += lib.ha_read_ns(reader.address, reader.size, 1, total) / 1e9
            return Sample(seconds, 2 * heap.size)

        def cleanup() -> None:
            nonlocal writer
            del writer

        return Trial(run, [heap], cleanup)


#: Heap bytes per graph object: objects average 48 bytes, so the graph fills half the heap.
GRAPH_BYTES_PER_OBJECT = 96


def _graph_heap(ctx: Context, variant: Variant, encoding: str = "offset",
                colors: int = 0) -> tuple[Heap, ObjectHeap, np.ndarray]:
    """A heap half full of a random graph; the quick suite caps it at 64 MiB."""
    size = ctx.size if ctx.suite == "full" else min(ctx.size, 64 << 20)
    heap = _heap(size, variant)
    layout = heap.multimap(colors, shift=max(heap.size - 1, 1).bit_length()) if colors else None
    objects = ObjectHeap(heap, encoding=encoding, colors=layout)
    n = heap.size // GRAPH_BYTES_PER_OBJECT
    work = workloads.random_graph(objects, n, 2, (0, 6), seed=11, nroots=64)
    return heap, objects, work.roots


class Scan(Case):
    name = "scan"
    description = "linear heap walk: parse every header, bottom to top"
    limit = "read"

    def setup(self, ctx, variant):
        heap, objects, _ = _graph_heap(ctx, variant)

        def run() -> Sample:
            return _sample(collectors.walk(objects))

        return Trial(run, [heap])


def _marking(heap: Heap, objects: ObjectHeap, roots: np.ndarray) -> Trial:
    """Each sample: clear the marks (untimed), then mark from the roots (the C loop's time).
    The stack can hold every object, so the figure is the trace itself, not overflow rescans."""
    stack = heap.size // GRAPH_BYTES_PER_OBJECT

    def run() -> Sample:
        collectors.clear_marks(objects)
        return _sample(collectors.mark(objects, roots, stack_capacity=stack))

    return Trial(run, [heap])


class Mark(Case):
    name = "mark"
    description = "trace a random graph from 64 roots (marks cleared between samples)"
    unit = "ns/obj"
    limit = "latency"

    def setup(self, ctx, variant):
        heap, objects, roots = _graph_heap(ctx, variant)

        return _marking(heap, objects, roots)


class Encodings(Case):
    name = "encodings"
    description = "mark the same graph with offset, address, colored and masked references"
    unit = "ns/obj"
    limit = "latency"

    def variants(self, ctx):
        for variant, label, reason in ctx.heaps(("memfd",)):
            if variant is None:
                yield variant, label, reason
            elif ctx.suite == "full" or variant.pages != "thp":
                for encoding in ("offset", "address", "colored", "masked"):
                    yield Variant(variant.backing, variant.pages, detail=encoding), "", ""

    def reference(self, variant, variants):
        return next((v for v in variants
                     if v.pages == variant.pages and v.detail == "offset"), None)

    def setup(self, ctx, variant):
        colored = variant.detail in ("colored", "masked")
        heap, objects, roots = _graph_heap(ctx, variant, variant.detail, 3 if colored else 0)

        return _marking(heap, objects, roots)


class Evacuation(Case):
    """Cheney evacuation between the halves of one heap."""

    limit = "memcpy"

    def build(self, objects: ObjectHeap) -> np.ndarray:
        raise NotImplementedError

    backings = quick_backings = ("memfd",)

    def setup(self, ctx, variant):
        heap = _heap(ctx.size, variant)
        objects = ObjectHeap(heap, spaces=collectors.semispace_layout(heap.size))
        semi = collectors.SemiSpace(objects)
        roots = self.build(objects)
        semi.collect(roots)  # survivors now lie in breadth-first order, as in steady state

        def run() -> Sample:
            return _sample(semi.collect(roots))

        return Trial(run, [heap])


class EvacuateLarge(Evacuation):
    name = "cheney_large"
    description = "evacuate 1 MiB objects (a chain filling 3/8 of the heap)"

    def build(self, objects):
        count = max(objects.size * 3 // 8 // (1 << 20), 1)
        return workloads.large_objects(objects, count, 1 << 20, space="from").roots.copy()


class EvacuateSmall(Evacuation):
    name = "cheney_small"
    description = ("evacuate 40-byte tree nodes (2 refs, 2 payload words): freshly allocated "
                   "(depth-first order), or again after a copy (breadth-first, steady state)")
    unit = "ns/obj"
    limit = None

    def variants(self, ctx):
        return _each_detail(super().variants(ctx), ("steady", "fresh"))

    def reference(self, variant, variants):
        return next((v for v in variants
                     if v.pages == variant.pages and v.detail == "steady"), None)

    def build(self, objects):
        depth = max((objects.size * 3 // 8 // 40).bit_length() - 2, 1)
        return workloads.binary_tree(objects, depth, payload_words=2, space="from").roots.copy()

    def setup(self, ctx, variant):
        if variant.detail == "steady":
            return super().setup(ctx, variant)
        heap = _heap(ctx.size, variant)
        objects = ObjectHeap(heap, spaces=collectors.semispace_layout(heap.size))

        def run() -> Sample:  # a new tree each time: the copy reads it in allocation order
            for space in objects.spaces.values():
                space.reset()
            return _sample(collectors.SemiSpace(objects).collect(self.build(objects)))

        return Trial(run, [heap])


class Relocation(Case):
    name = "relocation"
    description = "move a page-aligned range: memcpy, or remap its pages (then populate them)"
    unit = "us/op"

    def sizes(self, ctx: Context) -> list[int]:
        top = min(64 << 20, ctx.size // 4)
        if ctx.suite == "quick":
            return [s for s in (64 << 10, 1 << 20, 4 << 20, 16 << 20) if s <= top]
        return [4096 << k for k in range(15) if 4096 << k <= top]

    def variants(self, ctx):
        for variant, label, reason in ctx.heaps(("memfd",)):
            if variant is None:
                yield variant, label, reason
                continue
            if variant.pages == "thp":
                continue
            for size in self.sizes(ctx):
                if size % PAGE_SIZES[variant.pages] == 0:
                    for method in ("copy", "remap", "remap+populate"):
                        yield Variant("memfd", variant.pages, method, _size_label(size)), "", ""

    def reference(self, variant, variants):
        return next((v for v in variants if v.pages == variant.pages
                     and v.detail == variant.detail and v.strategy == "copy"), None)

    def setup(self, ctx, variant):
        size = _parse_label(variant.detail)
        # The range and room to copy it to; every alias is populated, as a heap in use would be.
        heap = _heap(2 * size, variant)
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
    """A whole program driven in C over a semispace heap of the run's size."""

    unit = "ms"
    backings = quick_backings = ("memfd",)

    def go(self, objects: ObjectHeap, ctx: Context) -> drivers.GCRun:
        raise NotImplementedError

    def setup(self, ctx, variant):
        heap = _heap(ctx.size, variant)
        objects = ObjectHeap(heap, spaces=collectors.semispace_layout(heap.size))

        def run() -> Sample:
            result = self.go(objects, ctx)
            return Sample(result.total_ns / 1e9, result.bytes_allocated, 1)

        return Trial(run, [heap])


class BinaryTrees(Program):
    name = "binary_trees"
    description = "the Benchmarks Game's binary-trees, depth 14 (16 in the full suite)"

    def go(self, objects, ctx):
        return drivers.binary_trees(objects, 14 if ctx.suite == "quick" else 16)


class GCBench(Program):
    name = "gcbench"
    description = ("Boehm's GCBench (needs a heap of 64 MiB or more), and the same program on "
                   "this machine's JVM with ParallelGC and a pre-touched heap of the same size")
    suites = ("full",)

    def variants(self, ctx):
        yield from super().variants(ctx)
        reason = jvm.unavailable()
        yield (None, "jvm", reason) if reason else (Variant(strategy="jvm-parallelgc"), "", "")

    def go(self, objects, ctx):
        return drivers.gcbench(objects)

    def setup(self, ctx, variant):
        if variant.strategy != "jvm-parallelgc":
            return super().setup(ctx, variant)
        rounds = itertools.cycle(jvm.gcbench_ms(ctx.size, rounds=40))  # JIT-warmed, in turn
        return Trial(lambda: Sample(next(rounds) / 1e3))


#: Every case, in the order they run and are reported.
CASES: list[Case] = [
    AliasCreation(), Populate(), AliasedReadWrite(), Scan(), Mark(), Encodings(),
    EvacuateLarge(), EvacuateSmall(), Relocation(), BinaryTrees(), GCBench(),
]


def case_named(name: str) -> Case:
    for case in CASES:
        if case.name == name:
            return case
    raise KeyError(name)
