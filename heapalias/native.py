"""The one gateway to the compiled C core (``heapalias._native``).

Every call into C, and every translation of a C result into an exception, is here.
The C functions come in groups, each with one return convention (heapalias.h says
the same):

- **System calls** (``memfd_create`` ... ``touch``): ``>= 0`` on success, ``-errno`` on
  failure, raised as :class:`~heapalias.errors.SyscallFailed`. Callers that know more
  (a hugetlb pool, a map-count limit) catch it and raise a sharper error.
- **GC loops** (``cheney`` ... ``card_scan``, the workloads and the drivers): ``HA_OK``
  or a positive ``HA_ERR_*`` code, with the details (counts, time, the offset and root
  at fault) in an ``ha_stats``. Success gives :class:`LoopStats`; a failure raises
  :class:`~heapalias.errors.HeapCorruption`, :class:`~heapalias.errors.SpaceFull`,
  :class:`~heapalias.errors.InsufficientMemory` or
  :class:`~heapalias.errors.InvalidArgument`.
- **Relocation** (``relocate_remap``, ``relocate_copy``): ``0`` or the ``-errno`` of the
  system call that failed, with the bytes moved and the time in an ``ha_stats``. Success
  gives :class:`LoopStats`; a failure raises :class:`~heapalias.errors.SyscallFailed`.
- **Limits** (``memcpy_ns`` ... ``gather_ns``): the nanoseconds the whole job took; they
  cannot fail. ``fault_ns`` maps memory, and raises
  :class:`~heapalias.errors.SyscallFailed` when it cannot.

Every wrapper takes plain addresses or numpy arrays; an array must outlive the call,
which the caller's reference guarantees.

Importing this module refuses a stale extension. cext/build_native.py compiles the
fingerprint of the C sources (cext/fingerprint.py) into ``_native``. Where those sources
sit next to the package (a checkout built in place, an editable install: where C edits
outrun the build), the fingerprint is recomputed here and must match. An installed wheel
ships no sources, and its extension was built with its Python files, so nothing is
checked there.
"""

from __future__ import annotations

import runpy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    from ._native import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on how heapalias was installed
    raise ImportError(
        f"heapalias._native cannot be imported ({exc}). Install the package (`pip install .` "
        "or `pip install -e .`) instead of importing the source tree directly, or rebuild it "
        "with `python setup.py build_ext --inplace`."
    ) from exc

from .errors import (
    HeapCorruption,
    HeapDumpError,
    InsufficientMemory,
    InvalidArgument,
    SpaceFull,
    SyscallFailed,
)

#: The C sources beside the package in a checkout; absent from an installed wheel.
CEXT = Path(__file__).resolve().parent.parent / "cext"


def built_fingerprint(native_lib) -> str | None:
    """The source fingerprint compiled into ``native_lib``; None if it predates fingerprints."""
    try:
        return ffi.string(native_lib.ha_build_fingerprint()).decode()
    except AttributeError:
        return None


def require_fresh_build(built: str | None, cext: Path = CEXT) -> None:
    """Raise ImportError if an extension with fingerprint ``built`` was not built from ``cext``.

    Does nothing when ``cext`` holds no C core (an installed package).
    """
    if not (cext / "heapalias.h").is_file() or not (cext / "fingerprint.py").is_file():
        return
    current = runpy.run_path(str(cext / "fingerprint.py"))["source_fingerprint"](cext)
    if built != current:
        built_from = built[:12] if built else "before fingerprints"
        raise ImportError(
            f"heapalias._native is stale: it was built from other C sources than {cext} holds "
            f"now (built {built_from}, sources {current[:12]}). Rebuild it with "
            "`python setup.py build_ext --inplace` or `pip install -e .`."
        )


require_fresh_build(built_fingerprint(lib))

__all__ = [
    "LoopStats",
    "built_fingerprint",
    "card_scan",
    "chase_ns",
    "cheney",
    "clear_marks",
    "close",
    "close_quietly",
    "fallocate",
    "fault_ns",
    "ffi",
    "ftruncate",
    "gather_ns",
    "large_objects",
    "lib",
    "linked_list",
    "madvise",
    "mark",
    "memcpy_ns",
    "memfd_create",
    "mmap",
    "mprotect",
    "mremap",
    "munmap",
    "name_anon",
    "random_graph",
    "read_ns",
    "relocate_copy",
    "relocate_remap",
    "require_fresh_build",
    "stream_copy_ns",
    "touch",
    "tree",
    "verify",
    "walk",
    "write_ns",
    "write_read_ns",
    "write_ref",
]


# ---- System calls: a result >= 0, or -errno, raised as SyscallFailed ----


def _check(rc: int, call: str, detail: str = "") -> int:
    if rc < 0:
        raise SyscallFailed(call, -rc, detail=detail)
    return rc


