"""What the running kernel offers: hugepage pools, THP modes, map limits, and smaps readings."""

from __future__ import annotations

import errno
import os
import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import (
    HeapAliasError,
    InsufficientMemory,
    InvalidArgument,
    NotPermitted,
    SyscallFailed,
    hugepage_sysctl,
)

HUGEPAGES_DIR = Path("/sys/kernel/mm/hugepages")
THP_DIR = Path("/sys/kernel/mm/transparent_hugepage")

#: The page-size names the library accepts, and their sizes in bytes.
PAGE_SIZES: dict[str, int] = {"4k": 4096, "thp": 2 << 20, "2m": 2 << 20, "1g": 1 << 30}
HUGETLB_PAGES = ("2m", "1g")


#: errnos that mean "this kernel has no such file": the reading falls back to its default.
_ABSENT = (errno.ENOENT, errno.ENOTDIR)


def read_text(path: Path | str) -> str:
    """A procfs or sysfs file's text; SyscallFailed (with the real errno) if it cannot be read."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SyscallFailed.from_os_error("read", exc, detail=str(path)) from None


def _read(path: Path | str, default: str) -> str:
    """The file's text, or ``default`` when the kernel has no such file. Any other failure
    (EMFILE, EACCES, ...) raises: a default would hide the cause behind a wrong reading."""
    try:
        return read_text(path).strip()
    except SyscallFailed as exc:
        if exc.errno in _ABSENT:
            return default
        raise


def _read_int(path: Path | str, default: int = 0) -> int:
    try:
        return int(_read(path, str(default)))
    except ValueError:
        return default


def _bracketed(text: str) -> str:
    """``always [madvise] never`` -> ``madvise``."""
    match = re.search(r"\[(\w[\w-]*)\]", text)
    return match.group(1) if match else (text or "unknown")


@dataclass(frozen=True)
class HugePagePool:
    """One hugetlb pool as the kernel reports it in sysfs."""

    page_size: int
    total: int
    free: int
    reserved: int
    surplus: int

    @property
    def available(self) -> int:
        """Pages a new mapping can still reserve: free minus already-reserved."""
        return max(self.free - self.reserved, 0)

    @property
    def label(self) -> str:
        return "1g" if self.page_size == 1 << 30 else "2m" if self.page_size == 2 << 20 else (
            f"{self.page_size >> 10}k"
        )


def hugepage_pool(page_size: int) -> HugePagePool:
    """The pool for one page size; all zeros when the kernel has no such pool."""
    base = HUGEPAGES_DIR / f"hugepages-{page_size >> 10}kB"
    return HugePagePool(
        page_size=page_size,
        total=_read_int(base / "nr_hugepages"),
        free=_read_int(base / "free_hugepages"),
        reserved=_read_int(base / "resv_hugepages"),
        surplus=_read_int(base / "surplus_hugepages"),
    )


def hugepage_pools() -> list[HugePagePool]:
    """Every hugetlb pool this kernel offers, smallest page first."""
    try:
        names = os.listdir(HUGEPAGES_DIR)
    except OSError as exc:
        if exc.errno in _ABSENT:  # a kernel without hugetlb
            return []
        raise SyscallFailed.from_os_error("listdir", exc, detail=str(HUGEPAGES_DIR)) from None
    sizes = []
    for name in names:
        match = re.fullmatch(r"hugepages-(\d+)kB", name)
        if match:
            sizes.append(int(match.group(1)) << 10)
    return [hugepage_pool(size) for size in sorted(sizes)]


def reserve_hugepages(count: int, page_size: int = 2 << 20) -> HugePagePool:
    """Set the pool of ``page_size`` pages to ``count`` pages (root only).

    The kernel may grant fewer pages than asked when memory is fragmented; the
    returned pool shows what it actually holds.
    """
    from .backing import require_int  # backing reads this module's facts at import

    page_size = require_int(page_size, "page_size")
    if require_int(count, "hugepage count") < 0:
        raise InvalidArgument(
            f"hugepage count must be a non-negative integer, got {count!r}",
            remedy="pass a page count such as 256",
        )
    path = hugepage_sysctl(page_size)
    if not Path(path).parent.exists():
        raise InvalidArgument(
            f"this kernel has no {page_size >> 10} kB hugetlb pool",
            errno=errno.ENOENT,
            remedy="use --size 2m, or boot with hugepagesz=1G for 1 GiB pages",
        )
    growth = (count - hugepage_pool(page_size).total) * page_size
    available_kb = meminfo_kb().get("MemAvailable")
    # The kernel grants what it can and never says no: an oversized count would take every
    # free page from every other process, so ask for no more than is available.
    if growth > 0 and available_kb is not None and growth > available_kb << 10:
        raise InsufficientMemory(
            f"{count} pages of {page_size >> 10} kB would take {growth >> 20} MiB more for "
            f"the pool, but only {available_kb >> 10} MiB of memory is available",
            remedy="reserve fewer pages, or free memory first",
        )
    try:
        Path(path).write_text(f"{count}\n")
    except PermissionError as exc:
        raise NotPermitted(
            f"cannot write {path}: reserving hugetlb pages needs root",
            errno=exc.errno,
            remedy=f"run as root: `sudo heapalias hugepages --reserve {count}`",
        ) from exc
    except OSError as exc:
        raise HeapAliasError(
            f"cannot write {path}", errno=exc.errno, remedy="check dmesg for the kernel's reason"
        ) from exc
    return hugepage_pool(page_size)


def thp_mode(knob: str = "enabled") -> str:
    """The selected THP mode: ``enabled`` or ``shmem_enabled`` (``never``, ``madvise``, ...)."""
    return _bracketed(_read(THP_DIR / knob, "unavailable"))


def max_map_count() -> int:
    """``vm.max_map_count``: the most mappings one process may hold."""
    return _read_int("/proc/sys/vm/max_map_count", 65530)


def map_count() -> int:
    """Mappings this process holds now (lines of ``/proc/self/maps``).

    Read line by line: this is asked exactly when the mapping limit is reached, and
    reading the whole file at once would need a large buffer, which malloc maps.
    """
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError as exc:
        raise SyscallFailed.from_os_error("read", exc, detail="/proc/self/maps") from None


def meminfo_kb() -> dict[str, int]:
    """``/proc/meminfo``'s numbers as it gives them: kB, or a count for HugePages_*.

    Raises SyscallFailed when it cannot be read: no reading is better than zeros
    that say the machine has no memory.
    """
    fields = {}
    for line in read_text("/proc/meminfo").splitlines():
        key, _, value = line.partition(":")
        fields[key] = int(value.split()[0]) if value.split() else 0
    return fields


def memory_available() -> int:
    """Bytes a new heap can commit without swapping out others: MemAvailable + SwapFree."""
    fields = meminfo_kb()
    return (fields.get("MemAvailable", 0) + fields.get("SwapFree", 0)) << 10


def overcommit_mode() -> int:
    """``vm.overcommit_memory``: 0 heuristic, 1 always, 2 strict."""
    return _read_int("/proc/sys/vm/overcommit_memory", 0)


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo``."""
    for line in _read("/proc/cpuinfo", "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


@dataclass(frozen=True)
class SystemInfo:
    """The kernel facts that decide which heaps and aliases can work."""

    kernel: str
    machine: str
    cpu: str
    cpus: int
    base_page_size: int
    thp_enabled: str
    thp_shmem_enabled: str
    hugepage_pools: tuple[HugePagePool, ...]
    max_map_count: int
    map_count: int
    overcommit_memory: int
    is_root: bool

    def as_dict(self) -> dict:
        """A JSON-ready dict."""
        data = asdict(self)
        data["hugepage_pools"] = [
            {**asdict(pool), "available": pool.available, "label": pool.label}
            for pool in self.hugepage_pools
        ]
        return data


def system_info() -> SystemInfo:
    """Read the kernel facts that matter to heapalias, all from procfs and sysfs."""
    uname = os.uname()
    return SystemInfo(
        kernel=f"{uname.sysname} {uname.release}",
        machine=uname.machine,
        cpu=cpu_model(),
        cpus=os.cpu_count() or 1,
        base_page_size=os.sysconf("SC_PAGE_SIZE"),
        thp_enabled=thp_mode("enabled"),
        thp_shmem_enabled=thp_mode("shmem_enabled"),
        hugepage_pools=tuple(hugepage_pools()),
        max_map_count=max_map_count(),
        map_count=map_count(),
        overcommit_memory=overcommit_mode(),
        is_root=os.geteuid() == 0,
    )


#: smaps fields reported per view, all in kB.
SMAPS_FIELDS = (
    "Size",
    "KernelPageSize",
    "Rss",
    "Pss",
    "Shared_Hugetlb",
    "Private_Hugetlb",
    "ShmemPmdMapped",
    "AnonHugePages",
)

_SMAPS_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$")


@dataclass(frozen=True)
class SmapsEntry:
    """One VMA from ``/proc/self/smaps``: its range, name, kB fields and VmFlags."""

    start: int
    end: int
    name: str
    fields: dict[str, int]
    vmflags: tuple[str, ...]


def read_smaps(pid: int | str = "self") -> list[SmapsEntry]:
    """Parse ``/proc/<pid>/smaps`` into one entry per VMA."""
    entries: list[SmapsEntry] = []
    current: dict | None = None
    for line in read_text(f"/proc/{pid}/smaps").splitlines():
        header = _SMAPS_HEADER.match(line)
        if header and not line.startswith("VmFlags"):
            if current:
                entries.append(SmapsEntry(**current))
            current = {
                "start": int(header.group(1), 16),
                "end": int(header.group(2), 16),
                "name": header.group(3),
                "fields": {},
                "vmflags": (),
            }
        elif current is not None:
            key, _, value = line.partition(":")
            if key == "VmFlags":
                current["vmflags"] = tuple(value.split())
            elif value.strip().endswith("kB"):
                current["fields"][key] = int(value.split()[0])
    if current:
        entries.append(SmapsEntry(**current))
    return entries


def smaps_range(start: int, end: int, entries: list[SmapsEntry] | None = None) -> list[SmapsEntry]:
    """The VMAs that overlap ``[start, end)``."""
    entries = read_smaps() if entries is None else entries
    return [e for e in entries if e.start < end and e.end > start]
