"""Threads and fork: views stay coherent, nothing crashes, nothing leaks."""

from __future__ import annotations

import gc
import json
import threading

import numpy as np

import heapalias as ha

from conftest import mapping_count, open_fds, run_isolated

THREADS = 8
ROUNDS = 60


def run_threads(target, count: int = THREADS) -> None:
    threads = [threading.Thread(target=target, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def hammer(rounds: int) -> list[BaseException]:
    """8 threads: each creates and aliases its own heaps and aliases one shared heap."""
    shared = ha.Heap("256K", name="threads")
    shared.view.array(np.uint64)[0] = 1234
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(k: int) -> None:
        try:
            start.wait()
            for i in range(rounds):
                with ha.Heap("64K", backing=("memfd", "anon")[k % 2]) as own:
                    own.alias().array(np.uint32)[i] = i
                    assert own.view.array(np.uint32)[i] == i
                alias = shared.alias(("memfd", "mremap")[i % 2], prot="r")
                assert alias.array(np.uint64)[0] == 1234
                alias.close()
        except BaseException as exc:  # collected, so the test reports it
            failures.append(exc)

    run_threads(worker)
    shared.close()
    return failures


def test_threads_create_alias_read_and_close_at_once() -> None:
    # A first run leaves glibc's cached thread stacks and malloc arenas mapped,
    # so the second run's counts compare heapalias's mappings alone.
    assert hammer(2) == []
    gc.collect()
    fds, maps = open_fds(), mapping_count()
    assert hammer(ROUNDS) == []
    gc.collect()
    assert (open_fds(), mapping_count()) == (fds, maps)


def test_threads_closing_one_heap_while_aliasing_it() -> None:
    for _ in range(20):
        heap = ha.Heap("64K")
        errors: list[BaseException] = []

        def alias_until_closed(_k: int, heap=heap, errors=errors) -> None:
            try:
                for _ in range(50):
                    heap.alias().close()
            except ha.ViewClosed:
                pass  # the other thread closed the heap: the expected way out
            except BaseException as exc:
                errors.append(exc)

        closer = threading.Timer(0.001, heap.close)
        closer.start()
        run_threads(alias_until_closed, 3)
        closer.join()
        assert errors == []
        assert heap.views == ()


FORK = """
import json, os, numpy as np, heapalias as ha
out = {}
for backing in ("memfd", "anon", "private"):
    heap = ha.Heap("64K", backing=backing)
    words = heap.view.array(np.uint64)
    words[0] = 1
    pid = os.fork()
    if pid == 0:
        words[0] = 2                    # shared backings: the parent sees this
        child_close = heap.close()      # unmaps only the child's copy of the mappings
        os._exit(0)
    os.waitpid(pid, 0)
    alias = heap.alias() if backing != "private" else None
    out[backing] = {
        "parent_sees_child_write": int(words[0]) == 2,
        "parent_still_mapped": heap.view.mapped and not heap.closed,
        "alias_after_child_close": bool(alias and alias.array(np.uint64)[0] == words[0]),
        "fd_cloexec": heap.fd is None or not os.get_inheritable(heap.fd),
    }
    heap.close()
print(json.dumps(out))
"""


def test_fork_shares_shared_memory_and_child_close_leaves_parent_alone() -> None:
    proc = run_isolated(FORK)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for backing in ("memfd", "anon"):
        assert result[backing] == {
            "parent_sees_child_write": True, "parent_still_mapped": True,
            "alias_after_child_close": True, "fd_cloexec": True,
        }, backing
    private = result["private"]
    assert not private["parent_sees_child_write"]  # copy-on-write: the child had its own copy
    assert private["parent_still_mapped"]
