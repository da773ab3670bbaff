"""Import a dump into a semispace heap of its own, measuring the memory the import takes
beyond that heap: its peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs``) less what was resident before."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..collectors import SemiSpace
from ..errors import HeapAliasWarning
from ..heap import Heap
from ..system import PAGE_SIZES
from .dump import HeapDump, Imported, read


def _status_bytes(field: str) -> int:
    """A ``kB`` line of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) << 10
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset VmHWM to VmRSS (Linux 4.0 and later); False where it cannot be."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class ImportRun:
    """A dump imported into the from-space of a SemiSpace heap of its own."""

    dump: HeapDump
    heap: Heap
    semi: SemiSpace
    imported: Imported
    #: Peak bytes the import held beyond its heap (reading and loading), None if unknown.
    peak_bytes: int | None

    @property
    def overhead(self) -> float | None:
        """Peak memory the import took, as a multiple of the bytes it built."""
        if self.peak_bytes is None:
            return None
        return self.peak_bytes / self.dump.heap_bytes if self.dump.heap_bytes else 0.0


def import_heap(path: str | os.PathLike, *, pages: str = "4k", backing: str = "memfd",
                jdk: int | None = None, dump: HeapDump | None = None) -> ImportRun:
    """Read ``path`` (unless ``dump`` is it, read already) and load it into a new heap
    sized for a semispace collection (``HeapDump.semispace_bytes``). The caller closes
    ``run.heap``. The memory is measured when this call reads the dump itself."""
    measured = dump is None and _reset_peak()
    before = _status_bytes("VmRSS") if measured else 0
    dump = dump if dump is not None else read(path, jdk=jdk)
    read_peak = _status_bytes("VmHWM") - before if measured else 0
    held = _status_bytes("VmRSS") - before if measured else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeapAliasWarning)
        heap = Heap(dump.semispace_bytes(PAGE_SIZES[pages]), backing=backing, pages=pages,
                    name="heapdump")
    try:
        semi = SemiSpace.over(heap)
        measured = measured and _reset_peak()
        loading = _status_bytes("VmRSS") if measured else 0
        imported = dump.load(semi.objects, space=semi.from_space.name)
        load_peak = _status_bytes("VmHWM") - loading if measured else 0
    except BaseException:
        heap.close()
        raise
    peak = max(read_peak, held + load_peak) if measured else None
    return ImportRun(dump, heap, semi, imported, peak)
