"""The ``heapalias`` command line.

Exit codes: 0 success, 1 a HeapAliasError (one line with its remedy, no
traceback), 2 a usage error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ._version import __version__
from .backing import format_size
from .collectors import plan_named, registered
from .errors import HeapAliasError, SpaceFull
from .probe import ProbeResult, probe
from .system import PAGE_SIZES, SystemInfo, hugepage_pool, hugepage_pools, reserve_hugepages


class OneLineError(click.ClickException):
    """An error shown as the one line the README promises: no usage text, no traceback."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"heapalias: error: {self.message}", err=True, file=file)


def one_line(exc: Exception) -> OneLineError:
    """Exit 2 for a usage error (with where to read the options), 1 for everything else."""
    if isinstance(exc, click.UsageError):
        where = f"`{exc.ctx.command_path} --help`" if exc.ctx else "`heapalias --help`"
        return OneLineError(f"{exc.format_message().rstrip('.')}. Remedy: see {where}", 2)
    if isinstance(exc, click.ClickException):
        return OneLineError(exc.format_message(), exc.exit_code)
    return OneLineError(str(exc), 1)


class _Group(click.Group):
    """Turns a usage error or a HeapAliasError from any command into one line on stderr."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # bare `heapalias`: the help text is the answer
        except (click.UsageError, HeapAliasError) as exc:
            raise one_line(exc) from exc

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OneLineError:
            raise
        except (click.ClickException, HeapAliasError) as exc:
            raise one_line(exc) from exc


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=max(Console().width, 120))


@click.group("heapalias", cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__)
def main() -> None:
    """heapalias: aliased JVM-style heaps for studying garbage collectors."""


def _system_table(info: SystemInfo) -> Table:
    table = Table(title="System", show_header=False, title_justify="left")
    table.add_column("fact", style="bold")
    table.add_column("value")
    table.add_row("kernel", f"{info.kernel} ({info.machine})")
    table.add_row("cpu", f"{info.cpu} x{info.cpus}")
    table.add_row("THP enabled", info.thp_enabled)
    table.add_row("THP shmem_enabled", info.thp_shmem_enabled)
    for pool in info.hugepage_pools:
        table.add_row(
            f"hugetlb {format_size(pool.page_size)} pool",
            f"{pool.free} free / {pool.total} total ({pool.reserved} reserved)",
        )
    table.add_row("vm.max_map_count", f"{info.max_map_count} ({info.map_count} in use)")
    table.add_row("vm.overcommit_memory", str(info.overcommit_memory))
    return table


def _combination_table(result: ProbeResult) -> Table:
    table = Table(title="Backing x pages x alias strategy (each one tried)", title_justify="left")
    for column in ("backing", "pages", "strategy", "result", "errno", "pages obtained", "reason"):
        table.add_column(column, overflow="fold")
    for combo in result.combinations:
        verdict = (
            "[green]works[/green]" if combo.ok
            else "[red]fails[/red]" if combo.applicable else "[dim]n/a[/dim]"
        )
        table.add_row(
            combo.backing, combo.pages, combo.strategy, verdict, combo.errno_name,
            combo.obtained, combo.error,
        )
    return table


@main.command("probe")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {system, combinations}.")
@click.option("--semantics", is_flag=True,
              help="Run the named kernel-semantics checks S1-S9 instead, each in a child process.")
def probe_command(as_json: bool, semantics: bool) -> None:
    """Try every backing x pages x strategy combination on this kernel."""
    if semantics:
        _semantics_report(as_json)
        return
    result = probe()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    console = _console()
    console.print(_system_table(result.system))
    console.print(_combination_table(result))
    works = len(result.working())
    console.print(f"{works} of {len(result.combinations)} combinations work on this kernel.")


def _semantics_report(as_json: bool) -> None:
    from .semantics import semantics

    checks = semantics()
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in checks], indent=2))
        return
    table = Table(title=f"Kernel semantics on Linux {os.uname().release} (each check in a "
                  "child process)", title_justify="left", show_lines=True)
    for column in ("check", "claim", "result", "observed"):
        table.add_column(column, overflow="fold")
    colors = {"holds": "green", "does not hold": "red", "reported": "cyan"}
    for c in checks:
        color = colors.get(c.status, "yellow")
        facts = ", ".join(f"{k}: {v}" for k, v in c.facts.items() if not isinstance(v, dict))
        table.add_row(c.id, c.claim, f"[{color}]{c.status}[/{color}]",
                      f"{c.observed}\n[dim]{facts}[/dim]")
    _console().print(table)


@main.command("hugepages")
@click.option("--reserve", type=click.IntRange(min=0), help="Set the pool to N pages (root).")
@click.option(
    "--size", "page", type=click.Choice(["2m", "1g"]), default="2m", show_default=True,
    help="Which pool --reserve fills.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the pools as JSON.")
def hugepages_command(reserve: int | None, page: str, as_json: bool) -> None:
    """Show the hugetlb pools, or fill one with --reserve N."""
    if reserve is not None:
        pool = reserve_hugepages(reserve, PAGE_SIZES[page])
        if pool.total < reserve:
            click.echo(
                f"heapalias: warning: asked for {reserve} pages, the kernel granted "
                f"{pool.total} (memory too fragmented or too small)",
                err=True,
            )
    pools = hugepage_pools() or [hugepage_pool(PAGE_SIZES[page])]
    if as_json:
        click.echo(json.dumps([
            {"page_size": p.page_size, "total": p.total, "free": p.free,
             "reserved": p.reserved, "surplus": p.surplus, "available": p.available}
            for p in pools
        ], indent=2))
        return
    table = Table(title="hugetlb pools", title_justify="left")
    for column in ("page size", "total", "free", "reserved", "surplus", "available"):
        table.add_column(column, justify="right")
    for p in pools:
        table.add_row(
            format_size(p.page_size), str(p.total), str(p.free), str(p.reserved),
            str(p.surplus), str(p.available),
        )
    _console().print(table)
    if not any(p.total for p in pools):
        click.echo("All pools are empty: `heapalias hugepages --reserve 256` fills the 2 MiB pool.")


def _progress_runner():
    """A rich progress bar on stderr, and the callbacks that drive it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}", style="dim"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} samples"),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    task = progress.add_task("measuring limits", total=None)

    def tick(what: str) -> None:
        progress.update(task, advance=1, description=what[:60])

    def on_start(samples: int) -> None:  # each case adds its samples as it starts
        progress.update(task, total=(progress.tasks[0].total or 0) + samples)

    return progress, tick, on_start


