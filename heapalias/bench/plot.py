"""Plots of a benchmark report (matplotlib, from the ``plot`` extra)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..errors import HeapAliasError


def plot_report(data: dict, path: str | Path) -> None:
    """Grouped bars of speed against each case's reference, and the remap/copy curve."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise HeapAliasError("--plot needs matplotlib",
                             remedy="pip install 'heapalias[plot]'") from exc
    results = [r for r in data["results"] if r["case"] != "relocation"]
    moves = [r for r in data["results"] if r["case"] == "relocation"]
    cases = list(dict.fromkeys(r["case"] for r in results))
    fig, axes = plt.subplots(2 if moves else 1, 1, figsize=(13, 9 if moves else 5.5),
                             squeeze=False)
    bars = axes[0][0]
    x = 0.0
    ticks, names = [], []
    colors = plt.get_cmap("tab20")
    for case in cases:
        members = [r for r in results if r["case"] == case]
        width = 0.8 / max(len(members), 1)
        for k, r in enumerate(members):
            bars.bar(x + k * width, r["ratio_to_reference"], width,
                     color=colors(k % 20), edgecolor="black", linewidth=0.3)
            bars.text(x + k * width, r["ratio_to_reference"], r["label"], rotation=90,
                      fontsize=6, ha="center", va="bottom")
        ticks.append(x + 0.4 - width / 2)
        names.append(case)
        x += 1.2
    bars.axhline(1.0, color="grey", linewidth=0.8)
    bars.set_xticks(ticks, names, rotation=20)
    bars.set_ylabel("speed relative to the case's reference variant (x)")
    meta = data["metadata"]
    bars.set_title(f"heapalias bench ({data['config']['suite']}, {data['config']['size'] >> 20} MiB"
                   f" heaps) on {meta['kernel']}, {meta['cpu']} x{meta['cpus']}", fontsize=10)
    if moves:
        curve = axes[1][0]
        series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        for r in moves:
            size = r["variant"]["detail"]
            nbytes = int(size[:-1]) << (20 if size.endswith("M") else 10)
            series[(r["variant"]["pages"], r["variant"]["strategy"])].append(
                (nbytes, r["summary"]["median"]))
        for (pages, method), points in sorted(series.items()):
            points.sort()
            style = "-" if method == "copy" else "--"
            curve.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                       linestyle=style, label=f"{method}, {pages} pages")
        curve.set_xscale("log", base=2)
        curve.set_yscale("log")
        curve.set_xlabel("bytes relocated")
        curve.set_ylabel("time per relocation (us, median)")
        curve.set_title("Relocation: memcpy vs remapping pages (where the lines cross, remap wins)",
                        fontsize=10)
        curve.legend(fontsize=8)
        curve.grid(True, which="both", linewidth=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(data: dict, path: str | Path) -> None:
    """The figure of GC papers: time against heap size (as a multiple of each collector's
    minimum heap), one line per collector, the steady state's total time (left) and GC time
    (right) with their IQRs, one row per program; dashed: the no-collection runs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise HeapAliasError("--plot needs matplotlib",
                             remedy="pip install 'heapalias[plot]'") from exc
    from .report import sweep_rows

    programs = data["programs"]
    fig, axes = plt.subplots(len(programs), 2, figsize=(12, 4.2 * len(programs)), squeeze=False)
    colors = plt.get_cmap("tab10")
    for row, program in enumerate(programs):
        rows = sweep_rows(data, program)
        names = list(dict.fromkeys(r["collector"] for r in rows if r["multiple"] != "no-gc"))
        for column, part in enumerate(("total", "gc")):
            ax = axes[row][column]
            for k, name in enumerate(names):
                mine = [r for r in rows if r["collector"] == name and r["multiple"] != "no-gc"
                        and r[f"steady_{part}"]]
                x = [float(r["multiple"]) for r in mine]
                y = [r[f"steady_{part}"]["median"] for r in mine]
                err = [r[f"steady_{part}"]["iqr"] / 2 for r in mine]
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=name, color=colors(k))
            for r in rows:
                if r["multiple"] == "no-gc" and r["steady_total"] and part == "total":
                    ax.axhline(r["steady_total"]["median"], linestyle="--", linewidth=1,
                               color="grey")
                    ax.annotate(f"no collection ({r['collector']})",
                                (ax.get_xlim()[0], r["steady_total"]["median"]), fontsize=7,
                                va="bottom", color="grey")
            ax.set_xlabel("heap size / the collector's minimum heap")
            ax.set_ylabel(f"{'total' if part == 'total' else 'GC'} time, ms (median, IQR)")
            ax.set_title(f"{program}: {'total' if part == 'total' else 'GC'} time")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise HeapAliasError(f"cannot write the plot to {path}: {exc}") from exc
    finally:
        plt.close(fig)
