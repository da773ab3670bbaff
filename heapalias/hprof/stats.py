"""What an import reports: counts, bytes in both models, roots, and histograms."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .format import INSTANCE_DUMP, OBJECT_ARRAY_DUMP, PRIMITIVE_ARRAY_DUMP, PRIMITIVES

#: The name the class histogram gives objects of a class the dump has no CLASS DUMP for.
UNKNOWN_CLASS = "<class without a CLASS DUMP>"
#: The class of every class's own object.
CLASS_CLASS = "java.lang.Class"


@dataclass(frozen=True)
class ClassRow:
    """One class in the import's class histogram."""

    name: str
    count: int
    jvm_bytes: int    # shallow, as the JVM lays the objects out
    heap_bytes: int   # as heapalias stores them


@dataclass(frozen=True)
class ImportStats:
    """What one import of a heap dump found and built.

    The histograms are over the dump's objects (class objects included; an arraylet's
    array counted once, whole): ``sizes`` maps payload words to a number of objects and
    can be passed as is to ``workloads.random_graph(size_distribution=...)``;
    ``degrees`` maps an out-degree (non-null references) to a number of objects.
    """

    path: str
    dump_bytes: int
    id_size: int
    jvm_layout: str
    objects: int                 # dump objects and class objects
    instances: int
    object_arrays: int
    primitive_arrays: int
    classes: int
    arraylet_chunks: int
    heap_objects: int            # objects in the heapalias heap: objects + chunks
    references: int              # non-null references stored
    null_references: int
    missing_references: int      # to ids no object has: stored as null
    root_records: dict[str, int]
    roots: int                   # distinct objects the dump's GC roots name
    missing_roots: int           # root records naming no object of the dump
    class_roots: int             # class objects taken as roots
    unreachable: int             # objects no root reaches (class roots included, if taken)
    extra_roots: int             # of them, made roots
    reachable_heap_objects: int  # heap objects the roots reach, before extra roots
    heap_bytes: int
    jvm_bytes: int
    sizes: dict[int, int]
    degrees: dict[int, int]
    class_histogram: list[ClassRow] = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def unreachable_fraction(self) -> float:
        return self.unreachable / self.objects if self.objects else 0.0

    @property
    def mean_degree(self) -> float:
        """Non-null references per object."""
        return self.references / self.objects if self.objects else 0.0

    @property
    def mb_per_s(self) -> float:
        """Dump bytes imported per second, reading and building (MB = 1e6 bytes)."""
        total = self.seconds.get("total", 0.0)
        return self.dump_bytes / total / 1e6 if total else float("inf")

    def top_classes(self, n: int = 20) -> list[ClassRow]:
        """The ``n`` classes with the most JVM bytes."""
        return sorted(self.class_histogram, key=lambda row: (-row.jvm_bytes, row.name))[:n]

    def as_dict(self, top: int = 20) -> dict:
        """A JSON-ready summary: everything, the class histogram cut to ``top`` rows."""
        data = asdict(self)
        data["class_histogram"] = [asdict(row) for row in self.top_classes(top)]
        data.update(unreachable_fraction=self.unreachable_fraction,
                    mean_degree=self.mean_degree, mb_per_s=self.mb_per_s)
        return data


#: Values counted in a dense table; larger ones (a few long arrays) are counted apart.
DENSE = 1 << 12
#: Values counted at a time: the temporaries stay small beside a dump's millions.
SLICE = 1 << 18


def histogram(values: np.ndarray) -> dict[int, int]:
    """``{value: how many}`` of non-negative integers, smallest first."""
    dense = np.zeros(DENSE, dtype=np.int64)
    sparse: dict[int, int] = {}
    for start in range(0, len(values), SLICE):
        part = values[start:start + SLICE].astype(np.int64)
        small = part < DENSE
        dense += np.bincount(part[small], minlength=DENSE)
        for value, count in zip(*np.unique(part[~small], return_counts=True), strict=True):
            sparse[int(value)] = sparse.get(int(value), 0) + int(count)
    keys = np.flatnonzero(dense)
    return dict(sorted({**dict(zip(keys.tolist(), dense[keys].tolist(), strict=True)),
                        **sparse}.items()))


def class_histogram(names: list[str], counts: np.ndarray, jvm: np.ndarray,
                    heap: np.ndarray) -> list[ClassRow]:
    """Rows by name, from per-class totals (classes of one name from several loaders
    merge, as the JVM's histogram is compared by name)."""
    merged: dict[str, list[int]] = {}
    for k in np.flatnonzero(counts):
        row = merged.setdefault(names[k], [0, 0, 0])
        row[0] += int(counts[k])
        row[1] += int(jvm[k])
        row[2] += int(heap[k])
    return [ClassRow(name, *row) for name, row in merged.items()]


def kinds_count(kind: np.ndarray) -> tuple[int, int, int]:
    """(instances, object arrays, primitive arrays)."""
    return (int(np.count_nonzero(kind == INSTANCE_DUMP)),
            int(np.count_nonzero(kind == OBJECT_ARRAY_DUMP)),
            int(np.count_nonzero(kind == PRIMITIVE_ARRAY_DUMP)))


def primitive_array_names() -> list[str]:
    """The JVM's names of the primitive array classes, by basic type order."""
    return [array for _, array, _ in PRIMITIVES.values()]
