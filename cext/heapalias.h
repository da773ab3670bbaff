/* The C core's API: one prototype per function, shared with cffi (see build_native.py). */
#ifndef HEAPALIAS_H
#define HEAPALIAS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

/* Older libc headers lack these; the values are the kernel ABI. */
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 4U
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
#endif
#ifndef MFD_HUGE_1GB
#define MFD_HUGE_1GB (30U << 26)
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB (30 << 26)
#endif

/* cffi-begin: everything up to cffi-end is also the cdef Python sees.
 * The functions come in groups, each with one return convention; the one Python
 * module that calls them, heapalias/native.py, turns every failure into an exception.
 * - System calls (mapping.c): 0, or a result >= 0 such as a descriptor, on success;
 *   -errno on failure. Addresses come back through an out-parameter.
 * - GC loops (copy.c, scan.c) and the workloads (workloads.c): HA_OK, or a positive
 *   enum ha_gc_error; the counts, the time and the offset at fault are in *st.
 * - Relocation (mapping.c): 0, or the -errno of the mmap, mremap or madvise that
 *   failed; the bytes moved and the time are in *st. ha_relocate_copy returns 0.
 * - Limits (limits.c): the nanoseconds the whole job took, as a uint64_t;
 *   ha_fault_ns, which maps memory, returns an int64_t: those, or -errno.
 * - Drivers (drivers.c): the GC-loop convention; the run's figures in *run. */

/* ---- system calls: 0 or a result >= 0, or -errno ---- */
int ha_memfd_create(const char *name, unsigned int flags);
int ha_ftruncate(int fd, int64_t length);
int ha_fallocate(int fd, int64_t offset, int64_t length);
int ha_close(int fd);

int ha_mmap(uintptr_t hint, size_t length, int prot, int flags, int fd,
            int64_t offset, uintptr_t *out);
int ha_mremap(uintptr_t old_address, size_t old_size, size_t new_size,
              int flags, uintptr_t new_address, uintptr_t *out);
int ha_munmap(uintptr_t address, size_t length);
int ha_mprotect(uintptr_t address, size_t length, int prot);
int ha_madvise(uintptr_t address, size_t length, int advice);
int ha_name_anon(uintptr_t address, size_t length, const char *name);

int ha_touch(uintptr_t address, size_t length, size_t stride, int write);

/* ---- GC core: object model in object_model.h, loops in copy.c and scan.c ---- */

/* A reference word, as a slot or root stores it (its encoding says how it
 * names an object), and a byte offset from the heap base: both 64-bit words,
 * kept apart by name so a signature says which one it takes. */
typedef uint64_t ha_ref;
typedef uint64_t ha_off;

/* How a reference word names an object (see object_model.h). */
enum ha_encoding {
    HA_REF_OFFSET = 0,  /* byte offset from the heap base; 0 is null */
    HA_REF_ADDRESS = 1, /* raw pointer into the color-0 view */
    HA_REF_COLORED = 2, /* pointer into view k of a multimap; used unmasked */
    HA_REF_MASKED = 3   /* the same bits, stripped to color 0 on every load */
};

/* What a loop found wrong; stats.error_offset says where. */
enum ha_gc_error {
    HA_OK = 0,
    HA_ERR_HEADER = 1,    /* a header that is not a valid object header */
    HA_ERR_REF = 2,       /* a reference outside the heap or misaligned */
    HA_ERR_NOT_OBJECT = 3,/* a reference that is not an object start (verify) */
    HA_ERR_FULL = 4,      /* the to-space or allocation space is full */
    HA_ERR_ARGUMENT = 5,  /* a space or buffer that does not fit the heap */
    HA_ERR_NOMEM = 6,     /* malloc of a scratch buffer failed */
    HA_ERR_SYSCALL = 7    /* a system call failed; stats.error_offset holds its errno */
};

typedef struct ha_heap {
    uint64_t base;        /* color-0 view: every store, and loads for offset/masked */
    uint64_t load_base;   /* view that bulk copies read from (evacuation through views) */
    uint64_t size;        /* bytes in the heap */
    uint64_t ref_base;    /* address encodings: the address of offset 0 in color 0 */
    uint32_t encoding;    /* enum ha_encoding */
    uint32_t shift;       /* colored/masked: color k starts at ref_base + (k << shift) */
    uint32_t ncolors;
    uint32_t store_color; /* the color written into new references */
} ha_heap;

