"""Family ``api``: random sequences of public calls, with bad values, in random orders.

A case keeps a small world of what its calls made (heaps, views, arrays, object
heaps, collectors, relocation areas, ...) and applies 12-40 operations drawn by
weight, each on random members of that world or on values no call should take.
At the end it closes some of the world in random order and drops the rest.

Besides "a refusal is a HeapAliasError", a few oracles check calls that succeed:
a read-only attachment never widens, a closed view or area makes nothing new,
``new`` returns the object it was asked for, arrays have the view's writeability,
and ``MultiView.address`` lands in the color it names.
"""

from __future__ import annotations

import gc
import itertools
import socket

import numpy as np

import heapalias as ha
from heapalias import collectors, drivers, relocation, workloads
from heapalias.objects import Obj
from heapalias.system import PAGE_SIZES, hugepage_pool

from .harness import TAMPER_MARK, Case, Outcome
from .values import WRONG_TYPES, Opaque, Values

KIB, MIB = 1 << 10, 1 << 20
SIZES = {"4k": (64 * KIB, 128 * KIB, MIB, "64K", "1M", " 256 KiB "), "thp": (2 * MIB, "2M"),
         "2m": (2 * MIB, 4 * MIB), "1g": ()}
BAD_SIZES = (0, -4096, 4095, 4097, 65 * KIB + 1, 2**46 + 4096, "64X", "", "-64K", "1e6", "0x10000",
             "9" * 30 + "T", 65536.0)
BACKINGS = ("memfd", "memfd", "anon", "private")
NAMES = ("heap", "young", "a-b_c.1", "x" * 48)
BAD_NAMES = ("x" * 49, "a b", "a/b", "\u00e9t\u00e9", "a\x00b", "heap\n", "*")
PROTS = ("rw", "r", "none")
STRATEGIES = ("auto", "memfd", "mremap")
ENCODINGS = ("offset", "address", "colored", "masked")
DTYPES = (np.uint8, np.uint64, "u8", "<i4", ">u2", np.float64, np.int16, np.dtype("u8"), "V3",
          [("a", "u8"), ("b", "u4")], None)
BAD_DTYPES = ("(2,)u8", "V0", "O", "U1", "S0", "M8", "x", 5, Opaque(), "f99", [("a", "O")],
              np.dtype((np.uint8, (2, 2))))
PREFIX = {"heap": "h", "view": "v", "layout": "L", "array": "a", "handle": "hd", "objects": "oh",
          "obj": "o", "semi": "ss", "cards": "ct", "area": "ra", "roots": "r"}
#: Attributes the C loops read; replacing them must be refused or stay harmless. (No huge
#: size for an ObjectHeap: a CardTable made over it would clear gigabytes of cards.)
TAMPERED = {
    "cards": {"card_shift": (0, 2, 31, 40, 64, -1, 200), "cards": "tiny-array"},
    "objects": {"size": (16, 4 << 20), "encoding": ("bogus",), "view": "another-view"},
    "view": {"size": (1 << 40, 0), "address": (0, 4096), "prot": ("rw", "bogus")},
    "space": {"top": (0, 1 << 40, 12), "end": (1 << 40,), "start": (0, 1 << 40)},
    "semi": {"from_space": "to_space"},
}


class World:
    """What a case's calls made, by kind, each named as the log names it."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.items: dict[str, list] = {kind: [] for kind in PREFIX}
        self.counter = itertools.count(1)
        self.readonly: set[int] = set()  # ids of heaps attached read-only, and of their views
        self.closed_areas: set[int] = set()

    def pick(self, kind: str):
        """A random member of ``kind``, or None if there is none."""
        items = self.items[kind]
        return self.case.rng.choice(items) if items else None

    def add(self, kind: str, value: object, name: str) -> None:
        self.items[kind].append(value)
        self.case.names[id(value)] = name
        for view in _views_of(value):
            self.case.track(view.address, view.size)

    def make(self, kind: str, label: str, fn, *args: object, keep: bool = True,
             **kwargs: object) -> Outcome:
        """Call ``fn`` and name what it returns in the log; keep it in the world unless told."""
        name = self.new_name(kind)
        outcome = self.case.call(f"{name} = {label}", fn, *args, **kwargs)
        if outcome.ok and outcome.value is not None:
            self.case.names[id(outcome.value)] = name
            if keep:
                self.add(kind, outcome.value, name)
        return outcome

    def keep(self, kind: str, value: object, label: str) -> None:
        """Keep a value a call returned inside something else (``_.roots``, a color view)."""
        name = self.new_name(kind)
        self.case.step(f"{name} = {label}")
        self.add(kind, value, name)

    def new_name(self, kind: str) -> str:
        return f"{PREFIX[kind]}{next(self.counter)}"

    def forget(self, kind: str, value: object) -> None:
        self.items[kind] = [v for v in self.items[kind] if v is not value]

    def name(self, value: object) -> str:
        """How the log names ``value``."""
        return self.case.render(value)


def _is_int(value: object) -> bool:
    """An int or a numpy integer, not a bool: what every int parameter must take."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _views_of(value: object) -> list[ha.View]:
    """The views a call's result maps (a case checks nothing is left mapped there)."""
    if isinstance(value, ha.View):
        return [value]
    if isinstance(value, ha.MultiView):
        return list(value)
    if isinstance(value, ha.Heap) and not value.closed:
        return [value.view]
    return []


