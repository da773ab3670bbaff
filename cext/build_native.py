"""cffi build script: compiles cext/*.c into ``heapalias._native`` (API mode)."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ["mapping.c"]

ffibuilder = FFI()
ffibuilder.cdef((HERE / "heapalias.cdef.h").read_text())
ffibuilder.set_source(
    "heapalias._native",
    '#include "heapalias.h"',
    sources=[str(Path("cext") / name) for name in SOURCES],
    include_dirs=["cext"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
