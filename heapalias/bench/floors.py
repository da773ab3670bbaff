"""The heap lines a trace or a copy cannot avoid reading: the bench's ``floor`` figure.

A loop that reads each needed line once, at the machine's memory parallelism, takes
``lines x mlp`` per object, where ``lines`` is counted here from the graph itself and
``mlp`` is the same run's per-load limit. The count is of 64-byte heap lines only:

- mark reads, for each live object, the lines from its header to its last slot;
- a copy that forwards through from-space (Cheney) reads each live object whole, and for
  every further edge to an object already copied, the lines of its header and slot 1
  (the forwarding word).

Side tables (mark's bitmap), to-space writes and the write-back of dirty from-space
lines are left out. Each line counts as a random load: for a graph whose edges go to
uniformly chosen objects the figure is then a lower bound for the loop's design, but not
for one whose objects share lines or pages with those they reference (a tree allocated
depth first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import collectors
from ..errors import HeapCorruption
from ..objects import MARKED, ObjectHeap, header_nrefs, header_words, slot_words

LINE = 64


@dataclass(frozen=True)
class Lines:
    """What a trace from some roots must read, per live object."""

    objects: int  #: live objects (reachable from the roots)
    edges: int  #: non-null references to them: the roots' and the live objects' slots
    mark: float  #: heap lines per object from its header to its last slot
    copy: float  #: heap lines per object a copy forwarding through from-space reads


def _spanned(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """How many lines the bytes [first, last] touch."""
    return last // LINE - first // LINE + 1


def count(objects: ObjectHeap, roots: np.ndarray) -> Lines:
    """The lines a trace of ``objects`` from ``roots`` must read.

    Marks the heap to find the live objects, clearing every mark before and after (marks
    the heap held are lost). Nothing else changes. HeapCorruption if a reference names
    no object's start.
    """
    for name in objects.spaces:
        collectors.clear_marks(objects, name)
    collectors.mark(objects, roots, threads=1)
    try:
        offsets, headers = [], []
        for name in objects.spaces:
            space = objects.space(name)
            if space.top > space.start:
                _, found = collectors.walk(objects, name, offsets=True)
                offsets.append(found.astype(np.int64))
                headers.append(objects.words[found >> np.uint64(3)])
    finally:
        for name in objects.spaces:
            collectors.clear_marks(objects, name)
    offset = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
    header = np.concatenate(headers) if headers else np.zeros(0, np.uint64)
    order = np.argsort(offset, kind="stable")
    live = (header[order] & np.uint64(MARKED)) != 0
    offset, header = offset[order][live], header[order][live]
    nrefs = header_nrefs(header).astype(np.int64)
    size = header_words(header).astype(np.int64) * 8
    # Every slot of every live object, then the non-null ones' targets, with the roots'.
    _, slots = slot_words(offset, header)
    refs = np.concatenate([objects.words[slots], np.asarray(roots, np.uint64)])
    # Sorted, so that each binary search starts where the last one ended (8x faster).
    targets = np.sort(objects.codec.decode(refs[refs != 0]))
    index = np.minimum(np.searchsorted(offset, targets), max(len(offset) - 1, 0))
    wrong = np.flatnonzero(offset[index] != targets) if len(offset) else targets
    if len(wrong):
        raise HeapCorruption(int(targets[wrong[0]]), "a reference to no object a walk finds")
    indegree = np.bincount(index, minlength=len(offset))
    n = max(len(offset), 1)
    header_lines = _spanned(offset, offset + 8 * nrefs)
    forwarding_lines = _spanned(offset, offset + 15)
    copy_lines = _spanned(offset, offset + size - 1).sum() + (
        np.maximum(indegree - 1, 0) * forwarding_lines).sum()
    return Lines(len(offset), len(targets), float(header_lines.sum() / n), float(copy_lines / n))

