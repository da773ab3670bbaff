/* What the concurrent harness (concurrent.c), its mutator thread (mutator.c)
 * and its designs (design_*.c) share: the run's state, the handshake, and the
 * design interface.
 *
 * Two threads: the mutator, started by ha_concurrent, runs a seeded program
 * over the live graph; the collector is the calling thread (the GIL released),
 * which runs the design's collection cycles beside it. They meet at
 * safepoints: the collector asks, the mutator parks at its next poll (between
 * operations, holding no reference but the roots), the collector does its
 * pause work and releases it. Every field either thread writes while the other
 * runs is atomic. */
#ifndef HEAPALIAS_CONCURRENT_H
#define HEAPALIAS_CONCURRENT_H

#include "plan.h"

#include <sched.h>

#define HA_ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define HA_ATOMIC_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

struct ha_conc;

/* A design: how a collection cycle runs beside the mutator. */
typedef struct ha_design_ops {
    const char *name;
    /* Before the mutator starts (NULL: nothing to do). HA_OK or an HA_ERR_* code. */
    int (*prepare)(struct ha_conc *c);
    /* One collection cycle, on the collector thread. HA_OK or an HA_ERR_* code. */
    int (*cycle)(struct ha_conc *c);
    /* After the last cycle, on every path (a failure, prepare's own too), before the
     * mutator is joined (NULL: nothing to do): release what prepare and the cycles
     * hold, and leave the mutator nothing it could block on. */
    void (*finish)(struct ha_conc *c);
} ha_design_ops;

/* Fields are grouped by who writes them and how often, one cache line per
 * group: a word one thread writes often, on a line the other reads often,
 * costs the writer a coherence miss at every write. (The 0.45-0.59x
 * throughput once blamed on this was another process sharing the CPUs.) */
#define HA_LINE _Alignas(64)

enum { HA_NEED_CHUNK_AHEAD = 1, HA_NEED_CHUNK_NOW = 2 };

struct ha_conc {
    /* Set before the mutator starts; read by both. */
    ha_collector *gc;             /* spaces[0] is where the mutator allocates */
    const ha_design_ops *design;  /* NULL: no collection at all (the reference run) */
    const ha_mutator_mix *mix;
    const ha_trap_view *trap; /* the page-trap designs' collector view; NULL otherwise */
    void *design_state;   /* what a design's prepare made, for its cycles and finish */
    ha_ref *roots;
    size_t nroots;
    ha_concurrent_run *run;
    /* Stall records: the mutator writes them (and a page-trap collector, the stalls it
     * makes the mutator suffer), each claiming its record by bumping `stall_count`;
     * the caller reads them after the join. */
    ha_stall *stalls;
    size_t stall_capacity;
    ha_stats *st;                 /* the collector's error details */
    uint64_t *verify_bitmap;      /* for mix->verify: one bit per heap word */
    ha_mutator_mix mix_copy;      /* `mix` points here: the caller's may share a line with
                                     something another thread writes */

    /* Relocation beside the mutator (design_colored.c). Set in the flip pause,
     * cleared in the pause that ends the cycle: `relocating` changes only while
     * the mutator is parked. Meanwhile both threads allocate in to-space by
     * atomically bumping `to_top`, and each publishes an object by storing its
     * header last (to-space is zeroed before a cycle, so 0 means unpublished). */
    HA_LINE uint32_t relocating;
    ha_off from_start, from_top, to_start, to_end;
    /* The minor design hands the mutator to-space in chunks (its own pages, which
     * no copy shares): while relocating, [to_top, to_end) is the current chunk,
     * which only the mutator changes. The collector maps a spare one ahead,
     * [spare_start, spare_end), whenever `need_chunk` is raised and none is
     * there; the mutator takes it when its chunk is used up (and raises
     * `need_chunk` again), and waits only if none is ready yet. */
    uint32_t refills_chunks;

