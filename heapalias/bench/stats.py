"""Statistics for benchmark samples: median, IQR and CV, and a noise-aware comparison.

Two runs of a case differ when a two-sided Mann-Whitney U test rejects "same
distribution" at ``alpha`` (0.05) *and* their medians differ by more than the
larger relative IQR of the two. The first guards against chance with few
samples; the second against differences too small to matter on a noisy machine.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

CV_WARNING = 0.10  # warn when the coefficient of variation reaches 10%
#: A case faster than its limit by more than this has not met a limit: flag the limit.
SUSPECT_RATIO = 1.05


@dataclass(frozen=True)
class Summary:
    """Robust summary of repeated samples (same unit as the samples)."""

    n: int
    median: float
    q1: float
    q3: float
    mean: float
    stdev: float
    minimum: float
    maximum: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def cv(self) -> float:
        """Coefficient of variation: stdev / mean (0 for a single sample)."""
        return self.stdev / self.mean if self.mean else 0.0

    @property
    def noisy(self) -> bool:
        return self.cv >= CV_WARNING

    def as_dict(self) -> dict:
        return {**asdict(self), "iqr": self.iqr, "cv": self.cv}


def summarize(samples: list[float]) -> Summary:
    """Median, quartiles (inclusive method), mean, stdev, min and max."""
    if not samples:
        raise ValueError("no samples to summarize")
    values = sorted(float(x) for x in samples)
    if len(values) == 1:
        v = values[0]
        return Summary(1, v, v, v, v, 0.0, v, v)
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(len(values), median, q1, q3, statistics.fmean(values),
                   statistics.stdev(values), values[0], values[-1])


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie-corrected)."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    pooled = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    ranks = [0.0] * len(pooled)
    tie_term = 0.0
    i = 0
    while i < len(pooled):  # average ranks over ties
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, group) in zip(ranks, pooled, strict=True) if group == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return 1.0
    z = (abs(u1 - n1 * n2 / 2) - 0.5) / math.sqrt(variance)  # continuity correction
    return max(0.0, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))))


@dataclass(frozen=True)
class Change:
    """How run B's samples compare with run A's for one case."""

    ratio: float         # median(B) / median(A)
    median_a: float
    median_b: float
    p_value: float
    noise: float         # the larger relative IQR of the two runs
    significant: bool


def compare(a: list[float], b: list[float], alpha: float = 0.05) -> Change:
    """Compare two sample sets; see the module docstring for the rule."""
    sa, sb = summarize(a), summarize(b)
    ratio = sb.median / sa.median if sa.median else math.inf
    noise = max(sa.iqr / sa.median if sa.median else 0.0, sb.iqr / sb.median if sb.median else 0.0)
    p = mann_whitney_p(a, b)
    return Change(ratio, sa.median, sb.median, p, noise,
                  p < alpha and abs(ratio - 1) > noise)