def memfd_create(name: str, flags: int) -> int:
    """Create a memfd and return its file descriptor."""
    return _check(lib.ha_memfd_create(name.encode(), flags), "memfd_create")


def ftruncate(fd: int, length: int) -> None:
    """Set the size of a file."""
    _check(lib.ha_ftruncate(fd, length), "ftruncate")


def fallocate(fd: int, length: int, offset: int = 0) -> None:
    """Allocate file blocks (for memfd: commit the pages); never punches holes."""
    _check(lib.ha_fallocate(fd, offset, length), "fallocate")


def close(fd: int) -> None:
    """Close a file descriptor."""
    _check(lib.ha_close(fd), "close")


def close_quietly(fd: int) -> None:
    """Close ``fd`` where nobody could handle a failure: finalizers and cleanup after an
    error (an fd closed twice is a bug found by the fd-leak tests, not here)."""
    lib.ha_close(fd)


def _address_call(call: str, fn, *args) -> int:
    out = ffi.new("uintptr_t *")
    _check(fn(*args, out), call)
    return int(out[0])


def mmap(length: int, prot: int, flags: int, fd: int = -1, offset: int = 0, hint: int = 0) -> int:
    """Map memory and return its address."""
    return _address_call("mmap", lib.ha_mmap, hint, length, prot, flags, fd, offset)


def mremap(old_address: int, old_size: int, new_size: int, flags: int, new_address: int = 0) -> int:
    """The raw mremap syscall with all five arguments; returns the new address."""
    return _address_call(
        "mremap", lib.ha_mremap, old_address, old_size, new_size, flags, new_address
    )


def munmap(address: int, length: int) -> None:
    """Unmap a range."""
    _check(lib.ha_munmap(address, length), "munmap")


def mprotect(address: int, length: int, prot: int) -> None:
    """Change the protection of a range."""
    _check(lib.ha_mprotect(address, length, prot), "mprotect")


def madvise(address: int, length: int, advice: int) -> None:
    """Give the kernel advice about a range."""
    _check(lib.ha_madvise(address, length, advice), "madvise")


def name_anon(address: int, length: int, name: str) -> int:
    """Name an anonymous range in /proc/self/maps; returns 0 or -errno, never raises."""
    return lib.ha_name_anon(address, length, name.encode())


def touch(address: int, length: int, stride: int, write: bool) -> None:
    """Read (and write back) one byte per ``stride``: the pre-5.14 populate fallback."""
    _check(lib.ha_touch(address, length, stride, int(write)), "touch")


# ---- GC loops: HA_OK or a positive HA_ERR_* code; the details in ha_stats ----

_REASONS = {
    lib.HA_ERR_HEADER: "not a valid object header",
    lib.HA_ERR_REF: "a reference outside the heap, misaligned, or of an unknown color",
    lib.HA_ERR_NOT_OBJECT: "a reference to something that is not an object start",
}


@dataclass(frozen=True)
class LoopStats:
    """What one loop did: objects and bytes it visited or moved, references, cards, time."""

    objects: int
    bytes: int
    refs: int
    cards: int
    nanoseconds: int

    @property
    def seconds(self) -> float:
        return self.nanoseconds / 1e9

    @property
    def gb_per_s(self) -> float:
        """Bytes per second, in GB/s (1e9)."""
        return self.bytes / self.nanoseconds if self.nanoseconds else float("inf")


def new_stats():
    """A zeroed ``ha_stats`` for one loop call."""
    return ffi.new("ha_stats *")


def stats_of(st) -> LoopStats:
    """The counts of an ``ha_stats``, whatever the loop returned."""
    return LoopStats(int(st.objects), int(st.bytes), int(st.refs), int(st.cards),
                     int(st.nanoseconds))


def loop_result(rc: int, st, what: str) -> LoopStats:
    """Stats on success; the typed error the C loop reported otherwise."""
    if rc == lib.HA_OK:
        return stats_of(st)
    root = None if st.error_root < 0 else int(st.error_root)
    if rc in _REASONS:
        raise HeapCorruption(int(st.error_offset), f"{what}: {_REASONS[rc]}", root)
    if rc == lib.HA_ERR_FULL:
        raise SpaceFull(f"{what}: the target space is full at offset {int(st.error_offset):#x}",
                        remedy="give the space more room")
    if rc == lib.HA_ERR_NOMEM:
        raise InsufficientMemory(f"{what}: no memory for a scratch buffer", remedy="free memory")
    if rc == lib.HA_ERR_SYSCALL:
        raise SyscallFailed(what, int(st.error_offset))
    raise InvalidArgument(f"{what}: the C loop rejected its arguments (code {rc})")


