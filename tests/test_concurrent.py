"""A mutator thread running beside a collector: the checksum proves no load saw a stale
object and no store was lost; the graph, verify and the stall metrics agree."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import heapalias as ha
from heapalias import collectors
from heapalias import concurrent as cc
from heapalias.concurrent.metrics import STALL_DTYPE, mmu, pause_percentiles

from conftest import mapping_count, open_fds

DESIGNS = [name for name in cc.DESIGNS if name != "none"]
HEAP = 8 << 20
OBJECTS = 5_000


@pytest.fixture(scope="module")
def plans():
    """A plan laid out for each design, over heaps of its own."""
    heaps = [ha.Heap(HEAP, backing=cc.TRAP_BACKING.get(design, "memfd"),
                     name=f"concurrent-{design}") for design in DESIGNS]
    yield {design: cc.plan_for(heap, design) for design, heap in zip(DESIGNS, heaps, strict=True)}
    for heap in heaps:
        heap.close()


@pytest.fixture(scope="module")
def plan(plans):
    return plans["stw"]


def reference_and(plan, design: str, mix: cc.MutatorMix, collections: int, seed: int = 1):
    """The no-collection run and ``design``'s, on the same graph: (runs, final shapes)."""
    runs, shapes = [], []
    for name in ("none", design):
        roots = cc.live_graph(plan, OBJECTS, seed=seed)
        runs.append(cc.run(plan, roots, name, mix=mix, collections=collections, verify=True))
        collectors.verify(plan.objects, roots, spaces=[plan.allocation_space.name])
        shapes.append(plan.objects.shape(roots))
    return runs, shapes


mixes = st.builds(cc.MutatorMix, operations=st.integers(1, 40_000),
                  store_permille=st.integers(0, 500), alloc_permille=st.integers(0, 300),
                  path_length=st.integers(1, 16), seed=st.integers(0, (1 << 64) - 1))


@settings(max_examples=25, deadline=None)
@given(mix=mixes, collections=st.integers(0, 12), design=st.sampled_from(DESIGNS),
       seed=st.integers(0, 1 << 20))
def test_a_design_reads_and_leaves_what_the_reference_run_does(plans, mix, collections, design,
                                                                seed) -> None:
    (reference, run), (expected, shape) = reference_and(plans[design], design, mix, collections,
                                                        seed)
    assert run.checksum == reference.checksum
    assert shape == expected
    assert (run.operations, run.loads, run.stores, run.allocations) == (
        reference.operations, reference.loads, reference.stores, reference.allocations)
    assert run.collections == collections and reference.collections == 0
    assert run.complete
    for r in (run, reference):  # CPU time never exceeds the wall time it was taken over
        assert 0 < r.mutator_cpu_ns <= r.mutator_ns + 10**6 and 0 < r.mutator_on_cpu <= 1
    assert run.collector_cpu_ns > 0 or not collections
    if design == "stw":
        assert run.stall_count <= collections and not run.slow_paths  # late cycles stall nobody


@pytest.mark.parametrize("design", [d for d in DESIGNS if "2m" in cc.TRAP_FEATURES.get(d, "2m")])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_design_on_2m_hugetlb_pages(pool_2m, design, seed) -> None:
    with ha.Heap(HEAP, pages="2m", name=f"concurrent-2m-{design}") as heap:
        assert heap.pages_report()[0].obtained == "2 MiB hugetlb"
        mix = cc.MutatorMix(operations=60_000, store_permille=200, alloc_permille=150, seed=seed)
        (reference, run), (expected, shape) = reference_and(cc.plan_for(heap, design), design,
                                                            mix, 20, seed)
    assert run.checksum == reference.checksum and shape == expected and run.collections == 20


@pytest.mark.parametrize("design", DESIGNS)
def test_many_collections_back_to_back(plans, design) -> None:
    mix = cc.MutatorMix(operations=150_000, alloc_permille=100, seed=7)
    (reference, run), (expected, shape) = reference_and(plans[design], design, mix, 150)
    assert run.collections == 150 and run.checksum == reference.checksum and shape == expected
    assert run.objects_relocated > 0 and run.bytes_relocated > 0


def test_the_mutator_collects_when_it_runs_out_of_room(plan) -> None:
    """No scheduled collection, but far more allocated than a semispace holds."""
    mix = cc.MutatorMix(operations=400_000, store_permille=300, alloc_permille=600, seed=3)
    roots = cc.live_graph(plan, OBJECTS)
    with pytest.raises(ha.SpaceFull):  # the reference run cannot collect
        cc.run(plan, roots, "none", mix=mix)
    roots = cc.live_graph(plan, OBJECTS)
    run = cc.run(plan, roots, "stw", mix=mix, collections=0)
    assert run.collections > 0 and set(run.stalls["kind"]) == {1}  # allocation stalls
    collectors.verify(plan.objects, roots, spaces=[plan.allocation_space.name])


