"""The child side of every family: seeded cases, the call log, typed-error checks, leak checks.

A batch of cases runs in one child process. Everything a case does is written to
fd 1 as it happens, one unbuffered line at a time, so a parent reading the pipe
still has the whole story when the child dies of a signal:

    case FAMILY SEED     a case starts
    step TEXT            a call it is about to make (``peer: ...`` from a forked peer)
    finding JSON         something no input may cause: {"kind", "where", "detail", "side"}
    done SEED            the case ended

A case that runs longer than its timeout gets SIGALRM: faulthandler prints every
thread's stack, then the process dies of the signal, which the parent reports
as a hang.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import json
import os
import random
import re
import signal
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

import heapalias as ha
from heapalias import HeapAliasError, InvalidArgument, View, collectors, workloads

#: Seconds one case may run before it counts as a hang.
CASE_TIMEOUT = float(os.environ.get("HEAPALIAS_FUZZ_CASE_TIMEOUT", "10"))
#: The longest line a step may write (longer ones are cut), below PIPE_BUF so it stays atomic.
MAX_LINE = 1500
#: An argument's repr in the log is cut at this many characters.
MAX_REPR = 80
#: How the log marks a step that replaces an attribute the loops trust, so that the runner
#: can tell a crash after one from a crash of the API used as documented.
TAMPER_MARK = "tamper: "
#: How the log marks a step of a forked peer (a case's ``side``).
PEER = "peer: "


@dataclass
class Outcome:
    """What one public call did: its value, or the exception it raised."""

    value: object = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def where_of(fn: Callable) -> str:
    """``Heap.alias``, ``collectors.mark``: how findings name the call that misbehaved."""
    qualname = getattr(fn, "__qualname__", repr(fn))
    if "." in qualname:
        return qualname
    module = getattr(fn, "__module__", None) or ""
    return f"{module.rpartition('.')[2]}.{qualname}" if module else qualname


def plain(value: object) -> object:
    """``value`` with numpy integers (also inside tuples, lists, dicts) turned into ints."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (tuple, list)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    return value


def has_numpy_int(value: object) -> bool:
    """True if ``value`` is, or holds in a tuple, list or dict, a numpy integer."""
    if isinstance(value, np.integer):
        return True
    if isinstance(value, (tuple, list)):
        return any(has_numpy_int(v) for v in value)
    if isinstance(value, dict):
        return any(has_numpy_int(k) or has_numpy_int(v) for k, v in value.items())
    return False


class Case:
    """One seeded case: its random stream, its call log and its findings.

    ``side`` is ``""`` in the process the parent started and ``"peer"`` in a process
    the case forked; the peer writes to the same pipe.
    """

    def __init__(self, family: str, seed: int, side: str = "") -> None:
        self.family = family
        self.seed = seed
        self.side = side
        self.rng = random.Random(f"{family}:{seed}")
        self.names: dict[int, str] = {}  # id(object) -> its name in the log
        self.ranges: list[tuple[int, int]] = []  # (address, size) of every view it made
        self.findings = 0
        self.tampered = False  # set once the case replaced an attribute the loops trust

    def track(self, address: int, size: int) -> None:
        """Remember a view's range: after the case, nothing may be mapped there."""
        self.ranges.append((address, size))

    def write(self, tag: str, text: str) -> None:
        line = f"{tag} {text}".replace("\n", "\\n")[:MAX_LINE]
        os.write(1, (line + "\n").encode("utf-8", "backslashreplace"))

    def step(self, text: str) -> None:
        """Log a call before it is made."""
        self.write("step", f"{PEER}{text}" if self.side else text)

    def finding(self, kind: str, where: str, detail: str, side: str | None = None) -> None:
        """Report something no input may cause; the case carries on."""
        self.findings += 1
        side = self.side if side is None else side
        self.write("finding", json.dumps({"kind": kind, "where": where, "detail": detail[:600],
                                          "side": side, "tampered": self.tampered}))

    def render(self, value: object) -> str:
        """A short, stable description of an argument for the log."""
        name = self.names.get(id(value))
        if name is not None:
            return name
        if isinstance(value, np.ndarray):
            items = ", ".join(str(v) for v in value.ravel()[:4].tolist())
            more = ", ..." if value.size > 4 else ""
            return f"np.array([{items}{more}], {value.dtype}, shape={value.shape})"
        if isinstance(value, np.generic):
            return f"np.{type(value).__name__}({value.item()!r})"
        if isinstance(value, View):
            return f"<{value.role} view of {value.size} bytes>"
        text = repr(value)
        text = re.sub(r" at 0x[0-9a-f]+", "", text)
        return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."

    def call(self, label: str, fn: Callable, *args: object, where: str | None = None,
             **kwargs: object) -> Outcome:
        """Make one public call: a HeapAliasError is a refusal, any other exception a finding.

        A refusal of numpy integers is retried with plain ints; when that works, the
        refusal itself is the finding (every int parameter must take numpy integers).
        Only an InvalidArgument is such a refusal: a loop that failed on the heap
        (HeapCorruption, SpaceFull) changed it, so a retry would run on another heap.
        """
        where = where or where_of(fn)
        shown = [self.render(a) for a in args]
        shown += [f"{k}={self.render(v)}" for k, v in kwargs.items()]
        self.step(f"{label}({', '.join(shown)})")
        outcome = self.attempt(fn, args, kwargs, where)
        if isinstance(outcome.error, InvalidArgument) and has_numpy_int((args, kwargs)):
            retry = self.attempt(fn, plain(args), plain(kwargs), where, quiet=True)
            if retry.ok:
                self.finding("numpy-int-refused", where,
                             f"refused numpy integers ({outcome.error}) but took the same ints")
                return retry
        return outcome

    def attempt(self, fn: Callable, args, kwargs, where: str, quiet: bool = False) -> Outcome:
        try:
            return Outcome(fn(*args, **kwargs))
        except HeapAliasError as exc:
            if not quiet:
                self.step(f"  -> {type(exc).__name__}: {str(exc)[:100]}")
            return Outcome(error=exc)
        except Exception as exc:
            self.finding("untyped", where, f"{type(exc).__name__}: {exc}")
            return Outcome(error=exc)

    def expect(self, condition: bool, kind: str, where: str, detail: str) -> None:
        """A finding unless ``condition`` holds (an oracle on a call that succeeded)."""
        if not condition:
            self.finding(kind, where, detail)


