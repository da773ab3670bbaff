"""``python -m adversary FAMILY FIRST [LAST]``: run cases FIRST..LAST of FAMILY, log to stdout."""

from __future__ import annotations

import importlib
import sys
import warnings

from heapalias import HeapAliasWarning

from .harness import run_batch

FAMILIES = ("api", "corruption", "peer", "selftest")


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] not in FAMILIES:
        print(f"usage: python -m adversary {{{','.join(FAMILIES)}}} FIRST [LAST]", file=sys.stderr)
        return 2
    family = importlib.import_module(f".{argv[0]}", __package__)
    first = int(argv[1])
    last = int(argv[2]) if len(argv) == 3 else first
    warnings.simplefilter("ignore", HeapAliasWarning)  # thp on shmem with shmem THP off
    run_batch(argv[0], first, last, family.run_case, family.warm_up)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
