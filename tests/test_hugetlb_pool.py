"""A short hugetlb pool gives HugePagesUnavailable, never SIGBUS, and leaks nothing."""

from __future__ import annotations

import json
import signal

import pytest

import heapalias as ha
from heapalias.errors import hugepage_sysctl
from heapalias.system import hugepage_pool

from conftest import IS_ROOT, mapping_count, open_fds, run_isolated

EXHAUST = """
import json, os, heapalias as ha
from heapalias.system import hugepage_pool

def counts():
    return len(os.listdir("/proc/self/fd")), sum(1 for _ in open("/proc/self/maps"))

pool = hugepage_pool({page_size})
before = counts()
try:
    heap = ha.Heap((pool.available + 1) * {page_size}, backing={backing!r}, pages={pages!r},
                   populate={populate})
except ha.HugePagesUnavailable as exc:
    print(json.dumps({{"error": type(exc).__name__, "needed": exc.needed, "free": exc.free,
                      "errno": exc.errno, "remedy": exc.remedy, "leaked": counts() != before}}))
else:
    heap.view.array()[:] = 1  # would SIGBUS if memory were exposed uncommitted
    print(json.dumps({{"error": None}}))
"""


@pytest.mark.parametrize("populate", [True, False])
@pytest.mark.parametrize("backing", ["memfd", "anon", "private"])
def test_asking_for_more_than_the_pool_raises_cleanly(backing, populate, pool_2m) -> None:
    proc = run_isolated(EXHAUST.format(
        page_size=pool_2m, backing=backing, pages="2m", populate=populate,
    ))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["error"] == "HugePagesUnavailable"
    assert result["needed"] == result["free"] + 1
    assert result["errno"] in (12, 28)  # ENOMEM from mmap, ENOSPC from fallocate
    assert "heapalias hugepages --reserve" in result["remedy"]
    assert not result["leaked"]


def test_1g_pool_exhaustion(pool_1g) -> None:
    proc = run_isolated(EXHAUST.format(
        page_size=pool_1g, backing="memfd", pages="1g", populate=True,
    ))
    assert json.loads(proc.stdout)["error"] == "HugePagesUnavailable", proc.stderr


def test_pages_held_by_a_heap_are_not_free_for_the_next(pool_2m) -> None:
    available = hugepage_pool(pool_2m).available
    with ha.Heap(2 * pool_2m, pages="2m") as first:
        assert hugepage_pool(pool_2m).available == available - 2
        assert first.view.mapped
    assert hugepage_pool(pool_2m).available == available


@pytest.mark.skipif(not IS_ROOT, reason="emptying the hugetlb pool needs root")
@pytest.mark.parametrize("backing", ["memfd", "anon", "private"])
def test_empty_pool_state(backing, sysctl) -> None:
    """The pool state a fresh machine starts in: every hugetlb heap fails cleanly."""
    fds, maps = open_fds(), mapping_count()
    sysctl(hugepage_sysctl(2 << 20), 0)
    if hugepage_pool(2 << 20).available:
        pytest.fail("pool still has pages after writing 0: another process holds them")
    with pytest.raises(ha.HugePagesUnavailable) as caught:
        ha.Heap("2M", backing=backing, pages="2m")
    assert caught.value.free == 0 and caught.value.needed == 1
    assert (open_fds(), mapping_count()) == (fds, maps)


HOLDER = """
import sys, time, heapalias as ha
heap = ha.Heap(int(sys.argv[1]) * (2 << 20), pages="2m", name="holder")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def start_holder(pages: int, seconds: float):
    """A process that takes ``pages`` hugetlb pages, then holds them for ``seconds``."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(pages), str(seconds)],
                            stdout=subprocess.PIPE, text=True, cwd="/")
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_pool_drained_by_another_process_raises_cleanly_and_leaks_nothing(
        pool_2m, monkeypatch) -> None:
    from heapalias import backing

    monkeypatch.setattr(backing, "COMMIT_RETRY_SECONDS", 0.2)
    holder = start_holder(hugepage_pool(pool_2m).available, 30)
    try:
        fds, maps = open_fds(), mapping_count()
        errors = {}
        for kind in ("memfd", "anon", "private"):
            with pytest.raises(ha.HugePagesUnavailable) as caught:
                ha.Heap("4M", backing=kind, pages="2m")
            errors[kind] = caught.value
            assert caught.value.free == 0
        assert "retries)" in str(errors["memfd"])  # fallocate retried while the pool stayed empty
        del errors, caught
        assert (open_fds(), mapping_count()) == (fds, maps)
    finally:
        holder.kill()
        holder.wait()


def test_enospc_while_a_process_returns_its_pages_is_retried(pool_2m) -> None:
    """ZGC's trick: pages of a process that is exiting reach the pool a moment later."""
    available = hugepage_pool(pool_2m).available
    holder = start_holder(available, 0.3)
    try:
        with ha.Heap(min(available, 8) * pool_2m, pages="2m") as heap:
            assert heap.commit_retries > 0  # it failed first, then got the returned pages
            heap.view.array()[:] = 1
    finally:
        holder.wait()


FORK = """
import json, os, signal, numpy as np, heapalias as ha
from heapalias.system import hugepage_pool

def in_child(work):
    pid = os.fork()
    if pid == 0:
        try:
            print(json.dumps(work()), flush=True)
        finally:
            os._exit(0)
    status = os.waitpid(pid, 0)[1]
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0

shared = ha.Heap("2M", pages="2m", backing="anon")
heap = ha.Heap(hugepage_pool(2 << 20).available * (2 << 20), backing="private", pages="2m")
words = heap.view.array(np.uint64)   # the rest of the pool, written: no page is left for a copy
words[:] = 7

def child_sees():
    seen = {"closed": heap.view.closed, "mapped": heap.view.mapped, "heap": heap.closed,
            "shared": [shared.view.closed, shared.view.mapped]}
    for attempt in (lambda: heap.view.array(np.uint64), lambda: heap.objects):
        try:
            attempt()
        except ha.ViewClosed as exc:
            seen.setdefault("errors", []).append(str(exc))
    return seen

print(in_child(child_sees))
words[0] = 2  # the parent writes on: nothing of the child's to take away now
print(in_child(lambda: int(words[1])))  # an array made before fork, touched in the child
print(int(words[0]), int(words[-1]))
"""


def test_a_private_hugetlb_heap_is_not_inherited_by_fork_children(pool_2m) -> None:
    """The child of a process whose private hugetlb heap filled the pool used to die of
    SIGBUS at its first write (copy-on-write needs a page the pool does not have), or
    even at a read once the parent had written. Now the child never inherits that memory
    (MADV_DONTFORK): its views are closed, so heapalias refuses to make arrays of them,
    and an array made before fork faults at once with SIGSEGV, whatever the pool holds."""
    proc = run_isolated(FORK)
    assert proc.returncode == 0, proc.stderr
    seen, status, stale, parent = proc.stdout.splitlines()
    seen = json.loads(seen)
    assert seen["closed"] and not seen["mapped"] and seen["heap"]
    assert seen["shared"] == [False, True]  # shared hugetlb memory is inherited as ever
    assert len(seen["errors"]) == 2  # no array, and no ObjectHeap
    assert "not inherited by fork() children" in seen["errors"][0]
    assert (status, stale) == ("0", str(int(signal.SIGSEGV)))
    assert parent == "2 7"
