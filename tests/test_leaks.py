"""Thousands of create/alias/close cycles leak no fd and no mapping."""

from __future__ import annotations

import contextlib
import gc
import socket

import numpy as np

import heapalias as ha

from conftest import mapping_count, maps_text, open_fds

CYCLES = 2000


def cycle(backing: str, strategy: str, k: int) -> None:
    with ha.Heap("64K", backing=backing, name="leak") as heap:
        alias = heap.alias(strategy, prot="r" if k % 2 else "rw")
        arr = alias.array(np.uint64)
        heap.view.array(np.uint64)[k % 8] = k
        assert arr[k % 8] == k
        if k % 3 == 0:
            heap.multimap(2, shift=20).close()
        if k % 5 == 0:
            del arr  # otherwise the array outlives the heap, then goes


def run_cycles(count: int) -> None:
    plans = [("memfd", "memfd"), ("memfd", "mremap"), ("anon", "mremap")]
    for k in range(count):
        backing, strategy = plans[k % len(plans)]
        cycle(backing, strategy, k)


def test_no_fd_or_mapping_leaks_after_many_cycles() -> None:
    # A short first run lets the allocator and the interpreter settle (one-time growth,
    # not a leak); a leak grows with the cycles that follow.
    run_cycles(60)
    gc.collect()
    fds, maps, ours = open_fds(), mapping_count(), maps_text().count("heapalias")
    run_cycles(CYCLES)
    gc.collect()
    assert open_fds() == fds
    assert maps_text().count("heapalias") == ours
    assert mapping_count() == maps


def test_failed_aliases_leak_nothing() -> None:
    with ha.Heap("64K", backing="private") as heap:
        gc.collect()
        fds, maps = open_fds(), mapping_count()
        for _ in range(200):
            for strategy in ("mremap", "memfd", "auto"):
                with contextlib.suppress(ha.UnsupportedAlias):
                    heap.alias(strategy)
                with contextlib.suppress(ha.UnsupportedAlias):
                    heap.multimap(2, shift=20, strategy=strategy)
        gc.collect()
        assert (open_fds(), mapping_count()) == (fds, maps)


def test_sharing_handles_leaks_no_fd() -> None:
    """``heap.share().send(sock)`` used to leak the handle's fd: one per call."""
    ours, theirs = socket.socketpair()
    with ours, theirs, ha.Heap("64K") as heap:
        for _ in range(50):
            heap.share().send(ours)
            ha.HeapHandle.receive(theirs)
        before = open_fds()
        for k in range(10_000):
            heap.share("rw" if k % 2 else "r", k=k).send(ours)
            assert ha.HeapHandle.receive(theirs).meta == {"k": k}
        assert open_fds() == before
