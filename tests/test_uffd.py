"""userfaultfd: the probe, the relocation calls, and the page-trap design ``minor``, whose
mutator has no barrier: every to-space page it may touch before the collector has
scanned it traps to the collector. The checksum, verify and the shape must equal the
no-collection run's, the trap path must really run, and no failure may leave the mutator
blocked, a range registered, or an fd or mapping behind."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import heapalias as ha
from heapalias import collectors, native, uffd
from heapalias import concurrent as cc
from heapalias.concurrent.metrics import STALL_KINDS
from heapalias.native import lib

from conftest import asan_loaded, mapping_count, maps_text, open_fds, run_isolated

FAULT = STALL_KINDS.index("fault")


def test_the_missing_uapi_constants_have_the_kernels_values() -> None:
    """Linux 6.1 headers lack some of them; uffd_abi.h supplies the kernel's uapi values."""
    assert lib.UFFD_FEATURE_MOVE == 1 << 16
    assert (lib.UFFD_FEATURE_MINOR_SHMEM, lib.UFFD_FEATURE_MINOR_HUGETLBFS) == (1 << 10, 1 << 9)
    assert lib.UFFDIO_REGISTER_MODE_MINOR == 1 << 2


def test_the_probe_asks_the_kernel_and_its_answer_holds() -> None:
    cap = uffd.capability()
    assert set(cap.features) == set(uffd.FEATURES) and cap.usable == (cap.syscall or cap.device)
    assert json.loads(json.dumps(cap.as_dict()))["features"] == cap.features
    if not cap.usable:
        with pytest.raises(ha.FeatureUnavailable) as info:
            uffd.require("MINOR_SHMEM", "a test")
        assert "unprivileged_userfaultfd" in info.value.remedy
        return
    # A feature the kernel offers can be asked for in the handshake; the answer is the same.
    features, _ = native.uffd_features(not cap.syscall)
    assert {name: bool(features & bit) for name, bit in uffd.FEATURES.items()} == cap.features
    with pytest.raises(ha.FeatureUnavailable):
        uffd.require("NO_SUCH_FEATURE", "a test")


