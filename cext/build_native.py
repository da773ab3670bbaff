"""cffi build script: compiles every cext/*.c into ``heapalias._native`` (API mode).

The extension also exports ``ha_build_fingerprint()``, the fingerprint of the sources it
was built from (cext/fingerprint.py); heapalias/native.py checks it at import.

``HEAPALIAS_CFLAGS`` adds flags to both the compile and the link, e.g.
``-fsanitize=address,undefined`` (tests/test_sanitizers.py builds that way).
"""

import os
import runpy
import shlex
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
# Loaded by path: cffi runs this file as a script, with no package to import from.
source_fingerprint = runpy.run_path(str(HERE / "fingerprint.py"))["source_fingerprint"]

#: Relative to the directory setup.py runs in, as setuptools wants extension sources.
SOURCES = [str(Path("cext") / path.name) for path in sorted(HERE.glob("*.c"))]


def cdef_text() -> str:
    """The constants from heapalias.cdef.h plus the prototypes marked in heapalias.h."""
    header = (HERE / "heapalias.h").read_text()
    prototypes = header.split("/* cffi-begin", 1)[1].split("/* cffi-end */", 1)[0]
    prototypes = prototypes.split("*/", 1)[1]  # drop the rest of the opening comment
    return (HERE / "heapalias.cdef.h").read_text() + prototypes


def fingerprint_source() -> str:
    """C defining ``ha_build_fingerprint()``, which returns the sources' fingerprint."""
    return f'const char *ha_build_fingerprint(void) {{ return "{source_fingerprint(HERE)}"; }}\n'


EXTRA_FLAGS = shlex.split(os.environ.get("HEAPALIAS_CFLAGS", ""))

ffibuilder = FFI()
ffibuilder.cdef(cdef_text() + "const char *ha_build_fingerprint(void);\n")
ffibuilder.set_source(
    "heapalias._native",
    # heapalias.h, the layout, and the userfaultfd ABI the cdef's constants come from
    '#include "object_model.h"\n#include "uffd_abi.h"\n' + fingerprint_source(),
    sources=SOURCES,
    include_dirs=["cext"],
    extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", *EXTRA_FLAGS],
    extra_link_args=EXTRA_FLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
