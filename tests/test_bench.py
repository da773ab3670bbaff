"""The benchmark harness: statistics, every case at a tiny size, and the bench CLI commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from heapalias import cli
from heapalias.bench import stats
from heapalias.bench.cases import CASES, Context, case_named
from heapalias.bench.runner import limit_values, run_case, run_suite
from heapalias.limits import Limits
from heapalias.probe import probe

# ---- statistics against synthetic data with known answers ----


def test_summarize_known_values() -> None:
    s = stats.summarize([5, 1, 4, 2, 3])
    assert (s.n, s.median, s.q1, s.q3, s.minimum, s.maximum) == (5, 3, 2, 4, 1, 5)
    assert s.iqr == 2 and s.mean == 3
    assert math.isclose(s.cv, math.sqrt(2.5) / 3)
    assert not stats.summarize([10, 10.1, 9.9]).noisy and stats.summarize([1, 2, 3]).noisy
    single = stats.summarize([7])
    assert (single.median, single.iqr, single.cv) == (7, 0, 0)
    with pytest.raises(ValueError):
        stats.summarize([])


def test_mann_whitney_known_values() -> None:
    # Fully separated samples of 5: exact two-sided p is 0.0079; the approximation is close.
    p = stats.mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert 0.005 < p < 0.02
    assert stats.mann_whitney_p([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) > 0.9
    assert stats.mann_whitney_p([1, 1, 1], [1, 1, 1]) == 1.0  # all ties
    assert stats.mann_whitney_p([1, 6, 2, 7, 3], [4, 5, 8, 9, 10]) > 0.05


def test_compare_needs_significance_and_a_change_beyond_the_noise() -> None:
    fast, slow = [10, 10.1, 9.9, 10.05, 9.95], [12, 12.1, 11.9, 12.05, 11.95]
    change = stats.compare(fast, slow)
    assert change.significant and math.isclose(change.ratio, 1.2)
    noisy = [10, 14, 6, 12, 8]
    assert not stats.compare(noisy, [x * 1.1 for x in noisy]).significant  # inside the IQR
    assert not stats.compare(fast, fast).significant


# ---- every case, at a tiny size ----


@pytest.fixture(scope="module")
def tiny() -> tuple[Context, dict]:
    fake = Limits(8 << 20, "4k", memcpy_gb_per_s=10.0, read_gb_per_s=10.0, load_latency_ns=100.0,
                  fault_ns_per_page=1000.0)
    return Context(size=8 << 20, suite="quick", probe=probe()), limit_values(fake)


@pytest.mark.parametrize("case", [c for c in CASES if "quick" in c.suites], ids=lambda c: c.name)
def test_every_quick_case_runs_at_a_tiny_size(case, tiny, pool_2m) -> None:
    ctx, table = tiny
    ticks = []
    results, skipped = run_case(case, ctx, 2, None, {}, table, ticks.append)
    assert results, f"{case.name} ran no variant: {skipped}"
    for r in results:
        assert len(r.values) == 2 and all(v > 0 for v in r.values)
        assert r.summary.median > 0 and r.ratio_to_reference > 0
        assert r.reference and (r.limit is None or r.ratio_to_limit > 0)
        assert r.obtained
    assert len(ticks) == 3 * len(results)  # a warm-up and two rounds per variant
    for skip in skipped:
        assert skip.reason


def test_gcbench_case_runs() -> None:
    ctx = Context(size=64 << 20, suite="full", probe=probe())
    results, _ = run_case(case_named("gcbench"), ctx, 1, "memfd/4k", {}, {}, lambda _: None)
    assert results and results[0].unit == "ms" and results[0].summary.median > 0


def test_filters_pick_variants() -> None:
    ctx = Context(size=8 << 20, suite="quick", probe=probe())
    results, _ = run_case(case_named("alias"), ctx, 1, None, {"strategy": "mremap", "pages": "4k"},
                          {}, lambda _: None)
    assert {r.label for r in results} == {"memfd/4k/mremap", "anon/4k/mremap"}


# ---- the CLI, through click's runner ----


@pytest.fixture(scope="module")
def report_files(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("reports")
    paths = []
    for name in ("a.json", "b.json"):
        path = folder / name
        result = CliRunner().invoke(cli.main, ["bench", "-k", "scan", "--size", "8M",
                                               "--repeat", "3", "--json", str(path)])
        assert result.exit_code == 0, result.output
        paths.append(str(path))
    return paths[0], paths[1]


def test_bench_json_schema(report_files) -> None:
    data = json.loads(Path(report_files[0]).read_text())
    assert set(data) == {"metadata", "limits", "config", "results", "skipped"}
    for key in ("kernel", "cpu", "thp_enabled", "hugepage_pools", "max_map_count", "versions",
                "git_sha"):
        assert key in data["metadata"]
    assert {"memcpy_gb_per_s", "read_gb_per_s", "load_latency_ns",
            "fault_ns_per_page"} <= set(data["limits"])
    assert data["results"] and all(r["case"] == "scan" for r in data["results"])
    for r in data["results"]:
        assert {"label", "unit", "values", "summary", "ratio_to_limit", "ratio_to_reference",
                "minor_faults", "major_faults", "obtained"} <= set(r)
        assert len(r["values"]) == 3 and r["summary"]["median"] > 0


def test_bench_prints_tables_and_plots(tmp_path) -> None:
    png = tmp_path / "out.png"
    result = CliRunner().invoke(cli.main, ["bench", "-k", "relocation", "--size", "8M",
                                           "--repeat", "2", "--pages", "4k", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "relocation (us/op, lower is better)" in result.output
    assert "Limits measured in this run" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_reports(report_files) -> None:
    result = CliRunner().invoke(cli.main, ["compare", *report_files])
    assert result.exit_code == 0, result.output
    assert "Mann-Whitney" in result.output and "scan" in result.output
    rows = json.loads(CliRunner().invoke(cli.main, ["compare", *report_files, "--json"]).output)
    assert rows and {"speedup", "p_value", "significant"} <= set(rows[0])


def test_compare_rejects_what_is_not_a_report(tmp_path, report_files) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text("[1, 2]")
    result = CliRunner().invoke(cli.main, ["compare", report_files[0], str(bogus)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "not a heapalias bench report" in result.output


@pytest.mark.parametrize("args", [
    ["--binary-trees", "8", "--size", "4M", "--repeat", "1"],
    ["--size", "64M", "--repeat", "1", "--backing", "anon"],
])
def test_gcbench_command(args) -> None:
    result = CliRunner().invoke(cli.main, ["gcbench", *args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["checks_ok"] and data["total_ms"] >= data["gc_ms"] >= 0
    assert set(data["pauses"]) == {"min_ms", "median_ms", "max_ms"}
    table = CliRunner().invoke(cli.main, ["gcbench", *args])
    assert table.exit_code == 0 and "as the program expects" in table.output


@pytest.mark.parametrize("args", [
    ["bench", "--suite", "huge"], ["bench", "--repeat", "0"], ["bench", "--pages", "3m"],
    ["bench", "--pin", "4096"], ["gcbench", "--binary-trees", "99"], ["compare", "missing.json"],
])
def test_bad_options_exit_2(args) -> None:
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize("args", [
    ["bench", "--size", "12 parsecs", "-k", "scan"],
    ["gcbench", "--size", "5000"],
    ["gcbench", "--size", "1M"],  # GCBench's live data does not fit
])
def test_runtime_errors_exit_1_without_traceback(args) -> None:
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "Remedy" in result.output


def test_run_suite_respects_pattern() -> None:
    report = run_suite(size=8 << 20, repeat=1, pattern="cheney_small")
    assert {r.case for r in report.results} == {"cheney_small"}
    assert report.config["pattern"] == "cheney_small"