def space_struct(space):
    """An ``ha_space *`` holding a space's ``start, end, top`` (checked by the caller)."""
    return ffi.new("ha_space *", (space.start, space.end, space.top))


def spaces_struct(spaces):
    """An ``ha_space[]`` of the spaces (one zeroed entry when there are none)."""
    return ffi.new("ha_space[]", [(s.start, s.end, s.top) for s in spaces] or 1)


def words(array: np.ndarray, ctype: str = "uint64_t[]"):
    """A C view of a writeable numpy array (which must outlive the call)."""
    return ffi.from_buffer(ctype, array, require_writable=True)


def words_or_null(array: np.ndarray):
    """As :func:`words`, or NULL for an empty array (which has no address)."""
    return words(array) if len(array) else ffi.NULL


def scratch(count: int, dtype, what: str, *, zeroed: bool = False) -> np.ndarray:
    """An array of ``count`` items for a loop (uninitialised unless ``zeroed``);
    InsufficientMemory if the allocation fails, as the C loops say for their own buffers."""
    try:
        return (np.zeros if zeroed else np.empty)(count, dtype=dtype)
    except MemoryError as exc:
        size = count * np.dtype(dtype).itemsize
        raise InsufficientMemory(f"{what}: no memory for a scratch buffer of {size} bytes",
                                 remedy="free memory, or use a smaller heap") from exc


def heap_struct(fields: dict):
    """A fresh ``ha_heap *`` with these fields."""
    return ffi.new("ha_heap *", fields)


def cheney(heap, from_space, to_space, roots: np.ndarray) -> LoopStats:
    """Evacuate what ``roots`` reach from ``from_space`` into ``to_space``; the roots are
    updated in place, and ``to_space.top`` advances (also when the loop fails)."""
    to, st = space_struct(to_space), new_stats()
    rc = lib.ha_cheney(heap, space_struct(from_space), to, words_or_null(roots), len(roots), st)
    to_space.top = int(to.top)
    return loop_result(rc, st, "cheney")


def mark(heap, spaces, roots: np.ndarray, stack: np.ndarray) -> LoopStats:
    """Mark what ``roots`` reach within ``spaces``, with ``stack`` as the grey stack."""
    st = new_stats()
    rc = lib.ha_mark(heap, spaces_struct(spaces), len(spaces), words_or_null(roots),
                     len(roots), words(stack), len(stack), st)
    return loop_result(rc, st, "mark")


def clear_marks(heap, space) -> LoopStats:
    """Clear every mark bit in ``space``."""
    st = new_stats()
    return loop_result(lib.ha_clear_marks(heap, space_struct(space), st), st, "clear_marks")


def walk(heap, space, offsets: np.ndarray, capacity: int) -> LoopStats:
    """Parse ``space``; the first ``capacity`` object offsets go to ``offsets``."""
    st = new_stats()
    rc = lib.ha_walk(heap, space_struct(space), words(offsets), capacity, st)
    return loop_result(rc, st, "walk")


def verify(heap, spaces, roots: np.ndarray, bitmap: np.ndarray) -> LoopStats:
    """Check every header and reference of ``spaces``; ``bitmap`` must be zeroed."""
    st = new_stats()
    rc = lib.ha_verify(heap, spaces_struct(spaces), len(spaces), words_or_null(roots),
                       len(roots), words(bitmap), st)
    return loop_result(rc, st, "verify")


def write_ref(heap, cards: np.ndarray, card_shift: int, obj: int, slot: int, ref: int) -> None:
    """Store ``ref`` into reference slot ``slot`` of the object at ``obj``, dirtying its card."""
    st = new_stats()
    rc = lib.ha_write_ref(heap, words(cards, "uint8_t[]"), card_shift, obj, slot, ref, st)
    if rc == lib.HA_ERR_ARGUMENT:
        raise InvalidArgument(f"slot {slot} is not a reference slot of the object at {obj:#x}, "
                              "or the target is not a reference of this heap")
    loop_result(rc, st, "write_ref")


def card_scan(heap, space, cards: np.ndarray, card_shift: int, target_start: int,
              target_end: int, found: np.ndarray) -> LoopStats:
    """Record the slots in dirty cards of ``space`` that refer into the target range."""
    st = new_stats()
    rc = lib.ha_card_scan(heap, space_struct(space), words(cards, "uint8_t[]"), card_shift,
                          target_start, target_end, words(found), len(found), st)
    return loop_result(rc, st, "card_scan")


# ---- collectors: a plan's spaces and hooks (cext/plan.h), and the drivers ----

