"""The benchmark harness: statistics, every case at a tiny size, and the bench CLI commands."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import heapalias as ha
from heapalias import cli, collectors, limits
from heapalias.bench import cases, conclusions, floors, pools, report, runner, stats
from heapalias.bench.cases import CASES, Context, Variant, case_named
from heapalias.bench.runner import limit_values, run_case, run_suite
from heapalias.errors import hugepage_sysctl
from heapalias.limits import Limits
from heapalias.native import ffi, lib
from heapalias.probe import ProbeResult, probe
from heapalias.system import HugePagePool, SystemInfo, hugepage_pool

from conftest import IS_ROOT

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

FAKE_LIMITS = Limits(8 << 20, "4k", memcpy_gb_per_s=10.0, stream_copy_gb_per_s=12.0,
                     write_gb_per_s=20.0, read_gb_per_s=10.0, write_read_gb_per_s=9.0,
                     random_load_ns=5.0, random_bytes=8 << 20, load_latency_ns=100.0,
                     fault_ns_per_page=1000.0,
                     parallelism=(limits.Parallelism("4k", 8 << 20, {1: 100.0, 2: 50.0, 64: 6.0}),
                                  limits.Parallelism("2m", 8 << 20, {1: 80.0, 2: 40.0, 64: 4.0})))


@pytest.fixture(scope="module")
def tiny() -> tuple[Context, dict]:
    return Context(size=8 << 20, suite="quick", probe=probe()), limit_values(FAKE_LIMITS)


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


def test_every_fresh_cheney_sample_copies_the_whole_tree(tiny) -> None:
    """The fresh case builds a new tree before each sample. It used to build it in the space
    named "from", which after the first collection is the plan's to-space: every later sample
    copied nothing, and the bench reported the empty call's time as ns per object."""
    ctx, _ = tiny
    case = case_named("cheney_small")
    trial = case.setup(ctx, Variant("memfd", "4k", detail="fresh"))
    try:
        samples = [trial.run() for _ in range(3)]
    finally:
        trial.close()
    nodes = 2 ** (case.depth(ctx.size) + 1) - 1
    assert [(s.ops, s.bytes) for s in samples] == [(nodes, 40 * nodes)] * 3


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
    assert {"memcpy_gb_per_s", "stream_copy_gb_per_s", "copy_gb_per_s", "write_gb_per_s",
            "read_gb_per_s", "write_read_gb_per_s", "random_load_ns", "load_latency_ns",
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
    *(["--binary-trees", "10", "--size", "2M", "--repeat", "1", "--collector", name]
      for name in collectors.registered()),
])
def test_gcbench_command(args) -> None:
    result = CliRunner().invoke(cli.main, ["gcbench", *args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    collector = args[args.index("--collector") + 1] if "--collector" in args else "semispace"
    assert data["collector"] == collector
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


def test_bench_checks_output_paths_before_running(tmp_path, monkeypatch) -> None:
    """Before, a --json path in a missing directory failed with a traceback after the whole
    run, and the results were lost."""
    def must_not_run(**kwargs):
        raise AssertionError("the run started although its output cannot be written")

    monkeypatch.setattr("heapalias.bench.runner.run_suite", must_not_run)
    for option, path in [("--json", "/no/such/dir/x.json"), ("--plot", "/no/such/dir/x.png"),
                         ("--json", str(tmp_path))]:
        result = CliRunner().invoke(cli.main, ["bench", option, path, "-k", "scan"])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("heapalias: error: "), result.output
        assert option in lines[0] and "Traceback" not in result.output


def test_bench_with_nothing_selected_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli.main, ["bench", "-k", "no-such-case", "--size", "8M"])
    assert result.exit_code == 2, result.output
    assert "no case or variant of the quick suite matches -k 'no-such-case'" in result.output
    assert len(result.output.strip().splitlines()) == 1


GOOD_RESULT = {"case": "scan", "label": "memfd/4k", "unit": "GB/s", "higher_is_better": True,
               "values": [1.0, 2.0, 3.0]}


@pytest.mark.parametrize(("name", "content", "problem"), [
    ("no-label", {"metadata": {}, "results": [{k: v for k, v in GOOD_RESULT.items()
                                               if k != "label"}]}, "results[0].label"),
    ("results-not-list", {"metadata": {}, "results": {"scan": 1}}, "results is not a list"),
    ("empty-values", {"metadata": {}, "results": [{**GOOD_RESULT, "values": []}]},
     "results[0].values"),
    ("text-values", {"metadata": {}, "results": [{**GOOD_RESULT, "values": ["fast"]}]},
     "results[0].values"),
    ("zero-values", {"metadata": {}, "results": [{**GOOD_RESULT, "values": [0, 0]}]},
     "results[0].values"),
    ("result-not-object", {"metadata": {}, "results": [7]}, "results[0] is not an object"),
    ("bad-flag", {"metadata": {}, "results": [{**GOOD_RESULT, "higher_is_better": "yes"}]},
     "results[0].higher_is_better"),
    ("not-utf8", b"\xff\xfe{not json", "codec can't decode"),
    ("not-json", b"{", "cannot read a report"),
])
def test_compare_rejects_malformed_reports_in_one_line(tmp_path, name, content, problem) -> None:
    """Before, each of these printed a traceback (KeyError, TypeError, ValueError, ...)."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"metadata": {}, "results": [GOOD_RESULT]}))
    bad = tmp_path / f"{name}.json"
    bad.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    for args in (["compare", str(good), str(bad)], ["compare", str(bad), str(good), "--json"]):
        result = CliRunner().invoke(cli.main, args)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("heapalias: error: "), result.output
        assert problem in lines[0] and "Remedy" in lines[0]


# ---- limits: each the fastest known way to do the case's work (item 18) ----


def test_every_limit_a_case_names_is_measured() -> None:
    table = limit_values(FAKE_LIMITS)
    for case in CASES:
        assert case.limit is None or case.limit in table, case.name
        for name in case.beside:
            assert name in table, case.name
    # The copy limit is the faster of memcpy and the streaming copy Cheney uses.
    assert table["copy"] == FAKE_LIMITS.stream_copy_gb_per_s == 12.0
    assert case_named("cheney_large").limit == "copy"
    # alias_rw writes and reads every byte: its limit does both, through one view.
    assert case_named("alias_rw").limit == "write+read"
    # Marking is judged against the memory's parallelism on the heap's own pages, and shown
    # against the dependent-load latency beside it; so is Cheney's fresh (scattered) copy.
    assert case_named("mark").limit == case_named("encodings").limit == "mlp"
    mark_2m, fresh_4k = Variant("memfd", "2m"), Variant("memfd", "4k", detail="fresh")
    assert runner.limit_value(table, "mlp", mark_2m) == 4.0
    assert runner.limit_value(table, "latency", mark_2m) == 80.0
    assert runner.limit_value(table, "mlp", Variant("memfd", "1g")) == 4.0  # the best measured
    assert case_named("cheney_graph").limit == "mlp"
    small = case_named("cheney_small")  # a tree's lines are not random: mlp is no bound
    assert small.limit_for(fresh_4k) is None
    assert small.beside_for(fresh_4k) == ("latency", "mlp")
    assert small.beside_for(dataclasses.replace(fresh_4k, detail="steady")) == ()
    # One core's parallelism bounds one thread, and is only a figure beside more threads.
    scaling = case_named("parallel")
    one, two = (Variant("memfd", "4k", "mark", f"{n} thread{'s' * (n > 1)}") for n in (1, 2))
    assert scaling.limit_for(one) == "mlp" and scaling.beside_for(one) == ("latency",)
    assert scaling.limit_for(two) is None and "mlp" in scaling.beside_for(two)


def test_the_parallelism_sweep_finds_where_chases_saturate() -> None:
    sweep = limits.Parallelism("4k", 1 << 20, {1: 200.0, 2: 100.0, 4: 50.0, 8: 26.0, 16: 25.0})
    assert sweep.latency_ns == 200.0 and sweep.mlp_ns == 25.0 and sweep.saturating_chases == 8
    with ha.Heap("4M") as heap:
        buffer = heap.view.array(np.uint8)
        ns = limits.chase_sweep(buffer, steps=1 << 14, repeats=1)
        assert set(ns) == set(limits.CHASES) and all(v > 0 for v in ns.values())
        # The buffer holds one cycle through every line: following it comes back to the start.
        lines = buffer.view(np.uint64)[::8]
        slot, seen = 0, 0
        while True:
            slot = (int(lines[slot]) - heap.view.address) // 64
            seen += 1
            if slot == 0:
                break
        assert seen == heap.size // 64
        for bad in ((0,), (65,)):
            with pytest.raises(ha.InvalidArgument):
                limits.chase_sweep(buffer, bad)
        del buffer, lines
    measured = limits.parallelism_by_pages(4 << 20, ("4k", "1g"))  # 4 MiB is no 1g multiple
    assert [p.pages for p in measured] == ["4k"]


def test_every_core_chasing_at_once_caps_what_parallel_traces_gain() -> None:
    """The best chase count run on several threads at once: each thread its own chases
    around the same cycle, the wall time over every thread's loads."""
    with ha.Heap("4M") as heap:
        buffer = heap.view.array(np.uint8)
        limits.chase_sweep(buffer, (8,), steps=1 << 14, repeats=1)
        assert limits.chase_all_cores(buffer, 8, 2, steps=1 << 14, repeats=1) > 0
        # Each thread follows its own chases the whole way: together they end where each
        # seed's chases end alone (the sum of the end positions), not where one thread's do.
        slots, end = heap.size // 64, ffi.new("uint64_t *")
        alone = []
        for seed in (5, 5 + 7919):
            lib.ha_chases_ns(heap.view.address, slots, 8, 1 << 12, seed, end)
            alone.append(end[0])
        lib.ha_chases_threads_ns(heap.view.address, slots, 8, 1 << 12, 5, 2, end)
        assert end[0] == (alone[0] + alone[1]) % (1 << 64) and alone[0] != alone[1]
        for chases, threads in ((0, 2), (65, 2), (8, 0), (8, lib.HA_MAX_THREADS + 1)):
            with pytest.raises(ha.InvalidArgument):
                limits.chase_all_cores(buffer, chases, threads)
        del buffer
    sweep = limits.parallelism(4 << 20, "4k", cores=2, steps=1 << 14, repeats=1)
    assert sweep.cores == 2 and sweep.all_cores_ns_per_load > 0
    assert sweep.all_cores_speedup == sweep.mlp_ns / sweep.all_cores_ns_per_load
    assert sweep.as_dict()["all_cores_speedup"] == sweep.all_cores_speedup
    alone = limits.parallelism(4 << 20, "4k", cores=1, steps=1 << 14, repeats=1)
    assert alone.all_cores_ns_per_load == 0.0 and alone.all_cores_speedup == 0.0
    line = report.parallelism_text([sweep.as_dict()])
    assert f"2 cores at once {sweep.all_cores_speedup:.2f}x one" in line


def test_mark_shows_x_latency_beside_x_mlp() -> None:
    result = {"case": "mark", "label": "memfd/4k", "limit": "mlp", "ratio_to_limit": 0.125,
              "beside": {"latency": 2.5}}
    assert report.ratio_columns([result]) == ["latency", "mlp"]
    line = report.limits_line({**FAKE_LIMITS.as_dict()})
    assert "mlp over 8 MiB: 4k 6.0 ns from k=64 (latency 100 ns)" in line


@pytest.mark.parametrize("name", ["mark", "encodings", "cheney_graph"])
def test_traces_show_x_floor_the_lines_they_must_read_at_the_mlp_limit(name, tiny) -> None:
    ctx, table = tiny
    results, _ = run_case(case_named(name), ctx, 1, "memfd/4k", {}, table, lambda _: None)
    judged = [r for r in results if r.limit == "mlp"]
    assert judged and all(r.floor_lines is None for r in results if r.limit != "mlp")
    for r in judged:
        assert 1 <= r.floor_lines <= 4
        assert r.beside["floor"] == pytest.approx(r.floor_lines * 6.0 / r.summary.median)
        assert r.beside["floor"] == pytest.approx(r.ratio_to_limit * r.floor_lines)
        assert report.ratio_columns([r.as_dict()]) == ["latency", "floor", "mlp"]
    if name == "mark":  # the bench's graph: each live object's header..last slot
        heap, objects, roots = cases._graph_heap(ctx, Variant("memfd", "4k"))
        with heap:
            assert judged[0].floor_lines == floors.count(objects, roots).mark
            del objects


def test_limit_helpers_do_the_work_they_time() -> None:
    with ha.Heap("4M") as a, ha.Heap("4M") as b:
        src, dst = a.view.array(np.uint8), b.view.array(np.uint8)
        src[:] = np.arange(src.size, dtype=np.uint64).astype(np.uint8)
        for n in (4 << 20, 1000, 72):  # whole buffers, and tails shorter than a stream block
            dst[:] = 0
            assert lib.ha_stream_copy_ns(dst.ctypes.data + 8, src.ctypes.data, n - 8, 1) >= 0
            assert np.array_equal(dst[8:n], src[:n - 8]) and dst[n:].max(initial=0) == 0
        total = ffi.new("uint64_t *")
        ones = (a.size // 8 * 0x0101010101010101) % 2**64
        for streaming, prefetch in itertools.product((0, 1), (0, 1)):
            alias = a.alias()  # written through one view, read back through another
            src[:] = 0
            lib.ha_write_read_ns(a.view.address, alias.address, a.size, streaming, prefetch,
                                 total)
            assert total[0] == ones and src.min() == src.max() == 1
            lib.ha_read_ns(alias.address, alias.size, 2, prefetch, total)
            assert total[0] == 2 * ones % 2**64
            alias.close()
        assert lib.ha_gather_ns(dst.ctypes.data, dst.size // 64, 1000, 3, total) > 0
        del src, dst
    measured = limits.measure("8M", repeats=1)
    assert measured.copy_gb_per_s == max(measured.memcpy_gb_per_s, measured.stream_copy_gb_per_s)
    assert measured.write_read_gb_per_s > 0 and measured.random_load_ns > 0
    assert measured.random_bytes == 8 << 20 and measured.pages == "4k+thp"


def _result(case: str, label: str, values: list[float], *, unit: str = "GB/s",
            limit: str | None = None, ratio: float | None = None, **variant) -> dict:
    """A result as a saved report holds it, from synthetic samples."""
    summary = stats.summarize(values)
    parts = (label.split(" ")[0].split("/") + ["-"] * 3)[:3]
    fields = dict(zip(("backing", "pages", "strategy"), parts, strict=True))
    fields["detail"] = label.split(" ", 1)[1] if " " in label else ""
    return {"case": case, "label": label, "unit": unit, "higher_is_better": unit == "GB/s",
            "values": values, "summary": summary.as_dict(), "limit": limit,
            "ratio_to_limit": ratio, "reference": label, "ratio_to_reference": 1.0,
            "minor_faults": 0.0, "obtained": "4 KiB pages", "variant": {**fields, **variant}}


def test_report_flags_a_result_that_beats_its_limit() -> None:
    from rich.console import Console

    data = {
        "metadata": {"kernel": "k", "cpu": "c", "cpus": 2, "thp_enabled": "madvise",
                     "thp_shmem_enabled": "never"},
        "config": {"suite": "quick", "size": 8 << 20, "repeat": 3},
        "limits": FAKE_LIMITS.as_dict(),
        "results": [_result("cheney_large", "memfd/2m", [13.0, 13.1, 13.2], limit="copy",
                            ratio=1.09),
                    _result("cheney_large", "memfd/4k", [12.4, 12.5, 12.6], limit="copy",
                            ratio=1.04)],
        "skipped": [],
    }
    console = Console(record=True, width=200)
    report.print_report(data, console)
    text = console.export_text()
    assert "suspect limit: 1 results beat their limit by more than 5%" in text
    assert "cheney_large memfd/2m 1.09x copy" in text and "memfd/4k 1.04x" not in text
    assert "copy 12.00 GB/s (memcpy 10.00, streaming 12.00)" in text


# ---- skipped variants, one line per cause (item 20) ----


def test_skips_are_grouped_by_cause() -> None:
    skipped = [{"case": "alias", "label": f"{b}/1g/{s}", "reason": "the 1 GiB hugetlb pool is "
                "short of pages"} for b in ("memfd", "anon") for s in ("mremap", "memfd")]
    skipped += [{"case": "scan", "label": "memfd/1g", "reason": "heap size is not a multiple of "
                 "the 1g page"},
                {"case": "alias_rw", "label": "memfd/1g/memfd", "reason": "the 1 GiB hugetlb pool "
                 "is short of pages"}]
    rows = report.skipped_by_cause(skipped)
    assert rows == [
        ("the 1 GiB hugetlb pool is short of pages", 5, "alias: memfd/1g/mremap, memfd/1g/memfd, "
         "anon/1g/mremap, anon/1g/memfd; alias_rw: memfd/1g/memfd"),
        ("heap size is not a multiple of the 1g page", 1, "scan: memfd/1g"),
    ]


def test_a_short_pool_is_one_cause_whatever_the_call_that_found_it() -> None:
    """Before, the probe's 'heap: fallocate: ...' and 'heap: mmap: ...' messages (with page
    counts) made one skip line per variant for what is one cause."""
    real = probe()
    empty = SystemInfo(**{**real.system.__dict__, "hugepage_pools": [
        HugePagePool(2 << 20, 0, 0, 0, 0), HugePagePool(1 << 30, 0, 0, 0, 0)]})
    combos = tuple(dataclasses.replace(c, ok=False, obtained="", error=f"heap: {call}: the pool "
                                       f"has 0 free pages, this heap needs {n}")
                   if c.pages in ("2m", "1g") else c
                   for n, c in enumerate(real.combinations)
                   for call in ["fallocate" if n % 2 else "mmap"])
    ctx = Context(size=8 << 20, suite="quick", probe=ProbeResult(empty, combos))
    reasons = {reason for case in CASES for variant, reason in case.variants(ctx)
               if variant.pages == "2m"}
    assert reasons == {"the 2 MiB hugetlb pool is short of pages"}


# ---- conclusions, computed from the run (item 21) ----


def test_conclusions_from_synthetic_results() -> None:
    results = [
        _result("alias_rw", "memfd/4k/single", [10.0, 10.2, 10.4]),
        _result("alias_rw", "memfd/4k/memfd", [10.1, 10.3, 10.5]),  # IQRs overlap
        _result("populate", "memfd/4k populate", [1.4, 1.5, 1.6]),
        _result("populate", "memfd/2m populate", [12.0, 12.75, 13.0]),
        _result("mark", "memfd/4k", [60.0, 61.0, 62.0], unit="ns/obj"),
        _result("mark", "memfd/2m", [50.0, 51.0, 52.0], unit="ns/obj"),
        _result("encodings", "memfd/4k offset", [40.0, 40.5, 41.0], unit="ns/obj"),
        _result("encodings", "memfd/4k colored", [44.0, 44.5, 45.0], unit="ns/obj"),
        _result("encodings", "memfd/4k masked", [40.2, 40.6, 41.1], unit="ns/obj"),
    ]
    for size, copy, remap in [("64K", 2.0, 8.0), ("1M", 60.0, 20.0), ("4M", 240.0, 60.0),
                              ("256K", 15.0, 15.1)]:
        results.append(_result("relocation", f"memfd/4k/copy {size}",
                               [copy * 0.99, copy, copy * 1.01], unit="us/op"))
        results.append(_result("relocation", f"memfd/4k/remap {size}",
                               [remap * 0.99, remap, remap * 1.01], unit="us/op"))
    told = conclusions.conclusions(results)
    assert told == [
        "Aliasing: no measurable difference between writing and reading through two views and "
        "through one (10.3 against 10.2 GB/s) (alias_rw memfd/4k/memfd vs memfd/4k/single)",
        "2 MiB hugetlb pages against 4 KiB ones, populating a heap: 8.50x faster (12.8 against "
        "1.5 GB/s) (populate memfd/2m populate vs memfd/4k populate)",
        "2 MiB hugetlb pages against 4 KiB ones, marking a graph: 1.20x faster (51 against 61 "
        "ns/obj) (mark memfd/2m vs memfd/4k)",
        "Relocation on 4 KiB pages: remapping beats memcpy from 1 MiB (3.00x) to 4 MiB (4.00x); "
        "memcpy wins at 64 KiB; no measurable difference at 256 KiB "
        "(relocation memfd/4k remap vs copy)",
        "Reference encodings on memfd/4k, time per object against offset (40.5 ns/obj): "
        "colored +10% (44.5), masked: no measurable difference (encodings memfd/4k)",
    ]


def test_conclusions_say_how_far_a_trace_is_from_its_floor() -> None:
    mark = {**_result("mark", "memfd/2m", [34.0, 35.0, 36.0], unit="ns/obj"),
            "floor_lines": 1.25, "beside": {"floor": 0.5}}
    assert conclusions.conclusions([mark]) == [
        "mark on memfd/2m: 2.00x the time of the 1.25 heap lines per object it must read, "
        "each at the mlp limit (35 against 17.5 ns/obj) (mark memfd/2m)"]
    slower = {**_result("mark", "anon/4k", [50.0, 51.0, 52.0], unit="ns/obj"),
              "floor_lines": 1.25, "beside": {"floor": 0.25}}
    copy = {**_result("cheney_graph", "memfd/2m", [80.0, 81.0, 82.0], unit="ns/obj"),
            "floor_lines": 2.75, "beside": {"floor": 0.5}}
    assert conclusions.conclusions([slower, mark, copy]) == [
        "mark: 2.00x (memfd/2m) to 4.00x (anon/4k) the time of the 1.25 heap lines per object "
        "it must read, each at the mlp limit of its pages (mark, 2 variants)",
        "cheney_graph on memfd/2m: 2.00x the time of the 2.75 heap lines per object it must "
        "read, each at the mlp limit (81 against 40.5 ns/obj) (cheney_graph memfd/2m)"]


def test_conclusions_leave_out_cases_that_did_not_run() -> None:
    assert conclusions.conclusions([]) == []
    only_mark = [_result("mark", "memfd/4k", [60.0, 61.0, 62.0], unit="ns/obj")]
    assert conclusions.conclusions(only_mark) == []  # no 2m variant to compare with
    slower = [_result("alias_rw", "memfd/4k/single", [10.0, 10.1, 10.2]),
              _result("alias_rw", "memfd/4k/memfd", [8.0, 8.1, 8.2])]
    assert conclusions.conclusions(slower) == [
        "Aliasing costs 20%: two views ran at 0.80x the speed of one (8.1 against 10.1 GB/s) "
        "(alias_rw memfd/4k/memfd vs memfd/4k/single)"]


def test_the_report_ends_with_what_the_machine_says(report_files) -> None:
    result = CliRunner().invoke(cli.main, ["bench", "-k", "relocation", "--size", "8M",
                                           "--repeat", "2", "--pages", "4k"])
    assert result.exit_code == 0, result.output
    tail = result.output[result.output.index("What this machine says"):]
    assert "Relocation on 4 KiB pages" in tail and "(relocation memfd/4k remap vs copy)" in tail


# ---- hugetlb pools lent to the run (item 19) ----


def test_demand_is_the_most_one_case_holds_at_once() -> None:
    ctx = Context(size=8 << 20, suite="quick", probe=probe())
    selection = [
        (case_named("cheney_small"), [Variant("memfd", "2m", detail="steady"),
                                      Variant("memfd", "2m", detail="fresh"),
                                      Variant("memfd", "4k", detail="steady")]),
        (case_named("populate"), [Variant("memfd", "2m", detail="populate"),
                                  Variant("private", "2m", detail="touch")]),
        (case_named("relocation"), [Variant("memfd", "2m", "copy", "4M")]),
        (case_named("alias"), [Variant("memfd", "1g", "memfd")]),
    ]
    # cheney_small sets up two 8 MiB heaps; populate holds two one-page heaps plus one 8 MiB
    # heap per sample; the relocation range and its room are 8 MiB; alias needs one 1 GiB page.
    assert pools.demand(ctx, selection) == {"2m": 8, "1g": 1}
    assert pools.demand(ctx, [(case_named("scan"), [Variant("memfd", "4k")])]) == {}


def test_as_if_filled_counts_pool_short_combinations_by_their_4k_outcome() -> None:
    real = probe()
    empty = SystemInfo(**{**real.system.__dict__, "hugepage_pools": [
        HugePagePool(2 << 20, 0, 0, 0, 0), HugePagePool(1 << 30, 3, 3, 0, 0)]})
    combos = tuple(dataclasses.replace(c, ok=False, obtained="", error="heap: no pages")
                   if c.pages == "2m" else c for c in real.combinations)
    hoped = pools.as_if_filled(ProbeResult(empty, combos))
    assert hoped.get("memfd", "2m", "memfd").ok and hoped.get("memfd", "2m", "memfd").obtained
    assert not hoped.get("anon", "2m", "memfd").applicable  # no fd, as on 4k
    assert not hoped.get("private", "2m", "mremap").ok  # fails on 4k too
    assert hoped.get("memfd", "1g", "memfd") == real.get("memfd", "1g", "memfd")  # had pages


@pytest.fixture
def empty_2m_pool(sysctl) -> int:
    """The 2 MiB pool emptied, as on a fresh machine (restored after the test)."""
    if not IS_ROOT:
        pytest.skip(reason="emptying the hugetlb pool needs root")
    sysctl(hugepage_sysctl(2 << 20), 0)
    pool = hugepage_pool(2 << 20)
    if pool.available:
        pytest.fail(f"the 2 MiB pool still has {pool.available} pages free after writing 0")
    return pool.total  # 0, unless another process still holds pages (then surplus)


def _restored(found: int, output: str) -> None:
    """The pool is back to what the run found (or the guard saw someone else resize it)."""
    if "during the run by another process" in output:
        pytest.skip(reason="another process resized the 2 MiB pool during the run; the guard "
                    "left it alone as it should, so the restore cannot be checked")
    assert hugepage_pool(2 << 20).total == found


def test_bench_fills_an_empty_pool_for_the_run_and_gives_it_back(empty_2m_pool, tmp_path) -> None:
    """Before, a fresh machine's first `heapalias bench` skipped every 2m variant."""
    out = tmp_path / "run.json"
    result = CliRunner().invoke(cli.main, ["bench", "-k", "scan", "--size", "8M", "--repeat", "1",
                                           "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "heapalias: reserved hugetlb pages for this run (2 MiB pool 0 -> 4 pages)" \
        in result.output
    data = json.loads(out.read_text())
    assert "memfd/2m" in {r["label"] for r in data["results"]}
    assert data["config"]["reserved_pools"] == {"2m": {"found": empty_2m_pool, "run_with": 4}}
    _restored(empty_2m_pool, result.output)


def test_pools_are_given_back_when_the_run_is_interrupted(empty_2m_pool, monkeypatch) -> None:
    seen = []

    def interrupted(*args, **kwargs):
        seen.append(hugepage_pool(2 << 20).total)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_variants", interrupted)
    result = CliRunner().invoke(cli.main, ["bench", "-k", "scan", "--size", "8M"])
    assert result.exit_code == 1 and "Aborted" in result.output
    assert seen and seen[0] >= empty_2m_pool + 4  # the pool was filled when the run began
    _restored(empty_2m_pool, result.output)


def test_pools_are_given_back_on_sigterm(empty_2m_pool) -> None:
    command = [sys.executable, "-m", "heapalias.cli", "bench", "-k", "scan", "--size", "8M",
               "--repeat", "20000"]
    child = subprocess.Popen(command, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = threading.Timer(120, child.kill)  # never hang on a run that did not announce
    deadline.start()
    try:
        lines = []
        for line in child.stderr:  # the run announces the reservation before it measures
            lines.append(line)
            if "reserved hugetlb pages" in line:
                break
        assert hugepage_pool(2 << 20).total >= empty_2m_pool + 4, "".join(lines)
        child.send_signal(signal.SIGTERM)
        rest = child.communicate(timeout=120)[1]
    finally:
        deadline.cancel()
        child.kill()
        child.wait()
    assert child.returncode == 128 + signal.SIGTERM, "".join(lines) + rest
    _restored(empty_2m_pool, rest)


def test_no_reserve_names_the_command_that_fills_the_pool(empty_2m_pool) -> None:
    result = CliRunner().invoke(cli.main, ["bench", "-k", "scan", "--size", "8M", "--repeat", "1",
                                           "--no-reserve"])
    assert result.exit_code == 0, result.output
    first = result.output.strip().splitlines()[0]
    assert first.startswith("heapalias: note: the 2 MiB hugetlb pool has 0 free of the up to 4 "
                            "pages this run uses")
    assert f"`sudo heapalias hugepages --reserve {empty_2m_pool + 4}`" in first
    assert "1 x the 2 MiB hugetlb pool is short of pages: scan: memfd/2m" in result.output
    assert hugepage_pool(2 << 20).total == empty_2m_pool