@pytest.mark.parametrize("design", ["colored", "masked"])
def test_a_flip_while_the_mutator_waits_for_room_moves_its_barrier_on(design) -> None:
    """Cycles the mutator asks for when it runs out of room flip while it is parked inside
    an allocating operation. The rest of that operation must test the new good color: with
    the old one, it walked into from-space (HeapCorruption, or a wrong checksum)."""
    mix = cc.MutatorMix(operations=4_000_000)
    with ha.Heap(64 << 20, backing="memfd", name="room-reference") as big:
        plan = cc.plan_for(big, design)
        reference = cc.run(plan, cc.live_graph(plan, OBJECTS), "none", mix=mix, collections=0)
    with ha.Heap(HEAP, backing="memfd", name="room-design") as small:
        plan = cc.plan_for(small, design)
        run = cc.run(plan, cc.live_graph(plan, OBJECTS), design, mix=mix, collections=0,
                     collector_delay_ns=2_000)
    assert run.collections >= 2  # every one of them asked for by the mutator
    assert run.checksum == reference.checksum


@pytest.mark.parametrize("design", ["colored", "masked"])
def test_roots_turned_bad_by_the_flip_are_healed_by_whoever_loads_them_first(design) -> None:
    """The flip pause leaves the roots as they are: the mutator loads each through its
    barrier and the collector heals them after the pause, racing it. With thousands of
    roots and walks of one step, the mutator meets a bad root at most operations after a
    flip, and every root must end with the good color and the right object."""
    mix = cc.MutatorMix(operations=200_000, path_length=1, store_permille=300, seed=4)
    checksums = []
    with ha.Heap(HEAP, backing="memfd", name="roots-race") as heap:
        plan = cc.plan_for(heap, design)
        for name in ("none", design):
            roots = cc.live_graph(plan, OBJECTS, roots=4_000, seed=4)
            run = cc.run(plan, roots, name, mix=mix, collections=40, verify=True)
            checksums.append(run.checksum)
            collectors.verify(plan.objects, roots, spaces=[plan.allocation_space.name])
        good = plan.objects.codec.color(int(roots[roots != 0][0]))
        assert all(plan.objects.codec.color(int(r)) == good for r in roots if r)
    assert checksums[0] == checksums[1] and run.slow_paths > 0


@pytest.mark.parametrize("design", ["colored", "masked"])
def test_allocation_buffers_fill_to_space_to_the_last_object(design) -> None:
    """Mutator and collector each relocate into a to-space buffer of their own; what a
    buffer leaves unused is a filler the scan and verify step over. An allocation-heavy
    mutator retires buffers at every turn (full, asked by the scan, parked), and a
    to-space nearly filled by live data leaves the last buffers cut to size: the run
    matches the reference, or ends in SpaceFull, never in a bad header."""
    mix = cc.MutatorMix(operations=150_000, alloc_permille=500, seed=6)
    checksums = []
    with ha.Heap(HEAP, backing="memfd", name="lab-fill") as heap:
        plan = cc.plan_for(heap, design)
        for name in ("none", design):
            roots = cc.live_graph(plan, OBJECTS, seed=6)
            run = cc.run(plan, roots, name, mix=mix, collections=60, verify=True)
            checksums.append(run.checksum)
            collectors.verify(plan.objects, roots, spaces=[plan.allocation_space.name])
        assert checksums[0] == checksums[1] and run.slow_paths > 0
        # Live data filling all but a few buffers of to-space.
        roots = cc.live_graph(plan, 60_000, seed=6)
        with pytest.raises(ha.SpaceFull):
            cc.run(plan, roots, design, mix=cc.MutatorMix(operations=400_000,
                                                          alloc_permille=900, seed=6),
                   collections=400, verify=True)


def test_minor_hands_the_mutator_spare_chunks_ahead(plans) -> None:
    """The minor design maps a spare allocation chunk ahead; the mutator takes it when
    its chunk is used up, leaving the old tail as a filler, and the end pause turns a
    spare never taken into one. An allocation-heavy mutator uses many chunks a cycle:
    the run matches the reference, and verify parses to-space whole after every cycle
    (a chunk tail or spare left unfilled would read as a zero header)."""
    plan = plans["minor"]
    mix = cc.MutatorMix(operations=60_000, alloc_permille=600, seed=8)
    (reference, run), (expected, shape) = reference_and(plan, "minor", mix, 40, seed=8)
    assert run.checksum == reference.checksum and shape == expected
    assert run.allocations == reference.allocations > 30_000 and run.collections == 40


