"""From the index pass's tables to the dump's classes and objects, vectorised.

For each class: its name, its superclass, the basic types of an instance's fields in
the order an INSTANCE DUMP holds them (the class's own fields, then its superclass's,
and so on up), and what that makes of an instance: reference slots, primitive bytes,
and the JVM's shallow size. For each object: its class, its reference slots, its
primitive bytes and its JVM shallow size. The loops here run once per class, never
once per object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import HeapDumpError
from .format import (
    CLASS_DUMP,
    JVM_ARRAY_HEADER,
    JVM_HEADER,
    JVM_REFERENCE,
    OBJECT,
    OBJECT_ARRAY_DUMP,
    PRIMITIVE_ARRAY_DUMP,
    PRIMITIVE_BYTES,
    jvm_align,
)
from .hotspot import HotSpotLayout, layout_for
from .reader import DumpFile, Index

#: The name the JVM's class histogram gives a class heapalias found no name for.
UNNAMED = "<unnamed class {:#x}>"


def java_name(internal: str) -> str:
    """A class name as the JVM's class histogram prints it: ``java/lang/String`` ->
    ``java.lang.String``; a hidden class's ``+0x...`` suffix -> ``/0x...``."""
    return internal.replace("/", ".").replace("+0x", "/0x")


def _strings(index: Index, ids: np.ndarray) -> list[str | None]:
    """The text of each STRING id (None for an id no STRING record has)."""
    order = np.argsort(index.strings["id"], kind="stable")
    sorted_ids = index.strings["id"][order]
    at = np.searchsorted(sorted_ids, ids)
    at[at >= len(sorted_ids)] = 0
    found = (sorted_ids[at] == ids) if len(sorted_ids) else np.zeros(len(ids), bool)
    text = index.text.tobytes()
    names: list[str | None] = []
    for hit, k in zip(found.tolist(), order[at].tolist(), strict=True):
        if not hit:
            names.append(None)
            continue
        start, length = int(index.strings["at"][k]), int(index.strings["length"][k])
        # Modified UTF-8 (NUL as two bytes, surrogate pairs): near enough for names.
        names.append(text[start:start + length].decode("utf-8", errors="replace"))
    return names