typedef struct ha_space {
    ha_off start;         /* byte offsets in the heap; start > 0, word aligned */
    ha_off end;
    ha_off top;           /* bump pointer: objects lie in [start, top) */
} ha_space;

typedef struct ha_stats {
    uint64_t objects;
    uint64_t bytes;
    uint64_t refs;
    uint64_t cards;
    uint64_t nanoseconds;
    int32_t error;        /* enum ha_gc_error */
    int64_t error_root;   /* index of the root at fault, or -1 */
    ha_off error_offset;  /* heap offset of the bad header or reference slot */
} ha_stats;

/* GC loops: HA_OK or a positive enum ha_gc_error, the details in *st. */
int ha_cheney(const ha_heap *h, const ha_space *from, ha_space *to,
              ha_ref *roots, size_t nroots, ha_stats *st);
int ha_mark(const ha_heap *h, const ha_space *spaces, size_t nspaces,
            const ha_ref *roots, size_t nroots, ha_ref *stack,
            size_t stack_capacity, ha_stats *st);
int ha_clear_marks(const ha_heap *h, const ha_space *space, ha_stats *st);

/* The same loops on a team of `threads` threads (1 to HA_MAX_THREADS), the calling
 * thread among them; 1 runs the single-thread loop. Every thread is joined before
 * they return, whatever happened (mark_parallel.c, cheney_parallel.c). */
enum { HA_MAX_THREADS = 1024 };
int ha_mark_parallel(const ha_heap *h, const ha_space *spaces, size_t nspaces,
                     const ha_ref *roots, size_t nroots, ha_ref *stack,
                     size_t stack_capacity, uint32_t threads, ha_stats *st);
int ha_cheney_parallel(const ha_heap *h, const ha_space *from, ha_space *to,
                       ha_ref *roots, size_t nroots, uint32_t threads, ha_stats *st);
int ha_walk(const ha_heap *h, const ha_space *space, ha_off *offsets,
            size_t capacity, ha_stats *st);
int ha_verify(const ha_heap *h, const ha_space *spaces, size_t nspaces,
              const ha_ref *roots, size_t nroots, uint64_t *bitmap,
              ha_stats *st);
int ha_write_ref(const ha_heap *h, uint8_t *cards, uint32_t card_shift,
                 ha_off object, uint32_t slot, ha_ref ref, ha_stats *st);
int ha_card_scan(const ha_heap *h, const ha_space *space, const uint8_t *cards,
                 uint32_t card_shift, ha_off target_start,
                 ha_off target_end, ha_off *found, size_t capacity,
                 ha_stats *st);

/* Workloads: the GC-loop convention. Each bump-allocates into *s, whose top
 * advances (also when it fails), and writes its roots. */
int ha_tree(const ha_heap *h, ha_space *s, uint32_t depth, int top_down,
            uint32_t payload_words, ha_ref *root, ha_stats *st);
int ha_linked_list(const ha_heap *h, ha_space *s, uint64_t n, int shuffled,
                   uint64_t seed, ha_ref *head, ha_stats *st);
int ha_random_graph(const ha_heap *h, ha_space *s, uint64_t n, uint32_t mean_degree,
                    uint32_t payload_min, uint32_t payload_max, const uint32_t *size_table,
                    const uint64_t *size_cumulative, size_t size_entries, uint64_t seed,
                    ha_ref *roots, size_t nroots, ha_stats *st);
int ha_large_objects(const ha_heap *h, ha_space *s, uint64_t n,
                     uint64_t payload_words, ha_ref *head, ha_stats *st);

/* ---- relocation: move page-aligned ranges by remapping, or by copying ----
 * 0 or -errno, the bytes moved and the time in *st (mapping.c). */
int ha_relocate_remap(int fd, uint64_t old_address, uint64_t file_offset,
                      uint64_t length, uint64_t new_address, int populate,
                      ha_stats *st);
int ha_relocate_copy(uint64_t dst, uint64_t src, uint64_t length, ha_stats *st);

/* ---- physical limits, measured in the same run as the loops they judge ----
 * Nanoseconds for the whole job; ha_fault_ns: nanoseconds or -errno (limits.c). */
uint64_t ha_memcpy_ns(uint64_t dst, uint64_t src, uint64_t length, uint32_t repeats);
uint64_t ha_read_ns(uint64_t src, uint64_t length, uint32_t repeats, int prefetch,
                    uint64_t *sum);
