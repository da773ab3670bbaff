"""The MMU curve of each design (matplotlib, from the ``plot`` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import HeapAliasError
from .study import DesignStudy

#: Windows the curve is drawn over: 10 us to 1 s.
WINDOWS_NS = np.logspace(4, 9, 41)


def plot_mmu(studies: list[DesignStudy], path: str | Path) -> None:
    """Minimum mutator utilization against window length, one line per design and pages."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise HeapAliasError("--plot needs matplotlib",
                             remedy="pip install 'heapalias[plot]'") from exc
    fig, ax = plt.subplots(figsize=(8, 5))
    for study in studies:
        ax.plot(WINDOWS_NS / 1e6, study.mmu_curve(WINDOWS_NS), marker=".",
                label=f"{study.design} ({study.pages})")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("window (ms)")
    ax.set_ylabel("minimum mutator utilization")
    ax.set_title("MMU: the worst share of any window the mutator ran")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
