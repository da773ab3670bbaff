"""Load an indexed heap dump into an ObjectHeap: objects, references, roots.

Every class's own object (its ``java.lang.Class``) comes first, in CLASS DUMP order,
then the dump's objects in file order. An instance has one reference slot per
reference field (its class's and its superclasses'), and its primitive fields, as the
file holds them, for payload; an object array has its elements for slots; a primitive
array its elements for payload. A class's object refers to its superclass, class
loader, signers, protection domain and the objects its static fields and constant
pool hold; its static primitives are its payload. An object array longer than a
header can count (:data:`~heapalias.objects.MAX_REFS`) becomes an arraylet: a spine
that refers to chunks of at most that many elements, each an object of its own.

Objects are allocated the way :meth:`ObjectHeap.build` does (it is called, in slices,
so that its temporaries stay small), and the C fill pass writes their contents. A
reference to an id no object of the dump has (a dump that is not live) is stored as
null and counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .. import collectors, native
from ..errors import SpaceFull
from ..objects import MARKED, MAX_REFS, MIN_WORDS, ObjectHeap, ranks, require_object_heap
from .format import (
    INSTANCE_DUMP,
    OBJECT,
    OBJECT_ARRAY_DUMP,
    PRIMITIVE_ARRAY_DUMP,
    PRIMITIVE_BYTES,
)
from .model import MIRROR_HEAD, Classes, element_bytes, value_owners
from .reader import DumpFile, Index, ObjectColumns, read_fill

#: An object array longer than this is stored as an arraylet.
CHUNK_REFS = MAX_REFS

#: Objects allocated per ObjectHeap.build call.
BUILD_SLICE = 1 << 18


@dataclass
class Layout:
    """Where the import puts each object: heap order is the classes' objects, then each
    dump object followed by its arraylet chunks (if any)."""

    nrefs: np.ndarray            # uint32, per heap object
    payload_words: np.ndarray    # uint32, per heap object
    nclasses: int
    arraylets: np.ndarray        # int64: the dump objects stored as arraylets
    chunks: np.ndarray           # int64: how many chunks each of them has
    heap_bytes: int

    @property
    def heap_objects(self) -> int:
        return len(self.nrefs)

    def positions(self, objects: np.ndarray) -> np.ndarray:
        """The heap positions of dump objects ``objects`` (indices in file order)."""
        before = np.concatenate(([0], np.cumsum(self.chunks)))
        return self.nclasses + objects + before[np.searchsorted(self.arraylets, objects)]

    def object_at(self) -> np.ndarray | slice:
        """Each dump object's position in heap order: a slice when there is no arraylet."""
        count = self.heap_objects - self.nclasses - int(self.chunks.sum())
        if not len(self.arraylets):
            return slice(self.nclasses, self.nclasses + count)
        return self.positions(np.arange(count))

    def spines(self) -> list[tuple[int, int]]:
        """(heap position, chunks) of each arraylet's spine; its chunks follow it."""
        return list(zip(self.positions(self.arraylets).tolist(), self.chunks.tolist(),
                        strict=True))

    def pieces(self) -> Iterator[tuple[slice, slice]]:
        """The heap in pieces of about BUILD_SLICE objects, in order, each (its dump
        objects, its heap positions); the classes' objects are the first piece. A dump
        object's arraylet chunks are in its piece."""
        yield slice(0, 0), slice(0, self.nclasses)
        count = self.heap_objects - self.nclasses - int(self.chunks.sum())
        for first in range(0, count, BUILD_SLICE):
            last = min(first + BUILD_SLICE, count)
            bounds = self.positions(np.array([first, last]))
            yield slice(first, last), slice(int(bounds[0]),
                                            int(bounds[1]) if last < count else self.heap_objects)

    def offsets(self, base: int) -> Iterator[tuple[slice, slice, np.ndarray]]:
        """Each piece, with the heap offsets of its objects: allocated back to back from
        heap offset ``base``, as ObjectHeap.build lays them out."""
        at = base
        for dump_part, heap_part in self.pieces():
            words = words_of(self.nrefs[heap_part], self.payload_words[heap_part])
            ends = np.cumsum(words)
            yield dump_part, heap_part, (at + 8 * (ends - words)).astype(np.uint64)
            at += 8 * int(ends[-1]) if len(ends) else 0

    def local(self, dump_part: slice, heap_part: slice) -> np.ndarray:
        """Where a piece's dump objects are among its heap positions."""
        return self.positions(np.arange(dump_part.start, dump_part.stop)) - heap_part.start

    def own(self) -> np.ndarray | slice:
        """Which heap objects are the classes' and the dump's (not arraylet chunks): a
        slice, or a mask."""
        if not len(self.arraylets):
            return slice(0, self.heap_objects)
        mask = np.ones(self.heap_objects, dtype=bool)
        for spine, count in self.spines():
            mask[spine + 1:spine + 1 + count] = False
        return mask


def words_of(nrefs: np.ndarray, payload_words: np.ndarray) -> np.ndarray:
    """Words an object with these slots and payload occupies (as ObjectHeap.build)."""
    return np.maximum(1 + nrefs.astype(np.int64) + payload_words, MIN_WORDS)


