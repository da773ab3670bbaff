"""The ``heapalias`` command line.

Exit codes: 0 success, 1 a HeapAliasError (one line with its remedy, no
traceback), 2 a usage error.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ._version import __version__
from .backing import format_size
from .collectors import plan_named, registered
from .concurrent import DESIGNS
from .errors import HeapAliasError, SpaceFull
from .native import lib
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


def _userfaultfd_table(cap) -> Table:
    table = Table(title="userfaultfd (asked of the kernel: UFFDIO_API)", show_header=False,
                  title_justify="left")
    table.add_column("fact", style="bold")
    table.add_column("value")
    table.add_row("system call", "works" if cap.syscall else f"fails: {cap.syscall_error}")
    table.add_row("/dev/userfaultfd", "works" if cap.device else f"fails: {cap.device_error}")
    table.add_row("vm.unprivileged_userfaultfd",
                  "absent" if cap.unprivileged is None else str(cap.unprivileged))
    table.add_row("usable by this process", "yes" if cap.usable else "[red]no[/red]")
    for name, ok in cap.features.items():
        table.add_row(f"feature {name}", "[green]yes[/green]" if ok else "[red]no[/red]")
    return table


@main.command("probe")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: {system, combinations, userfaultfd}.")
@click.option("--semantics", is_flag=True,
              help="Run the named kernel-semantics checks S1-S9 instead, each in a child process.")
def probe_command(as_json: bool, semantics: bool) -> None:
    """Try every backing x pages x strategy combination on this kernel, and report what
    userfaultfd offers (each feature asked of the kernel)."""
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
    if result.userfaultfd is not None:
        console.print(_userfaultfd_table(result.userfaultfd))
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


def _save_outputs(data: dict, json_path: str | None, plot_path: str | None,
                  plotter: str) -> None:
    """Write a report's JSON and its plot (``bench.plot.<plotter>``), where asked."""
    from .bench import plot, report

    if json_path:
        report.save(data, json_path)
        click.echo(f"wrote {json_path}", err=True)
    if plot_path:
        getattr(plot, plotter)(data, plot_path)
        click.echo(f"wrote {plot_path}", err=True)


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
@click.option("--hprof", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An HPROF heap dump for the real_heap case (which then runs in any suite; "
                   "the full suite captures javac's with the installed JDK otherwise).")
def bench_command(suite, size, repeat, pattern, backing, pages, strategy, json_path, plot_path,
                  pin, no_reserve, hprof) -> None:
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
                               on_start=on_start, say=say, hprof=hprof)
        except NothingSelected as exc:
            raise click.UsageError(exc.message) from exc
    data = result.as_dict()
    report.print_report(data, _console())
    _save_outputs(data, json_path, plot_path, "plot_report")


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
@click.option("--threads", type=click.IntRange(1, lib.HA_MAX_THREADS), default=None,
              help="Threads each collection copies on (semispace; default: one per core).")
@click.option("--json", "as_json", is_flag=True)
def gcbench_command(backing, pages, size, collector, depth, repeat, threads, as_json) -> None:
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
        if threads is not None:
            if not hasattr(plan, "threads"):
                raise click.UsageError(f"the {collector} plan collects on one thread: "
                                       "--threads goes with --collector semispace")
            plan.threads = threads
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
        "obtained": obtained, "threads": getattr(plan, "threads", 1),
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
        ("GC", f"{summary['gc_ms']:.1f} ms in {best.collections} collections on "
               f"{summary['threads']} thread{'s' if summary['threads'] > 1 else ''}"),
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


#: The designs `heapalias concurrent` compares with the no-collection run.
CONCURRENT_DESIGNS = tuple(name for name in DESIGNS if name != "none")


@main.command("concurrent")
@click.option("--design", "designs", multiple=True, default=CONCURRENT_DESIGNS,
              type=click.Choice(CONCURRENT_DESIGNS), show_default=True,
              help="Designs to run (repeatable); each beside the no-collection run.")
@click.option("--pages", "page_sizes", multiple=True, default=("4k", "2m"), show_default=True,
              type=click.Choice(["4k", "thp", "2m", "1g"]), help="Page sizes (repeatable).")
@click.option("--size", default="256M", show_default=True, help="Heap size (two semispaces).")
@click.option("--objects", type=click.IntRange(1, 1 << 30), default=1_000_000,
              show_default=True, help="Objects in the mutator's graph (most of them live).")
@click.option("--operations", type=click.IntRange(1, 1 << 40), default=3_000_000,
              show_default=True, help="Mutator operations per run.")
