"""The bench's floor: the heap lines a mark and a Cheney copy must read, counted from the
graph (heapalias/bench/floors.py), against a plain Python traversal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import heapalias as ha
from heapalias import collectors, workloads
from heapalias.bench import floors
from heapalias.objects import MARKED, header_fields, make_header


def spanned(first: int, last: int) -> int:
    return last // 64 - first // 64 + 1


def reference(objects: ha.ObjectHeap, roots) -> floors.Lines:
    """Breadth-first from the roots, one object at a time: what floors.count must find."""
    words, codec = objects.words, objects.codec
    live: dict[int, int] = {}  # offset -> edges to it
    queue: list[int] = []

    def follow(ref: int) -> None:
        if ref == 0:
            return
        target = codec.decode(ref)
        live[target] = live.get(target, 0) + 1
        if live[target] == 1:
            queue.append(target)

    for root in roots:
        follow(int(root))
    for offset in queue:
        _, nrefs = header_fields(words[offset // 8])
        for i in range(1, nrefs + 1):
            follow(int(words[offset // 8 + i]))
    mark = copy = 0
    for offset, indegree in live.items():
        size, nrefs = header_fields(words[offset // 8])
        mark += spanned(offset, offset + 8 * nrefs)
        copy += spanned(offset, offset + 8 * size - 1) + (indegree - 1) * spanned(offset,
                                                                                  offset + 15)
    n = max(len(live), 1)
    return floors.Lines(len(live), sum(live.values()), mark / n, copy / n)


def test_a_hand_made_graph_counts_each_line_it_must() -> None:
    with ha.Heap("1M") as heap:
        objects = ha.ObjectHeap(heap)
        # a: 2 words at 56 (header and its slot straddle lines 0 and 1), pointing to c;
        # b: 10 words (80 bytes) at 128, pointing to c twice; c: 3 words at 512, no slots;
        # d: unreachable.
        words = objects.words
        space = objects.space()
        layout = {56: (2, 1), 128: (10, 2), 512: (3, 0), 640: (4, 0)}
        for offset, (size, nrefs) in layout.items():
            words[offset // 8] = make_header(size, nrefs)
        words[56 // 8 + 1] = 512
        words[128 // 8 + 1] = words[128 // 8 + 2] = 512
        # Fillers between them, so the space parses bottom to top.
        for start, end in ((8, 56), (72, 128), (208, 512), (536, 640)):
            words[start // 8] = make_header((end - start) // 8, 0)
        space.top = 672
        roots = np.array([56, 128], np.uint64)
        lines = floors.count(objects, roots)
        # Live: a (lines 0-1: 2), b (header..slot 2 on line 2: 1), c (1): mark 4 / 3.
        # Copy: a 2, b 128..207 is lines 2-3: 2, c 1; c has 3 edges, 2 of them to a copy
        # made already, each reading c's header and slot 1 (line 8): 2 more. 7 / 3.
        assert lines == floors.Lines(3, 5, 4 / 3, 7 / 3)
        assert lines == reference(objects, roots)
        # The marks the count made are gone, on the live objects and the rest.
        assert not any(int(words[o // 8]) & MARKED for o in (8, 56, 72, 128, 208, 512, 536, 640))
        assert collectors.mark(objects, roots).objects == 3


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 400), degree=st.integers(0, 4), seed=st.integers(0, 1 << 32),
       nroots=st.integers(1, 8), encoding=st.sampled_from(["offset", "address", "colored",
                                                            "masked"]))
def test_random_graphs_count_as_a_plain_traversal_does(n, degree, seed, nroots,
                                                       encoding) -> None:
    with ha.Heap("1M") as heap:
        colors = heap.multimap(2, shift=21) if encoding in ("colored", "masked") else None
        semi = collectors.SemiSpace.over(heap)
        objects = ha.ObjectHeap(colors[0] if colors else heap, encoding=encoding,
                                spaces={name: (s.start, s.end)
                                        for name, s in semi.objects.spaces.items()},
                                colors=colors)
        work = workloads.random_graph(objects, n, degree, (0, 6), seed=seed, nroots=nroots,
                                      space="from")
        lines = floors.count(objects, work.roots)
        want = reference(objects, work.roots)
        assert (lines.objects, lines.edges) == (want.objects, want.edges)
        assert lines.mark == pytest.approx(want.mark) and lines.copy == pytest.approx(want.copy)
        assert 1 <= lines.mark <= lines.copy or lines.objects == 0
        if colors:
            del objects, work
            colors.close()


def test_a_reference_into_an_object_is_corruption_and_earlier_marks_do_not_hide_objects() -> None:
    with ha.Heap("1M") as heap:
        objects = ha.ObjectHeap(heap)
        work = workloads.random_graph(objects, 200, 2, (0, 6), seed=3, nroots=4)
        want = reference(objects, work.roots)
        collectors.mark(objects, work.roots)  # a mark left in the heap is cleared first
        assert floors.count(objects, work.roots) == want
        # A reference to a header hidden inside a live object: mark takes it, no walk finds it.
        _, offsets = collectors.walk(objects, offsets=True)
        big = next(int(o) for o in offsets
                   if header_fields(objects.words[o // 8])[0] >= 6
                   and header_fields(objects.words[o // 8])[1] == 0)
        objects.words[big // 8 + 2] = make_header(2, 0)
        root = np.array([*work.roots, big + 16], np.uint64)
        with pytest.raises(ha.HeapCorruption, match="no object a walk finds"):
            floors.count(objects, root)
