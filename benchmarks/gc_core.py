"""GC-core performance, each figure a ratio to a limit measured in this same run.

    python benchmarks/gc_core.py [--repeat 5] [--mark-size 1G] [--skip mark,remap]

Cases: large- and small-object Cheney evacuation against memcpy, linear scan
against sequential read bandwidth, mark over a random graph on 2m vs 4k pages,
remap vs copy relocation over sizes, and GCBench on a pre-faulted heap.
Every figure is the median of ``--repeat`` runs; the limits are best-of.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
import warnings
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

import heapalias as ha
from heapalias import collectors, drivers, limits, workloads
from heapalias.relocation import RelocationArea, copy
from heapalias.system import hugepage_pool

console = Console()


def median(values) -> float:
    return statistics.median(values)


def semispace_heap(size: int, pages: str = "4k") -> tuple[ha.Heap, ha.ObjectHeap]:
    heap = ha.Heap(size, pages=pages)
    return heap, ha.ObjectHeap(heap, spaces=collectors.semispace_layout(size))


def reset(objects: ha.ObjectHeap) -> None:
    for space in objects.spaces.values():
        space.reset()


def evacuation(repeat: int, size: int, object_bytes: int, count: int,
               steady: bool = False) -> tuple[float, float, float]:
    """(GB/s, objects/s, memcpy GB/s) evacuating `count` objects of `object_bytes`.

    ``steady``: time the second collection, when the survivors already lie in
    the breadth-first order the first one copied them into.
    """
    heap, objects = semispace_heap(size)
    with heap:
        gbs, rates, copies = [], [], []
        for _ in range(repeat):
            reset(objects)
            if object_bytes >= 4096:
                work = workloads.large_objects(objects, count, object_bytes, space="from")
            else:  # a binary tree of depth `count`: nodes of 2 refs + 2 payload words
                work = workloads.binary_tree(objects, count, payload_words=2, space="from")
            semi, roots = ha.SemiSpace(objects), work.roots.copy()
            if steady:
                semi.collect(roots)
            stats = semi.collect(roots)
            gbs.append(stats.gb_per_s)
            rates.append(stats.objects / stats.seconds)
            # The limit: one memcpy of the same bytes, from-space to to-space.
            words = stats.bytes // 8
            # After the flip, to_space is where the objects were copied from.
            src_start, dst_start = (semi.to_space.start >> 3, semi.from_space.start >> 3)
            src = objects.words[src_start : src_start + words].view(np.uint8)
            dst = objects.words[dst_start : dst_start + words].view(np.uint8)
            copies.append(limits.memcpy_gb_per_s(dst, src, 1))
            del src, dst
        return median(gbs), median(rates), max(copies)


def case_evacuation(repeat: int) -> None:
    table = Table(title="Cheney evacuation vs memcpy, same run")
    for col in ("objects", "GB/s", "memcpy GB/s", "x memcpy", "M objects/s", "ns/object"):
        table.add_column(col, justify="right")
    for label, size, object_bytes, count, steady in [
        ("1 MiB x 192", 512 << 20, 1 << 20, 192, False),
        ("4 MiB x 48", 512 << 20, 4 << 20, 48, False),
        ("40 B x 4M tree, allocation order", 512 << 20, 40, 21, False),
        ("40 B x 4M tree, after one copy", 512 << 20, 40, 21, True),
    ]:
        gbs, rate, memcpy = evacuation(repeat, size, object_bytes, count, steady)
        table.add_row(label, f"{gbs:.2f}", f"{memcpy:.2f}", f"{gbs / memcpy:.2f}",
                      f"{rate / 1e6:.1f}", f"{1e9 / rate:.2f}")
    console.print(table)


def case_scan(repeat: int) -> None:
    heap, objects = semispace_heap(512 << 20)
    with heap:
        workloads.random_graph(objects, 3_000_000, 2, payload_words=(0, 6), seed=1, space="from")
        src = objects.words[1 : objects.space("from").top >> 3]
        walks = [collectors.walk(objects, "from").gb_per_s for _ in range(repeat)]
        read = limits.read_gb_per_s(src, repeat)
        del src
    table = Table(title="Linear scan vs sequential read, same run")
    for col in ("heap", "walk GB/s", "read GB/s", "x read"):
        table.add_column(col, justify="right")
    table.add_row("random graph, 3M objects", f"{median(walks):.2f}", f"{read:.2f}",
                  f"{median(walks) / read:.2f}")
    console.print(table)


def mark_time(size: int, pages: str, repeat: int) -> tuple[float, int]:
    with ha.Heap(size, pages=pages) as heap:
        objects = heap.objects
        n = size // 64
        work = workloads.random_graph(objects, n, 2, payload_words=(0, 4), seed=5, nroots=64)
        times = []
        for _ in range(repeat):
            collectors.clear_marks(objects)
            stats = collectors.mark(objects, work.roots, stack_capacity=1 << 20)
            times.append(stats.seconds)
        return median(times), stats.objects


def case_mark(repeat: int, size: int) -> None:
    need = size // (2 << 20)
    if hugepage_pool(2 << 20).available < need:
        console.print(f"mark: skipped, the 2 MiB pool needs {need} free pages "
                      f"(`heapalias hugepages --reserve {need}`)")
        return
    t4k, marked = mark_time(size, "4k", repeat)
    t2m, _ = mark_time(size, "2m", repeat)
    title = f"Mark over a {ha.format_size(size)} random graph ({marked:,} live objects)"
    table = Table(title=title)
    for col in ("pages", "median s", "ns/object", "4k / this"):
        table.add_column(col, justify="right")
    table.add_row("4k", f"{t4k:.3f}", f"{t4k / marked * 1e9:.1f}", "1.00")
    table.add_row("2m", f"{t2m:.3f}", f"{t2m / marked * 1e9:.1f}", f"{t4k / t2m:.2f}")
    console.print(table)


def case_relocation(repeat: int) -> None:
    sizes = [4 << 10 << k for k in range(15)]  # 4 KiB .. 64 MiB
    table = Table(title="Relocation: remap vs memcpy (us, median)")
    for col in ("size", "pages", "copy", "remap", "remap+populate", "copy / remap+pop"):
        table.add_column(col, justify="right")
    crossover: dict[tuple[str, str], int] = {}
    for pages in ("4k", "2m"):
        if pages == "2m" and hugepage_pool(2 << 20).available < 160:
            console.print("relocation 2m: skipped, needs 160 free 2 MiB pages")
            continue
        page = 2 << 20 if pages == "2m" else 4096
        with ha.Heap(128 << 20, pages=pages) as heap:
            for size in sizes:
                if size % page:
                    continue
                c, r, rp = [], [], []
                for _ in range(repeat):
                    c.append(copy(heap.view, 0, size, heap.view, 64 << 20).seconds)
                    for populate, out in ((False, r), (True, rp)):
                        source = heap.alias()
                        area = RelocationArea(heap, 64 << 20)
                        moved, stats = area.remap(source, 0, size, populate=populate)
                        out.append(stats.seconds)
                        moved.close()
                        source.close()
                        area.close()
                ratio = median(c) / median(rp)
                for kind, cost in (("remap", median(r)), ("remap+populate", median(rp))):
                    if cost < median(c):
                        crossover.setdefault((pages, kind), size)
                table.add_row(ha.format_size(size), pages, f"{median(c) * 1e6:.1f}",
                              f"{median(r) * 1e6:.1f}", f"{median(rp) * 1e6:.1f}", f"{ratio:.2f}")
    console.print(table)
    for (pages, kind), size in crossover.items():
        console.print(f"{pages} pages: {kind} beats memcpy from {ha.format_size(size)} up")


JVM_FLAGS = ["-XX:+UseParallelGC", "-XX:+AlwaysPreTouch", "-Xms256m", "-Xmx256m"]


def jvm_gcbench_ms(repeat: int) -> float | None:
    """Best in-program time of benchmarks/jvm/GCBench.java on this JVM, or None without one."""
    java, javac = shutil.which("java"), shutil.which("javac")
    if not (java and javac):
        return None
    source = Path(__file__).with_name("jvm") / "GCBench.java"
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([javac, "-d", out, str(source)], check=True)
        # Rounds after the first are JIT-compiled, as a long-running JVM would be.
        proc = subprocess.run([java, *JVM_FLAGS, "-cp", out, "GCBench", str(repeat + 3)],
                              check=True, capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    expected = " ".join(map(str, drivers.expected_gcbench_checks()))
    assert all(line.endswith("checks=" + expected) for line in lines), proc.stdout
    return min(float(re.search(r"total_ms=([\d.]+)", line).group(1)) for line in lines[3:])


def case_gcbench(repeat: int) -> None:
    jvm_ms = jvm_gcbench_ms(repeat)
    title = "GCBench, pre-faulted 256 MiB semispace heap (ms, best of runs)"
    if jvm_ms is not None:
        title += f"; JVM ParallelGC, pre-touched, same run: {jvm_ms:.1f} ms"
    table = Table(title=title)
    for col in ("pages", "total", "mutator", "GC", "collections", "max pause", "x JVM"):
        table.add_column(col, justify="right")
    for pages in ("4k", "2m"):
        if pages == "2m" and hugepage_pool(2 << 20).available < 128:
            console.print("gcbench 2m: skipped, needs 128 free 2 MiB pages")
            continue
        heap, objects = semispace_heap(256 << 20, pages)  # Java's -Xmx256m
        with heap:
            best = min((drivers.gcbench(objects) for _ in range(repeat)), key=lambda r: r.total_ns)
        assert best.checks == drivers.expected_gcbench_checks()
        versus = f"{best.total_ns / 1e6 / jvm_ms:.2f}" if jvm_ms else "no JVM"
        table.add_row(pages, f"{best.total_ns / 1e6:.1f}", f"{best.mutator_ns / 1e6:.1f}",
                      f"{best.gc_ns / 1e6:.1f}", str(best.collections),
                      f"{best.pause_summary()['max_ms']:.2f}", versus)
    console.print(table)


@click.command()
@click.option("--repeat", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--mark-size", default="1G", show_default=True)
@click.option("--skip", default="", help="Comma-separated cases to skip: "
              "evacuation,scan,mark,relocation,gcbench")
def main(repeat: int, mark_size: str, skip: str) -> None:
    """Run the GC-core benchmarks."""
    warnings.simplefilter("ignore", ha.HeapAliasWarning)
    info = ha.system_info()
    console.print(f"[bold]{info.kernel}[/bold], {info.cpu} x{info.cpus}")
    skipped = set(filter(None, skip.split(",")))
    cases = {
        "evacuation": lambda: case_evacuation(repeat),
        "scan": lambda: case_scan(repeat),
        "mark": lambda: case_mark(repeat, ha.parse_size(mark_size)),
        "relocation": lambda: case_relocation(repeat),
        "gcbench": lambda: case_gcbench(repeat),
    }
    for name, run in cases.items():
        if name not in skipped:
            run()


if __name__ == "__main__":
    main()
