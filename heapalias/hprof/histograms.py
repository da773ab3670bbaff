"""Object size and out-degree histograms of any heap, to set a real one beside the
synthetic workloads (``heapalias heapdump --plot``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import collectors, workloads
from ..heap import Heap
from ..objects import ObjectHeap, header_nrefs, header_words, slot_words
from .stats import histogram


def heap_histograms(objects: ObjectHeap, space: str | None = None) -> tuple[dict, dict]:
    """``({payload words: objects}, {non-null references: objects})`` of a space, from its
    headers and slots (an object padded to the 2-word minimum shows one payload word)."""
    _, offsets = collectors.walk(objects, space, offsets=True)
    headers = objects.words[offsets >> np.uint64(3)]
    nrefs = header_nrefs(headers).astype(np.int64)
    payload = header_words(headers).astype(np.int64) - 1 - nrefs
    owner, slots = slot_words(offsets, headers)
    edges = np.bincount(owner[objects.words[slots] != 0], minlength=len(offsets))
    return histogram(payload), histogram(edges)


def synthetic_histograms(objects: int = 200_000) -> dict[str, tuple[dict, dict]]:
    """The histograms of the bench's workloads: its random graph (2 edges on average,
    0-6 payload words) and GCBench's trees (nodes of 2 references and 2 payload words)."""
    out = {}
    with Heap(max(objects * 96, 8 << 20) // (2 << 20) * (2 << 20) + (2 << 20)) as heap:
        graph = ObjectHeap(heap)
        workloads.random_graph(graph, objects, 2, (0, 6), seed=11)
        out["random graph (bench)"] = heap_histograms(graph)
        tree = ObjectHeap(heap)
        workloads.binary_tree(tree, max(objects.bit_length() - 1, 1), payload_words=2)
        out["GCBench tree nodes"] = heap_histograms(tree)
    return out


def plot_histograms(series: dict[str, tuple[dict, dict]], path: str | Path) -> None:
    """Two panels, payload words and out-degree: the fraction of objects at each value,
    one line per heap (matplotlib, the ``plot`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for panel, (axis, title) in enumerate(zip(axes, ("payload words (8 bytes each)",
                                                    "out-degree (non-null references)"),
                                              strict=True)):
        for name, histograms in series.items():
            counts = histograms[panel]
            total = sum(counts.values()) or 1
            keys = sorted(counts)
            axis.plot([k + 1 for k in keys], [counts[k] / total for k in keys], marker=".",
                      label=name)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel(f"{title}, + 1")
        axis.set_ylabel("fraction of objects")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
