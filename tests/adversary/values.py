"""Arguments for public calls: mostly values that should work, now and then ones that must fail.

Every draw comes from the case's ``random.Random``, so a seed replays the same calls.
Good integers come as numpy integers a quarter of the time: every int parameter
must take them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np


class Opaque:
    """An object no parameter accepts, with a stable repr for the call log."""

    def __repr__(self) -> str:
        return "Opaque()"


#: Values of a type no integer, string or object parameter takes.
WRONG_TYPES: tuple[object, ...] = (
    None, True, False, 1.5, float("nan"), float("inf"), "1", "", "64K", b"x", [1], (8, 16),
    {"a": 1}, Opaque(), np.float64(8.0), np.array([1, 2]), np.bool_(True), 1 + 2j,
)
#: Integers outside every range the API takes.
WILD_INTS: tuple[int, ...] = (
    -1, -8, -4096, -(2**63), 2**31 - 1, 2**31, 2**32, 2**32 + 8, 2**46 + 4096, 2**47, 2**48,
    2**63 - 8, 2**63 - 3, 2**63, 2**64 - 8, 2**64, 2**64 + 8, 2**100,
)
NUMPY_INTS = (np.int64, np.uint64, np.int32, np.uint32, np.int16, np.uint8, np.intp)


class Values:
    """Draws from one random stream; ``bad_rate`` is how often a bad value is drawn."""

    def __init__(self, rng: random.Random, bad_rate: float = 0.1) -> None:
        self.rng = rng
        self.bad_rate = bad_rate

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def choice(self, options: Sequence):
        return options[self.rng.randrange(len(options))]

    def numpy_int(self, value: int) -> object:
        """``value`` as a numpy integer type that holds it, or as is if none does."""
        fitting = [t for t in NUMPY_INTS if np.iinfo(t).min <= value <= np.iinfo(t).max]
        return self.choice(fitting)(value) if fitting else value

    def good(self, options: Sequence):
        """One of ``options``; ints come as numpy integers a quarter of the time."""
        value = self.choice(options)
        if isinstance(value, int) and not isinstance(value, bool) and self.chance(0.25):
            return self.numpy_int(value)
        return value

    def pick(self, good: Sequence, bad: Sequence = (), rate: float | None = None):
        """A bad value with probability ``rate`` (default ``bad_rate``), else a good one."""
        rate = self.bad_rate if rate is None else rate
        if bad and self.chance(rate):
            return self.choice(bad)
        return self.good(good)

    def integer(self, good: Sequence[int], bad: Sequence = (), rate: float | None = None):
        """An int parameter: ``good`` ones, or ``bad`` ones, wild ints and wrong types."""
        wild = (*bad, *WILD_INTS, *WRONG_TYPES)
        value = self.pick(good, wild, rate)
        if isinstance(value, int) and value in WILD_INTS and self.chance(0.2):
            return self.numpy_int(value)
        return value

    def text(self, good: Sequence[str], bad: Sequence = (), rate: float | None = None):
        """A string parameter: ``good`` ones, or near misses and wrong types."""
        words = [s for s in good if isinstance(s, str)]
        near = [s.upper() for s in words if s.upper() != s] + [s + " " for s in words[:1]]
        return self.pick(good, (*bad, *near, *WRONG_TYPES), rate)

    def words(self, count: int) -> np.ndarray:
        """``count`` random 64-bit words."""
        return np.array([self.rng.getrandbits(64) for _ in range(count)], dtype=np.uint64)
