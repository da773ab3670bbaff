"""Typed Python face of the compiled C core (``heapalias._native``).

Each wrapper calls one C function, which returns ``-errno`` on failure; the
wrapper turns that into :class:`~heapalias.errors.SyscallFailed`. Callers that
know more (a hugetlb pool, a map-count limit) catch it and raise a sharper error.

Importing this module refuses a stale extension. cext/build_native.py compiles the
fingerprint of the C sources (cext/fingerprint.py) into ``_native``. Where those sources
sit next to the package (a checkout built in place, an editable install: where C edits
outrun the build), the fingerprint is recomputed here and must match. An installed wheel
ships no sources, and its extension was built with its Python files, so nothing is
checked there.
"""

from __future__ import annotations

import runpy
from pathlib import Path

try:
    from ._native import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on how heapalias was installed
    raise ImportError(
        "heapalias._native is not built. Install the package (`pip install .` or "
        "`pip install -e .`) instead of importing the source tree directly."
    ) from exc

from .errors import SyscallFailed

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
    "built_fingerprint",
    "close",
    "fallocate",
    "ffi",
    "ftruncate",
    "lib",
    "madvise",
    "memfd_create",
    "mmap",
    "mprotect",
    "mremap",
    "munmap",
    "name_anon",
    "require_fresh_build",
    "touch",
]


def _check(rc: int, call: str) -> int:
    if rc < 0:
        raise SyscallFailed(call, -rc)
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