uint64_t ha_chase_ns(uint64_t buffer, uint64_t slots, uint64_t steps, uint64_t seed,
                     uint64_t *last);
int64_t ha_fault_ns(uint64_t length, int flags);
uint64_t ha_stream_copy_ns(uint64_t dst, uint64_t src, uint64_t length, uint32_t repeats);
uint64_t ha_write_ns(uint64_t dst, uint64_t length, uint32_t repeats, int streaming);
uint64_t ha_write_read_ns(uint64_t write_to, uint64_t read_from, uint64_t length,
                          int streaming, int prefetch, uint64_t *sum);
uint64_t ha_gather_ns(uint64_t buffer, uint64_t slots, uint64_t steps, uint64_t seed,
                      uint64_t *sum);
/* The memory's parallelism: ha_link_cycle links a buffer's cache lines into one random
 * cycle, ha_chases_ns follows `chases` (at most HA_MAX_CHASES) independent chases
 * around it at once. */
enum { HA_MAX_CHASES = 64 };
void ha_link_cycle(uint64_t buffer, uint64_t slots, uint64_t seed);
uint64_t ha_read_threads_ns(uint64_t src, uint64_t length, uint32_t threads, int prefetch,
                            uint64_t *sum);
uint64_t ha_chases_ns(uint64_t buffer, uint64_t slots, uint32_t chases, uint64_t steps,
                      uint64_t seed, uint64_t *last);
uint64_t ha_chases_threads_ns(uint64_t buffer, uint64_t slots, uint32_t chases, uint64_t steps,
                              uint64_t seed, uint32_t threads, uint64_t *last);

/* ---- collectors: plans a mutator allocates, stores and collects through ---- */

/* Each plan is one C file with its hooks (cext/plan.h) and one Python module
 * (heapalias/collectors/). */
enum ha_plan {
    HA_PLAN_SEMISPACE = 0,   /* Cheney copying between spaces[0] and spaces[1] */
    HA_PLAN_GENERATIONAL = 1 /* a nursery and two survivor spaces evacuated by Cheney,
                                an old space compacted in place (generational.c) */
};

/* The order a minor collection copies the objects it evacuates in, and so the order
 * they lie in afterwards. */
enum ha_copy_order {
    HA_COPY_BREADTH_FIRST = 0, /* Cheney: scan the copies in the order they were made */
    HA_COPY_DEPTH_FIRST = 1    /* pre-order: a copy's referents are copied (and theirs)
                                  before its next slot, with an explicit stack */
};

/* What the generational plan keeps beside its spaces; zero for the other plans.
 * The arrays belong to the caller (heapalias/collectors/generational.py), which
 * sizes them from `ncards` and keeps them alive across calls. */
typedef struct ha_generations {
    uint8_t *cards;         /* one byte per card (HA_CARD_SHIFT): nonzero once a slot in it
                               was stored to; the minor collections' remembered set */
    uint32_t *crossing;     /* per card of the old space: words from the start of the object
                               covering the card's first word to that word */
    uint64_t *compaction;   /* two zeroed words per card for full collections: a bitmap of the
                               card's live words, and where the first of them moves to */
    uint64_t ncards;        /* entries in cards and crossing: (heap size >> HA_CARD_SHIFT) + 1 */
    ha_off nursery_end;     /* the nursery's end (spaces[0].end) */
    ha_off crossing_top;    /* the old objects below this offset have their crossing entries */
    uint32_t tenure_age;    /* minor collections an object survives before it is promoted
                               (1: at the first one; at most 16) */
    uint32_t copy_order;    /* enum ha_copy_order: the order minor collections copy in */
    uint64_t minor_collections, full_collections; /* counted from 0 in each call */
    uint64_t promoted_average;   /* bytes promoted per minor collection, a weighted average, */
    uint64_t promoted_deviation; /* and its mean deviation: the promotion policy's estimate */
    uint64_t promotion_failures; /* minor collections the old space ran out during */
} ha_generations;

enum { HA_MAX_SPACES = 4 };

/* A collector as a mutator sees it: its plan, the heap and the plan's spaces.
 * spaces[0] is always where the mutator bump-allocates; a collection may
 * reorder the spaces (the semispace plan swaps 0 and 1 when it flips). */
