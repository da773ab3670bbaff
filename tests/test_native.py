"""native.py is the one gateway to the compiled core: the rules, read from the source, and
the translation of each group's C failures into typed errors."""

from __future__ import annotations

import ast
import errno
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import heapalias as ha
from heapalias import collectors, native, workloads
from heapalias.native import lib
from heapalias.relocation import RelocationArea

PACKAGE = Path(ha.__file__).resolve().parent
GATEWAY = "heapalias/native.py"

#: TEMPORARY, while the collectors and drivers move behind native.py (issue 10); shrink it
#: to nothing. A module (or package, by prefix) -> the direct C calls it may still make,
#: or None for any.
STILL_CALLING_C_DIRECTLY: dict[str, set[str] | None] = {
    "heapalias/collectors": None,  # collectors.py, or the collectors/ package
    "heapalias/drivers.py": None,
    "heapalias/objects.py": {'ffi.new("ha_heap *")'},
}

#: TEMPORARY as well: modules that may still import another module's private names
#: (collectors.py aliases native._REASONS while its loops move behind native.py).
STILL_IMPORTING_PRIVATE_NAMES = {"heapalias/collectors.py", "heapalias/drivers.py"}


def modules() -> Iterator[tuple[str, ast.Module]]:
    """Every module of the package: its path from the checkout (``heapalias/x.py``), parsed."""
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE.parent).as_posix(), ast.parse(path.read_text(), str(path))


def _names(node: ast.expr, name: str) -> bool:
    """``node`` is ``name`` or ``<something>.name`` (``lib``, ``native.lib``, ``n.lib``)."""
    return (isinstance(node, ast.Name) and node.id == name) or (
        isinstance(node, ast.Attribute) and node.attr == name)


