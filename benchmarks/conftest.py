"""Fixtures for the pytest-benchmark suites: one probe and one set of limits per session."""

from __future__ import annotations

import os

import pytest

from heapalias.backing import parse_size
from heapalias.bench.cases import Context
from heapalias.bench.runner import limit_values, measure_limits
from heapalias.probe import probe

SIZE = parse_size(os.environ.get("HEAPALIAS_BENCH_SIZE", "64M"))
SUITE = os.environ.get("HEAPALIAS_BENCH_SUITE", "quick")


@pytest.fixture(scope="session")
def bench_context() -> Context:
    return Context(size=SIZE, suite=SUITE, probe=probe())


@pytest.fixture(scope="session")
def bench_limits() -> dict[str, float]:
    """The limits (see heapalias.limits), measured once in this session."""
    return limit_values(measure_limits(SIZE, SUITE))


@pytest.fixture(scope="session")
def reference_medians() -> dict[tuple[str, str], float]:
    """Medians of variants already run, so later ones can report a ratio to their reference."""
    return {}
