"""The object model in numpy: build, read and check object graphs from Python.

This mirrors ``cext/object_model.h`` and is the reference the C loops are
tested against; the layout constants themselves come from the compiled core,
so the layout is defined once, in C. An object is a header word, its
reference slots, then its payload, all 64-bit words, at least 2 words long::

    header: | 63..62 zero | 61..58 age | 57 forwarded | 56 marked |
            | 55..48 magic 0xA5 | 47..32 reference slots | 31..0 size in words |

The age counts the minor collections an object survived in a young generation
(the generational plan); every other loop leaves it as it is.

Heap offset 0 is never an object, so the reference 0 is null in every encoding:

``offset``   byte offset from the heap base (compressed-oops style);
``address``  a raw pointer into the primary view;
``colored``  ``base + (color << shift) + offset`` into a :class:`MultiView`,
             dereferenced as is (ZGC before JDK 21);
``masked``   the same bits, stripped to color 0 on every load (generational ZGC).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from . import native
from .backing import read_only, require_int, require_type
from .errors import HeapCorruption, InvalidArgument, SpaceFull, ViewClosed
from .native import lib
from .views import MultiView, View

# The header layout, as object_model.h defines it.
WORDS_MASK = lib.HA_WORDS_MASK
NREFS_SHIFT = lib.HA_NREFS_SHIFT
NREFS_MASK = lib.HA_NREFS_MASK
MAGIC_SHIFT = lib.HA_MAGIC_SHIFT
MAGIC_MASK = lib.HA_MAGIC_MASK
MAGIC = lib.HA_MAGIC
MARKED = lib.HA_MARKED
FORWARDED = lib.HA_FORWARDED
AGE_SHIFT = lib.HA_AGE_SHIFT
AGE_MASK = lib.HA_AGE_MASK
RESERVED_SHIFT = lib.HA_RESERVED_SHIFT
MIN_WORDS = lib.HA_MIN_WORDS
MAX_REFS = lib.HA_MAX_REFS
MAX_WORDS = lib.HA_MAX_WORDS
FILLER_MAGIC = lib.HA_FILLER_MAGIC
ENCODINGS = {
    "offset": lib.HA_REF_OFFSET,
    "address": lib.HA_REF_ADDRESS,
    "colored": lib.HA_REF_COLORED,
    "masked": lib.HA_REF_MASKED,
}


def make_header(words, nrefs):
    """Header word(s) for objects of ``words`` words with ``nrefs`` reference slots."""
    words = np.asarray(words, dtype=np.uint64)
    nrefs = np.asarray(nrefs, dtype=np.uint64)
    return words | (nrefs << np.uint64(NREFS_SHIFT)) | np.uint64(MAGIC << MAGIC_SHIFT)


def _count_array(values: object, what: str, high: int) -> np.ndarray:
    """``values`` as an int64 array of integers in ``0..high``; InvalidArgument otherwise.

    The range is checked in the values' own dtype, before any arithmetic can wrap.
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:  # e.g. ragged nested sequences
        raise InvalidArgument(f"{what} must be integers, got {values!r}") from exc
    if array.size and array.dtype.kind not in "iu":
        raise InvalidArgument(f"{what} must be integers in 0..{high}, not {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > high):
        raise InvalidArgument(f"{what} must be in 0..{high}")
    return array.astype(np.int64)


def header_words(header) -> np.ndarray | int:
    """The size in words that header word(s) claim (``ha_words`` in C)."""
    return np.asarray(header, dtype=np.uint64) & np.uint64(WORDS_MASK)


def header_nrefs(header) -> np.ndarray | int:
    """The reference slots that header word(s) claim (``ha_nrefs`` in C)."""
    return (np.asarray(header, dtype=np.uint64) >> np.uint64(NREFS_SHIFT)) & np.uint64(NREFS_MASK)


def ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, .., c-1 for each count c, concatenated: each item's place in its group."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


def slot_words(offsets: np.ndarray, headers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(owner, word)`` for every reference slot of the objects at byte ``offsets`` with
    these ``headers``, object by object: the index of its object and its word index."""
    nrefs = header_nrefs(headers).astype(np.int64)
    owner = np.repeat(np.arange(len(offsets)), nrefs)
    first = np.asarray(offsets).astype(np.int64) // 8 + 1
    return owner, first[owner] + ranks(nrefs)


def header_fields(header: int) -> tuple[int, int]:
    """(words, nrefs) one header word claims, as Python ints, checked or not."""
    header = int(header)
    return header & WORDS_MASK, (header >> NREFS_SHIFT) & NREFS_MASK


def header_ok(header: int, offset: int, limit: int) -> bool:
    """The same test as ``ha_header_ok`` in C."""
    header = int(header)
    words, nrefs = header_fields(header)
    return (
        (header >> MAGIC_SHIFT) & MAGIC_MASK == MAGIC and header >> RESERVED_SHIFT == 0
        and words >= MIN_WORDS and nrefs < words and words <= (limit - offset) // 8
    )


def filler_ok(header: int, offset: int, limit: int) -> bool:
    """The same test as ``ha_filler_ok`` in C: a gap a parallel copy filled, which heap walks
    step over."""
    header = int(header)
    words = header & WORDS_MASK
    return (header & ~WORDS_MASK == FILLER_MAGIC << MAGIC_SHIFT and words >= 1
            and words <= (limit - offset) // 8)


@dataclass
class Space:
    """A region ``[start, end)`` of heap offsets, filled by bump allocation up to ``top``."""

    name: str
    start: int
    end: int
    top: int

    @property
    def used(self) -> int:
        return self.top - self.start

    def contains(self, offset: int) -> bool:
        return self.start <= offset < self.top

    def reset(self) -> None:
        """Forget every object in the space (after evacuating it)."""
        self.top = self.start

    def check(self, size: int) -> None:
        """InvalidArgument unless the space lies word-aligned in ``[8, size)`` with
        ``start <= top <= end``: the C loops trust it, and its fields can be reassigned.
        The fields are kept as plain ints: a numpy int16 one would overflow in arithmetic."""
        start, end, top = (require_int(getattr(self, field), f"space {self.name!r} {field}")
                           for field in ("start", "end", "top"))
        if not 8 <= start <= top <= end <= size or (start | end | top) & 7:
            raise InvalidArgument(
                f"space {self.name!r} [{start:#x}, {end:#x}) with top {top:#x} must be "
                f"word-aligned within [8, {size:#x}), its top between its bounds"
            )
        self.start, self.end, self.top = start, end, top


@dataclass(frozen=True)
class RefCodec:
    """Encodes heap offsets as reference words and back, for one heap's encoding."""

    encoding: str
    size: int
    ref_base: int = 0
    shift: int = 0
    ncolors: int = 1
    store_color: int = 0

    def encode(self, offset, color: int | None = None):
        """The reference for ``offset`` (int or array; offset 0 stays null)."""
        color = self.store_color if color is None else color
        if self.encoding == "offset":
            return offset
        add = self.ref_base + ((color << self.shift) if self.encoding != "address" else 0)
        if isinstance(offset, np.ndarray):
            out = offset.astype(np.uint64) + np.uint64(add)
            out[offset == 0] = 0
            return out
        return offset + add if offset else 0

    def decode(self, ref):
        """The heap offset a non-null reference names, or None if it names none.

        Given an array of reference words, an int64 array of offsets, -1 where one names none.
        """
        if isinstance(ref, np.ndarray):
            return self._decode_array(ref.astype(np.uint64))
        ref = int(ref)
        if self.encoding == "offset":
            rel = ref
        else:
            rel = ref - self.ref_base
            if self.encoding in ("colored", "masked"):
                if rel < 0 or rel >> self.shift >= self.ncolors:
                    return None
                rel &= (1 << self.shift) - 1
        if not 0 <= rel < self.size or rel & 7:
            return None
        return rel

    def _decode_array(self, refs: np.ndarray) -> np.ndarray:
        rel = refs - np.uint64(self.ref_base if self.encoding != "offset" else 0)  # wraps
        ok = np.ones(len(refs), bool)
        if self.encoding in ("colored", "masked"):
            ok = (rel >> np.uint64(self.shift)) < np.uint64(self.ncolors)
            rel = rel & np.uint64((1 << self.shift) - 1)
        ok &= (rel < np.uint64(self.size)) & ((rel & np.uint64(7)) == 0)
        return np.where(ok, rel.astype(np.int64), -1)

    def color(self, ref: int) -> int:
        """The color bits of a colored or masked reference (0 for the others)."""
        if self.encoding in ("colored", "masked"):
            return (int(ref) - self.ref_base) >> self.shift
        return 0


class Obj:
    """One object, seen through numpy: cheap to create, holds only the heap and an offset."""

    __slots__ = ("heap", "offset")

    def __init__(self, heap: ObjectHeap, offset: int) -> None:
        self.heap = require_object_heap(heap, "an Obj")
        offset = require_int(offset, "offset")
        if not 8 <= offset < heap.size or offset & 7:
            raise InvalidArgument(f"an object offset is word-aligned in [8, {heap.size:#x}), "
                                  f"not {offset:#x}")
        self.offset = offset

    @property
    def header(self) -> int:
        return int(self.heap.words[self.offset >> 3])

    def _fields(self) -> tuple[int, int]:
        """(words, nrefs) of a header that fits the heap; HeapCorruption otherwise, as
        the C loops do: its refs and payload are indexed by what it claims."""
        header = self.header
        if not header_ok(header, self.offset, self.heap.size):
            raise HeapCorruption(self.offset, f"not an object header: {header:#x}")
        return header_fields(header)

    @property
    def size_words(self) -> int:
        return self._fields()[0]

    @property
    def nrefs(self) -> int:
        return self._fields()[1]

    @property
    def marked(self) -> bool:
        return bool(self.header & MARKED)

    @property
    def age(self) -> int:
        """Minor collections this object survived in a young generation."""
        return (self.header >> AGE_SHIFT) & AGE_MASK

    @property
    def forwarded(self) -> bool:
        return bool(self.header & FORWARDED)

    @property
    def ref(self) -> int:
        """This object's reference in the heap's encoding."""
        return self.heap.codec.encode(self.offset)

    @property
    def refs(self) -> RefSlots:
        return RefSlots(self)

    @property
    def payload(self) -> np.ndarray:
        """The payload words, as a writable zero-copy uint64 array."""
        words, nrefs = self._fields()
        first = self.offset >> 3
        return self.heap.words[first + 1 + nrefs : first + words]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Obj) and other.heap is self.heap and other.offset == self.offset

    def __hash__(self) -> int:
        return hash((id(self.heap), self.offset))

    def __repr__(self) -> str:
        header = self.header
        if not header_ok(header, self.offset, self.heap.size):
            return f"Obj(offset={self.offset:#x}, header={header:#x})"
        words, nrefs = header_fields(header)
        return f"Obj(offset={self.offset:#x}, words={words}, nrefs={nrefs})"


class RefSlots:
    """The reference slots of one object: ``obj.refs[i] = other`` stores an encoded reference."""

    __slots__ = ("obj",)

    def __init__(self, obj: Obj) -> None:
        self.obj = obj

    def __len__(self) -> int:
        return self.obj.nrefs

    @property
    def raw(self) -> np.ndarray:
        """The slots as stored: encoded reference words (0 is null)."""
        first = (self.obj.offset >> 3) + 1
        return self.obj.heap.words[first : first + self.obj.nrefs]

    def _index(self, index: int) -> int:
        index = require_int(index, "slot")
        if not -len(self) <= index < len(self):
            raise InvalidArgument(f"slot {index} out of range for an object with {len(self)} refs")
        return index % len(self)

    def __getitem__(self, index: int) -> Obj | None:
        return self.obj.heap.deref(int(self.raw[self._index(index)]))

    def __setitem__(self, index: int, value: Obj | None) -> None:
        if value is not None and not self.obj.heap.owns(value):
            raise InvalidArgument(f"a slot holds an Obj of the same heap or None, not {value!r}")
        self.raw[self._index(index)] = 0 if value is None else value.ref

    def __iter__(self) -> Iterator[Obj | None]:
        return (self[i] for i in range(len(self)))


class ObjectHeap:
    """Objects in a :class:`~heapalias.Heap`: spaces, an encoding, and allocation.

    Args:
        heap: the heap whose primary view holds the objects, or any read-write
            View, such as :func:`heapalias.heap.join` of several heaps.
        encoding: ``"offset"``, ``"address"``, ``"colored"`` or ``"masked"``.
        colors: the ``heap.multimap(...)`` layout, for colored and masked references.
        spaces: name -> ``(start, end)`` byte offsets; default one space, ``"heap"``,
            covering everything but the first (null) word.
        store_color: the color new references carry (colored and masked).

    What the C loops trust (the view, its size, the encoding and colors, the
    card table's shift) is fixed at construction and read-only; the spaces and
    the views' state are checked again at every loop call.
    """

    def __init__(
        self,
        heap,
        *,
        encoding: str = "offset",
        colors: MultiView | None = None,
        spaces: Mapping[str, tuple[int, int]] | None = None,
        store_color: int = 0,
    ) -> None:
        if not isinstance(encoding, str) or encoding not in ENCODINGS:
            raise InvalidArgument(f"encoding must be one of {tuple(ENCODINGS)}, got {encoding!r}")
        view = view_of(heap)
        if view.prot not in ("rw", "r"):
            raise InvalidArgument("objects need a readable view")
        self._heap = heap
        self._view = view
        self._encoding = encoding
        self._writable = view.prot == "rw"
        self._words = view.array(np.uint64)  # keeps the view mapped
        self._size = self._words.nbytes
        self._colors = colors
        self._color_arrays: list[np.ndarray] = []
        #: Every view the loops read, with the protections they need: see require_whole.
        self._loop_views: list[tuple[View, tuple[str, ...]]] = [(view, ("rw", "r"))]
        if encoding in ("colored", "masked"):
            self._color_arrays = self._hold_colors(colors)
            self._loop_views += [(color, self._color_prots()) for color in colors]
            self._codec = RefCodec(encoding, self._size, colors.base, colors.shift, len(colors),
                                   require_int(store_color, "store_color"))
            if not 0 <= self._codec.store_color < len(colors):
                raise InvalidArgument(f"store_color must be below {len(colors)}")
        elif encoding == "address":
            self._codec = RefCodec(encoding, self._size, view.address)
        else:
            self._codec = RefCodec(encoding, self._size)
        self._native_fields = {
            "base": view.address, "load_base": view.address, "size": self._size,
            "ref_base": self._codec.ref_base, "encoding": ENCODINGS[encoding],
            "shift": self._codec.shift, "ncolors": self._codec.ncolors,
            "store_color": self._codec.store_color,
        }
        if spaces is None:
            spaces = {"heap": (8, self._size)}
        if not isinstance(spaces, Mapping) or not spaces:
            raise InvalidArgument(f"spaces must be a non-empty {{name: (start, end)}} mapping, "
                                  f"got {spaces!r}")
        self.spaces: dict[str, Space] = {}
        for name, bounds in spaces.items():
            if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
                raise InvalidArgument(f"space {name!r} must be (start, end), got {bounds!r}")
            self.add_space(name, *bounds)

    heap = read_only("_heap", "The Heap or View given at construction.")
    view = read_only("_view", "The view that holds the objects.")
    size = read_only("_size", "Heap bytes the objects may occupy.")
    encoding = read_only("_encoding", "How references are encoded.")
    codec = read_only("_codec", "Encodes and decodes this heap's references.")
    colors = read_only("_colors", "The colored layout, or None.")
    writable = read_only("_writable",
                         "False for a read-only view: walks, verify and card scans only.")
    words = read_only("_words", "The heap as one zero-copy uint64 array.")

    def _hold_colors(self, colors: object) -> list[np.ndarray]:
        """Arrays that keep every color view mapped, whole, for the loops' colored loads."""
        if not isinstance(colors, MultiView) or len(colors) == 0:
            raise InvalidArgument(
                f"{self._encoding} references need colors=heap.multimap(n, shift=...)"
            )
        # Colored loops store mark bits and forwarding pointers through each color.
        needed = self._color_prots()
        for color, view in enumerate(colors):
            if view.address != colors.base + (color << colors.shift):
                raise InvalidArgument(f"color {color} is not at base + ({color} << shift)")
            if not self.same_memory(view) or view.prot not in needed:
                raise InvalidArgument(
                    f"colors must be {' or '.join(needed)} views of this heap for "
                    f"{self._encoding}; {view.role} is a {view.prot!r} view "
                    f"{'of this heap' if self.same_memory(view) else 'of other memory'}"
                )
        # A whole array per view: it checks that no part of the view was relocated away.
        return [view.array(np.uint8) for view in colors]

    def _color_prots(self) -> tuple[str, ...]:
        return ("rw",) if self._encoding == "colored" else ("rw", "r")

    def same_memory(self, view: View) -> bool:
        """Whether ``view`` maps the same memory as this heap's view, at the same offsets."""
        return view is self._view or self._view.same_memory(view)

    def require_whole(self) -> None:
        """InvalidArgument unless every view the loops read is still mapped, whole and
        readable: part of a view relocated away is PROT_NONE, and a load there faults.
        ViewClosed once one of them is closed."""
        for view, prots in self._loop_views:
            if view.closed:
                raise ViewClosed(f"view {view.role} of this ObjectHeap is closed",
                                 remedy="run the loops before closing the heap or its layout")
            if view.holes or not view.mapped or view.prot not in prots:
                raise InvalidArgument(
                    f"view {view.role} of this ObjectHeap is no longer whole and "
                    f"{' or '.join(prots)} (relocated ranges {view.holes}, prot {view.prot!r})",
                    remedy="run the loops before relocating part of a view, or over a new heap",
                )

    def describe(self) -> dict:
        """What another process needs to read these objects (see :meth:`from_description`)."""
        return {"encoding": self._encoding,
                "spaces": {s.name: [s.start, s.end, s.top] for s in self.spaces.values()}}

    @classmethod
    def from_description(cls, heap, description: Mapping) -> ObjectHeap:
        """The ObjectHeap another process described, over ``heap`` (e.g. an attached one).

        Only ``offset`` references mean the same thing at another address. Every
        malformed field is an InvalidArgument that names it.
        """
        if not isinstance(description, Mapping):
            raise InvalidArgument(f"a description is a dict as describe() returns, not "
                                  f"{type(description).__name__}")
        encoding = description.get("encoding")
        if encoding != "offset":
            raise InvalidArgument(
                f"description field 'encoding' is {encoding!r}: only 'offset' heaps can be "
                "read elsewhere, as other references hold addresses of the process that "
                "made them")
        spaces = description.get("spaces")
        if not isinstance(spaces, Mapping) or not spaces:
            raise InvalidArgument("description field 'spaces' must be a non-empty "
                                  f"{{name: [start, end, top]}} mapping, got {spaces!r}")
        tops = {}
        for name, value in spaces.items():
            field = f"description field spaces[{name!r}]"
            if not isinstance(value, (list, tuple)) or len(value) != 3:
                raise InvalidArgument(f"{field} must be [start, end, top], got {value!r}")
            tops[name] = [require_int(v, f"{field} {part}")
                          for v, part in zip(value, ("start", "end", "top"), strict=True)]
        objects = cls(heap, spaces={name: (start, end) for name, (start, end, _) in tops.items()})
        for name, (_, _, top) in tops.items():
            space = objects.spaces[name]
            if not space.start <= top <= space.end or top & 7:
                raise InvalidArgument(f"description field spaces[{name!r}] top {top:#x} is "
                                      "outside the space or not word-aligned")
            space.top = top
        return objects

    def require_writable(self, what: str) -> None:
        """InvalidArgument unless loops may write into this heap (a read-only view)."""
        if not self._writable:
            raise InvalidArgument(
                f"{what} writes into the heap, and this ObjectHeap's view is read-only",
                remedy="attach or build it over a read-write view",
            )

    def add_space(self, name: str, start: int, end: int) -> Space:
        """Add a space ``[start, end)``; spaces must not overlap or touch offset 0."""
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"a space name is a non-empty string, not {name!r}")
        start = require_int(start, f"space {name!r} start")
        end = require_int(end, f"space {name!r} end")
        if not 8 <= start <= end <= self._size or (start | end) & 7:
            raise InvalidArgument(
                f"space {name!r} [{start:#x}, {end:#x}) must be word-aligned within "
                f"[8, {self._size:#x})"
            )
        for other in self.spaces.values():
            if start < other.end and other.start < end:
                raise InvalidArgument(f"space {name!r} overlaps space {other.name!r}")
        self.spaces[name] = Space(name, start, end, start)
        return self.spaces[name]

    def space(self, name: str | None = None) -> Space:
        """The named space, or the first one, checked (see :meth:`Space.check`)."""
        if name is None:
            space = next(iter(self.spaces.values()))
        elif not isinstance(name, str) or name not in self.spaces:
            raise InvalidArgument(f"no space {name!r}; spaces are {list(self.spaces)}")
        else:
            space = self.spaces[name]
        space.check(self._size)
        return space

    def checked_spaces(self, names: Iterable[str] | None = None) -> list[Space]:
        """The named spaces (every space when ``names`` is None or empty), each checked."""
        return [self.space(name) for name in (names or self.spaces)]

    def owns(self, obj: object) -> bool:
        """Whether ``obj`` is an :class:`Obj` of this heap."""
        return isinstance(obj, Obj) and obj.heap is self

    def space_of(self, offset: int) -> Space | None:
        return next((s for s in self.spaces.values() if s.contains(offset)), None)

    # ---- allocation ----

    def new(self, nrefs: int = 0, payload_words: int = 0, *, space: str | None = None) -> Obj:
        """Allocate one zeroed object by bumping the space's top."""
        offsets = self.build([require_int(nrefs, "nrefs")],
                             [require_int(payload_words, "payload_words")], space=space)
        return Obj(self, int(offsets[0]))

    def build(
        self,
        nrefs: np.ndarray,
        payload_words: np.ndarray,
        edges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        *,
        space: str | None = None,
    ) -> np.ndarray:
        """Allocate many objects at once and wire them up, vectorised.

        Args:
            nrefs, payload_words: one entry per object.
            edges: ``(source, slot, target)`` object indices: slot ``slot`` of object
                ``source`` refers to object ``target``.
        Returns:
            The heap offset of each object.
        """
        self.require_writable("allocation")
        nrefs = _count_array(nrefs, "nrefs", MAX_REFS)
        payload = _count_array(payload_words, "payload_words", MAX_WORDS)
        if nrefs.shape != payload.shape or nrefs.ndim != 1:
            raise InvalidArgument("nrefs and payload_words must be 1-D arrays of one length")
        words = np.maximum(1 + nrefs + payload, MIN_WORDS)  # each below 2**33: no wrap
        if len(words) and words.max() > MAX_WORDS:
            raise InvalidArgument(f"an object of {int(words.max())} words does not fit a "
                                  f"header: objects have at most {MAX_WORDS} words")
        target = self.space(space)
        free = target.end - target.top
        # Summed as floats first: the int64 sum of many big objects could wrap.
        approximate = float(words.sum(dtype=np.float64)) * 8
        need = int(words.sum()) * 8 if approximate < 1 << 62 else int(approximate)
        if need > free:
            raise SpaceFull(
                f"space {target.name!r} has {free} bytes free, {need} are needed",
                remedy="use a larger heap or space, or collect first",
            )
        # One offset per object, also for none: the cumulative sum starts at 0.
        offsets = target.top + 8 * np.concatenate(([0], np.cumsum(words)))[:-1]
        # Checked before anything is written: a malformed edge allocates nothing.
        wiring = None if edges is None else self._wiring(offsets, nrefs, edges)
        first, last = target.top >> 3, (target.top + need) >> 3
        self._words[first:last] = 0
        self._words[offsets >> 3] = make_header(words, nrefs)
        target.top += need
        if wiring is not None:
            slots, refs = wiring
            self._words[slots] = refs
        return offsets.astype(np.uint64)

    def link(self, offsets, nrefs, source, slot, target) -> None:
        """Store references ``offsets[target]`` into slot ``slot`` of ``offsets[source]``.

        ``offsets`` and ``nrefs`` describe the objects (as :meth:`build` made them).
        """
        self.require_writable("linking objects")
        slots, refs = self._wiring(offsets, nrefs, (source, slot, target))
        self._words[slots] = refs

    def _wiring(self, offsets, nrefs, edges) -> tuple[np.ndarray, np.ndarray]:
        """The word indices and reference words that storing ``edges`` writes, each
        checked: InvalidArgument naming the part that is malformed."""
        if not isinstance(edges, (tuple, list, np.ndarray)) or len(edges) != 3:
            raise InvalidArgument(f"edges must be three arrays (source, slot, target), "
                                  f"got {edges!r}")
        source, slot, target = edges
        offsets = _count_array(offsets, "offsets", self._size - 8)
        nrefs = _count_array(nrefs, "nrefs", MAX_REFS)
        n = offsets.size
        misplaced = n and (offsets.min() < 8 or (offsets & 7).any())
        if nrefs.shape != offsets.shape or offsets.ndim != 1 or misplaced:
            raise InvalidArgument("offsets must be word-aligned object offsets, one per nrefs")
        source = _count_array(source, "source", max(n - 1, 0))
        target = _count_array(target, "target", max(n - 1, 0))
        slot = _count_array(slot, "slot", MAX_REFS - 1)
        if not (source.shape == slot.shape == target.shape) or source.ndim != 1:
            raise InvalidArgument("edges must be three 1-D arrays of one length")
        if len(source) and (n == 0 or (slot >= nrefs[source]).any()
                            or (offsets[source] + 8 * (slot + 1) >= self._size).any()):
            raise InvalidArgument("an edge names an object or slot that does not exist")
        offsets = offsets.astype(np.uint64)
        slots = (offsets[source] >> np.uint64(3)) + np.uint64(1) + slot.astype(np.uint64)
        return slots, self._codec.encode(offsets[target])

    # ---- reading ----

    def deref(self, ref: int) -> Obj | None:
        """The object a reference names (None for null); HeapCorruption if it names none."""
        ref = require_int(ref, "ref")
        if ref == 0:
            return None
        offset = self.codec.decode(ref)
        space = self.space_of(offset) if offset is not None else None
        if space is None or not header_ok(self.words[offset >> 3], offset, space.top):
            where = 0 if offset is None else offset
            raise HeapCorruption(where, f"reference {ref:#x} names no object")
        return Obj(self, offset)

    def objects(self, space: str | None = None) -> Iterator[Obj]:
        """Every object of a space, bottom to top, over any fillers (the pure-Python heap
        walk)."""
        target = self.space(space)
        offset = target.start
        while offset < target.top:
            header = int(self.words[offset >> 3])
            if header_ok(header, offset, target.top):
                yield Obj(self, offset)
            elif not filler_ok(header, offset, target.top):
                raise HeapCorruption(offset, "not an object header")
            offset += header_fields(header)[0] * 8

    def reachable(self, roots: Iterable[int]) -> list[Obj]:
        """Objects reachable from reference words ``roots``, in breadth-first order."""
        seen: dict[int, Obj] = {}
        queue = deque(obj for obj in (self.deref(int(r)) for r in roots) if obj is not None)
        while queue:
            obj = queue.popleft()
            if obj.offset in seen:
                continue
            seen[obj.offset] = obj
            queue.extend(child for child in obj.refs if child is not None)
        return list(seen.values())

    def shape(self, roots: Iterable[int]) -> tuple:
        """A canonical description of the graph reachable from ``roots``.

        Two heaps hold isomorphic graphs (same objects, payloads and edges, any
        addresses) exactly when their shapes are equal.
        """
        roots = [int(r) for r in roots]
        order = {obj.offset: i for i, obj in enumerate(self.reachable(roots))}

        def index(ref: int) -> int:
            obj = self.deref(ref)
            return -1 if obj is None else order[obj.offset]

        nodes = []
        for offset in order:
            obj = Obj(self, offset)
            payload = tuple(int(x) for x in obj.payload)
            nodes.append((obj.nrefs, payload, tuple(index(int(r)) for r in obj.refs.raw)))
        return tuple(index(r) for r in roots), tuple(nodes)

    # ---- the C view of this heap ----

    def native(self):
        """A fresh ``ha_heap *`` describing this heap to the C loops, made from the
        values fixed at construction once :meth:`require_whole` holds."""
        self.require_whole()
        return native.heap_struct(self._native_fields)

    def __repr__(self) -> str:
        spaces = ", ".join(f"{s.name}={s.used}/{s.end - s.start}" for s in self.spaces.values())
        return f"ObjectHeap({self.encoding}, {spaces})"


def roots_array(roots) -> np.ndarray:
    """Roots as a 1-D contiguous uint64 array (a copy unless it already is one)."""
    try:
        array = np.asarray(roots)
    except (TypeError, ValueError) as exc:  # e.g. ragged nested sequences
        raise InvalidArgument(f"roots must be reference words, got {roots!r}") from exc
    if array.ndim != 1 or (array.size and (array.dtype.kind not in "iu" or array.min() < 0)):
        raise InvalidArgument(f"roots must be a 1-D sequence of reference words (unsigned "
                              f"integers), got {array.dtype} of shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.uint64)


def require_object_heap(value: object, what: str) -> ObjectHeap:
    """``value`` if it is an ObjectHeap; InvalidArgument naming ``what`` needs one."""
    return require_type(value, ObjectHeap, what)


def view_of(heap: object) -> View:
    """The view objects live in: ``heap`` itself if it is a View, else a Heap's primary
    view (any object with a ``view``: this module cannot import Heap)."""
    view = heap if isinstance(heap, View) else getattr(heap, "view", None)
    if not isinstance(view, View):
        raise InvalidArgument(f"objects live in a Heap or a View, got {type(heap).__name__}")
    return view
