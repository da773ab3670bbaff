"""The Python object API and the reference encodings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import heapalias as ha
from heapalias import objects as layout
from heapalias.collectors import walk
from heapalias.native import lib
from heapalias.objects import FORWARDED, MARKED, RefCodec, header_ok, make_header


@pytest.fixture
def heap():
    with ha.Heap("1M", name="objects") as heap:
        yield heap


def test_new_objects_have_refs_and_payload(heap) -> None:
    objs = heap.objects
    a = objs.new(nrefs=2, payload_words=3)
    b = objs.new(nrefs=0, payload_words=1)
    assert (a.size_words, a.nrefs, b.size_words) == (6, 2, 2)
    assert a.offset == 8 and b.offset == 8 + 6 * 8
    assert list(a.refs) == [None, None]
    a.refs[0] = b
    a.refs[-1] = a
    a.payload[:] = [7, 8, 9]
    assert a.refs[0] == b and a.refs[1] == a and a.refs.raw[0] == b.offset
    assert heap.view.array(np.uint64)[(a.offset >> 3) + 3] == 7  # zero-copy
    assert not a.marked and not a.forwarded
    a.refs[0] = None
    assert a.refs[0] is None


def test_min_object_is_two_words(heap) -> None:
    assert heap.objects.new().size_words == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"nrefs": -1}, ha.InvalidArgument), ({"nrefs": 0x10000}, ha.InvalidArgument),
     ({"payload_words": -2}, ha.InvalidArgument), ({"payload_words": 1 << 20}, ha.SpaceFull)],
)
def test_bad_allocations(heap, kwargs, error) -> None:
    with pytest.raises(error):
        heap.objects.new(**kwargs)


def test_bad_slot_writes(heap) -> None:
    a = heap.objects.new(nrefs=1)
    with pytest.raises(ha.InvalidArgument):
        a.refs[1] = a
    with pytest.raises(ha.InvalidArgument):
        a.refs[0] = 42
    with ha.Heap("64K") as other, pytest.raises(ha.InvalidArgument):
        a.refs[0] = other.objects.new()


def test_build_wires_edges_vectorised(heap) -> None:
    objs = heap.objects
    offsets = objs.build(
        np.array([2, 1, 0]), np.array([0, 1, 2]),
        edges=(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([1, 2, 2])),
    )
    first, second, third = (objs.deref(int(objs.codec.encode(int(o)))) for o in offsets)
    assert first.refs[0] == second and first.refs[1] == third and second.refs[0] == third
    assert [o.size_words for o in objs.objects()] == [3, 3, 3]
    with pytest.raises(ha.InvalidArgument):
        bad_slot = (np.array([0]), np.array([1]), np.array([0]))
        objs.build(np.array([1]), np.array([0]), edges=bad_slot)
    with pytest.raises(ha.InvalidArgument):
        objs.build(np.array([1, 2]), np.array([0]))


def test_spaces_must_fit_and_not_overlap(heap) -> None:
    objs = ha.ObjectHeap(heap, spaces={"a": (8, 4096), "b": (4096, 8192)})
    assert objs.space().name == "a" and objs.space("b").end == 8192
    for start, end in [(0, 64), (8, heap.size + 8), (100, 200), (4000, 5000)]:
        with pytest.raises(ha.InvalidArgument):
            objs.add_space("bad", start, end)
    with pytest.raises(ha.InvalidArgument):
        objs.space("missing")
    objs.new(space="b")
    assert objs.space("b").used == 16


def test_deref_rejects_what_is_not_an_object(heap) -> None:
    objs = heap.objects
    obj = objs.new(nrefs=1, payload_words=4)
    for bad in (obj.offset + 8, heap.size + 8, 3, 1 << 40):
        with pytest.raises(ha.HeapCorruption):
            objs.deref(bad)


def test_header_layout_matches_the_c_model() -> None:
    header = int(make_header(5, 2))
    assert header == 5 | 2 << 32 | 0xA5 << 48
    assert header_ok(header, 8, 8 + 5 * 8) and not header_ok(header, 8, 8 + 4 * 8)
    assert header_ok(header | MARKED | FORWARDED, 8, 64)
    assert header_ok(header | 0xF << 58, 8, 64)  # any age
    assert not header_ok(header | 1 << 62, 8, 64) and not header_ok(header | 1 << 63, 8, 64)
    assert not header_ok(int(make_header(1, 0)), 8, 64)  # under the 2-word minimum
    assert not header_ok(int(make_header(3, 3)), 8, 64)  # more slots than words


def test_layout_constants_come_from_the_c_core() -> None:
    """objects.py defines no layout of its own: every constant is object_model.h's."""
    for name in ("WORDS_MASK", "NREFS_SHIFT", "NREFS_MASK", "MAGIC_SHIFT", "MAGIC_MASK",
                 "MAGIC", "MARKED", "FORWARDED", "AGE_SHIFT", "AGE_MASK", "RESERVED_SHIFT",
                 "MIN_WORDS", "MAX_REFS", "MAX_WORDS"):
        assert getattr(layout, name) == getattr(lib, f"HA_{name}"), name
    assert layout.ENCODINGS == {"offset": lib.HA_REF_OFFSET, "address": lib.HA_REF_ADDRESS,
                                "colored": lib.HA_REF_COLORED, "masked": lib.HA_REF_MASKED}


