"""The generational plan's own guarantees, beyond the contract every plan keeps
(tests/test_plans.py): minor and full collections under hypothesis over programs of
allocations, barrier stores and drops, in every encoding and several heap sizes, verified
after every collection; the remembered set (a missed card breaks the heap); ages and
promotion; compaction order; full heaps; the drivers; corrupt heaps in a child."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_collectors import ENCODINGS, graphs

import heapalias as ha
from heapalias import collectors, drivers, native, workloads
from heapalias.collectors.generational import (
    CARD_BYTES,
    COPY_ORDERS,
    DEFAULT_COPY_ORDER,
    MAX_TENURE_AGE,
)
from heapalias.errors import HeapCorruption, InvalidArgument, SpaceFull

from conftest import run_isolated

HEAP_SIZES = (1 << 18, 1 << 19, 1 << 20, 1 << 21)


def plan_over(heap: ha.Heap, encoding: str = "offset", tenure_age: int = 2,
              copy_order: str = DEFAULT_COPY_ORDER):
    colored = encoding in ("colored", "masked")
    colors = heap.multimap(3, shift=max(heap.size - 1, 1).bit_length()) if colored else None
    return collectors.Generational.over(heap, tenure_age=tenure_age, copy_order=copy_order,
                                        encoding=encoding, colors=colors,
                                        store_color=1 if colored else 0)


def build(plan, graph, space: str = "nursery") -> tuple[list[ha.Obj], list[int]]:
    """Lay ``graph`` out in ``space``, every object tagged in its payload; (objects, roots)."""
    nrefs, payload, targets, roots = graph
    objects = plan.objects
    edges = [(i, k, t) for i, ts in enumerate(targets) for k, t in enumerate(ts) if t is not None]
    src, slot, dst = np.array(edges, dtype=np.int64).reshape(-1, 3).T
    offsets = objects.build(np.array(nrefs), np.array(payload) + 1, edges=(src, slot, dst),
                            space=space)
    built = [ha.Obj(objects, int(offset)) for offset in offsets]
    for obj in built:
        obj.payload[:] = obj.offset  # a tag that tells objects apart in shape()
    return built, [objects.codec.encode(built[r].offset) for r in roots if r is not None]


def young(plan, obj: ha.Obj) -> bool:
    return plan.nursery.contains(obj.offset) or plan.survivors.contains(obj.offset)


def check_heap(plan, roots: np.ndarray) -> list[ha.Obj]:
    """What must hold after every collection: the heap verifies, and every old slot that
    refers to a young object lies in a dirty card. The reachable objects."""
    objects = plan.objects
    collectors.verify(objects, roots, spaces=[space.name for space in plan.spaces])
    reachable = objects.reachable(roots)
    cards = plan.cards.cards
    for obj in reachable:
        assert any(space.contains(obj.offset) for space in plan.spaces)
        if plan.old.contains(obj.offset):
            for i, target in enumerate(obj.refs):
                if target is not None and young(plan, target):
                    assert cards[(obj.offset + 8 + 8 * i) // CARD_BYTES], (obj, i)
        else:
            assert obj.age < plan.tenure_age
    return reachable


def collect(plan, roots: np.ndarray, kind: str) -> None:
    """A minor or full collection, or the one the plan's policy picks when the nursery
    fills ("slow"), checked against the graph it started from."""
    objects = plan.objects
    before = objects.shape(roots)
    live = objects.reachable(roots)
    young_before = sum(young(plan, obj) for obj in live)
    # A dead old object in a dirty card keeps what it refers to (the remembered set
    # is conservative), so a minor collection may copy young objects the roots lost.
    young_in_heap = sum(1 for space in (plan.nursery, plan.survivors)
                        for _ in objects.objects(space.name))
    live_bytes = sum(obj.size_words * 8 for obj in live)
    full_before = plan.full_collections
    if kind == "slow":
        failures_before = plan.promotion_failures
        stats = plan.collect_for(roots)
        if plan.promotion_failures > failures_before:  # a full collection followed at once
            assert plan.full_collections == full_before + 1
        if plan.full_collections > full_before:
            assert plan.nursery.used == plan.survivors.used == 0
            assert not plan.cards.dirty
        assert plan.nursery.used == 0
    if kind == "minor":
        try:
            stats = plan.minor(roots)
        except SpaceFull:  # the old space could not take every young object
            assert plan.old.end - plan.old.top < plan.nursery.used + plan.survivors.used
            kind = "full"
        else:
            assert plan.full_collections == full_before
            assert young_before <= stats.objects <= young_in_heap
            assert plan.nursery.used == 0
    if kind == "full":
        stats = plan.collect(roots)
        assert stats.objects == len(live)
        assert plan.old.used == live_bytes >= stats.bytes  # bytes moved: a dense prefix stays
        assert plan.nursery.used == plan.survivors.used == 0
        assert not plan.cards.dirty  # nothing young is left to remember
    assert objects.shape(roots) == before
    reachable = check_heap(plan, roots)
    assert not any(obj.marked or obj.forwarded for obj in reachable)


ALLOC = st.tuples(st.just("alloc"), graphs(), st.integers(0, 1 << 30))
STORE = st.tuples(st.just("store"), st.integers(0, 1 << 30), st.integers(0, 1 << 30),
                  st.integers(0, 1 << 30))
#: Weighted toward what a remembered set must get right: stores, then minor collections.
STEP = st.one_of(ALLOC, ALLOC, STORE, STORE, STORE, st.tuples(st.just("drop"), st.integers()),
                 st.tuples(st.just("minor")), st.tuples(st.just("minor")),
                 st.tuples(st.just("slow")), st.tuples(st.just("full")))


def store(plan, reach: list[ha.Obj], source: int, slot: int, target: int) -> None:
    """A barrier store, from an old object to a young one whenever there are both."""
    sources = [obj for obj in reach if obj.nrefs and plan.old.contains(obj.offset)] or [
        obj for obj in reach if obj.nrefs]
    targets = [obj for obj in reach if young(plan, obj)] or reach
    if sources:
        obj = sources[source % len(sources)]
        plan.write(obj, slot % obj.nrefs, targets[target % len(targets)])


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=20), encoding=st.sampled_from(ENCODINGS),
       size=st.sampled_from(HEAP_SIZES), tenure_age=st.sampled_from([1, 2, 3, MAX_TENURE_AGE]),
       copy_order=st.sampled_from(sorted(COPY_ORDERS)))
# Found by hypothesis: a store into an old object that is then dropped dirties its card, so
# the next minor collection copies young objects no root reaches any more.
@example(steps=[('minor',),
                ('alloc',
                 ([3, 1, 4, 3, 4, 2, 1, 1, 2, 2, 4, 1, 0, 4, 0, 1, 0, 2, 4, 4, 4, 1, 2, 2, 2, 0, 4],
                  [0, 1, 0, 2, 1, 1, 1, 2, 1, 2, 2, 0, 1, 2, 1, 3, 1, 2, 0, 0, 1, 2, 1, 0, 3, 2, 1],
                  [[26, None, 25], [20], [4, 3, None, None], [None, None, 1], [None, None, 13, 5],
                   [None, None], [16], [10], [24, None], [8, 21], [None, 23, None, 2], [None], [],
                   [2, None, 4, 23], [], [None], [], [14, None], [None, 23, 6, None],
                   [2, None, 16, 24], [None, None, 5, None], [9], [None, None], [18, None], [1, 13],
                   [], [None, 7, None, 0]],
                  [23, 22]),
                 3061797),
                ('full',),
                ('alloc',
                 ([2, 1, 1, 4, 3, 1, 2, 3, 0, 1, 1, 0, 0, 2, 3, 1, 3, 2, 2, 1, 3],
                  [2, 2, 0, 1, 3, 2, 1, 1, 0, 0, 2, 1, 0, 0, 3, 3, 0, 1, 1, 3, 3],
                  [[None, None], [None], [None], [None, 17, 9, 9], [12, 4, None], [13],
                   [None, None], [0, None, 3], [], [None], [17], [], [], [20, None], [12, 8, 13],
                   [13], [None, None, 2], [None, None], [20, 13], [12], [4, None, 3]],
                  [None, 4, 1, 1, None]),
                 10280),
                ('drop', -4315447219), ('store', 451732998, 14901, 7026), ('drop', 128),
                ('drop', 6858), ('minor',), ('minor',)],
         encoding='address', size=1048576, tenure_age=16,
         copy_order='depth-first')
def test_programs_of_allocations_stores_and_drops_keep_their_graph(steps, encoding, size,
                                                                   tenure_age, copy_order) -> None:
    with ha.Heap(size, name="gen-programs") as heap:
        plan = plan_over(heap, encoding, tenure_age, copy_order)
        roots: list[int] = []
        for step in steps:
            reach = plan.objects.reachable(roots)
            if step[0] == "alloc":
                try:
                    built, new_roots = build(plan, step[1])
                except SpaceFull:
                    continue
                with_slots = [obj for obj in built if obj.nrefs]
                if reach and with_slots:  # a young object referring to an older one
                    with_slots[0].refs[0] = reach[step[2] % len(reach)]
                roots += new_roots or [built[0].ref]
            elif step[0] == "store" and reach:
                store(plan, reach, *step[1:])
            elif step[0] == "drop" and roots:
                del roots[step[1] % len(roots)]
            elif step[0] in ("minor", "slow", "full"):
                array = np.array(roots, dtype=np.uint64)
                collect(plan, array, step[0])
                roots = [int(r) for r in array]


def test_a_missed_card_loses_the_young_object_and_the_barrier_keeps_it() -> None:
    """An old object's only reference to a young one is found through its dirty card: stored
    without the barrier, the minor collection leaves the slot pointing into the emptied
    nursery, which verify reports; stored with it, the object is evacuated."""
    for barrier in (False, True):
        with ha.Heap("1M", name="gen-barrier") as heap:
            plan = plan_over(heap, tenure_age=1)
            holder = plan.objects.new(nrefs=200, payload_words=1, space="nursery")
            roots = np.array([holder.ref], dtype=np.uint64)
            plan.minor(roots)  # tenure age 1: promoted at once
            holder = plan.objects.deref(int(roots[0]))
            assert plan.old.contains(holder.offset) and not plan.cards.dirty
            child = plan.objects.new(nrefs=0, payload_words=1, space="nursery")
            child.payload[0] = 42
            slot = 150  # in the holder's second card: the card, not the object, is remembered
            assert (holder.offset + 8 + 8 * slot) // CARD_BYTES != holder.offset // CARD_BYTES
            if barrier:
                plan.write(holder, slot, child)
                assert plan.cards.dirty == 1
            else:
                holder.refs[slot] = child
            plan.minor(roots)
            if barrier:
                moved = plan.objects.reachable(roots)[1]
                assert plan.old.contains(moved.offset) and moved.payload[0] == 42
                check_heap(plan, roots)
            else:
                with pytest.raises(HeapCorruption, match="not an object start"):
                    collectors.verify(plan.objects, roots,
                                      spaces=[space.name for space in plan.spaces])


def test_a_card_stays_dirty_while_its_slot_refers_to_a_survivor() -> None:
    with ha.Heap("1M", name="gen-cards") as heap:
        plan = plan_over(heap, tenure_age=3)
        holder = plan.objects.new(nrefs=1, space="old")  # placed by hand: crossing map caught up
        child = plan.objects.new(nrefs=0, payload_words=1, space="nursery")
        plan.write(holder, 0, child)
        roots = np.array([holder.ref], dtype=np.uint64)
        for age in (1, 2):  # survives in the survivor spaces, one year older each time
            plan.minor(roots)
            child = holder.refs[0]
            assert plan.survivors.contains(child.offset) and child.age == age
            assert plan.cards.dirty == 1
        plan.minor(roots)  # the tenure age: promoted, and nothing young is left to remember
        assert plan.old.contains(holder.refs[0].offset) and not plan.cards.dirty
        assert plan.minor_collections == 3 and plan.full_collections == 0


def test_a_full_survivor_space_promotes_early() -> None:
    with ha.Heap("1M", name="gen-overflow") as heap:
        plan = plan_over(heap, tenure_age=MAX_TENURE_AGE)
        capacity = plan.survivors.end - plan.survivors.start
        roots = workloads.linked_list(plan.objects, capacity // 16 * 2, space="nursery").roots
        plan.minor(roots)
        assert plan.survivors.used <= capacity and plan.old.used > 0
        check_heap(plan, roots)


def preorder(obj: ha.Obj | None) -> list[int]:
    return [] if obj is None else [obj.offset, *preorder(obj.refs[0]), *preorder(obj.refs[1])]


def breadth_first(root: ha.Obj) -> list[int]:
    order, level = [], [root]
    while level:
        order += [obj.offset for obj in level]
        level = [child for obj in level for child in obj.refs if child is not None]
    return order


@pytest.mark.parametrize("tenure_age", [1, 2])  # into the old space, or a survivor space
@pytest.mark.parametrize("copy_order", sorted(COPY_ORDERS))
def test_the_copy_order_is_the_order_copies_lie_in(copy_order, tenure_age) -> None:
    """Depth first, a tree's copies lie in pre-order, the order its recursive check walks
    them; breadth first (Cheney), level by level."""
    with ha.Heap("1M", name="gen-order") as heap:
        plan = plan_over(heap, tenure_age=tenure_age, copy_order=copy_order)
        roots = workloads.binary_tree(plan.objects, 9, space="nursery").roots
        before = plan.objects.shape(roots)
        plan.minor(roots)
        assert plan.objects.shape(roots) == before
        root = plan.objects.deref(int(roots[0]))
        walk = preorder(root) if copy_order == "depth-first" else breadth_first(root)
        assert walk == sorted(walk) and len(walk) == 2**10 - 1
        assert (plan.old if tenure_age == 1 else plan.survivors).contains(root.offset)


def test_a_graph_deeper_than_the_depth_first_stack_is_copied_whole() -> None:
    """A list deeper than the stack's frames: what the stack cannot take, the Cheney sweep
    behind it scans, and every node is copied once."""
    with ha.Heap("4M", name="gen-deep") as heap:
        plan = plan_over(heap, tenure_age=1, copy_order="depth-first")
        roots = workloads.linked_list(plan.objects, 20_000, space="nursery").roots
        before = plan.objects.shape(roots)
        stats = plan.minor(roots)
        assert stats.objects == 20_000 and plan.objects.shape(roots) == before
        check_heap(plan, roots)


def test_compaction_keeps_the_old_objects_in_address_order() -> None:
    with ha.Heap("1M", name="gen-order") as heap:
        plan = plan_over(heap)
        chain = [plan.objects.new(nrefs=1, payload_words=i % 3, space="old") for i in range(60)]
        for garbage, obj in enumerate(chain):
            obj.payload[:] = garbage
        kept = chain[::3]
        for a, b in itertools.pairwise(kept):
            a.refs[0] = b
        young_one = plan.objects.new(nrefs=0, payload_words=2, space="nursery")
        plan.write(kept[-1], 0, young_one)
        roots = np.array([kept[0].ref], dtype=np.uint64)
        plan.collect(roots)
        after = plan.objects.reachable(roots)
        assert [o.offset for o in after] == sorted(o.offset for o in after)
        assert after[0].offset == plan.old.start and plan.old.top == after[-1].offset + 24
        assert plan.old.used == sum(o.size_words * 8 for o in after)


def test_a_full_collection_that_cannot_fit_moves_nothing() -> None:
    with ha.Heap("1M", name="gen-full") as heap:
        plan = plan_over(heap)
        old = plan.old.end - plan.old.start
        roots = np.concatenate([
            workloads.large_objects(plan.objects, 1, old - 4096, space="old").roots,
            workloads.large_objects(plan.objects, 1, 8192, space="nursery").roots])
        before = plan.objects.shape(roots)
        tops = [space.top for space in plan.spaces]
        with pytest.raises(SpaceFull):
            plan.collect(roots)
        assert [space.top for space in plan.spaces] == tops and plan.objects.shape(roots) == before
        assert not any(obj.marked for obj in plan.objects.reachable(roots))
        with pytest.raises(SpaceFull):  # nor can a minor collection promote into it
            plan.minor(roots)
        roots[:] = roots[::-1]
        roots[1] = 0  # drop the old object: now everything fits
        plan.collect(roots)
        check_heap(plan, roots)


def test_the_plan_refuses_what_it_cannot_collect() -> None:
    with ha.Heap("1M", name="gen-refuse") as heap:
        objects = ha.ObjectHeap(heap, spaces={"nursery": (8, 4096), "old": (4096, 8192),
                                              "survivor0": (8192, 12288),
                                              "survivor1": (12288, 16384)})
        with pytest.raises(InvalidArgument, match="card boundary"):
            collectors.Generational(objects)
        with pytest.raises(InvalidArgument, match="4 spaces"):
            collectors.Generational(objects, ("nursery", "old"))
        plan = plan_over(heap)
        for bad in (0, MAX_TENURE_AGE + 1, 2.0):
            with pytest.raises(InvalidArgument):
                plan.tenure_age = bad
        with pytest.raises(InvalidArgument, match="copy_order"):
            plan.copy_order = "random"
        roots = np.zeros(1, dtype=np.uint64)
        with pytest.raises(InvalidArgument, match="compacts in place"):
            plan.collect(roots, through=heap.alias())
        plan.objects.new(nrefs=0, space="survivor1")  # the space a minor collection fills
        with pytest.raises(InvalidArgument):
            plan.minor(roots)
        plan.collect(roots)  # a full collection empties it
        assert plan.minor(roots).objects == 0
        gc = plan.to_native()  # C checks the plan's state itself
        for field, value in (("tenure_age", 0), ("ncards", 3), ("nursery_end", 12),
                             ("copy_order", 2),
                             ("nursery_end", heap.size + CARD_BYTES)):
            saved = getattr(gc.generations, field)
            setattr(gc.generations, field, value)
            with pytest.raises(InvalidArgument):
                native.loop_result(*native.collect(gc, roots), "collect")
            setattr(gc.generations, field, saved)
        gc.spaces[1].start += 8  # a space off its card boundary
        with pytest.raises(InvalidArgument):
            native.loop_result(*native.collect_young(gc, roots), "collect_young")
    with ha.Heap("1M", name="gen-semi") as heap:  # a plan without a young generation
        gc = collectors.SemiSpace.over(heap).to_native()
        with pytest.raises(InvalidArgument):
            native.loop_result(*native.collect_young(gc, roots), "collect_young")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_drivers_give_the_semispace_checks(encoding) -> None:
    with ha.Heap("16M", name="gen-drivers") as heap:
        plan = plan_over(heap, encoding, tenure_age=2)
        run = drivers.binary_trees(plan, 14)
        assert run.checks == drivers.expected_binary_trees_checks(14)
        assert run.collections == plan.minor_collections + plan.full_collections
        check_heap(plan, np.zeros(0, dtype=np.uint64))
    with ha.Heap("64M", name="gen-gcbench") as heap:
        plan = plan_over(heap, encoding, tenure_age=2)
        run = drivers.gcbench(plan)
        # The long-lived tree is populated top-down, after its upper nodes were promoted:
        # its stores reach the nursery through the barrier's cards, or its check fails.
        assert run.checks == drivers.expected_gcbench_checks()
        assert plan.minor_collections > 0


def promotion_failure_setup(plan, filler_live: bool) -> np.ndarray:
    """A nursery list of 8000 objects and an old space with room for half of it, filled
    with a list that is garbage unless ``filler_live``; the roots."""
    lists = workloads.linked_list(plan.objects, 8000, space="nursery")
    node = plan.nursery.used // 8000
    room_left = plan.nursery.used // 2
    filler = workloads.linked_list(plan.objects, (plan.old.end - plan.old.top - room_left)
                                   // node, space="old")
    assert plan.old.end - plan.old.top < plan.nursery.used  # a minor cannot promote it all
    return np.concatenate([filler.roots, lists.roots]) if filler_live else lists.roots


@pytest.mark.parametrize("copy_order", sorted(COPY_ORDERS))
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_promotion_failure_keeps_objects_in_place_and_a_full_collection_follows(
        copy_order, encoding) -> None:
    """The old space has room for what minor collections promoted lately (no estimate yet)
    but not for this one: the objects it cannot take stay where they were, the minor
    collection completes, and a full collection moves everything live into the old space."""
    with ha.Heap("1M", name="gen-promotion-failure") as heap:
        plan = plan_over(heap, encoding, tenure_age=1, copy_order=copy_order)  # all promoted
        roots = promotion_failure_setup(plan, filler_live=False)
        before = plan.objects.shape(roots)
        plan.collect_for(roots)
        assert plan.promotion_failures == 1 and plan.full_collections == 1
        assert plan.objects.shape(roots) == before
        assert plan.nursery.used == plan.survivors.used == 0
        reachable = check_heap(plan, roots)
        assert not any(obj.marked or obj.forwarded for obj in reachable)
        assert all(plan.old.contains(obj.offset) for obj in reachable)
        average, deviation = plan.promoted_estimate
        assert average > 0 and deviation > 0


def test_a_promotion_failure_with_too_much_live_data_keeps_the_graph_whole() -> None:
    """When even the full collection cannot fit what is live, SpaceFull is raised and the
    graph is whole: the objects kept in place have their own words back."""
    with ha.Heap("1M", name="gen-promotion-full") as heap:
        plan = plan_over(heap, tenure_age=1)
        roots = promotion_failure_setup(plan, filler_live=True)
        before = plan.objects.shape(roots)
        with pytest.raises(SpaceFull):
            plan.collect_for(roots)
        assert plan.promotion_failures == 1
        assert plan.objects.shape(roots) == before
        collectors.verify(plan.objects, roots, spaces=[space.name for space in plan.spaces])
        assert not any(obj.marked or obj.forwarded for obj in plan.objects.reachable(roots))


def test_a_tight_heap_collects_in_full() -> None:
    """With the old space nearly full, the policy collects in full, and a promotion
    failure is handled: binary-trees completes with its checks."""
    with ha.Heap("12M", name="gen-tight") as heap:
        plan = plan_over(heap)
        run = drivers.binary_trees(plan, 16)
        assert run.checks == drivers.expected_binary_trees_checks(16)
        assert plan.full_collections > 0 and plan.minor_collections > 0
        check_heap(plan, np.zeros(0, dtype=np.uint64))
    with ha.Heap("8M", name="gen-small") as heap, pytest.raises(SpaceFull):
        drivers.binary_trees(plan_over(heap), 16)  # the stretch tree alone is 6 MiB


CORRUPT_CHILD = r"""
import json, sys
import numpy as np
import heapalias as ha
from heapalias import collectors, workloads
from heapalias.objects import make_header

