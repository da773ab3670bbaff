"""The parent side: run a family's cases in batches of child processes and collect findings.

A child that dies (a signal, or SIGALRM for a hang) is reported with the case
it was running and every step that case had logged; a new child then carries
on from the next case, so one crash hides nothing behind it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .harness import PEER, TAMPER_MARK

TESTS_DIR = Path(__file__).resolve().parent.parent
#: Spare seconds a batch gets on top of its cases' timeouts before the parent kills it.
BATCH_SLACK = 60


@dataclass
class Finding:
    """One thing a case must not do, with what it takes to replay it."""

    family: str
    seed: int
    kind: str
    where: str
    detail: str
    side: str = ""
    tampered: bool = False  # the case had replaced an attribute the loops trust
    trace: list[str] = field(default_factory=list)

    @property
    def signature(self) -> tuple[str, str, str, str]:
        """What makes two findings the same defect: kind, call, side, and the error type."""
        error = self.detail.split(":", 1)[0] if self.kind == "untyped" else ""
        return self.kind, self.where, self.side, error

    def replay(self) -> str:
        return f"cd {TESTS_DIR} && python -m adversary {self.family} {self.seed}"

    def describe(self, steps: int = 12) -> str:
        side = f" in the {self.side}" if self.side else ""
        after = " (after the case replaced an attribute)" if self.tampered else ""
        shown = self.trace[-steps:]
        elided = len(self.trace) - len(shown)
        lines = [f"[{self.kind}] {self.where}{side}{after}: {self.detail}",
                 f"  seed {self.family} {self.seed}; replay: {self.replay()}"]
        if elided:
            lines.append(f"    ... {elided} earlier steps")
        lines += [f"    {step}" for step in shown]
        return "\n".join(lines)


@dataclass
class BatchLog:
    """What a child wrote: findings, and which cases started and ended."""

    family: str
    findings: list[Finding] = field(default_factory=list)
    current: int | None = None  # the case that started and has not ended
    trace: list[str] = field(default_factory=list)
    done: int = 0

    def read(self, output: str) -> None:
        for line in output.splitlines():
            tag, _, rest = line.partition(" ")
            if tag == "case":
                self.current, self.trace = int(rest.split()[1]), []
            elif tag == "step":
                self.trace.append(rest)
            elif tag == "finding":
                finding = Finding(self.family, self.current, trace=list(self.trace),
                                  **json.loads(rest))
                if finding.kind in ("signal", "hang") and finding.side == "peer":
                    finding.where = last_step(self.trace, peer=True) or finding.where
                self.findings.append(finding)
            elif tag == "done":
                self.current = None
                self.done += 1


def last_step(trace: list[str], peer: bool = False) -> str | None:
    """The last step the case's own process logged, or with ``peer`` its forked peer."""
    for step in reversed(trace):
        if step.startswith(PEER) == peer:
            return step.removeprefix(PEER)
    return None


