"""The heapalias command line, driven through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import heapalias as ha
from heapalias import cli
from heapalias.errors import hugepage_sysctl
from heapalias.system import hugepage_pool

from conftest import IS_ROOT


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_probe_table(runner) -> None:
    result = runner.invoke(cli.main, ["probe"])
    assert result.exit_code == 0, result.output
    for text in ("System", "THP shmem_enabled", "vm.max_map_count", "memfd", "mremap", "works"):
        assert text in result.output
    assert "combinations work on this kernel" in result.output


def test_probe_json_schema(runner) -> None:
    result = runner.invoke(cli.main, ["probe", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"system", "combinations", "userfaultfd"}
    assert set(data["userfaultfd"]["features"]) >= {"MINOR_SHMEM", "MINOR_HUGETLBFS", "MOVE"}
    assert len(data["combinations"]) == len(ha.BACKINGS) * len(ha.PAGES) * 2
    for combo in data["combinations"]:
        assert {"backing", "pages", "strategy", "ok", "errno", "error"} <= set(combo)
        assert isinstance(combo["ok"], bool)
        assert combo["errno"] is None or isinstance(combo["errno"], int)
        assert combo["ok"] or combo["error"]
    ok = {(c["backing"], c["pages"], c["strategy"]) for c in data["combinations"] if c["ok"]}
    assert ("memfd", "4k", "memfd") in ok and ("private", "4k", "mremap") not in ok


def test_hugepages_shows_pools(runner) -> None:
    result = runner.invoke(cli.main, ["hugepages"])
    assert result.exit_code == 0 and "2 MiB" in result.output
    data = json.loads(runner.invoke(cli.main, ["hugepages", "--json"]).output)
    assert any(pool["page_size"] == 2 << 20 for pool in data)


@pytest.mark.skipif(not IS_ROOT, reason="resizing a hugetlb pool needs root")
def test_hugepages_reserve(runner, sysctl) -> None:
    total = hugepage_pool(2 << 20).total
    sysctl(hugepage_sysctl(2 << 20), total)  # restored after the test
    result = runner.invoke(cli.main, ["hugepages", "--reserve", str(total + 2), "--size", "2m"])
    assert result.exit_code == 0, result.output
    assert hugepage_pool(2 << 20).total == total + 2


def one_error_line(result) -> str:
    """The single line an error prints (asserts there is exactly one, and no traceback)."""
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("heapalias: error: ") and "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["hugepages", "--reserve", "-1"],
        ["hugepages", "--reserve", "many"],
        ["hugepages", "--size", "4k"],
        ["probe", "--colour"],
        ["no-such-command"],
        ["--no-such-option"],
        ["gcbench", "--pages", "3m"],
        ["gcbench", "--repeat", "0"],
        ["gcbench", "--collector", "g1"],
        ["compare", "only-one.json"],
        ["bench", "--pin", "-1"],
    ],
)
def test_usage_errors_exit_2_with_one_line(runner, args) -> None:
    result = runner.invoke(cli.main, args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "Remedy: see `heapalias" in line and "--help`" in line and ".." not in line


def test_runtime_error_exits_1_with_one_line_and_no_traceback(runner, monkeypatch) -> None:
    def refuse(count, page_size):
        raise ha.NotPermitted("cannot write nr_hugepages", errno=13, remedy="run as root")

    monkeypatch.setattr(cli, "reserve_hugepages", refuse)
    result = runner.invoke(cli.main, ["hugepages", "--reserve", "4"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == ["heapalias: error: cannot write nr_hugepages [EACCES: Permission denied]. "
                     "Remedy: run as root"]
    assert "Traceback" not in result.output


def test_version(runner) -> None:
    result = runner.invoke(cli.main, ["--version"])
    assert result.exit_code == 0 and ha.__version__ in result.output


@pytest.mark.skipif(not IS_ROOT, reason="the refusal is checked before writing, which needs root "
                    "to reach")
def test_reserving_more_than_memory_is_refused_and_changes_nothing(runner) -> None:
    """Before, the kernel was asked for 10^11 pages and took every free page it could find."""
    before = hugepage_pool(2 << 20).total
    result = runner.invoke(cli.main, ["hugepages", "--reserve", str(10**11)])
    assert result.exit_code == 1
    assert "memory is available" in one_error_line(result)
    assert hugepage_pool(2 << 20).total == before
