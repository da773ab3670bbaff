"""cffi build script: compiles cext/*.c into ``heapalias._native`` (API mode).

``HEAPALIAS_CFLAGS`` adds flags to both the compile and the link, e.g.
``-fsanitize=address,undefined`` (tests/test_sanitizers.py builds that way).
"""

import os
import shlex
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


EXTRA_FLAGS = shlex.split(os.environ.get("HEAPALIAS_CFLAGS", ""))

ffibuilder = FFI()
ffibuilder.cdef(cdef_text())
ffibuilder.set_source(
    "heapalias._native",
    '#include "object_model.h"',  # heapalias.h and the layout constants
    sources=[str(Path("cext") / name) for name in SOURCES],
    include_dirs=["cext"],
    extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", *EXTRA_FLAGS],
    extra_link_args=EXTRA_FLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