def collector_struct(plan: int, heap, spaces):
    """An ``ha_collector *`` for C plan ``plan`` over ``heap`` (an ``ha_heap *``) and its
    checked spaces, in the plan's order (the allocation space first)."""
    if len(spaces) > lib.HA_MAX_SPACES:
        raise InvalidArgument(f"a plan has at most {lib.HA_MAX_SPACES} spaces, not {len(spaces)}")
    gc = ffi.new("ha_collector *")
    gc.plan, gc.nspaces, gc.heap = plan, len(spaces), heap[0]
    for i, space in enumerate(spaces):
        gc.spaces[i] = (space.start, space.end, space.top)
    return gc


def collector_spaces(gc) -> list[tuple[int, int, int]]:
    """``(start, end, top)`` of each space of an ``ha_collector``, in its current order."""
    return [(int(s.start), int(s.end), int(s.top)) for s in gc.spaces[0:gc.nspaces]]


def collect(gc, roots: np.ndarray) -> tuple[int, object]:
    """Run the plan's collection hook; ``(rc, stats)`` for :func:`loop_result`, which the
    caller applies once it has taken the spaces back (they move even when it fails)."""
    st = new_stats()
    return lib.ha_collect(gc, words_or_null(roots), len(roots), st), st


def collect_for(gc, roots: np.ndarray, nbytes: int) -> tuple[int, object]:
    """Run the plan's allocation slow path for ``nbytes``; ``(rc, stats)`` as :func:`collect`."""
    st = new_stats()
    return lib.ha_collect_for(gc, words_or_null(roots), len(roots), nbytes, st), st


def gc_program(program: str, gc, shadow: np.ndarray, pauses: np.ndarray, *args):
    """Run driver ``program`` (``"gcbench"``, ``"binary_trees"``) with its extra ``args``;
    ``(rc, stats, run)``, as :func:`collect`."""
    st, run = new_stats(), ffi.new("ha_gc_run *")
    call = {"gcbench": lib.ha_gcbench, "binary_trees": lib.ha_binary_trees}[program]
    rc = call(gc, *args, words(shadow), len(shadow), words(pauses), len(pauses), run, st)
    return rc, st, run


# ---- Workloads: the GC-loop convention ----
# Each bump-allocates into ``space``, whose top advances also when it fails.


def _allocate(space, call, what: str) -> LoopStats:
    """Run ``call(space struct, stats)``; ``space.top`` takes the C loop's top, then the
    result is translated."""
    s, st = space_struct(space), new_stats()
    rc = call(s, st)
    space.top = int(s.top)
    return loop_result(rc, st, what)


def tree(heap, space, depth: int, top_down: bool, payload_words: int) -> tuple[LoopStats, int]:
    """A complete binary tree of the given depth in ``space``: (stats, root reference)."""
    root = ffi.new("ha_ref *")
    stats = _allocate(space, lambda s, st: lib.ha_tree(
        heap, s, depth, int(bool(top_down)), payload_words, root, st), "binary_tree")
    return stats, int(root[0])


def linked_list(heap, space, n: int, shuffled: bool, seed: int) -> tuple[LoopStats, int]:
    """``n`` list nodes in ``space``, linked in order or shuffled: (stats, head reference)."""
    head = ffi.new("ha_ref *")
    stats = _allocate(space, lambda s, st: lib.ha_linked_list(
        heap, s, n, int(bool(shuffled)), seed, head, st), "linked_list")
    return stats, int(head[0])


def random_graph(heap, space, n: int, mean_degree: int, payload_range: tuple[int, int],
                 size_table: tuple[np.ndarray, np.ndarray] | None, seed: int,
                 roots: np.ndarray) -> LoopStats:
    """``n`` nodes with random edges in ``space``; ``roots`` (uint64) is filled with
    references to random nodes. Payload sizes are uniform in ``payload_range``, or drawn
    from ``size_table``: (uint32 sizes, uint64 cumulative weights)."""
    sizes = (ffi.NULL, ffi.NULL, 0) if size_table is None else (
        words(size_table[0], "uint32_t[]"), words(size_table[1]), len(size_table[0]))
    return _allocate(space, lambda s, st: lib.ha_random_graph(
        heap, s, n, mean_degree, *payload_range, *sizes, seed, words_or_null(roots),
        len(roots), st), "random_graph")


def large_objects(heap, space, n: int, payload_words: int) -> tuple[LoopStats, int]:
    """``n`` objects of one reference and ``payload_words``, chained: (stats, head reference)."""
    head = ffi.new("ha_ref *")
    stats = _allocate(space, lambda s, st: lib.ha_large_objects(
        heap, s, n, payload_words, head, st), "large_objects")
    return stats, int(head[0])


# ---- Relocation: 0 or -errno, the bytes moved and the time in ha_stats ----
# Success gives LoopStats, a failure SyscallFailed.


