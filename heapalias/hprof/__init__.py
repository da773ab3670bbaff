"""Real JVM heaps as workloads: read HPROF heap dumps into an ObjectHeap.

A JVM writes its live heap to an HPROF file on request (``jcmd PID GC.heap_dump``,
``jmap -dump``, ``HotSpotDiagnosticMXBean.dumpHeap``). :func:`read` streams such a
file through a C scanner (``cext/hprof.c``) and indexes it; :meth:`HeapDump.load`
builds its objects and references in an :class:`~heapalias.objects.ObjectHeap` and
returns the roots and an :class:`ImportStats`; :func:`load` does both.
:mod:`.capture` makes a dump of javac's heap with the installed JDK and times the JVM's
own full collections on it. docs/hprof.md describes the model and the findings.

::

    dump = hprof.read("javac.hprof")
    with ha.Heap(dump.semispace_bytes()) as heap:
        semi = ha.SemiSpace.over(heap)
        imported = dump.load(semi.objects, space="from")
        semi.collect(imported.roots.copy())
"""

from ..errors import HeapDumpError
from .dump import HeapDump, Imported, load, read
from .stats import ClassRow, ImportStats

__all__ = ["ClassRow", "HeapDump", "HeapDumpError", "ImportStats", "Imported", "load", "read"]
