"""The heap-size sweep and the JVM baseline: the method (minimum heaps, multiples, fresh
processes, interleaved rounds, cold and steady, every part) on programs small enough to test."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from heapalias import cli
from heapalias.bench import jvm, report, sweep
from heapalias.errors import InvalidArgument

MIB = 1 << 20
needs_jdk = pytest.mark.skipif(bool(jvm.unavailable()), reason=jvm.unavailable() or "-")


def test_programs_parse_as_the_cli_writes_them() -> None:
    assert sweep.Program.parse("gcbench") == sweep.Program("gcbench")
    assert sweep.Program.parse("binary-trees:21") == sweep.Program("binary_trees", 21)
    assert sweep.Program.parse("binary_trees:7").label == "binary_trees:7"
    for bad in ("gcbench:3", "binary-trees", "binary-trees:31", "binary-trees:x", "lisp"):
        with pytest.raises(InvalidArgument):
            sweep.Program.parse(bad)


def test_the_minimum_heap_is_the_smallest_that_completes() -> None:
    program = sweep.Program("binary_trees", 15)
    collector = sweep.collector_named("generational")
    found, run = sweep.minimum_heap(collector, program, None)
    assert found > 2 * MIB  # the stretch tree alone is 3 MiB
    assert run.total_ns > 0 and run.bytes_allocated > 0
    assert collector.rounds(program, found, 1, None)
    assert collector.rounds(program, found - MIB, 1, None) is None  # to 1 MiB
    none = sweep.collector_named("none")  # no collection: SpaceFull rather than collect
    assert none.rounds(program, found, 1, None) is None


@needs_jdk
def test_a_jvm_round_is_timed_counted_and_checked() -> None:
    with jvm.JvmProgram("binary_trees", 10, 8 * MIB, "serial", cpu=0) as session:
        rounds = [session.round() for _ in range(2)]
    for result in rounds:
        assert result.completed and result.checks == jvm.expected_checks("binary_trees", 10)
        assert result.total_ns > 0 and 0 < result.gc_ns < result.total_ns
        assert result.young > 0 and result.mutator_ns == result.total_ns - result.gc_ns
    with jvm.JvmProgram("gcbench", 0, 4 * MIB, "parallel") as session:
        assert not session.round().completed  # GCBench's 16 MiB stretch tree: out of memory
    with pytest.raises(InvalidArgument):
        jvm.JvmProgram("lisp", 0, 8 * MIB)


@needs_jdk
def test_a_sweep_samples_every_collector_at_every_multiple() -> None:
    plan = sweep.Sweep([sweep.Program("binary_trees", 8)], ["generational", "jvm-serial"],
                       (1.5, 2.0), rounds=2, warmup=1, cpu=0)
    heard: list[str] = []
    sweep.run_sweep(plan, heard.append)
    assert sum("needs a" in line for line in heard) == 2 and heard[-1] == "round 2/2 done"
    samples = plan.samples["binary_trees:8"]
    assert set(samples) == {"generational", "jvm-serial", "none", "jvm-epsilon"}
    for name in ("generational", "jvm-serial"):
        minimum = plan.minimum["binary_trees:8"][name][0]
        for key, factor in (("1.5", 1.5), ("2", 2.0)):
            entry = samples[name][key]
            assert entry["heap_bytes"] >= factor * minimum
            assert len(entry["cold"]) == len(entry["steady"]) == 2
            parts = sweep.summary(entry, "steady", "total"), sweep.summary(entry, "steady", "gc")
            assert parts[0]["median"] > parts[1]["median"] > 0
    assert all(r["collections"] == 0 for r in samples["none"]["no-gc"]["steady"])
    data = {**plan.as_dict(), "metadata": sweep.metadata()}
    rows = report.sweep_rows(json.loads(json.dumps(data)), "binary_trees:8")
    assert [r["multiple"] for r in rows] == ["1.5", "1.5", "2", "2", "no-gc", "no-gc"]


@needs_jdk
def test_gcsweep_prints_writes_and_plots(tmp_path) -> None:
    pytest.importorskip("matplotlib", reason="the plot needs the plot extra")
    out, figure = tmp_path / "sweep.json", tmp_path / "sweep.png"
    result = CliRunner().invoke(cli.main, [
        "gcsweep", "--program", "binary-trees:6", "--collector", "semispace", "--collector",
        "jvm-parallel", "--multiples", "2", "--rounds", "1", "--warmup", "0",
        "--skip-no-gc-run", "--json", str(out), "--plot", str(figure), "--cpu", "0"])
    assert result.exit_code == 0, result.output
    assert "binary_trees:6: ms, median" in result.output and "jvm-parallel" in result.output
    data = json.loads(out.read_text())
    assert data["collectors"] == ["semispace", "jvm-parallel"] and data["metadata"]["git_sha"]
    assert figure.stat().st_size > 10_000


def test_a_sweep_takes_the_minimum_heaps_an_earlier_one_found(tmp_path) -> None:
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"minimum": {"binary_trees:6": {"semispace": [3 * MIB, 1]}}}))
    result = CliRunner().invoke(cli.main, [
        "gcsweep", "--program", "binary-trees:6", "--collector", "semispace", "--collector",
        "generational", "--multiples", "1", "--rounds", "1", "--warmup", "0",
        "--skip-no-gc-run", "--minimum-from", str(earlier), "--cpu", "0"])
    assert result.exit_code == 0, result.output
    assert "semispace needs a 3 MiB heap at least (from an earlier sweep)" in result.output
    assert "generational needs a 1 MiB heap at least\n" in result.output  # searched
    (tmp_path / "bogus.json").write_text("[]")
    result = CliRunner().invoke(cli.main, ["gcsweep", "--minimum-from",
                                           str(tmp_path / "bogus.json")])
    assert result.exit_code == 1 and "not a heapalias gcsweep report" in result.output


@pytest.mark.parametrize("args", [
    ["--multiples", "0.5"], ["--multiples", "two"], ["--collector", "g1"], ["--cpu", "4096"],
    ["--program", "lisp"],
])
def test_gcsweep_refuses_bad_options(args) -> None:
    result = CliRunner().invoke(cli.main, ["gcsweep", *args])
    assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output


def test_a_program_that_does_not_fit_names_the_heap_it_needs() -> None:
    """Before, binary-trees with the default heap said only 'target space is full'."""
    result = CliRunner().invoke(cli.main, ["gcbench", "--binary-trees", "14", "--size", "1M",
                                           "--collector", "generational"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "needs 3 MiB at least" in result.output and "--size 6M" in result.output


@needs_jdk
def test_the_gc_sweep_case_compares_each_plan_with_the_jvm_at_the_same_multiple() -> None:
    from heapalias.bench.cases import Context, GCSweep
    from heapalias.bench.runner import run_case
    from heapalias.probe import probe

    case = GCSweep()
    case.programs, case.multiples, case.warmup = ("binary-trees:8",), (2.0,), 0
    results, skipped = run_case(case, Context(size=64 * MIB, suite="full", probe=probe()), 1,
                                None, {}, {}, lambda _: None)
    assert not skipped and {r.label for r in results} == {
        f"{name} binary-trees:8 2x" for name in ("semispace", "generational", "jvm-serial",
                                                 "jvm-parallel")}
    for result in results:
        assert result.reference == "jvm-serial binary-trees:8 2x" and result.summary.median > 0


def test_each_program_warms_up_for_about_a_second_unless_told() -> None:
    gcbench, deep, shallow = (sweep.Program.parse(p)
                              for p in ("gcbench", "binary-trees:21", "binary-trees:8"))
    assert (gcbench.warmup, deep.warmup, shallow.warmup) == (20, 2, 20)
    assert sweep.Program.parse("binary-trees:18").warmup == 4
    default = sweep.Sweep([gcbench, deep], ["semispace"])
    assert default.as_dict()["warmup"] == {"gcbench": 20, "binary_trees:21": 2}
    told = sweep.Sweep([gcbench, deep], ["semispace"], warmup=3)
    assert [told.warmup_for(p) for p in (gcbench, deep)] == [3, 3]
