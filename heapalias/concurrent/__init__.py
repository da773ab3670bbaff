"""Collection beside a running program: a C mutator thread runs a seeded program over a
live graph while a design collects, and every stall it suffers is timed.

- :func:`live_graph` builds the graph the mutator works on (a random graph whose
  objects carry an identity and a value word after their references).
- :func:`run` runs the mutator (:class:`MutatorMix`) on its own thread with a
  design beside it, and returns a :class:`ConcurrentRun`: the checksum of
  everything the mutator read, its throughput, and its stalls, from which
  :mod:`.metrics` computes pause percentiles and minimum mutator utilization.

Designs, by name (:data:`DESIGNS`):

- ``"none"``: no collection; the reference run. Its checksum is the one every
  design must reproduce for the same seed and graph.
- ``"stw"``: stop the mutator at a safepoint, evacuate (Cheney), flip, resume.
- ``"colored"``: ZGC before JDK 21. The heap is multi-mapped, one view per color;
  a short pause flips the good color, then the collector heals the roots and
  relocates beside the mutator, whose every reference load (roots too) goes through
  a load barrier (a bad color takes the slow path: find or make the copy, heal the
  slot).
  A reference of any color is dereferenced through its own view.
- ``"masked"``: the same collector and barrier over one mapping, the color bits
  stripped at every dereference (generational ZGC's way).
- ``"minor"``: no barrier in the mutator at all. A memfd heap (4k or 2m pages) is mapped
  twice, once for the mutator, once for the collector; after a short flip pause, the
  mutator's view of every to-space page not yet scanned traps (userfaultfd MINOR
  faults), and the collector, scanning through its own view, makes each page safe
  before mapping it (Appel, Ellis and Li's barrier; cext/design_minor.c). Faults from
  another process that attached the heap are not trapped: out of scope.
- ``"copy"`` and ``"move"``: ART's concurrent compaction over a private anonymous heap
  (4k pages). A pause marks, plans a sliding compaction and moves the heap's pages aside
  (MREMAP_DONTUNMAP); the mutator's range, left empty, traps (MISSING faults), and each
  page is built and installed whole with UFFDIO_COPY, or UFFDIO_MOVE for ``"move"``
  (cext/design_copy.c).

:func:`plan_for` lays a heap out as a design needs it.

The mutator holds references only within an operation, and polls for a
safepoint between operations, so a pause fixes its roots and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import native, uffd, workloads
from ..backing import require_int
from ..collectors import SemiSpace
from ..errors import InvalidArgument
from ..native import lib
from ..objects import roots_array
from .metrics import STALL_DTYPE, mmu, pause_percentiles

#: Every design, by name: the value is its C enum.
DESIGNS = {"none": lib.HA_DESIGN_NONE, "stw": lib.HA_DESIGN_STW,
           "colored": lib.HA_DESIGN_COLORED, "masked": lib.HA_DESIGN_COLORED,
           "minor": lib.HA_DESIGN_MINOR, "copy": lib.HA_DESIGN_COPY, "move": lib.HA_DESIGN_MOVE}
#: The reference encoding each design needs (None: any).
ENCODING = {"none": None, "stw": None, "colored": "colored", "masked": "masked",
            "minor": "offset", "copy": "offset", "move": "offset"}
#: The page-trap designs: the userfaultfd feature each needs, per page size (None: only
#: userfaultfd itself, MISSING faults on anonymous memory).
TRAP_FEATURES = {"minor": {"4k": "MINOR_SHMEM", "2m": "MINOR_HUGETLBFS"},
                 "copy": {"4k": None}, "move": {"4k": "MOVE"}}
#: The backing each page-trap design's heap must have.
TRAP_BACKING = {"minor": "memfd", "copy": "private", "move": "private"}
#: Colors of the multi-mapped layout: a cycle moves the good color on by one.
COLORS = 3


@dataclass(frozen=True)
class MutatorMix:
    """The mutator's program: how many operations, and what share of them (per mille)
    store a value or a reference, or allocate; the rest only load. Each operation walks
    at most ``path_length`` references from a random root."""

    operations: int = 1_000_000
    store_permille: int = 100
    alloc_permille: int = 50
    path_length: int = 8
    seed: int = 1

    def __post_init__(self) -> None:
        for name, high in (("operations", 1 << 40), ("store_permille", 1000),
                           ("alloc_permille", 1000), ("path_length", 1 << 20),
                           ("seed", (1 << 64) - 1)):
            value = require_int(getattr(self, name), name)
            if not (1 if name in ("operations", "path_length") else 0) <= value <= high:
                raise InvalidArgument(f"{name} must be in range, up to {high}; got {value}")
        if self.store_permille + self.alloc_permille > 1000:
            raise InvalidArgument("store_permille + alloc_permille must not exceed 1000")


@dataclass(frozen=True)
class ConcurrentRun:
    """One run: what the mutator did and read, and what the collector cost it."""

    design: str
    mix: MutatorMix
    checksum: int
    operations: int
    loads: int
    stores: int
    allocations: int
    collections: int
    started_ns: int
    mutator_ns: int
    collector_ns: int
    mutator_cpu_ns: int
    collector_cpu_ns: int
    bytes_relocated: int
    objects_relocated: int
    slow_paths: int
    stall_count: int
    stalls: np.ndarray = field(repr=False)  # STALL_DTYPE, the first ``len(stalls)`` stalls
    faults: int = 0         #: page traps the collector served (the page-trap designs)
    pages_exposed: int = 0  #: pages it mapped into the mutator's view
    fault_service_ns: int = 0  #: its time serving them, from reading each to mapping its page

    @property
    def complete(self) -> bool:
        """Whether every stall was recorded (the metrics below use the recorded ones)."""
        return len(self.stalls) == self.stall_count

    @property
    def operations_per_s(self) -> float:
        return self.operations / (self.mutator_ns / 1e9) if self.mutator_ns else float("inf")

    @property
    def mutator_on_cpu(self) -> float:
        """The share of its wall time the mutator thread ran on a CPU: it spins at its
        safepoints, so below 1 by the time it waited for a CPU (the machine was shared)."""
        return min(self.mutator_cpu_ns / self.mutator_ns, 1.0) if self.mutator_ns else 1.0

    def pauses(self) -> dict[str, float]:
        """Stall count and p50/p99/p99.9/max in microseconds (zeros with no stall)."""
        return pause_percentiles(self.stalls)

    def mmu(self, window_ns: int) -> float:
        """Minimum mutator utilization over every window of ``window_ns`` in the run."""
        return mmu(self.stalls, self.started_ns, self.mutator_ns, window_ns)


def disjoint(stalls: np.ndarray) -> np.ndarray:
    """The stalls in time order, each begun no earlier than the one before it ended. A
    page-trap collector times a fault from its last look at the userfaultfd, before which
    the fault cannot have come: an upper bound that may reach back into the mutator's
    stall before; the mutator is one thread, so its stalls never overlap."""
    stalls = np.sort(stalls, order="start_ns", kind="stable")
    if len(stalls) > 1:
        ends = np.maximum.accumulate(stalls["start_ns"] + stalls["ns"])
        start = np.maximum(stalls["start_ns"][1:], ends[:-1])
        stalls["ns"][1:] -= np.minimum(start - stalls["start_ns"][1:], stalls["ns"][1:])
        stalls["start_ns"][1:] = start
    return stalls


def plan_for(heap, design: str) -> SemiSpace:
    """A semispace plan over ``heap`` laid out for ``design``: a multi-mapped layout of
    :data:`COLORS` views and that design's encoding for colored and masked, offsets
    otherwise. The views stay mapped as long as the heap."""
    if not isinstance(design, str) or design not in DESIGNS:
        raise InvalidArgument(f"design must be one of {sorted(DESIGNS)}, got {design!r}")
    encoding = ENCODING[design]
    if design in TRAP_FEATURES:
        trap_page_size(heap, design)
        return SemiSpace.over(heap)
    if encoding is None:
        return SemiSpace.over(heap)
    size = heap.view.size if hasattr(heap, "view") else heap.size
    colors = heap.multimap(COLORS, shift=max(size - 1, 1).bit_length())
    return SemiSpace.over(heap, encoding=encoding, colors=colors)


#: The minor design's allocation chunk (cext/design_minor.c's CHUNK_BYTES).
TRAP_CHUNK_BYTES = 64 << 10


def _first_chunk_end(page: int, to_start: int) -> int:
    """Where the mutator's first chunk in to-space ends (design_minor.c's first_chunk_end)."""
    least = max(TRAP_CHUNK_BYTES, page) - page + 4096
    return -(-(to_start + least) // page) * page


def trap_page_size(heap, design: str) -> int:
    """The page size a page-trap ``design`` traps in over ``heap``; InvalidArgument unless
    the heap is a :class:`~heapalias.heap.Heap` of the design's backing
    (:data:`TRAP_BACKING`) and a page size it supports; for ``minor``, large enough that
    each semispace has pages of its own, room for the mutator's first allocation chunk
    and some copies."""
    from ..heap import Heap  # heap imports objects, which this package's users import first

    pages, backing = TRAP_FEATURES[design], TRAP_BACKING[design]
    if not isinstance(heap, Heap) or heap.backing != backing or heap.pages not in pages:
        raise InvalidArgument(
            f"design {design!r} needs a {backing} Heap of {' or '.join(pages)} pages, got "
            f"{heap!r}", remedy=f"Heap(size, backing={backing!r}, pages={next(iter(pages))!r})")
    page = heap.page_size
    if design != "minor":  # compaction in place: any size will do
        return page
    low, high = SemiSpace.layout(heap.size).values()
    if high[0] // page * page < -(-low[1] // page) * page or any(
            end < _first_chunk_end(page, start) + 4096 for start, end in (low, high)):
        raise InvalidArgument(f"design {design!r} needs a larger heap than {heap.size} bytes "
                              f"on {heap.pages} pages", remedy="give the heap more pages")
    return page


def live_graph(plan: SemiSpace, objects: int, *, mean_degree: int = 2, roots: int = 64,
               seed: int = 1) -> np.ndarray:
    """Empty the plan and build a random graph of ``objects`` nodes in its allocation space,
    each with an identity (its number, in address order) and a value word (and up to two
    more) after its references; the root references, as :func:`run` takes them. The
    objects the mutator allocates number from ``1 << 40``."""
    plan.reset()
    space = plan.allocation_space
    graph = workloads.random_graph(plan.objects, objects, mean_degree, (2, 4), seed=seed,
                                   nroots=roots, space=space.name)
    native.stamp_identities(plan.objects.native(), space)
    return graph.roots.copy()


def run(plan: SemiSpace, roots: np.ndarray, design: str = "stw", *,
        mix: MutatorMix | None = None, collections: int = 8,
        stall_capacity: int = 1 << 20, collector_delay_ns: int = 0,
        verify: bool = False) -> ConcurrentRun:
    """Run the mutator over the graph ``roots`` reach, in ``plan``'s allocation space,
    with ``design`` collecting beside it ``collections`` times (spread evenly over the
    operations, and whenever the mutator runs out of room). The roots are updated in
    place. A collector or mutator failure is raised as a typed error once the mutator
    thread has been joined; nothing outlives the call.

    ``collector_delay_ns`` slows the concurrent collectors down: they wait that long after
    each stale reference they heal (colored, masked, minor) or translate (copy, move), so
    the mutator meets more slow paths or traps (a knob for studying them; 0 runs at full
    speed). ``verify`` checks
    the heap at the end of every cycle, with the mutator parked (every reference in the
    allocation space and the roots names an object there): HeapCorruption if not."""
    if not isinstance(plan, SemiSpace):
        raise InvalidArgument(f"the concurrent designs run on a SemiSpace plan, not {plan!r}")
    if not isinstance(design, str) or design not in DESIGNS:
        raise InvalidArgument(f"design must be one of {sorted(DESIGNS)}, got {design!r}")
    needs = ENCODING[design]
    if needs is not None and plan.objects.encoding != needs:
        raise InvalidArgument(f"design {design!r} needs a heap of {needs} references, not "
                              f"{plan.objects.encoding}", remedy="lay it out with plan_for()")
    if (not isinstance(roots, np.ndarray) or roots_array(roots) is not roots
            or not roots.flags.writeable or not len(roots)):
        raise InvalidArgument("roots must be a non-empty writeable 1-D contiguous uint64 array")
    mix = MutatorMix() if mix is None else mix
    if not isinstance(mix, MutatorMix):
        raise InvalidArgument(f"mix must be a MutatorMix, got {mix!r}")
    delay = require_int(collector_delay_ns, "collector_delay_ns")
    if not 0 <= delay <= 10**9:
        raise InvalidArgument(f"collector_delay_ns must be in 0..1e9, got {delay}")
    collections = require_int(collections, "collections")
    if not 0 <= collections <= 1 << 20:
        raise InvalidArgument(f"collections must be in 0..{1 << 20}, got {collections}")
    stalls = native.scratch(require_int(stall_capacity, "stall_capacity"), STALL_DTYPE,
                            "the stall log")
    fields = {"operations": mix.operations, "seed": mix.seed,
              "store_permille": mix.store_permille, "alloc_permille": mix.alloc_permille,
              "path_length": mix.path_length, "collections": collections,
              "first_identity": 1 << 40, "collector_delay_ns": delay, "verify": bool(verify)}
    collector_view = trap = None
    if design in TRAP_FEATURES:
        heap = plan.objects.heap
        page_size = trap_page_size(heap, design)
        if plan.objects.view is not heap.view:
            raise InvalidArgument(f"design {design!r} traps the heap's primary view; the plan "
                                  "must live there", remedy="lay it out with plan_for()")
        uffd.require(TRAP_FEATURES[design][heap.pages], f"design {design!r}")
        if design == "minor":  # the collector's own view of the memfd
            collector_view = heap.alias("memfd")
            trap = (collector_view.address, page_size)
    try:
        gc = plan.to_native()
        rc, st, result = native.concurrent(gc, DESIGNS[design], fields, roots, stalls, trap)
        plan.from_native(gc)
    finally:
        if collector_view is not None:
            collector_view.close()
    native.loop_result(rc, st, f"concurrent {design}")
    recorded = min(int(result.stalls), len(stalls))
    return ConcurrentRun(
        design, mix, int(result.checksum), int(result.operations), int(result.loads),
        int(result.stores), int(result.allocations), int(result.collections),
        int(result.started_ns), int(result.mutator_ns), int(result.collector_ns),
        int(result.mutator_cpu_ns), int(result.collector_cpu_ns),
        int(result.bytes_relocated), int(result.objects_relocated), int(result.slow_paths),
        int(result.stalls), disjoint(stalls[:recorded]), int(result.faults),
        int(result.pages_exposed), int(result.fault_service_ns))


__all__ = ["COLORS", "DESIGNS", "ENCODING", "TRAP_BACKING", "TRAP_FEATURES", "ConcurrentRun",
           "MutatorMix", "disjoint", "live_graph", "mmu", "pause_percentiles", "plan_for", "run",
           "trap_page_size"]
