"""Family ``selftest``: cases that misbehave on purpose, so the tests can check that the
harness reports each kind of finding with its seed (a fuzzer that reports nothing must be
one that found nothing).

Seed ``k`` does ``PLAN[k % len(PLAN)]``.
"""

from __future__ import annotations

import os
import signal
import time

from .harness import Case

PLAN = ("nothing", "untyped", "crash", "leak", "hang", "nothing")


def run_case(case: Case) -> None:
    what = PLAN[case.seed % len(PLAN)]
    case.step(what)
    if what == "untyped":
        case.call("int", int, "not a number")
    elif what == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif what == "leak":
        os.open("/dev/null", os.O_RDONLY)
    elif what == "hang":
        time.sleep(3600)


def warm_up() -> None:
    """Nothing to settle."""
