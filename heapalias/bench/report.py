"""Present benchmark reports: rich tables, JSON files, comparisons and plots."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..backing import format_size
from ..errors import HeapAliasError, InvalidArgument
from .conclusions import conclusions
from .stats import CV_WARNING, SUSPECT_RATIO, compare
from .sweep import PARTS, summary


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


def limits_line(limits: dict) -> str:
    """The limits of a run, each the fastest known way to do a case's work."""
    return (f"Limits measured in this run (the fastest known way to do each case's work): "
            f"copy {limits['copy_gb_per_s']:.2f} GB/s (memcpy {limits['memcpy_gb_per_s']:.2f}, "
            f"streaming {limits['stream_copy_gb_per_s']:.2f}), write "
            f"{limits['write_gb_per_s']:.2f} GB/s, read {limits['read_gb_per_s']:.2f} GB/s, "
            f"write+read {limits['write_read_gb_per_s']:.2f} GB/s, random load "
            f"{limits['random_load_ns']:.1f} ns over {limits['random_bytes'] >> 20} MiB"
            f"{parallelism_text(limits.get('parallelism', []))}"
            f"{cores_text(limits)}. "
            f"For reference: dependent load {limits['load_latency_ns']:.1f} ns, first-touch "
            f"fault {limits['fault_ns_per_page'] / 1000:.2f} us per 4 KiB page")


def parallelism_text(sweeps: list[dict]) -> str:
    """The memory-parallelism limit per page size: where k chases saturate, and the ns per
    load there (then the latency, k = 1)."""
    if not sweeps:
        return ""
    parts = [f"{s['pages']} {s['mlp_ns']:.1f} ns from k={s['saturating_chases']} "
             f"(latency {s['latency_ns']:.0f} ns"
             + (f"; {s['cores']} cores at once {s['all_cores_speedup']:.2f}x one"
                if s.get("all_cores_speedup") else "") + ")" for s in sweeps]
    return f", mlp over {sweeps[0]['buffer_bytes'] >> 20} MiB: " + ", ".join(parts)


def cores_text(limits: dict) -> str:
    """The read bandwidth of every core at once, against one core's: the cap on the speed-up
    of parallel loops where memory holds them back."""
    threads = limits.get("read_threads", 1)
    if threads < 2 or not limits.get("read_threads_gb_per_s"):
        return ""
    return (f", read on {threads} cores {limits['read_threads_gb_per_s']:.2f} GB/s "
            f"({limits['read_threads_gb_per_s'] / limits['read_gb_per_s']:.2f}x one core)")


def ratio_columns(results: list[dict]) -> list[str]:
    """The limits and beside-figures a case's results are shown against, in order: the
    figures beside a limit first (x latency), then the limit (x mlp)."""
    names: list[str] = []
    for r in results:
        for name in [*r.get("beside", {}), r["limit"]]:
            if name and name not in names:
                names.append(name)
    return names


def suspects(results: list[dict]) -> list[dict]:
    """Results that beat their limit by more than SUSPECT_RATIO: the limit is no limit."""
    return [r for r in results
            if r.get("ratio_to_limit") is not None and r["ratio_to_limit"] > SUSPECT_RATIO]


def skipped_by_cause(skipped: list[dict]) -> list[tuple[str, int, str]]:
    """(cause, count, 'case: variant, variant; case: ...') per distinct reason, most first."""
    groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for skip in skipped:
        groups[skip["reason"]][skip["case"]].append(skip["label"])
    rows = []
    for reason, by_case in groups.items():
        count = sum(len(labels) for labels in by_case.values())
        where = "; ".join(f"{case}: {', '.join(labels)}" for case, labels in by_case.items())
        rows.append((reason, count, where))
    return sorted(rows, key=lambda row: -row[1])