def relocate_remap(fd: int, old_address: int, file_offset: int, length: int,
                   new_address: int, populate: bool) -> LoopStats:
    """Map the pages at ``old_address`` (``file_offset`` of ``fd``, or shared anonymous
    memory when ``fd`` is -1) at ``new_address`` instead; the old range turns PROT_NONE.
    On failure the caller still owns ``new_address`` and must put it back."""
    st = new_stats()
    _check(lib.ha_relocate_remap(fd, old_address, file_offset, length, new_address,
                                 int(populate), st),
           "relocate", f"remapping {length} bytes from {old_address:#x} to {new_address:#x}")
    return stats_of(st)


def relocate_copy(dst: int, src: int, length: int) -> LoopStats:
    """memcpy ``length`` bytes from ``src`` to ``dst`` (both checked by the caller)."""
    st = new_stats()
    _check(lib.ha_relocate_copy(dst, src, length, st), "relocate")
    return stats_of(st)


# ---- Limits: the nanoseconds the whole job took ----
# They cannot fail, except fault_ns, which maps memory: its -errno is raised as SyscallFailed.


def memcpy_ns(dst: int, src: int, length: int, repeats: int = 1) -> int:
    """Nanoseconds for ``repeats`` memcpy calls of ``length`` bytes."""
    return lib.ha_memcpy_ns(dst, src, length, repeats)


def stream_copy_ns(dst: int, src: int, length: int, repeats: int = 1) -> int:
    """Nanoseconds for ``repeats`` non-temporal copies (dst, src word-aligned)."""
    return lib.ha_stream_copy_ns(dst, src, length, repeats)


def write_ns(dst: int, length: int, repeats: int = 1, streaming: bool = False) -> int:
    """Nanoseconds to write ``length`` bytes ``repeats`` times: memset, or streaming stores."""
    return lib.ha_write_ns(dst, length, repeats, int(streaming))


def read_ns(src: int, length: int, repeats: int = 1, prefetch: bool = False) -> int:
    """Nanoseconds to read ``length`` bytes ``repeats`` times, with or without prefetch."""
    return lib.ha_read_ns(src, length, repeats, int(prefetch), ffi.new("uint64_t *"))


def write_read_ns(write_to: int, read_from: int, length: int, streaming: bool = False,
                  prefetch: bool = False) -> int:
    """Nanoseconds to write ``length`` bytes at ``write_to``, then read them at ``read_from``
    (another view of the same memory, or the same address)."""
    return lib.ha_write_read_ns(write_to, read_from, length, int(streaming), int(prefetch),
                                ffi.new("uint64_t *"))


def chase_ns(buffer: int, slots: int, steps: int, seed: int) -> int:
    """Nanoseconds for ``steps`` dependent loads around a random cycle of ``slots`` cache
    lines at ``buffer``."""
    return lib.ha_chase_ns(buffer, slots, steps, seed, ffi.new("uint64_t *"))


def gather_ns(buffer: int, slots: int, steps: int, seed: int) -> int:
    """Nanoseconds for ``steps`` independent loads of random cache lines among ``slots``."""
    return lib.ha_gather_ns(buffer, slots, steps, seed, ffi.new("uint64_t *"))


def fault_ns(length: int, flags: int = 0) -> int:
    """Nanoseconds to fault in every page of ``length`` bytes of fresh private memory,
    mapped with ``flags`` added (e.g. ``MAP_HUGETLB | MAP_HUGE_2MB``)."""
    return _check(lib.ha_fault_ns(length, flags), "mmap",
                  f"mapping {length} bytes with flags {flags:#x} to time their page faults")


# ---- concurrent collection (cext/concurrent.c): the GC-loop convention ----

def stamp_identities(heap, space) -> LoopStats:
    """Number the objects of ``space`` in address order, in the word after their references."""
    st = new_stats()
    return loop_result(lib.ha_stamp_identities(heap, space_struct(space), st), st,
                       "stamp_identities")


def concurrent(gc, design: int, mix: dict, roots: np.ndarray, stalls: np.ndarray,
               trap: tuple[int, int] | None = None):
    """Run the mutator thread over ``gc``'s allocation space beside ``design``'s cycles;
    ``(rc, stats, run)`` as :func:`collect`. ``stalls`` is a structured array with the
    fields of ``ha_stall``, which the mutator fills (``run.stalls`` counts every stall).
    ``trap`` is ``(collector_view_address, page_size)`` for the page-trap designs."""
    st, run = new_stats(), ffi.new("ha_concurrent_run *")
    c_mix = ffi.new("ha_mutator_mix *", mix)
    c_trap = ffi.new("ha_trap_view *", trap) if trap is not None else ffi.NULL
    rc = lib.ha_concurrent(gc, design, c_mix, c_trap, words_or_null(roots), len(roots),
                           ffi.from_buffer("ha_stall[]", stalls, require_writable=True),
                           len(stalls), run, st)
    return rc, st, run


