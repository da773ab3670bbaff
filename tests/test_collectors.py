"""The C GC loops against the pure-numpy reference, over random graphs and every encoding."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import heapalias as ha
from heapalias import collectors, workloads
from heapalias.objects import FORWARDED, MARKED

from conftest import run_isolated

ENCODINGS = ["offset", "address", "colored", "masked"]
HEAP = 1 << 20
HALF = HEAP // 2


def encoding_heaps(heap: ha.Heap, shift: int) -> dict[str, ha.ObjectHeap]:
    """One ObjectHeap per encoding over ``heap``, with from/to halves; the colored ones over
    three views ``1 << shift`` apart, storing color 1."""
    colors = heap.multimap(3, shift=shift)
    half = heap.size // 2
    spaces = {"from": (8, half), "to": (half, heap.size)}
    return {
        enc: ha.ObjectHeap(heap, encoding=enc, spaces=dict(spaces),
                           colors=colors if enc in ("colored", "masked") else None,
                           store_color=1 if enc in ("colored", "masked") else 0)
        for enc in ENCODINGS
    }


@pytest.fixture(scope="module")
def heaps():
    """One ObjectHeap per encoding, with from/to halves, reused across examples."""
    with ha.Heap(HEAP, name="gc") as heap:
        yield encoding_heaps(heap, 21)


@st.composite
def graphs(draw):
    """A random object graph: sizes, edges (some null) and roots (some null, some repeated).
    Most objects have up to 4 slots; a few have more, and some more than a mark batch takes
    (cext/marking.h: objects of up to 4 slots take a loop of their own, and a batch holds
    260 edges)."""
    n = draw(st.integers(1, 40))
    nrefs = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    for wide in draw(st.lists(st.integers(0, n - 1), max_size=2)):
        nrefs[wide] = draw(st.sampled_from([5, 9, 300]))
    payload = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    targets = [draw(st.lists(st.one_of(st.none(), st.integers(0, n - 1)), min_size=k, max_size=k))
               for k in nrefs]
    roots = draw(st.lists(st.one_of(st.none(), st.integers(0, n - 1)), min_size=0, max_size=5))
    return nrefs, payload, targets, roots


def build(objects: ha.ObjectHeap, graph) -> tuple[np.ndarray, np.ndarray]:
    """Lay the graph out in from-space; returns (offsets, root references)."""
    nrefs, payload, targets, roots = graph
    for space in objects.spaces.values():
        space.reset()
    edges = [(i, k, t) for i, ts in enumerate(targets) for k, t in enumerate(ts) if t is not None]
    src, slot, dst = np.array(edges, dtype=np.int64).reshape(-1, 3).T
    offsets = objects.build(np.array(nrefs), np.array(payload), edges=(src, slot, dst),
                            space="from")
    for i, offset in enumerate(offsets):  # payloads that tell objects apart
        objects.deref(int(objects.codec.encode(int(offset)))).payload[:] = i
    refs = np.array([0 if r is None else objects.codec.encode(int(offsets[r])) for r in roots],
                    dtype=np.uint64)
    return offsets, refs


PROPERTY = settings(max_examples=40, deadline=None)


@PROPERTY
@given(graph=graphs(), encoding=st.sampled_from(ENCODINGS))
def test_cheney_preserves_the_reachable_graph(heaps, graph, encoding) -> None:
    objects = heaps[encoding]
    _, roots = build(objects, graph)
    before = objects.shape(roots)
    reachable = objects.reachable(roots)
    semi = ha.SemiSpace(objects, threads=1)  # copies back to back (tests/test_parallel.py)
    stats = semi.collect(roots)
    assert stats.objects == len(reachable)
    assert stats.bytes == sum(o.size_words * 8 for o in reachable)
    assert objects.shape(roots) == before
    assert all(objects.space("to").contains(objects.codec.decode(int(r))) for r in roots if r)
    walked = collectors.walk(objects, "to")
    assert (walked.objects, walked.bytes) == (stats.objects, stats.bytes)
    collectors.verify(objects, roots, spaces=["to"])
    semi.collect(roots)  # and back again
    assert objects.shape(roots) == before


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1 << 32), encoding=st.sampled_from(ENCODINGS),
       top_down=st.booleans(), threads=st.sampled_from([1, None]))
def test_cheney_preserves_large_graphs_scattered_and_in_order(heaps, seed, encoding,
                                                              top_down, threads) -> None:
    """Thousands of objects: the first copy reads a scattered from-space (the random
    graph's edges go through the ring, the tree's through the prefetch lookahead), the
    copies after it read from-space in order (the tree without prefetching, the graph,
    whose edges lead to objects copied already, with the lookahead); on one thread and on
    one per core. Then mark, whose batches hold many edges at once."""
    objects = heaps[encoding]
    for space in objects.spaces.values():
        space.reset()
    graph = workloads.random_graph(objects, 3000, 2, seed=seed, space="from").roots
    tree = workloads.binary_tree(objects, 9, top_down=top_down, payload_words=1,
                                 space="from").roots
    roots = np.concatenate([graph, tree])
    before = objects.shape(roots)
    semi = ha.SemiSpace(objects, threads=threads)
    for _ in range(3):
        stats = semi.collect(roots)
        assert stats.objects == len(objects.reachable(roots))
        assert objects.shape(roots) == before
    for stack in (4, 1 << 12):  # mark with and without stack overflow
        assert collectors.mark(objects, roots, stack_capacity=stack).objects == stats.objects
        assert collectors.clear_marks(objects, semi.from_space.name).objects == stats.objects


@PROPERTY
@given(graph=graphs(), encoding=st.sampled_from(ENCODINGS), stack=st.sampled_from([1, 2, 64]))
def test_mark_counts_what_the_reference_reaches(heaps, graph, encoding, stack) -> None:
    objects = heaps[encoding]
    _, roots = build(objects, graph)
    reachable = objects.reachable(roots)
    stats = collectors.mark(objects, roots, stack_capacity=stack)  # tiny stacks overflow
    assert stats.objects == len(reachable)
    assert stats.bytes == sum(o.size_words * 8 for o in reachable)
    marked = {o.offset for o in objects.objects("from") if o.marked}
    assert marked == {o.offset for o in reachable}
    assert collectors.clear_marks(objects, "from").objects == len(reachable)
    assert not any(o.marked for o in objects.objects("from"))


@PROPERTY
@given(graph=graphs(), encoding=st.sampled_from(ENCODINGS))
def test_walk_visits_exactly_the_allocated_objects(heaps, graph, encoding) -> None:
    objects = heaps[encoding]
    offsets, roots = build(objects, graph)
    stats, seen = collectors.walk(objects, "from", offsets=True)
    assert np.array_equal(seen, offsets)
    assert stats.refs == sum(graph[0])  # reference slots, from the headers alone
    assert stats.bytes == objects.space("from").used
    assert collectors.verify(objects, roots).objects == len(offsets)


@PROPERTY
@given(graph=graphs())
def test_colored_and_masked_agree(heaps, graph) -> None:
    results = []
    for encoding in ("colored", "masked"):
        objects = heaps[encoding]
        _, roots = build(objects, graph)
        mark = collectors.mark(objects, roots)
        collectors.clear_marks(objects, "from")
        semi = ha.SemiSpace(objects)
        copy = semi.collect(roots)
        results.append((mark.objects, mark.bytes, copy.objects, copy.bytes,
                        [int(r) for r in roots], objects.shape(roots)))
    assert results[0] == results[1]


def test_evacuation_through_a_read_only_view(heaps) -> None:
    objects = heaps["offset"]
    for space in objects.spaces.values():
        space.reset()
    work = workloads.binary_tree(objects, 8, payload_words=1, space="from")
    before = objects.shape(work.roots)
    readonly = objects.heap.alias(prot="r")
    roots = work.roots.copy()
    stats = ha.SemiSpace(objects).collect(roots, through=readonly)
    assert stats.objects == 2**9 - 1 and objects.shape(roots) == before
    readonly.close()


def test_collect_rejects_bad_roots_and_views(heaps) -> None:
    semi = ha.SemiSpace(heaps["offset"])
    with pytest.raises(ha.InvalidArgument):
        semi.collect([1, 2])
    with ha.Heap("64K") as other, pytest.raises(ha.InvalidArgument):
        semi.collect(np.zeros(1, dtype=np.uint64), through=other.view)
    with pytest.raises(ha.InvalidArgument):
        ha.SemiSpace(heaps["offset"], "from", "from")


def test_to_space_overflow_is_a_typed_error() -> None:
    with ha.Heap("64K") as heap:
        objects = ha.ObjectHeap(heap, spaces={"from": (8, 32768), "to": (32768, 33024)})
        work = workloads.linked_list(objects, 100, space="from")
        with pytest.raises(ha.SpaceFull):
            ha.SemiSpace(objects).collect(work.roots.copy())


def test_card_table_finds_references_into_a_region(heaps) -> None:
    objects = heaps["address"]
    for space in objects.spaces.values():
        space.reset()
    old = [objects.new(nrefs=2, space="from") for _ in range(200)]
    young = [objects.new(space="to") for _ in range(10)]
    cards = ha.CardTable(objects, card_shift=6)
    expected = set()
    for i in range(0, 200, 7):
        cards.write(old[i], i % 2, young[i % 10])
        expected.add(old[i].offset + 8 + 8 * (i % 2))
    cards.write(old[1], 0, old[2])  # old -> old: dirty, but not into the region
    stats, found = cards.scan("from", "to")
    assert set(found.tolist()) == expected and stats.refs == len(expected)
    assert stats.cards == cards.dirty
    cards.clear()
    assert cards.scan("from", "to")[0].refs == 0
    with pytest.raises(ha.InvalidArgument):
        cards.write(old[0], 2, young[0])
    with pytest.raises(ha.InvalidArgument):
        ha.CardTable(objects, card_shift=2)


def test_verify_reports_the_first_bad_reference(heaps) -> None:
    objects = heaps["offset"]
    for space in objects.spaces.values():
        space.reset()
    a, b = objects.new(nrefs=1, payload_words=2), objects.new()
    a.refs[0] = b
    collectors.verify(objects, [a.ref])
    a.refs.raw[0] = b.offset + 8  # into the middle of b
    with pytest.raises(ha.HeapCorruption) as caught:
        collectors.verify(objects, [a.ref])
    assert caught.value.offset == a.offset + 8 and "not an object start" in caught.value.reason
    a.refs[0] = b
    with pytest.raises(ha.HeapCorruption) as caught:
        collectors.verify(objects, [0, b.offset + 4])
    assert caught.value.root == 1


@pytest.mark.parametrize("top_down", [False, True])
def test_workloads_are_deterministic_and_counted(top_down) -> None:
    shapes = []
    for _ in range(2):
        with ha.Heap("8M") as heap:
            objects = heap.objects
            tree = workloads.binary_tree(objects, 6, top_down=top_down, payload_words=1)
            assert tree.objects == 127 and tree.bytes == 127 * 32
            graph = workloads.random_graph(objects, 500, 3, size_distribution=(1, 5), seed=9)
            chain = workloads.linked_list(objects, 300, shuffled=True, seed=4)
            big = workloads.large_objects(objects, 3, 64 << 10)
            assert len(objects.reachable(chain.roots)) == 300
            assert len(objects.reachable(big.roots)) == 3 and big.bytes == 3 * (64 << 10)
            assert collectors.walk(objects).objects == 127 + 500 + 300 + 3
            shapes.append((objects.shape(tree.roots), objects.shape(graph.roots),
                           objects.shape(chain.roots)))
    assert shapes[0] == shapes[1]


def test_random_graph_draws_payloads_from_a_histogram() -> None:
    with ha.Heap("8M") as heap:
        histogram = {0: 1, 6: 3, 100: 0}  # a zero weight is never drawn
        graph = workloads.random_graph(heap.objects, 20_000, 2, histogram, seed=5)
        # objects without references are padded to the 2-word minimum: leave them out
        payloads = [o.size_words - 1 - o.nrefs for o in heap.objects.objects() if o.nrefs]
        sizes, counts = np.unique(payloads, return_counts=True)
        assert sizes.tolist() == [0, 6]
        assert abs(counts[1] / len(payloads) - 0.75) < 0.02
        assert graph.objects == 20_000
        again = workloads.random_graph(heap.objects, 20_000, 2, histogram, seed=5)
        assert heap.objects.shape(again.roots) == heap.objects.shape(graph.roots)


def test_shuffled_list_is_scattered_and_ordered() -> None:
    with ha.Heap("1M") as heap:
        chain = workloads.linked_list(heap.objects, 64, shuffled=True, seed=1)
        nodes = heap.objects.reachable(chain.roots)
        assert [int(n.payload[0]) for n in nodes] == list(range(64))
        offsets = [n.offset for n in nodes]
        assert offsets != sorted(offsets)


def test_workload_arguments_are_checked() -> None:
    with ha.Heap("64K") as heap:
        for call in (lambda: workloads.binary_tree(heap.objects, 41),
                     lambda: workloads.random_graph(heap.objects, 10, size_distribution=(3, 1)),
                     lambda: workloads.random_graph(heap.objects, 10, size_distribution={}),
                     lambda: workloads.random_graph(heap.objects, 10, size_distribution={1: 0}),
                     lambda: workloads.random_graph(heap.objects, 10, size_distribution={1: -1}),
                     lambda: workloads.random_graph(heap.objects, 10,
                                                    size_distribution={1: float("nan")}),
                     lambda: workloads.random_graph(heap.objects, 10, size_distribution={-1: 1}),
                     lambda: workloads.random_graph(heap.objects, 10, size_distribution={1: "x"}),
                     lambda: workloads.random_graph(heap.objects, 10, size_distribution=[1, 2]),
                     lambda: workloads.linked_list(heap.objects, -1),
                     lambda: workloads.large_objects(heap.objects, 1, 8),
                     lambda: workloads.large_objects(heap.objects, 1, 1 << 40),
                     lambda: workloads.linked_list("heap", 1)):
            with pytest.raises(ha.InvalidArgument):
                call()
        with pytest.raises(ha.SpaceFull):
            workloads.binary_tree(heap.objects, 16)
        top = heap.objects.space().top
        for call in (lambda: workloads.linked_list(heap.objects, 1 << 40),  # before a malloc
                     lambda: workloads.random_graph(heap.objects, 1 << 40)):
            with pytest.raises(ha.SpaceFull):
                call()
            assert heap.objects.space().top == top


def test_semispaces_in_two_heaps_joined_in_one_range(pool_2m) -> None:
    """From-space in one heap, to-space in another: join() maps them back to back."""
    with ha.Heap("4M", pages="2m") as old, ha.Heap("4M", backing="anon", name="young") as young:
        joined = ha.join(old, young)
        assert joined.size == 8 << 20
        objects = ha.ObjectHeap(joined, encoding="address",
                                spaces={"from": (8, 4 << 20), "to": (4 << 20, 8 << 20)})
        work = workloads.random_graph(objects, 2000, 2, seed=3, space="from")
        before = objects.shape(work.roots)
        roots = work.roots.copy()
        stats = ha.SemiSpace(objects).collect(roots)
        assert objects.shape(roots) == before and stats.objects == len(objects.reachable(roots))
        # The survivors are in the second heap, as its own view shows.
        first = young.view.array(np.uint64, 0, stats.bytes // 8)
        assert np.array_equal(first, objects.words[(4 << 20) >> 3 : ((4 << 20) + stats.bytes) >> 3])
        del objects, first
        joined.close()
        assert not joined.mapped


def test_join_checks_its_heaps() -> None:
    with ha.Heap("64K") as small, ha.Heap("1M") as other:
        with pytest.raises(ha.InvalidArgument):
            ha.join()
        with pytest.raises(ha.InvalidArgument):
            ha.join(small, "heap")
        with pytest.raises(ha.InvalidArgument):
            ha.join(small, other, prot="x")
        readonly = ha.ObjectHeap(ha.join(small, other, prot="r"))
        assert not readonly.writable
        with pytest.raises(ha.InvalidArgument):  # a read-only view takes no new objects
            readonly.new()
        with pytest.raises(ha.InvalidArgument):  # nor mark bits
            collectors.mark(readonly, [])
    with ha.Heap("64K", backing="private") as private, pytest.raises(ha.UnsupportedAlias):
        ha.join(private)


def test_loops_release_the_gil() -> None:
    """While a C loop runs in one thread, Python code keeps running in another."""
    with ha.Heap("256M") as heap:
        objects = heap.objects
        graph = workloads.random_graph(objects, 2_000_000, 3, seed=2, nroots=64)
        result: list[collectors.LoopStats] = []
        marking = lambda: result.append(collectors.mark(objects, graph.roots))  # noqa: E731
        worker = threading.Thread(target=marking)
        longest_gap, last = 0.0, time.perf_counter()
        worker.start()
        while worker.is_alive():
            now = time.perf_counter()
            longest_gap, last = max(longest_gap, now - last), now
        worker.join()
    # Holding the GIL through the call would stall this loop for the whole mark.
    assert result and longest_gap < result[0].seconds / 2


def test_large_objects_survive_evacuation_bit_for_bit_both_ways() -> None:
    """Objects of 256 KiB and more are copied with streaming stores, whatever the alignment."""
    with ha.Heap("16M") as heap:
        objects = ha.ObjectHeap(heap, spaces=collectors.semispace_layout(heap.size))
        work = workloads.large_objects(objects, 5, (1 << 20) + 8 * 7, space="from")
        rng = np.random.default_rng(5)
        for obj in objects.reachable(work.roots):
            obj.payload[:] = rng.integers(0, 1 << 63, size=len(obj.payload), dtype=np.uint64)
        before = objects.shape(work.roots)
        roots = work.roots.copy()
        semi = ha.SemiSpace(objects)
        for _ in range(3):  # low -> high, high -> low (8 bytes off 16-alignment), and back
            semi.collect(roots)
            assert objects.shape(roots) == before


def forwarded_layout():
    """A heap with ``a -> b`` in from-space and an old object ``c`` in to-space."""
    heap = ha.Heap("1M")
    objects = ha.ObjectHeap(heap, spaces=collectors.semispace_layout(heap.size))
    a = objects.new(nrefs=1, payload_words=1, space="from")
    b = objects.new(payload_words=2, space="from")
    a.refs[0] = b
    c = objects.new(payload_words=2, space="to")  # copied by an earlier collection
    return heap, objects, a, b, c


@pytest.mark.parametrize("forward_to", ["junk", "from-space", "an older copy", "past the top",
                                        "inside a copy"])
@pytest.mark.parametrize("via", ["root", "slot"])
def test_a_stale_forwarded_bit_is_rejected_not_followed(forward_to, via) -> None:
    """collect installed any forwarding word as the new reference, unchecked."""
    heap, objects, a, b, c = forwarded_layout()
    with heap:
        begin = objects.space("to").top  # where this collection's copies start
        target = {"junk": 0xDEAD0, "from-space": a.ref, "an older copy": c.ref,
                  "past the top": objects.codec.encode(begin + 64),
                  "inside a copy": objects.codec.encode(begin + 8)}[forward_to]
        objects.words[b.offset >> 3] |= np.uint64(FORWARDED)
        objects.words[(b.offset >> 3) + 1] = target
        roots = collectors.roots_array([a.ref if via == "slot" else b.ref])
        with pytest.raises(ha.HeapCorruption) as caught:
            ha.SemiSpace(objects).collect(roots)
        assert caught.value.offset == b.offset
        if via == "root":
            assert roots[0] == b.ref  # not the forwarding word


def test_a_forwarded_bit_this_collection_set_is_followed() -> None:
    heap, objects, a, b, _ = forwarded_layout()
    with heap:
        roots = collectors.roots_array([a.ref, b.ref, a.ref])
        stats = ha.SemiSpace(objects).collect(roots)
        assert stats.objects == 2 and roots[0] == roots[2]
        assert objects.deref(int(roots[0])).refs[0] == objects.deref(int(roots[1]))


def test_an_interior_reference_is_not_marked() -> None:
    """A reference into an object names no header: mark stops, and writes nothing there."""
    heap, objects, a, b, _ = forwarded_layout()
    with heap:
        a.refs.raw[0] = b.offset + 8
        before = objects.words.copy()
        for loop in (lambda: collectors.mark(objects, [a.ref]),
                     lambda: ha.SemiSpace(objects).collect(collectors.roots_array([a.ref]))):
            with pytest.raises(ha.HeapCorruption):
                loop()
            assert objects.words[(b.offset >> 3) + 1] == before[(b.offset >> 3) + 1]


def test_through_must_be_a_whole_readable_view_of_this_heap() -> None:
    with ha.Heap("1M") as heap, ha.Heap("1M") as other:
        objects = ha.ObjectHeap(heap, spaces=collectors.semispace_layout(heap.size))
        roots = workloads.binary_tree(objects, 5, space="from").roots.copy()
        semi = ha.SemiSpace(objects)
        closed = heap.alias(prot="r")
        closed.close()
        hidden = heap.alias(prot="none")
        # (A view of other memory: test_corruption.py, in a child, as it hung before.)
        for through, error in (("view", ha.InvalidArgument), (closed, ha.ViewClosed),
                               (hidden, ha.InvalidArgument)):
            with pytest.raises(error):
                semi.collect(roots, through=through)
        assert semi.collect(roots, through=heap.alias(prot="r")).objects == 63
        colors = other.multimap(2, shift=21)
        with pytest.raises(ha.InvalidArgument, match="other memory"):
            ha.ObjectHeap(heap, encoding="colored", colors=colors)
        layout = heap.multimap(2, shift=21)
        colored = ha.ObjectHeap(heap, encoding="colored", colors=layout)
        layout.close()  # the ObjectHeap's arrays keep it mapped, but it is closed
        with pytest.raises(ha.ViewClosed):
            collectors.walk(colored)


def test_what_the_c_loops_trust_cannot_be_changed_under_them(heaps) -> None:
    """card_shift could be reassigned, and then write and scan ran past the cards."""
    objects = heaps["offset"]
    for space in objects.spaces.values():
        space.reset()
    cards, semi = ha.CardTable(objects, 6), ha.SemiSpace(objects)
    for target, name in [(cards, "card_shift"), (cards, "cards"), (cards, "objects"),
                         (objects, "size"), (objects, "encoding"), (objects, "view"),
                         (objects, "codec"), (objects, "words"), (objects, "colors"),
                         (objects, "writable"), (semi, "from_space"), (semi, "objects")]:
        with pytest.raises(AttributeError):
            setattr(target, name, getattr(target, name))
    a = objects.new(nrefs=1, space="from")
    space = objects.space("from")
    for field, value in [("top", objects.size + 8), ("top", space.end + 8), ("start", 0),
                         ("start", 12), ("end", "big"), ("top", 2.5)]:
        saved = getattr(space, field)
        setattr(space, field, value)
        for loop in (lambda: collectors.walk(objects, "from"),
                     lambda: collectors.mark(objects, [a.ref]),
                     lambda: semi.collect(collectors.roots_array([a.ref])),
                     lambda: workloads.linked_list(objects, 2, space="from")):
            with pytest.raises(ha.InvalidArgument, match="space 'from'"):
                loop()
        setattr(space, field, saved)
    cards.cards.resize(4, refcheck=False)
    with pytest.raises(ha.InvalidArgument, match="resized"):
        cards.write(a, 0, None)
    with pytest.raises(ha.InvalidArgument):
        cards.write(a, -1, None)


@pytest.mark.parametrize("call", [
    lambda o: collectors.mark(o, [[1], [2, 3]]), lambda o: collectors.mark(o, [-8]),
    lambda o: collectors.mark(o, ["x"]), lambda o: collectors.mark(o, [], stack_capacity="9"),
    lambda o: collectors.verify(o, [1.5]), lambda o: collectors.walk("heap"),
    lambda o: collectors.mark(None, []), lambda o: ha.SemiSpace(o.heap),
    lambda o: ha.CardTable(o, 6.0), lambda o: ha.CardTable(o).write(8, 0, None),
    lambda o: ha.SemiSpace(o).collect(np.zeros(4, dtype=np.uint64)[::2]),
])
def test_loop_arguments_are_typed_errors(heaps, call) -> None:
    with pytest.raises(ha.InvalidArgument):
        call(heaps["offset"])


def test_roots_are_one_dimensional_in_every_loop(heaps) -> None:
    """collect() took roots of shape (1, 1), and mark/verify took empty 2-D roots."""
    objects = heaps["offset"]
    for space in objects.spaces.values():
        space.reset()
    roots = workloads.linked_list(objects, 4, space="from").roots
    semi = ha.SemiSpace(objects)
    for bad in (roots.reshape(1, 1), np.zeros((0, 0), np.uint64), np.uint64(8)):
        with pytest.raises(ha.InvalidArgument, match="1-D"):
            semi.collect(bad)
        with pytest.raises(ha.InvalidArgument, match="1-D"):
            collectors.mark(objects, bad)
        with pytest.raises(ha.InvalidArgument, match="1-D"):
            collectors.verify(objects, bad)
    assert semi.collect(roots).objects == 4


def test_a_huge_mark_stack_is_bounded_by_what_the_spaces_hold(heaps, monkeypatch) -> None:
    """stack_capacity=2**64 + 8 was numpy's ValueError, and 2**32 a MemoryError (whose failed
    malloc left a new glibc arena behind): no more entries than objects fit are allocated."""
    objects = heaps["offset"]
    for space in objects.spaces.values():
        space.reset()
    roots = workloads.linked_list(objects, 100, space="from").roots
    for capacity in (2**64 + 8, 2**32, np.uint64(2**63)):
        collectors.clear_marks(objects, "from")
        assert collectors.mark(objects, roots, stack_capacity=capacity).objects == 100

    def fail(*args, **kwargs):
        raise MemoryError("no memory")

    monkeypatch.setattr(np, "empty", fail)
    with pytest.raises(ha.InsufficientMemory, match="mark"):
        collectors.mark(objects, roots)


@pytest.mark.parametrize("call", [
    lambda: ha.SemiSpace.halves(object()), lambda: ha.SemiSpace.halves(None, encoding="address"),
    lambda: collectors.walk(object()), lambda: workloads.binary_tree("heap", 1),
    lambda: ha.CardTable(3), lambda: ha.attach(object()),
])
def test_a_wrong_heap_type_is_an_invalid_argument_naming_the_type(call) -> None:
    """SemiSpace.halves(Opaque()) was an AttributeError on its .size."""
    with pytest.raises(ha.InvalidArgument, match=r"expected an? \w+|Heap or a View, got"):
        call()


@pytest.mark.parametrize("threads", [1, 2])
def test_an_object_an_earlier_mark_left_marked_is_not_scanned_again(threads) -> None:
    """Mark tests edges against a side bitmap of its own (cext/marking.h), and reads the
    header only of an object it reaches first: one an earlier mark left marked is neither
    counted nor scanned. So a second mark without clearing counts nothing, and a mark left
    on a list's middle node cuts the list there, as the header bit alone did."""
    with ha.Heap("1M") as heap:
        objects = ha.ObjectHeap(heap, spaces={"all": (8, heap.size)})
        roots = workloads.linked_list(objects, 100, space="all").roots
        assert collectors.mark(objects, roots, threads=threads).objects == 100
        again = collectors.mark(objects, roots, threads=threads)
        assert (again.objects, again.bytes, again.refs) == (0, 0, 1)
        collectors.clear_marks(objects, "all")
        node = objects.deref(int(roots[0]))
        for _ in range(49):
            node = node.refs[0]
        objects.words[node.offset >> 3] |= np.uint64(MARKED)
        assert collectors.mark(objects, roots, threads=threads).objects == 49


