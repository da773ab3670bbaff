"""The generational plan: a nursery and two survivor spaces collected by Cheney, an old space
compacted in place, and a card-marking write barrier between them.

The mutator bump-allocates in the nursery. A minor collection (:meth:`Generational.minor`,
and the drivers' allocation slow path) evacuates the young generation from the roots and
from the old objects' slots in dirty cards: an object that has survived fewer than
``tenure_age`` minor collections goes to the other survivor space, an older one to the old
space. A full collection (:meth:`Generational.collect`) marks the heap and slides every live
object into the old space (mark-compact). docs/collectors/generational.md says why.
"""

from __future__ import annotations

import numpy as np

from .. import native
from ..backing import read_only, require_int
from ..errors import InvalidArgument
from ..native import LoopStats, lib
from ..objects import AGE_MASK, Obj, ObjectHeap, Space
from ..views import View
from .cards import CardTable
from .plan import Plan, register

#: Bytes per card: the unit of the remembered set, of the crossing map and of the full
#: collection's compaction table; every space starts and ends on a card boundary.
CARD_BYTES = 1 << lib.HA_CARD_SHIFT
#: The highest tenure age the header's age field can count to.
MAX_TENURE_AGE = AGE_MASK + 1
#: Minor collections an object survives in the young generation before it is promoted.
DEFAULT_TENURE_AGE = 2
#: The young generation's share of the heap, and the nursery's share of the young generation
#: (HotSpot's defaults for its serial and parallel collectors: NewRatio=2, SurvivorRatio=8).
YOUNG_FRACTION = 1 / 3
NURSERY_FRACTION = 8 / 10
SPACE_NAMES = ("nursery", "old", "survivor0", "survivor1")
#: The orders a minor collection can copy in (``enum ha_copy_order``).
COPY_ORDERS = {"breadth-first": lib.HA_COPY_BREADTH_FIRST, "depth-first": lib.HA_COPY_DEPTH_FIRST}
DEFAULT_COPY_ORDER = "breadth-first"


def generational_layout(size: int) -> dict[str, tuple[int, int]]:
    """``{"old", "nursery", "survivor0", "survivor1"}`` in a heap of ``size`` bytes, in that
    order in memory, each on card boundaries: the old space takes 2/3 of the heap, the nursery
    8/10 of the rest and each survivor space 1/10 (HotSpot's default proportions)."""
    def card(offset: float) -> int:
        return int(offset) // CARD_BYTES * CARD_BYTES

    end = card(size)
    young = end - card(end * (1 - YOUNG_FRACTION))
    survivor = card(young * (1 - NURSERY_FRACTION) / 2)
    old_end = end - young
    nursery_end = end - 2 * survivor
    return {"old": (CARD_BYTES, old_end), "nursery": (old_end, nursery_end),
            "survivor0": (nursery_end, nursery_end + survivor),
            "survivor1": (nursery_end + survivor, end)}


