"""Stream an HPROF file through the C scanner, one buffer at a time, in either pass.

The file is read, never mapped: a dump that shrinks while it is read (another process
still writing it, or truncating it) must end in a HeapDumpError, not a SIGBUS. The
buffer holds what the scanner has not used yet; only an item longer than the buffer
(a long STRING, a large instance) makes it grow, to that item's size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import native
from ..errors import HeapDumpError, SyscallFailed
from ..native import lib
from .format import parse_header

#: Bytes read at a time.
CHUNK = 4 << 20

#: The index pass's tables, in the order of ``enum ha_hprof_tables``, and their row types.
TABLES = {
    "strings": native.struct_dtype("ha_hprof_string"),
    "text": np.dtype(np.uint8),
    "loads": native.struct_dtype("ha_hprof_load"),
    "classes": native.struct_dtype("ha_hprof_class"),
    "values": native.struct_dtype("ha_hprof_value"),
    "fields": native.struct_dtype("ha_hprof_field"),
    "roots": native.struct_dtype("ha_hprof_root"),
    "object_ids": np.dtype(np.uint64),
    "object_classes": np.dtype(np.uint64),
    "object_offsets": np.dtype(np.uint64),
    "object_lengths": np.dtype(np.uint32),
    "object_kinds": np.dtype(np.uint8),
}
assert len(TABLES) == lib.HA_HPROF_NTABLES  # the dict's order is the enum's


@dataclass(frozen=True)
class DumpFile:
    """A dump file as it was when the index pass read it."""

    path: Path
    size: int
    mtime_ns: int
    id_size: int
    timestamp_ms: int
    header_bytes: int


@dataclass
class ObjectColumns:
    """The dump's objects (INSTANCE, OBJECT ARRAY and PRIMITIVE ARRAY DUMPs), in file
    order, a column each: a caller lets go of ``klass`` once it has the classes' indices."""

    id: np.ndarray              # uint64
    klass: np.ndarray | None    # uint64 class id; a primitive array's basic type
    offset: np.ndarray          # uint64 file offset of the sub-record
    length: np.ndarray          # uint32: an instance's field bytes; an array's length
    kind: np.ndarray            # uint8 sub-record tag

    def __len__(self) -> int:
        return len(self.id)


@dataclass(frozen=True)
class Index:
    """What the index pass found: one array per table, trimmed to its rows."""

    strings: np.ndarray
    text: np.ndarray
    loads: np.ndarray
    classes: np.ndarray
    values: np.ndarray
    fields: np.ndarray
    roots: np.ndarray
    objects: ObjectColumns


def _open(path: str | os.PathLike) -> tuple[object, os.stat_result]:
    try:
        file = open(path, "rb")  # noqa: SIM115 - the callers close it
    except OSError as exc:
        raise SyscallFailed.from_os_error("open", exc, detail=str(path)) from exc
    return file, os.fstat(file.fileno())


def _read_into(file, buffer: np.ndarray, start: int) -> int:
    """Fill ``buffer[start:]`` from the file; the bytes read (fewer only at its end)."""
    view = memoryview(buffer)[start:]
    total = 0
    while total < len(view):
        try:
            n = file.readinto(view[total:])
        except OSError as exc:
            raise SyscallFailed.from_os_error("read", exc) from exc
        if not n:
            break
        total += n
    return total


def _truncated(cursor, why: str) -> HeapDumpError:
    tag = int(cursor.item_tag)
    return HeapDumpError(int(cursor.item_at), tag or None, f"the file is truncated: {why}")


def stream(file, dump: DumpFile, cursor, *, index=None, fill=None,
           grow: Callable[[int], None] | None = None) -> None:
    """Feed the file to the scanner from the cursor's offset to its end.

    ``grow(table)`` makes room in a full index table. HeapDumpError if the file ends
    inside a record, or anything in it is corrupt.
    """
    base = int(cursor.offset)
    file.seek(base)
    buffer = native.scratch(min(CHUNK, max(dump.size - base, 1)), np.uint8, "the read buffer")
    held = _read_into(file, buffer, 0)
    at_end = held < len(buffer)
    while True:
        status = native.hprof_scan(cursor, buffer, base, held, index=index, fill=fill)
        if status == lib.HA_HPROF_FULL:
            grow(int(cursor.full))
            continue
        used = int(cursor.offset) - base
        if status == lib.HA_HPROF_OK and at_end:
            if cursor.in_heap:
                raise _truncated(cursor, f"its HEAP DUMP record ends at {int(cursor.record_end)}"
                                         f" but the file at {base + held}")
            return
        if status == lib.HA_HPROF_MORE and at_end:
            raise _truncated(cursor, f"{int(cursor.need)} more bytes are needed at "
                                     f"{int(cursor.offset)}, the file ends at {base + held}")
        keep = held - used
        need = int(cursor.need) if status == lib.HA_HPROF_MORE else 0
        if need > len(buffer):  # one item longer than the buffer: make room for it whole
            if int(cursor.offset) + need > dump.size:
                raise _truncated(cursor, f"the item needs {need} bytes, the file ends at "
                                         f"{dump.size}")
            grown = native.scratch(need, np.uint8, "the read buffer")
            grown[:keep] = buffer[used:held]
            buffer = grown
        else:
            buffer[:keep] = buffer[used:held].copy()
        base += used
        held = keep + _read_into(file, buffer, keep)
        at_end = held < len(buffer)


