"""Physical limits of this machine, measured by C helpers in the same run as the loops.

A benchmark figure is a ratio to the fastest known way to do the same work on
this machine, so it stays at or below 1.0 unless the hardware is really beaten:

- copy: the faster of memcpy and a non-temporal streaming copy (bytes copied once);
- write: the faster of memset and non-temporal stores;
- read: a sequential read, with or without software prefetch;
- write+read: write a buffer, then read it back, through one view (bytes counted twice);
- random load: independent loads to random cache lines, with as many in flight as
  the memory system allows;
- mlp (memory-level parallelism): k interleaved dependent-load chases around one random
  cycle through a buffer the size of the graph heaps, on each page size, k = 1 ... 64. A
  trace whose graph offers k independent edges at a time can do no better; k = 1 is the
  dependent-load latency on those pages (the "latency" figure marking is shown against).

The dependent-load latency (4 KiB pages) and the cost of a first-touch page fault are
measured too, as facts about the machine rather than as limits, and so is the read
bandwidth of every core streaming at once: what it adds to one core's is the most that
running a loop on every core can gain, where memory is what holds it back.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from . import native
from .backing import parse_size
from .collectors.threads import default_threads
from .errors import HeapAliasError, HeapAliasWarning, InvalidArgument
from .heap import Heap
from .native import lib
from .system import PAGE_SIZES

#: Random loads per measurement: enough for a steady rate, a few milliseconds long.
GATHER_STEPS = 2_000_000
#: The chase counts of the memory-parallelism sweep, and the loads each one makes.
CHASES = tuple(1 << i for i in range(7))
CHASE_STEPS = 1 << 20
#: A chase count saturates the memory once it comes this close to the best count's time.
SATURATION = 1.05


@dataclass(frozen=True)
class Parallelism:
    """k interleaved dependent chases over one buffer of ``pages`` pages: ns per load by k."""

    pages: str
    buffer_bytes: int
    ns_per_load: dict[int, float]
    #: The best chase count run on this many cores at once, each its own chases...
    cores: int = 1
    #: ...and their aggregate ns per load (0.0: not measured): the limit for a parallel trace.
    all_cores_ns_per_load: float = 0.0

    @property
    def latency_ns(self) -> float:
        """One chase: each load waits for the one before (the dependent-load latency)."""
        return self.ns_per_load[1]

    @property
    def mlp_ns(self) -> float:
        """The fewest ns per load any chase count reached: the memory-parallelism limit."""
        return min(self.ns_per_load.values())

    @property
    def saturating_chases(self) -> int:
        """The fewest chases within SATURATION of the best: more in flight gain nothing."""
        return min(k for k, ns in self.ns_per_load.items() if ns <= SATURATION * self.mlp_ns)

    @property
    def all_cores_speedup(self) -> float:
        """Every core chasing at once against one: what memory lets a parallel trace gain
        (0.0 if not measured)."""
        return self.mlp_ns / self.all_cores_ns_per_load if self.all_cores_ns_per_load else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "latency_ns": self.latency_ns, "mlp_ns": self.mlp_ns,
                "saturating_chases": self.saturating_chases,
                "all_cores_speedup": self.all_cores_speedup}


@dataclass(frozen=True)
class Limits:
    """Best-of-``repeats`` measurements, taken on pre-faulted memory of the given page size."""

    buffer_bytes: int
    pages: str
    memcpy_gb_per_s: float
    stream_copy_gb_per_s: float
    write_gb_per_s: float
    read_gb_per_s: float
    write_read_gb_per_s: float
    random_load_ns: float
    random_bytes: int
    load_latency_ns: float
    fault_ns_per_page: float
    #: The memory-parallelism sweep on each page size that could be had (see Parallelism).
    parallelism: tuple[Parallelism, ...] = ()
    #: Every core this process may use reading at once (``read_threads`` of them), GB/s.
    read_threads: int = 1
    read_threads_gb_per_s: float = 0.0

    @property
    def read_scaling(self) -> float:
        """How much faster every core reads than one: the memory's cap on parallel speed-up."""
        return self.read_threads_gb_per_s / self.read_gb_per_s if self.read_gb_per_s else 0.0

    @property
    def copy_gb_per_s(self) -> float:
        """The faster of memcpy and the streaming copy."""
        return max(self.memcpy_gb_per_s, self.stream_copy_gb_per_s)

    def as_dict(self) -> dict:
        return {**asdict(self), "copy_gb_per_s": self.copy_gb_per_s,
                "parallelism": [p.as_dict() for p in self.parallelism],
                "read_scaling": self.read_scaling}


def _best_gb_per_s(nbytes: int, timed_ns: Callable[[], int], repeats: int) -> float:
    """``nbytes`` over the fastest of ``repeats`` timings, in GB/s (bytes per ns)."""
    return nbytes / max(min(timed_ns() for _ in range(repeats)), 1)