    /* The handshake: the collector raises `requested` to epoch e; the mutator
     * parks by setting `parked` to e and waits for `released` to reach e. The
     * requests beside it are rare (a few per cycle), so the line the mutator
     * polls at every operation stays in its cache. */
    HA_LINE uint64_t requested;
    uint64_t parked, released;
    /* The colored collector's scan waits at the mutator's allocation buffer:
     * retire it (fill what is left) at the next poll. */
    uint32_t retire_lab;
    uint32_t need_gc;     /* the mutator could not allocate: collect now */
    uint32_t done;        /* the mutator has finished (or failed) */
    int32_t failed;       /* the first HA_ERR_* either thread hit, 0 while none */
    uint32_t need_chunk;  /* 0, HA_NEED_CHUNK_AHEAD or HA_NEED_CHUNK_NOW */
    ha_off spare_start, spare_end; /* spare_end 0: no spare chunk */

    /* The mutator's progress (for the schedule), written every few operations. */
    HA_LINE uint64_t operations;

    /* To-space's top, bumped by both threads at every copy and allocation. */
    HA_LINE uint64_t to_top;

    /* Stall records claimed, by both threads. */
    HA_LINE uint64_t stall_count;

    /* The run's counts (`run` points here; copied out after the join): the
     * collector adds to them at every copy. */
    HA_LINE ha_concurrent_run counts;

    /* The mutator's, written when it fails and after its run. */
    HA_LINE ha_stats mutator_st;
    uint64_t mutator_bytes_relocated, mutator_objects_relocated;
};

/* Wait until *word == value (the other thread is on another core, or will be
 * scheduled: spin briefly, then yield). */
static inline void ha_wait_for(const uint64_t *word, uint64_t value)
{
    for (unsigned spins = 0; HA_ATOMIC_LOAD(word) != value; spins++) {
        if (spins < 1000)
            __builtin_ia32_pause();
        else
            sched_yield();
    }
}

/* The knob mix->collector_delay_ns: a collector waits that long after each stale
 * reference it fixes, so that its mutator meets more of its barrier's slow paths
 * (or traps). */
static inline void ha_conc_delay(const struct ha_conc *c)
{
    if (c->mix->collector_delay_ns)
        for (uint64_t until = ha_now_ns() + c->mix->collector_delay_ns; ha_now_ns() < until;)
            __builtin_ia32_pause();
}

