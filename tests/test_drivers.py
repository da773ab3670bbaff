"""GCBench and binary-trees drivers, relocation by remap or copy, and the limit probes."""

from __future__ import annotations

import signal

import numpy as np
import pytest

import heapalias as ha
from heapalias import drivers, limits
from heapalias.relocation import RelocationArea, copy

from conftest import mapped_at, run_isolated


def semispaces(heap: ha.Heap, **options) -> ha.ObjectHeap:
    half = heap.size // 2
    return ha.ObjectHeap(heap, spaces={"a": (8, half), "b": (half, heap.size)}, **options)


@pytest.mark.parametrize("encoding", ["offset", "address"])
def test_gcbench_gives_its_check_values(encoding) -> None:
    with ha.Heap("64M") as heap:
        run = drivers.gcbench(semispaces(heap, encoding=encoding))
    assert run.checks == drivers.expected_gcbench_checks()
    assert run.checks[-1] == 1  # array[1000] == 1.0/1000 after every collection
    assert run.collections > 0 and len(run.pauses_ns) == run.collections
    assert 0 < run.gc_ns < run.total_ns and run.mutator_ns > 0
    assert run.bytes_copied > 0
    assert run.objects_allocated == sum(run.checks[:-1]) + 1  # every tree node, and the array
    summary = run.pause_summary()
    assert summary["min_ms"] <= summary["median_ms"] <= summary["max_ms"]


@pytest.mark.parametrize("encoding", ["colored", "masked"])
def test_gcbench_survives_heaps_on_colored_views(encoding) -> None:
    with ha.Heap("64M") as heap:
        objects = semispaces(heap, encoding=encoding, colors=heap.multimap(2, shift=27),
                             store_color=1)
        assert drivers.gcbench(objects).checks == drivers.expected_gcbench_checks()


@pytest.mark.parametrize("depth", [6, 10, 12])
def test_binary_trees_prints_the_canonical_checks(depth) -> None:
    with ha.Heap("16M") as heap:
        run = drivers.binary_trees(semispaces(heap), depth)
    assert run.checks == drivers.expected_binary_trees_checks(depth)
    if depth == 10:  # the program's published output for n=10
        assert run.checks == (4095, 31744, 32512, 32704, 32752, 2047)


def perfect_depth(node: ha.Obj) -> int:
    """The depth of the perfect binary tree under ``node``; fails on any other shape."""
    left, right = node.refs
    if left is None and right is None:
        return 0
    depths = {perfect_depth(left), perfect_depth(right)}
    assert len(depths) == 1, f"unbalanced at {node}"
    return depths.pop() + 1


def test_bottom_up_trees_are_perfect_and_in_post_order() -> None:
    with ha.Heap("16M") as heap:
        objects = semispaces(heap)
        run = drivers.binary_trees(objects, 4)  # small enough that nothing is collected
        assert run.collections == 0
        nodes = list(objects.objects(next(iter(objects.spaces))))
        stretch = 2 ** 8 - 1  # the first tree, depth 7, ends with its root (post-order)
        assert perfect_depth(nodes[stretch - 1]) == 7
        assert len(objects.reachable([nodes[stretch - 1].ref])) == stretch
        assert nodes[0].refs[0] is None and list(nodes[2].refs) == [nodes[0], nodes[1]]


def test_top_down_trees_are_trees_not_dags() -> None:
    """Populate's node count (GCBench's check) counts paths; mark counts distinct objects."""
    with ha.Heap("1G") as heap:
        objects = semispaces(heap)  # 512 MiB each: GCBench runs without a collection
        run = drivers.gcbench(objects)
        assert run.collections == 0
        long_lived_root = 8 + (2 ** 19 - 1) * 32  # right after the stretch tree
        assert ha.collectors.mark(objects, [long_lived_root]).objects == 2 ** 17 - 1
        assert run.checks[-2] == 2 ** 17 - 1


