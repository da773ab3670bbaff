"""Loops over a heap that another writer changes under them: typed errors, never a signal or a hang.

The second writer is a few lines of C (compiled here with cffi) running in a thread
without the GIL, as a concurrent mutator or a peer process sharing the memfd would:
it flips header bits and flips them back, or zeroes a header once. Each scenario runs
in a child process with a timeout, so a crash or a hang fails the test.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import run_isolated

SCRIBBLER = r"""
#include <stdint.h>
#include <stddef.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void flip(uint64_t *words, const int64_t *targets, const uint64_t *masks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        __atomic_xor_fetch(&words[targets[i]], masks[i], __ATOMIC_RELAXED);
}

/* state: 0 before, 1 running (set here), 2 go (set by Python), 3 stop (set by Python).
 * From go: flip every target (word ^= mask) after a random wait below hold_ns, then,
 * unless once, keep flipping them back and forth, each state held below hold_ns. */
void scribble(uint64_t *words, const int64_t *targets, const uint64_t *masks, size_t n,
              uint64_t hold_ns, int once, volatile int *state, uint64_t seed)
{
    uint64_t s = seed | 1, until;
    *state = 1;
    while (*state == 1)
        ;
    do {
        for (until = now_ns() + next(&s) % hold_ns; *state == 2 && now_ns() < until;)
            ;
        if (*state == 2)
            flip(words, targets, masks, n);
    } while (!once && *state == 2);
}
"""

CDEF = ("void scribble(uint64_t *words, const int64_t *targets, const uint64_t *masks, "
        "size_t n, uint64_t hold_ns, int once, volatile int *state, uint64_t seed);")


@pytest.fixture(scope="session")
def scribbler(tmp_path_factory) -> str:
    """The directory holding the compiled ``_scribbler`` module."""
    from cffi import FFI
    from cffi.ffiplatform import VerificationError

    out = tmp_path_factory.mktemp("scribbler")
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source("_scribbler", SCRIBBLER)
    try:
        ffi.compile(tmpdir=str(out))
    except VerificationError as exc:  # no C compiler: heapalias itself needs one to build
        pytest.skip(reason=f"cannot compile the C scribbler: {exc}")
    return str(out)


#: The child's setup: a heap whose view is followed by PROT_NONE (view 0 of a
#: multimap), objects filling the heap to its last byte, the last one a zeroed
#: 0-slot object. A header read twice, the second time with 0xFFFF slots, walks
#: its zero (null) payload and then off the view.
PRELUDE = r"""
import json, sys, threading, time
import numpy as np
import heapalias as ha
from heapalias import collectors, drivers, workloads
from heapalias.objects import FORWARDED

sys.path.insert(0, SCRIBBLER_DIR)
from _scribbler import ffi as sffi, lib as slib

SIZE = 4 << 20
heap = ha.Heap(SIZE)
layout = heap.multimap(2, shift=24)  # 16 MiB apart: view 0 is followed by PROT_NONE
words = layout[0].array(np.uint64)
rng = np.random.default_rng(SEED)