def read_index(path: str | os.PathLike) -> tuple[DumpFile, Index, object]:
    """The index pass over ``path``: the file's state, the tables, and the cursor (what it
    counted: heap dump records, whether HEAP DUMP END was seen)."""
    file, stat = _open(path)
    with file:
        head = file.read(64)
        id_size, timestamp, header = parse_header(head)
        dump = DumpFile(Path(path), stat.st_size, stat.st_mtime_ns, id_size, timestamp, header)
        # A first guess from the size (javac's heap: 70 bytes of dump an object); a table
        # that fills grows by half.
        objects = dump.size // 64
        guess = {"strings": dump.size // 2000, "text": dump.size // 50,
                 "loads": dump.size // 4000, "classes": dump.size // 4000,
                 "values": dump.size // 1000, "fields": dump.size // 1000,
                 "roots": dump.size // 5000, "object_ids": objects, "object_classes": objects,
                 "object_offsets": objects, "object_lengths": objects, "object_kinds": objects}
        tables = [native.scratch(max(guess[name], 16), dtype, "the heap dump's index")
                  for name, dtype in TABLES.items()]
        index = native.hprof_index(tables)

        def grow(t: int) -> None:
            count = int(index.counts[t])
            bigger = native.scratch(len(tables[t]) * 3 // 2 + 16, tables[t].dtype,
                                    "the heap dump's index")
            bigger[:count] = tables[t][:count]
            tables[t] = bigger
            native.hprof_index_table(index, t, bigger, count)

        cursor = native.hprof_cursor(id_size, lib.HA_HPROF_PASS_INDEX, header)
        stream(file, dump, cursor, index=index, grow=grow)
    if cursor.heap_records == 0:
        raise HeapDumpError(int(cursor.offset), None, "the file holds no HEAP DUMP record",
                            remedy="give a heap dump (jcmd PID GC.heap_dump FILE), not a "
                                   "CPU or allocation profile")
    if cursor.segments and not cursor.ended:
        raise HeapDumpError(dump.size, None, "the file is truncated: its HEAP DUMP SEGMENT "
                                             "records are not followed by a HEAP DUMP END")
    counts = [int(index.counts[t]) for t in range(len(tables))]
    # The tables' spare rows go back, in place where numpy can.
    trimmed = [_trimmed(table, count) for table, count in zip(tables, counts, strict=True)]
    return dump, Index(*trimmed[:7], ObjectColumns(*trimmed[7:])), cursor


def _trimmed(table: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` rows of ``table``, shrunk in place when nothing else holds it."""
    try:
        table.resize(count, refcheck=False)
    except (ValueError, BufferError):
        return table[:count].copy()
    return table


def read_fill(dump: DumpFile, fill: native.HprofFill):
    """The fill pass over the same file; its cursor holds the counts of references it
    resolved, found null, and found pointing at no object. HeapDumpError if the file
    is not the one the index pass read."""
    file, stat = _open(dump.path)
    with file:
        if (stat.st_size, stat.st_mtime_ns) != (dump.size, dump.mtime_ns):
            raise HeapDumpError(0, None, "the file changed since it was indexed",
                                remedy="read it again, once nothing writes it")
        cursor = native.hprof_cursor(dump.id_size, lib.HA_HPROF_PASS_FILL, dump.header_bytes)
        stream(file, dump, cursor, fill=fill)
    if fill.struct.next != fill.struct.nobjects:
        raise HeapDumpError(int(cursor.offset), None, "the file changed between the passes: "
                            f"{int(fill.struct.next)} of {int(fill.struct.nobjects)} objects "
                            "were found again")
    return cursor
