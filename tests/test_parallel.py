"""Parallel mark and parallel Cheney against the single-thread loops and the pure-numpy
reference, on every encoding and on 4 KiB and 2 MiB pages; fillers; bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_collectors import ENCODINGS, build, encoding_heaps, graphs

import heapalias as ha
from heapalias import collectors, workloads
from heapalias.collectors.threads import default_threads, require_threads
from heapalias.native import lib
from heapalias.objects import FILLER_MAGIC, MAGIC_SHIFT

from conftest import run_isolated

HEAP = 4 << 20
SHIFT = 22  # a multiple of the 2 MiB page: each color view starts on one


@pytest.fixture(scope="module", params=["4k", "2m"])
def heaps(request):
    """One ObjectHeap per encoding on pages of the parameter's size, with from/to halves."""
    if request.param == "2m":
        request.getfixturevalue("pool_2m")
    with ha.Heap(HEAP, pages=request.param, name="parallel") as heap:
        yield encoding_heaps(heap, SHIFT)


def threads_running() -> int:
    return len(os.listdir("/proc/self/task"))


PROPERTY = settings(max_examples=30, deadline=None)


@PROPERTY
@given(graph=graphs(), encoding=st.sampled_from(ENCODINGS), threads=st.sampled_from([2, 3, 8]))
def test_parallel_cheney_preserves_the_reachable_graph(heaps, graph, encoding, threads) -> None:
    objects = heaps[encoding]
    _, roots = build(objects, graph)
    before = objects.shape(roots)
    reachable = objects.reachable(roots)
    size = sum(o.size_words * 8 for o in reachable)  # before the moved headers hide it
    semi = ha.SemiSpace(objects, threads=threads)
    stats = semi.collect(roots)
    assert (stats.objects, stats.bytes) == (len(reachable), size)
    assert objects.shape(roots) == before
    assert all(objects.space("to").contains(objects.codec.decode(int(r))) for r in roots if r)
    # To-space parses, fillers and all, in C and in Python alike.
    assert collectors.walk(objects, "to").objects == stats.objects
    assert len(list(objects.objects("to"))) == stats.objects
    collectors.verify(objects, roots, spaces=["to"])
    semi.collect(roots)  # and back again
    assert objects.shape(roots) == before
    semi.collect(roots, threads=1)  # the single-thread loop reads what the parallel one left
    assert objects.shape(roots) == before


@PROPERTY
@given(graph=graphs(), encoding=st.sampled_from(ENCODINGS), threads=st.sampled_from([2, 3, 8]),
       stack=st.sampled_from([1, 2, 64, 1 << 12]))
def test_parallel_mark_marks_what_the_reference_reaches(heaps, graph, encoding, threads,
                                                        stack) -> None:
    objects = heaps[encoding]
    _, roots = build(objects, graph)
    reachable = {o.offset for o in objects.reachable(roots)}
    # Tiny stacks make the deques overflow: the single-thread rescan finishes the job.
    stats = collectors.mark(objects, roots, stack_capacity=stack, threads=threads)
    assert stats.objects == len(reachable)
    assert {o.offset for o in objects.objects("from") if o.marked} == reachable
    assert collectors.clear_marks(objects, "from").objects == len(reachable)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 1 << 32), encoding=st.sampled_from(ENCODINGS),
       threads=st.sampled_from([2, 4]))