cases = json.loads(sys.stdin.read())
heap = ha.Heap("1M")
outcomes = {"ok": 0, "typed": 0}
for tenure, corruptions in cases:
    plan = collectors.Generational.over(heap, tenure_age=tenure)
    objects = plan.objects
    old = workloads.random_graph(objects, 200, 2, size_distribution=(0, 3), seed=3, nroots=2,
                                 space="old").roots
    young = workloads.random_graph(objects, 300, 2, size_distribution=(0, 3), seed=4, nroots=2,
                                   space="nursery").roots
    holders = [o for o in objects.reachable(old) if o.nrefs][:8]
    targets = objects.reachable(young)
    for i, holder in enumerate(holders):  # old-to-young references, remembered
        plan.write(holder, 0, targets[i % len(targets)])
    roots = np.concatenate([old, young])
    for index, kind, value in corruptions:
        space = (plan.old, plan.nursery)[index % 2]
        first, top = space.start >> 3, space.top >> 3
        word = first + index % (top - first)
        ref = int(objects.codec.encode(8 * (first + value % (top - first))))
        objects.words[word] = {"raw": value, "ref": ref, "ref+4": ref + 4,
                               "header": int(make_header(value % (1 << 32), value % 7)),
                               "huge": int(make_header(0xFFFFFFFF, 1))}[kind] % (1 << 64)
    for collect in (plan.minor, plan.collect, plan.minor):
        try:
            collect(roots)
            outcomes["ok"] += 1
        except (ha.HeapCorruption, ha.SpaceFull, ha.InvalidArgument):
            outcomes["typed"] += 1
    plan.reset()
print(json.dumps(outcomes))
"""

KINDS = ["raw", "ref", "ref+4", "header", "huge"]


@settings(max_examples=8, deadline=None)
@given(cases=st.lists(st.tuples(st.sampled_from([1, 2, 16]), st.lists(
    st.tuples(st.integers(0, 1 << 20), st.sampled_from(KINDS), st.integers(0, (1 << 64) - 1)),
    min_size=1, max_size=4)), min_size=10, max_size=10))
def test_corrupt_heaps_never_crash_a_collection(cases) -> None:
    proc = run_isolated(CORRUPT_CHILD, stdin=json.dumps(cases))
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout)
    assert outcomes["ok"] + outcomes["typed"] == 3 * len(cases)
    assert outcomes["typed"] > 0