def lookup(sorted_ids: np.ndarray, order: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """For each of ``ids``, its position in the table ``sorted_ids = table[order]`` was
    sorted from (-1 where absent)."""
    if not len(sorted_ids):
        return np.full(len(ids), -1, dtype=np.int64)
    at = np.searchsorted(sorted_ids, ids)
    at[at >= len(sorted_ids)] = 0
    return np.where(sorted_ids[at] == ids, order[at], -1)


@dataclass
class Classes:
    """The dump's classes, in CLASS DUMP order (index k)."""

    rows: np.ndarray            # the index's class rows
    names: list[str]            # as the JVM's class histogram prints them
    super_index: np.ndarray     # int64, -1 for none
    layout_start: np.ndarray    # uint64, len + 1: the field types of class k's instances
    layout: np.ndarray          # uint8 basic types
    instance_refs: np.ndarray   # int64: reference slots of an instance
    instance_bytes: np.ndarray  # int64: primitive bytes of an instance
    instance_jvm: np.ndarray    # int64: an instance's JVM shallow size
    mirror_refs: np.ndarray     # int64: reference slots of the class's own object
    mirror_bytes: np.ndarray    # int64: its primitive bytes (static primitives)
    mirror_jvm: np.ndarray      # int64: its JVM shallow size (java.lang.Class + statics)
    order: np.ndarray           # argsort of the class ids
    sorted_ids: np.ndarray
    hotspot: HotSpotLayout      # the JVM layout the shallow sizes follow

    def index_of(self, ids: np.ndarray) -> np.ndarray:
        """The class index of each class id (-1 for none)."""
        return lookup(self.sorted_ids, self.order, ids)

    def __len__(self) -> int:
        return len(self.rows)


def _field_types(index: Index, row) -> np.ndarray:
    start = int(row["fields"])
    return index.fields["type"][start:start + int(row["nfields"])].astype(np.uint8)


def _chains(rows: np.ndarray, super_index: np.ndarray) -> list[list[int]]:
    """Each class and its superclasses, nearest first; HeapDumpError for a cycle."""
    chains = []
    for k in range(len(rows)):
        chain = [k]
        while super_index[chain[-1]] >= 0:
            chain.append(int(super_index[chain[-1]]))
            if len(chain) > len(rows):
                raise HeapDumpError(int(rows["offset"][k]), CLASS_DUMP,
                                    "the class is its own superclass")
        chains.append(chain)
    return chains


def jvm_bytes(types: np.ndarray) -> np.ndarray:
    """Bytes the JVM gives fields of these basic types (compressed references)."""
    return np.where(types == OBJECT, JVM_REFERENCE, PRIMITIVE_BYTES[types])


def _fields_ends(index: Index, rows: np.ndarray, names: list[str], chains: list[list[int]],
                 own: list[np.ndarray], hotspot: HotSpotLayout) -> np.ndarray:
    """Where each class's instance fields end (unaligned), superclasses first."""
    ends: dict[int, int] = {}
    for chain in chains:
        for k in reversed(chain):
            if k in ends:
                continue
            start = ends[int(chain[chain.index(k) + 1])] if k != chain[-1] else JVM_HEADER
            sizes = jvm_bytes(own[k]).tolist()
            if names[k] in hotspot.contended:
                first = int(rows["fields"][k])
                field_names = _strings(index, index.fields["name"][first:first + len(sizes)])
            else:
                field_names = [""] * len(sizes)
            ends[k] = hotspot.fields_end(names[k], start, list(zip(field_names, sizes,
                                                                   strict=True)))
    return np.array([ends[k] for k in range(len(rows))], dtype=np.int64)


def classes_of(dump: DumpFile, index: Index, jdk: int | None = None) -> Classes:
    """The classes of the dump, with each instance's layout and each mirror's contents;
    JVM shallow sizes as JDK ``jdk`` lays them out (None: as the dump suggests)."""
    rows = index.classes
    order = np.argsort(rows["id"], kind="stable")
    sorted_ids = rows["id"][order]
    if len(sorted_ids) > 1 and (twice := np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])).size:
        k = int(order[twice[0] + 1])
        raise HeapDumpError(int(rows["offset"][k]), CLASS_DUMP,
                            f"a second CLASS DUMP of class {int(rows['id'][k]):#x}")
    super_index = lookup(sorted_ids, order, rows["id"][:0] if not len(rows) else rows["super_id"])
    absent = np.flatnonzero((super_index < 0) & (rows["super_id"] != 0))
    if absent.size:
        k = int(absent[0])
        raise HeapDumpError(int(rows["offset"][k]), CLASS_DUMP,
                            f"its superclass {int(rows['super_id'][k]):#x} has no CLASS DUMP")
    # Names: LOAD CLASS gives each class id its name's STRING id.
    loaded = lookup(sorted_ids, order, index.loads["class_id"])
    name_ids = np.zeros(len(rows), dtype=np.uint64)
    name_ids[loaded[loaded >= 0]] = index.loads["name_id"][loaded >= 0]
    texts = _strings(index, name_ids)
    names = [java_name(text) if text is not None else UNNAMED.format(int(rows["id"][k]))
             for k, text in enumerate(texts)]

    own = [_field_types(index, row) for row in rows]
    chains = _chains(rows, super_index)
    layouts = [np.concatenate([own[c] for c in chain]) for chain in chains]
    hotspot = layout_for(names, jdk)
    sizes = np.array([len(layout) for layout in layouts], dtype=np.uint64)
    layout_start = np.concatenate(([0], np.cumsum(sizes))).astype(np.uint64)
    layout = np.concatenate(layouts) if layouts else np.zeros(0, np.uint8)
    instance_refs = np.array([int((t == OBJECT).sum()) for t in layouts], dtype=np.int64)
    instance_bytes = np.array([int(PRIMITIVE_BYTES[t].sum()) for t in layouts], dtype=np.int64)
    instance_jvm = jvm_align(_fields_ends(index, rows, names, chains, own, hotspot))
    mirror_refs, mirror_bytes, mirror_jvm = _mirrors(index, rows, names, instance_jvm)
    return Classes(rows, names, super_index, layout_start, layout.astype(np.uint8),
                   instance_refs, instance_bytes, instance_jvm, mirror_refs, mirror_bytes,
                   mirror_jvm, order, sorted_ids, hotspot)


#: Statics a CLASS DUMP lists that are no static field of the class: HotSpot adds the
#: constant pool's resolved references (and, in some versions, the init lock) to them.
PSEUDO_STATICS = ("<resolved_references>", "<init_lock>")