def build(seed, n=40000):
    '''A random graph filling from-space, then zeroed filler up to its last byte;
    returns (roots, the offset of the last object).'''
    global objects  # new spaces: a driver run leaves them swapped
    objects = ha.ObjectHeap(layout[0], spaces={"to": (8, SIZE // 2), "from": (SIZE // 2, SIZE)})
    space = objects.space("from")
    roots = workloads.random_graph(objects, n, 2, (0, 3), seed=seed, nroots=16,
                                   space="from").roots
    while space.end - space.top > 8 * 0xFFF0:
        objects.new(0, 0xFFF0 - 1, space="from")
    last = objects.new(0, (space.end - space.top) // 8 - 1, space="from")
    assert space.top == SIZE
    return np.append(roots, np.uint64(last.ref)), last.offset

def scribbling(targets, masks, hold_ns, once=False):
    '''Start the second writer; returns (state, thread). Set state[0] = 2 to let it go.'''
    state = sffi.new("int *")
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    masks = np.ascontiguousarray(masks, dtype=np.uint64)
    args = (sffi.cast("uint64_t *", words.ctypes.data), sffi.from_buffer("int64_t[]", targets),
            sffi.from_buffer("uint64_t[]", masks), len(targets), hold_ns, int(once), state,
            int(rng.integers(1, 1 << 62)))
    thread = threading.Thread(target=slib.scribble, args=args)
    thread._keep = (targets, masks)
    thread.start()
    while state[0] != 1:
        time.sleep(0)
    return state, thread

outcomes = {}
# Trials run until the writer has hit HITS times: on a loaded machine the writer
# thread may be starved for many trials, and a test that never raced proves nothing.
TRIALS, HITS = 400, 3

def run(name, loop, state, thread):
    '''Run one loop while the writer writes: it may succeed or raise a typed error.'''
    state[0] = 2
    try:
        loop()
        result = "ok"
    except (ha.HeapCorruption, ha.SpaceFull) as exc:
        result = "typed"
    finally:
        state[0] = 3
        thread.join()
    outcomes.setdefault(name, {"ok": 0, "typed": 0})[result] += 1
"""


def run_child(scribbler: str, body: str, seed: int = 1, timeout: float = 120) -> dict:
    prelude = PRELUDE.replace("SCRIBBLER_DIR", repr(scribbler)).replace("SEED", str(seed))
    code = prelude + textwrap.dedent(body) + "\nprint(json.dumps(outcomes))\n"
    proc = run_isolated(code, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("loop", ["verify", "mark"])
def test_a_header_gaining_slots_between_two_reads_is_never_followed(scribbler, loop) -> None:
    """verify's second pass and mark's scan read a header again: the second read may
    say 0xFFFF slots, which ran off the heap (SIGSEGV) before each header was read once."""
    outcomes = run_child(scribbler, f"""
        for trial in range(TRIALS):  # until the writer has hit a few times
            if outcomes.get({loop!r}, {{}}).get("typed", 0) >= HITS:
                break
            roots, last = build(trial)
            # One root whose first slot is the last object and the others the graph:
            # mark greys the last object first and scans it last, when the stack unwinds.
            parent = objects.new(20, space="to")
            parent.refs.raw[:] = np.concatenate([[last], np.resize(roots[:16], 19)])
            roots = np.array([parent.ref], dtype=np.uint64)
            loop = {{"verify": lambda: collectors.verify(objects, roots),
                     "mark": lambda: collectors.mark(objects, roots)}}[{loop!r}]
            hold = int(rng.integers(1000, 200_000))
            state, thread = scribbling([last >> 3], [0xFFFF << 32], hold_ns=hold)
            run({loop!r}, loop, state, thread)
    """)
    assert outcomes[loop]["typed"] > 0, outcomes  # the writer did hit the loop


def test_a_header_zeroed_during_verify_ends_it(scribbler) -> None:
    """A header that turns 0 after verify's first pass made its second pass advance by 0
    words, forever, with the GIL released."""
    outcomes = run_child(scribbler, """
        for trial in range(TRIALS):  # until the writer has hit a few times
            if outcomes.get("verify", {}).get("typed", 0) >= HITS:
                break
            roots, last = build(trial)
            started = time.perf_counter_ns()
            collectors.verify(objects, roots)
            took = time.perf_counter_ns() - started
            state, thread = scribbling([last >> 3], [int(words[last >> 3])], hold_ns=2 * took,
                                       once=True)
            run("verify", lambda: collectors.verify(objects, roots), state, thread)
    """)
    assert outcomes["verify"]["typed"] > 0, outcomes  # the writer did hit verify


@pytest.mark.parametrize("seed", [1, 2])
def test_every_loop_survives_a_writer_flipping_headers(scribbler, seed) -> None:
    """Slots, sizes, the forwarded bit and whole headers flip under every loop."""
    outcomes = run_child(scribbler, """
        LOOPS = {
            "verify": lambda: collectors.verify(objects, roots),
            "walk": lambda: collectors.walk(objects, "from"),
            "mark": lambda: collectors.mark(objects, roots),
            "mark_overflow": lambda: collectors.mark(objects, roots, stack_capacity=8),
            "clear_marks": lambda: collectors.clear_marks(objects, "from"),
            "card_scan": lambda: cards.scan("from", "to"),
            "cheney": lambda: ha.SemiSpace(objects).collect(roots),
            "cheney_back": lambda: semi.collect(roots),
            "binary_trees": lambda: drivers.binary_trees(objects, 10),
            "random_graph": lambda: workloads.random_graph(objects, 20000, space="to"),
        }
        for trial in range(12):
            for name, loop in LOOPS.items():
                roots, last = build(trial, n=20000)
                semi = ha.SemiSpace(objects)
                if name == "cheney_back":  # flip the headers of the copies in to-space
                    semi.collect(roots)
                space = semi.from_space.name if name == "cheney_back" else "from"
                _, starts = collectors.walk(objects, space, offsets=True)
                cards = ha.CardTable(objects, 6)
                cards.cards[:] = 1
                pick = np.append(rng.choice(starts, 16), starts[-1]) >> 3
                masks = np.choose(rng.integers(0, 4, len(pick)), [
                    np.full(len(pick), 0xFFFF << 32, dtype=np.uint64),  # slots
                    words[pick],  # the whole header: 0
                    np.full(len(pick), FORWARDED, dtype=np.uint64),
                    np.full(len(pick), 0xFFFFFFFF, dtype=np.uint64)])  # size
                state, thread = scribbling(pick, masks, hold_ns=rng.integers(1000, 200_000))
                run(name, loop, state, thread)
    """, seed=seed)
    assert all(sum(counts.values()) == 12 for counts in outcomes.values()), outcomes
    assert sum(counts["typed"] for counts in outcomes.values()) > 0
