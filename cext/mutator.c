/* The concurrent mutator: a seeded program over the live graph, run on its own
 * thread while a design collects beside it (concurrent.c).
 *
 * Each operation picks a root and walks at most `path_length` references from
 * it, choosing a slot at random at each node and mixing the node's identity
 * (payload word 0) and value (word 1) into a checksum. A store operation then
 * writes a new value or a reference into the last node; an allocation makes a
 * new object, pointing where the walk went, and links it there. Every choice
 * comes from the seed and the graph's contents, never from an address, so the
 * same seed gives the same checksum whatever moved: equal checksums with and
 * without collections mean no load saw a stale object and no store was lost.
 *
 * The mutator polls for a safepoint between operations, when it holds no
 * reference but the roots. Its allocation cursor lives in locals, as in the
 * GCBench driver, and goes back to the collector's space when it parks; while
 * a colored cycle relocates, it allocates by bumping to-space's shared top.
 *
 * The program is compiled twice, with and without the colored load barrier
 * (a constant argument, as the drivers do with a plan's hooks): every
 * reference it loads from the heap goes through load_ref. */
#include "concurrent.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

enum { LOAD, STORE, ALLOCATE };
enum { NEW_OBJECT_MAX_BYTES = 8 * (1 + 2 + 2) }; /* header, 2 refs, identity and value */
/* While relocating, a new object leaves room for a filler object (2 words) behind
 * it, so whatever is left of a chunk can always be parsed over. */
enum { NEW_OBJECT_ROOM = NEW_OBJECT_MAX_BYTES + 16 };

struct mutator {
    struct ha_conc *c;
    ha_heap h;
    ha_off top, end;      /* bump allocation in gc->spaces[0] */
    uint64_t rng;
    uint64_t epoch;       /* the last safepoint epoch it parked for */
    uint64_t identity;    /* the next new object's */
    uint32_t relocating;  /* c->relocating as of its last park */
    ha_lab lab;           /* its to-space buffer while a colored cycle relocates */
    uint64_t relocated_bytes, relocated_objects; /* copies its barrier made */
    ha_concurrent_run counts;
};

static inline uint64_t next_random(struct mutator *m)
{
    m->rng ^= m->rng << 13; /* xorshift64 */
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng;
}

static inline uint64_t mix_in(uint64_t checksum, uint64_t value)
{
    return (checksum ^ value) * 0x100000001b3ULL; /* FNV-1a's prime, over words */
}

static void record_stall(struct mutator *m, uint64_t start, uint32_t kind)
{
    ha_conc_record_stall(m->c, start, kind);
}

/* Park at the safepoint the collector asked for; `since` is when the stall
 * began (earlier than now for an allocation that waited for the request). */
static void park(struct mutator *m, uint64_t since, uint32_t kind)
{
    struct ha_conc *c = m->c;
    uint64_t epoch = HA_ATOMIC_LOAD(&c->requested);
    if (!m->relocating) /* published by the store to `parked` */
        c->gc->spaces[0].top = m->top;
    ha_lab_retire(&m->h, &m->lab); /* the pause may end the cycle */
    HA_ATOMIC_STORE(&c->parked, epoch);
    ha_wait_for(&c->released, epoch);
    m->epoch = epoch;
    m->relocating = c->relocating;
    m->top = c->gc->spaces[0].top;
    m->end = c->gc->spaces[0].end;
    m->h = c->gc->heap;
    record_stall(m, since, kind);
}

/* The collector's scan waits at the mutator's buffer: let it through. */
static void retire_lab(struct mutator *m)
{
    ha_lab_retire(&m->h, &m->lab);
    HA_ATOMIC_STORE(&m->c->retire_lab, 0);
}

static inline void poll_safepoint(struct mutator *m)
{
    if (__builtin_expect(HA_ATOMIC_LOAD(&m->c->requested) != m->epoch, 0))
        park(m, ha_now_ns(), HA_STALL_SAFEPOINT);
    else if (__builtin_expect(HA_ATOMIC_LOAD(&m->c->retire_lab), 0))
        retire_lab(m);
}

static int make_room(struct mutator *m);

/* The minor design's chunk is used up: the rest of it becomes a filler, and
 * the spare chunk the collector mapped ahead is the mutator's; it asks for the
 * next. If no spare is ready, it waits for one, or for the safepoint that ends
 * the cycle (then allocates as usual). */
