"""Run benchmark cases: calibrate, warm up, interleave the variants, repeat, summarize.

Every variant of a case is set up first; then each round runs every variant
once, so drift on a noisy machine hits all of them alike. Limits (memcpy,
read bandwidth, load latency, fault cost) are measured in the same run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__, limits
from ..errors import HeapAliasError, HugePagesUnavailable, InvalidArgument
from ..probe import probe
from ..system import system_info
from . import pools
from .cases import CASES, Case, Context, Sample, Trial, Variant, graph_size, pool_short
from .stats import Summary, summarize

SUITES = ("quick", "full")
MIN_SAMPLE_SECONDS = 0.005  # calibrate cheap operations up to this much time per sample


@dataclass
class Result:
    """One variant of one case: its samples in the case's unit, and how they compare."""

    case: str
    label: str
    variant: dict
    unit: str
    higher_is_better: bool
    values: list[float]
    summary: Summary
    inner: int
    limit: str | None = None
    limit_value: float | None = None
    ratio_to_limit: float | None = None
    #: Ratios to figures shown beside the limit, never bounds (e.g. "latency"), by name.
    beside: dict[str, float] = field(default_factory=dict)
    #: Heap lines per op the loop must read (bench/floors.py); "floor" in ``beside`` is
    #: the ratio to that many loads at the memory-parallelism limit.
    floor_lines: float | None = None
    reference: str = ""
    ratio_to_reference: float = 1.0
    minor_faults: float = 0.0
    major_faults: float = 0.0
    obtained: str = ""

    def as_dict(self) -> dict:
        data = asdict(self)
        data["summary"] = self.summary.as_dict()
        return data


@dataclass(frozen=True)
class Skipped:
    case: str
    label: str
    reason: str


@dataclass
class Report:
    """A whole run: what ran where, the limits, and every result."""

    metadata: dict
    limits: dict
    config: dict
    results: list[Result] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "metadata": self.metadata, "limits": self.limits, "config": self.config,
            "results": [r.as_dict() for r in self.results],
            "skipped": [asdict(s) for s in self.skipped],
        }


def git_sha() -> str | None:
    """The checkout's commit, when heapalias runs from one."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def metadata() -> dict:
    """Kernel, CPU, THP modes, pools, limits, versions and git SHA: what a result depends on."""
    import cffi
    import numpy

    info = system_info().as_dict()
    return {
        **info,
        "python": platform.python_version(),
        "versions": {"heapalias": __version__, "numpy": numpy.__version__,
                     "cffi": cffi.__version__},
        "git_sha": git_sha(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def limit_values(measured: limits.Limits) -> dict[str, float]:
    """Each limit in the unit its cases report: GB/s, or ns per load. The figures measured
    per page size are keyed ``"<name> <pages>"`` (``"mlp 2m"``); the bare name holds the
    best over page sizes (``"mlp"``) or the 4 KiB figure (``"latency"``). See limit_value."""
    table = {
        "copy": measured.copy_gb_per_s,
        "write": measured.write_gb_per_s,
        "read": measured.read_gb_per_s,
        "write+read": measured.write_read_gb_per_s,
        "random load": measured.random_load_ns,
        "latency": measured.load_latency_ns,
    }
    for sweep in measured.parallelism:
        table[f"mlp {sweep.pages}"] = sweep.mlp_ns
        table[f"latency {sweep.pages}"] = sweep.latency_ns
    if measured.parallelism:
        table["mlp"] = min(sweep.mlp_ns for sweep in measured.parallelism)
    return table


def limit_value(table: dict[str, float], name: str, variant: Variant) -> float | None:
    """Limit ``name`` for ``variant``: the figure measured on its pages if there is one, else
    the run-wide figure; None if the run has neither."""
    return table.get(f"{name} {variant.pages}", table.get(name))


def measure_limits(size: int, suite: str) -> limits.Limits:
    """The limits for a run of ``suite`` at ``size``: buffers up to 256 MiB, random loads over
    the span of the graph cases' heaps (capped there too), and the memory-parallelism sweep
    over a buffer the size of those heaps, on each page size."""
    cap = 256 << 20
    return limits.measure(min(size, cap), repeats=3,
                          random_size=min(graph_size(size, suite), cap),
                          parallelism_size=graph_size(size, suite))


def limit_ratio(case: Case, median: float, bound: float) -> float:
    """How close a median comes to its limit: 1.0 reaches it, above 1.0 beats it."""
    return median / bound if case.higher_is_better else bound / median


class NothingSelected(InvalidArgument):
    """-k and the filters leave no case and no variant to run."""


def _matches(case: Case, variant: Variant, pattern: str | None, filters: dict) -> bool:
    if pattern and pattern not in f"{case.name} {variant.label}":
        return False
    return all(value is None or getattr(variant, key) in ("-", value)
               for key, value in filters.items())


def select(case: Case, ctx: Context, pattern: str | None,
           filters: dict) -> tuple[list[Variant], list[Skipped]]:
    """The variants of ``case`` that ``pattern`` and ``filters`` pick: those that can run, and
    those that cannot, with why."""
    runnable, skipped = [], []
    for variant, reason in case.variants(ctx):
        if not _matches(case, variant, pattern, filters):
            continue
        if reason:
            skipped.append(Skipped(case.name, variant.label, reason))
        else:
            runnable.append(variant)
    return runnable, skipped


def _run_calibrated(trial: Trial, inner: int) -> tuple[Sample, float, float]:
    """``inner`` runs as one sample, with the page faults they took."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    seconds = bytes_ = ops = 0
    for _ in range(inner):
        sample = trial.run()
        seconds += sample.seconds
        bytes_ += sample.bytes
        ops += sample.ops
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (Sample(seconds, bytes_, ops), (after.ru_minflt - before.ru_minflt) / inner,
            (after.ru_majflt - before.ru_majflt) / inner)


