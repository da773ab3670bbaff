"""Every heapalias.bench case as a pytest-benchmark test, grouped by case.

    pytest benchmarks --benchmark-only                    # run (64 MiB heaps by default)
    pytest benchmarks --benchmark-only --benchmark-autosave
    pytest-benchmark compare 0001 0002                     # compare two saved runs

HEAPALIAS_BENCH_SIZE and HEAPALIAS_BENCH_SUITE (quick|full) choose the heap size
and the variants. extra_info holds each case's metric, its ratio to the
same-session limit, and its ratio to the case's reference variant.
"""

from __future__ import annotations

import statistics

import pytest

from heapalias.bench.cases import CASES, Context, Sample
from heapalias.bench.runner import limit_ratio, limit_value
from heapalias.errors import HeapAliasError
from heapalias.probe import probe
from heapalias.system import hugepage_pools

from conftest import SIZE, SUITE


def _variants():
    ctx = Context(size=SIZE, suite=SUITE, probe=probe())
    for case in CASES:
        if SUITE not in case.suites:
            continue
        for variant, reason in case.variants(ctx):
            yield pytest.param(case, variant, reason, id=f"{case.name}[{variant.label}]")


@pytest.mark.parametrize(("case", "variant", "reason"), list(_variants()))
def test_case(benchmark, bench_context, bench_limits, reference_medians, case, variant,
              reason) -> None:
    if reason:
        pytest.skip(reason=f"{case.name}: {reason}")
    try:
        trial = case.setup(bench_context, variant)
    except HeapAliasError as exc:
        pools = ", ".join(f"{p.label}: {p.available} free" for p in hugepage_pools())
        pytest.skip(reason=f"{case.name} {variant.label}: {exc} (pools {pools})")
    samples: list[Sample] = []
    try:
        benchmark.group = case.name
        benchmark.pedantic(lambda: samples.append(trial.run()), rounds=5, warmup_rounds=1)
        benchmark.extra_info["obtained"] = trial.obtained
    finally:
        trial.close()
    values = [case.metric(s) for s in samples[1:]] or [case.metric(s) for s in samples]
    median = statistics.median(values)
    reference_medians[(case.name, variant.label)] = median
    info = benchmark.extra_info
    info[case.unit] = median
    for name in (case.limit_for(variant), *case.beside_for(variant)):
        figure = limit_value(bench_limits, name, variant) if name else None
        if figure:
            info[f"x_{name}"] = limit_ratio(case, median, figure)
    siblings = [v for v, why_not in case.variants(bench_context) if not why_not]
    reference = case.reference(variant, siblings) or siblings[0]
    ref = reference_medians.get((case.name, reference.label))
    if ref:
        info["x_reference"] = median / ref if case.higher_is_better else ref / median
    assert median > 0