def test_probe_cli_reports_userfaultfd() -> None:
    from click.testing import CliRunner

    from heapalias import cli

    result = CliRunner().invoke(cli.main, ["probe", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["userfaultfd"]
    assert set(report["features"]) == set(uffd.FEATURES) and "usable" in report


@pytest.mark.parametrize("move", [False, True], ids=["copy", "move"])
def test_relocation_through_a_userfaultfd_installs_the_bytes(move) -> None:
    with ha.Heap(16 << 12, backing="private") as source, \
            ha.Heap(16 << 12, backing="private") as target:
        words, moved = source.view.array(np.uint64), target.view.array(np.uint64)
        pattern = np.arange(len(words), dtype=np.uint64) * 7
        native.touch(source.view.address, source.size, 4096, True)
        words[:] = pattern
        # uffd.relocate fills the source itself; time only the ioctl, as it does.
        native.madvise(target.view.address, target.size, lib.MADV_DONTNEED)
        stats = native.relocate_uffd(target.view.address, source.view.address, source.size,
                                     move)
        assert stats.bytes == source.size and (moved == pattern).all()
        # MOVE takes the pages themselves: the source reads as fresh zero pages.
        assert (words == 0).all() if move else (words == pattern).all()
        assert uffd.relocate(source.view, target.view, move).bytes == source.size


def test_relocation_through_a_userfaultfd_fails_typed() -> None:
    """A destination that is not mapped: the ioctl's errno, as SyscallFailed."""
    with pytest.raises(ha.SyscallFailed):
        native.relocate_uffd(1 << 12, 2 << 12, 1 << 12, False)


HEAP = 8 << 20
OBJECTS = 5_000
TRAPS = list(cc.TRAP_FEATURES)  # minor, copy, move
#: Each page-trap design on each page size it traps.
TRAPPED_PAGES = [(d, p) for d in TRAPS for p in cc.TRAP_FEATURES[d]]


def trap_heap(design: str, pages: str = "4k", name: str = "trap") -> ha.Heap:
    return ha.Heap(HEAP, backing=cc.TRAP_BACKING[design], pages=pages, name=f"{name}-{design}")


def reference_and(heap, design, mix, collections, *, seed=1, delay=0, objects=OBJECTS):
    """The no-collection run and ``design``'s on the same graph: (runs, final shapes)."""
    plan = cc.plan_for(heap, design)
    runs, shapes = [], []
    for name in ("none", design):
        roots = cc.live_graph(plan, objects, seed=seed)
        runs.append(cc.run(plan, roots, name, mix=mix, collections=collections, verify=True,
                           collector_delay_ns=delay if name == design else 0))
        collectors.verify(plan.objects, roots, spaces=[plan.allocation_space.name])
        shapes.append(plan.objects.shape(roots))
    return runs, shapes


@pytest.mark.parametrize(("design", "pages"), TRAPPED_PAGES)
def test_the_trap_path_runs_and_reads_what_the_reference_run_does(design, pages,
                                                                  request) -> None:
    """The mutator meets pages the collector has not made safe yet (minor's collector is
    slowed to make sure of it): every one faults, is made safe and mapped, and the program
    cannot tell."""
    if pages == "2m":
        request.getfixturevalue("pool_2m")
    mix = cc.MutatorMix(operations=300_000, store_permille=200, alloc_permille=150, seed=4)
    with trap_heap(design, pages) as heap:
        (reference, run), (expected, shape) = reference_and(heap, design, mix, 6, delay=2_000)
    assert run.checksum == reference.checksum and shape == expected
    assert run.collections == 6 and run.faults > 0 and run.pages_exposed > 0
    assert (run.stalls["kind"] == FAULT).sum() == run.faults
    starts, ends = run.stalls["start_ns"], run.stalls["start_ns"] + run.stalls["ns"]
    assert (starts[1:] >= ends[:-1]).all()  # one mutator: its stalls never overlap


@settings(max_examples=15, deadline=None)
@given(operations=st.integers(1, 30_000), store=st.integers(0, 500), alloc=st.integers(0, 300),
       path=st.integers(1, 16), seed=st.integers(0, (1 << 64) - 1),
       collections=st.integers(0, 10), delay=st.sampled_from([0, 0, 500, 5_000]),
       design=st.sampled_from(TRAPS))
def test_a_trap_design_matches_the_reference_under_any_mix(operations, store, alloc, path,
                                                           seed, collections, delay,
                                                           design) -> None:
    mix = cc.MutatorMix(operations=operations, store_permille=store, alloc_permille=alloc,
                        path_length=path, seed=seed)
    with trap_heap(design, name="hypothesis") as heap:
        (reference, run), (expected, shape) = reference_and(heap, design, mix, collections,
                                                            seed=seed % 97, delay=delay)
    assert run.checksum == reference.checksum and shape == expected
    assert run.collections == collections


@pytest.mark.parametrize("design", TRAPS)
def test_a_hundred_collections_with_traps(design) -> None:
    mix = cc.MutatorMix(operations=120_000, alloc_permille=100, seed=11)
    with trap_heap(design, name="stress") as heap:
        (reference, run), (expected, shape) = reference_and(heap, design, mix, 100, delay=300)
    assert run.collections == 100 and run.checksum == reference.checksum and shape == expected


def fail_mid_cycle(design: str) -> None:
    """Corrupt objects the collector meets: minor's scan after the flip, with its collector
    slowed, so that the mutator is likely blocked on a trap when it fails; copy's mark."""
    with trap_heap(design, name="fail") as heap:
        plan = cc.plan_for(heap, design)
        roots = cc.live_graph(plan, 20_000, seed=2)
        for obj in list(plan.objects.objects(plan.allocation_space.name))[1000::400]:
            plan.objects.words[obj.offset // 8] = 0xBAD
        with pytest.raises(ha.HeapCorruption):
            cc.run(plan, roots, design, mix=cc.MutatorMix(operations=2_000_000, seed=2),
                   collections=4, collector_delay_ns=2_000)
        # Every page reads, the trapped ones too: nothing is left registered.
        assert int(heap.view.array(np.uint64).sum(dtype=np.uint64)) >= 0


def succeed(design: str) -> None:
    with trap_heap(design, name="leaks") as heap:
        reference_and(heap, design, cc.MutatorMix(operations=20_000, seed=3), 5, delay=1_000)


@pytest.mark.parametrize("design", TRAPS)
def test_a_failing_collector_leaves_nothing_behind(design) -> None:
    fail_mid_cycle(design)  # glibc keeps the first thread's stack and arena for the next ones
    succeed(design)
    before = (threading.active_count(), open_fds(), mapping_count())
    for _ in range(3):
        fail_mid_cycle(design)
        succeed(design)
    # None of the heaps' views may be left. A leak would leave one mapping per run at least
    # (3 here); glibc may add an arena's meanwhile. ASan's allocator (the sanitized run)
    # maps and keeps regions of its own, so the count is checked without it.
    assert (threading.active_count(), open_fds()) == before[:2]
    assert f"fail-{design}" not in maps_text()
    assert asan_loaded() or mapping_count() <= before[2] + 1


@pytest.mark.parametrize("design", TRAPS)
def test_touching_the_heap_after_a_failed_or_finished_run_never_hangs(design) -> None:
    """In a child with a timeout: a hang there fails the test instead of the suite."""
    proc = run_isolated(f"""
        import numpy as np
        import heapalias as ha
        from heapalias import concurrent as cc
        with ha.Heap(8 << 20, backing={cc.TRAP_BACKING[design]!r}) as heap:
            plan = cc.plan_for(heap, {design!r})
            roots = cc.live_graph(plan, 20_000, seed=2)
            cc.run(plan, roots, {design!r}, mix=cc.MutatorMix(operations=50_000),
                   collections=3)
            words = heap.view.array(np.uint64)
            total = int(words.sum(dtype=np.uint64))  # a read of every page
            idle = plan.spaces[1]
            words[idle.start // 8:idle.end // 8:512] += 1  # a write to every page it holds
            for obj in list(plan.objects.objects(plan.allocation_space.name))[500::300]:
                plan.objects.words[obj.offset // 8] = 0xBAD
            try:
                cc.run(plan, roots, {design!r}, mix=cc.MutatorMix(operations=10**6),
                       collections=4, collector_delay_ns=2_000)
            except ha.HeapCorruption:
                pass
            words[::512] = words[::512]                 # a read and a write of every page
            print("touched", int(words.sum(dtype=np.uint64)) >= 0 <= total)
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "touched True" in proc.stdout


@pytest.mark.parametrize("design", TRAPS)
def test_another_thread_touching_the_heap_mid_cycle_is_served(design) -> None:
    """A Python thread reads every page of the heap, to-space above the frontier included,
    again and again while the C mutator runs (the call releases the GIL): each of its
    faults is served like the mutator's, none hangs, to-space is not used up, and the
    mutator reads what the reference run reads. Before, a touch between minor's zap and
    its registration (or copy's mremap and registration) left a page mapped that the
    mutator then read untrapped: HeapCorruption, or a wrong checksum. The mutator
    allocates a lot, so that minor hands out chunks and copy's mutator writes past the
    compacted top: before, a chunk over a page the thread had mapped failed (EAGAIN), and
    copy's zero page mapped between its mremap and its registration was read as the
    heap (HeapCorruption, 2 runs in 3). In a child with a timeout."""
    proc = run_isolated(f"""
        import threading
        import numpy as np
        import heapalias as ha
        from heapalias import concurrent as cc
        mix = cc.MutatorMix(operations=400_000, alloc_permille=300, seed=6)
        with ha.Heap(16 << 20, backing={cc.TRAP_BACKING[design]!r}) as heap:
            plan = cc.plan_for(heap, {design!r})
            words, done, touches = heap.view.array(np.uint64), threading.Event(), [0]

            def reader():  # a sweep over every page, in C: often inside any window
                while not done.is_set():
                    touches[0] += int(words[::512].sum(dtype=np.uint64)) >= 0

            checksums = []
            for name in ("none", {design!r}):
                roots = cc.live_graph(plan, 30_000, seed=6)
                thread = threading.Thread(target=reader)
                thread.start()
                try:
                    run = cc.run(plan, roots, name, mix=mix, collections=30,
                                 collector_delay_ns=1_000, verify=True)
                finally:
                    done.set()
                    thread.join()
                done.clear()
                checksums.append(run.checksum)
            print("equal", checksums[0] == checksums[1], "touches", touches[0] > 0)
    """, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "equal True touches True" in proc.stdout


@pytest.mark.filterwarnings("ignore::heapalias.HeapAliasWarning")  # shmem THP may be off
@pytest.mark.parametrize(("design", "make"), [
    ("minor", lambda: ha.Heap(HEAP, backing="anon")),
    ("minor", lambda: ha.Heap(HEAP, backing="private")),
    ("minor", lambda: ha.Heap(HEAP, pages="thp")),
    ("minor", lambda: ha.Heap(1 << 16)),
    ("copy", lambda: ha.Heap(HEAP)),
    ("move", lambda: ha.Heap(HEAP, backing="anon")),
])
def test_a_trap_design_refuses_a_heap_it_cannot_trap(design, make) -> None:
    with make() as heap, pytest.raises(ha.InvalidArgument):
        cc.plan_for(heap, design)


def test_minor_refuses_a_plan_off_the_primary_view() -> None:
    with ha.Heap(HEAP) as heap:
        alias = heap.alias("memfd")
        plan = collectors.SemiSpace.over(alias)
        roots = cc.live_graph(plan, 100)
        with pytest.raises(ha.InvalidArgument):
            cc.run(plan, roots, "minor")
        alias.close()


def test_a_fault_racing_the_unregister_is_woken() -> None:
    """A thread faults on a registered page just as the range is unregistered, thousands
    of times. The kernel's unregister wakes pending faults before it write-locks the VMA,
    so a fault taken under the per-VMA lock can still queue itself after that wake and
    sleep for ever (seen on 2 CPUs: copy's mutator blocked on a page past the compacted
    top, its collector waiting for it at a safepoint). ``ha_uffd_unregister`` wakes the
    range once more after the kernel is done. In a child with a timeout: before the fix,
    a thread stayed blocked within seconds (3 runs in 4 here) and the child said so."""
    proc = run_isolated("""
        import os, random, threading, time
        from heapalias import native
        from heapalias.native import ffi, lib
        PAGE, LENGTH = 4096, 64 * 4096
        fd = lib.ha_uffd_open(0, 1)
        fd = lib.ha_uffd_open(1, 1) if fd < 0 else fd
        granted, ioctls = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        assert fd >= 0 and lib.ha_uffd_api(fd, 0, granted, ioctls) == 0, fd
        private, rw = lib.MAP_PRIVATE | lib.MAP_ANONYMOUS, lib.PROT_READ | lib.PROT_WRITE
        region, zeros = native.mmap(LENGTH, rw, private), native.mmap(PAGE, rw, private)
        address, flags = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        stuck, tries, deadline = False, 0, time.monotonic() + 6
        while time.monotonic() < deadline and not stuck:
            native.madvise(region, LENGTH, lib.MADV_DONTNEED)
            mode = lib.UFFDIO_REGISTER_MODE_MISSING
            assert lib.ha_uffd_register(fd, region, LENGTH, mode, ffi.NULL) == 0
            # It faults page after page (the call releases the GIL): serve its first
            # fault, then unregister about when it takes the next one.
            toucher = threading.Thread(target=native.touch, args=(region, LENGTH, PAGE, True))
            toucher.start()
            assert lib.ha_uffd_next_fault(fd, 5000, address, flags) == 1
            assert lib.ha_uffd_copy(fd, address[0] & ~(PAGE - 1), zeros, PAGE, 1) == 0
            spin = time.perf_counter_ns() + random.randrange(30_000)
            while time.perf_counter_ns() < spin:
                pass
            assert lib.ha_uffd_unregister(fd, region, LENGTH) == 0
            toucher.join(2)
            stuck, tries = toucher.is_alive(), tries + 1
        print("stuck" if stuck else "woken", tries)
        os._exit(0)  # a stuck thread would hold a normal exit
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "woken", proc.stdout