def pool_has_pages(spare: int = 16) -> bool:
    """True when the 2 MiB pool can give a few pages without running short for others."""
    try:
        return hugepage_pool(PAGE_SIZES["2m"]).available >= spare
    except OSError:
        return False


class ApiFuzzer:
    """Draws and applies operations for one case."""

    def __init__(self, case: Case, hugetlb: bool) -> None:
        self.case = case
        self.v = Values(case.rng)
        self.world = World(case)
        self.pages = ("4k", "4k", "4k", "thp", *(("2m",) if hugetlb else ()))
        self.ops = [(weight, getattr(self, f"op_{name}")) for name, weight in OP_WEIGHTS.items()]

    # ---- helpers ----

    def any_object(self):
        """A member of any kind of the world, or a value of the wrong type."""
        kinds = [k for k, items in self.world.items.items() if items]
        if kinds and self.v.chance(0.7):
            return self.world.pick(self.v.choice(kinds))
        return self.v.choice(WRONG_TYPES)

    def pick_or_wrong(self, kind: str, rate: float = 0.03):
        """A member of ``kind`` (made now if there is none); now and then anything else."""
        if self.v.chance(rate):
            return self.any_object()
        value = self.world.pick(kind)
        if value is None:
            value = self.provide(kind)
        return self.any_object() if value is None else value

    def provide(self, kind: str):
        """A plain, valid ``kind`` made for an operation that needs one, or None."""
        if kind == "heap":
            made = self.world.make("heap", "ha.Heap", ha.Heap, MIB)
        elif kind == "view":
            heap = self.pick_or_wrong("heap", 0)
            return heap.view if isinstance(heap, ha.Heap) else None
        elif kind == "objects":
            heap = self.pick_or_wrong("heap", 0)
            made = self.world.make("objects", "ha.ObjectHeap", ha.ObjectHeap, heap,
                                   spaces=collectors.semispace_layout(self.size_of(heap)))
        elif kind == "obj":
            objects = self.pick_or_wrong("objects", 0)
            if not isinstance(objects, ha.ObjectHeap):
                return None
            made = self.world.make("obj", f"{self.world.name(objects)}.new", objects.new, 2, 1)
        else:
            return None
        return made.value

    def heap_or_view(self):
        """What an ObjectHeap is built over: mostly a heap, sometimes one of its views."""
        kind = "heap" if self.v.chance(0.7) else "view"
        return self.pick_or_wrong(kind)

    def space_name(self, objects) -> object:
        """A space name of ``objects`` (or None for its first), or one it does not have."""
        names = list(getattr(objects, "spaces", {}) or {"heap": None})
        return self.v.pick([None, *names], ("nope", 0, "", *(f"{n}x" for n in names[:1])))

    def size_of(self, target, default: int = MIB) -> int:
        """``target.size`` when it is a sane size, to draw offsets from; else ``default``."""
        size = getattr(target, "size", default)
        return size if isinstance(size, int) and 0 < size < 1 << 40 else default

    def roots_for(self, objects) -> object:
        """Roots a workload made, or garbage in the many shapes roots can take."""
        roots = self.world.pick("roots")
        good = np.zeros(0, np.uint64) if roots is None else roots.copy()
        bad = [good.astype(np.int64), list(good), good[::2] if len(good) > 1 else good[:0],
               self.v.words(3), np.array([8, 16, 2**64 - 8], np.uint64), good.reshape(1, -1),
               np.array([1.5]), "roots"]
        return self.v.pick([good], bad, 0.3)

    def made_views(self) -> list:
        """Every view the case made (closed or not)."""
        return [v for v in self.world.items["view"] if isinstance(v, ha.View)]

    # ---- heaps, views, layouts ----

    def op_heap(self) -> None:
        pages = self.v.text(self.pages, ("1g", "4K", "2M", "huge"), 0.1)
        if isinstance(pages, str) and pages == "1g":  # sizes that take no 1 GiB page
            size = self.v.choice((4096, 2 * MIB, 1.5, "1.5G"))
        else:
            good = SIZES.get(pages, SIZES["4k"]) if isinstance(pages, str) else SIZES["4k"]
            size = self.v.integer(good, BAD_SIZES, 0.15)
        # A valid size in the GiBs (a wild int) is mapped lazily and closed at once: a
        # workload filling it would fill the machine.
        big = _is_int(size) and int(size) > 16 * MIB
        made = self.world.make(
            "heap", "ha.Heap", ha.Heap, size, backing=self.v.text(BACKINGS, ("shm",), 0.1),
            pages=pages, name=self.v.text(NAMES, BAD_NAMES, 0.1),
            populate=False if big else self.v.choice((True, False, 1, 0, None, "no")), keep=not big)
        if big and made.ok:
            self.case.call(f"{self.world.name(made.value)}.close", made.value.close)

    def op_huge_heap(self) -> None:
        """A valid but enormous lazily-populated heap: map, alias and touch a page, then close."""
        size = self.v.choice((1 << 40, 1 << 44, 1 << 46))
        made = self.world.make("heap", "ha.Heap", ha.Heap, size, populate=False,
                               backing=self.v.choice(BACKINGS), keep=False)
        if not made.ok:
            return
        heap = made.value
        name = self.world.name(heap)
        alias = self.case.call(f"{name}.alias", heap.alias)
        if alias.ok:
            tail = self.case.call(f"{name}_alias.array", alias.value.array, np.uint8,
                                  heap.size - 4096, 8)
            if tail.ok:
                self.touch(tail.value)
        self.case.call(f"{name}.close", heap.close)

    def op_alias(self) -> None:
        heap = self.world.pick("heap")
        if heap is None:
            return
        prot = self.v.text(PROTS, ("w", "rwx", 3))
        address = None
        if self.v.chance(0.3):
            used = [v.address for v in self.made_views()]
            address = self.v.integer(used or [0x7E00_0000_0000], (0, 1, 4095, 2**47 - 4096))
        made = self.world.make("view", f"{self.world.name(heap)}.alias", heap.alias,
                               self.v.text(STRATEGIES), prot=prot, address=address)
        self.inherit_readonly(heap, made, prot)

    def inherit_readonly(self, heap, made: Outcome, prot: object,
                         where: str = "Heap.alias") -> None:
        """A view of a read-only attachment is read-only too, and may not be writable."""
        if not made.ok or id(heap) not in self.world.readonly:
            return
        views = _views_of(made.value)
        self.world.readonly.update(id(v) for v in views)
        self.case.expect(prot != "rw", "readonly-widened", where,
                         "a heap attached with prot='r' gave a writable view")

    def op_multimap(self) -> None:
        heap = self.world.pick("heap")
        if heap is None:
            return
        bits = max(self.size_of(heap) - 1, 1).bit_length()
        prot = self.v.text(PROTS)
        made = self.world.make(
            "layout", f"{self.world.name(heap)}.multimap", heap.multimap,
            self.v.integer((1, 2, 3, 4), (0, 17, 16)), shift=self.v.integer(
                (bits, bits + 1, bits + 2), (0, 12, bits - 1, 46, 63, 64, 65)),
            strategy=self.v.text(STRATEGIES), prot=prot)
        self.inherit_readonly(heap, made, prot, "Heap.multimap")
        if made.ok:
            for color, view in enumerate(made.value):
                self.world.keep("view", view, f"{self.world.name(made.value)}[{color}]")

    def op_join(self) -> None:
        parts = [self.pick_or_wrong("heap") for _ in range(self.v.choice((1, 2, 2, 3)))]
        prot = self.v.text(PROTS)
        made = self.world.make("view", "ha.join", ha.join, *parts, prot=prot)
        readonly = next((p for p in parts if id(p) in self.world.readonly), None)
        if readonly is not None:
            self.inherit_readonly(readonly, made, prot, "join")

    def op_protect(self) -> None:
        view = self.world.pick("view")
        if view is None:
            return
        prot = self.v.text(PROTS, ("rwx",))
        done = self.case.call(f"{self.world.name(view)}.protect", view.protect, prot)
        if done.ok and id(view) in self.world.readonly:
            self.case.expect(prot != "rw", "readonly-widened", "View.protect",
                             "a view of a heap attached with prot='r' became writable")

    def op_close(self) -> None:
        kind = self.v.choice(("view", "view", "heap", "layout", "area", "handle"))
        target = self.world.pick(kind)
        if target is None:
            return
        self.case.call(f"{self.world.name(target)}.close", target.close)
        if kind == "area":
            self.world.closed_areas.add(id(target))
        if kind == "handle" or self.v.chance(0.3):
            self.world.forget(kind, target)

    def op_array(self) -> None:
        view = self.world.pick("view")
        if view is None:
            return
        size = self.size_of(view)
        dtype = self.v.pick(DTYPES, BAD_DTYPES, 0.15)
        offset = self.v.integer((0, 0, 8, 4096, size // 2, size - 8, size), (-1, 1, size + 8))
        count = self.v.pick((None, None, None, 0, 1, 16), (-1, size + 1, 2**63, 2**64, 1.5, "1"))
        made = self.world.make("array", f"{self.world.name(view)}.array", view.array, dtype,
                               offset, count)
        if made.ok:
            array = made.value
            self.case.expect(array.nbytes <= view.size, "wrong-result", "View.array",
                             f"an array of {array.nbytes} bytes from a view of {view.size}")
            self.case.expect(not array.flags.writeable or view.prot == "rw", "wrong-result",
                             "View.array", f"a writeable array from a {view.prot!r} view")
            self.case.expect(not view.closed, "wrong-result", "View.array",
                             "a closed view made a new array")

    def touch(self, array) -> None:
        """Read an array's first, middle and last bytes; write them back where writeable."""
        raw = array.view(np.uint8) if array.dtype.itemsize and array.ndim == 1 else array
        name = self.world.name(array)
        self.case.step(f"touch({name})  # {raw.size} bytes, writeable={array.flags.writeable}")
        if raw.size == 0:
            return
        for index in (0, raw.size // 2, raw.size - 1):
            value = raw[index]
            if array.flags.writeable:
                raw[index] = value
        if not array.flags.writeable:
            try:
                array.flags.writeable = True
                self.case.finding("readonly-widened", "numpy", f"{name} of a read-only view "
                                  "was made writeable")
            except ValueError:
                pass

    def op_touch(self) -> None:
        array = self.world.pick("array")
        if array is not None:
            self.touch(array)

    def op_drop_array(self) -> None:
        array = self.world.pick("array")
        if array is not None:
            self.case.step(f"del {self.world.name(array)}")
            self.world.forget("array", array)

    def op_address(self) -> None:
        layout = self.world.pick("layout")
        if layout is None:
            return
        color = self.v.integer(range(len(layout)), (len(layout), -1, -len(layout)))
        offset = self.v.integer((0, 8, layout[0].size - 8), (layout[0].size, -8))
        name = self.world.name(layout)
        made = self.case.call(f"{name}.address", layout.address, color, offset)
        if not made.ok:
            return
        back = self.case.call(f"{name}.color_of", layout.color_of, made.value)
        self.case.expect(_is_int(made.value) and back.ok and back.value == color,
                         "wrong-result", "MultiView.address",
                         f"address({color!r}, {offset!r}) = {made.value!r} is in color "
                         f"{back.value if back.ok else back.error!r}")

    def op_color_of(self) -> None:
        layout = self.world.pick("layout")
        if layout is not None:
            self.case.call(f"{self.world.name(layout)}.color_of", layout.color_of,
                           self.v.integer((layout.base, layout.base + 8), (0, layout.base - 8)))

    def op_pages_report(self) -> None:
        heap = self.world.pick("heap")
        if heap is not None:
            self.case.call(f"{self.world.name(heap)}.pages_report", heap.pages_report)

    def op_gc(self) -> None:
        self.case.step("gc.collect()")
        gc.collect()

    # ---- sharing in one process ----

    def op_share(self) -> None:
        heap = self.world.pick("heap")
        if heap is None:
            return
        meta = self.v.choice(({}, {"note": "x"}, {"roots": [8, 16]}, {"bad": Opaque()}))
        self.world.make("handle", f"{self.world.name(heap)}.share", heap.share, **meta)

    def op_attach(self) -> None:
        handle = self.world.pick("handle")
        if handle is None:
            return
        prot = self.v.text(("r", "rw"), ("none",))
        made = self.world.make("heap", "ha.attach", ha.attach, handle, prot=prot,
                               populate=self.v.choice((False, True)))
        if made.ok and prot == "r":
            self.world.readonly.update((id(made.value), id(made.value.view)))
            self.case.expect(made.value.view.prot == "r", "wrong-result", "attach",
                             "attach(prot='r') gave a writable primary view")

    def op_forged_handle(self) -> None:
        handle = self.world.pick("handle")
        fd = self.v.integer([handle.fd] if handle else [-1], (-1, 10**6, 2**31))
        size = self.v.integer([handle.size] if handle else [64 * KIB], BAD_SIZES)
        made = self.world.make(  # not kept: closing it would close another handle's fd
            "handle", "ha.HeapHandle", ha.HeapHandle, fd, size,
            self.v.text(["4k"] if handle is None else [handle.pages], ("2m", "1g", "5k")),
            self.v.text(NAMES, BAD_NAMES), self.v.pick([{}], ([], "meta", None)), keep=False)
        if made.ok:
            self.world.make("heap", "ha.attach", ha.attach, made.value,
                            prot=self.v.text(("r", "rw")))

    def op_send_receive(self) -> None:
        handle = self.world.pick("handle")
        if handle is None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours, theirs:
            theirs.settimeout(2)
            sent = self.case.call(f"{self.world.name(handle)}.send", handle.send, ours)
            if sent.ok:
                self.world.make("handle", "ha.HeapHandle.receive", ha.HeapHandle.receive, theirs)

    # ---- objects ----

    def op_object_heap(self) -> None:
        target = self.heap_or_view()
        size = self.size_of(target)
        spaces = self.v.pick(
            (None, collectors.semispace_layout(size), {"a": (8, size // 2), "b": (size // 2, size)},
             {"a": (np.int64(8), np.int64(64))}),
            ({"a": (0, 8)}, {"a": (8, size + 8)}, {"a": (16, 8)}, {"a": (9, 17)}, {"a": (8,)},
             {"a": "xy"}, [], {1: (8, 16)}, {"a": (8, 2**64)}, {"a": (8.0, 64.0)}, "abc",
             {"a": (8, 64), "b": (32, 128)}), 0.25)
        encoding = self.v.text(ENCODINGS)
        colors = self.v.pick([self.world.pick("layout")], (Opaque(), [], "colors"), 0.1)
        made = self.world.make("objects", "ha.ObjectHeap", ha.ObjectHeap, target,
                               encoding=encoding, colors=colors, spaces=spaces,
                               store_color=self.v.integer((0, 0, 1), (-1, 99)))
        if made.ok and id(target) in self.world.readonly:
            self.case.expect(not made.value.writable, "readonly-widened", "ObjectHeap",
                             "an ObjectHeap over a read-only attachment is writable")

    def op_from_description(self) -> None:
        objects = self.world.pick("objects")
        description = objects.describe() if objects is not None else {"encoding": "offset"}
        self.world.make("objects", "ha.ObjectHeap.from_description",
                        ha.ObjectHeap.from_description, self.heap_or_view(),
                        self.mangled(description))

    def mangled(self, description: dict) -> object:
        """A description, often broken one way or another."""
        if self.v.chance(0.1):
            return self.v.choice((None, [], "offset", 5, {"spaces": {}}, {}))
        description = {k: (dict(v) if isinstance(v, dict) else v) for k, v in description.items()}
        spaces = description.get("spaces", {})
        name = self.v.choice(list(spaces)) if spaces else "heap"
        how = self.v.choice(("keep", "keep", "drop", "encoding", "top", "start", "end", "shape",
                             "type", "spaces"))
        if how == "drop":
            description.pop(self.v.choice(("encoding", "spaces")), None)
        elif how == "encoding":
            description["encoding"] = self.v.choice((None, 5, "address", ["offset"]))
        elif how in ("top", "start", "end") and name in spaces:
            entry = list(spaces[name])
            entry[("start", "end", "top").index(how)] = self.v.integer(
                (8, entry[1] + 8, entry[0] - 8), ("8", 1.5, None))
            spaces[name] = entry
        elif how == "shape":
            spaces[name] = self.v.choice(([8, 16], [8, 16, 8, 0], 8, "8-16", {"start": 8}, None))
        elif how == "type":
            spaces[self.v.choice((5, None, ""))] = [8, 16, 8]
        elif how == "spaces":
            description["spaces"] = self.v.choice(([[8, 16, 8]], "spaces", None, 5))
        return description

    def op_new(self) -> None:
        objects = self.world.pick("objects")
        if objects is None:
            return
        nrefs = self.v.integer((0, 1, 2, 3), (0x10000, 2**63 - 3))
        payload = self.v.integer((0, 1, 4), (2**63 - 3, 2**40, 2**32))
        made = self.world.make("obj", f"{self.world.name(objects)}.new", objects.new, nrefs,
                               payload, space=self.space_name(objects))
        if not made.ok:
            return
        if not all(_is_int(v) for v in (nrefs, payload)):
            self.case.finding("accepted-bad-value", "ObjectHeap.new",
                              f"new({nrefs!r}, {payload!r}) made {made.value!r}")
            return
        obj, words = made.value, max(1 + int(nrefs) + int(payload), 2)
        self.case.expect(obj.nrefs == nrefs and obj.size_words == words, "wrong-result",
                         "ObjectHeap.new", f"new({nrefs!r}, {payload!r}) made {obj!r}")

    def op_build(self) -> None:
        objects = self.world.pick("objects")
        if objects is None:
            return
        n = self.v.choice((0, 1, 3, 8))
        nrefs = self.v.pick([np.array([self.v.choice((0, 1, 2)) for _ in range(n)])],
                            (np.array([[1, 2]]), np.array([-1] * max(n, 1)), [0.5] * n,
                             np.array([2**62] * max(n, 1)), "nrefs"))
        payload = self.v.pick([np.arange(n) % 3], (np.arange(n + 1), np.full(max(n, 1), 2**61),
                                                   np.full(n, -1)))
        edges = None
        if n and self.v.chance(0.5):
            edges = self.v.pick([(np.arange(n), np.zeros(n, int), np.arange(n)[::-1].copy())],
                                [(np.array([n]), np.array([0]), np.array([0])),
                                 (np.array([0]), np.array([5]), np.array([0])),
                                 (np.array([0, 1]), np.array([0]), np.array([0])), "edges"], 0.4)
        made = self.case.call(f"{self.world.name(objects)}.build", objects.build, nrefs, payload,
                              edges, space=self.space_name(objects))
        if made.ok and len(made.value):
            roots = objects.codec.encode(made.value[:4]).astype(np.uint64)
            self.world.keep("roots", roots, "encode(_[:4])")

    def op_link(self) -> None:
        objects = self.world.pick("objects")
        if objects is None:
            return
        offsets = self.v.pick([np.array([8, 8], np.uint64)],
                              (self.v.words(2), np.array([2**40, 8], np.uint64)))
        self.case.call(f"{self.world.name(objects)}.link", objects.link, offsets, [1, 1],
                       *self.v.pick([([0], [0], [1])], (([2], [0], [0]), ([0], [-1], [0]))))

    def op_deref(self) -> None:
        objects = self.world.pick("objects")
        if objects is None:
            return
        roots = self.world.pick("roots")
        good = [int(r) for r in roots.ravel()] if roots is not None and roots.size else [0]
        self.world.make("obj", f"{self.world.name(objects)}.deref", objects.deref,
                        self.v.integer(good, (8, 12, objects.size, 2**64 - 8)))

    def op_make_obj(self) -> None:
        objects = self.world.pick("objects")
        if objects is not None:
            self.world.make("obj", "Obj", Obj, objects,
                            self.v.integer((8, 16), (objects.size, objects.size + 8, 12)))

    def op_obj(self) -> None:
        obj = self.world.pick("obj")
        if obj is None:
            return
        name = self.world.name(obj)
        nrefs = obj.nrefs if self.case.call(f"{name}.nrefs", lambda: obj.nrefs,
                                            where="Obj.nrefs").ok else 1
        slot = self.v.integer(range(max(nrefs, 1)), (nrefs, -nrefs - 1, "0"))
        action = self.v.choice(("get", "set", "payload", "iterate"))
        if action == "get":
            self.case.call(f"{name}.refs.__getitem__", lambda: obj.refs[slot], where="RefSlots")
        elif action == "set":
            other = self.v.pick([self.world.pick("obj"), None], (Opaque(), 5))
            self.case.call(f"{name}.refs.__setitem__", obj.refs.__setitem__, slot, other)
        elif action == "payload":
            self.case.call(f"{name}.payload", lambda: obj.payload.sum(), where="Obj.payload")
        else:
            self.case.call(f"list({name}.refs)", lambda: list(obj.refs), where="RefSlots")

    def op_add_space(self) -> None:
        objects = self.world.pick("objects")
        if objects is not None:
            size = objects.size
            self.case.call(f"{self.world.name(objects)}.add_space", objects.add_space,
                           self.v.text(("extra", "young")),
                           self.v.integer((8, size // 2, size - 64), (size + 8, 3)),
                           self.v.integer((size // 2, size), (4, size * 2)))

    # ---- workloads and drivers ----

    def op_workload(self) -> None:
        objects = self.pick_or_wrong("objects")
        space = self.space_name(objects)
        small = (0, 1, 5, 64, 300)
        kind = self.v.choice(("binary_tree", "linked_list", "random_graph", "large_objects"))
        if kind == "binary_tree":
            args = (self.v.integer((0, 2, 5, 8), (41, 40)),)
            kwargs = {"top_down": self.v.choice((True, False)),
                      "payload_words": self.v.integer((0, 1, 3), (2**21,))}
        elif kind == "linked_list":
            args = (self.v.integer(small, (2**40, 2**41)),)
            kwargs = {"shuffled": self.v.choice((True, False)),
                      "seed": self.v.integer((0, 7, 2**64 - 1), (2**64,))}
        elif kind == "random_graph":
            args = (self.v.integer(small, (2**40,)), self.v.integer((0, 1, 2, 4), (0x8000, 0x7FFF)),
                    self.v.pick(((0, 4), (2, 2), {0: 1, 3: 2.5}, {1: np.float32(1)}, {5: 1}),
                                ((4, 0), (0,), (0, 2**21), {}, {0: 0}, {0: -1}, {0: float("nan")},
                                 {0: "1"}, {-1: 1}, {2**21: 1}, {"a": 1}, [0, 4], "x", None,
                                 (0.5, 2), {0: True})))
            kwargs = {"seed": self.v.integer((0, 1, 99)), "nroots": self.v.integer((0, 1, 4, 16),
                                                                                  (2**21,))}
        else:
            args = (self.v.integer((0, 1, 3), (2**40,)), self.v.integer((24, 4096, 64 * KIB),
                                                                        (0, 23, 2**41)))
            kwargs = {}
        made = self.case.call(f"workloads.{kind}", getattr(workloads, kind), objects, *args,
                              space=space, **kwargs)
        if made.ok:
            self.world.keep("roots", made.value.roots, "_.roots")

    def op_driver(self) -> None:
        objects = self.pick_or_wrong("objects")
        if self.v.chance(0.9):
            self.case.call("drivers.binary_trees", drivers.binary_trees, objects,
                           self.v.integer((0, 2, 4, 6), (31,)))
        else:
            self.case.call("drivers.gcbench", drivers.gcbench, objects)

    # ---- collectors ----

    def op_semispace(self) -> None:
        if self.v.chance(0.4):
            self.world.make("semi", "ha.SemiSpace.halves", ha.SemiSpace.halves,
                            self.heap_or_view(), encoding=self.v.text(("offset", "address")))
            return
        objects = self.pick_or_wrong("objects")
        names = list(getattr(objects, "spaces", {}) or ["from", "to"])
        self.world.make("semi", "ha.SemiSpace", ha.SemiSpace, objects,
                        self.v.text(names, ("nope",)), self.v.text(names[::-1], ("nope",)))

    def op_collect(self) -> None:
        semi = self.world.pick("semi")
        if semi is None:
            return
        through = self.v.pick((None, None, *self.made_views()[-4:]), ("view", Opaque()), 0.1)
        roots = self.roots_for(semi.objects)
        made = self.case.call(f"{self.world.name(semi)}.collect", semi.collect, roots,
                              through=through)
        if made.ok and isinstance(roots, np.ndarray):
            self.case.expect(roots.ndim == 1, "accepted-bad-value", "SemiSpace.collect",
                             f"collected through {roots.ndim}-D roots of shape {roots.shape}")
            self.world.keep("roots", roots.ravel(), "the collected roots")

    def op_loop(self) -> None:
        objects = self.pick_or_wrong("objects")
        name = self.world.name(objects)
        spaces = self.v.pick((None, list(getattr(objects, "spaces", {}))[:1]), (["nope"], "from"))
        which = self.v.choice(("mark", "walk", "verify", "clear_marks"))
        if which == "mark":
            self.case.call("collectors.mark", collectors.mark, objects, self.roots_for(objects),
                           spaces=spaces, stack_capacity=self.v.integer((1, 3, 1 << 16), (0,)))
        elif which == "walk":
            made = self.case.call("collectors.walk", collectors.walk, objects,
                                  self.space_name(objects), offsets=self.v.choice((False, True)))
            if made.ok and isinstance(made.value, tuple):
                offsets = made.value[1]
                self.case.expect(not len(offsets) or int(offsets.max()) < objects.size,
                                 "wrong-result", "collectors.walk", f"{name}: offset past the heap")
        elif which == "verify":
            self.case.call("collectors.verify", collectors.verify, objects,
                           self.roots_for(objects), spaces=spaces)
        else:
            self.case.call("collectors.clear_marks", collectors.clear_marks, objects,
                           self.space_name(objects))

    def op_cards(self) -> None:
        cards = self.world.pick("cards")
        if cards is None or self.v.chance(0.3):
            self.world.make("cards", "ha.CardTable", ha.CardTable, self.pick_or_wrong("objects"),
                            self.v.integer((3, 6, 9, 12, 30), (2, 31, 64)))
            return
        name = self.world.name(cards)
        action = self.v.choice(("write", "write", "scan", "clear"))
        if action == "write":
            obj = self.pick_or_wrong("obj")
            self.case.call(f"{name}.write", cards.write, obj, self.v.integer((0, 1), (2, 2**32)),
                           self.v.pick([self.world.pick("obj"), None], (Opaque(),)))
        elif action == "scan":
            names = list(getattr(cards.objects, "spaces", ["from"]))
            self.case.call(f"{name}.scan", cards.scan, self.v.text(names, ("nope",)),
                           self.v.text(names[::-1], ("nope",)))
        else:
            self.case.call(f"{name}.clear", cards.clear)

    # ---- relocation ----

    def op_area(self) -> None:
        area = self.world.pick("area")
        if area is None or self.v.chance(0.3):
            heap = self.pick_or_wrong("heap")
            page = getattr(heap, "page_size", 4096)
            self.world.make("area", "RelocationArea", relocation.RelocationArea, heap,
                            self.v.integer((page, 4 * page, 16 * page), (page + 1, 2**47)))
            return
        own = [v for v in area.heap.views if v.prot == "rw"]  # the views remap can move from
        view = self.v.choice(own) if own and self.v.chance(0.8) else self.pick_or_wrong("view")
        page, size = area.heap.page_size, self.size_of(view)
        made = self.world.make(
            "view", f"{self.world.name(area)}.remap", area.remap, view,
            self.v.integer((0, page, size // 2 // page * page), (size, 1)),
            self.v.integer((page, 2 * page), (0, size + page)),
            self.v.integer((0, page, area.size - page), (area.size, 3)),
            populate=self.v.choice((False, True)), keep=False)
        if made.ok:
            self.case.expect(id(area) not in self.world.closed_areas, "use-after-close",
                             "RelocationArea.remap", "remap after close() mapped into the "
                             "released range")
            self.world.keep("view", made.value[0], "_[0]")

    def op_copy(self) -> None:
        source, target = self.pick_or_wrong("view"), self.pick_or_wrong("view")
        size = min(self.size_of(source), self.size_of(target))
        self.case.call("relocation.copy", relocation.copy, source,
                       self.v.integer((0, 8, size // 2), (size, -8)),
                       self.v.integer((8, 4096, size // 2), (0, size + 1)), target,
                       self.v.integer((0, size // 2), (size,)))

    # ---- replacing attributes the loops trust ----

    def op_tamper(self) -> None:
        kind = self.v.choice(list(TAMPERED))
        owner = self.world.pick("objects" if kind == "space" else kind)
        if owner is None:
            return
        # Not owner.space(): that checks the space, which an earlier tamper may have broken.
        target = next(iter(owner.spaces.values())) if kind == "space" else owner
        attribute = self.v.choice(list(TAMPERED[kind]))
        choices = TAMPERED[kind][attribute]
        if choices == "tiny-array":
            value = np.zeros(1, np.uint8)
        elif choices == "another-view":
            value = self.world.pick("view")
        elif choices == "to_space":
            value = owner.to_space
        else:
            value = self.v.choice(choices)
        label = f"{self.world.name(owner)}{'.space()' if kind == 'space' else ''}.{attribute}"
        self.case.step(f"{TAMPER_MARK}{label} = {self.case.render(value)}")
        try:
            setattr(target, attribute, value)
            self.case.tampered = True
        except (AttributeError, TypeError, ha.HeapAliasError) as exc:  # read-only: as it should
            self.case.step(f"  -> {type(exc).__name__}")

    # ---- the case ----

    def run(self) -> None:
        for _ in range(self.v.choice((1, 2))):
            self.world.make("heap", "ha.Heap", ha.Heap, self.v.choice((MIB, 256 * KIB)),
                            backing=self.v.choice(BACKINGS[:3]))
        weights = [w for w, _ in self.ops]
        for _ in range(self.case.rng.randint(12, 40)):
            self.case.rng.choices(self.ops, weights)[0][1]()
        self.tear_down()

    def tear_down(self) -> None:
        """Close a random part of the world in random order; drop the rest unclosed."""
        closable = [v for kind in ("area", "layout", "view", "heap", "handle")
                    for v in self.world.items[kind]]
        self.case.rng.shuffle(closable)
        for value in closable:
            if self.v.chance(0.7):
                self.case.call(f"{self.world.name(value)}.close", value.close)
        for items in self.world.items.values():
            items.clear()


OP_WEIGHTS = {
    "heap": 3, "huge_heap": 0.2, "alias": 4, "multimap": 2, "join": 1, "protect": 3, "close": 3,
    "array": 5, "touch": 4, "drop_array": 2, "address": 1, "color_of": 0.5, "pages_report": 0.3,
    "gc": 0.5, "share": 1.5, "attach": 1.5, "forged_handle": 0.7, "send_receive": 0.7,
    "object_heap": 3, "from_description": 1.5, "new": 3, "build": 1, "link": 0.5, "deref": 1.5,
    "make_obj": 0.5, "obj": 2, "add_space": 0.7, "workload": 3, "driver": 0.3, "semispace": 2,
    "collect": 3, "loop": 4, "cards": 2, "area": 2, "copy": 1, "tamper": 1,
}


def warm_up() -> None:
    """Load what the first case would otherwise load (and keep) while its leaks are counted."""
    with ha.Heap(MIB) as heap:
        semi = ha.SemiSpace.halves(heap)
        graph = workloads.random_graph(semi.objects, 50, seed=1, space="from")
        roots = graph.roots.copy()
        semi.collect(roots)
        collectors.verify(semi.objects, roots)
        heap.pages_report()
        with heap.share() as handle:
            ha.attach(handle).close()
    gc.collect()


def run_case(case: Case) -> None:
    ApiFuzzer(case, hugetlb=pool_has_pages()).run()
