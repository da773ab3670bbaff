"""Physical limits of this machine, measured by C helpers in the same run as the loops.

Every benchmark figure is a ratio to one of these: memcpy bandwidth (bytes
copied once), sequential read bandwidth, dependent-load latency, and the cost
of a first-touch page fault.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .backing import parse_size
from .errors import InvalidArgument, SyscallFailed
from .heap import Heap
from .native import ffi, lib


@dataclass(frozen=True)
class Limits:
    """Best-of-``repeats`` measurements, taken on pre-faulted memory of the given page size."""

    buffer_bytes: int
    pages: str
    memcpy_gb_per_s: float
    read_gb_per_s: float
    load_latency_ns: float
    fault_ns_per_page: float

    def as_dict(self) -> dict:
        return asdict(self)


def memcpy_gb_per_s(dst: np.ndarray, src: np.ndarray, repeats: int = 3) -> float:
    """Best memcpy bandwidth from ``src`` into ``dst`` (bytes copied once, per second, GB/s)."""
    n = min(dst.nbytes, src.nbytes)
    best = min(lib.ha_memcpy_ns(dst.ctypes.data, src.ctypes.data, n, 1) for _ in range(repeats))
    return n / best


def read_gb_per_s(src: np.ndarray, repeats: int = 3) -> float:
    """Best sequential read bandwidth over ``src`` (GB/s)."""
    total = ffi.new("uint64_t *")
    best = min(lib.ha_read_ns(src.ctypes.data, src.nbytes, 1, total) for _ in range(repeats))
    return src.nbytes / best


def load_latency_ns(buffer: np.ndarray, steps: int = 2_000_000, seed: int = 1) -> float:
    """Nanoseconds per dependent load, chasing a random cycle through ``buffer``."""
    slots = buffer.nbytes // 64
    if slots < 2:
        raise InvalidArgument("the latency buffer needs at least 128 bytes")
    last = ffi.new("uint64_t *")
    return lib.ha_chase_ns(buffer.ctypes.data, slots, steps, seed, last) / steps


def fault_ns_per_page(size: int = 64 << 20, pages: str = "4k") -> float:
    """Nanoseconds to fault in one page of fresh private memory (4k, thp or 2m)."""
    flags = lib.MAP_HUGETLB | lib.MAP_HUGE_2MB if pages == "2m" else 0
    ns = lib.ha_fault_ns(size, flags)
    if ns < 0:
        raise SyscallFailed("mmap", -ns, detail=f"mapping {size} bytes of {pages} pages")
    return ns / (size // (2 << 20 if pages == "2m" else 4096))


def measure(size: int | str = "256M", pages: str = "4k", repeats: int = 3) -> Limits:
    """All four limits on two heaps of ``size`` bytes with ``pages`` pages."""
    nbytes = parse_size(size)
    with Heap(nbytes, backing="private", pages=pages) as a, \
            Heap(nbytes, backing="private", pages=pages) as b:
        src, dst = a.view.array(np.uint8), b.view.array(np.uint8)
        src[:] = 1
        result = Limits(
            buffer_bytes=nbytes, pages=pages,
            memcpy_gb_per_s=memcpy_gb_per_s(dst, src, repeats),
            read_gb_per_s=read_gb_per_s(src, repeats),
            load_latency_ns=load_latency_ns(dst),
            # The first faults after boot (or a pool refill) are far slower: warm up.
            fault_ns_per_page=min(
                fault_ns_per_page(min(nbytes, 64 << 20), "2m" if pages == "2m" else "4k")
                for _ in range(repeats + 1)
            ),
        )
        del src, dst
    return result