def memcpy_gb_per_s(dst: np.ndarray, src: np.ndarray, repeats: int = 3) -> float:
    """Best memcpy bandwidth from ``src`` into ``dst`` (bytes copied once, per second, GB/s)."""
    n = min(dst.nbytes, src.nbytes)
    return _best_gb_per_s(n, lambda: native.memcpy_ns(dst.ctypes.data, src.ctypes.data, n),
                          repeats)


def stream_copy_gb_per_s(dst: np.ndarray, src: np.ndarray, repeats: int = 3) -> float:
    """Best bandwidth of the non-temporal copy that Cheney uses for large objects (GB/s)."""
    n = min(dst.nbytes, src.nbytes)
    return _best_gb_per_s(
        n, lambda: native.stream_copy_ns(dst.ctypes.data, src.ctypes.data, n), repeats)


def write_gb_per_s(dst: np.ndarray, repeats: int = 3) -> float:
    """Best write bandwidth over ``dst``: the faster of memset and streaming stores (GB/s)."""
    return max(_best_gb_per_s(dst.nbytes, lambda streaming=streaming: native.write_ns(
        dst.ctypes.data, dst.nbytes, streaming=streaming), repeats) for streaming in (False, True))


def read_gb_per_s(src: np.ndarray, repeats: int = 3) -> float:
    """Best sequential read bandwidth over ``src``, with and without software prefetch (GB/s)."""
    return max(_best_gb_per_s(src.nbytes, lambda prefetch=prefetch: native.read_ns(
        src.ctypes.data, src.nbytes, prefetch=prefetch), repeats) for prefetch in (False, True))


def read_threads_gb_per_s(src: np.ndarray, threads: int, repeats: int = 3) -> float:
    """Best read bandwidth over ``src`` with ``threads`` threads reading a share each, with
    and without software prefetch (GB/s)."""
    return max(_best_gb_per_s(src.nbytes, lambda prefetch=prefetch: native.read_threads_ns(
        src.ctypes.data, src.nbytes, threads, prefetch=prefetch), repeats)
        for prefetch in (False, True))


def write_read_gb_per_s(buffer: np.ndarray, repeats: int = 3) -> float:
    """Write ``buffer`` then read it back through the same address, the fastest of memset or
    streaming stores and of a read with or without prefetch; bytes written plus bytes read,
    per second (GB/s)."""
    return max(_best_gb_per_s(2 * buffer.nbytes, lambda ways=ways: native.write_read_ns(
        buffer.ctypes.data, buffer.ctypes.data, buffer.nbytes, *ways), repeats)
        for ways in itertools.product((False, True), (False, True)))


def _cache_lines(buffer: np.ndarray) -> int:
    slots = buffer.nbytes // 64
    if slots < 2:
        raise InvalidArgument("the buffer needs at least 128 bytes")
    return slots


def load_latency_ns(buffer: np.ndarray, steps: int = 2_000_000, seed: int = 1) -> float:
    """Nanoseconds per dependent load, chasing a random cycle through ``buffer``."""
    return native.chase_ns(buffer.ctypes.data, _cache_lines(buffer), steps, seed) / steps


def random_load_ns(buffer: np.ndarray, steps: int = GATHER_STEPS, seed: int = 1) -> float:
    """Nanoseconds per load to a random cache line of ``buffer``, the loads overlapping."""
    return native.gather_ns(buffer.ctypes.data, _cache_lines(buffer), steps, seed) / steps