#: Headers near the valid ones: the fields a header claims, the magic right or
#: not, and any of the flag and reserved bits 56..63; or any 64-bit word at all.
FIELD_HEADERS = st.builds(
    lambda words, nrefs, magic, flags: words | nrefs << 32 | magic << 48 | flags << 56,
    st.one_of(st.integers(0, 8), st.integers(0, 0xFFFFFFFF)),
    st.one_of(st.integers(0, 8), st.integers(0, 0xFFFF)),
    st.one_of(st.just(0xA5), st.integers(0, 0xFF)),
    st.one_of(st.just(0), st.sampled_from([1, 2, 3]), st.integers(0, 0xFF)),
)
HEADERS = st.one_of(FIELD_HEADERS, st.integers(0, (1 << 64) - 1))


def test_header_ok_agrees_with_the_c_check() -> None:
    """Python's header_ok and C's ha_header_ok accept the same headers: a walk of a
    space holding one header fails at that header exactly when Python rejects it."""
    with ha.Heap("64K", name="layout") as heap:
        objects = heap.objects
        space = objects.space()
        words = objects.words

        @settings(max_examples=400, deadline=None)
        @given(header=HEADERS, limit_words=st.integers(0, 64))
        def agree(header: int, limit_words: int) -> None:
            words[1] = header  # the rest of the heap stays zero: no valid header
            space.top = 8 + 8 * limit_words
            expected = header_ok(header, 8, space.top)
            try:
                walk(objects)
                rejected_first = False
            except ha.HeapCorruption as exc:
                rejected_first = exc.offset == 8
            assert rejected_first == (not expected and limit_words > 0), hex(header)

        agree()


@pytest.mark.parametrize("encoding", ["offset", "address", "colored", "masked"])
def test_codec_round_trip(encoding) -> None:
    codec = RefCodec(encoding, 1 << 20, ref_base=0x7F0000000000 if encoding != "offset" else 0,
                     shift=24, ncolors=3, store_color=2)
    for offset in (8, 4096, (1 << 20) - 8):
        ref = codec.encode(offset)
        assert codec.decode(ref) == offset
        if encoding in ("colored", "masked"):
            assert codec.color(ref) == 2
            assert codec.decode(codec.encode(offset, color=1)) == offset
    assert codec.encode(0) == 0
    assert codec.decode(codec.encode(8) + 4) is None  # misaligned
    arr = codec.encode(np.array([0, 8, 16], dtype=np.uint64))
    assert arr[0] == 0 and [codec.decode(r) for r in arr[1:]] == [8, 16]


@settings(max_examples=60, deadline=None)
@given(encoding=st.sampled_from(["offset", "address", "colored", "masked"]),
       words=st.lists(st.one_of(st.integers(0, (1 << 64) - 1),
                                st.integers(0x7F0000000000 - 64, 0x7F0000000000 + (4 << 24))),
                      max_size=40))
def test_an_array_decodes_as_each_of_its_references_does(encoding, words) -> None:
    codec = RefCodec(encoding, 1 << 20, ref_base=0x7F0000000000 if encoding != "offset" else 0,
                     shift=24, ncolors=3, store_color=2)
    decoded = codec.decode(np.array(words, dtype=np.uint64))
    assert decoded.dtype == np.int64
    assert [None if d < 0 else int(d) for d in decoded] == [codec.decode(w) for w in words]


def test_colored_heap_needs_a_layout(heap) -> None:
    with pytest.raises(ha.InvalidArgument):
        ha.ObjectHeap(heap, encoding="colored")
    with pytest.raises(ha.InvalidArgument):
        ha.ObjectHeap(heap, encoding="zgc")
    with pytest.raises(ha.InvalidArgument):  # colored loops store through every color
        ha.ObjectHeap(heap, encoding="colored", colors=heap.multimap(2, shift=21, prot="r"))
    colors = heap.multimap(3, shift=21)
    objs = ha.ObjectHeap(heap, encoding="colored", colors=colors, store_color=1)
    with pytest.raises(ha.ViewInUse):  # the object heap's arrays pin every color's protection
        colors[2].protect("r")
    a, b = objs.new(nrefs=1), objs.new()
    a.refs[0] = b
    assert colors.color_of(int(a.refs.raw[0])) == 1 and a.refs[0] == b