def layout_of(classes: Classes, objects: ObjectColumns, klass: np.ndarray) -> Layout:
    """Each heap object's reference slots and payload words, arraylets included, from
    the dump's objects and their classes (few temporaries: a dump has millions)."""
    kind = objects.kind
    object_array = kind == OBJECT_ARRAY_DUMP
    arraylets = np.flatnonzero(object_array & (objects.length > CHUNK_REFS))
    chunks = -(-objects.length[arraylets].astype(np.int64) // CHUNK_REFS)
    nclasses = len(classes)
    total = nclasses + len(objects) + int(chunks.sum())
    layout = Layout(np.zeros(total, dtype=np.uint32), np.zeros(total, dtype=np.uint32),
                    nclasses, arraylets, chunks, 0)
    layout.nrefs[:nclasses] = classes.mirror_refs
    layout.payload_words[:nclasses] = -(-classes.mirror_bytes // 8)
    at = layout.object_at()
    instance = kind == INSTANCE_DUMP
    known = klass[instance]
    known[known < 0] = 0  # no CLASS DUMP: the fill pass stops there with the reason
    nrefs = np.where(object_array, objects.length, 0).astype(np.uint32)
    nrefs[instance] = classes.instance_refs[known]
    layout.nrefs[at] = nrefs
    del nrefs
    primitive = kind == PRIMITIVE_ARRAY_DUMP
    payload = np.zeros(len(objects), dtype=np.uint32)
    payload[primitive] = -(-objects.length[primitive].astype(np.int64)
                           * element_bytes(kind[primitive], klass[primitive]) // 8)
    payload[instance] = -(-classes.instance_bytes[known] // 8)
    layout.payload_words[at] = payload
    del payload
    for j, (spine, count) in zip(arraylets.tolist(), layout.spines(), strict=True):
        layout.nrefs[spine] = count
        layout.nrefs[spine + 1:spine + 1 + count] = CHUNK_REFS
        layout.nrefs[spine + count] = int(objects.length[j]) - CHUNK_REFS * (count - 1)
    layout.heap_bytes = 8 * sum(int(words_of(layout.nrefs[k:k + BUILD_SLICE],
                                             layout.payload_words[k:k + BUILD_SLICE]).sum())
                                for k in range(0, total, BUILD_SLICE))
    return layout


def mirror_slots(index: Index, classes: Classes) -> tuple[np.ndarray, np.ndarray]:
    """The ids each class's object refers to, concatenated in class order and slot order,
    and the class each belongs to."""
    rows = classes.rows
    head = np.stack([rows[name] for name in MIRROR_HEAD], axis=1) if len(rows) else \
        np.zeros((0, len(MIRROR_HEAD)), dtype=np.uint64)
    owners = value_owners(index)
    refs = index.values["type"] == OBJECT
    counts = np.bincount(owners[refs], minlength=len(rows))
    # Slot s of class k: its head for s < 4, then its reference values in table order.
    ids = np.zeros(int(classes.mirror_refs.sum()), dtype=np.uint64)
    starts = np.concatenate(([0], np.cumsum(classes.mirror_refs)))[:-1].astype(np.int64)
    for s in range(len(MIRROR_HEAD)):
        ids[starts + s] = head[:, s]
    value_owner = owners[refs]
    first = np.concatenate(([0], np.cumsum(counts)))[:-1]
    rank = np.arange(len(value_owner)) - first[value_owner]
    ids[starts[value_owner] + len(MIRROR_HEAD) + rank] = index.values["value"][refs]
    return ids, np.repeat(np.arange(len(rows)), classes.mirror_refs)


def write_mirrors(objects: ObjectHeap, index: Index, classes: Classes, offsets: np.ndarray,
                  table: native.HprofTable) -> tuple[np.ndarray, int]:
    """Fill each class's object (at ``offsets``): its slots, through the table, and its
    static primitives (big-endian, as the file holds them) for payload. Returns each
    one's non-null references, and how many ids named no object."""
    n = len(classes)
    words = objects.words
    ids, owner = mirror_slots(index, classes)
    refs, missing = native.hprof_lookup(table, ids)
    first_slot = (offsets[:n] >> np.uint64(3)) + np.uint64(1)
    starts = np.concatenate(([0], np.cumsum(classes.mirror_refs)))[:-1]
    words[first_slot[owner] + (np.arange(len(ids)) - starts[owner]).astype(np.uint64)] = refs
    # Static primitives: each value's bytes, big-endian, one after another per class.
    owners = value_owners(index)
    values = index.values
    prim = (values["is_static"] == 1) & (values["type"] != OBJECT)
    sizes = PRIMITIVE_BYTES[values["type"][prim].astype(np.int64)]
    if len(sizes):
        big_endian = values["value"][prim].astype(">u8").view(np.uint8).reshape(-1, 8)
        data = big_endian[np.arange(8) >= 8 - sizes[:, None]]
        who = owners[prim]
        before = np.concatenate(([0], np.cumsum(sizes)))[:-1]
        class_first = np.concatenate(([0], np.cumsum(np.bincount(who, weights=sizes,
                                                                minlength=n))))[:-1]
        at_in_class = np.repeat(before - class_first[who].astype(np.int64), sizes) + \
            ranks(sizes)
        payload = ((first_slot + classes.mirror_refs.astype(np.uint64)) * np.uint64(8)).astype(
            np.int64)
        words.view(np.uint8)[np.repeat(payload[who], sizes) + at_in_class] = data
    return np.bincount(owner[refs != 0], minlength=n).astype(np.uint32), missing


@dataclass(frozen=True)
class Filled:
    """What building the heap found: where it is, and the fill pass's counts."""

    base: int                 # heap offset of the first object
    class_refs: np.ndarray    # uint64 reference word of each class's object
    edges: np.ndarray         # uint32 non-null references of each dump object
    mirror_edges: np.ndarray  # uint32 non-null references of each class's object
    nulls: int
    missing: int
    seconds: dict


def allocate(objects: ObjectHeap, layout: Layout, space: str, table: native.HprofTable,
             index: Index, classes: Classes) -> tuple[int, np.ndarray]:
    """Allocate every heap object (zeroed, headers written) in ``space``, one
    ObjectHeap.build call per piece (its temporaries stay small; the pieces land back to
    back), and enter each class's and dump object's reference in ``table``; arraylet
    spines are linked to their chunks. Returns the first object's offset and the
    offsets of the classes' objects."""
    target = objects.space(space)
    if layout.heap_bytes > target.end - target.top:
        raise SpaceFull(f"space {target.name!r} has {target.end - target.top} bytes free, the "
                        f"heap dump needs {layout.heap_bytes}",
                        remedy="use a heap whose space holds HeapDump.heap_bytes")
    base, ids, where = target.top, index.objects.id, index.objects.offset
    spines = dict(layout.spines())
    class_offsets = np.zeros(0, dtype=np.uint64)
    for dump_part, heap_part in layout.pieces():
        offsets = objects.build(layout.nrefs[heap_part], layout.payload_words[heap_part],
                                space=target.name)
        refs = np.asarray(objects.codec.encode(offsets), dtype=np.uint64)
        if heap_part.start == 0:
            class_offsets = offsets
            native.hprof_table_add(table, classes.rows["id"], refs,
                                   lambda k: int(classes.rows["offset"][k]))
            continue
        native.hprof_table_add(table, ids[dump_part], refs[layout.local(dump_part, heap_part)],
                               lambda k, first=dump_part.start: int(where[first + k]))
        for spine in (p for p in spines if heap_part.start <= p < heap_part.stop):
            local, count = spine - heap_part.start, spines[spine]  # its chunks follow it
            first = (int(offsets[local]) >> 3) + 1
            objects.words[first:first + count] = refs[local + 1:local + 1 + count]
    return base, class_offsets


def build(objects: ObjectHeap, dump: DumpFile, index: Index, classes: Classes,
          klass: np.ndarray, layout: Layout, space: str) -> tuple[Filled, native.HprofTable]:
    """Allocate, then fill, every object of the dump in ``space``."""
    require_object_heap(objects, "a heap dump's import").require_writable("a heap dump's import")
    clock = time.perf_counter()
    table = native.hprof_table(len(classes) + len(index.objects))
    base, class_offsets = allocate(objects, layout, space, table, index, classes)
    allocated = time.perf_counter()
    mirror_edges, mirror_missing = write_mirrors(objects, index, classes, class_offsets, table)
    found = index.objects
    edges = np.zeros(len(found), dtype=np.uint32)
    ref_add = int(objects.codec.encode(8)) - 8  # a reference less this is its offset
    fill = native.hprof_fill(objects.words, found.id, found.length, found.kind, klass,
                             classes.rows["id"], classes.layout_start, classes.layout, edges,
                             table, ref_add, CHUNK_REFS)
    cursor = read_fill(dump, fill)
    del fill
    filled = time.perf_counter()
    class_refs = np.asarray(objects.codec.encode(class_offsets), dtype=np.uint64)
    return Filled(base, class_refs, edges, mirror_edges, int(cursor.nulls),
                  int(cursor.missing) + mirror_missing,
                  {"allocate": allocated - clock, "fill": filled - allocated}), table


def unreachable(objects: ObjectHeap, space: str, roots: np.ndarray, filled: Filled,
                layout: Layout) -> tuple[np.ndarray, int]:
    """The references of the class and dump objects ``roots`` do not reach, found by
    marking (read a piece at a time); and how many heap objects the roots reach. Marks
    are cleared again."""
    stats = collectors.mark(objects, roots, spaces=[space],
                            stack_capacity=max(layout.heap_objects, 1))
    lost = []
    for dump_part, heap_part, offsets in layout.offsets(filled.base):
        own = offsets if heap_part.start == 0 else offsets[layout.local(dump_part, heap_part)]
        unmarked = own[(objects.words[own >> np.uint64(3)] & np.uint64(MARKED)) == 0]
        lost.append(np.asarray(objects.codec.encode(unmarked), dtype=np.uint64))
    collectors.clear_marks(objects, space)
    return np.concatenate(lost), stats.objects