@pytest.mark.parametrize("design", DESIGNS)
def test_runs_back_to_back_on_one_graph_match_the_reference(plans, design) -> None:
    """Each run starts from the heap the last one left: for colored and masked, a heap
    whose references carry the last good color, whatever the plan was built with."""
    plan, results = plans[design], {}
    for name in ("none", design):
        roots = cc.live_graph(plan, OBJECTS, seed=5)
        results[name] = [cc.run(plan, roots, name, mix=cc.MutatorMix(operations=30_000, seed=i),
                                collections=i + 1).checksum for i in range(4)]
        collectors.verify(plan.objects, roots, spaces=[plan.allocation_space.name])
        results[name].append(plan.objects.shape(roots))
    assert results[design] == results["none"]


@pytest.mark.parametrize("design", ["colored", "masked"])
def test_old_bytes_above_the_tops_never_read_as_objects(plans, design) -> None:
    """A relocating cycle tells an object not yet published by its zero header: bytes a
    previous run left above a space's top once passed for headers (HeapCorruption)."""
    plan, checksums = plans[design], []
    for name in ("none", design):
        roots = cc.live_graph(plan, OBJECTS, seed=9)
        for space in plan.spaces:  # a valid-looking header, repeated, where nothing lives
            plan.objects.words[space.top // 8:space.end // 8] = ha.objects.make_header(4, 1)
        mix = cc.MutatorMix(operations=100_000, alloc_permille=200, seed=9)
        checksums.append(cc.run(plan, roots, name, mix=mix, collections=30).checksum)
        collectors.verify(plan.objects, roots, spaces=[plan.allocation_space.name])
    assert checksums[0] == checksums[1]


@pytest.mark.parametrize("design", ["colored", "masked"])
def test_the_concurrent_designs_pause_only_for_the_flip_and_the_end(plans, design) -> None:
    """Each cycle stops the mutator twice at least (flip, end), each time briefly; the
    rest of its stalls are barrier slow paths, each relocating or finding one object.
    A slowed collector leaves the mutator stale references to meet (at full speed it
    may heal them all first)."""
    plan = plans[design]
    roots = cc.live_graph(plan, OBJECTS)
    # Two cycles, each ~10 ms at 2 us per stale reference healed, a third and two thirds
    # into a program of ~300 ms: the mutator runs through both, with room for a loaded
    # machine (at ~200 ms, a busy second CPU once let the mutator finish first), and
    # allocates less than a semispace between them (no allocation stalls).
    run = cc.run(plan, roots, design, mix=cc.MutatorMix(operations=3_000_000), collections=2,
                 collector_delay_ns=2_000)
    kinds = np.bincount(run.stalls["kind"], minlength=3)
    # The first cycle's flip and end at least: the second's end may come after the
    # mutator is done on a loaded machine, and then stalls nobody.
    assert kinds[0] >= 2 and kinds[1] == 0 and kinds[2] == run.slow_paths > 0
    assert run.bytes_relocated > 0
    collectors.verify(plan.objects, roots, spaces=[plan.allocation_space.name])
    # The good color moved on once per cycle, and every root carries it.
    good = plan.objects.codec.color(int(roots[roots != 0][0]))
    assert all(plan.objects.codec.color(int(r)) == good for r in roots if r)


def task_count() -> int:
    return len(os.listdir("/proc/self/task"))


def fail_every_way() -> None:
    with ha.Heap("4M") as heap:
        # A to-space too small for the graph: the collector's first cycle fails.
        objects = ha.ObjectHeap(heap, spaces={"from": (8, 15 << 18), "to": (15 << 18, 4 << 20)})
        plan = collectors.SemiSpace(objects)
        roots = cc.live_graph(plan, 40_000)
        with pytest.raises(ha.SpaceFull):
            cc.run(plan, roots, "stw", mix=cc.MutatorMix(operations=1_000), collections=1)
        # A corrupt header the mutator (or the collector) meets.
        roots = cc.live_graph(plan, 2_000)
        for obj in list(objects.objects("from"))[::50]:
            objects.words[obj.offset // 8] = 0xBAD
        with pytest.raises(ha.HeapCorruption):
            cc.run(plan, roots, "stw", mix=cc.MutatorMix(operations=1_000_000), collections=8)
        # A graph without identity words: the mutator finds no node it can walk.
        plan.reset()
        bare = ha.workloads.linked_list(objects, 100, space="from").roots.copy()
        with pytest.raises(ha.HeapCorruption):
            cc.run(plan, bare, "stw")


def test_failures_are_typed_errors_and_leave_nothing_behind() -> None:
    fail_every_way()  # glibc keeps the first thread's stack and arena for the next ones
    before = (task_count(), open_fds(), mapping_count())
    for _ in range(3):
        fail_every_way()
    assert (task_count(), open_fds(), mapping_count()) == before


@pytest.mark.parametrize("call", [
    lambda plan, roots: cc.run(plan, roots, "g1"),
    lambda plan, roots: cc.run(plan, roots, "colored"),  # an offset heap has no colors
    lambda plan, roots: cc.run(plan.objects, roots),
    lambda plan, roots: cc.run(plan, roots.astype(np.int64)),
    lambda plan, roots: cc.run(plan, roots[:0]),
    lambda plan, roots: cc.run(plan, roots, mix="fast"),
    lambda plan, roots: cc.run(plan, roots, collections=-1),
    lambda plan, roots: cc.run(plan, roots, collector_delay_ns=-5),
    lambda plan, roots: cc.MutatorMix(store_permille=700, alloc_permille=400),
    lambda plan, roots: cc.MutatorMix(path_length=0),
])
def test_bad_arguments_are_invalid(plan, call) -> None:
    roots = cc.live_graph(plan, 100)
    with pytest.raises(ha.InvalidArgument):
        call(plan, roots)


def stall_log(*intervals: tuple[int, int]) -> np.ndarray:
    log = np.zeros(len(intervals), dtype=STALL_DTYPE)
    log["start_ns"], log["ns"] = zip(*intervals, strict=True) if intervals else ((), ())
    return log


def brute_mmu(intervals, start: int, duration: int, window: int) -> float:
    busy = np.zeros(duration, dtype=bool)
    for s, n in intervals:
        busy[s - start:s - start + n] = True
    sums = np.convolve(busy, np.ones(window, dtype=int), mode="valid")
    return 1 - sums.max() / window


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.tuples(st.integers(0, 50), st.integers(1, 30)), max_size=8),
       window=st.integers(1, 120))