def print_report(data: dict, console: Console) -> None:
    """One table per case: median, IQR, CV, ratios; the winner marked with a star. Then the
    warnings, the skipped variants by cause, and what the run says about this machine."""
    meta = data["metadata"]
    console.print(f"[bold]heapalias bench[/bold] {data['config']['suite']} suite, "
                  f"{data['config']['size'] >> 20} MiB heaps, {data['config']['repeat']} rounds "
                  f"on {meta['kernel']}, {meta['cpu']} x{meta['cpus']}, THP "
                  f"{meta['thp_enabled']}/{meta['thp_shmem_enabled']}")
    console.print(limits_line(data["limits"]))
    by_case: dict[str, list[dict]] = defaultdict(list)
    for result in data["results"]:
        by_case[result["case"]].append(result)
    for case, results in by_case.items():
        unit = results[0]["unit"]
        better = "higher" if results[0]["higher_is_better"] else "lower"
        ratios = ratio_columns(results)
        table = Table(title=f"{case} ({unit}, {better} is better)", title_justify="left")
        for column in ("variant", "median", "IQR", "CV", *(f"x {name}" for name in ratios),
                       "x ref", "faults/run", "pages"):
            table.add_column(column, justify="right" if column != "variant" else "left")
        best = winners(results)
        for i, r in enumerate(results):
            s = r["summary"]
            flag = " [yellow]![/yellow]" if s["cv"] >= CV_WARNING else ""
            cv = f"{s['cv'] * 100:.0f}%{flag}"
            row = [("* " if i in best else "  ") + r["label"], _fmt(s["median"]),
                   _fmt(s["iqr"]), cv]
            for name in ratios:
                if name == r["limit"] and r["ratio_to_limit"] is not None:
                    suspect = r["ratio_to_limit"] > SUSPECT_RATIO
                    row.append(_fmt(r["ratio_to_limit"])
                               + (" [yellow]?[/yellow]" if suspect else ""))
                else:
                    row.append(_fmt(r.get("beside", {}).get(name)))
            row += [_fmt(r["ratio_to_reference"]), f"{r['minor_faults']:.0f}", r["obtained"]]
            table.add_row(*row)
        console.print(table)
    console.print("* marks the winner among variants sharing a reference; x ref is the speed "
                  "against that reference (above 1 is faster).")
    noisy = [f"{r['case']} {r['label']}" for r in data["results"]
             if r["summary"]["cv"] >= CV_WARNING]
    if noisy:
        console.print(f"[yellow]warning:[/yellow] CV >= 10% for {len(noisy)} results "
                      f"({', '.join(noisy[:4])}{', ...' if len(noisy) > 4 else ''}): "
                      "rerun with more --repeat, or --pin a CPU")
    beaten = suspects(data["results"])
    if beaten:
        listed = ", ".join(f"{r['case']} {r['label']} {r['ratio_to_limit']:.2f}x {r['limit']}"
                           for r in beaten)
        console.print(f"[yellow]suspect limit:[/yellow] {len(beaten)} results beat their limit "
                      f"by more than {SUSPECT_RATIO - 1:.0%} ({listed}): that limit is not the "
                      "fastest way to do the work on this machine (marked ?)", soft_wrap=True)
    if data["skipped"]:
        console.print(f"Skipped {len(data['skipped'])} variants, by cause:")
        for reason, count, where in skipped_by_cause(data["skipped"]):
            console.print(f"  {count} x {reason}: {where}", soft_wrap=True, markup=False)
    told = conclusions(data["results"])
    if told:
        console.print("[bold]What this machine says[/bold] (IQRs that overlap count as no "
                      "measurable difference):")
        for line in told:
            console.print(f"  - {line}", soft_wrap=True, markup=False)


def save(data: dict, path: str | Path) -> None:
    """Write a report as JSON; a path that cannot be written is a HeapAliasError."""
    try:
        Path(path).write_text(json.dumps(data, indent=1))
    except OSError as exc:
        raise HeapAliasError(f"cannot write the report to {path}: {exc.strerror}",
                             errno=exc.errno, remedy="choose a writable --json path") from exc


#: What compare needs of each result, and the type each field must have.
RESULT_FIELDS = {"case": str, "label": str, "unit": str, "higher_is_better": bool, "values": list}


def _report_problem(data: object) -> str:
    """What makes ``data`` unusable as a bench report ('' if nothing)."""
    if not isinstance(data, dict) or not {"metadata", "results"} <= data.keys():
        return "it is not an object with metadata and results"
    if not isinstance(data["results"], list):
        return "results is not a list"
    for i, result in enumerate(data["results"]):
        if not isinstance(result, dict):
            return f"results[{i}] is not an object"
        for name, kind in RESULT_FIELDS.items():
            if not isinstance(result.get(name), kind):
                return f"results[{i}].{name} is missing or not a {kind.__name__}"
        values = result["values"]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 and math.isfinite(v) and v > 0 for v in values):
            return f"results[{i}].values is not a non-empty list of positive numbers"
    return ""


