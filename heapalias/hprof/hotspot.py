"""What HotSpot adds to an object's layout that a heap dump does not show.

A shallow size computed from a CLASS DUMP's fields misses three things, all checked
against the JVM's own class histogram (``GC.class_histogram``) on the heaps javac
leaves (tests/test_hprof.py):

- **injected fields**: the VM adds hidden fields to a few core classes
  (``javaClasses.hpp``): a ``java.lang.Class`` holds its Klass pointers, its size and
  protection domain; a ``ClassLoader`` its loader data; a ``Module`` its module entry;
- **@Contended padding**: a contended field group is laid out after the other fields
  behind ``-XX:ContendedPaddingWidth`` (128) bytes, and the last one is followed by as
  many; ``java.lang.Thread``'s ThreadLocalRandom fields are such a group in JDK 17.
  A subclass's fields start after that padding;
- **static fields**: they live in the class's ``java.lang.Class`` object, after
  the fields of a ``java.lang.Class`` (aligned to 8): the references one after the
  other, then the primitives, largest first, each at its alignment, filling no hole.

The dump does not say which JDK wrote it; :func:`layout_for` tells JDK 19 and later
(every thread has a ``java.lang.Thread$FieldHolder``) from earlier ones, and a caller
who knows better passes the feature version; the nearest known one at or below it is
used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: -XX:ContendedPaddingWidth's default.
CONTENDED_PADDING = 128


@dataclass(frozen=True)
class HotSpotLayout:
    """The hidden parts of one JDK's object layouts."""

    feature: int
    #: Bytes of injected fields, by class (subclasses inherit them).
    injected: dict[str, int] = field(default_factory=dict)
    #: Contended field groups, by class: the names of the fields in each group.
    contended: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)

    def fields_end(self, name: str, start: int, fields: list[tuple[str, int]]) -> int:
        """Where the fields of class ``name`` end (unaligned), its superclass's ending at
        ``start``: ``fields`` are its own, as (name, bytes the JVM gives each)."""
        groups = self.contended.get(name, ())
        grouped = {field_name for group in groups for field_name in group}
        end = start + self.injected.get(name, 0) + sum(
            size for field_name, size in fields if field_name not in grouped)
        if not groups:
            return end
        for group in groups:
            end += CONTENDED_PADDING
            for size in sorted((size for field_name, size in fields if field_name in group),
                               reverse=True):
                end = (end + size - 1) // size * size + size  # each at its alignment
        return end + CONTENDED_PADDING


_INJECTED_17 = {
    # klass, array_klass (pointers); oop_size, static_oop_field_count (int);
    # protection_domain, signers, source_file (compressed references)
    "java.lang.Class": 8 + 8 + 4 + 4 + 4 + 4 + 4,
    "java.lang.ClassLoader": 8,                       # loader_data
    "java.lang.Module": 8,                            # module_entry
    "java.lang.String": 1,                            # flags
    "java.lang.StackFrameInfo": 2,                    # version
    "java.lang.InternalError": 1,                     # during_unsafe_access
    "java.lang.invoke.MemberName": 8,                 # vmindex
    "java.lang.invoke.ResolvedMethodName": 4 + 8,     # vmholder, vmtarget
    "java.lang.invoke.MethodHandleNatives$CallSiteContext": 8 + 8,  # vmdependencies,
                                                                   # last_cleanup
}

_CONTENDED_17 = {
    "java.lang.Thread": (("threadLocalRandomSeed", "threadLocalRandomProbe",
                          "threadLocalRandomSecondarySeed"),),
}

#: JDK 19 moved ThreadLocalRandom's fields out of the contended group, and JDK 25 made
#: ResolvedMethodName.vmholder a Java field; a Thread holds its JVMTI state.
_INJECTED_25 = {
    **_INJECTED_17,
    "java.lang.invoke.ResolvedMethodName": 8,     # vmtarget
    "java.lang.Thread": 8 + 4,                    # jvmti_thread_state, VTMS transition count
}

#: The layouts this module knows, by JDK feature version. JDK 17's agrees exactly with
#: its class histogram (tests/test_hprof.py); JDK 25's with every class of a javac heap
#: but java.lang.Class (its dumper leaves out the mirrors of archived classes it has not
#: loaded) and Thread's subclasses (8 bytes short: Thread's fields leave a hole).
LAYOUTS = {
    17: HotSpotLayout(17, _INJECTED_17, _CONTENDED_17),
    25: HotSpotLayout(25, _INJECTED_25),
}


def layout_for(class_names: list[str], feature: int | None = None) -> HotSpotLayout:
    """The layout of JDK ``feature``, or (None) of the JDK that the classes suggest:
    the nearest one this module knows at or below it."""
    if feature is None:
        feature = 25 if "java.lang.Thread$FieldHolder" in class_names else 17
    known = [version for version in LAYOUTS if version <= feature] or [min(LAYOUTS)]
    return LAYOUTS[max(known)]