MARK_WITHOUT_ADDRESS_SPACE = """
import json, resource
import numpy as np
import heapalias as ha
from heapalias import collectors, workloads
with ha.Heap("128M") as heap:
    objects = ha.ObjectHeap(heap, spaces={{"all": (8, heap.size)}})
    objects.new(0, (120 << 20) // 8, space="all")  # the spaces reach 120 MiB: a 2 MiB bitmap
    roots = workloads.linked_list(objects, 10, space="all").roots
    stack = np.empty(64, np.uint64)  # numpy's own scratch, before the limit
    size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 20), hard))
    try:
        collectors.mark(objects, roots, stack_capacity=64, threads={threads})
        caught = None
    except ha.HeapAliasError as exc:
        caught = [type(exc).__name__, str(exc)]
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    print(json.dumps([caught, collectors.mark(objects, roots, threads={threads}).objects]))
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_a_mark_bitmap_that_cannot_be_had_is_insufficient_memory(threads) -> None:
    """The side bitmap (1/64 of the heap below the spaces' top) is mapped by the C loop for
    each mark: a mapping refused under RLIMIT_AS is InsufficientMemory, and the next mark,
    with room, works."""
    proc = run_isolated(MARK_WITHOUT_ADDRESS_SPACE.format(threads=threads))
    caught, marked = json.loads(proc.stdout)
    assert caught is not None and caught[0] == "InsufficientMemory", proc.stdout
    # C's message: numpy's names the bytes it wanted
    assert caught[1].startswith("mark: no memory for a scratch buffer. "), caught
    assert marked == 10


@pytest.mark.parametrize("threads", [1, 2])
def test_an_object_in_the_last_words_of_the_heap_is_marked(threads) -> None:
    """Mark copies four slots of a small object whatever its count (cext/marking.h), but
    never past the end of the heap: here the last object is two words long."""
    with ha.Heap("64K") as heap:
        objects = ha.ObjectHeap(heap, spaces={"all": (8, heap.size)})
        filler = objects.new(0, (heap.size - 16 - 8) // 8 - 1, space="all")
        last = objects.new(1, 0, space="all")
        assert last.offset + 16 == heap.size
        last.refs[0] = filler
        stats = collectors.mark(objects, [last.ref], threads=threads)
        assert (stats.objects, stats.bytes) == (2, heap.size - 8)
        assert last.marked and filler.marked
