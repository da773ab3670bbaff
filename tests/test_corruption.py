"""Corrupt random words of valid heaps: every loop raises a typed error or succeeds, never crashes.

The loops run in a child process, so a crash fails the test instead of ending pytest.
"""

from __future__ import annotations

import json

from hypothesis import example, given, settings
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
# Cheney's prefetch computed a wild slot's next line by pointer arithmetic, which wrapped:
# undefined behaviour that UBSan stopped on (a reference of 2**64 - 32, address encoding).
@example(cases=[("address", [(1, "raw", (1 << 64) - 32)])] * 20)
def test_corrupt_heaps_never_crash_a_loop(cases) -> None:
    proc = run_isolated(CHILD, stdin=json.dumps(cases))
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout)
    assert outcomes["ok"] + outcomes["typed"] == 6 * len(cases)
    assert outcomes["typed"] > 0  # the corruptions were noticed, not only survived


# ---- one defect each: a view the loops trust, a header they trust, and old forwarding ----

def test_collect_through_a_view_with_a_relocated_hole_is_refused() -> None:
    """The copy read from-space through every byte of `through`: a hole was SIGSEGV."""
    proc = run_isolated("""
        import heapalias as ha
        from heapalias import collectors, workloads
        from heapalias.relocation import RelocationArea
        heap = ha.Heap("1M")
        objects = ha.ObjectHeap(heap, spaces=collectors.semispace_layout(heap.size))
        roots = workloads.random_graph(objects, 8000, 2, seed=1, space="from").roots.copy()
        through = heap.alias(prot="rw")
        RelocationArea(heap, 1 << 20).remap(through, 64 << 10, 64 << 10)
        try:
            ha.SemiSpace(objects).collect(roots, through=through)
        except ha.InvalidArgument as exc:
            print("refused:", exc)
    """, timeout=60)
    assert "refused:" in proc.stdout and "relocated away" in proc.stdout, proc.stderr


def test_collect_through_a_view_of_other_memory_is_refused() -> None:
    """A same-size view of another (zeroed) heap gave zero headers to scan: a hang."""
    proc = run_isolated("""
        import heapalias as ha
        from heapalias import collectors, workloads
        heap, other = ha.Heap("1M"), ha.Heap("1M")
        objects = ha.ObjectHeap(heap, spaces=collectors.semispace_layout(heap.size))
        roots = workloads.binary_tree(objects, 6, space="from").roots.copy()
        for through in (other.view, other.alias(prot="r"), heap.view):
            try:
                ha.SemiSpace(objects).collect(roots, through=through)
                print("collected")
            except ha.InvalidArgument as exc:
                print("refused", "this heap's memory" in str(exc))
    """, timeout=60)
    assert proc.stdout.splitlines() == ["refused True", "refused True", "collected"], proc.stderr


LOAD_VIEW = """
import json
import numpy as np
import heapalias as ha
from heapalias import collectors, workloads
from heapalias.native import ffi, lib
from heapalias.objects import make_header

heap, other = ha.Heap("1M"), ha.Heap("1M")
# From-space ends at the heap's end: a scan of 0xFFFF slots there ran off the view.
objects = ha.ObjectHeap(heap, spaces={"to": (8, 1 << 19), "from": (1 << 19, 1 << 20)})
junk = other.view.array(np.uint64)
results = []
for fill in (0, int(make_header(4, 0xFFFF)), int(make_header(0xFFFF, 0xFFFE))):
    for space in objects.spaces.values():
        space.reset()
    roots = workloads.random_graph(objects, 9000, 2, (0, 3), seed=3, space="from").roots.copy()
    junk[:] = fill
    h = objects.native()
    h.load_base = other.view.address  # copy the bytes from other memory than the headers
    space = {n: ffi.new("ha_space *", (s.start, s.end, s.top)) for n, s in objects.spaces.items()}
    to, st = space["to"], ffi.new("ha_stats *")
    rc = lib.ha_cheney(h, space["from"], to, ffi.from_buffer("uint64_t[]", roots), len(roots), st)
    objects.space("to").top = int(to.top)
    walked = collectors.walk(objects, "to").objects
    results.append((hex(fill), rc, walked, int(st.objects)))
print(json.dumps(results))
"""


def test_cheney_scans_only_the_headers_it_checked() -> None:
    """The copy read its bytes through another view than the header it checked: zero
    headers in to-space made the scan advance by 0 words (a hang with the GIL
    released), and headers of 0xFFFF slots ran off the heap. A copy now carries
    the checked header, whatever the load view holds, so the scan always advances."""
    proc = run_isolated(LOAD_VIEW, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for fill, rc, walked, copied in json.loads(proc.stdout):
        assert rc in (0, 2), (fill, rc)  # done, or a junk slot is a bad reference
        assert walked == copied > 0, fill  # every copy parses as an object


def test_colored_loops_refuse_color_views_with_holes() -> None:
    """Only byte 0 of each color view was checked: marking through a color whose
    middle was relocated away (PROT_NONE) was SIGSEGV."""
    proc = run_isolated("""
        import heapalias as ha
        from heapalias import collectors, workloads
        from heapalias.relocation import RelocationArea
        heap = ha.Heap("4M")
        colors = heap.multimap(2, shift=23)
        area = RelocationArea(heap, 2 << 20)
        moved, _ = area.remap(colors[1], 1 << 20, 1 << 20)
        try:
            ha.ObjectHeap(heap, encoding="colored", colors=colors, store_color=1)
        except ha.InvalidArgument as exc:
            print("refused at construction:", "relocated away" in str(exc))
        layout = heap.multimap(2, shift=23)
        objects = ha.ObjectHeap(heap, encoding="colored", colors=layout, store_color=1)
        roots = workloads.random_graph(objects, 60000, 2, seed=1, nroots=8).roots
        try:
            area.remap(layout[1], 0, 1 << 20, at=1 << 20)
        except ha.ViewInUse:
            print("relocation refused while the ObjectHeap holds the view")
        layout[1]._add_hole(1 << 20, 2 << 20)  # as if it had been relocated anyway
        try:
            collectors.mark(objects, roots)
        except ha.InvalidArgument as exc:
            print("mark refused:", "no longer whole" in str(exc))
    """, timeout=60)
    assert proc.stdout.splitlines() == [
        "refused at construction: True",
        "relocation refused while the ObjectHeap holds the view",
        "mark refused: True",
    ], proc.stderr
