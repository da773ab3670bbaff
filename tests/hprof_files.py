"""HPROF files for the tests: a writer that emits every record and sub-record type from a
small model, and an independent pure-Python reader that traverses a file's graph.

Neither shares code with heapalias.hprof: the writer follows the format's description
(the JDK's hprof manual, HotSpot's heapDumper.cpp), so the tests check the reader
against the format, not against itself.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

OBJECT, BOOLEAN, CHAR, FLOAT, DOUBLE, BYTE, SHORT, INT, LONG = 2, 4, 5, 6, 7, 8, 9, 10, 11
SIZES = {BOOLEAN: 1, CHAR: 2, FLOAT: 4, DOUBLE: 8, BYTE: 1, SHORT: 2, INT: 4, LONG: 8}
ROOTS = {"unknown": 0xFF, "jni_global": 0x01, "jni_local": 0x02, "java_frame": 0x03,
         "native_stack": 0x04, "sticky_class": 0x05, "thread_block": 0x06,
         "monitor_used": 0x07, "thread_object": 0x08}


@dataclass
class Klass:
    id: int
    name: str
    super_id: int
    fields: list[tuple[str, int]]                 # its own instance fields
    statics: list[tuple[str, int, int]] = field(default_factory=list)
    constants: list[tuple[int, int, int]] = field(default_factory=list)
    loader: int = 0


@dataclass
class Written:
    """What the writer put in the file: every object id, and the ids each refers to."""

    refs: dict[int, list[int]] = field(default_factory=dict)   # id -> referenced ids
    payload: dict[int, bytes] = field(default_factory=dict)    # id -> primitive bytes
    roots: list[int] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)

    def reachable(self, roots) -> set[int]:
        """Ids reachable from ``roots`` through ids of written objects."""
        seen, queue = set(), deque(r for r in roots if r in self.refs)
        while queue:
            node = queue.popleft()
            if node in seen:
                continue
            seen.add(node)
            queue.extend(child for child in self.refs[node] if child in self.refs)
        return seen


class HprofWriter:
    """Builds a heap dump sub-record by sub-record; :meth:`data` renders the file."""

    def __init__(self, id_size: int = 8) -> None:
        self.id_size = id_size
        self.next_id = 0x1000
        self.strings: dict[str, int] = {}
        self.records: list[bytes] = []     # top-level records before the heap dump
        self.subs: list[bytes] = []        # heap dump sub-records, in order
        self.classes: dict[int, Klass] = {}
        self.written = Written()

    # ---- encoding ----

    def ident(self, value: int) -> bytes:
        return value.to_bytes(self.id_size, "big")

    def value(self, kind: int, value: int | float) -> bytes:
        if kind == OBJECT:
            return self.ident(int(value))
        code = {BOOLEAN: ">?", CHAR: ">H", FLOAT: ">f", DOUBLE: ">d", BYTE: ">b", SHORT: ">h",
                INT: ">i", LONG: ">q"}[kind]
        return struct.pack(code, bool(value) if kind == BOOLEAN else value)

    def new_id(self) -> int:
        self.next_id += 0x18
        return self.next_id

    def record(self, tag: int, body: bytes) -> bytes:
        return struct.pack(">BII", tag, 0, len(body)) + body

    def string(self, text: str) -> int:
        if text not in self.strings:
            self.strings[text] = self.new_id()
            self.records.append(self.record(0x01, self.ident(self.strings[text]) + text.encode()))
        return self.strings[text]

    # ---- the model ----

    def klass(self, name: str, super_id: int = 0, fields=(), statics=(), constants=(),
              loader: int = 0) -> int:
        """A LOAD CLASS and a CLASS DUMP; the class's id."""
        k = Klass(self.new_id(), name, super_id, list(fields), list(statics), list(constants),
                  loader)
        self.classes[k.id] = k
        serial = len(self.classes)
        self.records.append(self.record(0x02, struct.pack(">I", serial) + self.ident(k.id)
                                        + struct.pack(">I", 1) + self.ident(self.string(name))))
        body = (self.ident(k.id) + struct.pack(">I", 1) + self.ident(super_id) + self.ident(loader)
                + self.ident(0) * 4 + struct.pack(">I", self.instance_bytes(k.id)))
        body += struct.pack(">H", len(k.constants))
        for index, kind, value in k.constants:
            body += struct.pack(">HB", index, kind) + self.value(kind, value)
        body += struct.pack(">H", len(k.statics))
        for name_, kind, value in k.statics:
            body += self.ident(self.string(name_)) + bytes([kind]) + self.value(kind, value)
        body += struct.pack(">H", len(k.fields))
        for name_, kind in k.fields:
            body += self.ident(self.string(name_)) + bytes([kind])
        self.subs.append(b"\x20" + body)
        refs = [super_id, loader, 0, 0]
        refs += [v for _, kind, v in k.constants if kind == OBJECT]
        refs += [v for _, kind, v in k.statics if kind == OBJECT]
        self.written.refs[k.id] = refs
        self.written.classes.append(k.id)
        return k.id

    def chain(self, class_id: int) -> list[tuple[str, int]]:
        """An instance's fields in dump order: the class's own, then its superclass's..."""
        fields = []
        while class_id:
            fields += self.classes[class_id].fields
            class_id = self.classes[class_id].super_id
        return fields

    def instance_bytes(self, class_id: int) -> int:
        return sum(self.id_size if kind == OBJECT else SIZES[kind]
                   for _, kind in self.chain(class_id))

    def instance(self, class_id: int, **values) -> int:
        """An INSTANCE DUMP; fields not given are 0 (null). Its id."""
        oid = self.new_id()
        data, refs, payload = b"", [], b""
        for name_, kind in self.chain(class_id):
            encoded = self.value(kind, values.get(name_, 0))
            data += encoded
            if kind == OBJECT:
                refs.append(int(values.get(name_, 0)))
            else:
                payload += encoded
        self.subs.append(b"\x21" + self.ident(oid) + struct.pack(">I", 1) + self.ident(class_id)
                         + struct.pack(">I", len(data)) + data)
        self.written.refs[oid], self.written.payload[oid] = refs, payload
        return oid

    def object_array(self, class_id: int, elements: list[int]) -> int:
        oid = self.new_id()
        self.subs.append(b"\x22" + self.ident(oid) + struct.pack(">II", 1, len(elements))
                         + self.ident(class_id) + b"".join(self.ident(e) for e in elements))
        self.written.refs[oid], self.written.payload[oid] = list(elements), b""
        return oid

    def primitive_array(self, kind: int, elements: list) -> int:
        oid = self.new_id()
        data = b"".join(self.value(kind, e) for e in elements)
        self.subs.append(b"\x23" + self.ident(oid) + struct.pack(">II", 1, len(elements))
                         + bytes([kind]) + data)
        self.written.refs[oid], self.written.payload[oid] = [], data
        return oid

    def root(self, kind: str, oid: int) -> None:
        """A GC root sub-record of ``kind`` (a key of ROOTS) naming ``oid``."""
        tag = ROOTS[kind]
        extra = {0x01: self.ident(0x77), 0x02: struct.pack(">II", 1, 0),
                 0x03: struct.pack(">II", 1, 0), 0x04: struct.pack(">I", 1),
                 0x06: struct.pack(">I", 1), 0x08: struct.pack(">II", 1, 1)}.get(tag, b"")
        self.subs.append(bytes([tag]) + self.ident(oid) + extra)
        self.written.roots.append(oid)

    # ---- the file ----

    def other_records(self) -> list[bytes]:
        """One of each top-level record the heap dump does not need, as a JVM may write."""
        i = self.ident
        frame = i(self.new_id()) + i(self.string("run")) + i(self.string("()V")) + \
            i(self.string("Main.java")) + struct.pack(">Ii", 1, 42)
        return [
            self.record(0x04, frame),                                        # STACK FRAME
            self.record(0x05, struct.pack(">III", 1, 1, 1) + frame[:self.id_size]),  # TRACE
            self.record(0x03, struct.pack(">I", 99)),                        # UNLOAD CLASS
            self.record(0x06, struct.pack(">HfIIQQI", 0, 0.0, 0, 0, 0, 0, 0)),  # ALLOC SITES
            self.record(0x07, struct.pack(">IIQQ", 0, 0, 0, 0)),              # HEAP SUMMARY
            self.record(0x0A, struct.pack(">I", 1) + i(0x55) + struct.pack(">I", 1)
                        + i(self.string("main")) * 3),                      # START THREAD
            self.record(0x0B, struct.pack(">I", 1)),                         # END THREAD
            self.record(0x0D, struct.pack(">II", 0, 0)),                     # CPU SAMPLES
            self.record(0x0E, struct.pack(">IH", 0, 0)),                     # CONTROL SETTINGS
        ]

    def data(self, segments: int = 1, end: bool = True, others: bool = True) -> bytes:
        """The file: header, strings and classes, then the sub-records in ``segments``
        HEAP DUMP SEGMENT records (and HEAP DUMP END), or one HEAP DUMP (``segments=0``)."""
        out = b"JAVA PROFILE 1.0.2\0" + struct.pack(">IQ", self.id_size, 1_700_000_000_000)
        out += b"".join(self.records) + (b"".join(self.other_records()) if others else b"")
        if segments == 0:
            return out + self.record(0x0C, b"".join(self.subs))
        per = -(-len(self.subs) // segments)
        for k in range(segments):
            out += self.record(0x1C, b"".join(self.subs[k * per:(k + 1) * per]))
        return out + (self.record(0x2C, b"") if end else b"")


def reachable_in_file(data: bytes) -> tuple[int, int]:
    """Read a dump in pure Python, independently of heapalias: (objects it holds, objects
    its GC roots and its classes reach), references following the same rules: a class
    refers to its superclass, loader, signers, protection domain and the objects of its
    constants and statics."""
    id_size = struct.unpack_from(">I", data, data.index(b"\0") + 1)[0]
    pos = data.index(b"\0") + 13

    def ident(at: int) -> int:
        return int.from_bytes(data[at:at + id_size], "big")

    classes: dict[int, tuple[int, list[int]]] = {}   # id -> (super, field types)
    refs: dict[int, list[int]] = {}
    instances: list[tuple[int, int, int]] = []       # id, class, data offset
    roots: list[int] = []
    size = {OBJECT: id_size, **SIZES}
    while pos < len(data):
        tag, _, length = struct.unpack_from(">BII", data, pos)
        pos += 9
        end = pos + length
        if tag not in (0x0C, 0x1C):
            pos = end
            continue
        while pos < end:
            sub = data[pos]
            pos += 1
            if sub in (0xFF, 0x05, 0x07, 0x01, 0x02, 0x03, 0x04, 0x06, 0x08):
                roots.append(ident(pos))
                pos += id_size + {0x01: id_size, 0x02: 8, 0x03: 8, 0x04: 4, 0x06: 4,
                                  0x08: 8}.get(sub, 0)
            elif sub == 0x20:
                cid = ident(pos)
                head = [ident(pos + id_size + 4 + k * id_size) for k in range(4)]
                pos += 7 * id_size + 8
                values = []
                for is_static in (False, True):
                    (count,) = struct.unpack_from(">H", data, pos)
                    pos += 2
                    for _ in range(count):
                        pos += id_size if is_static else 2
                        kind = data[pos]
                        if kind == OBJECT:
                            values.append(ident(pos + 1))
                        pos += 1 + size[kind]
                (count,) = struct.unpack_from(">H", data, pos)
                types = [data[pos + 2 + k * (id_size + 1) + id_size] for k in range(count)]
                pos += 2 + count * (id_size + 1)
                classes[cid] = (head[0], types)
                refs[cid] = head + values
            elif sub == 0x21:
                oid, cid = ident(pos), ident(pos + id_size + 4)
                (nbytes,) = struct.unpack_from(">I", data, pos + 2 * id_size + 4)
                instances.append((oid, cid, pos + 2 * id_size + 8))
                pos += 2 * id_size + 8 + nbytes
            elif sub == 0x22:
                oid = ident(pos)
                (count,) = struct.unpack_from(">I", data, pos + id_size + 4)
                first = pos + 2 * id_size + 8
                refs[oid] = [ident(first + k * id_size) for k in range(count)]
                pos = first + count * id_size
            elif sub == 0x23:
                oid = ident(pos)
                count, kind = struct.unpack_from(">IB", data, pos + id_size + 4)
                refs[oid] = []
                pos += id_size + 9 + count * size[kind]
            else:
                raise ValueError(f"sub-record tag {sub:#x} at {pos - 1}")
    for oid, cid, at in instances:
        found, k = [], cid
        while k:
            super_id, types = classes[k]
            for kind in types:
                if kind == OBJECT:
                    found.append(ident(at))
                at += size[kind]
            k = super_id
        refs[oid] = found
    written = Written(refs=refs)
    return len(refs), len(written.reachable([*roots, *classes]))
