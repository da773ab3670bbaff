"""The collector interface: a plan declares its spaces, its barriers and the steps of a
collection, and the registry of plans.

A plan has two halves. Its C half is a table of hooks (cext/plan.h): the
allocation slow path, the write barrier, the read barrier and collect, through
which the C mutators (:mod:`heapalias.drivers`) allocate, store, load and
collect. Its Python half, a :class:`Plan` subclass in its own module, lays out
the spaces, binds them to an :class:`~heapalias.objects.ObjectHeap`, and hands
them to C and takes them back. :func:`register` makes a plan known to the
drivers, the CLI and the contract test (tests/test_plans.py), which checks every
registered plan the moment it is registered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, TypeVar

import numpy as np

from .. import native
from ..backing import read_only, require_int
from ..errors import InvalidArgument
from ..native import LoopStats
from ..objects import ObjectHeap, Space, require_object_heap, roots_array, view_of
from ..views import View


class Plan(ABC):
    """One collector bound to an ObjectHeap that has the plan's spaces.

    Subclasses set the class attributes and implement :meth:`layout`,
    :attr:`spaces` and :meth:`_reorder`.
    """

    #: The name drivers, the CLI and the bench know the plan by.
    name: ClassVar[str]
    #: The C hook table (``enum ha_plan``) the drivers run the mutator through.
    kind: ClassVar[int]
    #: What the plan's write barrier does to each reference store ("none" if nothing).
    write_barrier: ClassVar[str]
    #: What the plan's read barrier does to each reference load ("none" if nothing).
    read_barrier: ClassVar[str]
    #: What one collection does, in order.
    steps: ClassVar[tuple[str, ...]]

    def __init__(self, objects: ObjectHeap) -> None:
        require_object_heap(objects, f"a {self.name} plan").require_writable(self.name)
        self._objects = objects

    objects = read_only("_objects", "The heap being collected.")

    @classmethod
    @abstractmethod
    def layout(cls, size: int) -> dict[str, tuple[int, int]]:
        """``{name: (start, end)}``: the spaces of a heap of ``size`` bytes."""

    @classmethod
    def over(cls, heap, **objects_options) -> Plan:
        """The plan over a new ObjectHeap laid out by :meth:`layout` in ``heap``
        (a Heap or View); ``objects_options`` go to ObjectHeap (encoding, colors...)."""
        return cls(ObjectHeap(heap, spaces=cls.layout(view_of(heap).size), **objects_options))

    @property
    @abstractmethod
    def spaces(self) -> tuple[Space, ...]:
        """The plan's spaces in C's order: the one mutators allocate in first."""

    @property
    def allocation_space(self) -> Space:
        """Where mutators allocate now."""
        return self.spaces[0]

    @abstractmethod
    def _reorder(self, spaces: tuple[Space, ...]) -> None:
        """Take the order C left the spaces in (a collection may swap them)."""

    def reset(self) -> None:
        """Forget every object: each space empty."""
        for space in self.spaces:
            space.reset()

    def to_native(self):
        """The ``ha_collector *`` a C mutator or collection runs on; read it back with
        :meth:`from_native` after the call."""
        spaces = self.spaces
        for space in spaces:
            space.check(self._objects.size)
        return native.collector_struct(self.kind, self._objects.native(), spaces)

    def from_native(self, gc) -> None:
        """Take the spaces' tops and order back from an ``ha_collector`` C has run on."""
        by_start = {space.start: space for space in self.spaces}
        ordered = []
        for start, _end, top in native.collector_spaces(gc):
            space = by_start[start]
            space.top = top
            ordered.append(space)
        self._reorder(tuple(ordered))

    def collect(self, roots: np.ndarray, *, through: View | None = None) -> LoopStats:
        """Collect with the plan's C collection hook; ``roots`` are updated in place.

        ``through``: read objects through this view instead of the primary one,
        e.g. a read-only alias, as a concurrent copier would.
        """
        return self._run_collection(native.collect, roots, through)

    def collect_for(self, roots: np.ndarray, nbytes: int = 0) -> LoopStats:
        """Make room for an allocation of ``nbytes`` in the allocation space, as the drivers do
        when it fills: the plan's policy picks the collection (for the generational plan, a
        minor or a full one). ``roots`` are updated in place; SpaceFull if no collection can
        make that room."""
        nbytes = require_int(nbytes, "nbytes")
        if not 0 <= nbytes < 1 << 63:
            raise InvalidArgument(f"nbytes must be in 0..2**63 - 1, got {nbytes}")
        return self._run_collection(lambda gc, r: native.collect_for(gc, r, nbytes), roots, None)

    def _run_collection(self, call, roots: np.ndarray, through: View | None) -> LoopStats:
        """Run ``call(gc, roots)``, a wrapper of a collection hook in native.py, on this plan's
        spaces, and take them back; its stats, or its error raised."""
        # Updated in place, so the roots must already be what roots_array would give.
        if (not isinstance(roots, np.ndarray) or roots_array(roots) is not roots
                or not roots.flags.writeable):
            raise InvalidArgument(
                "roots must be a writeable 1-D contiguous uint64 array (see roots_array)")
        gc = self.to_native()
        loads = None if through is None else _whole_view_of(self._objects, through)
        if loads is not None:
            gc.heap.load_base = loads.ctypes.data  # the array holds the mapping during the call
        rc, st = call(gc, roots)
        del loads
        self.from_native(gc)
        return native.loop_result(rc, st, self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._objects!r})"


def _whole_view_of(objects: ObjectHeap, view: View) -> np.ndarray:
    """An array over all of ``view``, which must map the same memory as ``objects``,
    readable and whole (no range relocated away): a collection reads any byte of it."""
    if not isinstance(view, View) or not objects.same_memory(view):
        raise InvalidArgument(f"`through` must be a view of this heap's memory, not {view!r}",
                              remedy="make it with heap.alias()")
    # ViewClosed if closed; InvalidArgument if PROT_NONE or if a range was relocated away.
    return view.array(np.uint8)


_REGISTRY: dict[str, type[Plan]] = {}
P = TypeVar("P", bound=type[Plan])


def register(plan: P) -> P:
    """Class decorator: make ``plan`` known by its name to drivers, CLI and contract test."""
    if not (isinstance(plan, type) and issubclass(plan, Plan)):
        raise InvalidArgument(f"only Plan subclasses can be registered, not {plan!r}")
    if _REGISTRY.get(plan.name, plan) is not plan:
        raise InvalidArgument(f"a plan named {plan.name!r} is already registered")
    _REGISTRY[plan.name] = plan
    return plan


def registered() -> dict[str, type[Plan]]:
    """Every registered plan by name, in registration order."""
    return dict(_REGISTRY)


def plan_named(name: str) -> type[Plan]:
    """The registered plan called ``name``; InvalidArgument listing them otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise InvalidArgument(f"no collector {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]