# ---- HPROF heap dumps (cext/hprof.c): the scanner's status, or HeapDumpError ----
# ha_hprof_scan returns HA_HPROF_OK, MORE or FULL, which the reader acts on, or an error,
# raised here as HeapDumpError with the offset and tag of the record at fault.

_HPROF_REASONS = {
    lib.HA_HPROF_BAD_TAG: "a tag the HPROF format does not define",
    lib.HA_HPROF_BAD_LENGTH: "a record length its contents cannot have",
    lib.HA_HPROF_OVERRUN: "a sub-record runs past the end of its HEAP DUMP record",
    lib.HA_HPROF_BAD_TYPE: "a basic type the HPROF format does not define",
    lib.HA_HPROF_BAD_ARRAY: "an array longer than a Java array can be (2**31 - 1)",
    lib.HA_HPROF_CHANGED: "the file changed between the two passes over it",
    lib.HA_HPROF_UNKNOWN_CLASS: "an instance of a class that has no CLASS DUMP",
    lib.HA_HPROF_BAD_FIELDS: "an instance's field bytes differ from its class's fields",
    lib.HA_HPROF_DUPLICATE: "two objects with the same id",
    lib.HA_HPROF_ARGUMENT: "an object the heap does not hold as the import laid it out",
    lib.HA_HPROF_NULL_ID: "an object whose id is 0, the null reference",
}


