"""The contract every registered collector keeps: a plan is tested here the moment it is
registered, over random graphs in every encoding, through its own hooks and the drivers."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_collectors import ENCODINGS, graphs

import heapalias as ha
from heapalias import collectors, drivers, native, workloads
from heapalias.errors import InvalidArgument, SpaceFull

PLANS = sorted(collectors.registered())
HEAP = 1 << 21
DOCS = Path(__file__).resolve().parent.parent / "docs" / "collectors"


@pytest.fixture(scope="module")
def plans():
    """One plan per (registered plan, encoding), reused across examples."""
    with ha.Heap(HEAP, name="plans") as heap:
        colors = heap.multimap(3, shift=22)
        yield {
            (name, enc): collectors.plan_named(name).over(
                heap, encoding=enc, colors=colors if enc in ("colored", "masked") else None,
                store_color=1 if enc in ("colored", "masked") else 0)
            for name in PLANS for enc in ENCODINGS
        }


def lay_out(plan: collectors.Plan, graph) -> np.ndarray:
    """Build ``graph`` in the plan's allocation space; the root references."""
    nrefs, payload, targets, roots = graph
    plan.reset()
    objects = plan.objects
    edges = [(i, k, t) for i, ts in enumerate(targets) for k, t in enumerate(ts) if t is not None]
    src, slot, dst = np.array(edges, dtype=np.int64).reshape(-1, 3).T
    offsets = objects.build(np.array(nrefs), np.array(payload), edges=(src, slot, dst),
                            space=plan.allocation_space.name)
    for i, offset in enumerate(offsets):  # payloads that tell objects apart
        objects.deref(int(objects.codec.encode(int(offset)))).payload[:] = i
    return np.array([0 if r is None else objects.codec.encode(int(offsets[r])) for r in roots],
                    dtype=np.uint64)


def in_plan_spaces(plan: collectors.Plan, roots: np.ndarray) -> bool:
    names = [space.name for space in plan.spaces]
    return all(any(plan.objects.space(n).contains(plan.objects.codec.decode(int(r)))
                   for n in names) for r in roots if r)


@pytest.mark.parametrize("name", PLANS)
def test_a_plan_declares_what_it_is(name) -> None:
    plan = collectors.plan_named(name)
    assert plan.name == name and isinstance(plan.kind, int)
    assert plan.write_barrier and plan.read_barrier and plan.steps
    for size in (1 << 16, 1 << 20, 3 << 28):
        spaces = sorted(plan.layout(size).values())
        assert all(8 <= start < end <= size and not (start | end) & 7 for start, end in spaces)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spaces))
    page = DOCS / f"{name}.md"
    assert page.is_file(), f"every collector has a docs page: {page}"
    assert plan.name in page.read_text()


@settings(max_examples=40, deadline=None)
@given(graph=graphs(), encoding=st.sampled_from(ENCODINGS), name=st.sampled_from(PLANS))
def test_collections_preserve_the_reachable_graph(plans, graph, encoding, name) -> None:
    plan = plans[name, encoding]
    roots = lay_out(plan, graph)
    objects = plan.objects
    before, reachable = objects.shape(roots), objects.reachable(roots)
    for collect in (plan.collect, plan.collect, plan.collect_for, plan.collect_for):
        stats = collect(roots)
        assert stats.objects <= len(reachable)  # nothing unreachable is moved or marked
        assert objects.shape(roots) == before
        assert in_plan_spaces(plan, roots)
        collectors.verify(objects, roots, spaces=[space.name for space in plan.spaces])
        live = sum(collectors.walk(objects, space.name).objects for space in plan.spaces)
        assert live >= len(reachable)


@pytest.mark.parametrize("name", PLANS)
def test_collect_for_refuses_what_no_collection_can_make_room_for(plans, name) -> None:
    plan = plans[name, "offset"]
    plan.reset()
    roots = workloads.linked_list(plan.objects, 100, space=plan.allocation_space.name).roots
    before = plan.objects.shape(roots)
    with pytest.raises(SpaceFull):
        plan.collect_for(roots, HEAP)
    assert plan.objects.shape(roots) == before
    for bad in (-1, 1 << 63, 1.5, "8"):
        with pytest.raises(InvalidArgument):
            plan.collect_for(roots, bad)


@pytest.mark.parametrize("name", PLANS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_drivers_run_through_every_plan(plans, name, encoding) -> None:
    plan = plans[name, encoding]
    run = drivers.binary_trees(plan, 12)
    assert run.checks == drivers.expected_binary_trees_checks(12)
    assert run.collections > 0  # the 2 MiB heap fills: the slow path ran
    assert len(run.pauses_ns) == run.collections and run.gc_ns > 0
    for space in plan.spaces:
        collectors.walk(plan.objects, space.name)  # every space parses after the run


@pytest.mark.parametrize("name", PLANS)
def test_a_full_collection_is_a_typed_error_that_keeps_the_spaces_in_place(plans, name) -> None:
    plan = plans[name, "offset"]
    plan.reset()
    allocation = plan.allocation_space
    # Leave 4 KiB free in every other space, with live objects: a plan that reclaims
    # garbage before it evacuates must find the heap as full.
    fillers = [workloads.large_objects(plan.objects, 1, space.end - space.top - 4096,
                                       space=space.name).roots for space in plan.spaces[1:]]
    roots = np.concatenate([workloads.linked_list(plan.objects, 1000, space=allocation.name).roots,
                            *fillers])
    assert allocation.used > 4096 * len(plan.spaces)
    with pytest.raises(SpaceFull):
        plan.collect(roots)
    assert plan.allocation_space is allocation  # no flip after a failed collection
    for space in plan.spaces:  # half-done, but every space still parses
        collectors.walk(plan.objects, space.name)


def test_the_registry_refuses_what_is_not_a_new_plan() -> None:
    with pytest.raises(InvalidArgument, match="already registered"):
        class Another(collectors.SemiSpace):  # same name, another class
            pass
        collectors.register(Another)
    with pytest.raises(InvalidArgument, match="Plan subclasses"):
        collectors.register(int)
    with pytest.raises(InvalidArgument, match=r"registered: .*semispace"):
        collectors.plan_named("g1")
    assert "semispace" in collectors.registered()


def test_an_unknown_c_plan_is_refused_by_the_hooks() -> None:
    with ha.Heap("1M") as heap:
        plan = collectors.SemiSpace.over(heap)
        gc = plan.to_native()
        gc.plan = 99
        with pytest.raises(InvalidArgument):
            native.loop_result(*native.collect(gc, np.zeros(0, np.uint64)), "collect")
        gc.plan, gc.nspaces = 0, 3
        with pytest.raises(InvalidArgument):
            native.loop_result(*native.collect(gc, np.zeros(0, np.uint64)), "collect")