typedef struct ha_collector {
    uint32_t plan;        /* enum ha_plan */
    uint32_t nspaces;     /* as many as the plan declares */
    ha_heap heap;
    ha_space spaces[4];   /* HA_MAX_SPACES */
    ha_generations generations; /* the generational plan's state; zero for the others */
    uint32_t threads;     /* threads a collection may run on (semispace); 0 or 1: one */
} ha_collector;

/* Collect with the plan's own collection hook; the roots are updated in place. */
int ha_collect(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st);
/* Collect the young generation only (a minor collection); HA_ERR_ARGUMENT for a plan
 * without generations. */
int ha_collect_young(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st);
/* Make room for an allocation of `bytes` in spaces[0]: the collection the plan's
 * policy picks when its allocation space fills (the drivers' slow path);
 * HA_ERR_FULL if no collection makes that room. */
int ha_collect_for(ha_collector *gc, ha_ref *roots, size_t nroots, uint64_t bytes,
                   ha_stats *st);

/* ---- mutator drivers: allocate in C, collect through the plan's hooks ---- */
typedef struct ha_gc_run {
    uint64_t collections;
    uint64_t bytes_copied;
    uint64_t objects_allocated;
    uint64_t bytes_allocated;
    uint64_t total_ns;
    uint64_t gc_ns;
    int64_t check[16];     /* the program's own check values */
    uint32_t nchecks;
} ha_gc_run;

int ha_gcbench(ha_collector *gc, ha_ref *shadow, size_t shadow_capacity, uint64_t *pauses,
               size_t pause_capacity, ha_gc_run *run, ha_stats *st);
int ha_binary_trees(ha_collector *gc, uint32_t max_depth, ha_ref *shadow,
                    size_t shadow_capacity, uint64_t *pauses, size_t pause_capacity,
                    ha_gc_run *run, ha_stats *st);

/* ---- concurrent collection: a mutator thread runs while the collector works ---- */

enum ha_design {
    HA_DESIGN_NONE = 0, /* no collection: the reference run */
    HA_DESIGN_STW = 1,  /* stop the mutator, evacuate (Cheney), flip, resume */
    HA_DESIGN_COLORED = 2, /* relocate beside the mutator behind a colored load barrier
                             (multi-mapped colors, or masked: the heap's encoding says) */
    HA_DESIGN_MINOR = 3,  /* no barrier: the mutator's view of to-space pages not yet
                             scanned traps (userfaultfd MINOR faults, design_minor.c) */
    HA_DESIGN_COPY = 4,   /* no barrier: compaction in place, each page built and installed
                             by UFFDIO_COPY on a MISSING fault (ART; design_copy.c) */
    HA_DESIGN_MOVE = 5    /* the same, installed by UFFDIO_MOVE (Linux 6.8+) */
};

/* What a stall of the mutator was. */
enum ha_stall_kind {
    HA_STALL_SAFEPOINT = 0, /* parked at a safepoint the collector asked for */
    HA_STALL_ALLOCATION = 1, /* out of room: waited for a collection */
    HA_STALL_BARRIER = 2,    /* a load barrier's slow path: forwarded or copied */
    HA_STALL_FAULT = 3       /* a page trap: the collector scanned the page first (timed
                                by the collector, from before the fault could have been
                                taken: an upper bound) */
};

/* The mutator's program: `operations` operations drawn from `seed`; per mille,
 * `store_permille` store (a payload value or a reference), `alloc_permille`
 * allocate an object and link it in, the rest only load. Each walks at most
 * `path_length` references from a random root. */
typedef struct ha_mutator_mix {
    uint64_t operations;
    uint64_t seed;
    uint32_t store_permille;
    uint32_t alloc_permille;
    uint32_t path_length;
    uint32_t collections; /* cycles, spread evenly over the operations */
    uint64_t first_identity; /* the identity of the first object the mutator allocates */
    uint64_t collector_delay_ns; /* the collector waits this long after each stale
                                    reference it heals: a slower collector, whose mutator
                                    meets more of them (0: full speed) */
    uint32_t verify;      /* verify the heap at the end of every cycle, the mutator parked */
    uint32_t reserved;
} ha_mutator_mix;

typedef struct ha_stall {
    uint64_t start_ns;    /* CLOCK_MONOTONIC */
    uint64_t ns;
    uint32_t kind;        /* enum ha_stall_kind */
    uint32_t reserved;
} ha_stall;