static int next_chunk(struct mutator *m)
{
    struct ha_conc *c = m->c;
    uint64_t since = ha_now_ns();
    int waited = 0;
    while (!HA_ATOMIC_LOAD(&c->spare_end) && !HA_ATOMIC_LOAD(&c->failed) &&
           HA_ATOMIC_LOAD(&c->requested) == m->epoch) {
        if (!waited)
            HA_ATOMIC_STORE(&c->need_chunk, HA_NEED_CHUNK_NOW);
        waited = 1;
        sched_yield();
    }
    if (HA_ATOMIC_LOAD(&c->failed))
        return HA_ATOMIC_LOAD(&c->failed);
    if (HA_ATOMIC_LOAD(&c->requested) != m->epoch) {
        park(m, since, HA_STALL_ALLOCATION);
        return make_room(m);
    }
    ha_off top = HA_ATOMIC_LOAD(&c->to_top), end = c->to_end;
    if (end > top) /* at least a filler's room: make_room kept it */
        __atomic_store_n(ha_at(&m->h, top), ha_make_header((end - top) / 8, 0),
                         __ATOMIC_RELAXED);
    c->to_end = HA_ATOMIC_LOAD(&c->spare_end);
    HA_ATOMIC_STORE(&c->to_top, c->spare_start);
    HA_ATOMIC_STORE(&c->spare_end, 0);
    HA_ATOMIC_STORE(&c->need_chunk, HA_NEED_CHUNK_AHEAD);
    if (waited)
        record_stall(m, since, HA_STALL_ALLOCATION);
    return make_room(m);
}

/* Room for one new object: ask for a collection and wait for it if need be.
 * While a cycle relocates, to-space must hold what the mutator allocates. */
static int make_room(struct mutator *m)
{
    struct ha_conc *c = m->c;
    if (m->relocating) {
        uint64_t top = HA_ATOMIC_LOAD(&c->to_top);
        if (c->refills_chunks)
            return c->to_end - top >= NEW_OBJECT_ROOM ? HA_OK : next_chunk(m);
        if (m->lab.end - m->lab.top >= NEW_OBJECT_MAX_BYTES ||
            (top <= c->to_end && c->to_end - top >= NEW_OBJECT_MAX_BYTES))
            return HA_OK;
        return ha_fail(&c->mutator_st, HA_ERR_FULL, top, -1);
    }
    if (m->end - m->top >= NEW_OBJECT_MAX_BYTES)
        return HA_OK;
    if (!c->design)
        return ha_fail(&c->mutator_st, HA_ERR_FULL, m->top, -1);
    uint64_t since = ha_now_ns();
    HA_ATOMIC_STORE(&c->need_gc, 1);
    while (HA_ATOMIC_LOAD(&c->requested) == m->epoch && !HA_ATOMIC_LOAD(&c->failed))
        sched_yield();
    if (HA_ATOMIC_LOAD(&c->failed))
        return HA_ATOMIC_LOAD(&c->failed);
    park(m, since, HA_STALL_ALLOCATION);
    if (m->end - m->top < NEW_OBJECT_MAX_BYTES)
        return ha_fail(&c->mutator_st, HA_ERR_FULL, m->top, -1);
    return HA_OK;
}

/* The object `ref` names, with its header in *header; NULL unless it is a valid
 * object with an identity and a value after its references. */
static inline uint64_t *node_of(const struct mutator *m, ha_ref ref, uint64_t *header)
{
    ha_off off;
    if (!ha_decode(&m->h, ref, &off))
        return NULL;
    uint64_t *obj = ha_deref(&m->h, ref, off);
    *header = ha_load(obj);
    return ha_header_ok(*header, off, m->h.size) && ha_words(*header) >= ha_nrefs(*header) + 3
               ? obj : NULL;
}

/* The load barrier's slow path: relocate (or find) the object, heal the slot.
 * `node` (NULL: none) is the object the slot is in, with `nrefs` slots: when
 * one is stale the others most likely are too, and a walk through the node
 * will soon take one, so their objects are fetched now, beside this one. */
static __attribute__((noinline)) ha_ref heal(struct mutator *m, uint64_t *slot, ha_ref ref,
                                             const uint64_t *node, uint64_t nrefs)
{
    uint64_t since = ha_now_ns();
    uint64_t good_base = m->h.ref_base + ((uint64_t)m->h.store_color << m->h.shift);
    for (uint64_t i = 1; node && i <= nrefs; i++) {
        ha_ref sibling = ha_load(&node[i]);
        if (sibling && sibling - good_base >= 1ULL << m->h.shift)
            __builtin_prefetch(ha_prefetch_address(&m->h, sibling));
    }
    ha_ref good = ha_colored_relocate(m->c, &m->h, ref, &m->lab, &m->relocated_bytes,
                                      &m->relocated_objects, &m->c->mutator_st);
    /* A plain store heals: only the mutator stores anything but this very
     * reference there (the collector's healing of `ref` is the same copy), and
     * a second locked instruction would wait for the copy's stores again. */
    if (good)
        __atomic_store_n(slot, good, __ATOMIC_RELEASE);
    m->counts.slow_paths++;
    record_stall(m, since, HA_STALL_BARRIER);
    return good;
}