/* Record `rc` as the run's failure, if it is the first; returns rc. */
static inline int ha_conc_fail(struct ha_conc *c, int rc)
{
    int32_t none = 0;
    if (rc)
        __atomic_compare_exchange_n(&c->failed, &none, rc, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
    return rc;
}

/* Room for `bytes` in to-space while relocating: its offset, or 0 when full. */
static inline ha_off ha_conc_reserve(struct ha_conc *c, uint64_t bytes, ha_stats *st)
{
    ha_off at = __atomic_fetch_add(&c->to_top, bytes, __ATOMIC_RELAXED);
    if (at + bytes > c->to_end) {
        ha_conc_fail(c, ha_fail(st, HA_ERR_FULL, at, -1));
        return 0;
    }
    return at;
}

/* A thread's local allocation buffer in to-space while relocating (colored
 * design): [top, end), taken from `to_top` a few KiB at a time. Bumping a
 * shared top at every copy moved its cache line between the cores at every
 * copy, and the locked add waited for the previous copy's store misses; a
 * buffer of one's own is bumped in a register and written ahead (prefetched
 * for writing), so a copy's stores hit. */
typedef struct ha_lab {
    ha_off top, end; /* empty: top == end */
} ha_lab;

enum { HA_LAB_BYTES = 4096, HA_LAB_LEAD = 512 };

/* Fill what is left of `lab` with a filler object (a scan steps over it) and
 * empty it. */
static inline void ha_lab_retire(const ha_heap *h, ha_lab *lab)
{
    if (lab->end > lab->top)
        __atomic_store_n(ha_at(h, lab->top), ha_filler_header((lab->end - lab->top) / 8),
                         __ATOMIC_RELEASE);
    lab->top = lab->end;
}

/* Retire `lab` and take a new one with room for `bytes` (4 KiB, or what is left
 * of to-space); 0 when to-space is full (the run's failure). */
int ha_lab_refill(struct ha_conc *c, const ha_heap *h, ha_lab *lab, uint64_t bytes, ha_stats *st);

/* Room for `bytes` in `lab` (refilled if need be): its offset, or 0 when full. */
static inline ha_off ha_lab_reserve(struct ha_conc *c, const ha_heap *h, ha_lab *lab,
                                    uint64_t bytes, ha_stats *st)
{
    if (lab->end - lab->top < bytes && !ha_lab_refill(c, h, lab, bytes, st))
        return 0;
    ha_off at = lab->top;
    lab->top += bytes;
    if (lab->top + HA_LAB_LEAD < lab->end)
        __builtin_prefetch(ha_at(h, lab->top + HA_LAB_LEAD), 1);
    return at;
}

/* The colored design's relocation of the object `ref` names, shared by the
 * collector and the mutator's load barrier: the good-colored reference to its
 * copy (made now in `lab`, or already), or the same object recolored if it is
 * not being relocated; 0 after a failure, recorded in c->failed and `st`. */
ha_ref ha_colored_relocate(struct ha_conc *c, const ha_heap *h, ha_ref ref, ha_lab *lab,
                           uint64_t *bytes, uint64_t *objects, ha_stats *st);

/* Whether `ref` (non-null, colored or masked) carries the good color `good`. */
static inline int ha_has_color(const ha_heap *h, ha_ref ref, uint32_t good)
{
    return ((ref - h->ref_base) >> h->shift) == good;
}

/* With mix->verify, check the allocation space and the roots as ha_verify does
 * (every reference names an object start there): at the end of a cycle, with
 * the mutator parked. A failure is the run's. */
int ha_conc_verify(struct ha_conc *c);

/* Record a stall of `kind` that began at `start` and ends now (either thread). */
void ha_conc_record_stall(struct ha_conc *c, uint64_t start, uint32_t kind);

/* A design's relocation of one root in its flip pause: the root's new
 * reference, or 0 after a failure (recorded in c->failed). */
typedef ha_ref (*ha_root_relocator)(struct ha_conc *c, void *design, ha_ref root);

/* The end of a flip pause: make to-space (gc->spaces[1]) the allocation space,
 * with the mutator relocating. */
void ha_conc_flip_spaces(struct ha_conc *c);

/* The same, after relocating every root. HA_OK or the run's failure. */
int ha_conc_flip_roots(struct ha_conc *c, ha_root_relocator relocate, void *design);

/* Stop the mutator at its next safepoint; 1 once it is parked, 0 if it has
 * finished (or failed) instead, so the pause runs without it. */
int ha_conc_stop_mutator(struct ha_conc *c);
/* Let a parked mutator run again. */
void ha_conc_release_mutator(struct ha_conc *c);

/* The mutator thread's body (mutator.c). */
void *ha_mutator_main(void *conc);

/* ---- what the page-trap designs share (trap.c) ---- */

/* A userfaultfd and the range of one view it traps. */
typedef struct ha_trap {
    int uffd;           /* -1 until opened */
    uint64_t base;      /* the trapped view's offset 0 */
    uint64_t page;      /* the page size a fault covers */
    ha_off start, end;  /* the registered offsets; end 0: none registered */
    uint64_t quiet_ns;  /* when the collector last found no fault pending */
} ha_trap;

/* Serve the fault at heap offset `off`, in the trapped range: make its page
 * right and map it (which wakes the mutator). HA_OK or a failure. */
typedef int (*ha_trap_server)(struct ha_conc *c, void *design, ha_off off);

/* Record a failed system call (-errno) as the run's failure. */
int ha_trap_fail(struct ha_conc *c, int neg_errno);
/* Open t->uffd and ask for `features`; HA_OK or HA_ERR_SYSCALL in c->st. */
int ha_trap_open(struct ha_conc *c, ha_trap *t, uint64_t features);
int ha_trap_register(struct ha_conc *c, ha_trap *t, ha_off start, ha_off end, uint64_t mode);
/* Unregister the range (waking any fault in it); nothing if none is registered. */
int ha_trap_unregister(struct ha_conc *c, ha_trap *t);
/* Unregister and close, on every path; nothing if never opened. */
void ha_trap_close(struct ha_conc *c, ha_trap *t);
/* Serve every fault pending; each is a stall of the mutator, timed from t->quiet_ns
 * (the collector's last look that found none, before which it cannot have come). */
int ha_trap_serve_faults(struct ha_conc *c, ha_trap *t, ha_trap_server serve, void *design);

/* ---- designs ---- */
extern const ha_design_ops ha_design_stw;
extern const ha_design_ops ha_design_colored;
extern const ha_design_ops ha_design_minor;
extern const ha_design_ops ha_design_copy;
extern const ha_design_ops ha_design_move;

#endif
