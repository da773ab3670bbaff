"""cffi build script: compiles cext/*.c into ``heapalias._native`` (API mode)."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ["mapping.c", "copy.c", "scan.c", "workloads.c", "drivers.c", "limits.c"]


def cdef_text() -> str:
    """The constants from heapalias.cdef.h plus the prototypes marked in heapalias.h."""
    header = (HERE / "heapalias.h").read_text()
    prototypes = header.split("/* cffi-begin", 1)[1].split("/* cffi-end */", 1)[0]
    prototypes = prototypes.split("*/", 1)[1]  # drop the rest of the opening comment
    return (HERE / "heapalias.cdef.h").read_text() + prototypes


ffibuilder = FFI()
ffibuilder.cdef(cdef_text())
ffibuilder.set_source(
    "heapalias._native",
    '#include "heapalias.h"',
    sources=[str(Path("cext") / name) for name in SOURCES],
    include_dirs=["cext"],
    extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
