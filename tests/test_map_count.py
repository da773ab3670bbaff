"""Reaching vm.max_map_count raises MapCountExceeded, and the process keeps working."""

from __future__ import annotations

import json

import pytest

from conftest import IS_ROOT, mapping_count, run_isolated

CHILD = """
import json, heapalias as ha
heap = ha.Heap("64K", name="budget")
views = []
try:
    while True:
        views.append(heap.alias())
except ha.MapCountExceeded as exc:
    error = {"in_use": exc.in_use, "limit": exc.limit, "errno": exc.errno, "remedy": exc.remedy}
made = len(views)
for view in views[: made // 2]:
    view.close()
again = heap.alias()
again.array()[0] = 1
print(json.dumps({"made": made, "error": error, "works_after": bool(heap.view.array()[0] == 1)}))
"""


@pytest.mark.skipif(not IS_ROOT, reason="lowering vm.max_map_count needs root")
def test_map_count_limit_raises_typed_error_and_recovers(sysctl) -> None:
    limit = max(mapping_count(), 400) + 600  # room for the child's own libraries
    sysctl("/proc/sys/vm/max_map_count", limit)
    proc = run_isolated(CHILD)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["error"]["limit"] == limit
    assert result["error"]["in_use"] >= limit - 2
    assert result["error"]["errno"] == 12  # ENOMEM
    assert "vm.max_map_count" in result["error"]["remedy"]
    assert result["made"] > 50 and result["works_after"]