typedef struct ha_concurrent_run {
    uint64_t checksum;    /* of everything the mutator read: equal with and without GC */
    uint64_t operations, loads, stores, allocations;
    uint64_t collections;
    uint64_t started_ns, mutator_ns;  /* the mutator's start (CLOCK_MONOTONIC), wall time */
    uint64_t collector_ns;            /* the collector's time inside cycles */
    uint64_t mutator_cpu_ns;          /* the mutator thread's CPU time: below mutator_ns by
                                         its waits, and by the time it waited for a CPU */
    uint64_t collector_cpu_ns;        /* the collector thread's, over the run */
    uint64_t bytes_relocated, objects_relocated;
    uint64_t slow_paths;              /* barrier slow paths the mutator took */
    uint64_t stalls;                  /* every stall, recorded or not */
    uint64_t faults;                  /* page traps the collector served (minor, copy, move) */
    uint64_t pages_exposed;           /* pages it mapped into the mutator's view */
    uint64_t fault_service_ns;        /* the collector's time serving them: from reading a
                                         fault to the ioctl that maps its page */
} ha_concurrent_run;

/* What the page-trap designs need beside the heap (NULL for the others): the
 * heap must be a memfd mapped shared (shmem or hugetlbfs), and this a second
 * mapping of it, the collector's own, which no trap covers. */
typedef struct ha_trap_view {
    uint64_t collector_base; /* where the collector's view of offset 0 is */
    uint64_t page_size;      /* the mapping's page size: what a trap covers */
} ha_trap_view;

/* Give every object of `space` an identity, its payload word after its
 * references, counting from 0 in address order: the mutator's graph. Each
 * object must have that word and one more (its value). The GC-loop convention;
 * st->objects counts them. */
int ha_stamp_identities(const ha_heap *h, const ha_space *space, ha_stats *st);

/* Run the mutator on a thread of its own over the live graph the roots reach
 * (in gc's allocation space), collecting with `design` beside it. The GC-loop
 * convention; the thread is joined on every path. */
int ha_concurrent(ha_collector *gc, uint32_t design, const ha_mutator_mix *mix,
                  const ha_trap_view *trap, ha_ref *roots, size_t nroots, ha_stall *stalls,
                  size_t stall_capacity, ha_concurrent_run *run, ha_stats *st);
/* ---- HPROF heap dumps (hprof.c): a resumable scanner over a dump's bytes, in two passes ----
 * ha_hprof_scan returns HA_HPROF_OK once the buffer is used up, HA_HPROF_MORE when the item
 * at cursor->offset needs cursor->need bytes more than the buffer holds, HA_HPROF_FULL when
 * index table cursor->full has no room, or an error from HA_HPROF_BAD_TAG on, described by
 * cursor->error_*. ha_hprof_table_add returns HA_HPROF_OK or the error at ids[*at_fault]. */
enum ha_hprof_pass {
    HA_HPROF_PASS_INDEX = 0, /* strings, classes, roots and one row per object */
    HA_HPROF_PASS_FILL = 1   /* each object's references and primitive bytes, into a heap */
};

enum ha_hprof_status {
    HA_HPROF_OK = 0,
    HA_HPROF_MORE = 1,          /* feed more bytes (at the end of the file: truncated) */
    HA_HPROF_FULL = 2,          /* grow table cursor->full and call again */
    HA_HPROF_BAD_TAG = 3,       /* a record or sub-record tag the format does not define */
    HA_HPROF_BAD_LENGTH = 4,    /* a record length its contents cannot have */
    HA_HPROF_OVERRUN = 5,       /* a sub-record runs past the end of its HEAP DUMP record */
    HA_HPROF_BAD_TYPE = 6,      /* a basic type the format does not define */
    HA_HPROF_BAD_ARRAY = 7,     /* an array longer than a Java array can be */
    HA_HPROF_CHANGED = 8,       /* the fill pass met an object the index pass did not */
    HA_HPROF_UNKNOWN_CLASS = 9, /* an instance of a class with no CLASS DUMP */
    HA_HPROF_BAD_FIELDS = 10,      /* an instance's bytes differ from its class's fields */
    HA_HPROF_DUPLICATE = 11,    /* two objects with one id */
    HA_HPROF_NULL_ID = 12,      /* an object whose id is 0 (null) */
    HA_HPROF_ARGUMENT = 13      /* a destination outside the heap: a caller's bug */
};