def test_mmu_matches_a_brute_force_count(gaps, window) -> None:
    intervals, t = [], 100
    for gap, length in gaps:
        intervals.append((t + gap, length))
        t += gap + length
    duration = t - 100 + 10
    expected = brute_mmu(intervals, 100, duration, min(window, duration))
    assert mmu(stall_log(*intervals), 100, duration, window) == pytest.approx(expected)


def test_pause_percentiles() -> None:
    log = stall_log(*[(i * 10_000, 1_000 * (i + 1)) for i in range(100)])
    summary = pause_percentiles(log)
    assert summary["count"] == 100 and summary["max_us"] == 100.0
    assert 50 <= summary["p50_us"] <= 51 and summary["p99_us"] > 99
    assert pause_percentiles(stall_log())["count"] == 0
    assert mmu(stall_log(), 0, 1000, 100) == 1.0


def test_the_cli_runs_every_design_side_by_side(tmp_path) -> None:
    from click.testing import CliRunner

    from heapalias import cli

    plot = tmp_path / "mmu.png"
    args = ["concurrent", "--size", "16M", "--objects", "20000", "--operations", "50000",
            "--rounds", "2", "--pages", "4k", "--collections", "4"]
    result = CliRunner().invoke(cli.main, [*args, "--json", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[:result.output.rindex("}") + 1])
    rows = {(r["design"], r["phase"]): r for r in data["results"]}
    assert set(rows) == {(d, p) for d in DESIGNS for p in ("cold", "steady")}
    assert all(r["checksums_equal"] and r["collections"] == 4 for r in rows.values())
    assert set(rows["colored", "steady"]["mmu"]) == {"0.1ms", "1ms", "10ms"}
    assert all(0 < r["reference_on_cpu"] <= 1 for r in rows.values())
    assert "barrier_fast_path" in rows["masked", "steady"] and plot.stat().st_size > 10_000
    table = CliRunner().invoke(cli.main, [*args, "--design", "colored"])
    assert table.exit_code == 0 and "colored" in table.output and "stw" not in table.output
    bad = CliRunner().invoke(cli.main, ["concurrent", "--store-permille", "900",
                                        "--alloc-permille", "200"])
    assert bad.exit_code == 2 and "exceeds 1000" in bad.output
