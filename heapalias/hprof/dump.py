"""The public face of the reader: :func:`read` a dump, then load it into any heap."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from .. import native
from ..backing import require_type
from ..collectors import SEMISPACE_GAP
from ..objects import ObjectHeap
from .format import INSTANCE_DUMP, PRIMITIVE_ARRAY_DUMP, PRIMITIVES, ROOT_KINDS
from .importer import Filled, Layout, build, layout_of, unreachable, words_of
from .model import Classes, array_jvm, classes_of, object_classes
from .reader import DumpFile, Index, read_index
from .stats import (
    CLASS_CLASS,
    SLICE,
    UNKNOWN_CLASS,
    ClassRow,
    ImportStats,
    class_histogram,
    histogram,
    kinds_count,
    primitive_array_names,
)


@dataclass(frozen=True)
class Imported:
    """A heap dump loaded into an ObjectHeap: the roots to collect from, and what the
    import found.

    ``roots`` are the reference words of the dump's GC roots, of every class's object
    (``class_roots``) and, unless ``unreachable_roots`` was off, of every object none of
    those reach; ``dump_roots`` leaves the last out.
    """

    roots: np.ndarray
    dump_roots: np.ndarray
    stats: ImportStats
    space: str
    table: native.HprofTable = field(repr=False)

    def refs_of(self, ids) -> np.ndarray:
        """The reference word of the object (or class) with each HPROF id; 0 for null and
        for an id the dump has no object for."""
        return native.hprof_lookup(self.table, np.asarray(ids, dtype=np.uint64))[0]


@dataclass(frozen=True)
class HeapDump:
    """A heap dump read and indexed: its classes and objects, ready to load.

    :attr:`heap_bytes` says how big a space :meth:`load` needs.
    """

    file: DumpFile
    index: Index
    classes: Classes
    klass: np.ndarray   # int32: each dump object's class (see model.object_classes)
    layout: Layout
    seconds: dict

    @property
    def heap_bytes(self) -> int:
        """Bytes the import occupies in a space of an ObjectHeap."""
        return self.layout.heap_bytes

    @property
    def heap_objects(self) -> int:
        """Objects the import allocates: the dump's, the classes', arraylet chunks."""
        return self.layout.heap_objects

    def semispace_bytes(self, page_size: int = 4096) -> int:
        """The size of a heap whose two semispaces (collectors.semispace_layout) each hold
        the import: a whole number of pages."""
        need = 2 * (self.heap_bytes + SEMISPACE_GAP) + 16
        return -(-need // page_size) * page_size

    def load(self, objects: ObjectHeap, *, space: str | None = None, class_roots: bool = True,
             unreachable_roots: bool = True) -> Imported:
        """Build the dump's objects in ``space`` of ``objects`` (default its first).

        Args:
            class_roots: take every class's object as a root, as heap analysers do.
            unreachable_roots: make every object the roots do not reach a root too, so
                that the heap holds exactly the dump's objects (a live dump still has
                some: the JVM keeps them through references the format does not record).
        Raises:
            SpaceFull: the space has fewer than :attr:`heap_bytes` bytes free.
            HeapDumpError: the file changed since :func:`read`, or is corrupt where
                only the second pass looks (an instance's fields).
        """
        require_type(objects, ObjectHeap, "HeapDump.load")
        target = objects.space(space).name
        filled, table = build(objects, self.file, self.index, self.classes, self.klass,
                              self.layout, target)
        built = time.perf_counter()
        rows = self.index.roots
        root_refs, missing_roots = native.hprof_lookup(table, rows["id"])
        named = np.unique(root_refs[root_refs != 0])
        taken = filled.class_refs if class_roots else np.zeros(0, np.uint64)
        dump_roots = np.unique(np.concatenate((named, taken)))
        lost, reached = unreachable(objects, target, dump_roots, filled, self.layout)
        extra = lost if unreachable_roots else np.zeros(0, np.uint64)
        roots = np.concatenate((dump_roots, extra))
        done = time.perf_counter()
        seconds = {**self.seconds, **filled.seconds, "roots": done - built}
        seconds["total"] = sum(seconds.values())
        stats = self._stats(filled, named, len(taken), missing_roots, len(lost), len(extra),
                            reached, seconds)
        return Imported(roots, dump_roots, stats, target, table)

    def _stats(self, filled: Filled, named: np.ndarray, class_roots: int, missing_roots: int,
               lost: int, extra: int, reached: int, seconds: dict) -> ImportStats:
        classes, layout, found = self.classes, self.layout, self.index.objects
        kind = self.index.roots["kind"]
        root_records = {name: int(np.count_nonzero(kind == tag))
                        for tag, name in ROOT_KINDS.items() if np.any(kind == tag)}
        degrees = np.concatenate((filled.mirror_edges, filled.edges))
        by_class = self._class_histogram()
        return ImportStats(
            path=str(self.file.path), dump_bytes=self.file.size, id_size=self.file.id_size,
            jvm_layout=f"HotSpot JDK {classes.hotspot.feature}, compressed oops",
            objects=len(degrees), classes=len(classes),
            **dict(zip(("instances", "object_arrays", "primitive_arrays"),
                       kinds_count(found.kind), strict=True)),
            arraylet_chunks=int(layout.chunks.sum()), heap_objects=layout.heap_objects,
            references=int(degrees.sum(dtype=np.int64)), null_references=filled.nulls,
            missing_references=filled.missing, root_records=root_records, roots=len(named),
            missing_roots=missing_roots, class_roots=class_roots, unreachable=lost,
            extra_roots=extra, reachable_heap_objects=reached, heap_bytes=layout.heap_bytes,
            jvm_bytes=sum(row.jvm_bytes for row in by_class),
            sizes=histogram(layout.payload_words[layout.own()]), degrees=histogram(degrees),
            class_histogram=by_class, seconds=seconds)

    def _class_histogram(self) -> list[ClassRow]:
        """Objects, JVM bytes and heap bytes by class: instances by their class's sizes,
        arrays one by one (an arraylet with its chunks), classes' own objects together
        as java.lang.Class."""
        classes, layout, found = self.classes, self.layout, self.index.objects
        n = len(classes)
        names = [*classes.names, *primitive_array_names(), UNKNOWN_CLASS, CLASS_CLASS]
        instance = found.kind == INSTANCE_DUMP
        counts = np.zeros(len(names))
        jvm = np.zeros(len(names))
        heap = np.zeros(len(names))
        per_class = np.bincount(self.klass[instance], minlength=n)[:n]
        counts[:n] += per_class
        jvm[:n] += per_class * classes.instance_jvm
        heap[:n] += per_class * 8 * words_of(classes.instance_refs,
                                             -(-classes.instance_bytes // 8))
        chunked = dict(zip(layout.arraylets.tolist(), layout.spines(), strict=True))
        types = list(PRIMITIVES)
        for start in range(0, len(found), SLICE):  # arrays, a slice of objects at a time
            arrays = start + np.flatnonzero(~instance[start:start + SLICE])
            heap_at = layout.positions(arrays)
            words = words_of(layout.nrefs[heap_at], layout.payload_words[heap_at])
            for k in np.flatnonzero(np.isin(arrays, layout.arraylets)).tolist():
                spine, count = chunked[int(arrays[k])]  # its chunks count to its array
                chunks = slice(spine + 1, spine + 1 + count)
                words[k] += words_of(layout.nrefs[chunks], layout.payload_words[chunks]).sum()
            kind, klass = found.kind[arrays], self.klass[arrays]
            primitive = kind == PRIMITIVE_ARRAY_DUMP
            position = np.where(klass >= 0, klass, len(names) - 2)
            position[primitive] = n + np.searchsorted(types, -klass[primitive].astype(np.int64))
            counts += np.bincount(position, minlength=len(names))
            jvm += np.bincount(position, weights=array_jvm(kind, klass, found.length[arrays]),
                               minlength=len(names))
            heap += np.bincount(position, weights=8 * words, minlength=len(names))
        counts[-1], jvm[-1] = n, classes.mirror_jvm.sum()
        heap[-1] = 8 * words_of(layout.nrefs[:n], layout.payload_words[:n]).sum()
        return class_histogram(names, counts, jvm, heap)


def read(path: str | os.PathLike, *, jdk: int | None = None) -> HeapDump:
    """Read and index the HPROF heap dump at ``path``, streaming it.

    ``jdk``: the feature version of the JDK that wrote it, for JVM shallow sizes (by
    default the one its classes suggest; see :mod:`heapalias.hprof.hotspot`).
    Raises HeapDumpError (offset and tag of the record at fault) for a truncated or
    corrupt file.
    """
    begin = time.perf_counter()
    dump, index, _ = read_index(path)
    indexed = time.perf_counter()
    classes = classes_of(dump, index, jdk)
    klass = object_classes(index, classes)
    index.objects.klass = None  # the class ids: 8 bytes an object no longer needed
    layout = layout_of(classes, index.objects, klass)
    return HeapDump(dump, index, classes, klass, layout,
                    {"index": indexed - begin, "model": time.perf_counter() - indexed})


def load(path: str | os.PathLike, objects: ObjectHeap, *, space: str | None = None,
         jdk: int | None = None, class_roots: bool = True,
         unreachable_roots: bool = True) -> Imported:
    """Read the heap dump at ``path`` and build its objects in ``space`` of ``objects``:
    :func:`read`, then :meth:`HeapDump.load`."""
    return read(path, jdk=jdk).load(objects, space=space, class_roots=class_roots,
                                    unreachable_roots=unreachable_roots)
