"""Named checks of the kernel semantics the 2017 MREMAP_MIRROR thread asked about.

Each check states a claim, tries it on the running kernel with raw system
calls, and reports what it observed and the facts behind it (kernel, errno,
smaps fields). Every check runs in its own child process, so one that crashes
is reported as "crashed: SIGxxx" and the others still run.
"""

from __future__ import annotations

import errno as errno_codes
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

PAGE = 4096
HUGE = 2 << 20


@dataclass(frozen=True)
class Check:
    """One claim and what this kernel did."""

    id: str
    claim: str
    status: str  # "holds", "does not hold", "not tested: ...", "crashed: SIGxxx", "error: ..."
    observed: str
    facts: dict = field(default_factory=dict)

    @property
    def holds(self) -> bool | None:
        return {"holds": True, "does not hold": False}.get(self.status)

    def as_dict(self) -> dict:
        return asdict(self)


# ---- helpers used inside the child ----

def _native():
    from . import native
    return native


def _try(call: Callable[[], int]) -> tuple[int | None, int | None]:
    """(result, None) or (None, errno)."""
    from .errors import SyscallFailed
    try:
        return call(), None
    except SyscallFailed as exc:
        return None, exc.errno


def _ename(code: int | None) -> str:
    return "ok" if code is None else errno_codes.errorcode.get(code, str(code))


def _poke(address: int, value: int) -> None:
    import ctypes
    ctypes.c_uint64.from_address(address).value = value


def _peek(address: int) -> int:
    import ctypes
    return ctypes.c_uint64.from_address(address).value


def _shared_anon(size: int) -> int:
    n = _native()
    return n.mmap(size, n.lib.PROT_READ | n.lib.PROT_WRITE, n.lib.MAP_SHARED | n.lib.MAP_ANONYMOUS)


def _memfd(size: int, flags: int = 0) -> tuple[int, int]:
    n = _native()
    fd = n.memfd_create("heapalias-semantics", n.lib.MFD_CLOEXEC | flags)
    n.ftruncate(fd, size)
    address = n.mmap(size, n.lib.PROT_READ | n.lib.PROT_WRITE, n.lib.MAP_SHARED, fd)
    return fd, address


def _mirror(address: int, size: int, target: int = 0) -> tuple[int | None, int | None]:
    n = _native()
    flags = n.lib.MREMAP_MAYMOVE | (n.lib.MREMAP_FIXED if target else 0)
    return _try(lambda: n.mremap(address, 0, size, flags, target))


def _reserve(size: int) -> int:
    n = _native()
    return n.mmap(size, n.lib.PROT_NONE, n.lib.MAP_PRIVATE | n.lib.MAP_ANONYMOUS)


def _aliases(a: int, b: int) -> bool:
    _poke(a, 0x5EED)
    if _peek(b) != 0x5EED:
        return False
    _poke(b, 0xF00D)
    return _peek(a) == 0xF00D


def _hugetlb_pages() -> int:
    from .system import hugepage_pool
    return hugepage_pool(HUGE).available


def _meminfo(key: str) -> int:
    from .system import meminfo_kb
    return meminfo_kb().get(key, 0)


# ---- the checks (each runs in a child process) ----

def s1() -> dict:
    out, facts = [], {}
    for kind in ("shared anonymous", "memfd"):
        base = _shared_anon(2 * PAGE) if kind != "memfd" else _memfd(2 * PAGE)[1]
        alias, err = _mirror(base, 2 * PAGE)
        target = _reserve(2 * PAGE)
        fixed, ferr = _mirror(base, 2 * PAGE, target)
        ok = err is None and _aliases(base, alias) and ferr is None and fixed == target \
            and _aliases(base, fixed)
        facts[kind] = {"mremap": _ename(err), "mremap_fixed": _ename(ferr),
                       "landed_at_target": fixed == target}
        out.append(ok)
    return {"holds": all(out), "facts": facts,
            "observed": "both aliased, and MREMAP_FIXED landed at the chosen address"
            if all(out) else f"results: {facts}"}


def s2() -> dict:
    n = _native()
    base = n.mmap(PAGE, n.lib.PROT_READ | n.lib.PROT_WRITE, n.lib.MAP_PRIVATE | n.lib.MAP_ANONYMOUS)
    _, err = _mirror(base, PAGE)
    return {"holds": err == errno_codes.EINVAL, "facts": {"errno": _ename(err)},
            "observed": f"mremap(old_size=0) on MAP_PRIVATE|MAP_ANONYMOUS: {_ename(err)}"}