def child_env() -> dict[str, str]:
    """The child imports ``adversary`` from here and heapalias as this process does."""
    env = dict(os.environ)
    paths = [str(TESTS_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    import heapalias  # the checkout or install under test, wherever pytest found it

    paths.append(str(Path(heapalias.__file__).resolve().parent.parent))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


#: A frame in faulthandler's dump: ``  File "/path/heapalias/views.py", line 252 in protect``.
FRAME = re.compile(r'^\s+File "(?P<path>[^"]+)", line (?P<line>\d+) in (?P<name>\S+)')


def thread_stacks(stderr: str) -> list[list[re.Match]]:
    """Each thread's frames in a faulthandler dump, innermost first."""
    stacks: list[list[re.Match]] = []
    for line in stderr.splitlines():
        if line.startswith(("Current thread", "Thread 0x")):
            stacks.append([])
        elif stacks and (frame := FRAME.match(line)):
            stacks[-1].append(frame)
    return stacks


def frame_name(frame: re.Match) -> str:
    return f"{Path(frame['path']).stem}.{frame['name']} (line {frame['line']})"


def culprit(stderr: str) -> str | None:
    """The innermost heapalias frame of any thread in a faulthandler dump, or None.

    With every thread dumped, the one the signal landed on may be a bystander, so each
    thread's innermost frame is looked at, and the first inside the library wins.
    """
    for stack in thread_stacks(stderr):
        if stack and Path(stack[0]["path"]).parent.name == "heapalias":
            return frame_name(stack[0])
    return None


def death(returncode: int, stderr: str) -> tuple[str, str]:
    """(kind, detail) for a child that did not exit cleanly."""
    if returncode == -signal.SIGALRM:  # where every thread was, three frames deep
        where = "; ".join(" < ".join(frame_name(f) for f in stack[:3])
                          for stack in thread_stacks(stderr))
        return "hang", f"still running after the case timeout, in: {where}"
    if returncode < 0:
        return "signal", f"died of {signal.Signals(-returncode).name}"
    tail = " | ".join(stderr.strip().splitlines()[-6:])
    return "exit", f"exited with status {returncode}: {tail}"


def run_batch(family: str, first: int, last: int, case_timeout: float) -> BatchLog:
    """Run cases ``first..last``; restart after each child that dies, from the case after it."""
    log = BatchLog(family)
    env = child_env()
    env["HEAPALIAS_FUZZ_CASE_TIMEOUT"] = str(case_timeout)
    start = first
    while start <= last:
        command = [sys.executable, "-m", "adversary", family, str(start), str(last)]
        timeout = (last - start + 1) * case_timeout + BATCH_SLACK
        try:
            proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/",
                                  timeout=timeout, errors="backslashreplace")
            returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            returncode = -signal.SIGALRM
            stdout, stderr = _text(exc.stdout), _text(exc.stderr) + " (killed by the parent)"
        log.read(stdout)
        if returncode == 0 and log.current is None:
            break
        kind, detail = death(returncode, stderr)
        if log.current is None:  # died outside any case: nothing to skip past
            log.findings.append(Finding(family, start, kind, "child", detail))
            break
        where = culprit(stderr) or last_step(log.trace) or "start"
        tampered = any(step.startswith(TAMPER_MARK) for step in log.trace)
        log.findings.append(Finding(family, log.current, kind, where, detail,
                                    tampered=tampered, trace=list(log.trace)))
        start, log.current = log.current + 1, None
    return log


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "backslashreplace")
    return data or ""


def run_family(family: str, first: int, count: int, batch: int, case_timeout: float,
               jobs: int = 2) -> tuple[int, list[Finding]]:
    """Cases ``first .. first+count-1`` in batches over ``jobs`` children at once.

    Returns how many cases ended and every finding.
    """
    ranges = [(start, min(start + batch, first + count) - 1)
              for start in range(first, first + count, batch)]
    with ThreadPoolExecutor(jobs) as pool:
        logs = list(pool.map(lambda r: run_batch(family, *r, case_timeout), ranges))
    return sum(log.done for log in logs), [f for log in logs for f in log.findings]


def summary(findings: list[Finding]) -> str:
    """One entry per distinct finding (by signature), with its count and first example."""
    groups: dict[tuple, list[Finding]] = {}
    for finding in findings:
        groups.setdefault(finding.signature, []).append(finding)
    parts = [f"{len(findings)} findings, {len(groups)} distinct:"]
    for same in sorted(groups.values(), key=lambda g: (g[0].kind, g[0].where)):
        seeds = sorted({f.seed for f in same})
        example = min(same, key=lambda f: (f.tampered, len(f.trace)))
        parts.append(f"\n{len(same)}x (seeds {seeds[:8]}{' ...' if len(seeds) > 8 else ''}) "
                     + example.describe())
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """``python -m adversary.runner FAMILY FIRST COUNT [BATCH]``: a campaign, summarised."""
    family, first, count = argv[0], int(argv[1]), int(argv[2])
    batch = int(argv[3]) if len(argv) > 3 else 100
    timeout = float(os.environ.get("HEAPALIAS_FUZZ_CASE_TIMEOUT", "10"))
    done, findings = run_family(family, first, count, batch, timeout)
    print(f"{family}: {done} of {count} cases ended")
    print(summary(findings))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