def _setup(case: Case, ctx: Context, variant: Variant) -> Trial | Skipped:
    try:
        return case.setup(ctx, variant)
    except HugePagesUnavailable:
        return Skipped(case.name, variant.label, pool_short(variant.pages))
    except HeapAliasError as exc:
        return Skipped(case.name, variant.label, str(exc))


def run_variants(case: Case, ctx: Context, variants: list[Variant], repeat: int,
                 limit_table: dict[str, float], tick: Callable[[str], None],
                 on_start: Callable[[int], None] = lambda samples: None) -> tuple[
                     list[Result], list[Skipped]]:
    """Set up every variant, warm up and calibrate, then run interleaved rounds.

    ``on_start`` hears how many samples (warm-ups included) are about to run.
    """
    trials: list[tuple[Variant, Trial]] = []
    skipped: list[Skipped] = []
    try:
        for variant in variants:
            trial = _setup(case, ctx, variant)
            if isinstance(trial, Skipped):
                skipped.append(trial)
            else:
                trials.append((variant, trial))
        on_start(len(trials) * (repeat + 1))
        inner = {}
        for variant, trial in trials:  # warm-up run, which also calibrates
            begin = time.perf_counter()
            trial.run()
            wall = time.perf_counter() - begin  # setup work in run() counts for calibration
            inner[variant] = min(max(math.ceil(MIN_SAMPLE_SECONDS / max(wall, 1e-9)), 1), 10_000)
            tick(f"{case.name}: warm-up {variant.label}")
        samples: dict[Variant, list[Sample]] = {v: [] for v, _ in trials}
        faults: dict[Variant, list[tuple[float, float]]] = {v: [] for v, _ in trials}
        for round_ in range(repeat):
            for variant, trial in trials:
                sample, minor, major = _run_calibrated(trial, inner[variant])
                samples[variant].append(sample)
                faults[variant].append((minor, major))
                tick(f"{case.name}: round {round_ + 1}/{repeat} {variant.label}")
        obtained = {variant: trial.obtained for variant, trial in trials}
        lines = {variant: trial.lines for variant, trial in trials}
    finally:
        for _, trial in trials:
            trial.close()
    results = []
    ran = [v for v, _ in trials]
    medians = {}
    for variant in ran:
        values = [case.metric(s) for s in samples[variant]]
        summary = summarize(values)
        medians[variant] = summary.median
        minor = sum(f[0] for f in faults[variant]) / len(faults[variant])
        major = sum(f[1] for f in faults[variant]) / len(faults[variant])
        results.append(Result(
            case.name, variant.label, asdict(variant), case.unit, case.higher_is_better, values,
            summary, inner[variant], case.limit, minor_faults=minor, major_faults=major,
            obtained=obtained[variant],
        ))
    for result, variant in zip(results, ran, strict=True):
        reference = case.reference(variant, ran) or ran[0]
        result.reference = reference.label
        ratio = medians[variant] / medians[reference] if medians[reference] else math.nan
        result.ratio_to_reference = ratio if case.higher_is_better else 1 / ratio
        result.limit = case.limit_for(variant)
        bound = limit_value(limit_table, result.limit, variant) if result.limit else None
        if bound:
            result.limit_value = bound
            result.ratio_to_limit = limit_ratio(case, result.summary.median, bound)
        for name in case.beside_for(variant):
            figure = limit_value(limit_table, name, variant)
            if figure:
                result.beside[name] = limit_ratio(case, result.summary.median, figure)
        mlp = limit_value(limit_table, "mlp", variant)
        if lines[variant] and mlp:
            result.floor_lines = lines[variant]
            result.beside["floor"] = limit_ratio(case, result.summary.median,
                                                 lines[variant] * mlp)
    return results, skipped


