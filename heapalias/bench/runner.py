"""Run benchmark cases: calibrate, warm up, interleave the variants, repeat, summarize.

Every variant of a case is set up first; then each round runs every variant
once, so drift on a noisy machine hits all of them alike. Limits (memcpy,
read bandwidth, load latency, fault cost) are measured in the same run.
"""

from __future__ import annotations

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
from ..errors import HeapAliasError
from ..probe import probe
from ..system import system_info
from .cases import CASES, Case, Context, Sample, Trial, Variant
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
    """Each limit in the unit its cases report: GB/s, or ns per dependent load."""
    return {
        "memcpy": measured.memcpy_gb_per_s,
        "read": measured.read_gb_per_s,
        "latency": measured.load_latency_ns,
        "fault": 4096 / measured.fault_ns_per_page,  # bytes per ns of 4 KiB first touches
    }


def _matches(case: Case, variant: Variant, pattern: str | None, filters: dict) -> bool:
    if pattern and pattern not in f"{case.name} {variant.label}":
        return False
    return all(value is None or getattr(variant, key) in ("-", value)
               for key, value in filters.items())


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


def run_case(case: Case, ctx: Context, repeat: int, pattern: str | None, filters: dict,
             limit_table: dict[str, float], tick: Callable[[str], None],
             on_start: Callable[[int], None] = lambda samples: None) -> tuple[
                 list[Result], list[Skipped]]:
    """Set up every matching variant, warm up and calibrate, then run interleaved rounds.

    ``on_start`` hears how many samples (warm-ups included) are about to run.
    """
    trials: list[tuple[Variant, Trial]] = []
    skipped: list[Skipped] = []
    for variant, label, reason in case.variants(ctx):
        if variant is None:
            if not pattern or pattern in f"{case.name} {label}":
                skipped.append(Skipped(case.name, label, reason))
            continue
        if not _matches(case, variant, pattern, filters):
            continue
        try:
            trials.append((variant, case.setup(ctx, variant)))
        except HeapAliasError as exc:
            skipped.append(Skipped(case.name, variant.label, str(exc)))
    on_start(len(trials) * (repeat + 1))
    try:
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
    finally:
        for _, trial in trials:
            trial.close()
    results = []
    variants = [v for v, _ in trials]
    medians = {}
    for variant in variants:
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
    for result, variant in zip(results, variants, strict=True):
        reference = case.reference(variant, variants) or variants[0]
        result.reference = reference.label
        ratio = medians[variant] / medians[reference] if medians[reference] else math.nan
        result.ratio_to_reference = ratio if case.higher_is_better else 1 / ratio
        if case.limit:
            bound = limit_table[case.limit]
            result.limit_value = bound
            result.ratio_to_limit = (result.summary.median / bound if case.higher_is_better
                                     else bound / result.summary.median)
    return results, skipped


def plan(suite: str) -> list[Case]:
    """The cases a suite runs, in order."""
    return [c for c in CASES if suite in c.suites]


def run_suite(*, suite: str = "quick", size: int = 256 << 20, repeat: int = 5,
              pattern: str | None = None, backing: str | None = None, pages: str | None = None,
              strategy: str | None = None, pin: int | None = None,
              tick: Callable[[str], None] = lambda _: None,
              on_start: Callable[[int], None] = lambda samples: None) -> Report:
    """Run a suite and return its Report.

    ``on_start(n)`` is called before each case with its number of samples, and
    ``tick(description)`` after every sample: enough to drive a progress bar.
    """
    if pin is not None:
        os.sched_setaffinity(0, {pin})
    ctx = Context(size=size, suite=suite, probe=probe())
    measured = limits.measure(min(size, 256 << 20), repeats=3)
    table = limit_values(measured)
    report = Report(
        metadata=metadata(), limits={**measured.as_dict(), "ratios_against": table},
        config={"suite": suite, "size": size, "repeat": repeat, "pattern": pattern,
                "backing": backing, "pages": pages, "strategy": strategy, "pin": pin},
    )
    filters = {"backing": backing, "pages": pages, "strategy": strategy}
    for case in plan(suite):
        results, skipped = run_case(case, ctx, repeat, pattern, filters, table, tick, on_start)
        report.results.extend(results)
        report.skipped.extend(skipped)
    return report
