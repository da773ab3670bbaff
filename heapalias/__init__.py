"""heapalias: JVM-style heaps on memfd or shared memory, mapped at several virtual
addresses, seen as zero-copy numpy arrays, for prototyping garbage collectors.

Data flows backing -> views -> heap; :func:`probe` tells what works on this kernel.
"""

from ._version import __version__ as __version__  # re-exported: the one version
from .backing import BACKINGS, PAGES, Backing, MappingPolicy, format_size, parse_size
from .collectors import CardTable, LoopStats, SemiSpace
from .errors import (
    FeatureUnavailable,
    HeapAliasError,
    HeapAliasWarning,
    HeapCorruption,
    HeapDumpError,
    HugePagesUnavailable,
    InsufficientMemory,
    InvalidArgument,
    MapCountExceeded,
    NotPermitted,
    SpaceFull,
    SyscallFailed,
    UnsupportedAlias,
    ViewClosed,
    ViewInUse,
)
from .heap import Heap, HeapHandle, ViewPages, attach, join
from .objects import Obj, ObjectHeap
from .probe import Combination, ProbeResult, probe
from .system import SystemInfo, hugepage_pools, reserve_hugepages, system_info
from .views import STRATEGIES, MultiView, View

__all__ = [
    "BACKINGS",
    "PAGES",
    "STRATEGIES",
    "Backing",
    "CardTable",
    "Combination",
    "FeatureUnavailable",
    "Heap",
    "HeapAliasError",
    "HeapAliasWarning",
    "HeapCorruption",
    "HeapDumpError",
    "HeapHandle",
    "HugePagesUnavailable",
    "InsufficientMemory",
    "InvalidArgument",
    "LoopStats",
    "MapCountExceeded",
    "MappingPolicy",
    "MultiView",
    "NotPermitted",
    "Obj",
    "ObjectHeap",
    "ProbeResult",
    "SemiSpace",
    "SpaceFull",
    "SyscallFailed",
    "SystemInfo",
    "UnsupportedAlias",
    "View",
    "ViewClosed",
    "ViewInUse",
    "ViewPages",
    "attach",
    "format_size",
    "hugepage_pools",
    "join",
    "parse_size",
    "probe",
    "reserve_hugepages",
    "system_info",
]