def direct_c_calls(tree: ast.Module) -> list[str]:
    """The uses of a compiled function (``lib.ha_*``), the cffi allocations
    (``ffi.new``, ``ffi.from_buffer``) and the imports of ``_native`` in a module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("ha_") and _names(
                node.value, "lib"):
            found.append(f"lib.{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("new", "from_buffer") and _names(node.func.value, "ffi")):
            first = node.args[0] if node.args else None
            ctype = (f'"{first.value}"' if isinstance(first, ast.Constant)
                     and isinstance(first.value, str) else "...")
            found.append(f"ffi.{node.func.attr}({ctype})")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_native"):
            found.append(f"from {'.' * node.level}{node.module} import")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(tree: ast.Module) -> list[str]:
    """Private names a module takes from another heapalias module: by ``from ... import``,
    or as an attribute of a heapalias module it imported (``native._REASONS``)."""
    found, package_modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").split(".")[0] == "heapalias"):
            source = "." * node.level + (node.module or "")
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"from {source} import {alias.name}")
                if not node.module or node.module == "heapalias":  # from . import native
                    package_modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            package_modules.update(alias.asname for alias in node.names
                                   if alias.asname and alias.name.startswith("heapalias."))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in package_modules and _private(node.attr)):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_only_native_calls_the_compiled_core() -> None:
    """Every call into C, and so every translation of its result, is in native.py."""
    offenders = {}
    for module, tree in modules():
        if module == GATEWAY:
            continue
        if calls := direct_c_calls(tree):
            offenders[module] = sorted(set(calls))
    assert not offenders, f"call C through a wrapper in {GATEWAY}: {offenders}"


def test_the_rule_sees_every_way_of_calling_c() -> None:
    """The checker itself: what it must catch, and what it must let through."""
    tree = ast.parse("lib.ha_tree(h)\nnative.lib.ha_walk\nffi.new('ha_stats *')\n"
                     "n.ffi.from_buffer('uint64_t[]', a)\nfrom ._native import lib\n"
                     "lib.PROT_READ\nlib.HA_OK\nffi.NULL\nffi.cast('void *', 0)\n")
    assert sorted(direct_c_calls(tree)) == sorted([
        "lib.ha_tree", "lib.ha_walk", 'ffi.new("ha_stats *")', 'ffi.from_buffer("uint64_t[]")',
        "from ._native import"])


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = {module: found for module, tree in modules() if (found := private_imports(tree))}
    assert not offenders, f"make these public, or keep them in their module: {offenders}"


def test_the_private_import_rule_sees_imports_and_module_attributes() -> None:
    tree = ast.parse("from .collectors import LoopStats, _check\nfrom . import native\n"
                     "native._REASONS\nfrom ._version import __version__\n"
                     "import errno as _errno\nimport heapalias.native as n\nn._check\n")
    assert sorted(private_imports(tree)) == ["from .collectors import _check", "n._check",
                                             "native._REASONS"]


# ---- each group's failures, translated ----


def test_fault_ns_raises_syscall_failed_with_the_errno() -> None:
    """ha_fault_ns returns -errno when it cannot map its memory; that used to be
    translated in limits.py."""
    assert native.fault_ns(1 << 20) > 0
    bad_size = lib.MAP_HUGETLB | (31 << 26)  # huge pages of 2 GiB: no such size
    for length, flags in ((0, 0), (2 << 20, bad_size)):
        with pytest.raises(ha.SyscallFailed) as caught:
            native.fault_ns(length, flags)
        assert caught.value.errno == errno.EINVAL and "mmap" in str(caught.value)


def test_relocate_remap_raises_syscall_failed_with_the_errno() -> None:
    """Both ways of remapping (a file's pages, anonymous pages) report the failing call's
    errno; the source range stays mapped as it was."""
    for backing in ("memfd", "anon"):
        with ha.Heap("1M", backing=backing) as heap:
            heap.view.array(np.uint8)[:] = 5
            target = native.mmap(2 * heap.page_size, lib.PROT_NONE,
                                 lib.MAP_PRIVATE | lib.MAP_ANONYMOUS)
            try:
                fd = heap.fd if heap.fd is not None else -1
                with pytest.raises(ha.SyscallFailed) as caught:  # a misaligned target
                    native.relocate_remap(fd, heap.view.address, 0, heap.page_size,
                                          target + 8, populate=False)
                assert caught.value.errno == errno.EINVAL, backing
                assert "relocate" in str(caught.value)
            finally:
                native.munmap(target, 2 * heap.page_size)
            assert heap.view.array(np.uint8).min() == 5


def test_a_failed_remap_gives_the_area_back_and_moves_nothing(monkeypatch) -> None:
    with ha.Heap("1M") as heap, RelocationArea(heap, 1 << 20) as area:
        source = heap.alias()

        def fail(*args, **kwargs):
            raise ha.SyscallFailed("relocate", errno.ENOMEM)

        with monkeypatch.context() as patch:
            patch.setattr(native, "relocate_remap", fail)
            with pytest.raises(ha.SyscallFailed):
                area.remap(source, 0, 65536)
        assert source.holes == ()
        moved, stats = area.remap(source, 0, 65536)  # the same area bytes, free again
        assert stats.bytes == 65536 and stats.objects == 1
        moved.close()


def test_relocate_copy_and_the_limits_report_work_done() -> None:
    with ha.Heap("1M", backing="private") as heap:
        data = heap.view.array(np.uint8)
        data[:4096] = 9
        stats = native.relocate_copy(data.ctypes.data + 8192, data.ctypes.data, 4096)
        assert (stats.bytes, stats.objects) == (4096, 1) and data[8192:12288].min() == 9
        address, size = data.ctypes.data, data.nbytes
        for ns in (native.memcpy_ns(address, address + size // 2, size // 2),
                   native.stream_copy_ns(address, address + size // 2, size // 2),
                   native.write_ns(address, size, streaming=True),
                   native.read_ns(address, size, prefetch=True),
                   native.write_read_ns(address, address, size, True, True),
                   native.chase_ns(address, size // 64, 1000, 1),
                   native.gather_ns(address, size // 64, 1000, 1)):
            assert isinstance(ns, int) and ns > 0
        del data


def test_a_workload_that_runs_out_of_room_keeps_what_it_allocated() -> None:
    """The workload wrappers follow the GC-loop convention: SpaceFull, and the space's top
    still covers the objects written before it filled, so the space still parses."""
    with ha.Heap("1M") as heap:
        objects = heap.objects
        with pytest.raises(ha.SpaceFull, match="binary_tree"):
            workloads.binary_tree(objects, 16)
        space = objects.space()
        assert space.top > space.start
        assert collectors.walk(objects).bytes == space.used
