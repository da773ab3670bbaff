"""The ``heapalias`` command line.

Exit codes: 0 success, 1 a HeapAliasError (one line with its remedy, no
traceback), 2 a usage error.
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from .backing import format_size
from .errors import HeapAliasError
from .probe import ProbeResult, probe
from .system import PAGE_SIZES, SystemInfo, hugepage_pool, hugepage_pools, reserve_hugepages


class _Group(click.Group):
    """Turns a HeapAliasError from any command into one line on stderr and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HeapAliasError as exc:
            click.echo(f"heapalias: error: {exc}", err=True)
            ctx.exit(1)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=max(Console().width, 120))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="heapalias")
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
def probe_command(as_json: bool) -> None:
    """Try every backing x pages x strategy combination on this kernel."""
    result = probe()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    console = _console()
    console.print(_system_table(result.system))
    console.print(_combination_table(result))
    works = len(result.working())
    console.print(f"{works} of {len(result.combinations)} combinations work on this kernel.")


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
