"""Family ``peer``: another process misbehaves on a shared heap, and nothing may crash either side.

Each case forks a peer and plays one of three scenarios (the case's random stream
draws the whole plan before the fork, so both sides know it):

``reader``    this process owns a heap of objects and shares it; the peer attaches it
              read-only and misbehaves: truncates or grows the memfd, writes it with
              pwrite, mmap or a reopened ``/proc/self/fd``, widens its view through the
              public API, seals it, or rewrites headers while the owner's loops run.
              Then the owner walks, verifies, marks and collects its heap.
``owner``     the peer owns and shares the heap, waits until this process has attached
              it, then misbehaves on its own memfd (truncates it, writes garbage, races);
              this process walks and verifies what it attached.
``metadata``  the peer sends a bogus handle: bad JSON, wrong sizes or pages, a mangled
              object description, or an fd that is not a memfd (a regular file it then
              truncates, a pipe, a socket, /dev/zero, a directory, an O_PATH fd).

Operating-system refusals (an OSError in the peer) are the outcome a sealed,
least-privilege heap should give; what the public API does must still be a
HeapAliasError or a success. A read-only attachment that becomes writable, a memfd
whose size a peer changes, a write seal a peer adds, and ``attach`` accepting an
fd that is not a memfd are findings, as are signals, hangs and leaks in this process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import signal
import socket
import tempfile
import time

import numpy as np

import heapalias as ha
from heapalias import collectors, workloads
from heapalias.objects import make_header

from .harness import CASE_TIMEOUT, Case

#: Seconds the peer may take; it gets SIGALRM after that (a hang, reported by the owner).
PEER_TIMEOUT = max(1, round(CASE_TIMEOUT / 2))
HEAP_SIZES = (64 << 10, 256 << 10, 1 << 20)
#: F_SEAL_FUTURE_WRITE (Linux 5.1); Python's fcntl module does not name it.
F_SEAL_FUTURE_WRITE = 0x10
READER_MOVES = ("truncate", "grow", "pwrite", "write", "mmap", "reopen", "alias-rw",
                "protect-rw", "multimap-rw", "join-rw", "seal", "attach-rw", "race")
OWNER_MOVES = ("truncate", "grow", "pwrite", "garbage-headers", "close", "race")
#: What a bogus handle carries instead of the memfd.
FD_KINDS = ("memfd", "memfd", "none", "two", "file", "file", "pipe", "socket", "dev-zero",
            "directory", "o-path", "other-memfd")


# ---- both sides ----

class Channel:
    """A SOCK_SEQPACKET pair: one message per send, so a handle never runs into a note."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for end in (self.ours, self.theirs):
            end.settimeout(PEER_TIMEOUT + 1)

    def keep(self, side: str) -> socket.socket:
        """The end this side (``"victim"`` or ``"peer"``) uses; the other end is closed."""
        mine, other = (self.ours, self.theirs) if side == "victim" else (self.theirs, self.ours)
        other.close()
        return mine

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ours.close()
        self.theirs.close()


def garbage(rng, words: int) -> bytes:
    """Words a misbehaving peer writes: headers with 65535 references or size 0, and noise."""
    values = [rng.choice((int(make_header(4, 0xFFFF)), 0, int(make_header(0xFFFFFFFF, 1)),
                          rng.getrandbits(64))) for _ in range(words)]
    return np.array(values, dtype=np.uint64).tobytes()