def test_large_graphs_agree_with_the_single_thread_loops(heaps, seed, encoding, threads) -> None:
    """Thousands of objects, enough for the threads to steal from each other, several
    collections each way, and mark with stacks that do and do not overflow."""
    objects = heaps[encoding]
    for space in objects.spaces.values():
        space.reset()
    graph = workloads.random_graph(objects, 6000, 2, (0, 6), seed=seed, space="from").roots
    tree = workloads.binary_tree(objects, 10, payload_words=2, space="from").roots
    big = workloads.large_objects(objects, 3, 2048, space="from").roots  # their own places
    roots = np.concatenate([graph, tree, big])
    before = objects.shape(roots)
    single = collectors.mark(objects, roots, threads=1)
    collectors.clear_marks(objects, "from")
    for stack in (16, 1 << 16):
        marked = collectors.mark(objects, roots, stack_capacity=stack, threads=threads)
        assert (marked.objects, marked.bytes) == (single.objects, single.bytes)
        collectors.clear_marks(objects, "from")
    semi = ha.SemiSpace(objects, threads=threads)
    for _ in range(3):
        stats = semi.collect(roots)
        assert (stats.objects, stats.bytes) == (single.objects, single.bytes)
        assert objects.shape(roots) == before
        collectors.verify(objects, roots, spaces=[semi.from_space.name])


def test_fillers_are_stepped_over_and_never_named() -> None:
    """A filler, one word or many, is no object: walks skip it, a reference to it is corrupt."""
    with ha.Heap("1M") as heap:
        objects = ha.ObjectHeap(heap, spaces={"from": (8, 1 << 19)})
        a = objects.new(1, 1)
        filler_at = objects.space("from").top
        objects.words[filler_at >> 3] = np.uint64(FILLER_MAGIC << MAGIC_SHIFT | 1)
        objects.words[(filler_at >> 3) + 1] = np.uint64(FILLER_MAGIC << MAGIC_SHIFT | 3)
        objects.space("from").top += 4 * 8
        b = objects.new(0, 2)
        a.refs[0] = b
        walked = collectors.walk(objects, "from", offsets=True)[1]
        assert list(walked) == [a.offset, b.offset]
        assert [o.offset for o in objects.objects("from")] == [a.offset, b.offset]
        collectors.verify(objects, [a.ref])
        a.refs.raw[0] = objects.codec.encode(filler_at + 8)
        with pytest.raises(ha.HeapCorruption):
            collectors.verify(objects, [a.ref])
        for threads in (1, 2):
            with pytest.raises(ha.HeapCorruption) as caught:
                collectors.mark(objects, [a.ref], threads=threads)
            assert caught.value.offset == filler_at + 8
            collectors.clear_marks(objects, "from")
        # A filler that claims more than the space holds is a bad header, not a step.
        objects.words[filler_at >> 3] = np.uint64(FILLER_MAGIC << MAGIC_SHIFT | 1 << 20)
        with pytest.raises(ha.HeapCorruption) as caught:
            collectors.walk(objects, "from")
        assert caught.value.offset == filler_at


@pytest.mark.parametrize("bad", [0, -1, lib.HA_MAX_THREADS + 1, "2", 2.0])
def test_threads_must_be_a_count(bad) -> None:
    with ha.Heap("1M") as heap:
        semi = collectors.SemiSpace.over(heap)
        roots = collectors.roots_array([])
        for call in (lambda: collectors.mark(semi.objects, roots, threads=bad),
                     lambda: semi.collect(roots, threads=bad),
                     lambda: collectors.SemiSpace(semi.objects, threads=bad)):
            with pytest.raises(ha.InvalidArgument):
                call()


def test_the_default_is_one_thread_per_core() -> None:
    assert require_threads(None) == default_threads() == len(os.sched_getaffinity(0))
    with ha.Heap("1M") as heap:
        assert collectors.SemiSpace.over(heap).threads == default_threads()


