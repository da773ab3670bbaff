"""Collectors over an :class:`~heapalias.objects.ObjectHeap`, run in C without the GIL.

One plan per module, composed from shared policies (MMTk's split):

- plans: :class:`SemiSpace` (:mod:`.semispace`) and :class:`Generational`
  (:mod:`.generational`), all built on :class:`Plan` and listed by :func:`registered`;
- policies: :mod:`.marking` (:func:`mark`, :func:`clear_marks`), :mod:`.tracing`
  (:func:`walk`, :func:`verify`) and :mod:`.cards` (:class:`CardTable`);
- :mod:`.threads`: how many threads mark and SemiSpace collections run on
  (:func:`default_threads`: one per core).

Each loop returns :class:`LoopStats`. A loop that meets a corrupt header or
reference stops there and raises :class:`~heapalias.errors.HeapCorruption`
naming the offset; it never reads outside the heap, even while another thread
or process writes it (each header and slot is read once, and that copy is
checked and used). A reference is followed only to a valid header whose object
fits its space; only :func:`verify` also knows that it is an object start.
Before each call, the spaces and the views the loop will read are checked.
docs/collectors/ has a page per plan, and the checklist for adding one.
"""

from ..native import LoopStats
from ..objects import roots_array
from .cards import CardTable
from .generational import Generational, generational_layout
from .marking import clear_marks, mark
from .plan import Plan, plan_named, register, registered
from .semispace import SEMISPACE_GAP, SemiSpace, semispace_layout
from .threads import default_threads
from .tracing import verify, walk

__all__ = [
    "SEMISPACE_GAP",
    "CardTable",
    "Generational",
    "LoopStats",
    "Plan",
    "SemiSpace",
    "clear_marks",
    "default_threads",
    "generational_layout",
    "mark",
    "plan_named",
    "register",
    "registered",
    "roots_array",
    "semispace_layout",
    "verify",
    "walk",
]
