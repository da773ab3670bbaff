"""Heaps shared across processes: share(), a handle over a UNIX socket or inherited, attach()."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import heapalias as ha
from heapalias import collectors, workloads

CHILD = """
import json, socket, sys
import heapalias as ha
from heapalias import collectors

sock = socket.socket(fileno=int(sys.argv[1]))
handle = ha.HeapHandle.receive(sock)
readonly = ha.attach(handle, prot="r")
objects = ha.ObjectHeap.from_description(readonly, handle.meta["objects"])
roots = handle.meta["roots"]
walked = collectors.walk(objects)
verified = collectors.verify(objects, roots)
writable = ha.attach(handle, prot="rw")     # mark bits live in the headers
marker = ha.ObjectHeap.from_description(writable, handle.meta["objects"])
marked = collectors.mark(marker, roots)
collectors.clear_marks(marker)
try:
    readonly.view.array()[0] = 1
    writes = "allowed"
except ValueError:
    writes = "refused"
result = {"walk": [walked.objects, walked.bytes, walked.refs], "verify": verified.objects,
          "mark": [marked.objects, marked.bytes], "writes": writes,
          "parent_marker": int(readonly.view.array(ha.objects.np.uint64)[-1])}
sock.sendall(json.dumps(result).encode())
"""


def run_collector_child(handle: ha.HeapHandle) -> dict:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with parent, child:
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), str(child.fileno())],
                                pass_fds=[child.fileno()], cwd="/", stderr=subprocess.PIPE)
        handle.send(parent)
        data = b""
        while chunk := parent.recv(65536):
            data += chunk
            if data.endswith(b"}"):
                break
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    return json.loads(data)


def test_a_collector_process_sees_what_the_mutator_built() -> None:
    with ha.Heap("16M", name="shared") as heap:
        objects = heap.objects
        graph = workloads.random_graph(objects, 20_000, 3, size_distribution=(0, 4), seed=8)
        heap.view.array(np.uint64)[-1] = 0xBEEF  # past the objects: the heap's last word
        marker = int(heap.view.array(np.uint64)[-1])
        walked = collectors.walk(objects)
        marked = collectors.mark(objects, graph.roots)
        collectors.clear_marks(objects)
        roots = [int(r) for r in graph.roots]
        with heap.share(objects=objects.describe(), roots=roots) as handle:
            seen = run_collector_child(handle)
        rw_view = heap.view.array(np.uint64)  # the parent holds its read-write view throughout
        assert seen["walk"] == [walked.objects, walked.bytes, walked.refs]
        assert seen["verify"] == walked.objects
        assert seen["mark"] == [marked.objects, marked.bytes]
        assert seen["writes"] == "refused"
        assert seen["parent_marker"] == marker
        assert not any(o.marked for o in objects.objects())  # the child cleared its marks
        del rw_view


def test_an_inherited_fd_attaches_and_aliases() -> None:
    with ha.Heap("1M", name="inherit") as heap, heap.share(note="hello") as handle:
        heap.view.array(np.uint64)[7] = 1234
        code = f"""
            import heapalias as ha, numpy as np
            h = ha.attach(ha.HeapHandle({handle.fd}, {heap.size}, "4k", "inherit"), prot="rw")
            assert h.view.array(np.uint64)[7] == 1234
            h.view.array(np.uint64)[8] = 5678
        """
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                              pass_fds=[handle.fd], cwd="/", capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert heap.view.array(np.uint64)[8] == 5678  # the child wrote the parent's heap
        assert handle.meta == {"note": "hello"}


def test_share_and_attach_reject_what_cannot_work(pool_2m) -> None:
    with ha.Heap("64K", backing="anon") as anon, pytest.raises(ha.UnsupportedAlias):
        anon.share()
    with ha.Heap("4M", pages="2m", name="huge") as heap, heap.share() as handle:
        attached = ha.attach(handle)  # hugetlb memfds attach too
        assert attached.pages == "2m" and attached.view.prot == "r"
        assert not attached.view.array().flags.writeable
        with pytest.raises(ha.InvalidArgument):
            ha.attach(ha.HeapHandle(handle.fd, heap.size * 2, "2m", "huge"))  # wrong size
        with pytest.raises(ha.InvalidArgument):
            ha.attach(handle, prot="none")
        attached.close()
    with pytest.raises(ha.InvalidArgument):
        ha.attach(ha.HeapHandle(987654, 4096, "4k", "gone"))
    with ha.Heap("64K") as heap:
        objects = ha.ObjectHeap(heap, encoding="address")
        with pytest.raises(ha.InvalidArgument):
            ha.ObjectHeap.from_description(heap, objects.describe())