def run_case(case: Case, ctx: Context, repeat: int, pattern: str | None, filters: dict,
             limit_table: dict[str, float], tick: Callable[[str], None],
             on_start: Callable[[int], None] = lambda samples: None) -> tuple[
                 list[Result], list[Skipped]]:
    """Run the variants of ``case`` that ``pattern`` and ``filters`` pick (see select)."""
    variants, skipped = select(case, ctx, pattern, filters)
    results, failed = run_variants(case, ctx, variants, repeat, limit_table, tick, on_start)
    return results, skipped + failed


def plan(suite: str, hprof: str | None = None) -> list[Case]:
    """The cases a suite runs, in order: given a heap dump, those that want one too."""
    return [c for c in CASES if suite in c.suites or (hprof and c.wants_dump)]


def _selection(cases: list[Case], ctx: Context, pattern: str | None,
               filters: dict) -> list[tuple[Case, list[Variant], list[Skipped]]]:
    return [(case, *select(case, ctx, pattern, filters)) for case in cases]


def _lend_pools(guard: pools.PoolGuard | None, ctx: Context, cases: list[Case],
                pattern: str | None, filters: dict, say: Callable[[str], None]) -> Context:
    """Make sure the hugetlb pools hold what the selected variants need, or say what would.

    With a guard (root), a pool the run needs that has no page free gets one first, so the
    probe can try its combinations; the exact need then follows from the probe. Without
    one, the need is an upper bound from the probe as it would read with filled pools.
    """
    hoped = _selection(cases, dataclasses.replace(ctx, probe=pools.as_if_filled(ctx.probe)),
                       pattern, filters)
    upper = pools.demand(ctx, [(case, variants) for case, variants, _ in hoped])
    if guard is None:
        line = pools.shortage(upper)
        if line:
            say(line)
        return ctx
    try:
        primed = [pages for pages in upper if guard.ensure(pages, 1) and pages in guard.found]
    except HeapAliasError as exc:
        say(f"heapalias: warning: cannot fill the hugetlb pools: {exc}")
        return ctx
    if primed:
        ctx = dataclasses.replace(ctx, probe=probe())
    exact = _selection(cases, ctx, pattern, filters)
    line = guard.fill(pools.demand(ctx, [(case, variants) for case, variants, _ in exact]))
    if line:
        say(line)
    return ctx


def run_suite(*, suite: str = "quick", size: int = 256 << 20, repeat: int = 5,
              pattern: str | None = None, backing: str | None = None, pages: str | None = None,
              strategy: str | None = None, pin: int | None = None, reserve_pools: bool = False,
              hprof: str | None = None, jvm_pauses: dict[str, list[float]] | None = None,
              tick: Callable[[str], None] = lambda _: None,
              on_start: Callable[[int], None] = lambda samples: None,
              say: Callable[[str], None] = lambda line: None) -> Report:
    """Run a suite and return its Report.

    ``on_start(n)`` is called before each case with its number of samples, and
    ``tick(description)`` after every sample: enough to drive a progress bar.
    ``hprof`` names a heap dump for the real_heap case (``jvm_pauses``: the JVM's
    full-GC pauses on its heap, by collector, when known).
    ``reserve_pools`` (root only) fills the hugetlb pools the selected variants
    need for the run and restores them when it ends; ``say`` hears one line
    about the pools (what was reserved, or which command would fill them).
    Raises NothingSelected when ``pattern`` and the filters pick nothing.
    """
    if pin is not None:
        os.sched_setaffinity(0, {pin})
    filters = {"backing": backing, "pages": pages, "strategy": strategy}
    cases = plan(suite, hprof)
    with pools.PoolGuard(say) if reserve_pools else contextlib.nullcontext() as guard:
        ctx = Context(size=size, suite=suite, probe=probe(), hprof=hprof, jvm_pauses=jvm_pauses)
        if not any(variants or skipped
                   for _, variants, skipped in _selection(cases, ctx, pattern, filters)):
            raise NothingSelected(
                f"no case or variant of the {suite} suite matches "
                + ", ".join(f"{k} {v!r}" for k, v in {"-k": pattern, **filters}.items() if v),
                remedy="`heapalias bench --help` lists the options; case names are in the README")
        ctx = _lend_pools(guard, ctx, cases, pattern, filters, say)
        measured = measure_limits(size, suite)
        table = limit_values(measured)
        report = Report(
            metadata=metadata(), limits={**measured.as_dict(), "ratios_against": table},
            config={"suite": suite, "size": size, "repeat": repeat, "pattern": pattern,
                    "hprof": hprof,
                    "backing": backing, "pages": pages, "strategy": strategy, "pin": pin,
                    "reserved_pools": guard.lent() if guard else {}},
        )
        for case, variants, skipped in _selection(cases, ctx, pattern, filters):
            results, failed = run_variants(case, ctx, variants, repeat, table, tick, on_start)
            report.results.extend(results)
            report.skipped.extend(skipped + failed)
    return report
