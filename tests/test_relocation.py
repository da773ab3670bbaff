"""RelocationArea and copy: no use after close, and every refusal typed."""

from __future__ import annotations

import gc
import shutil
import subprocess

import numpy as np
import pytest

import heapalias as ha
from heapalias.relocation import RelocationArea, copy

from conftest import mapped_at, run_isolated


def test_remap_after_close_raises_view_closed_and_maps_nothing() -> None:
    """It used to map MAP_FIXED into the released range, over whatever had taken it:
    here another heap's view, which then showed this heap's bytes."""
    proc = run_isolated("""
        import numpy as np, heapalias as ha
        from heapalias.relocation import RelocationArea
        heap = ha.Heap("1M")
        heap.view.array(np.uint8)[:] = 1
        source = heap.alias()
        other = ha.Heap("1M", name="bystander")
        area = RelocationArea(heap, 1 << 20)
        address = area.address
        area.close()
        bystander = other.alias(address=address)  # takes the range the area gave back
        try:
            area.remap(source, 0, 65536)
        except ha.ViewClosed:
            print("refused")
        print(int(bystander.array(np.uint8)[0]), len(source.holes))
    """)
    assert proc.stdout.split() == ["refused", "0", "0"]


def test_remap_refuses_closed_views_closed_heaps_and_strangers() -> None:
    with ha.Heap("1M") as heap, ha.Heap("1M") as stranger:
        area = RelocationArea(heap, 1 << 20)
        source = heap.alias()
        source.close()
        with pytest.raises(ha.ViewClosed):
            area.remap(source, 0, 65536)
        with pytest.raises(ha.InvalidArgument, match="this heap"):
            area.remap(stranger.view, 0, 65536)
        with pytest.raises(ha.InvalidArgument, match="View"):
            area.remap("view", 0, 65536)
        live = heap.alias()
        heap.close()
        with pytest.raises(ha.ViewClosed):
            area.remap(live, 0, 65536)
        area.close()
        area.close()  # idempotent
        with pytest.raises(ha.ViewClosed):
            RelocationArea(heap, 1 << 20)


def test_moved_views_outlive_a_closed_area_which_is_given_back_after_them() -> None:
    with ha.Heap("1M") as heap:
        heap.view.array(np.uint8)[:65536] = 7
        source = heap.alias()
        with RelocationArea(heap, 1 << 20) as area:
            moved, _ = area.remap(source, 0, 65536, at=np.int64(65536))
            address = area.address
        assert area.closed and mapped_at(address) is not None  # the moved view holds it
        assert moved.array(np.uint8)[0] == 7
        assert moved.backings == heap.view.backings and moved.file_offset == 0
        moved.close()
        gc.collect()
        assert mapped_at(address) is None
        with pytest.raises(ha.ViewClosed):
            area.remap(source, 65536, 65536)


def test_copy_checks_its_arguments() -> None:
    with ha.Heap("1M") as heap:
        heap.view.array(np.uint8, 0, 4096)[:] = 3
        assert copy(heap.view, np.int64(0), np.uint32(4096), heap.view, np.int64(8192)).bytes
        assert heap.view.array(np.uint8, 8192, 4096).min() == 3
        with pytest.raises(ha.InvalidArgument, match="overlap"):
            copy(heap.view, 0, 8192, heap.view, 4096)
        with pytest.raises(ha.InvalidArgument, match="integer"):
            copy(heap.view, 0.0, 4096, heap.view, 8192)
        with pytest.raises(ha.InvalidArgument):
            copy(heap.view, 0, 4096, None, 8192)


def test_sizes_and_numpy_offsets_stay_in_range() -> None:
    """RelocationArea(h, 2**64) was an OverflowError, and copy() with a numpy int16
    offset overflowed in int16 arithmetic (524288 + np.int16(0))."""
    from heapalias.backing import MAX_HEAP_SIZE
    with ha.Heap("1M") as heap:
        for size in (2**64, 2**100, MAX_HEAP_SIZE + heap.page_size):
            with pytest.raises(ha.InvalidArgument, match="size"):
                RelocationArea(heap, size)
        with pytest.raises(ha.InvalidArgument, match="expected a Heap, got str"):
            RelocationArea("heap", 4096)
        with pytest.raises(ha.InvalidArgument, match="expected a View"):
            copy(heap.view, 0, 4096, object(), 0)
        heap.view.array(np.uint8, 524288, 4096)[:] = 5
        assert copy(heap.view, 524288, 4096, heap.view, np.int16(0)).bytes == 4096
        assert copy(heap.view, np.uint8(0), np.int16(4096), heap.view, 8192).bytes == 4096
        assert heap.view.array(np.uint8, 8192, 4096).min() == 5


#: Preloaded into a child, this makes the mapping layer fail where the kernel rarely does:
#: MADV_POPULATE_WRITE as before Linux 5.14, and a PROT_NONE mmap as at the map-count limit.
FAILING_LIBC = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int madvise(void *address, size_t length, int advice)
{
    if (advice == MADV_POPULATE_WRITE && getenv("FAIL_POPULATE")) {
        errno = EINVAL;
        return -1;
    }
    return (int)syscall(SYS_madvise, address, length, advice);
}

void *mmap(void *address, size_t length, int prot, int flags, int fd, off_t offset)
{
    const char *at = getenv("FAIL_PROT_NONE_AT");
    if (at && prot == PROT_NONE && (uintptr_t)address == strtoull(at, NULL, 0)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return (void *)syscall(SYS_mmap, address, length, prot, flags, fd, offset);
}
"""


def test_a_failed_remap_leaves_the_source_range_mapped(tmp_path, monkeypatch) -> None:
    """When populating failed (EINVAL before Linux 5.14), the range had already moved and its
    old addresses turned PROT_NONE, yet the view got no hole: reading it was SIGSEGV. So it
    was when protecting the old range failed after mremap had moved anonymous pages away."""
    compiler = shutil.which("cc")
    if compiler is None:
        pytest.skip(reason="no C compiler to build the failing libc shim")
    shim = tmp_path / "failing_libc.so"
    (tmp_path / "failing_libc.c").write_text(FAILING_LIBC)
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(shim),
                    str(tmp_path / "failing_libc.c")], check=True)
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    proc = run_isolated("""
        import errno, os
        import numpy as np, heapalias as ha
        from heapalias.relocation import RelocationArea
        MB = 1 << 20
        for backing in ("memfd", "anon"):
            for fail in ("FAIL_POPULATE", "FAIL_PROT_NONE_AT"):
                with ha.Heap("4M", backing=backing) as heap, RelocationArea(heap, MB) as area:
                    heap.view.array(np.uint8)[:] = 7
                    source = heap.alias()
                    os.environ[fail] = hex(source.address + MB)
                    try:
                        area.remap(source, MB, MB, populate=True)
                    except ha.SyscallFailed as exc:
                        print(backing, fail, errno.errorcode[exc.errno], end=" ")
                    finally:
                        del os.environ[fail]
                    print(int(source.array(np.uint8, MB, MB).min()), len(source.holes), end=" ")
                    moved, _ = area.remap(source, MB, MB)  # the area's range went back
                    print(int(moved.array(np.uint8).min()), flush=True)
                    moved.close()
    """)
    assert proc.stdout.splitlines() == [
        f"{backing} {fail} {code} 7 0 7" for backing in ("memfd", "anon")
        for fail, code in (("FAIL_POPULATE", "EINVAL"), ("FAIL_PROT_NONE_AT", "ENOMEM"))
    ], proc.stderr