/* The index pass's output tables, each rows[t] with counts[t] of capacities[t] rows. */
enum ha_hprof_tables {
    HA_HPROF_STRINGS = 0,  /* ha_hprof_string */
    HA_HPROF_TEXT = 1,     /* uint8_t: the strings' UTF-8 bytes */
    HA_HPROF_LOADS = 2,    /* ha_hprof_load */
    HA_HPROF_CLASSES = 3,  /* ha_hprof_class */
    HA_HPROF_VALUES = 4,   /* ha_hprof_value: constant pool entries and statics */
    HA_HPROF_FIELDS = 5,   /* ha_hprof_field: instance fields */
    HA_HPROF_ROOTS = 6,    /* ha_hprof_root */
    /* One column each for the objects (INSTANCE, OBJECT ARRAY and PRIMITIVE ARRAY DUMPs),
     * so that the caller can let go of one it no longer needs: */
    HA_HPROF_OBJECT_IDS = 7,      /* uint64_t */
    HA_HPROF_OBJECT_CLASSES = 8,  /* uint64_t: class id; a primitive array's basic type */
    HA_HPROF_OBJECT_OFFSETS = 9,  /* uint64_t: of the sub-record in the file */
    HA_HPROF_OBJECT_LENGTHS = 10, /* uint32_t: an instance's field bytes; an array's length */
    HA_HPROF_OBJECT_KINDS = 11,   /* uint8_t: the sub-record's tag, 0x21, 0x22 or 0x23 */
    HA_HPROF_NTABLES = 12
};

typedef struct ha_hprof_string { uint64_t id; uint64_t at; uint64_t length; } ha_hprof_string;
typedef struct ha_hprof_load {
    uint64_t class_id; uint64_t name_id; uint32_t serial; uint32_t reserved;
} ha_hprof_load;
typedef struct ha_hprof_class {
    uint64_t id, super_id, loader, signers, domain;
    uint64_t offset;            /* of its CLASS DUMP in the file */
    uint64_t values, fields;    /* its first rows in the values and fields tables */
    uint32_t nvalues, nfields;
    uint32_t instance_size;     /* as the dump states it */
    uint32_t reserved;
} ha_hprof_class;
typedef struct ha_hprof_value {
    uint64_t name;              /* a static's name id, or a constant's pool index */
    uint64_t value;             /* an object id, or a primitive's bits */
    uint32_t type;              /* HPROF basic type */
    uint32_t is_static;
} ha_hprof_value;
typedef struct ha_hprof_field { uint64_t name; uint32_t type; uint32_t reserved; } ha_hprof_field;
typedef struct ha_hprof_root {
    uint64_t id; uint64_t offset; uint32_t kind; uint32_t reserved; /* kind: its sub-record tag */
} ha_hprof_root;
typedef struct ha_hprof_index {
    void *rows[12];             /* HA_HPROF_NTABLES */
    uint64_t counts[12];
    uint64_t capacities[12];
} ha_hprof_index;

/* Object id -> reference word: `capacity` (key, value) pairs, zeroed before the first
 * ha_hprof_table_add; open addressing, key 0 empty; `count` keys in use. */
typedef struct ha_hprof_table {
    uint64_t *slots;
    uint64_t capacity;
    uint64_t count;
} ha_hprof_table;

/* What the fill pass writes, where: the heap's words, each object (in the index
 * pass's order) at the offset its own id has in the table (its reference, less
 * ref_add), whose header says where its slots and payload are. The index pass's ids,
 * lengths and kinds, and the class ids, are checked again: the file must not have
 * changed. An object array longer than chunk_refs is an arraylet: a spine whose slots
 * the caller links to the chunks that follow it, which hold the elements. */
typedef struct ha_hprof_fill {
    uint64_t *heap;
    uint64_t heap_words;
    const uint64_t *ids;            /* the index pass's columns */
    const uint32_t *lengths;
    const uint8_t *kinds;
    uint64_t nobjects;
    uint64_t next;                  /* the object being filled */
    const int32_t *klass;           /* a class's index; -1 none; a primitive array: -type */
    const uint64_t *class_ids;      /* of each class index */
    uint64_t nclasses;
    const uint64_t *layout_start;   /* class k's field types: layout[start[k]:start[k+1]] */
    const uint8_t *layout;
    uint32_t *edges;                /* out: each object's non-null references */
    const ha_hprof_table *table;
    uint64_t ref_add;               /* a reference less this is its heap offset */
    uint64_t chunk_refs;
} ha_hprof_fill;

