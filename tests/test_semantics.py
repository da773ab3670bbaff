"""The kernel-semantics checks S1-S9, each run in a child process."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from heapalias import cli
from heapalias.semantics import CHECKS, CRASH_HOOK, run_check, semantics


@pytest.fixture(scope="module")
def checks(pool_2m):
    return {c.id: c for c in semantics()}


def test_every_check_runs_and_reports(checks) -> None:
    assert list(checks) == [f"S{i}" for i in range(1, 10)]
    for check in checks.values():
        assert check.claim and check.observed, check
        assert check.facts["kernel"] == os.uname().release
        assert not check.status.startswith(("crashed", "error", "not tested")), check


def test_the_seed_threads_questions_on_this_kernel(checks) -> None:
    """kernel-facts.md: what Linux >= 4.14 does; the probe must find it by itself."""
    for check_id in ("S1", "S2", "S3", "S4", "S5"):
        assert checks[check_id].holds, checks[check_id]
    assert checks["S2"].facts["errno"] == "EINVAL"
    assert checks["S3"].facts["mremap MFD_HUGETLB"] == "EINVAL"
    dontunmap = checks["S6"].facts
    assert dontunmap["private anonymous"].endswith("old range now reads 0x0")
    assert dontunmap["memfd"].endswith("old range now reads 0x77")
    assert dontunmap["hugetlb memfd"] == "fails: EINVAL"


def test_accounting_and_smaps_facts(checks) -> None:
    commit = checks["S7"].facts
    assert commit["map shared anonymous (kB)"] >= 60000
    # Whatever the mirror did to the charge, unmapping both must give it all back.
    given_back = -(commit["unmap the original (kB)"] + commit["unmap the mirror (kB)"])
    assert given_back == commit["map shared anonymous (kB)"] + commit["mirror it (kB)"]
    rows = checks["S8"].facts["4k"]["rows"]
    assert [r["Rss"] for r in rows] == [8192, 16384, 24576]  # counted once per view
    assert all(8180 <= r["Pss"] <= 8192 for r in rows)      # Pss splits it
    huge = checks["S8"].facts["2m"]["rows"]
    assert all(r["Rss"] == 0 for r in huge) and [r["Hugetlb"] for r in huge] == [
        8192, 16384, 24576]
    assert checks["S9"].facts["per alias"] == 1


def test_a_crashing_check_is_reported_not_fatal(monkeypatch) -> None:
    monkeypatch.setenv(CRASH_HOOK, "S4")
    check = run_check("S4")
    assert check.status == "crashed: SIGSEGV" and check.holds is None
    assert run_check("S2").holds  # the other checks still run


def test_probe_semantics_cli(pool_2m) -> None:
    result = CliRunner().invoke(cli.main, ["probe", "--semantics", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [c["id"] for c in data] == list(CHECKS)
    assert {"claim", "status", "observed", "facts"} <= set(data[0])
    table = CliRunner().invoke(cli.main, ["probe", "--semantics"])
    assert table.exit_code == 0 and "S9" in table.output and "holds" in table.output