def _output_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An output file the run can write at its end, checked before the run starts."""
    if value is None:
        return None
    path = Path(value)
    folder = path.parent
    if path.is_dir():
        raise click.BadParameter(f"{value} is a directory", ctx, param)
    if not folder.is_dir():
        raise click.BadParameter(f"directory {folder} does not exist", ctx, param)
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise click.BadParameter(f"{value} is not writable", ctx, param)
    return value


def _plot_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Like _output_path, and drawing needs matplotlib (the `plot` extra)."""
    if value is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise click.BadParameter("drawing needs matplotlib: pip install "
                                     "'heapalias[plot]'", ctx, param) from exc
    return _output_path(ctx, param, value)


@main.command("bench")
@click.option("--suite", type=click.Choice(["quick", "full"]), default="quick", show_default=True,
              help="quick: about a minute on 2 cores; full: every variant, size and program.")
@click.option("--size", default="256M", show_default=True, help="Heap size for each variant.")
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed rounds per variant, after a warm-up round.")
@click.option("-k", "pattern", default=None, help="Only cases/variants whose 'case label' "
              "contains this text, e.g. -k mark or -k 2m.")
@click.option("--backing", type=click.Choice(["memfd", "anon", "private"]), default=None)
@click.option("--pages", type=click.Choice(["4k", "thp", "2m", "1g"]), default=None)
@click.option("--strategy", type=click.Choice(["mremap", "memfd"]), default=None)
@click.option("--json", "json_path", callback=_output_path,
              help="Also write the full report (samples, metadata) to this file.")
@click.option("--plot", "plot_path", callback=_plot_path,
              help="Also draw the ratios and the relocation crossover to this PNG.")
@click.option("--pin", type=click.IntRange(min=0), default=None, help="Pin to this CPU.")
@click.option("--no-reserve", is_flag=True,
              help="As root, do not fill the hugetlb pools for the run (by default a short pool "
              "is filled for the run and restored afterwards).")
def bench_command(suite, size, repeat, pattern, backing, pages, strategy, json_path, plot_path,
                  pin, no_reserve) -> None:
    """Benchmark the strategies side by side, each figure a ratio to a same-run limit."""
    from .backing import parse_size
    from .bench import report
    from .bench.runner import NothingSelected, run_suite

    nbytes = parse_size(size)
    if pin is not None and pin not in os.sched_getaffinity(0):
        raise click.BadParameter(f"CPU {pin} is not available to this process", param_hint="--pin")
    progress, tick, on_start = _progress_runner()

    def say(line: str) -> None:  # above the progress bar, on stderr
        progress.console.print(line, markup=False, highlight=False, soft_wrap=True)

    with progress:
        try:
            result = run_suite(suite=suite, size=nbytes, repeat=repeat, pattern=pattern,
                               backing=backing, pages=pages, strategy=strategy, pin=pin,
                               reserve_pools=os.geteuid() == 0 and not no_reserve, tick=tick,
                               on_start=on_start, say=say)
        except NothingSelected as exc:
            raise click.UsageError(exc.message) from exc
    data = result.as_dict()
    report.print_report(data, _console())
    if json_path:
        report.save(data, json_path)
        click.echo(f"wrote {json_path}", err=True)
    if plot_path:
        from .bench.plot import plot_report

        plot_report(data, plot_path)
        click.echo(f"wrote {plot_path}", err=True)