def test_heap_objects_is_created_once_and_released_on_close() -> None:
    heap = ha.Heap("64K")
    objs = heap.objects
    assert heap.objects is objs and objs.encoding == "offset"
    heap.close()
    del objs
    assert not heap.view.mapped
    with pytest.raises(ha.ViewClosed):
        _ = heap.objects


def test_sizes_are_bounded_before_any_arithmetic(heap) -> None:
    """new(5, 2**63 - 3) wrapped in int64 into a 2-word object with 5 reference slots."""
    objs = heap.objects
    top = objs.space().top
    for nrefs, payload in [(5, 2**63 - 3), (0, 2**32), (0xFFFF, 2**32 - 0xFFFF), (0, 2**64),
                           (2**63, 0), (1, -(2**63)), (0, 2.0), (True, 0), ("1", 0)]:
        with pytest.raises(ha.InvalidArgument):
            objs.new(nrefs, payload)
    for nrefs, payload in [(np.array([1], dtype=np.uint64), np.array([2**64 - 1], np.uint64)),
                           (np.array([1.0]), np.array([1])), ([[1], [2]], [1, 2]),
                           (np.array([1]), np.array(["a"]))]:
        with pytest.raises(ha.InvalidArgument):
            objs.build(nrefs, payload)
    with pytest.raises(ha.SpaceFull):  # each fits a header, together they do not fit the heap
        objs.build(np.zeros(3, dtype=np.int64), np.full(3, 2**32 - 2))
    assert objs.space().top == top  # nothing was allocated
    assert objs.new(np.int64(2), np.uint8(1)).size_words == 4


def test_link_checks_its_offsets_and_edges(heap) -> None:
    objs = heap.objects
    offsets = objs.build(np.array([1, 1]), np.array([0, 0]))
    for bad in [([heap.size], [1], [0], [0], [0]), ([3], [1], [0], [0], [0]),
                (offsets, [1], [0], [0], [0]), (offsets, [1, 1], [0], [1], [2]),
                (offsets, [1, 1], [0], [-1], [1]), (offsets, [1, 1], ["a"], [0], [1])]:
        with pytest.raises(ha.InvalidArgument):
            objs.link(*bad)
    objs.link(offsets, [1, 1], [0], [0], [1])
    assert objs.deref(int(offsets[0])).refs[0].offset == offsets[1]


@pytest.mark.parametrize(("description", "field"), [
    ([("encoding", "offset")], "dict"),
    ({}, "'encoding'"),
    ({"encoding": "address", "spaces": {"a": [8, 64, 8]}}, "'encoding'"),
    ({"encoding": ["offset"], "spaces": {"a": [8, 64, 8]}}, "'encoding'"),
    ({"encoding": "offset"}, "'spaces'"),
    ({"encoding": "offset", "spaces": [[8, 64, 8]]}, "'spaces'"),
    ({"encoding": "offset", "spaces": {}}, "'spaces'"),
    ({"encoding": "offset", "spaces": {"a": [8, 64]}}, "spaces['a']"),
    ({"encoding": "offset", "spaces": {"a": "8, 64, 8"}}, "spaces['a']"),
    ({"encoding": "offset", "spaces": {"a": None}}, "spaces['a']"),
    ({"encoding": "offset", "spaces": {"a": [8, "64", 8]}}, "spaces['a'] end"),
    ({"encoding": "offset", "spaces": {"a": [8.0, 64, 8]}}, "spaces['a'] start"),
    ({"encoding": "offset", "spaces": {"a": [8, 64, None]}}, "spaces['a'] top"),
    ({"encoding": "offset", "spaces": {"a": [8, 64, 72]}}, "spaces['a'] top"),
    ({"encoding": "offset", "spaces": {"a": [8, 64, 12]}}, "spaces['a'] top"),
    ({"encoding": "offset", "spaces": {"a": [0, 64, 8]}}, "space 'a'"),
    ({"encoding": "offset", "spaces": {"a": [8, 1 << 40, 8]}}, "space 'a'"),
    ({"encoding": "offset", "spaces": {"a": [8, 64, 8], "b": [32, 96, 32]}}, "space 'b'"),
    ({"encoding": "offset", "spaces": {1: [8, 64, 8]}}, "space name"),
])
def test_a_malformed_description_names_its_field(heap, description, field) -> None:
    """Each of these raised KeyError, AttributeError, ValueError or TypeError."""
    with pytest.raises(ha.InvalidArgument) as caught:
        ha.ObjectHeap.from_description(heap, description)
    assert field in str(caught.value)