typedef struct ha_hprof_cursor {
    uint32_t id_size;           /* 4 or 8, from the file's header */
    uint32_t pass;              /* enum ha_hprof_pass */
    uint64_t offset;            /* the file offset of the next byte to read */
    uint64_t record_end;        /* the end of the HEAP DUMP (SEGMENT) being read */
    uint32_t record_tag, in_heap;
    uint64_t skip;              /* bytes still to pass over */
    uint64_t item_at;           /* the record or sub-record being read, and its tag */
    uint32_t item_tag;
    uint32_t ended;             /* a HEAP DUMP END was read */
    uint64_t need;              /* HA_HPROF_MORE: bytes needed from offset */
    uint32_t full;              /* HA_HPROF_FULL: the table */
    uint32_t heap_records;      /* HEAP DUMP and HEAP DUMP SEGMENT records read */
    uint32_t segments;          /* of them, HEAP DUMP SEGMENTs (which HEAP DUMP END must end) */
    uint32_t reserved2;
    uint64_t array_left;        /* fill pass: elements of the array being filled */
    uint32_t element, array_refs;
    uint64_t slot, slot_end;    /* heap words: the next reference slot, and its object's end */
    uint64_t payload, payload_end; /* heap bytes: the next payload byte, and the end */
    uint64_t edges;             /* non-null references of the object being filled */
    uint32_t chunked, reserved;
    uint64_t refs, nulls, missing; /* fill pass: references resolved, null, to no object */
    uint64_t error_offset;      /* an error: the record or sub-record at fault */
    uint64_t error_value;       /* the value at fault */
    uint32_t error_tag;         /* its tag */
    uint32_t error_record;      /* the tag of the top-level record around it */
} ha_hprof_cursor;

int ha_hprof_scan(ha_hprof_cursor *c, const uint8_t *buf, uint64_t base, uint64_t len,
                  ha_hprof_index *ix, ha_hprof_fill *fill);
int ha_hprof_table_add(ha_hprof_table *t, const uint64_t *ids, const uint64_t *values,
                       uint64_t n, uint64_t *at_fault);
/* The reference of each id (0 for null and for an id the table lacks); returns how many
 * non-null ids it lacks. */
uint64_t ha_hprof_lookup(const ha_hprof_table *t, const uint64_t *ids, uint64_t n,
                         uint64_t *out);
/* ---- userfaultfd (uffd.c): 0, a descriptor or a count, or -errno ---- */
/* A new userfaultfd, O_NONBLOCK|O_CLOEXEC, through the system call or
 * /dev/userfaultfd; user_mode_only traps only faults taken in user mode. */
int ha_uffd_open(int via_device, int user_mode_only);
/* The UFFDIO_API handshake asking for `features`; what the kernel grants. */
int ha_uffd_api(int fd, uint64_t features, uint64_t *features_out, uint64_t *ioctls_out);
/* Every feature and ioctl the kernel offers, from a fresh userfaultfd (closed again). */
int ha_uffd_features(int via_device, uint64_t *features_out, uint64_t *ioctls_out);
int ha_uffd_register(int fd, uintptr_t start, size_t length, uint64_t mode,
                     uint64_t *ioctls_out);
/* Unregister, and wake whatever still waits in the range (uffd.c says why). */
int ha_uffd_unregister(int fd, uintptr_t start, size_t length);
int ha_uffd_wake(int fd, uintptr_t start, size_t length);
int ha_uffd_continue(int fd, uintptr_t start, size_t length, int wake);
int ha_uffd_copy(int fd, uintptr_t dst, uintptr_t src, size_t length, int wake);
int ha_uffd_move(int fd, uintptr_t dst, uintptr_t src, size_t length, int wake);
/* The next page fault: 1 with its address and flags, 0 if none came within
 * timeout_ms (0: do not wait). */
int ha_uffd_next_fault(int fd, int timeout_ms, uint64_t *address, uint64_t *flags);
/* Relocation through a userfaultfd (MISSING mode): UFFDIO_MOVE if `move`,
 * else UFFDIO_COPY; the relocation convention (0 or -errno; the ioctl's time,
 * without the userfaultfd's set-up, in *st). */
int ha_relocate_uffd(int move, uint64_t dst, uint64_t src, uint64_t length, ha_stats *st);
/* cffi-end */

/* Shared between the C files only. */
void ha_copy_streaming(uint64_t *dst, const uint64_t *src, uint64_t bytes);

#endif