def load(path: str | Path) -> dict:
    """A report written by ``heapalias bench --json``; InvalidArgument if it is not one."""
    remedy = "pass files written by `heapalias bench --json`"
    try:
        data = json.loads(Path(path).read_bytes().decode())
    except (OSError, ValueError) as exc:  # ValueError: bad UTF-8 or bad JSON
        raise InvalidArgument(f"cannot read a report from {path}: {exc}", remedy=remedy) from exc
    problem = _report_problem(data)
    if problem:
        raise InvalidArgument(f"{path} is not a heapalias bench report: {problem}", remedy=remedy)
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
                     "a": change.median_a, "b": change.median_b,
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


# ---- the heap-size sweep (bench/sweep.py) ----

def _ms(value: dict | None) -> str:
    """``median ±iqr/2`` in ms, or a dash."""
    if value is None:
        return "-"
    return f"{value['median']:.0f} ±{value['iqr'] / 2:.0f}" if value["median"] >= 100 else \
        f"{value['median']:.1f} ±{value['iqr'] / 2:.1f}"


def load_sweep(path: str | Path) -> dict:
    """A sweep saved with ``gcsweep --json``; InvalidArgument if the file is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read a sweep from {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("minimum"), dict):
        raise InvalidArgument(f"{path} is not a heapalias gcsweep report (no 'minimum' field)",
                              remedy="pass a file written by `heapalias gcsweep --json`")
    return data


def sweep_rows(data: dict, program: str) -> list[dict]:
    """One row per (multiple, collector) of a sweep's program, no-collection rows last: the
    heap, and the median and IQR of every part in both phases."""
    rows = []
    for collector, entries in data["samples"][program].items():
        for key, entry in entries.items():
            rows.append({"collector": collector, "multiple": key, "heap_bytes": entry["heap_bytes"],
                         "rounds": len(entry["steady"]),
                         "collections": [r["collections"] for r in entry["steady"]],
                         "full": [r["full"] for r in entry["steady"]],
                         **{f"{phase}_{part}": summary(entry, phase, part)
                            for phase in ("steady", "cold") for part in PARTS}})
    order = {name: i for i, name in enumerate(data["collectors"])}
    return sorted(rows, key=lambda r: (r["multiple"] == "no-gc",
                                       float(r["multiple"]) if r["multiple"] != "no-gc" else 0,
                                       order.get(r["collector"], len(order))))


def print_sweep(data: dict, console: Console) -> None:
    """One table per program: for each heap multiple and collector, the steady state's total,
    mutator and GC time (median ± half the IQR over rounds), the collections, and the cold
    round's total; the no-collection runs last."""
    meta = data.get("metadata", {})
    warmup = data["warmup"]
    if isinstance(warmup, dict):  # per program
        warmup = ", ".join(f"{n} ({label})" for label, n in warmup.items())
    console.print(f"[bold]heapalias gcsweep[/bold]: {data['rounds']} interleaved rounds, each "
                  f"sample a fresh process that runs {warmup} warm-up rounds (cold = its "
                  f"first, steady = its last); CPU {data['cpu']}; load average at the start "
                  f"{', '.join(f'{x:.2f}' for x in meta.get('load_average', ()))}")
    for program in data["programs"]:
        minimum = ", ".join(f"{name} {format_size(m[0]) if m[0] % (1 << 20) == 0 else m[0]}"
                            for name, m in data["minimum"][program].items())
        table = Table(title=f"{program}: ms, median ± IQR/2 (minimum heaps: {minimum})",
                      title_justify="left")
        for column in ("x min", "collector", "heap", "total", "mutator", "GC", "collections",
                       "cold total"):
            table.add_column(column, justify="left" if column == "collector" else "right")
        for row in sweep_rows(data, program):
            counted = "-"
            if row["collections"]:
                collections, full = (sorted(row[k])[len(row[k]) // 2]
                                     for k in ("collections", "full"))
                counted = f"{collections}" + (f" ({full} full)" if full else "")
            table.add_row(row["multiple"], row["collector"], format_size(row["heap_bytes"]),
                          _ms(row["steady_total"]), _ms(row["steady_mutator"]),
                          _ms(row["steady_gc"]), counted, _ms(row["cold_total"]))
        console.print(table)
    for note in data.get("notes", []):
        console.print(f"note: {note}", soft_wrap=True, markup=False)
