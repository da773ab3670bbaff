"""What the HPROF format defines: the file header, tags, root kinds and basic types.

The format is the one HotSpot writes (JDK 8 to 25) and the JDK's old ``hprof`` agent
documented (``jdk/src/share/demo/jvmti/hprof/manual.html``): a header, then records of
``tag u1, time u4, length u4, body``, all numbers big-endian. This module holds the
names and sizes; ``cext/hprof.c`` holds the parsing.
"""

from __future__ import annotations

import numpy as np

from ..errors import HeapDumpError

#: The header strings of the versions heapalias reads; a NUL ends each.
MAGICS = (b"JAVA PROFILE 1.0.2", b"JAVA PROFILE 1.0.1")

# Top-level records.
STRING = 0x01
LOAD_CLASS = 0x02
STACK_FRAME = 0x04
STACK_TRACE = 0x05
HEAP_DUMP = 0x0C
HEAP_DUMP_SEGMENT = 0x1C
HEAP_DUMP_END = 0x2C

# Heap dump sub-records.
CLASS_DUMP = 0x20
INSTANCE_DUMP = 0x21
OBJECT_ARRAY_DUMP = 0x22
PRIMITIVE_ARRAY_DUMP = 0x23

#: Every GC root sub-record: tag -> name.
ROOT_KINDS = {
    0xFF: "unknown",
    0x01: "jni_global",
    0x02: "jni_local",
    0x03: "java_frame",
    0x04: "native_stack",
    0x05: "sticky_class",
    0x06: "thread_block",
    0x07: "monitor_used",
    0x08: "thread_object",
}

OBJECT = 2  # the basic type of a reference

#: Primitive basic types: type -> (Java name, array class name as the JVM prints it, bytes).
PRIMITIVES = {
    4: ("boolean", "[Z", 1),
    5: ("char", "[C", 2),
    6: ("float", "[F", 4),
    7: ("double", "[D", 8),
    8: ("byte", "[B", 1),
    9: ("short", "[S", 2),
    10: ("int", "[I", 4),
    11: ("long", "[J", 8),
}

#: Bytes of a primitive of each basic type (0 for types that are not primitives).
PRIMITIVE_BYTES = np.zeros(12, dtype=np.int64)
for _type, (_, _, _size) in PRIMITIVES.items():
    PRIMITIVE_BYTES[_type] = _size

#: The JVM's object layout that shallow sizes are given in: 64-bit HotSpot with
#: compressed oops and compressed class pointers (the default below 32 GiB).
JVM_HEADER = 12
JVM_ARRAY_HEADER = 16
JVM_REFERENCE = 4
JVM_ALIGNMENT = 8


def jvm_align(size):
    """``size`` (int or array) rounded up to the JVM's object alignment."""
    return (size + (JVM_ALIGNMENT - 1)) // JVM_ALIGNMENT * JVM_ALIGNMENT


def parse_header(data: bytes) -> tuple[int, int, int]:
    """``(identifier size, timestamp in ms, header bytes)`` from the file's first bytes;
    HeapDumpError if they do not start an HPROF file."""
    end = data.find(b"\0")
    if end < 0 or data[:end] not in MAGICS:
        raise HeapDumpError(0, None, f"not an HPROF file: it starts {data[:24]!r}",
                            remedy="give a heap dump (jcmd PID GC.heap_dump FILE)")
    if len(data) < end + 13:
        raise HeapDumpError(end + 1, None, "the file ends inside its header")
    id_size = int.from_bytes(data[end + 1:end + 5], "big")
    if id_size not in (4, 8):
        raise HeapDumpError(end + 1, None, f"identifier size {id_size}: HPROF uses 4 or 8")
    timestamp = int.from_bytes(data[end + 5:end + 13], "big")
    return id_size, timestamp, end + 13
