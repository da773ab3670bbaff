"""Corrupt random words of valid heaps: every loop raises a typed error or succeeds, never crashes.

The loops run in a child process, so a crash fails the test instead of ending pytest.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_isolated

CHILD = r"""
import json, sys
import numpy as np
import heapalias as ha
from heapalias import collectors, workloads
from heapalias.objects import make_header

cases = json.loads(sys.stdin.read())
heap = ha.Heap("1M")
colors = heap.multimap(2, shift=21)
outcomes = {"ok": 0, "typed": 0}
for encoding, corruptions in cases:
    spaces = {"from": (8, 1 << 19), "to": (1 << 19, 1 << 20)}
    objects = ha.ObjectHeap(heap, encoding=encoding, spaces=spaces,
                            colors=colors if encoding in ("colored", "masked") else None)
    work = workloads.random_graph(objects, 300, 2, size_distribution=(0, 3), seed=7, nroots=4,
                                  space="from")
    first, top = 1, objects.space("from").top >> 3
    for index, kind, value in corruptions:
        word = first + index % (top - first)
        ref = int(objects.codec.encode(8 * (first + value % (top - first))))
        objects.words[word] = {
            "raw": value, "ref": ref, "ref+4": ref + 4,
            "header": int(make_header(value % (1 << 32), value % 7)),
            "huge": int(make_header(0xFFFFFFFF, 1)),
        }[kind] % (1 << 64)
    roots = work.roots.copy()
    loops = [
        lambda: collectors.verify(objects, roots),
        lambda: collectors.walk(objects, "from"),
        lambda: collectors.mark(objects, roots, stack_capacity=3),
        lambda: collectors.clear_marks(objects, "from"),
        lambda: ha.CardTable(objects, 6).scan("from", "to"),
        lambda: ha.SemiSpace(objects).collect(roots),
    ]
    for loop in loops:
        try:
            loop()
            outcomes["ok"] += 1
        except (ha.HeapCorruption, ha.SpaceFull) as exc:
            outcomes["typed"] += 1
print(json.dumps(outcomes))
"""

KINDS = ["raw", "ref", "ref+4", "header", "huge"]
corruption = st.tuples(
    st.integers(0, 1 << 20), st.sampled_from(KINDS), st.integers(0, (1 << 64) - 1)
)
case = st.tuples(st.sampled_from(["offset", "address", "colored", "masked"]),
                 st.lists(corruption, min_size=1, max_size=4))


@settings(max_examples=8, deadline=None)
@given(cases=st.lists(case, min_size=20, max_size=20))
def test_corrupt_heaps_never_crash_a_loop(cases) -> None:
    proc = run_isolated(CHILD, stdin=json.dumps(cases))
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout)
    assert outcomes["ok"] + outcomes["typed"] == 6 * len(cases)
    assert outcomes["typed"] > 0  # the corruptions were noticed, not only survived
