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
from dataclasses import dataclass

import numpy as np

from .. import collectors, native
from ..backing import require_type
from ..errors import SpaceFull
from ..objects import MARKED, MAX_REFS, MIN_WORDS, ObjectHeap, require_object_heap
from .format import (
    INSTANCE_DUMP,
    OBJECT,
    OBJECT_ARRAY_DUMP,
    PRIMITIVE_ARRAY_DUMP,
    PRIMITIVE_BYTES,
)
from .model import MIRROR_HEAD, Classes, array_bytes, value_owners
from .reader import DumpFile, Index, read_fill

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


def layout_of(classes: Classes, rows: np.ndarray, klass: np.ndarray) -> Layout:
    """Each heap object's reference slots and payload words, arraylets included, from
    the object rows and their classes (few temporaries: a dump has millions of rows)."""
    kind = rows["kind"]
    object_array = kind == OBJECT_ARRAY_DUMP
    arraylets = np.flatnonzero(object_array & (rows["length"] > CHUNK_REFS))
    chunks = -(-rows["length"][arraylets].astype(np.int64) // CHUNK_REFS)
    nclasses = len(classes)
    total = nclasses + len(rows) + int(chunks.sum())
    layout = Layout(np.zeros(total, dtype=np.uint32), np.zeros(total, dtype=np.uint32),
                    nclasses, arraylets, chunks, 0)
    layout.nrefs[:nclasses] = classes.mirror_refs
    layout.payload_words[:nclasses] = -(-classes.mirror_bytes // 8)
    at = layout.object_at()
    instance = kind == INSTANCE_DUMP
    known = klass[instance]
    known[known < 0] = 0  # no CLASS DUMP: the fill pass stops there with the reason
    nrefs = np.where(object_array, rows["length"], 0).astype(np.uint32)
    nrefs[instance] = classes.instance_refs[known]
    layout.nrefs[at] = nrefs
    del nrefs
    primitive = kind == PRIMITIVE_ARRAY_DUMP
    payload = np.zeros(len(rows), dtype=np.uint32)
    payload[primitive] = -(-array_bytes(rows[primitive]) // 8)
    payload[instance] = -(-classes.instance_bytes[known] // 8)
    layout.payload_words[at] = payload
    del payload
    for j, (spine, count) in zip(arraylets.tolist(), layout.spines(), strict=True):
        length = int(rows["length"][j])
        layout.nrefs[spine] = count
        layout.nrefs[spine + 1:spine + 1 + count] = CHUNK_REFS
        layout.nrefs[spine + count] = length - CHUNK_REFS * (count - 1)
    layout.heap_bytes = 8 * sum(int(words_of(layout.nrefs[k:k + BUILD_SLICE],
                                             layout.payload_words[k:k + BUILD_SLICE]).sum())
                                for k in range(0, total, BUILD_SLICE))
    return layout


def allocate(objects: ObjectHeap, layout: Layout, space: str | None) -> np.ndarray:
    """Allocate every heap object (zeroed, headers written) in ``space``; their offsets.

    One ObjectHeap.build call per slice of objects keeps its temporaries small; the
    slices land back to back, as one call would put them."""
    target = objects.space(space)
    if layout.heap_bytes > target.end - target.top:
        raise SpaceFull(f"space {target.name!r} has {target.end - target.top} bytes free, the "
                        f"heap dump needs {layout.heap_bytes}",
                        remedy="use a heap whose space holds HeapDump.heap_bytes")
    offsets = np.empty(layout.heap_objects, dtype=np.uint64)
    for start in range(0, layout.heap_objects, BUILD_SLICE):
        end = start + BUILD_SLICE
        offsets[start:end] = objects.build(layout.nrefs[start:end],
                                           layout.payload_words[start:end], space=target.name)
    return offsets


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
    """Fill each class's object: its slots, through the table, and its static primitives
    (big-endian, as the file holds them) for payload. Returns each one's non-null
    references, and how many ids named no object."""
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
            _ranks(sizes)
        payload = ((first_slot + classes.mirror_refs.astype(np.uint64)) * np.uint64(8)).astype(
            np.int64)
        words.view(np.uint8)[np.repeat(payload[who], sizes) + at_in_class] = data
    return np.bincount(owner[refs != 0], minlength=n).astype(np.uint32), missing


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each count c, concatenated."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.concatenate(([0], np.cumsum(counts)))[:-1], counts)


def link_arraylets(objects: ObjectHeap, layout: Layout, offsets: np.ndarray) -> None:
    """Point each arraylet spine's slots at its chunks, which follow it."""
    for spine, count in layout.spines():
        first = (int(offsets[spine]) >> 3) + 1
        objects.words[first:first + count] = objects.codec.encode(
            offsets[spine + 1:spine + 1 + count])


@dataclass(frozen=True)
class Filled:
    """What building the heap found: the offsets and the fill pass's counts."""

    offsets: np.ndarray   # uint64 heap offset of each heap object
    refs: np.ndarray      # uint64 reference word of each heap object
    edges: np.ndarray     # uint32 non-null references of each dump object
    mirror_edges: np.ndarray  # uint32 non-null references of each class's object
    nulls: int
    missing: int
    seconds: dict


def build(objects: ObjectHeap, dump: DumpFile, index: Index, classes: Classes,
          klass: np.ndarray, layout: Layout, space: str) -> tuple[Filled, native.HprofTable]:
    """Allocate, then fill, every object of the dump in ``space``."""
    require_object_heap(objects, "a heap dump's import").require_writable("a heap dump's import")
    clock = time.perf_counter()
    offsets = allocate(objects, layout, space)
    refs = np.asarray(objects.codec.encode(offsets), dtype=np.uint64)
    allocated = time.perf_counter()
    nclasses, rows = len(classes), index.objects
    table = native.hprof_table(nclasses + len(rows))
    native.hprof_table_add(table, classes.rows["id"], refs[:nclasses],
                           lambda k: int(classes.rows["offset"][k]))
    for start in range(0, len(rows), BUILD_SLICE):  # the ids are a strided column: copied
        part = np.arange(start, min(start + BUILD_SLICE, len(rows)))  # a slice at a time
        native.hprof_table_add(table, rows["id"][part], refs[layout.positions(part)],
                               lambda k, start=start: int(rows["offset"][start + k]))
    mirror_edges, mirror_missing = write_mirrors(objects, index, classes, offsets, table)
    link_arraylets(objects, layout, offsets)
    edges = np.zeros(len(rows), dtype=np.uint32)
    fill = native.hprof_fill(objects.words, rows, klass, classes.layout_start, classes.layout,
                             offsets[layout.object_at()], edges, table, CHUNK_REFS)
    cursor = read_fill(dump, fill)
    del fill
    filled = time.perf_counter()
    return Filled(offsets, refs, edges, mirror_edges, int(cursor.nulls),
                  int(cursor.missing) + mirror_missing,
                  {"allocate": allocated - clock, "fill": filled - allocated}), table


def unreachable(objects: ObjectHeap, space: str, roots: np.ndarray, filled: Filled,
                layout: Layout) -> tuple[np.ndarray, int]:
    """The heap positions of the class and dump objects ``roots`` do not reach, found by
    marking; and how many heap objects the roots reach. Marks are cleared again."""
    stats = collectors.mark(objects, roots, spaces=[space],
                            stack_capacity=max(layout.heap_objects, 1))
    own = layout.own()
    lost = []
    for start in range(0, layout.heap_objects, BUILD_SLICE):  # a slice at a time: small
        headers = objects.words[filled.offsets[start:start + BUILD_SLICE] >> np.uint64(3)]
        unmarked = (headers & np.uint64(MARKED)) == 0
        if not isinstance(own, slice):  # arraylet chunks are no objects of the dump
            unmarked &= own[start:start + BUILD_SLICE]
        lost.append(start + np.flatnonzero(unmarked))
    collectors.clear_marks(objects, space)
    return np.concatenate(lost), stats.objects


def check_space_name(objects: ObjectHeap, space: str | None) -> str:
    """The name of the space an import goes to (the first one by default)."""
    require_type(objects, ObjectHeap, "a heap dump's import")
    return objects.space(space).name
