"""HPROF heap dumps: hand-built ones cover every record, sub-record and identifier size;
a real one, javac's heap captured with the installed JDK, is checked against the JVM's
own class histogram; truncated and corrupted dumps raise HeapDumpError, never crash."""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hprof_files import (
    BOOLEAN,
    BYTE,
    CHAR,
    DOUBLE,
    FLOAT,
    INT,
    LONG,
    OBJECT,
    ROOTS,
    SHORT,
    HprofWriter,
    reachable_in_file,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import heapalias as ha
from heapalias import cli, collectors, hprof, workloads
from heapalias.bench.cases import Context, Variant, case_named
from heapalias.bench.runner import run_suite
from heapalias.hprof import capture
from heapalias.objects import MAX_REFS
from heapalias.probe import probe

from conftest import run_isolated

MISSING = 0xDEAD00  # an id no object of the dump has


def zoo(id_size: int) -> HprofWriter:
    """A dump with every sub-record type, every root kind, every basic type, references
    to an object the dump lacks, and two objects no root reaches."""
    w = HprofWriter(id_size)
    obj = w.klass("java/lang/Object")
    node = w.klass("Node", obj, fields=[("next", OBJECT), ("value", INT), ("flag", BOOLEAN),
                                        ("weight", DOUBLE), ("tag", CHAR), ("small", SHORT),
                                        ("big", LONG), ("ratio", FLOAT), ("octet", BYTE)])
    array_class = w.klass("[LNode;", obj)
    last = w.instance(node, value=-1, big=1 << 40, ratio=0.5, octet=-3)
    first = w.instance(node, next=last, value=7, flag=1, weight=2.5, tag=65, small=-2)
    lost = w.instance(node, next=MISSING, value=3)  # refers to an object not in the dump
    leaf = w.klass("Leaf", node, fields=[("data", OBJECT)],
                   statics=[("COUNT", INT, 3), ("HEAD", OBJECT, first), ("SCALE", DOUBLE, 1.5),
                            ("<resolved_references>", OBJECT, 0)],
                   constants=[(1, OBJECT, last), (2, LONG, 9)])
    ints = w.primitive_array(INT, [1, 2, 3])
    leaf_a = w.instance(leaf, data=ints, next=first, value=11)
    array = w.object_array(array_class, [first, 0, MISSING, leaf_a])
    primitives = [w.primitive_array(kind, values) for kind, values in (
        (BOOLEAN, [1, 0]), (CHAR, [66]), (FLOAT, [1.25]), (DOUBLE, [2.0, 3.0]),
        (BYTE, [1, 2, 3, 4, 5, 6, 7, 8, 9]), (SHORT, [-1]), (LONG, [5]), (INT, []))]
    two = w.instance(node)  # no root reaches these two
    w.instance(node, next=two)
    for kind in ROOTS:
        w.root(kind, {"sticky_class": leaf, "unknown": MISSING, "jni_global": array,
                      "thread_object": lost}.get(kind, first))
    for primitive in primitives:
        w.root("jni_local", primitive)
    return w


def heap_for(dump: hprof.HeapDump) -> ha.Heap:
    """A heap whose semispaces each hold the dump (whole MiBs)."""
    return ha.Heap(max(-(-dump.heap_bytes * 2 // (1 << 20)) + 1, 1) << 20)


def load_into(path: Path, **options):
    dump = hprof.read(path)
    heap = heap_for(dump)
    semi = ha.SemiSpace.over(heap)
    return heap, semi, dump.load(semi.objects, space="from", **options)


def write(tmp_path: Path, data: bytes, name: str = "dump.hprof") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("id_size", [4, 8])
@pytest.mark.parametrize("segments", [0, 1, 3], ids=["heap-dump", "one-segment", "3-segments"])
@pytest.mark.parametrize("backwards", [False, True], ids=["in-order", "backwards"])
def test_every_record_and_sub_record_loads_as_written(tmp_path, id_size, segments,
                                                      backwards) -> None:
    w = zoo(id_size)
    if backwards:  # roots, instances and arrays before the classes they need
        w.subs.reverse()
    heap, semi, imported = load_into(write(tmp_path, w.data(segments)))
    with heap:
        objects, stats, written = semi.objects, imported.stats, w.written
        assert (stats.instances, stats.object_arrays, stats.primitive_arrays, stats.classes) == \
            (6, 1, 9, 4)
        assert stats.objects == stats.heap_objects == len(written.refs) == 20
        assert set(stats.root_records) == set(ROOTS)
        assert stats.missing_references == 2 and stats.missing_roots == 1
        assert stats.unreachable == 2 and stats.extra_roots == 2
        for oid, refs in written.refs.items():
            obj = objects.deref(int(imported.refs_of([oid])[0]))
            assert list(obj.refs.raw) == list(imported.refs_of(refs)), hex(oid)
            payload = written.payload.get(oid)
            if payload is not None:  # classes' payloads are their statics: checked below
                assert obj.payload.tobytes() == payload.ljust(len(obj.payload) * 8, b"\0")
        leaf = objects.deref(int(imported.refs_of([written.classes[3]])[0]))
        assert leaf.payload.tobytes()[:12] == struct.pack(">id", 3, 1.5)
        assert stats.references == sum(
            1 for refs in written.refs.values() for r in refs if r in written.refs)
        # The loops agree with the import: every object reached, all references valid.
        assert collectors.mark(objects, imported.roots).objects == stats.heap_objects
        collectors.clear_marks(objects, "from")
        collectors.verify(objects, imported.roots)
        before = objects.shape(imported.roots)
        roots = imported.roots.copy()
        assert semi.collect(roots).objects == stats.heap_objects
        assert objects.shape(roots) == before


def test_unreachable_objects_are_counted_and_rooted_unless_asked_not_to(tmp_path) -> None:
    w = zoo(8)
    path = write(tmp_path, w.data(2))
    total, reached = reachable_in_file(path.read_bytes())  # an independent reader
    assert total - reached == 2
    for unreachable_roots in (True, False):
        heap, semi, imported = load_into(path, unreachable_roots=unreachable_roots)
        with heap:
            marked = collectors.mark(semi.objects, imported.roots).objects
            assert marked == (total if unreachable_roots else reached)
            assert imported.stats.reachable_heap_objects == reached
            assert len(imported.roots) == len(imported.dump_roots) + 2 * unreachable_roots


def test_class_roots_can_be_left_out(tmp_path) -> None:
    path = write(tmp_path, zoo(4).data(1))
    heap, semi, imported = load_into(path, class_roots=False, unreachable_roots=False)
    with heap:
        stats = imported.stats
        assert stats.class_roots == 0 and stats.roots == 12
        # Without the classes as roots, "Leaf" (a sticky-class root) still reaches its
        # superclasses, but nothing refers to the array class: it joins the two.
        assert stats.unreachable == 3
        assert collectors.mark(semi.objects, imported.roots).objects == \
            stats.reachable_heap_objects == stats.objects - 3


def test_object_arrays_longer_than_a_header_counts_become_arraylets(tmp_path) -> None:
    w = HprofWriter(8)
    obj = w.klass("java/lang/Object")
    array_class = w.klass("[Ljava/lang/Object;", obj)
    targets = [w.instance(obj) for _ in range(3)]
    length = 2 * MAX_REFS + 10
    elements = [targets[k % 3] if k % 5 else 0 for k in range(length)]
    big = w.object_array(array_class, elements)
    w.root("jni_global", big)
    heap, semi, imported = load_into(write(tmp_path, w.data(1)))
    with heap:
        objects, stats = semi.objects, imported.stats
        assert stats.arraylet_chunks == 3 and stats.heap_objects == stats.objects + 3
        assert stats.references == sum(1 for e in elements if e) + 1  # + the array class's
        # reference to its superclass
        target = np.array([k % 3 if k % 5 else -1 for k in range(length)])

        def elements_of(spine_ref: int) -> np.ndarray:
            spine = objects.deref(spine_ref)
            chunks = [spine.refs[k] for k in range(3)]
            assert [len(chunk.refs) for chunk in chunks] == [MAX_REFS, MAX_REFS, 10]
            return np.concatenate([chunk.refs.raw for chunk in chunks])

        assert np.array_equal(elements_of(int(imported.refs_of([big])[0])),
                              imported.refs_of(elements))
        assert collectors.mark(objects, imported.roots).objects == stats.heap_objects
        collectors.clear_marks(objects, "from")
        roots = imported.roots.copy()
        semi.collect(roots)
        collectors.verify(objects, roots)
        spine = next(r for r in roots if len(objects.deref(int(r)).refs) == 3)
        after = elements_of(int(spine))  # the same three targets, and nulls, at their places
        assert not after[target < 0].any()
        assert len({int(after[target == t][0]) for t in range(3)}) == 3
        assert all(len(set(after[target == t].tolist())) == 1 for t in range(3))
        assert stats.degrees[len([e for e in elements if e])] == 1  # the array, whole


def test_the_statistics_feed_a_random_graph(tmp_path) -> None:
    heap, _, imported = load_into(write(tmp_path, zoo(8).data(1)))
    with heap:
        stats = imported.stats
        assert sum(stats.sizes.values()) == sum(stats.degrees.values()) == stats.objects
        assert sum(row.count for row in stats.class_histogram) == stats.objects
        assert sum(row.heap_bytes for row in stats.class_histogram) == stats.heap_bytes
        assert stats.top_classes(1)[0].name in {row.name for row in stats.class_histogram}
        json.dumps(stats.as_dict())
    with ha.Heap("4M") as other:
        graph = workloads.random_graph(ha.ObjectHeap(other), 500, 2,
                                       size_distribution=stats.sizes, seed=3)
        assert graph.objects == 500


def test_a_heap_dump_without_objects_loads_empty(tmp_path) -> None:
    for roots in ([], [MISSING]):
        w = HprofWriter(8)
        for root in roots:
            w.root("unknown", root)
        heap, semi, imported = load_into(write(tmp_path, w.data(1)))
        with heap:
            stats = imported.stats
            assert (stats.objects, stats.heap_bytes, len(imported.roots)) == (0, 0, 0)
            assert stats.missing_roots == len(roots) and stats.sizes == stats.degrees == {}
            assert semi.collect(imported.roots.copy()).objects == 0


def test_a_space_too_small_is_space_full_and_allocates_nothing(tmp_path) -> None:
    dump = hprof.read(write(tmp_path, zoo(8).data(1)))
    with ha.Heap("1M") as heap:
        objects = ha.ObjectHeap(heap, spaces={"small": (8, 512)})
        with pytest.raises(ha.SpaceFull, match="heap dump needs"):
            dump.load(objects, space="small")
        assert objects.space("small").top == 8


# ---- what cannot be read: a typed error, with the offset and tag of the record at fault ----

def test_what_is_not_a_heap_dump(tmp_path) -> None:
    w = zoo(8)
    cases = {
        b"GIF89a": "not an HPROF file",
        b"JAVA PROFILE 1.0.2\0" + struct.pack(">IQ", 2, 0): "identifier size 2",
        b"JAVA PROFILE 1.0.2\0\0\0": "ends inside its header",
        w.data(1)[:31] + w.record(0x01, w.ident(5) + b"x"): "no HEAP DUMP record",
    }
    for data, message in cases.items():
        with pytest.raises(ha.HeapDumpError, match=message):
            hprof.read(write(tmp_path, data))
    with pytest.raises(ha.SyscallFailed):
        hprof.read(tmp_path / "absent.hprof")


def test_every_truncation_is_a_heap_dump_error(tmp_path) -> None:
    for segments in (0, 2):
        data = zoo(4).data(segments)
        for cut in range(len(data)):
            path = write(tmp_path, data[:cut])
            with pytest.raises(ha.HeapDumpError) as caught:
                dump = hprof.read(path)
                with heap_for(dump) as heap:
                    dump.load(ha.ObjectHeap(heap))
            assert 0 <= caught.value.offset <= cut, (segments, cut, str(caught.value))


def corrupt(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value):]


def test_corruption_names_the_record_at_fault(tmp_path) -> None:
    w = zoo(8)
    data = w.data(1, others=False)
    segment = len(data) - 18 - sum(len(sub) for sub in w.subs)  # its HEAP DUMP SEGMENT
    at, subs = segment + 9, {}
    for sub in w.subs:
        subs.setdefault(sub[0], at)
        at += len(sub)
    instance, array, primitive, klass = subs[0x21], subs[0x22], subs[0x23], subs[0x20]
    object_class = data[klass + 1:klass + 9]  # java/lang/Object: no fields
    cases = [
        (corrupt(data, segment, b"\x99"), segment, 0x99, "tag the HPROF format"),
        (corrupt(data, segment + 9, b"\x42"), segment + 9, 0x42, "tag the HPROF format"),
        (corrupt(data, instance + 13, object_class), instance, 0x21, "field bytes"),
        (corrupt(data, instance + 13, w.ident(MISSING)), instance, 0x21, "no CLASS DUMP"),
        (corrupt(data, instance + 21, struct.pack(">I", 1 << 30)), instance, 0x21, "runs past"),
        (corrupt(data, array + 13, struct.pack(">I", 1 << 31)), array, 0x22, "longer than"),
        (corrupt(data, primitive + 17, b"\x02"), primitive, 0x23, "basic type"),
        (corrupt(data, instance + 1, object_class), instance, None, "same id"),
        (corrupt(data, klass + 13, w.ident(MISSING)), klass, 0x20, "superclass"),
    ]
    for broken, offset, tag, message in cases:
        with pytest.raises(ha.HeapDumpError, match=message) as caught:
            dump = hprof.read(write(tmp_path, broken))
            with heap_for(dump) as heap:
                dump.load(ha.ObjectHeap(heap))
        assert caught.value.offset == offset, (message, str(caught.value))
        assert caught.value.tag == tag, (message, str(caught.value))


def test_a_file_that_changes_between_the_passes_is_refused(tmp_path) -> None:
    w = zoo(8)
    path = write(tmp_path, w.data(1))
    dump = hprof.read(path)
    stat = path.stat()
    # Same size and time, other contents: the fill pass finds other objects.
    data = path.read_bytes()
    instance = data.index(next(sub for sub in w.subs if sub[0] == 0x21))
    path.write_bytes(corrupt(data, instance + 1, w.ident(0x4242)))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with heap_for(dump) as heap, pytest.raises(ha.HeapDumpError, match="changed"):
        dump.load(ha.ObjectHeap(heap))
    path.write_bytes(data + b"\0")
    with heap_for(dump) as heap, pytest.raises(ha.HeapDumpError, match="changed since"):
        dump.load(ha.ObjectHeap(heap))


FUZZ_CHILD = r"""
import json, sys
import heapalias as ha
from heapalias import hprof

cases = json.loads(sys.stdin.read())
outcomes = {"ok": 0, "typed": 0}
for path, mutations in cases:
    data = bytearray(open(path, "rb").read())
    for kind, where, bits in mutations:
        where %= max(len(data), 1)
        if kind == "cut":
            del data[where:]
        elif data:
            data[where] ^= bits or 1
    target = path + ".mutated"
    open(target, "wb").write(data)
    try:
        dump = hprof.read(target)
        size = max(-(-dump.heap_bytes * 2 // (1 << 20)) + 1, 1) << 20
        if size > 1 << 30:
            raise ha.SpaceFull("too big to try")
        with ha.Heap(size) as heap:
            semi = ha.SemiSpace.over(heap)
            imported = dump.load(semi.objects, space="from")
            ha.collectors.verify(semi.objects, imported.roots)
            semi.collect(imported.roots.copy())
        outcomes["ok"] += 1
    except (ha.HeapDumpError, ha.SpaceFull):
        outcomes["typed"] += 1
print(json.dumps(outcomes))
"""

mutation = st.tuples(st.sampled_from(["flip", "flip", "cut"]), st.integers(0, 1 << 30),
                     st.integers(0, 255))


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("hand-built")
    return [str(write(folder, zoo(id_size).data(segments), f"zoo-{id_size}-{segments}.hprof"))
            for id_size in (4, 8) for segments in (0, 2)]


@settings(max_examples=10, deadline=None)
@given(mutations=st.lists(st.lists(mutation, min_size=1, max_size=3), min_size=24,
                          max_size=24))
def test_corrupted_hand_built_dumps_never_crash(hand_built, mutations) -> None:
    cases = [(hand_built[k % len(hand_built)], m) for k, m in enumerate(mutations)]
    proc = run_isolated(FUZZ_CHILD, stdin=json.dumps(cases), timeout=120)
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout)
    assert outcomes["ok"] + outcomes["typed"] == len(cases)
    assert outcomes["typed"] > 0


# ---- a real heap: javac's, captured with the installed JDK ----

@pytest.fixture(scope="module")
def javac(tmp_path_factory) -> capture.Capture:
    why = capture.unavailable()
    if why:
        pytest.skip(reason=f"cannot capture a JVM heap dump here: {why}")
    return capture.capture(tmp_path_factory.mktemp("javac") / "javac.hprof",
                           classes=capture.TEST_CLASSES, full_gcs=1)


def test_javac_heap_matches_the_jvm_class_histogram(javac) -> None:
    dump = hprof.read(javac.dump, jdk=javac.feature)
    with heap_for(dump) as heap:
        stats = dump.load(ha.ObjectHeap(heap)).stats
    ours = {row.name: (row.count, row.jvm_bytes) for row in stats.class_histogram}
    theirs = javac.histogram
    counts = {name: (ours.get(name, (0, 0))[0], theirs.get(name, (0, 0))[0])
              for name in set(ours) | set(theirs)}
    assert {name: c for name, c in counts.items() if c[0] != c[1]} == {}
    differ = {name: (ours[name][1], theirs[name][1]) for name in ours
              if ours[name][1] != theirs[name][1]}
    assert stats.jvm_bytes == sum(b for _, b in theirs.values()), differ
    assert stats.missing_references == 0 and stats.missing_roots == 0  # a live dump
    assert 0 < stats.unreachable_fraction < 0.05


def test_javac_heap_marks_as_an_independent_reader_traverses_it(javac) -> None:
    total, reached = reachable_in_file(javac.dump.read_bytes())
    heap, semi, imported = load_into(javac.dump)
    with heap:
        objects, stats = semi.objects, imported.stats
        assert stats.objects == stats.heap_objects == total  # no arraylets in this heap
        assert stats.unreachable == stats.extra_roots == total - reached
        assert collectors.mark(objects, imported.dump_roots).objects == reached
        collectors.clear_marks(objects, "from")
        assert collectors.mark(objects, imported.roots).objects == total
        collectors.clear_marks(objects, "from")
        collectors.verify(objects, imported.roots)
        roots = imported.roots.copy()
        copied = semi.collect(roots)
        assert (copied.objects, copied.bytes) == (total, stats.heap_bytes)
        collectors.verify(objects, roots)
        assert collectors.mark(objects, roots).objects == total


def test_javac_full_gc_pauses_were_logged(javac) -> None:
    assert javac.collector == "serial" and len(javac.full_gc_ms) == 1
    assert javac.full_gc_ms[0] > 0 and javac.live_bytes > 1 << 20
    assert re.match(r"\d+", javac.version)


@settings(max_examples=3, deadline=None)
@given(mutations=st.lists(st.lists(mutation, min_size=1, max_size=2), min_size=3,
                          max_size=3))
def test_corrupted_real_dumps_never_crash(javac, mutations) -> None:
    cases = [(str(javac.dump), m) for m in mutations]
    proc = run_isolated(FUZZ_CHILD, stdin=json.dumps(cases), timeout=300)
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout)
    assert outcomes["ok"] + outcomes["typed"] == len(cases)


# ---- the command line and the bench case ----

def test_heapdump_command_imports_and_times_the_loops(tmp_path) -> None:
    path = write(tmp_path, zoo(8).data(2))
    result = CliRunner().invoke(cli.main, ["heapdump", str(path), "--json", "--repeat", "1",
                                           "--pages", "4k"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["import"]["objects"] == 20 and data["jvm"] is None
    timed = {r["label"] for r in data["bench"]["results"] if r["case"] == "real_heap"}
    assert timed == {f"memfd/4k {loop}" for loop in ("mark", "walk", "verify", "cheney")}
    skipped = {s["label"]: s["reason"] for s in data["bench"]["skipped"]}
    assert "not captured" in skipped["jvm-serial"]
    assert data["comparison"] == [line for line in data["comparison"] if "Cheney" in line]


def test_heapdump_command_errors_are_one_line(tmp_path) -> None:
    broken = write(tmp_path, zoo(4).data(1)[:-40])
    for args, code, text in ((["heapdump"], 2, "give a heap dump FILE or --capture"),
                             (["heapdump", str(broken)], 1, "heap dump corrupt at offset")):
        result = CliRunner().invoke(cli.main, args)
        assert result.exit_code == code, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and text in lines[0] and "Remedy" in lines[0], result.output


def test_bench_runs_the_real_heap_case_given_a_dump(tmp_path) -> None:
    path = write(tmp_path, zoo(8).data(1))
    report = run_suite(suite="quick", size=8 << 20, repeat=1, pattern="4k cheney",
                       pages="4k", hprof=str(path))
    assert [r.label for r in report.results] == ["memfd/4k cheney"]
    assert report.config["hprof"] == str(path)


def test_the_real_heap_case_says_why_it_cannot_capture(monkeypatch) -> None:
    monkeypatch.setattr(capture, "unavailable", lambda: "no JDK on PATH (test)")
    ctx = Context(size=8 << 20, suite="full", probe=probe())
    assert list(case_named("real_heap").variants(ctx)) == [
        (Variant(detail="capture"), "no JDK on PATH (test)")]


def test_heapdump_capture_compares_with_the_jvm(tmp_path) -> None:
    why = capture.unavailable()
    if why:
        pytest.skip(reason=f"cannot capture a JVM heap dump here: {why}")
    out = tmp_path / "captured.hprof"
    result = CliRunner().invoke(cli.main, ["heapdump", "--capture", str(out), "--classes", "2",
                                           "--json", "--repeat", "1", "--pages", "4k"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert out.is_file() and data["jvm"]["classes"] == 2
    assert len(data["jvm"]["pauses"]["serial"]) == capture.FULL_GCS - 1
    labels = {r["label"] for r in data["bench"]["results"]}
    assert {"jvm-serial", "jvm-parallel", "memfd/4k cheney"} <= labels
    assert "serial full GC" in data["comparison"][0] and "parallel" in data["comparison"][0]
