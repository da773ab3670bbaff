"""Heaps shared across processes: share(), a handle over a UNIX socket or inherited, attach()."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import heapalias as ha
from heapalias import collectors, workloads

from conftest import open_fds, run_isolated

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
    with parent:
        with child:  # the child's end closes here, so a failing child ends our recv
            proc = subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(CHILD), str(child.fileno())],
                pass_fds=[child.fileno()], cwd="/", stderr=subprocess.PIPE,
            )
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
        with heap.share("rw", objects=objects.describe(), roots=roots) as handle:
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
    with ha.Heap("1M", name="inherit") as heap, heap.share("rw", note="hello") as handle:
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


def test_a_shared_memfd_is_sealed_against_resizing(pool_2m) -> None:
    """Neither a peer nor the owner can shrink the memfd under the other's mappings."""
    for pages in ("4k", "2m"):
        with ha.Heap("4M", pages=pages) as heap, heap.share("rw") as handle:
            seals = fcntl.fcntl(heap.fd, fcntl.F_GET_SEALS)
            assert seals == fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
            for fd in (heap.fd, handle.fd):
                with pytest.raises(PermissionError):
                    os.ftruncate(fd, heap.size - heap.page_size)
                with pytest.raises(PermissionError):
                    os.ftruncate(fd, heap.size + heap.page_size)


TRUNCATING_PEER = """
import os, socket, sys, heapalias as ha
handle = ha.HeapHandle.receive(socket.socket(fileno=int(sys.argv[1])))
attached = ha.attach(handle)
for fd in (handle.fd, attached.fd):
    try:
        os.ftruncate(fd, 0)
    except OSError as exc:
        print(exc.errno)
"""


def test_a_peer_truncating_the_heap_cannot_crash_its_owner() -> None:
    """It used to: a reader ftruncated the memfd to 0, and the owner's walk was SIGBUS."""
    proc = run_isolated(f"""
        import socket, subprocess, sys, heapalias as ha
        from heapalias import collectors, workloads
        heap = ha.Heap("1M", name="owned")
        graph = workloads.linked_list(heap.objects, 1000)
        for prot in ("r", "rw"):
            ours, theirs = socket.socketpair()
            with ours, heap.share(prot) as handle:
                with theirs:
                    child = subprocess.Popen([sys.executable, "-c", {TRUNCATING_PEER!r},
                                              str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                             stdout=subprocess.PIPE, text=True)
                handle.send(ours)
                print(prot, *child.communicate(timeout=60)[0].split())
        print(collectors.walk(heap.objects).objects)  # SIGBUS if the memfd shrank
    """)
    assert proc.stdout.splitlines() == [
        "r 22 22",  # EINVAL: ftruncate on a read-only fd (the handle's, then attach's own)
        "rw 1 22",  # EPERM: the seal stops even a read-write fd
        "1000",
    ], proc.stderr