@click.option("--collections", type=click.IntRange(0, 1 << 20), default=10, show_default=True,
              help="Collection cycles per run, spread over the operations.")
@click.option("--store-permille", type=click.IntRange(0, 1000), default=100, show_default=True)
@click.option("--alloc-permille", type=click.IntRange(0, 1000), default=50, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Interleaved rounds; the first is reported as the cold run.")
@click.option("--seed", type=click.IntRange(0, (1 << 64) - 1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--plot", "plot_path", callback=_plot_path, help="Draw the MMU curves to this PNG.")
@click.option("--no-reserve", is_flag=True,
              help="As root, do not fill the hugetlb pools for the run.")
def concurrent_command(designs, page_sizes, size, objects, operations, collections,
                       store_permille, alloc_permille, rounds, seed, as_json, plot_path,
                       no_reserve) -> None:
    """Collect beside a running C mutator: pauses, MMU and throughput per design and pages."""
    import contextlib

    from .backing import parse_size
    from .bench import pools
    from .concurrent import TRAP_FEATURES, MutatorMix
    from .concurrent.study import study
    from .errors import FeatureUnavailable, HugePagesUnavailable
    from .system import HUGETLB_PAGES, PAGE_SIZES

    if store_permille + alloc_permille > 1000:
        raise click.BadParameter("--store-permille plus --alloc-permille exceeds 1000",
                                 param_hint="--alloc-permille")
    nbytes = parse_size(size)
    mix = MutatorMix(operations=operations, store_permille=store_permille,
                     alloc_permille=alloc_permille, seed=seed)
    studies, skipped = [], []
    def say(line: str) -> None:
        if line:
            click.echo(line, err=True)

    guard = pools.PoolGuard(say) if os.geteuid() == 0 and not no_reserve else None
    with guard or contextlib.nullcontext():
        for pages in page_sizes:
            if nbytes % PAGE_SIZES[pages]:
                skipped.append((pages, f"the heap size is not a multiple of the {pages} page"))
                continue
            if guard and pages in HUGETLB_PAGES:
                say(guard.fill({pages: nbytes // PAGE_SIZES[pages]}))
            for design in designs:
                if pages not in TRAP_FEATURES.get(design, {pages: None}):
                    trapped = " and ".join(TRAP_FEATURES[design])
                    skipped.append((f"{design} {pages}", f"{design} traps {trapped} pages only"))
                    continue
                try:
                    studies.append(study(design, size=nbytes, pages=pages, objects=objects,
                                         mix=mix, collections=collections, rounds=rounds))
                except FeatureUnavailable as exc:
                    skipped.append((f"{design} {pages}", f"{exc} ({exc.remedy})"))
                except HugePagesUnavailable as exc:
                    skipped.append((pages, str(exc)))
                    break
    results = [s.summary(cold) for s in studies for cold in (False, True)]
    if as_json:
        click.echo(json.dumps({"results": results, "skipped": skipped}, indent=2))
    else:
        _print_concurrent(results, skipped, nbytes, objects, operations)
    if plot_path and studies:
        from .concurrent.plot import plot_mmu

        plot_mmu(studies, plot_path)
        click.echo(f"wrote {plot_path}", err=True)
    if not all(r["checksums_equal"] for r in results):
        raise HeapAliasError("a design's checksum differs from the no-collection run's: a load "
                             "saw a stale object or a store was lost",
                             remedy="report this bug with the command line and `heapalias probe`")


def _print_concurrent(results: list[dict], skipped: list, size: int, objects: int,
                      operations: int) -> None:
    from .concurrent import TRAP_FEATURES

    table = Table(title=f"Collection beside a mutator: {format_size(size)} heap, "
                  f"{objects:,} objects, {operations:,} operations per run",
                  title_justify="left")
    for column in ("design", "pages", "pauses", "pause µs p50/p99/p99.9/max",
                   "MMU 0.1/1/10 ms", "throughput", "cold", "barrier", "slow paths",
                   "GC ms", "moved MB", "checksum"):
        table.add_column(column, justify="left" if column in ("design", "pages") else "right")
    cold = {(r["design"], r["pages"]): r for r in results if r["phase"] == "cold"}
    for r in (r for r in results if r["phase"] == "steady"):
        p, barrier = r["pauses"], r.get("barrier_fast_path")
        table.add_row(
            r["design"], r["pages"], str(p["count"]),
            "/".join(f"{p[k]:.0f}" if p[k] >= 10 else f"{p[k]:.1f}"
                     for k in ("p50_us", "p99_us", "p999_us", "max_us")),
            "/".join(f"{v:.2f}" for v in r["mmu"].values()), f"{r['throughput_ratio']:.2f}x",
            f"{cold[r['design'], r['pages']]['throughput_ratio']:.2f}x",
            f"{barrier['throughput_ratio']:.2f}x, {barrier['ns_per_load']:.1f} ns/load"
            if barrier else "-",
            f"{r['faults']:.0f} faults, {r['fault_service_us']:.1f} µs"
            if r["design"] in TRAP_FEATURES else str(r["slow_paths"]["count"]),
            f"{r['collector_ms']:.0f}",
            f"{r['relocated_mb']:.0f}", "equal" if r["checksums_equal"] else "DIFFERS")
    console = Console(highlight=False, soft_wrap=False, width=max(Console().width, 160))
    console.print(table)
    console.print("Steady state: the median over rounds after the first; cold: the first round. "
                  "throughput: operations/s against the no-collection run of the same seed on the "
                  "same heap; barrier: the load barrier alone, no collection (throughput, and ns "
                  "per reference load). Pauses are "
                  "safepoint and allocation stalls, and page traps (minor, copy, move: each "
                  "fault, timed by the collector from its last look at the userfaultfd, an "
                  "upper bound; slow paths shows their count and the collector's mean time "
                  "serving one); barrier slow paths are counted apart.")
    for pages, why in skipped:
        console.print(f"skipped {pages}: {why}")
    shared = [r for r in results if r["reference_on_cpu"] < SHARED_MACHINE_ON_CPU]
    if shared:
        worst = min(r["reference_on_cpu"] for r in shared)
        console.print(f"[bold]Noisy:[/] in {len(shared)} of {len(results)} phases the mutator "
                      f"of the no-collection run waited for a CPU (on one for as little as "
                      f"{worst:.0%} of its time): another process shared the machine, so "
                      "throughput and pauses include its time. Rerun on a quiet machine.")


#: Below this share of its wall time on a CPU, the no-collection run's mutator (the only
#: thread that runs) was kept waiting by other work.
SHARED_MACHINE_ON_CPU = 0.95


def _import_table(stats, run) -> Table:
    """What an import found: the counts, both models' bytes, roots, speed and memory."""
    table = Table(title=f"{stats.path}: {stats.dump_bytes / 1e6:.1f} MB, {stats.id_size}-byte ids",
                  show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    roots = ", ".join(f"{name} {count}" for name, count in stats.root_records.items())
    overhead = "unknown" if run.overhead is None else (
        f"{run.peak_bytes / 1e6:.0f} MB, {run.overhead:.2f}x the heap it built")
    for what, value in [
        ("objects", f"{stats.objects:,}: {stats.instances:,} instances, {stats.object_arrays:,} "
                    f"object arrays, {stats.primitive_arrays:,} primitive arrays, "
                    f"{stats.classes:,} classes" + (f" (+{stats.arraylet_chunks} arraylet chunks)"
                                                    if stats.arraylet_chunks else "")),
        ("references", f"{stats.references:,} ({stats.mean_degree:.2f} an object), "
                       f"{stats.null_references:,} null, {stats.missing_references:,} to objects "
                       "the dump lacks (stored null)"),
        ("bytes", f"{stats.heap_bytes / 1e6:.1f} MB in heapalias's model, "
                  f"{stats.jvm_bytes / 1e6:.1f} MB shallow in the JVM's ({stats.jvm_layout})"),
        ("GC roots", f"{stats.roots:,} objects ({roots}), {stats.missing_roots} naming no object; "
                     f"+{stats.class_roots:,} classes"),
        ("unreachable", f"{stats.unreachable:,} objects ({stats.unreachable_fraction:.2%}) no root "
                        f"reaches: {stats.extra_roots:,} made roots"),
        ("import", f"{stats.seconds['total']:.2f} s, {stats.mb_per_s:.0f} MB/s of dump; peak "
                   f"memory beyond the heap {overhead}"),
    ]:
        table.add_row(what, value)
    return table


def _classes_table(stats, top: int) -> Table:
    table = Table(title=f"Top {top} classes by JVM bytes", title_justify="left")
    for column in ("class", "objects", "JVM bytes", "heapalias bytes"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in stats.top_classes(top):
        table.add_row(row.name, f"{row.count:,}", f"{row.jvm_bytes:,}", f"{row.heap_bytes:,}")
    return table


def jvm_comparison(results: list[dict], pauses: dict[str, list[float]] | None) -> list[str]:
    """One line per page size: Cheney and mark of the imported heap beside the JVM's own
    full-GC pauses on it, medians on both sides (the loops' of the run's rounds, the
    JVM's of its forced collections on the live heap)."""
    medians = {r["label"]: r["summary"]["median"] for r in results if r["case"] == "real_heap"}
    jvm = {name: statistics.median(values) for name, values in (pauses or {}).items()}
    lines = []
    for label, cheney in medians.items():
        if not label.endswith(" cheney"):
            continue
        where = label[:-len(" cheney")]
        versus = ", ".join(f"{name} full GC {ms:.1f} ms ({ms / cheney:.2f}x Cheney's time)"
                           for name, ms in jvm.items())
        mark = medians.get(f"{where} mark")
        lines.append(f"{where}: Cheney {cheney:.1f} ms"
                     + (f", mark {mark:.1f} ms" if mark is not None else "")
                     + (f"; the JVM's {versus}" if versus else ""))
    return lines


@main.command("heapdump")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--capture", "capture_to", callback=_output_path,
              help="Run javac with the installed JDK, dump its live heap to this file, and time "
                   "the JVM's forced full GCs on it (SerialGC, ParallelGC) in the same run.")
@click.option("--classes", type=click.IntRange(1, 100_000), default=None,
              help="With --capture: generated classes javac compiles (default 300: ~55 MB live).")
@click.option("--pages", type=click.Choice(["4k", "thp", "2m", "1g"]), default=None,
              help="Time the loops on this page size only.")
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="Classes to list.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--plot", "plot_path", callback=_plot_path,
              help="Draw the heap's size and degree histograms beside the synthetic workloads'.")
@click.option("--no-reserve", is_flag=True, help="As root, do not fill the hugetlb pools.")
def heapdump_command(file, capture_to, classes, pages, repeat, top, as_json, plot_path,
                     no_reserve) -> None:
    """Import an HPROF heap dump; time mark, walk, verify and Cheney on its graph."""
    from .bench.runner import run_suite
    from .hprof import capture
    from .hprof.measure import import_heap

    if (file is None) == (capture_to is None):
        raise click.UsageError("give a heap dump FILE or --capture OUT.hprof (one of them)")
    jvm, jdk = None, None
    if capture_to is not None:
        count = classes or capture.BENCH_CLASSES
        serial = capture.capture(capture_to, classes=count, full_gcs=capture.FULL_GCS)
        parallel = capture.capture(None, classes=count, collector="parallel",
                                   full_gcs=capture.FULL_GCS)
        jvm = {"version": serial.version, "classes": count, "live_bytes": serial.live_bytes,
               "pauses": {"serial": capture.steady(serial.full_gc_ms),
                          "parallel": capture.steady(parallel.full_gc_ms)}}
        file, jdk = capture_to, serial.feature
    elif classes is not None:
        raise click.UsageError("--classes goes with --capture")
    run = import_heap(file, jdk=jdk)
    stats = run.imported.stats
    size = max(run.dump.semispace_bytes(2 << 20), 64 << 20)
    run.heap.close()
    progress, tick, on_start = _progress_runner()
    with progress:
        report = run_suite(suite="quick", size=size, repeat=repeat, pattern="real_heap",
                           pages=pages, hprof=str(file),
                           jvm_pauses=jvm["pauses"] if jvm else None,
                           reserve_pools=os.geteuid() == 0 and not no_reserve, tick=tick,
                           on_start=on_start).as_dict()
    comparison = jvm_comparison(report["results"], jvm["pauses"] if jvm else None)
    if plot_path:
        from .hprof.histograms import plot_histograms, synthetic_histograms

        plot_histograms({f"real heap ({Path(file).name})": (stats.sizes, stats.degrees),
                         **synthetic_histograms()}, plot_path)
    if as_json:
        click.echo(json.dumps({"import": {**stats.as_dict(top), "peak_bytes": run.peak_bytes,
                                          "overhead": run.overhead},
                               "jvm": jvm, "comparison": comparison, "bench": report},
                              indent=2))
        return
    from .bench import report as reporting

    console = _console()
    console.print(_import_table(stats, run))
    if top:
        console.print(_classes_table(stats, top))
    reporting.print_report(report, console)
    for line in comparison:
        console.print(line, markup=False)
    if plot_path:
        click.echo(f"wrote {plot_path}", err=True)


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
@click.option("--warmup", type=click.IntRange(min=0), default=None,
              help="Rounds each sample's fresh process runs before its steady round "
              "(default: about a second's worth: GCBench 20, binary-trees 21 2).")
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
    _save_outputs(data, json_path, plot_path, "plot_sweep")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