@pytest.mark.parametrize("loop", ["mark", "cheney"])
@pytest.mark.parametrize("damage", ["header", "reference"])
def test_corruption_with_two_threads_is_a_typed_error_and_joins_every_thread(loop,
                                                                            damage) -> None:
    """A corrupt header or reference deep in a big graph: one thread fails, the other stops,
    both are joined, and the error names the offset. In a child, so a hang or a crash fails
    the test instead of the run."""
    proc = run_isolated(f"""
        import os
        import numpy as np
        import heapalias as ha
        from heapalias import collectors, workloads

        def tasks():
            return len(os.listdir("/proc/self/task"))

        with ha.Heap("16M") as heap:
            semi = collectors.SemiSpace.over(heap)
            objects = semi.objects
            roots = workloads.random_graph(objects, 50000, 3, seed=5, space="from").roots.copy()
            victim = next(o for o in objects.reachable(roots)[20000:] if o.nrefs)
            if {damage!r} == "header":
                objects.words[victim.offset >> 3] = np.uint64(0xBAD)
                expected = victim.offset
            else:
                victim.refs.raw[0] = np.uint64(1 << 62)
                expected = victim.offset + 8  # mark's slot; Cheney's is in the copy
            before = tasks()
            try:
                if {loop!r} == "mark":
                    collectors.mark(objects, roots, threads=2)
                else:
                    semi.collect(roots, threads=2)
            except ha.HeapCorruption as exc:
                assert exc.offset == expected or {loop!r} == "cheney", hex(exc.offset)
            else:
                raise AssertionError("no error")
            assert tasks() == before, (tasks(), before)
        print("ok")
    """, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def test_a_full_to_space_is_a_typed_error_with_every_thread() -> None:
    """A to-space too small for from-space: the parallel loop leaves it to the single-thread
    one (the gaps its buffers leave could make it fail where that would not), which fails."""
    with ha.Heap("4M") as heap:
        objects = ha.ObjectHeap(heap, spaces={"from": (8, 3 << 20), "to": (3 << 20, 4 << 20)})
        roots = workloads.linked_list(objects, 60000, space="from").roots.copy()
        before = threads_running()
        with pytest.raises(ha.SpaceFull):
            ha.SemiSpace(objects, threads=4).collect(roots)
        assert threads_running() == before
        # What the threads copied before the error still parses.
        collectors.walk(objects, "to")


def test_gcbench_collects_on_the_threads_asked_for() -> None:
    from click.testing import CliRunner

    from heapalias import cli

    for threads in ("1", "2"):
        result = CliRunner().invoke(cli.main, ["gcbench", "--size", "64M", "--binary-trees", "8",
                                               "--repeat", "1", "--threads", threads, "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output)
        assert summary["threads"] == int(threads) and summary["checks_ok"]
    for args in (["--threads", "0"], ["--collector", "generational", "--threads", "2"]):
        result = CliRunner().invoke(cli.main, ["gcbench", "--size", "64M", *args])
        assert result.exit_code == 2, result.output


def test_many_large_objects_grow_the_deques_and_copy_through_a_read_only_view() -> None:
    """One object refers to 2000 objects too large for a buffer: each gets a place of its
    own and a deque item, more than a deque first holds; from-space is read through a
    read-only alias, as a concurrent copier would."""
    with ha.Heap("64M") as heap:
        semi = collectors.SemiSpace.over(heap)
        objects = semi.objects
        hub = objects.new(2000, 0, space="from")
        for i in range(2000):
            big = objects.new(1, 1100, space="from")
            big.payload[:] = i
            big.refs[0] = hub
            hub.refs[i] = big
        roots = collectors.roots_array([hub.ref])
        before = objects.shape(roots)
        alias = heap.alias(prot="r")
        for through in (alias, None):
            stats = semi.collect(roots, through=through, threads=4)
            assert stats.objects == 2001 and objects.shape(roots) == before
            collectors.verify(objects, roots, spaces=[semi.from_space.name])
        alias.close()


def test_the_parallel_case_gives_its_hugetlb_pages_back(pool_2m) -> None:
    """Its heaps are shared by the thread counts through a cache, which kept the 2 MiB pages
    of every closed heap until the process ended."""
    from heapalias.bench.cases import Context, Variant, case_named
    from heapalias.probe import probe
    from heapalias.system import hugepage_pool

    ctx, case = Context(size=8 << 20, suite="quick", probe=probe()), case_named("parallel")
    before = hugepage_pool(2 << 20).available
    for loop in case.loops:
        trial = case.setup(ctx, Variant("memfd", "2m", loop, "1 thread"))
        trial.run()
        trial.close()
    del trial
    assert hugepage_pool(2 << 20).available == before