def build(case: Case, size: int) -> tuple[ha.Heap, ha.ObjectHeap, list[int]]:
    """A memfd heap holding a random graph, its ObjectHeap and roots."""
    heap = ha.Heap(size, name="shared")
    objects = ha.ObjectHeap(heap, spaces=collectors.semispace_layout(size))
    n = case.rng.randrange(50, size // 128)
    case.step(f"heap = Heap({size}); random_graph(objects, {n}, space='from')")
    graph = workloads.random_graph(objects, n, 2, (0, 3), seed=case.seed, space="from")
    return heap, objects, [int(r) for r in graph.roots]


def run_loops(case: Case, objects: ha.ObjectHeap, roots: list[int]) -> None:
    """Every loop the side may run over the shared heap, then a read of every page."""
    case.call("collectors.walk", collectors.walk, objects, "from")
    case.call("collectors.verify", collectors.verify, objects, roots)
    if objects.writable:
        case.call("collectors.mark", collectors.mark, objects, roots)
        case.call("collectors.clear_marks", collectors.clear_marks, objects, "from")
        semi = case.call("ha.SemiSpace", ha.SemiSpace, objects)
        if semi.ok:
            case.call("semi.collect", semi.value.collect, np.array(roots, dtype=np.uint64))
    words = objects.words
    case.step("read every page of the heap")
    int(words[:: 512].sum())


def race(case: Case, words: np.ndarray | None, link: socket.socket) -> None:
    """Flip headers of ``words`` to 65535 references or size 0 and back until told to stop.

    Without ``words`` (nothing writable to race with) it only keeps the appointment.
    """
    link.send(b"racing")
    if words is None:
        settle(case, link, b"stop")
        return
    rng = np.random.default_rng(case.seed)
    link.setblocking(False)
    count = len(words)
    while True:
        with contextlib.suppress(BlockingIOError):
            link.recv(16)  # "stop", or b"" once the owner is gone
            break
        where = rng.integers(1, count, 8)
        good = words[where].copy()
        words[where] = make_header(good & np.uint64(0xFFFFFFFF), 0xFFFF)
        words[where] = 0
        words[where] = good


def run_peer(case: Case, body, *args) -> int:
    """Fork; the child runs ``body(case, *args)`` as the peer and never returns. The pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.alarm(PEER_TIMEOUT)
        case.side = "peer"
        case.rng.seed(f"peer:{case.family}:{case.seed}")
        body(case, *args)
    except ConnectionError:  # the other side died (its death is the finding)
        pass
    except Exception as exc:  # an untyped error that escaped the peer's own checks
        case.finding("untyped", "peer", f"{type(exc).__name__}: {exc}")
        code = 3
    finally:
        os._exit(code)


def reap(case: Case, pid: int) -> None:
    """Wait for the peer; its death by a signal (SIGALRM: it hung) is a finding."""
    deadline = time.monotonic() + PEER_TIMEOUT + 2
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.001)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        kind = "hang" if number in (signal.SIGALRM, signal.SIGKILL) else "signal"
        case.finding(kind, "peer", f"the peer died of {signal.Signals(number).name}", "peer")


def tell(link: socket.socket, note: bytes) -> None:
    """Send the peer a note; a peer that died cannot read it (reap reports its death)."""
    with contextlib.suppress(ConnectionError):
        link.send(note)


def settle(case: Case, link: socket.socket, expected: bytes) -> bool:
    """Wait for the peer's next note; False (logged) if it sent something else or died."""
    try:
        note = link.recv(64)
    except OSError as exc:
        case.step(f"  the peer sent nothing ({type(exc).__name__})")
        return False
    if note != expected:
        case.step(f"  the peer sent {note!r}, not {expected!r}")
    return note == expected


# ---- scenario: the reader misbehaves ----

def reader_scenario(case: Case) -> None:
    rng = case.rng
    heap, objects, roots = build(case, rng.choice(HEAP_SIZES))
    moves = rng.sample(READER_MOVES, rng.randint(1, 4))
    if "race" in moves:  # a race lasts until the owner's loops end: it comes last
        moves.remove("race")
        moves.append("race")
    transport = rng.choice(("socket", "inherit"))
    case.step(f"peer will: {moves}, handle by {transport}")
    with heap, Channel() as channel:
        handle = heap.share(objects=objects.describe(), roots=roots)
        pid = run_peer(case, misbehaving_reader, channel, handle, transport, moves)
        link = channel.keep("victim")
        if transport == "socket":
            handle.send(link)
        handle.close()
        if moves[-1] == "race" and settle(case, link, b"racing"):
            run_loops(case, objects, roots)
            tell(link, b"stop")
        reap(case, pid)
        case.step("the peer is gone: the owner runs its loops")
        run_loops(case, objects, roots)
        case.call("heap.alias", heap.alias, prot="rw")
        link.close()


def misbehaving_reader(case: Case, channel: Channel, handle: ha.HeapHandle, transport: str,
                       moves: list[str]) -> None:
    link = channel.keep("peer")
    if transport == "socket":
        handle = case.call("HeapHandle.receive", ha.HeapHandle.receive, link).value
    attached = case.call("ha.attach", ha.attach, handle, prot="r") if handle else None
    if attached is None or not attached.ok:
        if "race" in moves:  # the owner waits for the race: keep the appointment
            race(case, None, link)
        return
    for move in moves:
        case.step(f"move: {move}")
        reader_move(case, move, attached.value, handle, handle.fd, handle.size, link)


def reader_move(case: Case, move: str, heap: ha.Heap, handle: ha.HeapHandle, fd: int,
                size: int, link: socket.socket) -> None:
    rng = case.rng
    if move in ("truncate", "grow"):
        new = rng.choice((0, size // 2, size - 4096)) if move == "truncate" else size * 2
        if os_call(case, f"os.ftruncate(fd, {new})", os.ftruncate, fd, new):
            case.finding("size-changed", "peer", f"a read-only peer resized the memfd to {new}")
    elif move == "pwrite":
        os_call(case, "os.pwrite(fd, garbage, 0)", os.pwrite, fd, garbage(rng, 64),
                rng.randrange(0, size, 8))
    elif move == "write":
        os_call(case, "os.write(fd, garbage)", os.write, fd, garbage(rng, 64))
    elif move == "mmap":
        mapped = os_call(case, "mmap.mmap(fd, size, PROT_READ|PROT_WRITE)", mmap.mmap, fd, size,
                         mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        if mapped:
            mapped[8:8 + 512] = garbage(rng, 64)
            mapped.close()
    elif move == "reopen":
        opened = os_call(case, f"os.open('/proc/self/fd/{fd}', O_RDWR)", os.open,
                         f"/proc/self/fd/{fd}", os.O_RDWR)
        if opened is not False:
            os_call(case, "os.pwrite(reopened, garbage, 8)", os.pwrite, opened,
                    garbage(rng, 64), 8)
            os.close(opened)
    elif move == "seal":
        seals = fcntl.F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | fcntl.F_SEAL_SHRINK
        if os_call(case, "fcntl(fd, F_ADD_SEALS, WRITE|FUTURE_WRITE|SHRINK)", fcntl.fcntl, fd,
                   fcntl.F_ADD_SEALS, seals) is not False:
            case.finding("peer-sealed", "peer", "a read-only peer added seals to the memfd")
    elif move == "attach-rw":
        writable = case.call("ha.attach", ha.attach, handle, prot="rw")
        if writable.ok:
            scribble(case, writable.value.view.array(np.uint64))
            writable.value.close()
    elif move == "race":
        writable = case.call("ha.attach", ha.attach, handle, prot="rw")
        race(case, writable.value.view.array(np.uint64) if writable.ok else None, link)
        if writable.ok:
            writable.value.close()
    else:
        widen(case, move, heap)


def widen(case: Case, move: str, heap: ha.Heap) -> None:
    """Widen a read-only attachment through the public API; success is a finding."""
    shift = max(heap.size - 1, 1).bit_length()
    if move == "alias-rw":
        made = case.call("attached.alias", heap.alias, case.rng.choice(ha.STRATEGIES), prot="rw")
        views = [made.value] if made.ok else []
    elif move == "multimap-rw":
        made = case.call("attached.multimap", heap.multimap, 2, shift=shift, prot="rw")
        views = list(made.value) if made.ok else []
    elif move == "join-rw":
        made = case.call("ha.join", ha.join, heap, prot="rw")
        views = [made.value] if made.ok else []
    else:  # protect-rw: then close it, and read an array made before (it must stay mapped)
        before = heap.view.array(np.uint64)
        made = case.call("attached.view.protect", heap.view.protect, "rw")
        views = [heap.view] if made.ok else []
    for view in views:
        case.finding("readonly-widened", move, "a heap attached with prot='r' gave a writable "
                     f"view ({view.role})")
        scribble(case, view.array(np.uint64))
    if move == "protect-rw":
        case.call("attached.view.close", heap.view.close)
        case.step("read an array made before the protect and the close")
        int(before[1])


def scribble(case: Case, words: np.ndarray) -> None:
    """Write bad headers over the first objects, through a view that should not be writable."""
    case.step("write garbage over the first objects")
    words[1:65] = np.frombuffer(garbage(case.rng, 64), dtype=np.uint64)


def os_call(case: Case, text: str, fn, *args):
    """An operating-system call a peer tries: its result, or False when the kernel refuses.

    (``mmap.mmap`` refuses a length past the end of the file with a ValueError.)
    """
    case.step(text)
    try:
        result = fn(*args)
    except (OSError, ValueError) as exc:
        case.step(f"  -> {type(exc).__name__}: {exc}")
        return False
    return True if result is None else result


# ---- scenario: the owner misbehaves ----

def owner_scenario(case: Case) -> None:
    """The peer owns the heap. Notes, in order: the victim's "attached", the peer's
    "racing" and the victim's "stop" (when it races), the peer's "done"."""
    rng = case.rng
    size = rng.choice(HEAP_SIZES)
    moves = rng.sample(OWNER_MOVES, rng.randint(1, 3))
    prot = rng.choice(("r", "rw"))
    case.step(f"peer owns a heap of {size} and will: {moves}; attach with prot={prot!r}")
    with Channel() as channel, contextlib.ExitStack() as stack:
        pid = run_peer(case, misbehaving_owner, channel, size, moves)
        link = channel.keep("victim")
        objects, roots = None, []
        received = case.call("HeapHandle.receive", ha.HeapHandle.receive, link)
        if received.ok:
            handle = received.value
            attached = case.call("ha.attach", ha.attach, handle, prot=prot)
            handle.close()
            if attached.ok:
                heap = stack.enter_context(attached.value)
                made = case.call("ObjectHeap.from_description", ha.ObjectHeap.from_description,
                                 heap, handle.meta["objects"])
                objects, roots = (made.value if made.ok else None), handle.meta["roots"]
        tell(link, b"attached")
        if "race" in moves and settle(case, link, b"racing"):
            if objects is not None:
                run_loops(case, objects, roots)
            tell(link, b"stop")
        settle(case, link, b"done")
        if objects is not None:
            run_loops(case, objects, roots)
        reap(case, pid)


def misbehaving_owner(case: Case, channel: Channel, size: int, moves: list[str]) -> None:
    link = channel.keep("peer")
    heap, objects, roots = build(case, size)
    with heap.share(objects=objects.describe(), roots=roots) as handle:
        handle.send(link)
    if not settle(case, link, b"attached"):
        return
    fd = heap.fd
    for move in moves:
        case.step(f"move: {move}")
        if move in ("truncate", "grow"):
            new = case.rng.choice((0, size // 2)) if move == "truncate" else size * 2
            os_call(case, f"os.ftruncate(heap.fd, {new})", os.ftruncate, fd, new)
        elif move == "pwrite":
            os_call(case, "os.pwrite(heap.fd, garbage, 8)", os.pwrite, fd, garbage(case.rng, 64), 8)
        elif move == "garbage-headers":
            scribble(case, objects.words)
        elif move == "race":
            race(case, objects.words, link)
        else:
            case.call("heap.close", heap.close)
    link.send(b"done")


# ---- scenario: a bogus handle ----

def metadata_scenario(case: Case) -> None:
    """The peer sends a bogus handle, and truncates a regular file it sent after the attach.

    Notes, in order: the victim's "attached", the peer's "truncated", the victim's
    "next", the peer's "done".
    """
    rng = case.rng
    fd_kind = rng.choice(FD_KINDS)
    payload = bogus_payload(case, rng.choice(HEAP_SIZES))
    prot = rng.choice(("r", "rw"))
    case.step(f"peer sends {fd_kind} with {payload[:120]!r} ({len(payload)} bytes); "
              f"attach with prot={prot!r}")
    with Channel() as channel, contextlib.ExitStack() as stack:
        pid = run_peer(case, bogus_sender, channel, fd_kind, payload)
        link = channel.keep("victim")
        heap = objects = None
        received = case.call("HeapHandle.receive", ha.HeapHandle.receive, link)
        if received.ok:
            handle = received.value
            if rng.random() < 0.7:  # else it is dropped: its finalizer must close the fd
                stack.callback(handle.close)
            attached = case.call("ha.attach", ha.attach, handle, prot=prot)
            if attached.ok:
                heap = stack.enter_context(attached.value)
                if fd_kind not in ("memfd", "other-memfd", "two"):
                    case.finding("accepted-bad-fd", "attach", f"attach accepted a {fd_kind} fd")
                meta = handle.meta if isinstance(handle.meta, dict) else {}
                made = case.call("ObjectHeap.from_description", ha.ObjectHeap.from_description,
                                 heap, meta.get("objects"))
                objects, roots = (made.value if made.ok else None), meta.get("roots", [])
        tell(link, b"attached")
        settle(case, link, b"truncated")
        if objects is not None:
            run_loops(case, objects, roots)
        elif heap is not None:
            case.step("read every page of the attached heap")
            int(heap.view.array(np.uint8)[:: 4096].sum())
        tell(link, b"next")
        settle(case, link, b"done")
        reap(case, pid)


def bogus_payload(case: Case, size: int) -> bytes:
    """The handle's JSON, often broken (the same draw on both sides of the fork)."""
    rng = case.rng
    description = {"encoding": "offset", "spaces": {"from": [8, size // 2, 8]}}
    info = {"size": size, "pages": "4k", "name": "shared",
            "meta": {"objects": description, "roots": [8]}}
    how = rng.choice(("keep", "keep", "size", "pages", "name", "meta", "drop", "shape", "json"))
    if how == "size":
        info["size"] = rng.choice(("64K", -1, 0, 2**64, 1.5, None, size * 2, size // 2, size + 1))
    elif how == "pages":
        info["pages"] = rng.choice(("2m", "1g", "3m", 4096, None))
    elif how == "name":
        info["name"] = rng.choice(("a b", "", 5, "x" * 100, None))
    elif how == "meta":
        info["meta"] = rng.choice(([], "meta", None, {"objects": None}, {"objects": {}},
                                   {"objects": {"encoding": "offset", "spaces": {"a": [0, 8, 8]}}},
                                   {"objects": {"encoding": "offset", "spaces": [8, 16]}}))
    elif how == "drop":
        del info[rng.choice(list(info))]
    elif how == "shape":
        info = rng.choice(([1, 2], "handle", None, 5))
    else:
        return rng.choice((b"not json", b"", b"\xff\xfe\x00", b"{" * 20, b"[" * 30000,
                           b'{"size": 65536, "pages": "4k", "name": "x", "meta": ' + b"[" * 30000,
                           b"x" * 70000))
    return json.dumps(info).encode()


def bogus_sender(case: Case, channel: Channel, fd_kind: str, payload: bytes) -> None:
    link = channel.keep("peer")
    info = _load(payload)
    size = info.get("size") if isinstance(info, dict) else None
    valid = isinstance(size, int) and 0 < size <= max(HEAP_SIZES) and size % 4096 == 0
    size = size if valid else 65536  # the memfd it sends, whatever the JSON claims
    with contextlib.ExitStack() as stack:
        heap = stack.enter_context(ha.Heap(65536 if fd_kind == "other-memfd" else size,
                                           name="shared"))
        fds, regular = bogus_fds(stack, fd_kind, heap, size)
        case.step(f"send {fd_kind} fds {fds}")
        try:
            socket.send_fds(link, [payload], fds)
        except OSError as exc:  # the kernel refused the fds or the size: send the bytes alone
            case.step(f"  -> {type(exc).__name__}: {exc}")
            link.send(payload[:4096])
        if settle(case, link, b"attached") and regular is not None:
            os_call(case, "os.ftruncate(file, 0)", os.ftruncate, regular, 0)
        link.send(b"truncated")
        settle(case, link, b"next")
    link.send(b"done")


def _load(payload: bytes) -> object:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def bogus_fds(stack: contextlib.ExitStack, kind: str, heap: ha.Heap, size: int
              ) -> tuple[list[int], int | None]:
    """The fds a bogus handle carries, and the regular file among them (to truncate later)."""
    def keep(fd: int) -> int:
        stack.callback(os.close, fd)
        return fd

    if kind in ("memfd", "other-memfd"):
        return [heap.fd], None
    if kind == "none":
        return [], None
    if kind == "two":
        read, write = os.pipe()
        return [heap.fd, keep(read), keep(write)], None
    if kind == "file":
        regular = keep(os.open(tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR, 0o600))
        os.ftruncate(regular, size)
        return [regular], regular
    if kind == "pipe":
        read, write = os.pipe()
        return [keep(read), keep(write)][:1], None
    if kind == "socket":
        return [keep(os.dup(stack.enter_context(socket.socket()).fileno()))], None
    if kind == "dev-zero":
        return [keep(os.open("/dev/zero", os.O_RDWR))], None
    if kind == "directory":
        return [keep(os.open("/", os.O_RDONLY))], None
    return [keep(os.open("/proc/self/exe", os.O_PATH))], None


SCENARIOS = {"reader": reader_scenario, "owner": owner_scenario, "metadata": metadata_scenario}


def run_case(case: Case) -> None:
    scenario = case.rng.choice(list(SCENARIOS))
    case.step(f"scenario {scenario}")
    SCENARIOS[scenario](case)


def warm_up() -> None:
    """Fork once, and share and attach once, so the first case's counts start settled."""
    with ha.Heap(65536) as heap, heap.share() as handle:
        ha.attach(handle).close()
        pid = os.fork()
        if not pid:
            os._exit(0)
        os.waitpid(pid, 0)
        with Channel():
            pass