/* What the barrier tests a reference against, in locals: the mutator's state
 * escapes to the slow path, so the compiler would reload it from memory after
 * every store into the heap. A reference is good iff ref - base < span, one
 * unsigned compare (a shift by a variable count would also tie up %cl). */
struct good {
    uint64_t base; /* where the good color's view begins */
    uint64_t span; /* its length: 1 << the heap's color shift */
};

/* Every reference the program loads from the heap. 0 is null, or a failure
 * that heal recorded in c->failed. The load acquires: the slot may have been
 * healed by the collector, whose copy's contents must be seen with it (a plain
 * load on x86-64). */
ALWAYS_INLINE ha_ref load_slot(struct mutator *m, uint64_t *slot, const struct good *good,
                              const uint64_t *node, uint64_t nrefs)
{
    ha_ref ref = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (good && ref && __builtin_expect(ref - good->base >= good->span, 0))
        ref = heal(m, slot, ref, node, nrefs);
    return ref;
}

ALWAYS_INLINE ha_ref load_ref(struct mutator *m, uint64_t *slot, const struct good *good)
{
    return load_slot(m, slot, good, NULL, 0);
}

/* Where a new object of `bytes` goes: the local cursor, or while relocating
 * the mutator's buffer in to-space (the minor design's chunk). */
ALWAYS_INLINE ha_off allocate(struct mutator *m, uint64_t bytes)
{
    if (m->relocating && m->c->refills_chunks)
        return ha_conc_reserve(m->c, bytes, &m->c->mutator_st);
    if (m->relocating)
        return ha_lab_reserve(m->c, &m->h, &m->lab, bytes, &m->c->mutator_st);
    ha_off off = m->top;
    m->top += bytes;
    return off;
}

ALWAYS_INLINE int operation(struct mutator *m, int colored)
{
    const ha_mutator_mix *mix = m->c->mix;
    uint64_t roll = next_random(m) % 1000;
    int kind = roll < mix->store_permille ? STORE
             : roll < mix->store_permille + mix->alloc_permille ? ALLOCATE : LOAD;
    if (kind == ALLOCATE) {
        int rc = make_room(m);
        if (rc)
            return rc;
    }
    /* After make_room, which may park: a flip there moves the good color on. */
    const struct good colors = {m->h.ref_base + ((uint64_t)m->h.store_color << m->h.shift),
                                1ULL << m->h.shift};
    const struct good *good = colored ? &colors : NULL; /* NULL: no barrier */
    size_t root = next_random(m) % m->c->nroots;
    ha_ref first = load_ref(m, &m->c->roots[root], good), ref = first; /* healed after a flip */
    uint64_t *node = NULL, header = 0, length = 1 + next_random(m) % mix->path_length;
    uint64_t checksum = m->counts.checksum;
    for (uint64_t step = 0; step < length && ref; step++) {
        if (!(node = node_of(m, ref, &header)))
            return ha_fail(&m->c->mutator_st, HA_ERR_REF, 0, (int64_t)root);
        uint64_t *payload = node + 1 + ha_nrefs(header);
        checksum = mix_in(mix_in(checksum, ha_load(&payload[0])), ha_load(&payload[1]));
        m->counts.loads++;
        if (!ha_nrefs(header))
            break;
        ha_ref next = load_slot(m, &node[1 + next_random(m) % ha_nrefs(header)], good, node,
                                ha_nrefs(header));
        if (!next)
            break;
        ref = next;
    }
    m->counts.checksum = checksum;
    if (HA_ATOMIC_LOAD(&m->c->failed))
        return HA_ATOMIC_LOAD(&m->c->failed);
    if (!node || kind == LOAD)
        return HA_OK;
    uint64_t nrefs = ha_nrefs(header);
    uint64_t choice = next_random(m);
    if (kind == STORE) {
        m->counts.stores++;
        if (!nrefs || (choice & 1)) { /* a new value */
            __atomic_store_n(&node[1 + nrefs + 1], next_random(m), __ATOMIC_RELAXED);
        } else if ((choice & 7) == 1) { /* cut an edge: what only it reached is garbage */
            __atomic_store_n(&node[1 + (choice >> 3) % nrefs], 0, __ATOMIC_RELAXED);
        } else { /* swap two edges: two reference stores, nothing cut */
            uint64_t *a = &node[1 + (choice >> 3) % nrefs], *b = &node[1 + (choice >> 20) % nrefs];
            ha_ref ra = load_ref(m, a, good), rb = load_ref(m, b, good);
            if (HA_ATOMIC_LOAD(&m->c->failed))
                return HA_ATOMIC_LOAD(&m->c->failed);
            __atomic_store_n(a, rb, __ATOMIC_RELEASE);
            __atomic_store_n(b, ra, __ATOMIC_RELEASE);
        }
        return HA_OK;
    }
    /* Allocate, and put the new object on one of the node's edges, in front of
     * the edge's old target (new -> target, new -> the walk's first node). If
     * that target was itself allocated by the mutator, the new object takes its
     * place and both its edges, and it is garbage: the original graph stays
     * whole while young objects churn, as the generational hypothesis has it. */
    uint64_t new_refs = 2, words = 1 + new_refs + 2, young_header;
    uint64_t *slot = nrefs ? &node[1 + (choice >> 1) % nrefs] : NULL, *young;
    ha_ref target = slot ? load_ref(m, slot, good) : 0, second = first;
    if (target) {
        if (!(young = node_of(m, target, &young_header)))
            return HA_ATOMIC_LOAD(&m->c->failed) ? HA_ATOMIC_LOAD(&m->c->failed)
                   : ha_fail(&m->c->mutator_st, HA_ERR_REF, 0, (int64_t)root);
        if (ha_nrefs(young_header) == 2 && ha_load(&young[3]) >= mix->first_identity) {
            target = load_ref(m, &young[1], good);
            second = load_ref(m, &young[2], good);
        }
    }
    ha_off off = allocate(m, words * 8);
    if (HA_ATOMIC_LOAD(&m->c->failed))
        return HA_ATOMIC_LOAD(&m->c->failed);
    uint64_t *obj = ha_at(&m->h, off);
    obj[1] = target;
    obj[2] = second;
    obj[3] = m->identity++;
    obj[4] = next_random(m);
    __atomic_store_n(&obj[0], ha_make_header(words, new_refs), __ATOMIC_RELEASE);
    if (slot) /* unlinked (a node without edges), the object is garbage at once */
        __atomic_store_n(slot, ha_encode(&m->h, off), __ATOMIC_RELEASE);
    m->counts.allocations++;
    return HA_OK;
}