def test_live_data_stays_walkable_after_a_driver() -> None:
    with ha.Heap("16M") as heap:
        objects = semispaces(heap)
        drivers.binary_trees(objects, 8)
        live = next(s for s in objects.spaces.values() if s.used)
        assert ha.collectors.walk(objects, live.name).objects > 0


def test_drivers_reject_bad_setups() -> None:
    with ha.Heap("1M") as heap:
        with pytest.raises(ha.InvalidArgument):
            drivers.gcbench(heap.objects)  # one space, not two
        with pytest.raises(ha.SpaceFull):  # GCBench's live data does not fit 512 KiB
            drivers.gcbench(semispaces(heap))
        with pytest.raises(ha.InvalidArgument):
            drivers.binary_trees(semispaces(heap), 31)


@pytest.mark.parametrize("backing", ["memfd", "anon"])
def test_remap_relocation_is_bit_identical_and_leaves_prot_none(backing) -> None:
    with ha.Heap("8M", backing=backing) as heap:
        data = np.random.default_rng(3).integers(0, 1 << 63, size=heap.size // 8, dtype=np.uint64)
        heap.view.array(np.uint64)[:] = data
        source = heap.alias()
        area = RelocationArea(heap, 4 << 20)
        moved, stats = area.remap(source, 1 << 20, 2 << 20, at=1 << 20, populate=True)
        assert (stats.objects, stats.bytes) == (1, 2 << 20) and stats.nanoseconds > 0
        assert moved.address == area.address + (1 << 20)
        assert np.array_equal(moved.array(np.uint64), data[1 << 17: 3 << 17])
        moved.array(np.uint64)[0] = 7  # still the same physical pages
        assert heap.view.array(np.uint64)[1 << 17] == 7
        assert mapped_at(source.address + (1 << 20)).split()[1] == "---p"
        with pytest.raises(ha.InvalidArgument, match="relocated away"):
            source.array()
        assert source.array(np.uint8, 0, 1 << 20)[0] == data.view(np.uint8)[0]
        with pytest.raises(ha.InvalidArgument):
            area.remap(source, 1 << 20, 4096)  # already moved
        with pytest.raises(ha.InvalidArgument):
            area.remap(source, 0, 4096, at=1 << 20)  # area bytes in use
        with pytest.raises(ha.InvalidArgument):
            area.remap(source, 100, 4096)  # not page-aligned
        with pytest.raises(ha.InvalidArgument):
            source.protect("r")
        live = source.array(np.uint8, 0, 16)
        with pytest.raises(ha.ViewInUse):
            area.remap(source, 4 << 20, 4096)
        del live


def test_stale_pointer_into_a_relocated_range_faults() -> None:
    proc = run_isolated("""
        import ctypes, heapalias as ha
        from heapalias.relocation import RelocationArea
        heap = ha.Heap("1M")
        source = heap.alias()
        RelocationArea(heap, 1 << 20).remap(source, 0, 65536)
        print("reading", flush=True)
        ctypes.c_uint64.from_address(source.address).value
    """, expect_signal=signal.SIGSEGV)
    assert "reading" in proc.stdout  # it faulted on the stale read, not before


def test_private_heaps_relocate_by_copy_only() -> None:
    with ha.Heap("1M", backing="private") as heap:
        with pytest.raises(ha.InvalidArgument):
            RelocationArea(heap, 1 << 20)
        heap.view.array(np.uint8, 0, 4096)[:] = 9
        stats = copy(heap.view, 0, 4096, heap.view, 8192)
        assert stats.bytes == 4096 and heap.view.array(np.uint8, 8192, 4096).min() == 9
        with pytest.raises(ha.InvalidArgument):
            copy(heap.view, 0, 4096, heap.view, heap.size - 100)


def test_limits_are_positive_and_plausible() -> None:
    measured = limits.measure("16M", repeats=1)
    assert measured.memcpy_gb_per_s > 0.1 and measured.read_gb_per_s > 0.1
    assert 0 < measured.load_latency_ns < 10_000
    assert measured.fault_ns_per_page > 0
    assert set(measured.as_dict()) >= {"memcpy_gb_per_s", "read_gb_per_s"}