def chase_sweep(buffer: np.ndarray, chases: tuple[int, ...] = CHASES, steps: int = CHASE_STEPS,
                repeats: int = 2, seed: int = 1) -> dict[int, float]:
    """Nanoseconds per load of k interleaved dependent chases through ``buffer``, for each k
    in ``chases`` (1 to 64), the best of ``repeats``: one random cycle, linked once."""
    slots = _cache_lines(buffer)
    if not all(isinstance(k, int) and 1 <= k <= lib.HA_MAX_CHASES for k in chases):
        raise InvalidArgument(f"chase counts must lie in 1..{lib.HA_MAX_CHASES}, not {chases}")
    native.link_cycle(buffer.ctypes.data, slots, seed)
    return {k: min(native.chases_ns(buffer.ctypes.data, slots, k, steps, seed + r)
                   / (steps // k * k) for r in range(repeats))
            for k in chases}


def chase_all_cores(buffer: np.ndarray, chases: int, threads: int, steps: int = CHASE_STEPS,
                    repeats: int = 2, seed: int = 1) -> float:
    """Aggregate nanoseconds per load of ``threads`` threads at once, each following
    ``chases`` interleaved chases around the cycle :func:`chase_sweep` linked in ``buffer``
    (wall time over every thread's loads), the best of ``repeats``."""
    slots = _cache_lines(buffer)
    if not 1 <= chases <= lib.HA_MAX_CHASES or not 1 <= threads <= lib.HA_MAX_THREADS:
        raise InvalidArgument(f"chases must lie in 1..{lib.HA_MAX_CHASES} and threads in "
                              f"1..{lib.HA_MAX_THREADS}, not {chases} and {threads}")
    loads = threads * (steps // chases * chases)
    return min(native.chases_threads_ns(buffer.ctypes.data, slots, chases, steps, seed + r,
                                        threads) / loads for r in range(repeats))


def parallelism(size: int | str, pages: str = "4k", cores: int | None = None,
                **sweep) -> Parallelism:
    """The memory-parallelism sweep (:func:`chase_sweep`) over a private buffer of ``size``
    bytes on ``pages`` pages, then its best chase count on ``cores`` threads at once (default:
    one per core this process may use; 1 skips it); HugePagesUnavailable if a hugetlb pool
    cannot hold the buffer."""
    nbytes = parse_size(size)
    cores = default_threads() if cores is None else cores
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeapAliasWarning)  # THP may be off: then 4k it is
        heap = Heap(nbytes, backing="private", pages=pages)
    with heap:
        buffer = heap.view.array(np.uint8)
        ns = chase_sweep(buffer, **sweep)
        best = min(ns, key=ns.get)
        together = chase_all_cores(buffer, best, cores) if cores > 1 else 0.0
        del buffer
    return Parallelism(pages, nbytes, ns, cores, together)


def parallelism_by_pages(size: int, pages: tuple[str, ...] = ("4k", "thp", "2m")
                         ) -> tuple[Parallelism, ...]:
    """:func:`parallelism` on each of ``pages`` that a heap of ``size`` bytes can have now:
    a size that is no multiple of the page, or a hugetlb pool that cannot hold it, leaves
    that page size out."""
    found = []
    for kind in pages:
        if size % PAGE_SIZES[kind]:
            continue
        try:
            found.append(parallelism(size, kind))
        except HeapAliasError:  # a short hugetlb pool, or no memory for the buffer
            continue
    return tuple(found)


def fault_ns_per_page(size: int = 64 << 20, pages: str = "4k") -> float:
    """Nanoseconds to fault in one page of fresh private memory (4k, thp or 2m)."""
    flags = lib.MAP_HUGETLB | lib.MAP_HUGE_2MB if pages == "2m" else 0
    return native.fault_ns(size, flags) / (size // (2 << 20 if pages == "2m" else 4096))


def _rates(nbytes: int, span: int, pages: str, repeats: int) -> dict[str, float]:
    """Every bandwidth and the random-load time on two private buffers with ``pages`` pages."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeapAliasWarning)  # THP may be off: then 4k it is
        a = Heap(nbytes, backing="private", pages=pages)
    with a, Heap(nbytes, backing="private", pages=pages) as b:
        src, dst = a.view.array(np.uint8), b.view.array(np.uint8)
        src[:] = 1
        rates = {
            "memcpy_gb_per_s": memcpy_gb_per_s(dst, src, repeats),
            "stream_copy_gb_per_s": stream_copy_gb_per_s(dst, src, repeats),
            "write_gb_per_s": write_gb_per_s(dst, repeats),
            "read_gb_per_s": read_gb_per_s(src, repeats),
            "read_threads_gb_per_s": read_threads_gb_per_s(src, default_threads(), repeats),
            "write_read_gb_per_s": write_read_gb_per_s(dst, repeats),
            "random_load_ns": min(random_load_ns(src[:span]) for _ in range(repeats)),
        }
        del src, dst
    return rates


def measure(size: int | str = "256M", pages: tuple[str, ...] = ("4k", "thp"),
            repeats: int = 3, random_size: int | str | None = None,
            parallelism_size: int | str | None = None) -> Limits:
    """Every limit, each the best over buffers of ``size`` bytes with each of ``pages``.

    Huge pages spare TLB misses, so a case on 2m pages could beat a limit taken
    on 4k pages only: THP buffers (2 MiB pages where THP is on) take part too.
    ``random_size`` (at most ``size``; ``size`` by default) is the span of the
    random loads: the size of the heaps the graph cases trace. ``parallelism_size``, if
    given, is the buffer of the memory-parallelism sweep on 4k, thp and 2m pages (the
    graph heaps' size, uncapped).
    """
    nbytes = parse_size(size)
    span = min(parse_size(random_size), nbytes) if random_size is not None else nbytes
    runs = []
    for kind in pages:
        unit = PAGE_SIZES[kind]
        runs.append(_rates(max(nbytes // unit * unit, unit), span, kind, repeats))
    best = {key: (min if key.endswith("_ns") else max)(run[key] for run in runs)
            for key in runs[0]}
    with Heap(nbytes, backing="private") as chase:
        latency = load_latency_ns(chase.view.array(np.uint8))
    return Limits(
        buffer_bytes=nbytes, pages="+".join(pages), **best, random_bytes=span,
        read_threads=default_threads(),
        load_latency_ns=latency,
        # The first faults after boot (or a pool refill) are far slower: warm up.
        fault_ns_per_page=min(fault_ns_per_page(min(nbytes, 64 << 20))
                              for _ in range(repeats + 1)),
        parallelism=() if parallelism_size is None else parallelism_by_pages(
            parse_size(parallelism_size)),
    )