@pytest.mark.parametrize("kwargs", [
    {"heap": "heap"}, {"heap": None}, {"spaces": [(8, 64)]}, {"spaces": {}},
    {"spaces": {"a": 8}}, {"spaces": {"a": (8, 16, 24)}}, {"encoding": ["offset"]},
    {"encoding": "colored", "colors": "layout"}, {"encoding": "masked", "store_color": "0"},
])
def test_object_heap_arguments_are_typed_errors(heap, kwargs) -> None:
    kwargs = {"heap": heap, **kwargs}
    if kwargs.get("store_color") is not None:
        kwargs["colors"] = heap.multimap(2, shift=21)
    with pytest.raises(ha.InvalidArgument):
        ha.ObjectHeap(kwargs.pop("heap"), **kwargs)


def test_an_obj_reads_only_what_its_header_and_the_heap_allow(heap) -> None:
    """Obj(objs, 2**63 - 8).nrefs was an IndexError, and a header claiming more words or
    slots than the heap holds gave short refs/payload slices, then an IndexError."""
    objs = heap.objects
    for offset in (2**63 - 8, heap.size, 0, 12, -8, 8.0):
        with pytest.raises(ha.InvalidArgument):
            ha.Obj(objs, offset)
    with pytest.raises(ha.InvalidArgument, match="expected an ObjectHeap, got str"):
        ha.Obj("objects", 8)
    obj = objs.new(nrefs=2, payload_words=1)
    words = objs.words
    for header in (make_header(2**32 - 1, 5), make_header(heap.size // 8, 1), 0):
        words[obj.offset >> 3] = header
        for read in (lambda: obj.nrefs, lambda: obj.size_words, lambda: obj.payload,
                     lambda: list(obj.refs), lambda: obj.refs[0], lambda: obj.refs.raw):
            with pytest.raises(ha.HeapCorruption):
                read()
        assert f"header={int(header):#x}" in repr(obj)
    words[obj.offset >> 3] = make_header(4, 2)
    assert (obj.nrefs, len(obj.payload)) == (2, 1)


def test_build_takes_no_objects_and_refuses_malformed_edges(heap) -> None:
    """build() of zero objects was a ValueError (one offset for none); edges that are not
    three arrays were a TypeError from unpacking them into link()."""
    objs = heap.objects
    top = objs.space().top
    for nrefs, payload in (([], []), (np.array([], np.float64), np.array([], np.int64))):
        assert objs.build(nrefs, payload).shape == (0,)
        assert objs.build(nrefs, payload, edges=([], [], [])).shape == (0,)
    assert objs.space().top == top
    one = (np.array([1]), np.array([0]))
    for edges in ("edges", (np.array([0]), np.array([0])), ([0], [0], [0], [0]), 5, object(),
                  ([0], [0], [[0]]), ([0], [0], [1])):
        with pytest.raises(ha.InvalidArgument, match=r"edge|source|slot|target"):
            objs.build(*one, edges=edges)
    with pytest.raises(ha.InvalidArgument, match="edge"):
        objs.build([], [], edges=([0], [0], [0]))
    assert objs.space().top == top  # a malformed edge allocates nothing
    offsets = objs.build(*one, edges=([0], [0], [0]))
    assert objs.deref(int(offsets[0])).refs[0].offset == offsets[0]
    with pytest.raises(ha.InvalidArgument, match="offsets"):
        objs.link(np.uint64(8), 1, [0], [0], [0])


def test_numpy_integers_assigned_to_a_space_do_not_overflow_its_arithmetic(heap) -> None:
    """A space whose start and top were set to np.int16(8) made new() and mark() raise
    OverflowError: 'end - top' was computed in int16."""
    objs = ha.ObjectHeap(heap, spaces={"a": (8, 1 << 19)})
    space = objs.space("a")
    space.start = space.top = np.int16(8)
    assert objs.new(1, 1, space="a").offset == 8
    assert type(space.start) is int and type(space.top) is int
    assert ha.collectors.mark(objs, []).objects == 0


def test_slot_words_name_every_reference_slot_object_by_object() -> None:
    assert list(layout.ranks(np.array([2, 0, 3]))) == [0, 1, 0, 1, 2]
    assert len(layout.ranks(np.array([], dtype=np.int64))) == 0
    offsets = np.array([8, 64, 200], dtype=np.uint64)
    headers = np.array([make_header(3, 2), make_header(2, 0), make_header(4, 3)], np.uint64)
    owner, words = layout.slot_words(offsets, headers)
    assert list(owner) == [0, 0, 2, 2, 2]
    assert list(words) == [2, 3, 26, 27, 28]