def struct_dtype(ctype: str) -> np.dtype:
    """The numpy dtype of C struct ``ctype`` (all of whose fields are integers): the same
    offsets and size as the compiler gave it, so an array of it can be handed to C."""
    kind = ffi.typeof(ctype)
    names, formats, offsets = [], [], []
    for name, field in kind.fields:
        names.append(name)
        formats.append(np.dtype(f"u{ffi.sizeof(field.type)}"))
        offsets.append(field.offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": ffi.sizeof(kind)})


def hprof_cursor(id_size: int, pass_: int, offset: int):
    """A fresh ``ha_hprof_cursor *`` for one pass that starts reading at ``offset``."""
    return ffi.new("ha_hprof_cursor *", {"id_size": id_size, "pass": pass_, "offset": offset})


def hprof_index(tables: list[np.ndarray]):
    """An ``ha_hprof_index *`` over the index pass's tables (``HA_HPROF_NTABLES`` arrays,
    each of the row type its enum entry names); their counts start at 0."""
    index = ffi.new("ha_hprof_index *")
    for t, table in enumerate(tables):
        hprof_index_table(index, t, table, 0)
    return index


def hprof_index_table(index, t: int, table: np.ndarray, count: int) -> None:
    """Point table ``t`` of ``index`` at ``table`` (grown, with its first ``count`` rows kept)."""
    index.rows[t] = ffi.cast("void *", ffi.from_buffer(table, require_writable=True))
    index.counts[t] = count
    index.capacities[t] = len(table)


def hprof_error(cursor, status: int) -> HeapDumpError:
    """The HeapDumpError for a scanner error ``status``, from what the cursor recorded."""
    reason = _HPROF_REASONS.get(status)
    if reason is None:
        return HeapDumpError(int(cursor.offset), None,
                             f"the scanner rejected its arguments (code {status})")
    tag, record = int(cursor.error_tag), int(cursor.error_record)
    inside = f" in a record {record:#04x}" if record != tag else ""
    return HeapDumpError(int(cursor.error_offset), tag,
                         f"{reason} (value {int(cursor.error_value):#x}){inside}")


def hprof_scan(cursor, buffer: np.ndarray, base: int, length: int, index=None,
               fill: HprofFill | None = None) -> int:
    """Scan ``buffer[:length]``, the file's bytes from offset ``base`` on, from
    ``cursor.offset``: HA_HPROF_OK (all used), MORE or FULL; HeapDumpError otherwise."""
    status = lib.ha_hprof_scan(cursor, ffi.from_buffer("uint8_t[]", buffer), base, length,
                               index if index is not None else ffi.NULL,
                               fill.struct if fill is not None else ffi.NULL)
    if status in (lib.HA_HPROF_OK, lib.HA_HPROF_MORE, lib.HA_HPROF_FULL):
        return status
    raise hprof_error(cursor, status)


@dataclass(frozen=True)
class HprofTable:
    """Object id -> reference word (``ha_hprof_table``), with the array it lives in."""

    struct: object
    slots: np.ndarray


def hprof_table(count: int) -> HprofTable:
    """An empty table for ``count`` ids, at most 3/4 full once they are in."""
    capacity = count * 4 // 3 + 2
    slots = scratch(2 * capacity, np.uint64, "the object id table", zeroed=True)
    return HprofTable(ffi.new("ha_hprof_table *", {"slots": words(slots),
                                                   "capacity": capacity}), slots)


def hprof_table_add(table: HprofTable, ids: np.ndarray, refs: np.ndarray,
                    offset_of: Callable[[int], int]) -> None:
    """Add object ``ids[k]`` -> reference ``refs[k]`` (nonzero) to ``table``; HeapDumpError
    at file offset ``offset_of(k)`` for an id that is 0 or already in the table."""
    ids = np.ascontiguousarray(ids, dtype=np.uint64)
    refs = np.ascontiguousarray(refs, dtype=np.uint64)
    fault = ffi.new("uint64_t *")
    status = lib.ha_hprof_table_add(table.struct, _uint64s(ids), _uint64s(refs), len(ids), fault)
    if status != lib.HA_HPROF_OK:
        k = int(fault[0])
        reason = _HPROF_REASONS.get(status, f"the table rejected its arguments (code {status})")
        raise HeapDumpError(offset_of(k), None, f"{reason}: id {int(ids[k]):#x}")


def _uint64s(array: np.ndarray):
    """A read-only C view of a uint64 array, or NULL when it is empty."""
    return ffi.from_buffer("uint64_t[]", array) if len(array) else ffi.NULL


def hprof_lookup(table: HprofTable, ids: np.ndarray) -> tuple[np.ndarray, int]:
    """The reference of each id through ``table`` (0 for null, and for an id it lacks), and
    how many non-null ids it lacks."""
    ids = np.ascontiguousarray(ids, dtype=np.uint64)
    out = np.zeros(len(ids), dtype=np.uint64)
    if not len(ids):
        return out, 0
    missing = lib.ha_hprof_lookup(table.struct, _uint64s(ids), len(ids), words(out))
    return out, int(missing)


@dataclass(frozen=True)
class HprofFill:
    """What the fill pass writes where (``ha_hprof_fill``), with the arrays it points into:
    they live as long as this does."""

    struct: object
    arrays: tuple


def hprof_fill(heap: np.ndarray, ids: np.ndarray, lengths: np.ndarray, kinds: np.ndarray,
               klass: np.ndarray, class_ids: np.ndarray, layout_start: np.ndarray,
               layout: np.ndarray, edges: np.ndarray, table: HprofTable, ref_add: int,
               chunk_refs: int) -> HprofFill:
    """The fill pass's target: ``heap`` (uint64 words); each object (the index pass's
    ``ids``, ``lengths`` and ``kinds``) at its own reference less ``ref_add``, an
    instance's field types ``layout[layout_start[k]:layout_start[k + 1]]`` for its class
    ``klass`` (-1 none; a primitive array: -type), whose id is ``class_ids[k]``; each
    object's non-null references go to ``edges``."""
    arrays = (heap, np.ascontiguousarray(ids, dtype=np.uint64),
              np.ascontiguousarray(lengths, dtype=np.uint32),
              np.ascontiguousarray(kinds, dtype=np.uint8),
              np.ascontiguousarray(klass, dtype=np.int32),
              np.ascontiguousarray(class_ids, dtype=np.uint64),
              np.ascontiguousarray(layout_start, dtype=np.uint64),
              np.ascontiguousarray(layout, dtype=np.uint8), edges, table)

    def view(array: np.ndarray, ctype: str):
        return ffi.from_buffer(ctype, array) if len(array) else ffi.NULL

    struct = ffi.new("ha_hprof_fill *", {
        "heap": words(heap), "heap_words": len(heap),
        "ids": view(arrays[1], "uint64_t[]"), "lengths": view(arrays[2], "uint32_t[]"),
        "kinds": view(arrays[3], "uint8_t[]"), "nobjects": len(arrays[1]),
        "klass": view(arrays[4], "int32_t[]"), "class_ids": view(arrays[5], "uint64_t[]"),
        "nclasses": len(arrays[5]),
        "layout_start": view(arrays[6], "uint64_t[]"), "layout": view(arrays[7], "uint8_t[]"),
        "edges": ffi.from_buffer("uint32_t[]", edges, require_writable=True) if len(edges)
        else ffi.NULL,
        "table": table.struct, "ref_add": ref_add, "chunk_refs": chunk_refs,
    })
    return HprofFill(struct, arrays)


# ---- the generational plan (cext/generational.c): its state, and minor collections ----

def attach_generations(gc, cards: np.ndarray, crossing: np.ndarray, compaction: np.ndarray, *,
                       nursery_end: int, crossing_top: int, tenure_age: int,
                       copy_order: int, promoted: tuple[int, int] = (0, 0)) -> None:
    """Give an ``ha_collector`` the generational plan's state: its card table (uint8), crossing
    map (uint32, one entry per card) and compaction table (uint64, two per card, zeroed),
    which the caller keeps alive across the call, its policy, and its promotion estimate
    (``promoted``: the average bytes a minor collection promotes, and their deviation).
    C checks the rest."""
    if not len(cards) == len(crossing) == len(compaction) // 2:
        raise InvalidArgument("the card table, crossing map and compaction table must have "
                              "one entry per card (two for the compaction table)")
    state = gc.generations
    state.cards = words(cards, "uint8_t[]")
    state.crossing = words(crossing, "uint32_t[]")
    state.compaction = words(compaction)
    state.ncards = len(cards)
    state.nursery_end, state.crossing_top = nursery_end, crossing_top
    state.tenure_age, state.copy_order = tenure_age, copy_order
    state.promoted_average, state.promoted_deviation = promoted


def generations_state(gc) -> dict[str, int]:
    """What the calls made on an ``ha_collector`` changed in its generational state:
    ``crossing_top``, the promotion estimate (``promoted_average``, ``promoted_deviation``),
    and the ``minor_collections``, ``full_collections`` and ``promotion_failures`` they ran."""
    state = gc.generations
    return {name: int(getattr(state, name)) for name in (
        "crossing_top", "promoted_average", "promoted_deviation", "minor_collections",
        "full_collections", "promotion_failures")}


def collect_young(gc, roots: np.ndarray) -> tuple[int, object]:
    """Run the plan's young-generation collection; ``(rc, stats)`` as :func:`collect`."""
    st = new_stats()
    return lib.ha_collect_young(gc, words_or_null(roots), len(roots), st), st


# ---- The memory's parallelism and parallel loops (issue 15) ----

def link_cycle(buffer: int, slots: int, seed: int) -> None:
    """Link ``slots`` cache lines at ``buffer`` into one random cycle for :func:`chases_ns`."""
    lib.ha_link_cycle(buffer, slots, seed)


def chases_ns(buffer: int, slots: int, chases: int, steps: int, seed: int) -> int:
    """Nanoseconds for ``chases`` (1 to ``HA_MAX_CHASES``) interleaved dependent chases around
    the cycle :func:`link_cycle` made, ``steps // chases`` loads each."""
    return lib.ha_chases_ns(buffer, slots, chases, steps, seed, ffi.new("uint64_t *"))


def chases_threads_ns(buffer: int, slots: int, chases: int, steps: int, seed: int,
                      threads: int) -> int:
    """Wall nanoseconds for :func:`chases_ns` on ``threads`` threads at once, each from slots
    of its own and making ``steps // chases * chases`` loads."""
    return lib.ha_chases_threads_ns(buffer, slots, chases, steps, seed, threads,
                                    ffi.new("uint64_t *"))


def mark_parallel(heap, spaces, roots: np.ndarray, stack: np.ndarray, threads: int) -> LoopStats:
    """:func:`mark` on ``threads`` threads (1: the single-thread loop); ``stack`` bounds each
    thread's deque, and holds the rescan after an overflow."""
    st = new_stats()
    rc = lib.ha_mark_parallel(heap, spaces_struct(spaces), len(spaces), words_or_null(roots),
                              len(roots), words(stack), len(stack), threads, st)
    return loop_result(rc, st, "mark")


def read_threads_ns(src: int, length: int, threads: int, prefetch: bool = False) -> int:
    """Nanoseconds for ``threads`` threads to read ``length`` bytes at ``src`` together, each
    its own share."""
    return lib.ha_read_threads_ns(src, length, threads, int(prefetch), ffi.new("uint64_t *"))


# ---- userfaultfd (cext/uffd.c): system calls, >= 0 or -errno raised as SyscallFailed ----

def uffd_features(via_device: bool) -> tuple[int, int]:
    """``(features, ioctls)`` the kernel offers a fresh userfaultfd opened through the
    system call or ``/dev/userfaultfd`` (the UFFDIO_API handshake, asking for nothing)."""
    features, ioctls = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    call = "/dev/userfaultfd" if via_device else "userfaultfd"
    _check(lib.ha_uffd_features(int(via_device), features, ioctls), call)
    return int(features[0]), int(ioctls[0])


def relocate_uffd(dst: int, src: int, length: int, move: bool) -> LoopStats:
    """Install ``length`` bytes of private anonymous memory from ``src`` at ``dst`` through a
    userfaultfd in MISSING mode: UFFDIO_MOVE (the pages themselves) or UFFDIO_COPY."""
    st = new_stats()
    _check(lib.ha_relocate_uffd(int(move), dst, src, length, st),
           "UFFDIO_MOVE" if move else "UFFDIO_COPY")
    return stats_of(st)
