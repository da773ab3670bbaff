"""Compare the drivers' speed between two builds of heapalias, in interleaved rounds.

Usage::

    python benchmarks/compare_builds.py BEFORE AFTER [--rounds 9] [--runs 4] [--size 256M]
        [--program gcbench] [--program binary-trees:18] [--collector semispace]

BEFORE and AFTER are checkouts, each built in place (``python setup.py build_ext
--inplace``). Each round runs one fresh process per build, alternating which goes
first; a process runs the program ``--runs`` times on one heap. The first run of a
process is reported as *cold* (fresh page tables, cold caches), the others as the
*steady state*. Both sides are summarised by the same statistic, the median over
rounds, for the total, the mutator's and the collector's time separately, and
compared with heapalias.bench.stats.compare (Mann-Whitney and the IQR noise rule).
Used to check that a change to the collector interface costs the mutators nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from heapalias.bench.stats import compare

CHILD = """
import json, sys
import heapalias as ha
from heapalias import collectors, drivers
program, depth, size, runs, collector = sys.argv[1:6]
with ha.Heap(size, name="compare-builds") as heap:
    spaces = collectors.semispace_layout(heap.size)
    try:
        target = collectors.plan_named(collector).over(heap)
    except AttributeError:  # a build from before plans: the drivers took an ObjectHeap
        target = ha.ObjectHeap(heap, spaces=spaces)
    out = []
    for _ in range(int(runs)):
        run = (drivers.gcbench(target) if program == "gcbench"
               else drivers.binary_trees(target, int(depth)))
        out.append({"total": run.total_ns, "mutator": run.mutator_ns, "gc": run.gc_ns,
                    "collections": run.collections, "checks": list(run.checks)})
print(json.dumps({"heapalias": ha.__file__, "runs": out}))
"""

PARTS = ("total", "mutator", "gc")


def run_once(checkout: Path, program: str, size: str, runs: int, collector: str) -> dict:
    """One process of ``checkout``'s build: its runs, and which heapalias it imported."""
    name, _, depth = program.partition(":")
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-c", CHILD, name, depth or "0", size, str(runs),
                           collector], env=env, cwd="/", capture_output=True, text=True,
                          check=True)
    result = json.loads(done.stdout)
    if not result["heapalias"].startswith(str(checkout)):
        raise SystemExit(f"{checkout} imported {result['heapalias']}: build it in place first")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--runs", type=int, default=4, help="runs per process (first is cold)")
    parser.add_argument("--size", default="256M")
    parser.add_argument("--program", action="append",
                        help="gcbench or binary-trees:DEPTH (repeatable)")
    parser.add_argument("--collector", default="semispace")
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the samples")
    args = parser.parse_args()
    programs = args.program or ["gcbench", "binary-trees:18"]
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    # samples[program][side][phase][part] -> list of ms, one per round
    samples: dict = {p: {s: {"cold": {k: [] for k in PARTS}, "steady": {k: [] for k in PARTS}}
                         for s in sides} for p in programs}
    for round_no in range(args.rounds):
        for program in programs:
            order = list(sides) if round_no % 2 == 0 else list(sides)[::-1]
            checks = set()
            for side in order:
                runs = run_once(sides[side], program, args.size, args.runs, args.collector)["runs"]
                checks |= {tuple(run["checks"]) for run in runs}
                for part in PARTS:
                    samples[program][side]["cold"][part].append(runs[0][part] / 1e6)
                    steady = sorted(run[part] / 1e6 for run in runs[1:])
                    samples[program][side]["steady"][part].append(steady[len(steady) // 2])
            if len(checks) != 1:
                raise SystemExit(f"{program}: the builds' check values differ: {checks}")
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    print(f"{'program':18} {'phase':7} {'part':8} {'before ms':>10} {'after ms':>10} "
          f"{'after/before':>13} {'p':>6} {'noise':>6}  verdict")
    for program in programs:
        for phase in ("cold", "steady"):
            for part in PARTS:
                change = compare(samples[program]["before"][phase][part],
                                 samples[program]["after"][phase][part])
                verdict = "differs" if change.significant else "same within noise"
                print(f"{program:18} {phase:7} {part:8} {change.median_a:10.1f} "
                      f"{change.median_b:10.1f} {change.ratio:13.3f} {change.p_value:6.3f} "
                      f"{change.noise:6.3f}  {verdict}")
    if args.json_path:
        args.json_path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                              "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
