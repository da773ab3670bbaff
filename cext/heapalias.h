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
    HA_ERR_NOMEM = 6      /* malloc of a scratch buffer failed */
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
    ha_off nursery_end;     /* the nursery's real end: spaces[0].end may be lowered so that
                               the old space can always take every survivor */
    ha_off crossing_top;    /* the old objects below this offset have their crossing entries */
    uint32_t tenure_age;    /* minor collections an object survives before it is promoted
                               (1: at the first one; at most 16) */
    uint32_t copy_order;    /* enum ha_copy_order: the order minor collections copy in */
    uint64_t minor_collections, full_collections; /* counted from 0 in each call */
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
} ha_collector;

/* Collect with the plan's own collection hook; the roots are updated in place. */
int ha_collect(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st);
/* Collect the young generation only (a minor collection); HA_ERR_ARGUMENT for a plan
 * without generations. */
int ha_collect_young(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st);

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
    HA_DESIGN_COLORED = 2 /* relocate beside the mutator behind a colored load barrier
                             (multi-mapped colors, or masked: the heap's encoding says) */
};

/* What a stall of the mutator was. */
enum ha_stall_kind {
    HA_STALL_SAFEPOINT = 0, /* parked at a safepoint the collector asked for */
    HA_STALL_ALLOCATION = 1, /* out of room: waited for a collection */
    HA_STALL_BARRIER = 2     /* a load barrier's slow path: forwarded or copied */
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
    uint64_t bytes_relocated, objects_relocated;
    uint64_t slow_paths;              /* barrier slow paths the mutator took */
    uint64_t stalls;                  /* every stall, recorded or not */
} ha_concurrent_run;

/* Give every object of `space` an identity, its payload word after its
 * references, counting from 0 in address order: the mutator's graph. Each
 * object must have that word and one more (its value). The GC-loop convention;
 * st->objects counts them. */
int ha_stamp_identities(const ha_heap *h, const ha_space *space, ha_stats *st);

/* Run the mutator on a thread of its own over the live graph the roots reach
 * (in gc's allocation space), collecting with `design` beside it. The GC-loop
 * convention; the thread is joined on every path. */
int ha_concurrent(ha_collector *gc, uint32_t design, const ha_mutator_mix *mix, ha_ref *roots,
                  size_t nroots, ha_stall *stalls, size_t stall_capacity,
                  ha_concurrent_run *run, ha_stats *st);
/* cffi-end */

/* Shared between the C files only. */
void ha_copy_streaming(uint64_t *dst, const uint64_t *src, uint64_t bytes);

#endif
