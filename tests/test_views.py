"""Views: arrays, protection, lifetime, fixed addresses and naming."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import heapalias as ha
from heapalias.relocation import RelocationArea

from conftest import mapped_at, maps_text, run_isolated

SIZE = 64 << 10


@pytest.fixture(params=["memfd", "anon"])
def heap(request):
    with ha.Heap(SIZE, backing=request.param, name="views") as heap:
        yield heap


def test_array_is_zero_copy_and_typed(heap: ha.Heap) -> None:
    words = heap.view.array(np.uint64)
    assert words.shape == (SIZE // 8,)
    assert words.ctypes.data == heap.view.address
    words[3] = 0xDEADBEEF
    assert heap.view.array(np.uint32, offset=24, count=1)[0] == 0xDEADBEEF
    tail = heap.view.array(np.uint16, offset=SIZE - 4)
    assert tail.shape == (2,) and tail.ctypes.data == heap.view.address + SIZE - 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"offset": -1}, "outside"),
        ({"offset": SIZE + 1}, "outside"),
        ({"offset": 8, "count": SIZE // 8}, "overrun"),
        ({"count": -1}, "overrun"),
        ({"offset": 1.5}, "integer"),
        ({"count": True}, "integer"),
        ({"dtype": object}, "raw heap memory"),
        ({"dtype": "not-a-dtype"}, "dtype"),
    ],
)
def test_bad_array_arguments_raise_invalid_argument(heap, kwargs, message) -> None:
    kwargs.setdefault("dtype", np.uint64)
    with pytest.raises(ha.InvalidArgument, match=message):
        heap.view.array(**kwargs)


def test_readonly_view_arrays_cannot_be_written_or_made_writeable(heap: ha.Heap) -> None:
    ro = heap.alias(prot="r")
    arr = ro.array(np.uint32)
    assert not arr.flags.writeable
    with pytest.raises(ValueError):
        arr[0] = 1
    with pytest.raises(ValueError):
        arr.flags.writeable = True
    with pytest.raises(ValueError):
        arr[1:].flags.writeable = True
    heap.view.array(np.uint32)[0] = 99
    assert arr[0] == 99


def test_prot_none_view_gives_no_array(heap: ha.Heap) -> None:
    hidden = heap.alias(prot="none")
    assert mapped_at(hidden.address).split()[1].startswith("---")
    with pytest.raises(ha.InvalidArgument, match="PROT_NONE"):
        hidden.array()
    hidden.protect("r")
    heap.view.array()[0] = 7
    assert hidden.array()[0] == 7


def test_close_without_arrays_unmaps_at_once(heap: ha.Heap) -> None:
    alias = heap.alias()
    address = alias.address
    alias.array()  # dropped immediately
    alias.close()
    assert alias.closed and not alias.mapped
    assert mapped_at(address) is None


def test_arrays_keep_the_mapping_alive_past_close(heap: ha.Heap) -> None:
    alias = heap.alias()
    arr = alias.array(np.uint64)
    part = arr[10:20]  # a slice must keep it alive too
    alias.close()
    assert alias.closed and alias.mapped
    with pytest.raises(ha.ViewClosed):
        alias.array()
    heap.view.array(np.uint64)[12] = 42
    assert part[2] == 42  # still the live, aliased memory
    del arr
    gc.collect()
    assert alias.mapped
    address = alias.address
    del part
    gc.collect()
    assert not alias.mapped
    assert mapped_at(address) is None


def test_heap_close_with_live_array_defers_unmap(heap: ha.Heap) -> None:
    arr = heap.view.array(np.uint8)
    heap.close()
    heap.close()  # idempotent
    assert heap.closed and heap.view.mapped
    arr[:] = 1
    assert arr.sum() == SIZE
    view = heap.view
    del arr
    gc.collect()
    assert not view.mapped
    with pytest.raises(ha.ViewClosed):
        heap.alias()


def test_protect_narrowing_under_live_arrays_raises_view_in_use(heap: ha.Heap) -> None:
    alias = heap.alias()
    arr = alias.array()
    with pytest.raises(ha.ViewInUse) as caught:
        alias.protect("r")
    assert isinstance(caught.value, BufferError) and caught.value.remedy
    assert alias.prot == "rw"
    arr[0] = 5  # still writable
    del arr
    alias.protect("r")
    assert not alias.array().flags.writeable
    assert mapped_at(alias.address).split()[1].startswith("r-")


def test_protect_widening_keeps_old_arrays_valid(heap: ha.Heap) -> None:
    alias = heap.alias(prot="r")
    old = alias.array()
    alias.protect("rw")
    new = alias.array()
    new[0] = 9
    assert old[0] == 9 and not old.flags.writeable and new.flags.writeable


def test_protect_rejects_bad_prot(heap: ha.Heap) -> None:
    with pytest.raises(ha.InvalidArgument):
        heap.view.protect("rwx")


def test_view_context_manager_closes(heap: ha.Heap) -> None:
    with heap.alias() as alias:
        assert alias in heap.views
    assert alias.closed and alias not in heap.views


def test_fixed_address_lands_exactly_and_never_clobbers(heap: ha.Heap) -> None:
    probe = heap.alias()  # find a free range, then free it
    target = probe.address
    probe.close()
    pinned = heap.alias(address=target)
    assert pinned.address == target
    with pytest.raises(ha.InvalidArgument) as caught:
        heap.alias(address=target)
    assert caught.value.errno == 17  # EEXIST
    with pytest.raises(ha.InvalidArgument):
        heap.alias(address=heap.view.address + 4096)  # overlaps the primary view
    for bad in (0, -4096, target + 1, 1 << 47, "0x1000"):
        with pytest.raises(ha.InvalidArgument):
            heap.alias(address=bad)


def test_memfd_views_are_named_by_the_memfd() -> None:
    with ha.Heap(SIZE, backing="memfd", name="named-heap") as heap:
        heap.alias()
        assert maps_text().count("/memfd:heapalias:named-heap") >= 2
        assert heap.view.label == "heapalias:named-heap"


def test_anon_views_ask_for_a_name_and_fail_softly() -> None:
    with ha.Heap(SIZE, backing="anon", name="anon-heap") as heap:
        alias = heap.alias()
        assert alias.label == "heapalias:anon-heap:alias1"
        line = mapped_at(alias.address)
        # Named where the kernel has CONFIG_ANON_VMA_NAME; shown as shmem otherwise.
        assert "[anon_shmem:heapalias:anon-heap:alias1]" in line or "/dev/zero" in line


def test_multimap_gaps_fault_and_colors_translate() -> None:
    with ha.Heap(SIZE, name="colors") as heap:
        colors = heap.multimap(4, shift=20)
        assert len(colors) == 4 and colors.shift == 20
        gap = colors.base + SIZE
        assert mapped_at(gap).split()[1] == "---p"
        assert colors.color_of(colors.address(2, 100)) == 2
        with pytest.raises(ha.InvalidArgument):
            colors.color_of(gap)
        with pytest.raises(ha.InvalidArgument):
            colors.address(0, SIZE)
        heap.view.array()[100] = 3
        assert [v.array()[100] for v in colors] == [3, 3, 3, 3]
        base = colors.base
        colors.close()
        assert all(v.closed for v in colors)
        gc.collect()
        assert mapped_at(base) is None


@pytest.mark.parametrize(
    ("n", "shift"), [(0, 20), (17, 20), (2, 10), (2, 15), (2, 70), (2, -1), (2.0, 20), (4, 45)]
)
def test_multimap_rejects_bad_layouts(n, shift) -> None:
    with ha.Heap(SIZE) as heap, pytest.raises(ha.InvalidArgument):
        heap.multimap(n, shift=shift)


def test_live_views_survive_the_exit_finalizers() -> None:
    """Interpreter exit runs weakref finalizers before it frees objects; a layout's
    reservation must not be unmapped under views (and arrays) that are still alive."""
    run_isolated("""
        import weakref, numpy as np, heapalias as ha
        heap = ha.Heap("1M")
        colors = heap.multimap(3, shift=21)
        arrays = [view.array(np.uint64) for view in colors]
        weakref.finalize._exitfunc()  # what atexit does first at shutdown
        for k, arr in enumerate(arrays):
            arr[0] = k  # a segfault here would mean the range was given back
        assert arrays[0][0] == 2
    """)


def test_widening_protection_still_counts_the_arrays_made_before() -> None:
    """Arrays made before protect('rw') keep the view mapped: close() and narrowing
    must see them (it used to forget them and unmap, so reading them was SIGSEGV)."""
    proc = run_isolated("""
        import gc, numpy as np, heapalias as ha
        heap = ha.Heap("64K")
        heap.view.array(np.uint8)[0] = 7
        view = heap.alias(prot="r")
        old = view.array(np.uint8)
        view.protect("rw")
        assert view.exported
        for narrower in ("r", "none"):
            try:
                view.protect(narrower)
            except ha.ViewInUse:
                pass
            else:
                raise AssertionError(f"protect({narrower!r}) ran under a live array")
        view.close()
        assert view.closed and view.mapped
        print(old[0])  # SIGSEGV if close() unmapped it
        address = view.address
        del old
        gc.collect()
        assert not view.mapped
    """)
    assert proc.stdout.split() == ["7"]


def test_an_object_heap_over_a_widened_view_keeps_it_mapped_through_close() -> None:
    proc = run_isolated("""
        import heapalias as ha
        from heapalias import collectors, workloads
        heap = ha.Heap("1M")
        graph = workloads.linked_list(heap.objects, 100)
        view = heap.alias(prot="r")
        objects = ha.ObjectHeap.from_description(view, heap.objects.describe())
        print(collectors.walk(objects).objects)
        view.protect("rw")
        view.close()
        print(view.mapped, objects.words[0])  # SIGSEGV if close() unmapped it
        try:
            collectors.walk(objects)
        except ha.ViewClosed:
            print("closed")
    """)
    assert proc.stdout.split() == ["100", "True", "0", "closed"]


@pytest.mark.parametrize("dtype", ["(2,)u8", np.dtype((np.uint32, (3, 2)))])
def test_subarray_dtypes_are_refused_with_invalid_argument(heap, dtype) -> None:
    with pytest.raises(ha.InvalidArgument, match="subarray"):
        heap.view.array(dtype)


@pytest.mark.parametrize("dtype", ["u8[", "(2,u8", 12345])
def test_unparseable_dtypes_are_invalid_arguments(heap, dtype) -> None:
    with pytest.raises(ha.InvalidArgument, match="dtype"):
        heap.view.array(dtype)


def test_numpy_integers_are_accepted_as_offsets_and_counts(heap) -> None:
    words = heap.view.array(np.uint64, offset=np.int64(8), count=np.uint32(4))
    assert words.shape == (4,) and words.ctypes.data == heap.view.address + 8
    for bad in (np.bool_(True), np.float64(8.0)):
        with pytest.raises(ha.InvalidArgument, match="integer"):
            heap.view.array(np.uint8, offset=bad)


def test_multimap_colors_and_addresses_are_checked() -> None:
    with ha.Heap(SIZE, name="colors") as heap, heap.multimap(3, shift=20) as colors:
        assert colors.address(np.int64(2), np.uint16(8)) == colors.base + (2 << 20) + 8
        assert colors.color_of(np.uint64(colors.base + (1 << 20))) == 1
        for color in (-1, 3, 1.0, True):
            with pytest.raises(ha.InvalidArgument, match="color"):
                colors.address(color)
        for address in ("0x1000", None, colors.base - 1):
            with pytest.raises(ha.InvalidArgument):
                colors.color_of(address)


@pytest.mark.parametrize("backing", ["memfd", "anon"])
@pytest.mark.parametrize("populate", [True, False])
def test_an_mremap_mirror_gets_the_protection_asked_for_not_its_sources(backing, populate) -> None:
    # The mirror used to inherit the source's PROT_READ: populating it, or writing
    # through the "rw" array it handed out, was SIGSEGV.
    proc = run_isolated(f"""
        import numpy as np, heapalias as ha
        heap = ha.Heap("64K", backing={backing!r}, populate={populate})
        heap.view.protect("r")
        alias = heap.alias("mremap", prot="rw")
        alias.array(np.uint64)[0] = 7
        narrow = heap.alias("mremap", prot="none")
        perms = {{int(line.split("-")[0], 16): line.split()[1] for line in open("/proc/self/maps")}}
        print(perms[alias.address], perms[narrow.address], int(heap.view.array(np.uint64)[0]),
              alias.prot, narrow.prot)
    """)
    assert proc.stdout.split() == ["rw-s", "---s", "7", "rw", "none"], proc.stderr


def test_mremap_mirrors_from_a_view_that_still_shows_byte_zero() -> None:
    with ha.Heap(SIZE, backing="anon") as heap, RelocationArea(heap, SIZE) as area:
        heap.view.array(np.uint8)[0] = 42
        first = heap.alias("mremap")
        moved, _ = area.remap(heap.view, 0, 4096)
        alias = heap.alias("mremap")  # from `first`: the primary's byte 0 is PROT_NONE now
        assert alias.array(np.uint8)[0] == 42
        first.close()
        alias.close()
        with pytest.raises(ha.UnsupportedAlias, match="relocated away"):
            heap.alias("mremap")
        moved.close()


def _cycle_of(*objects: object) -> None:
    """Make the objects reachable only from a reference cycle, then drop them."""
    trash: list[object] = [*objects]
    trash.append(trash)


@pytest.mark.parametrize("layout", ["join", "multimap", "relocation"])
def test_reservations_collected_in_a_cycle_leave_no_mapping(layout) -> None:
    # The cyclic GC ran the reservation's finalizer (munmap) before the parts' releases,
    # which then mapped PROT_NONE MAP_FIXED into address space no longer ours.
    heap = ha.Heap("1M", name="cycle")
    if layout == "join":
        objects: tuple[object, ...] = (ha.join(heap, heap),)
        address = objects[0].address
    elif layout == "multimap":
        objects = (heap.multimap(2, shift=21),)
        address = objects[0].base
        heap._layouts.clear()  # only the cycle holds the layout and its views
        del heap._views[1:]
    else:
        area = RelocationArea(heap, 1 << 20)
        objects = (area, area.remap(heap.alias(), 0, 1 << 16)[0])
        address = area.address
        del area
    _cycle_of(*objects)
    del objects
    gc.collect()
    assert mapped_at(address) is None, mapped_at(address)
    heap.close()


def test_a_part_never_vacates_into_a_range_given_back() -> None:
    heap = ha.Heap("1M", name="cycle")
    colors = heap.multimap(2, shift=21)
    keep = colors[1].array(np.uint8)
    colors.close()  # the layout's hold goes; color1's array still holds the range
    address = colors.base
    assert mapped_at(address) is not None and mapped_at(colors[1].address) is not None
    del keep
    gc.collect()
    assert mapped_at(address) is None and mapped_at(colors[1].address) is None
    heap.close()


def test_what_syscalls_trust_cannot_be_reassigned() -> None:
    # `alias.size = 1 << 40; alias.protect("r")` was mprotect over the interpreter: SIGSEGV.
    proc = run_isolated("""
        import heapalias as ha
        from heapalias.relocation import RelocationArea
        heap = ha.Heap("1M", name="tamper")
        alias, colors = heap.alias(), heap.multimap(2, shift=21)
        area = RelocationArea(heap, 1 << 20)
        targets = {
            alias: ["address", "size", "prot", "strategy", "role", "label", "backings",
                    "file_offset", "holes"],
            colors: ["base", "shift"],
            area: ["heap", "address", "size"],
            heap._backing: ["size", "fd", "writable", "closed", "policy", "name"],
            heap.share(): ["size", "pages", "name", "meta"],
        }
        refused = []
        for target, names in targets.items():
            for name in names:
                try:
                    setattr(target, name, 1 << 40)
                except AttributeError:
                    refused.append(name)
        assert isinstance(alias.holes, tuple)
        alias.protect("r")
        print(len(refused), sum(map(len, targets.values())))
    """)
    refused, total = proc.stdout.split()
    assert refused == total, proc.stderr