# ---- what a case may not leave behind ----

def open_fds() -> dict[int, str]:
    """Open fd -> what it points to."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd listdir itself used is gone
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return fds


@dataclass
class Footprint:
    """The fds and the heap-like mappings of this process at one moment.

    Heap memory is a shared mapping (memfd, shared anonymous, hugetlb); reserved
    address space is a private PROT_NONE mapping. Private heaps are found by their
    THP advice (VmFlags ``nh``/``hg``) over the ranges a case registered.
    """

    fds: dict[int, str]
    shared: list[str]
    reserved: list[str]
    private: list[str] = field(default_factory=list)

    @classmethod
    def take(cls, ranges: Iterable[tuple[int, int]] = ()) -> Footprint:
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
        shared, reserved, exact = [], [], []
        wanted = set(ranges)
        for line in lines:
            fields = line.split()
            perms = fields[1]
            if perms[3] == "s":
                shared.append(line)
            elif perms == "---p" and len(fields) == 5:
                reserved.append(line)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if perms[3] == "p" and (start, end - start) in wanted:
                exact.append(start)
        return cls(open_fds(), shared, reserved, _advised(exact))

    def growth(self, later: Footprint) -> list[str]:
        """What ``later`` holds that this footprint did not: one line per kind."""
        grown = []
        new_fds = {fd: target for fd, target in later.fds.items() if self.fds.get(fd) != target}
        if new_fds:
            grown.append(f"{len(new_fds)} fds: {sorted(new_fds.items())[:6]}")
        for what in ("shared", "reserved"):
            before, after = getattr(self, what), getattr(later, what)
            if len(after) > len(before):
                extra = [line for line in after if line not in before][:3]
                grown.append(f"{len(after) - len(before)} {what} mappings: {extra}")
        if later.private:
            grown.append(f"{len(later.private)} private heap mappings: {later.private[:3]}")
        return grown


def _advised(starts: list[int]) -> list[str]:
    """Of the mappings starting at ``starts``, the ones carrying heapalias's THP advice."""
    if not starts:
        return []
    found, current = [], None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):
                current = line.strip() if int(head.split("-")[0], 16) in starts else None
            elif current and head == "VmFlags:" and {"nh", "hg", "ht"} & set(line.split()[1:]):
                found.append(current)
    return found


# ---- the batch loop ----

def arm_hang_detector() -> None:
    """SIGALRM prints every thread's stack, then kills the process with that signal."""
    faulthandler.enable()
    faulthandler.register(signal.SIGALRM, all_threads=True, chain=True)


def warm_thread_stacks() -> None:
    """Run a parallel loop on every thread the default team has, before leaks are counted:
    glibc keeps a joined thread's stack (and its PROT_NONE guard page) for the next thread,
    a bounded cache that is not a leak."""
    with ha.Heap("1M") as heap:
        semi = ha.SemiSpace.halves(heap)
        graph = workloads.random_graph(semi.objects, 100, space="from")
        collectors.mark(semi.objects, graph.roots, threads=max(collectors.default_threads(), 2))


def run_batch(family: str, first: int, last: int, run_case: Callable[[Case], None],
              warm_up: Callable[[], None]) -> None:
    """Run cases ``first..last`` (inclusive) of a family; check leaks after each one."""
    arm_hang_detector()
    warm_up()
    warm_thread_stacks()
    gc.collect()
    baseline = Footprint.take()
    for seed in range(first, last + 1):
        case = Case(family, seed)
        case.write("case", f"{family} {seed}")
        signal.alarm(max(1, round(CASE_TIMEOUT)))
        ranges = run_isolated_case(case, run_case)
        after = Footprint.take(ranges)
        if baseline.growth(after):
            gc.collect()
            after = Footprint.take(ranges)
            grown = baseline.growth(after)
            if grown:
                case.finding("leak", family, "; ".join(grown))
        signal.alarm(0)
        baseline = Footprint(after.fds, after.shared, after.reserved)
        case.write("done", str(seed))


def run_isolated_case(case: Case, run_case: Callable[[Case], None]) -> list[tuple[int, int]]:
    """Run one case; an exception it lets escape is a finding. Returns the ranges it made."""
    try:
        run_case(case)
    except Exception as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1]
        case.finding("untyped", f"case ({last.name})",
                     f"{type(exc).__name__}: {exc} at {last.filename}:{last.lineno}")
    return case.ranges
