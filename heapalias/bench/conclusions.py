"""What a run says about this machine: a few sentences computed from its results.

Each conclusion names its figure and the case and variants it comes from, and
is drawn only when those variants ran. Two variants whose interquartile ranges
overlap are reported as "no measurable difference", whatever their medians.
Nothing here is written in advance: every verdict follows from the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..backing import format_size, parse_size
from ..system import PAGE_SIZES


@dataclass(frozen=True)
class Versus:
    """Variant A against variant B of one case."""

    a: dict
    b: dict

    @property
    def speedup(self) -> float:
        """How many times faster A is than B (below 1: slower)."""
        ma, mb = self.a["summary"]["median"], self.b["summary"]["median"]
        return ma / mb if self.a["higher_is_better"] else mb / ma

    @property
    def measurable(self) -> bool:
        """False when the two interquartile ranges overlap: the difference is noise."""
        sa, sb = self.a["summary"], self.b["summary"]
        return sa["q3"] < sb["q1"] or sb["q3"] < sa["q1"]

    def figures(self) -> str:
        """'13.2 against 1.49 GB/s'."""
        return (f"{_num(self.a['summary']['median'])} against "
                f"{_num(self.b['summary']['median'])} {self.a['unit']}")

    def source(self) -> str:
        """'(populate memfd/2m populate vs memfd/4k populate)'."""
        return f"({self.a['case']} {self.a['label']} vs {self.b['label']})"


def _num(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _times(factor: float) -> str:
    return f"{factor:.2f}x" if factor < 10 else f"{factor:.0f}x"


def _find(results: list[dict], case: str, label: str) -> dict | None:
    return next((r for r in results if r["case"] == case and r["label"] == label), None)


def _pair(results: list[dict], case: str, label_a: str, label_b: str) -> Versus | None:
    a, b = _find(results, case, label_a), _find(results, case, label_b)
    return Versus(a, b) if a and b else None


def _gain(v: Versus, what: str) -> str:
    """'<what> 8.5x faster ...' or 'no measurable difference ...', with figures and source."""
    if not v.measurable:
        return f"{what}: no measurable difference ({v.figures()}) {v.source()}"
    if v.speedup >= 1:
        return f"{what}: {_times(v.speedup)} faster ({v.figures()}) {v.source()}"
    return f"{what}: {_times(1 / v.speedup)} slower ({v.figures()}) {v.source()}"


def aliasing(results: list[dict]) -> str | None:
    """Does a second view cost anything? alias_rw through two views against one."""
    single = next((r for r in results if r["case"] == "alias_rw"
                   and r["variant"]["strategy"] == "single"), None)
    if single is None:
        return None
    two = next((r for strategy in ("memfd", "mremap")
                for r in results if r["case"] == "alias_rw" and r["variant"] == {
                    **single["variant"], "strategy": strategy}), None)
    if two is None:
        return None
    v = Versus(two, single)
    if not v.measurable:
        return (f"Aliasing: no measurable difference between writing and reading through two "
                f"views and through one ({v.figures()}) {v.source()}")
    if v.speedup >= 1:
        return (f"Aliasing costs nothing: two views ran {_times(v.speedup)} as fast as one "
                f"({v.figures()}) {v.source()}")
    return (f"Aliasing costs {1 - v.speedup:.0%}: two views ran at {_times(v.speedup)} the "
            f"speed of one ({v.figures()}) {v.source()}")


def _hugetlb_gain(case: str, detail: str, what: str) -> Callable[[list[dict]], str | None]:
    suffix = f" {detail}" if detail else ""

    def conclude(results: list[dict]) -> str | None:
        v = _pair(results, case, f"memfd/2m{suffix}", f"memfd/4k{suffix}")
        return _gain(v, f"2 MiB hugetlb pages against 4 KiB ones, {what}") if v else None

    conclude.__doc__ = f"hugetlb's gain for {what} ({case})."
    return conclude


def _size_text(label: str) -> str:
    return f"{label[:-1]} {label[-1]}iB"


def crossovers(results: list[dict]) -> list[str]:
    """Where moving a range by remapping starts to beat copying it, per page size."""
    lines = []
    pages_seen = dict.fromkeys(r["variant"]["pages"] for r in results if r["case"] == "relocation")
    for pages in pages_seen:
        copy_wins, remap_wins, ties = [], [], []
        copies = sorted((r for r in results if r["case"] == "relocation"
                         and r["variant"]["pages"] == pages and r["variant"]["strategy"] == "copy"),
                        key=lambda r: parse_size(r["variant"]["detail"]))
        for copy in copies:
            size = copy["variant"]["detail"]
            remap = _find(results, "relocation", f"memfd/{pages}/remap {size}")
            if remap is None:
                continue
            v = Versus(remap, copy)
            (ties if not v.measurable else remap_wins if v.speedup > 1 else copy_wins).append(
                (size, v.speedup))
        if not (copy_wins or remap_wins or ties):
            continue
        parts = []
        if remap_wins:
            first, last = remap_wins[0], remap_wins[-1]
            parts.append(f"remapping beats memcpy from {_size_text(first[0])} "
                         f"({_times(first[1])}) to {_size_text(last[0])} ({_times(last[1])})"
                         if first != last else
                         f"remapping beats memcpy at {_size_text(first[0])} ({_times(first[1])})")
        if copy_wins:
            sizes = ", ".join(_size_text(s) for s, _ in copy_wins)
            parts.append(f"memcpy wins at {sizes}")
        if ties:
            parts.append("no measurable difference at " + ", ".join(_size_text(s)
                                                                     for s, _ in ties))
        lines.append(f"Relocation on {format_size(PAGE_SIZES[pages])} pages: {'; '.join(parts)} "
                     f"(relocation memfd/{pages} remap vs copy)")
    return lines


def encodings(results: list[dict]) -> list[str]:
    """What colored and masked references cost against offset ones, per page size."""
    lines = []
    offsets = [r for r in results
               if r["case"] == "encodings" and r["variant"]["detail"] == "offset"]
    for offset in offsets:
        stem = offset["label"].removesuffix(" offset")
        costs = []
        for encoding in ("colored", "masked"):
            other = _find(results, "encodings", f"{stem} {encoding}")
            if other is None:
                continue
            v = Versus(other, offset)
            if not v.measurable:
                costs.append(f"{encoding}: no measurable difference")
            else:
                change = 1 / v.speedup - 1  # time per object against offset
                costs.append(f"{encoding} {change:+.0%} ({_num(other['summary']['median'])})")
        if costs:
            lines.append(f"Reference encodings on {stem}, time per object against offset "
                         f"({_num(offset['summary']['median'])} {offset['unit']}): "
                         f"{', '.join(costs)} (encodings {stem})")
    return lines


def scaling(results: list[dict]) -> list[str]:
    """What each loop gains on every core against one thread, per page size."""
    lines = []
    for one in (r for r in results
                if r["case"] == "parallel" and r["variant"]["detail"] == "1 thread"):
        stem = one["label"].removesuffix(" 1 thread")
        most = max((r for r in results if r["case"] == "parallel"
                    and r["label"].startswith(f"{stem} ")),
                   key=lambda r: int(r["variant"]["detail"].split()[0]))
        if most is not one:
            lines.append(_gain(Versus(most, one), f"{one['variant']['strategy']} on "
                               f"{most['variant']['detail']} against 1"))
    return lines


def floors(results: list[dict]) -> list[str]:
    """How far each trace is from reading the heap lines it must at the mlp limit: one
    sentence per case, its nearest and farthest variants."""
    by_case: dict[str, list[dict]] = {}
    for r in results:
        if r.get("beside", {}).get("floor") and r.get("floor_lines"):
            by_case.setdefault(r["case"], []).append(r)
    lines = []
    for case, found in by_case.items():
        found.sort(key=lambda r: -r["beside"]["floor"])
        near, far = found[0], found[-1]
        lines_per_object = near["floor_lines"]
        if near is far:
            floor = near["summary"]["median"] * near["beside"]["floor"]
            how = (f"{case} on {near['label']}: {_times(1 / near['beside']['floor'])} the time"
                   f" of the {lines_per_object:.2f} heap lines per object it must read, each at "
                   f"the mlp limit ({_num(near['summary']['median'])} against {_num(floor)} "
                   f"{near['unit']}) ({case} {near['label']})")
        else:
            how = (f"{case}: {_times(1 / near['beside']['floor'])} ({near['label']}) to "
                   f"{_times(1 / far['beside']['floor'])} ({far['label']}) the time of the "
                   f"{lines_per_object:.2f} heap lines per object it must read, each at the "
                   f"mlp limit of its pages ({case}, {len(found)} variants)")
        lines.append(how)
    return lines


#: Each conclusion, in the order they are told; each returns nothing when its case did not run.
RULES: list[Callable[[list[dict]], str | list[str] | None]] = [
    aliasing,
    _hugetlb_gain("populate", "populate", "populating a heap"),
    _hugetlb_gain("mark", "", "marking a graph"),
    crossovers,
    encodings,
    scaling,
    floors,
]


def conclusions(results: list[dict]) -> list[str]:
    """Every conclusion the results support, one sentence each."""
    lines: list[str] = []
    for rule in RULES:
        found = rule(results)
        if isinstance(found, str):
            lines.append(found)
        elif found:
            lines.extend(found)
    return lines