def test_a_read_only_handle_and_attach_refuse_every_way_to_write() -> None:
    with ha.Heap("4M", name="owner") as heap:
        heap.view.array(np.uint64)[1] = 42
        other = ha.Heap("4M", name="other")
        with heap.share() as handle:
            assert not handle.writable
            assert fcntl.fcntl(handle.fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
            with pytest.raises(ha.NotPermitted) as caught:
                ha.attach(handle, prot="rw")
            assert caught.value.errno == errno.EACCES and caught.value.remedy
            attached = ha.attach(handle)
        with attached:
            view = attached.view
            with pytest.raises(ha.NotPermitted):
                view.protect("rw")
            assert view.prot == "r"
            for attempt in (
                lambda: attached.alias(prot="rw"),
                lambda: attached.alias("mremap", prot="rw"),
                lambda: attached.multimap(2, shift=23, prot="rw"),
                lambda: ha.join(other, attached, prot="rw"),
                lambda: attached.share("rw"),
            ):
                with pytest.raises(ha.NotPermitted):
                    attempt()
            joined = ha.join(other, attached, prot="r")
            with pytest.raises(ha.NotPermitted):
                joined.protect("rw")
            joined.close()
            alias = attached.alias(prot="none")
            alias.protect("r")  # widening up to the ceiling is fine
            assert alias.array(np.uint64)[1] == 42 and not alias.may_write
            with pytest.raises(ha.InvalidArgument):
                ha.ObjectHeap(attached).new(0, 1)  # objects over it cannot write either
            # Even past heapalias, the kernel refuses: our fd is read-only.
            assert fcntl.fcntl(attached.fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
            with pytest.raises(ha.SyscallFailed) as caught:
                ha.native.mprotect(view.address, view.size, ha.native.lib.PROT_READ
                                   | ha.native.lib.PROT_WRITE)
            assert caught.value.errno == errno.EACCES
        other.close()
        assert heap.view.array(np.uint64)[1] == 42


def test_attaching_read_only_from_a_read_write_handle_holds_a_read_only_fd() -> None:
    with ha.Heap("64K") as heap, heap.share("rw") as handle, ha.attach(handle) as attached:
        assert handle.writable
        assert fcntl.fcntl(attached.fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        with pytest.raises(ha.NotPermitted):
            attached.view.protect("rw")
        with ha.attach(handle, prot="rw") as writer:
            writer.view.array()[0] = 5
        assert attached.view.array()[0] == 5


def _fd_of(kind: str, tmp_path, size: int) -> int:
    if kind == "regular file":
        path = tmp_path / "heap"
        path.write_bytes(bytes(size))
        return os.open(path, os.O_RDWR)
    if kind == "tmpfs file":
        fd = os.open("/dev/shm", os.O_RDWR | os.O_TMPFILE)
        os.ftruncate(fd, size)
        return fd
    if kind == "pipe":
        reader, writer = os.pipe()
        os.close(writer)
        return reader
    fd = os.memfd_create("unsealed", os.MFD_ALLOW_SEALING if kind == "shrinkable memfd" else 0)
    os.ftruncate(fd, size)
    return fd


@pytest.mark.parametrize(
    ("kind", "message"),
    [("regular file", "not a memfd"), ("pipe", "not a memfd"), ("tmpfs file", "not sealed"),
     ("unsealed memfd", "not sealed"), ("shrinkable memfd", "not sealed")],
)
def test_attach_accepts_only_a_sealed_memfd(kind, message, tmp_path) -> None:
    fd = _fd_of(kind, tmp_path, 65536)
    before = open_fds()
    try:
        with ha.HeapHandle(fd, 65536, "4k", "fake") as handle, \
                pytest.raises(ha.InvalidArgument, match=message):
            ha.attach(handle)
    finally:
        os.close(fd)
    assert open_fds() == before - 1


def test_attach_trusts_the_memfd_not_the_handle(pool_2m) -> None:
    with ha.Heap("4M") as heap, heap.share() as handle:
        for size, pages, message in ((8 << 20, "4k", "holds 4194304 bytes"),
                                     (4 << 20, "2m", "4 KiB pages")):
            with ha.HeapHandle(handle.fd, size, pages, "liar") as lie, \
                    pytest.raises(ha.InvalidArgument, match=message):
                ha.attach(lie)
    with ha.Heap("4M", pages="2m") as heap, heap.share() as handle:
        with ha.HeapHandle(handle.fd, 4 << 20, "4k", "liar") as lie, \
                pytest.raises(ha.InvalidArgument, match="2 MiB pages"):
            ha.attach(lie)
        with pytest.raises(ha.InvalidArgument):
            ha.attach(handle.fd)  # a bare fd is not a handle


@pytest.mark.parametrize(
    "message",
    [b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b'{"size": 4096}',
     b'{"size": "big", "pages": "4k", "name": "x", "meta": {}}',
     b'{"size": 4096, "pages": "5k", "name": "x", "meta": {}}',
     b'{"size": 4096, "pages": "4k", "name": "no spaces", "meta": {}}',
     b'{"size": 4096, "pages": "4k", "name": "x", "meta": []}', b"[" * 60_000],
)
def test_receiving_bad_metadata_raises_invalid_argument_and_closes_the_fd(message) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs, ha.Heap("64K") as heap, heap.share() as handle:
        before = open_fds()
        socket.send_fds(ours, [message], [handle.fd])
        with pytest.raises(ha.InvalidArgument):
            ha.HeapHandle.receive(theirs)
        assert open_fds() == before


def test_receiving_no_fd_raises_invalid_argument() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.send(b"{}")
        with pytest.raises(ha.InvalidArgument, match="no heap file descriptor"):
            ha.HeapHandle.receive(theirs)
        ours.close()  # the sender went away
        with pytest.raises(ha.InvalidArgument, match="no heap file descriptor"):
            ha.HeapHandle.receive(theirs)
        with pytest.raises(ha.InvalidArgument, match="UNIX socket"):
            ha.HeapHandle.receive("not a socket")


def test_a_handle_owns_its_fd() -> None:
    before = open_fds()
    with ha.Heap("64K") as heap:
        handle = heap.share(note=1)
        assert "fd=" in repr(handle) and handle.meta == {"note": 1}
        handle.close()
        handle.close()
        assert handle.closed and "closed" in repr(handle)
        with pytest.raises(ha.ViewClosed):
            assert handle.writable
        with pytest.raises(ha.ViewClosed):
            ha.attach(handle)
        heap.share()  # dropped: its finalizer closes the fd
        with pytest.raises(ha.InvalidArgument, match="JSON"):
            heap.share(bad=object())
        with pytest.raises(ha.InvalidArgument):
            heap.share("w")
    assert open_fds() == before



@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
@pytest.mark.parametrize("pages", ["4k", "2m"])
def test_a_peer_of_another_user_cannot_reopen_a_read_only_fd_read_write(pages, pool_for) -> None:
    # memfds are born 0777: a peer holding the read-only fd could open
    # /proc/self/fd/N (or the owner's /proc/<pid>/fd/N) O_RDWR and write the heap.
    pool_for(pages)
    proc = run_isolated(f"""
        import errno, json, os
        import numpy as np, heapalias as ha
        heap = ha.Heap("2M", pages={pages!r})
        heap.view.array(np.uint64)[0] = 42
        reader, writer = heap.share("r"), heap.share("rw")
        owner = os.getpid()
        read_end, write_end = os.pipe()
        if os.fork() == 0:
            os.setgid(65534)
            os.setuid(65534)  # nobody: no CAP_DAC_OVERRIDE any more
            def attempt(call):
                try:
                    call()
                    return "allowed"
                except OSError as exc:
                    return errno.errorcode[exc.errno]
            out = {{
                "reopen_rw": attempt(lambda: os.open(f"/proc/self/fd/{{reader.fd}}", os.O_RDWR)),
                "owner_rw": attempt(
                    lambda: os.open(f"/proc/{{owner}}/fd/{{heap.fd}}", os.O_RDWR)),
                "chmod": attempt(lambda: os.fchmod(reader.fd, 0o666)),
                "truncate_ro": attempt(lambda: os.ftruncate(reader.fd, 0)),
                "truncate_rw": attempt(lambda: os.ftruncate(writer.fd, 0)),
                "grow_rw": attempt(lambda: os.ftruncate(writer.fd, 1 << 30)),
            }}
            with ha.attach(reader) as attached:  # reading needs no reopen
                out["read"] = int(attached.view.array(np.uint64)[0])
            with ha.attach(writer, prot="r") as attached:  # nor does a read-only view of rw
                out["read_of_rw"] = int(attached.view.array(np.uint64)[0])
            os.write(write_end, json.dumps(out).encode())
            os._exit(0)
        os.close(write_end)
        print(os.read(read_end, 4096).decode())
        os.wait()
        print(oct(os.fstat(heap.fd).st_mode & 0o777))
    """)
    result, mode = proc.stdout.splitlines()[:2]
    assert json.loads(result) == {
        "reopen_rw": "EACCES", "owner_rw": "EACCES", "chmod": "EPERM",
        "truncate_ro": "EINVAL", "truncate_rw": "EPERM", "grow_rw": "EPERM",
        "read": 42, "read_of_rw": 42,
    }, proc.stderr
    assert mode == "0o400"


@pytest.mark.parametrize("fd", [2**31, 2**64, -1, -(2**40), 1.0, True, "3", None])
def test_every_bad_fd_is_an_invalid_argument(fd) -> None:
    # 2**31 used to reach os.dup as an OverflowError.
    with pytest.raises(ha.InvalidArgument):
        ha.HeapHandle(fd, 65536, "4k", "bad")


def test_a_closed_fd_is_an_invalid_argument() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    with pytest.raises(ha.InvalidArgument, match="not open"):
        ha.HeapHandle(read_end, 65536, "4k", "closed")


@pytest.mark.parametrize("pages", ["4k", "2m"])
def test_a_read_only_attacher_cannot_punch_holes_or_remove_pages(pages, pool_for) -> None:
    # A punched hugetlb page that the owner touches again needs a fresh page from the
    # pool (SIGBUS if it is empty); a read-only peer must not be able to cause that.
    import ctypes
    import mmap

    pool_for(pages)
    libc = ctypes.CDLL(None, use_errno=True)
    punch_hole = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
    with ha.Heap("2M", pages=pages) as heap, heap.share() as handle:
        heap.view.array(np.uint64)[:] = 7
        with ha.attach(handle) as reader:
            assert libc.fallocate(reader.fd, punch_hole, ctypes.c_long(0),
                                  ctypes.c_long(1 << 21)) == -1
            assert ctypes.get_errno() == errno.EBADF
            with pytest.raises(ha.SyscallFailed) as caught:
                ha.native.madvise(reader.view.address, reader.view.size, mmap.MADV_REMOVE)
            assert caught.value.errno == errno.EACCES
        assert (heap.view.array(np.uint64) == 7).all()


def test_a_prot_that_is_not_a_string_is_an_invalid_argument() -> None:
    """share/attach(prot=np.array([1, 2])) was numpy's ValueError: `in` on an array is
    elementwise, and its truth is ambiguous."""
    with ha.Heap("64K") as heap, heap.share() as handle:
        for prot in (np.array([1, 2]), np.array(["r"]), ["r"], None):
            with pytest.raises(ha.InvalidArgument, match="prot"):
                heap.share(prot)
            with pytest.raises(ha.InvalidArgument, match="prot"):
                ha.attach(handle, prot=prot)
