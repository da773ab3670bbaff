"""Benchmarks: one registry of cases (``cases``), a runner, statistics, reports and plots.

The ``heapalias bench`` command and the pytest-benchmark suites in
``benchmarks/`` both run the cases defined in :mod:`heapalias.bench.cases`.
"""

from .cases import CASES, Case, Context, Sample, Trial, Variant, case_named
from .runner import Report, Result, Skipped, run_case, run_suite
from .stats import Change, Summary, compare, mann_whitney_p, summarize

__all__ = [
    "CASES",
    "Case",
    "Change",
    "Context",
    "Report",
    "Result",
    "Sample",
    "Skipped",
    "Summary",
    "Trial",
    "Variant",
    "case_named",
    "compare",
    "mann_whitney_p",
    "run_case",
    "run_suite",
    "summarize",
]
