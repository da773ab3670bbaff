"""A seeded adversary drives the public API; it must find no signal, hang, leak or untyped error.

Three families of cases (see ``tests/adversary``), each run in batches in child
processes, so a crash or a hang is reported with its seed and the calls that led
to it instead of ending pytest:

- ``api``: random public calls with bad values, in random orders;
- ``corruption``: the GC loops on a heap a second thread rewrites meanwhile;
- ``peer``: a forked peer misbehaving on a shared heap, or sending bogus handles.

``HEAPALIAS_FUZZ_SEED`` moves the seeds (cases ``SEED .. SEED+N-1`` of each family),
``HEAPALIAS_FUZZ_SCALE`` multiplies the number of cases, and
``HEAPALIAS_FUZZ_CASE_TIMEOUT`` is the seconds after which a case counts as hung.
A failure lists each distinct finding once, with a seed and the command that replays it.
"""

from __future__ import annotations

import os

import pytest

from adversary.runner import run_family, summary

SEED = int(os.environ.get("HEAPALIAS_FUZZ_SEED", "0"))
SCALE = float(os.environ.get("HEAPALIAS_FUZZ_SCALE", "1"))
CASE_TIMEOUT = float(os.environ.get("HEAPALIAS_FUZZ_CASE_TIMEOUT", "10"))
#: family -> (cases, cases per child process). Two children run at once.
CAMPAIGN = {"api": (1000, 125), "corruption": (500, 125), "peer": (500, 125)}


@pytest.mark.parametrize("family", list(CAMPAIGN))
def test_the_adversary_finds_nothing(family: str) -> None:
    cases, batch = CAMPAIGN[family]
    cases = max(1, round(cases * SCALE))
    ended, findings = run_family(family, SEED, cases, batch, CASE_TIMEOUT)
    assert not findings, summary(findings)
    assert ended == cases


def test_the_runner_reports_each_kind_of_finding_with_its_seed() -> None:
    # selftest case k: nothing, an untyped error, SIGSEGV, a leaked fd, a hang, nothing.
    ended, findings = run_family("selftest", 0, 6, 6, case_timeout=1, jobs=1)
    reported = sorted((f.seed, f.kind) for f in findings)
    assert reported == [(1, "untyped"), (2, "signal"), (3, "leak"), (4, "hang")]
    assert ended == 4  # the two that died were not ended, and the cases after them still ran
    crash = next(f for f in findings if f.kind == "signal")
    assert "SIGSEGV" in crash.detail and crash.trace == ["crash"]
    assert "python -m adversary selftest 2" in crash.replay()