@main.command("compare")
@click.argument("before", type=click.Path(exists=True, dir_okay=False))
@click.argument("after", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare_command(before: str, after: str, as_json: bool) -> None:
    """Compare two `bench --json` reports: ratio of medians, and whether it beats the noise."""
    from .bench import report

    rows = report.compare_reports(report.load(before), report.load(after))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        raise click.ClickException("the two reports have no case and variant in common")
    report.print_comparison(rows, _console(), (before, after))


def _too_small(exc: SpaceFull, collector: str, depth: int | None, size: int) -> HeapAliasError:
    """The error for a program that did not fit its heap, naming the heap it needs: the
    minimum heap search (bench/sweep.py) runs first, which takes a few runs."""
    from .bench.sweep import Program, collector_named, minimum_heap

    program = Program("gcbench") if depth is None else Program("binary_trees", depth)
    click.echo(f"{program.label} does not fit a {format_size(size)} {collector} heap; "
               "searching for the smallest heap it runs in...", err=True)
    try:
        needed, _ = minimum_heap(collector_named(collector), program, None, too_small=size)
    except HeapAliasError as search:
        return SpaceFull(f"{program.label} does not fit a {format_size(size)} {collector} heap "
                         f"({exc.message}), and no heap found fits it: {search.message}",
                         remedy="free memory, or run a smaller program")
    return SpaceFull(f"{program.label} does not fit a {format_size(size)} {collector} heap: it "
                     f"needs {format_size(needed)} at least (the smallest heap it completed in)",
                     remedy=f"run with --size {2 * needed >> 20}M, twice the minimum")


@main.command("gcbench")
@click.option("--backing", type=click.Choice(["memfd", "anon", "private"]), default="memfd",
              show_default=True)
@click.option("--pages", type=click.Choice(["4k", "thp", "2m", "1g"]), default="4k",
              show_default=True)
@click.option("--size", default="256M", show_default=True,
              help="Heap size, laid out by the collector (semispace: two halves).")
@click.option("--collector", default="semispace", show_default=True,
              type=click.Choice(sorted(registered())), help="The plan the mutator runs on.")
@click.option("--binary-trees", "depth", type=click.IntRange(0, 30), default=None,
              help="Run binary-trees with this depth instead of GCBench.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def gcbench_command(backing, pages, size, collector, depth, repeat, as_json) -> None:
    """Run GCBench (or binary-trees) in C over a collector; report mutator and GC time."""
    import warnings

    from . import drivers
    from .errors import HeapAliasWarning
    from .heap import Heap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeapAliasWarning)
        heap = Heap(size, backing=backing, pages=pages, name="gcbench")
    with heap:
        plan = plan_named(collector).over(heap)
        program = (lambda: drivers.binary_trees(plan, depth)) if depth is not None else (
            lambda: drivers.gcbench(plan))
        try:
            runs = [program() for _ in range(repeat)]
        except SpaceFull as exc:
            raise _too_small(exc, collector, depth, heap.size) from exc
        obtained = heap.pages_report()[0].obtained
    # The median run by total time (the upper median for an even count): a typical run.
    best = sorted(runs, key=lambda r: r.total_ns)[len(runs) // 2]
    expected = (drivers.expected_binary_trees_checks(depth) if depth is not None
                else drivers.expected_gcbench_checks())
    summary = {
        "program": best.program, "collector": collector, "backing": backing, "pages": pages,
        "obtained": obtained,
        "heap_bytes": heap.size, "runs": repeat, "total_ms": best.total_ns / 1e6,
        "mutator_ms": best.mutator_ns / 1e6, "gc_ms": best.gc_ns / 1e6,
        "collections": best.collections, "pauses": best.pause_summary(),
        "bytes_copied": best.bytes_copied, "bytes_allocated": best.bytes_allocated,
        "checks": list(best.checks), "checks_ok": best.checks == expected,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"{best.program} over {collector} on a {format_size(heap.size)} "
                  f"{backing} heap, {obtained} (the median of {repeat} runs)", show_header=False,
                  title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    pauses = summary["pauses"]
    for what, value in [
        ("total", f"{summary['total_ms']:.1f} ms"),
        ("mutator", f"{summary['mutator_ms']:.1f} ms"),
        ("GC", f"{summary['gc_ms']:.1f} ms in {best.collections} collections"),
        ("pauses", f"min {pauses['min_ms']:.2f} / median {pauses['median_ms']:.2f} / "
                   f"max {pauses['max_ms']:.2f} ms"),
        ("copied", format_size(best.bytes_copied) if best.bytes_copied % 1024 == 0
         else f"{best.bytes_copied / 2**20:.1f} MiB"),
        ("allocated", f"{best.bytes_allocated / 2**20:.1f} MiB"),
        ("checks", f"{' '.join(map(str, best.checks))} "
                   f"({'as the program expects' if summary['checks_ok'] else 'WRONG'})"),
    ]:
        table.add_row(what, value)
    _console().print(table)
    if not summary["checks_ok"]:
        raise HeapAliasError("the program's check values are wrong: the heap is corrupt",
                             remedy="report this bug with `heapalias probe --json` attached")


@main.command("gcsweep")
@click.option("--program", "programs", multiple=True, default=("gcbench", "binary-trees:21"),
              show_default=True, help="gcbench or binary-trees:DEPTH (repeatable).")
@click.option("--collector", "names", multiple=True,
              default=(*registered(), "jvm-serial", "jvm-parallel", "jvm-parallel-2cpu"),
              show_default=True, help="A heapalias plan or a JVM collector (repeatable).")
@click.option("--multiples", default="1.5,2,3,4,6", show_default=True,
              help="Heap sizes, as multiples of each collector's own minimum heap.")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True,
              help="Interleaved rounds: samples per (collector, multiple).")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True,
              help="Rounds each sample's fresh process runs before its steady round.")
@click.option("--cpu", type=click.IntRange(min=0), default=None,
              help="The CPU the C runs and pinned JVMs use (default: the last one allowed).")
@click.option("--no-gc-run/--skip-no-gc-run", "no_gc", default=True, show_default=True,
              help="Also run each program without collecting: the mutator's lower bound.")
@click.option("--minimum-from", "minimum_from", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Take the minimum heaps an earlier sweep's --json found, "
              "instead of searching again (a collector or program it lacks is searched).")
@click.option("--json", "json_path", callback=_output_path, help="Also write every sample.")
@click.option("--plot", "plot_path", callback=_plot_path,
              help="Also draw time against heap size, one line per collector, to this PNG.")
def gcsweep_command(programs, names, multiples, rounds, warmup, cpu, no_gc, minimum_from,
                    json_path, plot_path) -> None:
    """Heap-size sweep: each collector at multiples of its minimum heap, against the JVM."""
    from .bench import jvm, report, sweep

    try:
        factors = tuple(float(x) for x in multiples.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"{multiples!r} is not a list of numbers",
                                 param_hint="--multiples") from exc
    if not factors or min(factors) < 1:
        raise click.BadParameter("every multiple must be 1 or more", param_hint="--multiples")
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed) if cpu is None else cpu
    if cpu not in allowed:
        raise click.BadParameter(f"CPU {cpu} is not available to this process", param_hint="--cpu")
    chosen = list(dict.fromkeys(names))
    for name in chosen:
        if name not in registered() and name not in sweep.JVM_COLLECTORS:
            raise click.BadParameter(f"no collector {name!r}: {sorted(registered())} or "
                                     f"{sorted(sweep.JVM_COLLECTORS)}", param_hint="--collector")
    if jvm.unavailable() and any(name in sweep.JVM_COLLECTORS for name in chosen):
        click.echo(f"heapalias: without the JVM: {jvm.unavailable()}", err=True)
        chosen = [name for name in chosen if name not in sweep.JVM_COLLECTORS]
    plan = sweep.Sweep([sweep.Program.parse(p) for p in programs], chosen, factors, rounds,
                       warmup, cpu, no_gc)
    if minimum_from:
        earlier = report.load_sweep(minimum_from)
        plan.minimum = {label: {name: tuple(found) for name, found in by_collector.items()}
                        for label, by_collector in earlier["minimum"].items()}
    metadata = sweep.metadata()
    sweep.run_sweep(plan, say=lambda line: click.echo(line, err=True))
    data = {**plan.as_dict(), "metadata": metadata}
    report.print_sweep(data, _console())
    if json_path:
        report.save(data, json_path)
        click.echo(f"wrote {json_path}", err=True)
    if plot_path:
        from .bench.plot import plot_sweep

        plot_sweep(data, plot_path)
        click.echo(f"wrote {plot_path}", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
