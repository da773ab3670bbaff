"""The fingerprint of the C core's sources: what decides whether a built ``_native`` is stale.

build_native.py compiles this fingerprint into the extension (``ha_build_fingerprint()``);
heapalias/native.py recomputes it at import when these sources sit next to the package
(a checkout or an editable install) and refuses an extension built from other sources.
This file imports only the standard library, so both can load it by path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: What the build reads: the C files, the headers (the cdef among them) and the build scripts.
PATTERNS = ("*.c", "*.h", "*.py")


def source_files(cext: Path) -> list[Path]:
    """Every file under ``cext`` that the build depends on, in a stable order."""
    return sorted({path for pattern in PATTERNS for path in cext.glob(pattern)},
                  key=lambda path: path.name)


def source_fingerprint(cext: Path) -> str:
    """SHA-256 hex digest over the names and contents of :func:`source_files`."""
    digest = hashlib.sha256()
    for path in source_files(cext):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