#: References every class's own object holds before its statics: superclass, class
#: loader, signers and protection domain, as the CLASS DUMP names them.
MIRROR_HEAD = ("super_id", "loader", "signers", "domain")


def value_owners(index: Index) -> np.ndarray:
    """The class index of each row of the values table: each CLASS DUMP's constants and
    statics are one run of rows, in CLASS DUMP order."""
    counts = index.classes["nvalues"].astype(np.int64)
    return np.repeat(np.arange(len(counts)), counts)


def _pseudo_static_ids(index: Index) -> np.ndarray:
    """The STRING ids whose text is one of PSEUDO_STATICS."""
    text = index.text.tobytes()
    wanted = {name.encode() for name in PSEUDO_STATICS}
    rows = index.strings[np.isin(index.strings["length"], [len(name) for name in wanted])]
    return np.array([int(row["id"]) for row in rows
                     if text[int(row["at"]):int(row["at"]) + int(row["length"])] in wanted],
                    dtype=np.uint64)


def _mirrors(index: Index, rows: np.ndarray, names: list[str],
             instance_jvm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each class's own object: its reference slots (MIRROR_HEAD, then every reference
    among its constants and statics), its primitive bytes (its primitive statics), and
    its JVM shallow size: a java.lang.Class with the class's static fields after it."""
    owners = value_owners(index)
    values = index.values
    n = len(rows)
    is_ref = values["type"] == OBJECT
    statics = (values["is_static"] == 1) & ~np.isin(values["name"], _pseudo_static_ids(index))
    refs = len(MIRROR_HEAD) + np.bincount(owners[is_ref], minlength=n)
    primitive = PRIMITIVE_BYTES[values["type"].astype(np.int64)]
    prim_bytes = np.bincount(owners[statics & ~is_ref], weights=primitive[statics & ~is_ref],
                             minlength=n).astype(np.int64)
    static_jvm = static_block(owners[statics], is_ref[statics], primitive[statics], n)
    base = mirror_base(names, instance_jvm)
    return refs.astype(np.int64), prim_bytes, jvm_align(base + static_jvm)


def static_block(owners: np.ndarray, is_ref: np.ndarray, primitive: np.ndarray,
                 n: int) -> np.ndarray:
    """Bytes of each class's static fields as HotSpot lays them out in its mirror: the
    references first, one after the other, then the primitives, largest first, each at
    its alignment (statics fill no holes: only the first 8-byte one can leave one)."""
    refs = np.bincount(owners[is_ref], minlength=n)
    prims = np.bincount(owners[~is_ref], weights=primitive[~is_ref], minlength=n)
    wide = np.bincount(owners[~is_ref & (primitive == 8)], minlength=n) > 0
    return (JVM_REFERENCE * refs + ((refs % 2 == 1) & wide) * 4 + prims).astype(np.int64)


def mirror_base(names: list[str], instance_jvm: np.ndarray) -> int:
    """Bytes of a java.lang.Class before its class's static fields: its own size."""
    try:
        k = names.index("java.lang.Class")
    except ValueError:
        return JVM_HEADER
    return int(instance_jvm[k])


def object_classes(index: Index, classes: Classes) -> np.ndarray:
    """Each object's class (int32): an instance's or object array's class index, -1 if
    its class has no CLASS DUMP; a primitive array's basic type, negated."""
    objects = index.objects
    klass = classes.index_of(objects.klass).astype(np.int32)
    primitive = objects.kind == PRIMITIVE_ARRAY_DUMP
    klass[primitive] = -objects.klass[primitive].astype(np.int32)
    return klass


def element_bytes(kind: np.ndarray, klass: np.ndarray) -> np.ndarray:
    """Bytes of an element of each array (kind, klass as object_classes gives them):
    references as the JVM stores them (compressed, 4 bytes), primitives at their size."""
    return np.where(kind == OBJECT_ARRAY_DUMP, JVM_REFERENCE,
                    PRIMITIVE_BYTES[np.clip(-klass.astype(np.int64), 0, len(PRIMITIVE_BYTES) - 1)])


def array_jvm(kind: np.ndarray, klass: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The JVM shallow size of each array."""
    return jvm_align(JVM_ARRAY_HEADER + length.astype(np.int64) * element_bytes(kind, klass))
