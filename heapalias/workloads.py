"""Deterministic, seeded object graphs, built in C by bump allocation into one space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backing import require_int
from .collectors import LoopStats, _buffer, _check, _space
from .errors import InvalidArgument
from .native import ffi, lib
from .objects import ObjectHeap


@dataclass(frozen=True)
class Workload:
    """What a workload allocated, and the roots that keep it alive."""

    name: str
    roots: np.ndarray
    stats: LoopStats

    @property
    def objects(self) -> int:
        return self.stats.objects

    @property
    def bytes(self) -> int:
        return self.stats.bytes


def _run(objects: ObjectHeap, space: str | None, name: str, call) -> Workload:
    """Call ``call(heap, space, stats)``; it returns the roots. The space's top advances."""
    objects.require_writable(name)
    target = objects.space(space)
    s = _space(target)
    st = ffi.new("ha_stats *")
    rc, roots = call(objects.native(), s, st)
    target.top = int(s.top)
    return Workload(name, roots, _check(rc, st, name))


def _count(value: object, what: str, low: int = 0, high: int = 1 << 40) -> int:
    value = require_int(value, what)
    if not low <= value <= high:
        raise InvalidArgument(f"{what} must be in {low}..{high}, got {value}")
    return value


def binary_tree(objects: ObjectHeap, depth: int, *, top_down: bool = False,
                payload_words: int = 0, space: str | None = None) -> Workload:
    """A complete binary tree of ``2**(depth+1) - 1`` nodes {left, right, payload...}.

    ``top_down`` allocates parents before children (GCBench's Populate);
    otherwise children first (MakeTree). With a payload, word 0 holds the depth.
    """
    depth = _count(depth, "depth", 0, 40)
    payload_words = _count(payload_words, "payload_words", 0, 1 << 20)
    root = ffi.new("uint64_t *")

    def call(h, s, st):
        rc = lib.ha_tree(h, s, depth, int(bool(top_down)), payload_words, root, st)
        return rc, np.array([root[0]], dtype=np.uint64)

    return _run(objects, space, "binary_tree", call)


def linked_list(objects: ObjectHeap, n: int, *, shuffled: bool = False, seed: int = 0,
                space: str | None = None) -> Workload:
    """``n`` nodes {next, index}; shuffled lists are linked in a random order."""
    n = _count(n, "n")
    seed = _count(seed, "seed", 0, (1 << 64) - 1)
    head = ffi.new("uint64_t *")

    def call(h, s, st):
        rc = lib.ha_linked_list(h, s, n, int(bool(shuffled)), seed, head, st)
        return rc, np.array([head[0]], dtype=np.uint64)

    return _run(objects, space, "linked_list", call)


def random_graph(objects: ObjectHeap, n: int, mean_degree: int = 2, *,
                 payload_words: tuple[int, int] = (0, 4), seed: int = 0, nroots: int = 16,
                 space: str | None = None) -> Workload:
    """``n`` nodes with 0..2*mean_degree uniformly random edges and a uniform payload size."""
    n = _count(n, "n")
    mean_degree = _count(mean_degree, "mean_degree", 0, 0x7FFF)
    low, high = (_count(p, "payload_words", 0, 1 << 20) for p in payload_words)
    if low > high:
        raise InvalidArgument(f"payload_words range {payload_words} is empty")
    seed = _count(seed, "seed", 0, (1 << 64) - 1)
    nroots = _count(nroots, "nroots", 0, 1 << 20) if n else 0
    roots = np.zeros(max(nroots, 1), dtype=np.uint64)

    def call(h, s, st):
        rc = lib.ha_random_graph(h, s, n, mean_degree, low, high, seed, _buffer(roots), nroots, st)
        return rc, roots[:nroots]

    return _run(objects, space, "random_graph", call)


def large_objects(objects: ObjectHeap, n: int, size: int, *, space: str | None = None) -> Workload:
    """``n`` objects of ``size`` bytes (header and one reference included), chained."""
    n = _count(n, "n")
    size = _count(size, "size", 24, 1 << 40)
    head = ffi.new("uint64_t *")

    def call(h, s, st):
        rc = lib.ha_large_objects(h, s, n, size // 8 - 2, head, st)
        return rc, np.array([head[0]], dtype=np.uint64)

    return _run(objects, space, "large_objects", call)