def s3() -> dict:
    n = _native()
    if _hugetlb_pages() < 4:
        return {"status": "not tested: the 2 MiB hugetlb pool has fewer than 4 free pages "
                "(heapalias hugepages --reserve 4)", "facts": {}, "observed": ""}
    anon = n.mmap(HUGE, n.lib.PROT_READ | n.lib.PROT_WRITE,
                  n.lib.MAP_SHARED | n.lib.MAP_ANONYMOUS | n.lib.MAP_HUGETLB)
    _, anon_err = _mirror(anon, HUGE)
    fd, mapped = _memfd(HUGE, n.lib.MFD_HUGETLB | n.lib.MFD_HUGE_2MB)
    _, memfd_err = _mirror(mapped, HUGE)
    second = n.mmap(HUGE, n.lib.PROT_READ | n.lib.PROT_WRITE, n.lib.MAP_SHARED, fd)
    works = _aliases(mapped, second)
    facts = {"mremap MAP_HUGETLB": _ename(anon_err), "mremap MFD_HUGETLB": _ename(memfd_err),
             "second mmap of the hugetlb memfd aliases": works}
    holds = anon_err is not None and memfd_err is not None and works
    return {"holds": holds, "facts": facts,
            "observed": f"mirror: {_ename(anon_err)} (MAP_HUGETLB), {_ename(memfd_err)} "
                        f"(MFD_HUGETLB); second memfd mmap {'aliases' if works else 'FAILS'}"}


def s4() -> dict:
    base = _shared_anon(PAGE)
    alias, err = _mirror(base, PAGE)
    if err is not None:
        return {"holds": False, "facts": {"errno": _ename(err)}, "observed": "mirror failed"}
    with open("/proc/self/maps") as maps:
        mapped = any(line.startswith(f"{base:x}-") for line in maps)
    still = mapped and _aliases(base, alias)
    return {"holds": still, "facts": {"old_range_in_maps": mapped},
            "observed": "the old mapping stays mapped and keeps aliasing the new one"
            if still else "the old mapping was wiped"}


def s5() -> dict:
    n = _native()
    fd, shared = _memfd(PAGE)
    rw, private = n.lib.PROT_READ | n.lib.PROT_WRITE, n.lib.MAP_PRIVATE
    _poke(shared, 0xA)
    older = n.mmap(PAGE, rw, private, fd)
    _poke(older, 0xB)          # copy-on-write: only the older private mapping sees B
    _poke(shared, 0xC)         # the file now holds C
    fresh = n.mmap(PAGE, rw, private, fd)
    facts = {"file": hex(_peek(shared)), "older private": hex(_peek(older)),
             "fresh private": hex(_peek(fresh))}
    holds = _peek(fresh) == 0xC and _peek(older) == 0xB
    return {"holds": holds, "facts": facts,
            "observed": "a fresh MAP_PRIVATE mapping reads the file's current page (0xc), "
                        "the older one keeps its copy (0xb)" if holds else f"read {facts}"}


def s6() -> dict:
    n = _native()
    rw = n.lib.PROT_READ | n.lib.PROT_WRITE
    kinds = {
        "private anonymous": lambda: n.mmap(PAGE, rw, n.lib.MAP_PRIVATE | n.lib.MAP_ANONYMOUS),
        "shared anonymous": lambda: _shared_anon(PAGE),
        "memfd": lambda: _memfd(PAGE)[1],
    }
    if _hugetlb_pages() >= 2:
        kinds["hugetlb memfd"] = lambda: _memfd(
            HUGE, n.lib.MFD_HUGETLB | n.lib.MFD_HUGE_2MB)[1]
    facts = {}
    for kind, make in kinds.items():
        size = HUGE if "hugetlb" in kind else PAGE
        old = make()
        _poke(old, 0x77)
        new, err = _try(lambda old=old, size=size: n.mremap(
            old, size, size, n.lib.MREMAP_MAYMOVE | n.lib.MREMAP_DONTUNMAP))
        if err is not None:
            facts[kind] = f"fails: {_ename(err)}"
        else:
            facts[kind] = (f"works; new range reads {_peek(new):#x}, old range now reads "
                           f"{_peek(old):#x}")
    return {"holds": None, "facts": facts,
            "observed": "; ".join(f"{k}: {v}" for k, v in facts.items())}


def s7() -> dict:
    n = _native()
    size = 64 << 20
    readings = [_meminfo("Committed_AS")]
    base = _shared_anon(size)
    readings.append(_meminfo("Committed_AS"))
    mirror, _ = _mirror(base, size)
    readings.append(_meminfo("Committed_AS"))
    n.munmap(base, size)  # Andrea Arcangeli's worry: old_size=0 drops VM_ACCOUNT here
    readings.append(_meminfo("Committed_AS"))
    n.munmap(mirror, size)
    readings.append(_meminfo("Committed_AS"))
    fd, _ = _memfd(size)
    readings.append(_meminfo("Committed_AS"))
    n.mmap(size, n.lib.PROT_READ | n.lib.PROT_WRITE, n.lib.MAP_SHARED, fd)
    readings.append(_meminfo("Committed_AS"))
    d = [b - a for a, b in itertools.pairwise(readings)]
    facts = {"map shared anonymous (kB)": d[0], "mirror it (kB)": d[1],
             "unmap the original (kB)": d[2], "unmap the mirror (kB)": d[3],
             "map a memfd (kB)": d[4], "map it again (kB)": d[5]}
    returned = -(d[2] + d[3])
    return {"holds": None, "facts": facts,
            "observed": f"64 MiB shared anonymous: +{d[0]} kB committed, mirror +{d[1]} kB; "
                        f"unmapping the original returned {-d[2]} kB and the mirror {-d[3]} kB"
                        f"{' (the charge moved to the mirror)' if d[2] == 0 and d[3] else ''}"
                        f"{' (accounting leaked)' if returned < d[0] else ''}; memfd mappings "
                        f"+{d[4]} and +{d[5]} kB (shmem files are not charged at mmap)"}