@register
class Generational(Plan):
    """Generational collection over four spaces of one ObjectHeap.

    Args:
        objects: the heap; it must have the four spaces, each on card boundaries.
        space_names: the names of the nursery, the old space and the two survivor spaces.

    Stores into objects that may be old must dirty their card (:meth:`write` does); a
    minor collection finds old-to-young references only through dirty cards.
    """

    name = "generational"
    kind = lib.HA_PLAN_GENERATIONAL
    write_barrier = ("card marking: a reference store into an object the mutator did not just "
                     f"allocate dirties the {CARD_BYTES}-byte card of its slot")
    read_barrier = "none"
    steps = (
        "minor, when the nursery fills: evacuate the nursery and the survivor space (Cheney) "
        "from the roots and from the old objects' slots in dirty cards; an object younger than "
        "the tenure age goes to the other survivor space, an older one to the old space",
        "full, when the old space could not take every young object at the next minor "
        "collection: mark the heap, then slide every live object into the old space, the old "
        "ones first (mark-compact)",
    )

    def __init__(self, objects: ObjectHeap, space_names: tuple[str, ...] = SPACE_NAMES) -> None:
        super().__init__(objects)
        if not isinstance(space_names, tuple) or len(space_names) != 4:
            raise InvalidArgument(f"space_names must name 4 spaces, got {space_names!r}")
        spaces = tuple(objects.space(name) for name in space_names)
        if len({id(space) for space in spaces}) != 4:
            raise InvalidArgument("the nursery, old and survivor spaces must all differ")
        for space in spaces:
            if (space.start | space.end) % CARD_BYTES:
                raise InvalidArgument(
                    f"space {space.name!r} [{space.start:#x}, {space.end:#x}) must start and "
                    f"end on a {CARD_BYTES}-byte card boundary", remedy="use generational_layout")
        self._nursery, self._old, self._survivor, self._survivor_to = spaces
        self._cards = CardTable(objects, lib.HA_CARD_SHIFT)
        ncards = len(self._cards.cards)
        self._crossing = native.scratch(ncards, np.uint32, "a crossing map", zeroed=True)
        self._compaction = native.scratch(2 * ncards, np.uint64, "a compaction table",
                                          zeroed=True)
        self._crossing_top = 0
        self._tenure_age = DEFAULT_TENURE_AGE
        self._copy_order = DEFAULT_COPY_ORDER
        self._minor_collections = self._full_collections = self._promotion_failures = 0
        self._promoted = (0, 0)  # the promotion estimate: average bytes, and deviation

    nursery = read_only("_nursery", "Where the mutator allocates.")
    old = read_only("_old", "Where survivors are promoted, compacted by full collections.")
    cards = read_only("_cards", "The remembered set: a CardTable of CARD_BYTES cards.")
    minor_collections = read_only("_minor_collections", "Minor collections so far.")
    full_collections = read_only("_full_collections", "Full collections so far.")
    promotion_failures = read_only(
        "_promotion_failures", "Minor collections the old space ran out during (each kept "
        "what it could not promote in place, and a full collection followed).")

    @property
    def promoted_estimate(self) -> tuple[int, int]:
        """``(average, deviation)`` of the bytes a minor collection promotes (weighted 10%):
        a minor collection runs when the old space has room for ``average + 3 * deviation``
        or for every young object, a full collection otherwise (HotSpot Serial's policy)."""
        return self._promoted

    layout = staticmethod(generational_layout)

    @classmethod
    def over(cls, heap, *, tenure_age: int = DEFAULT_TENURE_AGE,
             copy_order: str = DEFAULT_COPY_ORDER, **objects_options) -> Generational:
        """The plan over a new ObjectHeap laid out by :func:`generational_layout` in ``heap``;
        ``objects_options`` go to ObjectHeap (encoding, colors...)."""
        plan = super().over(heap, **objects_options)
        plan.tenure_age = tenure_age
        plan.copy_order = copy_order
        return plan

    @property
    def copy_order(self) -> str:
        """The order minor collections copy in, so the order survivors lie in: ``breadth-first``
        (Cheney; the default) or ``depth-first`` (pre-order, as a recursive copy would)."""
        return self._copy_order

    @copy_order.setter
    def copy_order(self, value: str) -> None:
        if value not in COPY_ORDERS:
            raise InvalidArgument(f"copy_order must be one of {tuple(COPY_ORDERS)}, got {value!r}")
        self._copy_order = value

    @property
    def tenure_age(self) -> int:
        """Minor collections an object survives before promotion: 1 (at its first) to 16."""
        return self._tenure_age

    @tenure_age.setter
    def tenure_age(self, value: int) -> None:
        value = require_int(value, "tenure_age")
        if not 1 <= value <= MAX_TENURE_AGE:
            raise InvalidArgument(f"tenure_age must be in 1..{MAX_TENURE_AGE}, got {value}")
        self._tenure_age = value

    @property
    def survivors(self) -> Space:
        """The survivor space that holds the young objects that survived a collection."""
        return self._survivor

    @property
    def spaces(self) -> tuple[Space, ...]:
        return self._nursery, self._old, self._survivor, self._survivor_to

    def _reorder(self, spaces: tuple[Space, ...]) -> None:
        self._nursery, self._old, self._survivor, self._survivor_to = spaces

    def reset(self) -> None:
        super().reset()
        self._cards.clear()
        self._crossing_top = 0

    def to_native(self):
        gc = super().to_native()
        native.attach_generations(gc, self._cards.cards, self._crossing, self._compaction,
                                  nursery_end=self._nursery.end,
                                  crossing_top=self._crossing_top, tenure_age=self._tenure_age,
                                  copy_order=COPY_ORDERS[self._copy_order],
                                  promoted=self._promoted)
        return gc

    def from_native(self, gc) -> None:
        super().from_native(gc)
        state = native.generations_state(gc)
        self._crossing_top = state["crossing_top"]
        self._promoted = state["promoted_average"], state["promoted_deviation"]
        self._minor_collections += state["minor_collections"]  # C counts one call's
        self._full_collections += state["full_collections"]
        self._promotion_failures += state["promotion_failures"]

    def write(self, obj: Obj, slot: int, target: Obj | None) -> None:
        """``obj.refs[slot] = target`` through the write barrier: dirties the slot's card."""
        self._cards.write(obj, slot, target)

    def minor(self, roots: np.ndarray, *, through: View | None = None) -> LoopStats:
        """A minor collection: evacuate the young generation; ``roots`` are updated in place.

        SpaceFull if the old space could not take every young object (run :meth:`collect`),
        InvalidArgument if the survivor space to fill is not empty. ``through``: read the
        young objects through this view, as :meth:`Plan.collect` does.
        """
        return self._run_collection(native.collect_young, roots, through)

    def collect(self, roots: np.ndarray, *, through: View | None = None) -> LoopStats:
        """A full collection: mark, then compact every live object into the old space.

        SpaceFull, before anything moves, if the live objects do not fit the old space.
        The compaction moves objects in place, so it reads no other view: ``through`` must
        be None.
        """
        if through is not None:
            raise InvalidArgument("a full generational collection compacts in place and reads "
                                  "no other view", remedy="call minor(roots, through=...)")
        return super().collect(roots)
