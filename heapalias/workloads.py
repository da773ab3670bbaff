"""Deterministic, seeded object graphs, built in C by bump allocation into one space."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from . import native
from .backing import require_int
from .errors import InvalidArgument
from .native import LoopStats
from .objects import MAX_WORDS, ObjectHeap, require_object_heap


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


def _run(objects: ObjectHeap, space: str | None, name: str,
         call: Callable[..., tuple[LoopStats, np.ndarray]]) -> Workload:
    """``call(heap, space)`` allocates the workload in the named space (whose top advances)
    and returns its stats and roots."""
    require_object_heap(objects, name).require_writable(name)
    target = objects.space(space)  # checked against the heap: the C loop trusts it
    stats, roots = call(objects.native(), target)
    return Workload(name, roots, stats)


def _one_root(result: tuple[LoopStats, int]) -> tuple[LoopStats, np.ndarray]:
    stats, root = result
    return stats, np.array([root], dtype=np.uint64)


def _count(value: object, what: str, low: int = 0, high: int = 1 << 40) -> int:
    value = require_int(value, what)
    if not low <= value <= high:
        raise InvalidArgument(f"{what} must be in {low}..{high}, got {value}")
    return value


#: A payload-size distribution: ``(low, high)`` words, uniform and inclusive, or a
#: mapping ``{payload_words: weight}`` such as a histogram measured on a real heap.
SizeDistribution = tuple[int, int] | Mapping[int, float]

MAX_PAYLOAD_WORDS = 1 << 20


def binary_tree(objects: ObjectHeap, depth: int, *, top_down: bool = False,
                payload_words: int = 0, space: str | None = None) -> Workload:
    """A complete binary tree of ``2**(depth+1) - 1`` nodes {left, right, payload...}.

    ``top_down`` allocates parents before children (GCBench's Populate);
    otherwise children first (MakeTree). With a payload, word 0 holds the depth.
    """
    depth = _count(depth, "depth", 0, 40)
    payload_words = _count(payload_words, "payload_words", 0, MAX_PAYLOAD_WORDS)
    return _run(objects, space, "binary_tree", lambda h, s: _one_root(
        native.tree(h, s, depth, bool(top_down), payload_words)))


def linked_list(objects: ObjectHeap, n: int, *, shuffled: bool = False, seed: int = 0,
                space: str | None = None) -> Workload:
    """``n`` nodes {next, index}; shuffled lists are linked in a random order."""
    n = _count(n, "n")
    seed = _count(seed, "seed", 0, (1 << 64) - 1)
    return _run(objects, space, "linked_list", lambda h, s: _one_root(
        native.linked_list(h, s, n, bool(shuffled), seed)))


def _size_table(distribution: SizeDistribution) -> tuple[np.ndarray, np.ndarray]:
    """A mapping as (sizes, cumulative integer weights) for the C sampler."""
    if not distribution:
        raise InvalidArgument("size_distribution is empty: give at least one size")
    sizes = np.array([_count(k, "payload_words", 0, MAX_PAYLOAD_WORDS) for k in distribution],
                     dtype=np.uint32)
    weights = []
    for size, weight in distribution.items():
        number = isinstance(weight, (int, float, np.integer, np.floating))
        if isinstance(weight, bool) or not number or not 0 <= weight < float("inf"):
            raise InvalidArgument(f"the weight of size {size} must be a finite number >= 0, "
                                  f"got {weight!r}")
        weights.append(float(weight))
    total = sum(weights)
    if total <= 0:
        raise InvalidArgument("size_distribution needs a positive weight somewhere")
    # Integer weights out of 2**48: exact for small integer weights, fine-grained for floats.
    cumulative = np.round(np.cumsum(weights) / total * float(1 << 48)).astype(np.uint64)
    return sizes, cumulative


def random_graph(objects: ObjectHeap, n: int, mean_degree: int = 2,
                 size_distribution: SizeDistribution = (0, 4), *, seed: int = 0,
                 nroots: int = 16, space: str | None = None) -> Workload:
    """``n`` nodes with 0..2*mean_degree uniformly random edges to uniformly chosen
    nodes, and payloads drawn from ``size_distribution`` (see :data:`SizeDistribution`)."""
    n = _count(n, "n")
    mean_degree = _count(mean_degree, "mean_degree", 0, 0x7FFF)
    table = None
    low = high = 0
    if isinstance(size_distribution, Mapping):
        table = _size_table(size_distribution)
    elif isinstance(size_distribution, tuple) and len(size_distribution) == 2:
        low, high = (_count(p, "payload_words", 0, MAX_PAYLOAD_WORDS) for p in size_distribution)
        if low > high:
            raise InvalidArgument(f"payload_words range {size_distribution} is empty")
    else:
        raise InvalidArgument("size_distribution must be a (low, high) pair or a "
                              f"{{payload_words: weight}} mapping, got {size_distribution!r}")
    seed = _count(seed, "seed", 0, (1 << 64) - 1)
    nroots = _count(nroots, "nroots", 0, 1 << 20) if n else 0
    roots = np.zeros(nroots, dtype=np.uint64)

    def call(h, s):
        return native.random_graph(h, s, n, mean_degree, (low, high), table, seed, roots), roots

    return _run(objects, space, "random_graph", call)


def large_objects(objects: ObjectHeap, n: int, size: int, *, space: str | None = None) -> Workload:
    """``n`` objects of ``size`` bytes (header and one reference included), chained."""
    n = _count(n, "n")
    size = _count(size, "size", 24, MAX_WORDS * 8)  # a header counts at most MAX_WORDS
    return _run(objects, space, "large_objects", lambda h, s: _one_root(
        native.large_objects(h, s, n, size // 8 - 2)))