def s8() -> dict:
    import warnings

    from .errors import HeapAliasError, HeapAliasWarning
    from .heap import Heap
    facts = {}
    for pages in ("4k", "thp", "2m"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", HeapAliasWarning)
                heap = Heap(8 << 20, pages=pages, name="s8")
        except HeapAliasError as exc:
            facts[pages] = f"not tested: {exc.message}"
            continue
        with heap:
            rows = []
            for views in (1, 2, 3):
                if views > len(heap.views):
                    heap.alias("memfd")
                report = heap.pages_report()
                rss = sum(r.fields["Rss"] for r in report)
                pss = sum(r.fields["Pss"] for r in report)
                hugetlb = sum(r.fields["Shared_Hugetlb"] + r.fields["Private_Hugetlb"]
                              for r in report)
                pmd = sum(r.fields["ShmemPmdMapped"] for r in report)
                rows.append({"views": views, "Rss": rss, "Pss": pss, "Hugetlb": hugetlb,
                             "ShmemPmdMapped": pmd})
            facts[pages] = {"rows": rows, "obtained": report[0].obtained}
    return {"holds": None, "facts": facts, "observed": "; ".join(
        f"{p}: " + (v if isinstance(v, str) else ", ".join(
            f"{r['views']} views Rss {r['Rss']} Pss {r['Pss']} Hugetlb {r['Hugetlb']} kB"
            for r in v["rows"]))
        for p, v in facts.items())}


def s9() -> dict:
    from .heap import Heap
    from .system import map_count, max_map_count
    with Heap(8 << 20, name="s9") as heap:
        before = map_count()
        heap.alias()
        per_alias = map_count() - before
        before = map_count()
        heap.multimap(4, shift=24)
        per_layout = map_count() - before
    limit = max_map_count()
    return {"holds": None, "facts": {"per alias": per_alias, "per multimap(4)": per_layout,
                                     "vm.max_map_count": limit},
            "observed": f"an alias costs {per_alias} mapping(s), a 4-color layout "
                        f"{per_layout}; {limit} are allowed, about {limit // max(per_alias, 1):,} "
                        "aliases"}


CHECKS: dict[str, tuple[str, Callable[[], dict]]] = {
    "S1": ("mremap(old_size=0) aliases shared anonymous and memfd memory; with MREMAP_FIXED it "
           "lands at a chosen address", s1),
    "S2": ("on private anonymous memory it fails with EINVAL (Linux 4.14 and later)", s2),
    "S3": ("on hugetlb memory it fails (what the MREMAP_MIRROR RFC asked for); a second mmap "
           "of a hugetlb memfd aliases instead", s3),
    "S4": ("after mremap(old_size=0) the old mapping is still mapped and still aliased", s4),
    "S5": ("a fresh MAP_PRIVATE mmap of a memfd sees the file's current pages, even after "
           "copy-on-write in an older MAP_PRIVATE mapping", s5),
    "S6": ("MREMAP_DONTUNMAP: which mapping kinds it moves, and what the old range reads "
           "afterwards", s6),
    "S7": ("commit accounting: Committed_AS for a mirrored shared mapping against a second "
           "memfd mmap", s7),
    "S8": ("Rss against Pss with 1, 2 and 3 views for 4 KiB, THP and hugetlb pages, and which "
           "smaps fields show hugetlb memory", s8),
    "S9": ("mappings used per view, against vm.max_map_count", s9),
}


#: Tests set this to a check id to prove that a crashing check is reported, not fatal.
CRASH_HOOK = "HEAPALIAS_SEMANTICS_CRASH"


def _child(check_id: str) -> None:
    """Entry point in the child: run one check and print its JSON."""
    if os.environ.get(CRASH_HOOK) == check_id:
        os.kill(os.getpid(), signal.SIGSEGV)
    result = CHECKS[check_id][1]()
    print(json.dumps(result))


def run_check(check_id: str, timeout: float = 60) -> Check:
    """Run one check in a child process."""
    claim = CHECKS[check_id][0]
    code = f"from heapalias.semantics import _child; _child({check_id!r})"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, cwd="/")
    except subprocess.TimeoutExpired:
        return Check(check_id, claim, f"error: timed out after {timeout:.0f} s", "")
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return Check(check_id, claim, f"crashed: {name}", proc.stderr.strip()[-200:])
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Check(check_id, claim, f"error: {last}", "")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    status = data.get("status") or {True: "holds", False: "does not hold",
                                     None: "reported"}[data["holds"]]
    facts = {"kernel": os.uname().release, **data.get("facts", {})}
    return Check(check_id, claim, status, data.get("observed", ""), facts)


def semantics(ids: list[str] | None = None) -> list[Check]:
    """Run the named checks (all by default), each in its own child process."""
    return [run_check(i) for i in (ids or list(CHECKS))]
