"""Present benchmark reports: rich tables, JSON files, comparisons and plots."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import InvalidArgument
from .stats import CV_WARNING, compare


def winners(results: list[dict]) -> set[int]:
    """Indexes of the best result among each set of variants compared with one reference."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(results):
        groups[r["reference"]].append(i)
    best = set()
    for members in groups.values():
        pick = max if results[members[0]]["higher_is_better"] else min
        best.add(pick(members, key=lambda i: results[i]["summary"]["median"]))
    return best


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"


def print_report(data: dict, console: Console) -> None:
    """One table per case: median, IQR, CV, ratios; the winner marked with a star."""
    meta = data["metadata"]
    console.print(f"[bold]heapalias bench[/bold] {data['config']['suite']} suite, "
                  f"{data['config']['size'] >> 20} MiB heaps, {data['config']['repeat']} rounds "
                  f"on {meta['kernel']}, {meta['cpu']} x{meta['cpus']}, THP "
                  f"{meta['thp_enabled']}/{meta['thp_shmem_enabled']}")
    lim = data["limits"]
    console.print(f"Limits measured in this run: memcpy {lim['memcpy_gb_per_s']:.2f} GB/s, "
                  f"read {lim['read_gb_per_s']:.2f} GB/s, dependent load "
                  f"{lim['load_latency_ns']:.1f} ns, first-touch fault "
                  f"{lim['fault_ns_per_page'] / 1000:.2f} us per 4 KiB page")
    by_case: dict[str, list[dict]] = defaultdict(list)
    for result in data["results"]:
        by_case[result["case"]].append(result)
    for case, results in by_case.items():
        unit = results[0]["unit"]
        better = "higher" if results[0]["higher_is_better"] else "lower"
        limit = results[0]["limit"]
        table = Table(title=f"{case} ({unit}, {better} is better)", title_justify="left")
        for column in ("variant", "median", "IQR", "CV", f"x {limit}" if limit else "",
                       "x ref", "faults/run", "pages"):
            if column:
                table.add_column(column, justify="right" if column != "variant" else "left")
        best = winners(results)
        for i, r in enumerate(results):
            s = r["summary"]
            flag = " [yellow]![/yellow]" if s["cv"] >= CV_WARNING else ""
            cv = f"{s['cv'] * 100:.0f}%{flag}"
            row = [("* " if i in best else "  ") + r["label"], _fmt(s["median"]),
                   _fmt(s["iqr"]), cv]
            if limit:
                row.append(_fmt(r["ratio_to_limit"]))
            row += [_fmt(r["ratio_to_reference"]), f"{r['minor_faults']:.0f}", r["obtained"]]
            table.add_row(*row)
        console.print(table)
    noisy = [f"{r['case']} {r['label']}" for r in data["results"]
             if r["summary"]["cv"] >= CV_WARNING]
    if noisy:
        console.print(f"[yellow]warning:[/yellow] CV >= 10% for {len(noisy)} results "
                      f"({', '.join(noisy[:4])}{', ...' if len(noisy) > 4 else ''}): "
                      "rerun with more --repeat, or --pin a CPU")
    if data["skipped"]:
        console.print(f"Skipped {len(data['skipped'])} variants:")
        for skip in data["skipped"]:
            console.print(f"  {skip['case']} {skip['label']}: {skip['reason']}", soft_wrap=True)
    console.print("* marks the winner among variants sharing a reference; x ref is the speed "
                  "against that reference (above 1 is faster).")


def save(data: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(data, indent=1))


def load(path: str | Path) -> dict:
    """A report written by ``heapalias bench --json``; InvalidArgument if it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"cannot read a report from {path}: {exc}") from exc
    if not isinstance(data, dict) or not {"metadata", "results"} <= data.keys():
        raise InvalidArgument(f"{path} is not a heapalias bench report")
    return data


def compare_reports(a: dict, b: dict) -> list[dict]:
    """For each (case, variant) in both: ratio of medians (B/A, speed), p-value, significance."""
    index = {(r["case"], r["label"]): r for r in a["results"]}
    rows = []
    for rb in b["results"]:
        ra = index.get((rb["case"], rb["label"]))
        if ra is None:
            continue
        change = compare(ra["values"], rb["values"])
        speed = change.ratio if rb["higher_is_better"] else 1 / change.ratio
        rows.append({"case": rb["case"], "label": rb["label"], "unit": rb["unit"],
                     "a": ra["summary"]["median"], "b": rb["summary"]["median"],
                     "speedup": speed, "p_value": change.p_value, "noise": change.noise,
                     "significant": change.significant})
    return rows


def print_comparison(rows: list[dict], console: Console, names: tuple[str, str]) -> None:
    table = Table(title=f"{names[1]} against {names[0]} (speedup above 1: B is faster)",
                  title_justify="left")
    for column in ("case", "variant", "A", "B", "unit", "speedup", "p", "noise", ""):
        table.add_column(column, justify="left" if column in ("case", "variant") else "right")
    for r in rows:
        flag = ("[green]faster[/green]" if r["speedup"] > 1 else "[red]slower[/red]") \
            if r["significant"] else "[dim]noise[/dim]"
        table.add_row(r["case"], r["label"], _fmt(r["a"]), _fmt(r["b"]), r["unit"],
                      _fmt(r["speedup"]), f"{r['p_value']:.3f}", f"{r['noise'] * 100:.0f}%", flag)
    console.print(table)
    console.print("A change counts when a two-sided Mann-Whitney U test gives p < 0.05 and the "
                  "medians differ by more than the larger relative IQR.")