/* How often the mutator tells the collector its progress (for the schedule):
 * a store every operation to a line the waiting collector polls cost the
 * mutator a coherence miss per operation. */
enum { PROGRESS_EVERY = 256 };

/* The program: `operations` operations, with a safepoint poll before each. */
ALWAYS_INLINE int program(struct mutator *m, int colored)
{
    struct ha_conc *c = m->c;
    int rc = HA_OK;
    uint64_t op = 0;
    for (; op < c->mix->operations && !rc; op++) {
        poll_safepoint(m);
        if ((rc = HA_ATOMIC_LOAD(&c->failed)))
            break;
        rc = operation(m, colored);
        if ((op + 1) % PROGRESS_EVERY == 0)
            HA_ATOMIC_STORE(&c->operations, op + 1);
    }
    HA_ATOMIC_STORE(&c->operations, op);
    return rc;
}

void *ha_mutator_main(void *conc)
{
    struct ha_conc *c = conc;
    const ha_mutator_mix *mix = c->mix;
    struct mutator m = {.c = c, .h = c->gc->heap, .top = c->gc->spaces[0].top,
                        .end = c->gc->spaces[0].end, .rng = mix->seed | 1,
                        .identity = mix->first_identity};
    m.counts.started_ns = ha_now_ns();
    uint64_t cpu_started = ha_thread_cpu_ns();
    int rc = c->design == &ha_design_colored ? program(&m, 1) : program(&m, 0);
    ha_conc_fail(c, rc);
    ha_lab_retire(&m.h, &m.lab); /* a scan may be waiting at it */
    m.counts.mutator_ns = ha_now_ns() - m.counts.started_ns;
    uint64_t cpu_ns = ha_thread_cpu_ns() - cpu_started;
    m.counts.operations = HA_ATOMIC_LOAD(&c->operations);
    if (!m.relocating)
        c->gc->spaces[0].top = m.top;
    c->mutator_bytes_relocated = m.relocated_bytes;
    c->mutator_objects_relocated = m.relocated_objects;
    ha_concurrent_run *run = c->run;
    run->checksum = m.counts.checksum;
    run->operations = m.counts.operations;
    run->loads = m.counts.loads;
    run->stores = m.counts.stores;
    run->allocations = m.counts.allocations;
    run->started_ns = m.counts.started_ns;
    run->mutator_ns = m.counts.mutator_ns;
    run->mutator_cpu_ns = cpu_ns;
    run->slow_paths = m.counts.slow_paths;
    HA_ATOMIC_STORE(&c->done, 1);
    return NULL;
}
