"""Designs side by side, as a GC researcher would compare them: each design's run beside
the no-collection run of the same seed on the same heap, in interleaved rounds.

Round 1 is reported apart as the cold run (a fresh heap: first-touch faults, cold
caches); the steady state is the median over the later rounds. For colored and masked,
each round also runs the design's load barrier with no collection at all, which prices
the barrier's fast path against the same mutator without one.
"""

from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import HeapAliasWarning, InvalidArgument
from ..heap import Heap
from . import TRAP_BACKING, MutatorMix, live_graph, plan_for, run
from .metrics import pause_percentiles

#: The windows MMU is reported at, in nanoseconds: 100 us, 1 ms, 10 ms.
MMU_WINDOWS = (100_000, 1_000_000, 10_000_000)
#: Barrier stalls apart from pauses (safepoints and allocation waits).
BARRIER = 2


@dataclass
class DesignStudy:
    """Every round of one design on one page size: its runs, the reference runs, and (for
    colored and masked) the barrier-only runs."""

    design: str
    pages: str
    obtained: str
    objects: int
    runs: list = field(default_factory=list)
    references: list = field(default_factory=list)
    barrier_only: list = field(default_factory=list)

    def _phase(self, runs: list, cold: bool) -> list:
        return runs[:1] if cold else (runs[1:] or runs)

    def summary(self, cold: bool = False) -> dict:
        """The phase's figures: pauses and barrier slow paths (pooled over its runs, in
        microseconds), MMU per window (median), throughput against the reference (median
        of per-round ratios), barrier fast-path cost, collector time and bytes moved."""
        runs, refs = self._phase(self.runs, cold), self._phase(self.references, cold)
        stalls = np.concatenate([r.stalls for r in runs]) if runs else np.zeros(0)
        out = {
            "design": self.design, "pages": self.pages, "obtained": self.obtained,
            "phase": "cold" if cold else "steady", "rounds": len(runs),
            "live_objects": self.objects,
            "checksums_equal": all(r.checksum == f.checksum for r, f in zip(
                self.runs, self.references, strict=True)),
            "pauses": pause_percentiles(stalls[stalls["kind"] != BARRIER]) if len(stalls)
            else pause_percentiles(stalls),
            "slow_paths": pause_percentiles(stalls[stalls["kind"] == BARRIER]) if len(stalls)
            else pause_percentiles(stalls),
            "mmu": {f"{w / 1e6:g}ms": statistics.median(r.mmu(w) for r in runs)
                    for w in MMU_WINDOWS},
            "throughput_ratio": statistics.median(
                r.operations_per_s / f.operations_per_s for r, f in zip(runs, refs, strict=True)),
            "operations_per_s": statistics.median(r.operations_per_s for r in runs),
            "reference_operations_per_s": statistics.median(f.operations_per_s for f in refs),
            "collections": statistics.median(r.collections for r in runs),
            "collector_ms": statistics.median(r.collector_ns / 1e6 for r in runs),
            # The reference runs have no collector thread: a mutator off its CPU there was
            # kept waiting by another process (the worst of them).
            "reference_on_cpu": min(f.mutator_on_cpu for f in refs),
            "relocated_mb": statistics.median(r.bytes_relocated / 2**20 for r in runs),
            "faults": statistics.median(r.faults for r in runs),
            "fault_service_us": statistics.median(r.fault_service_ns / r.faults / 1e3
                                                  if r.faults else 0.0 for r in runs),
            "complete_logs": all(r.complete for r in runs),
        }
        barrier = self._phase(self.barrier_only, cold)
        if barrier:
            base = self._phase(self.references, cold)
            per_load = [(b.mutator_ns - f.mutator_ns) / f.loads
                        for b, f in zip(barrier, base, strict=True)]
            out["barrier_fast_path"] = {
                "ns_per_load": statistics.median(per_load),
                "throughput_ratio": statistics.median(
                    b.operations_per_s / f.operations_per_s
                    for b, f in zip(barrier, base, strict=True)),
            }
        return out

    def mmu_curve(self, windows_ns) -> list[float]:
        """MMU at each window (median over the steady runs): the curve --plot draws."""
        runs = self._phase(self.runs, cold=False)
        return [statistics.median(r.mmu(int(w)) for r in runs) for w in windows_ns]


def study(design: str, *, size: int, pages: str = "4k", backing: str = "memfd",
          objects: int = 1_000_000, mix: MutatorMix | None = None, collections: int = 10,
          rounds: int = 3, stall_capacity: int = 1 << 20) -> DesignStudy:
    """Run ``design`` and the reference ``rounds`` times, alternating which goes first.
    Each run starts from the same freshly built graph (``objects`` live objects)."""
    if design == "none":
        raise InvalidArgument("study a design against the reference run, not the reference")
    backing = TRAP_BACKING.get(design, backing)  # the page-trap designs need their own
    mix = mix or MutatorMix()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeapAliasWarning)  # THP off, say: 4k it is
        heap = Heap(size, backing=backing, pages=pages, name=f"concurrent-{design}")
    with heap:
        plan = plan_for(heap, design)
        result = DesignStudy(design, pages, heap.pages_report()[0].obtained, objects)
        kinds = [("runs", design, collections), ("references", "none", 0)]
        if design in ("colored", "masked"):
            kinds.append(("barrier_only", design, 0))
        for round_no in range(rounds):
            for bucket, name, cycles in kinds if round_no % 2 == 0 else kinds[::-1]:
                roots = live_graph(plan, objects, seed=mix.seed)
                getattr(result, bucket).append(run(plan, roots, name, mix=mix,
                                                   collections=cycles,
                                                   stall_capacity=stall_capacity))
        return result
