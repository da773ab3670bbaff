/* The marking visitors, shared by the single-thread mark (scan.c) and the
 * parallel one (mark_parallel.c): each function takes `parallel`, a constant
 * where it is inlined, so each loop compiles to its own code.
 *
 * A reference is followed only to a valid header whose object fits its space,
 * and a mark bit is set only in a header just checked. Whether that header is
 * an object start, and not a payload word that looks like one, takes a walk of
 * the heap to know; verify does that walk, mark does not. */
#ifndef HEAPALIAS_MARKING_H
#define HEAPALIAS_MARKING_H

#include "liveness.h"
#include "workers.h"

static inline int ha_spaces_ok(const ha_heap *h, const ha_space *spaces, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!ha_space_ok(h, &spaces[i]))
            return 0;
    return 1;
}

/* Two queues keep misses overlapping instead of each one stalling the loop.
 * Edges are enqueued, not followed at once: each target's header is
 * prefetched when its edge enters a FIFO and marked only when the edge leaves
 * it. A marked object then waits in a second, shorter queue, its reference
 * slots prefetched, before it is scanned:
 * a third of the objects' slots lie on another line than the header. On a
 * 1 GiB random graph (4 KiB pages, 2 vCPUs with other work on the other) the
 * scan queue took marking from 94 to 71-75 ns per object; the edge FIFO's
 * length (16, 32, 64) made no difference then. */
enum { PREFETCH_EDGES = 32, SCAN_AHEAD = 8 };

struct edge {
    ha_ref ref;
    ha_off where; /* the slot's heap offset, for errors */
};

/* One marking thread's state: its grey objects on `stack`. A parallel one
 * also has a work-stealing `deque`, to which it hands grey objects while
 * another thread is idle. */
struct marker {
    ha_heap h;
    const ha_space *spaces;
    size_t nspaces;
    ha_ref *stack; /* references still to scan */
    size_t capacity, depth;
    ha_deque *deque;
    int overflowed;
    uint64_t objects, bytes, refs;
    uint64_t budget; /* objects the spaces can hold: marking more means the heap changed */
    uint64_t *live;  /* ha_mark_live's table, or NULL */
    struct edge fifo[PREFETCH_EDGES];
    unsigned head, queued;
    ha_ref ahead[SCAN_AHEAD]; /* marked objects waiting for their slots (scan.c) */
    unsigned ahead_head, ahead_count;
    ha_stats *st;
};

static inline const ha_space *space_of(const struct marker *m, ha_off off)
{
    for (size_t i = 0; i < m->nspaces; i++)
        if (off >= m->spaces[i].start && off < m->spaces[i].top)
            return &m->spaces[i];
    return NULL;
}

/* Set the mark bit of the object at `obj`, whose checked header is `header`:
 * 1 if this call set it, 0 if it was set already. In parallel, with a
 * compare-and-swap, so that exactly one thread marks (and scans) an object; a
 * header that changed otherwise meanwhile is -1: a writer races the mark. */
static inline __attribute__((always_inline)) int
set_mark(uint64_t *obj, uint64_t header, int parallel)
{
    if (!parallel) {
        obj[0] = header | HA_MARKED;
        return 1;
    }
    uint64_t seen = header;
    if (__atomic_compare_exchange_n(obj, &seen, header | HA_MARKED, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
        return 1;
    return seen == (header | HA_MARKED) ? 0 : -1;
}

/* Mark the object `ref` names and queue it for scanning. A full stack drops
 * the push and sets `overflowed`: the object is marked, and a heap
 * walk later scans it, so no recursion and no lost objects. */
static inline __attribute__((always_inline)) int
grey(struct marker *m, ha_ref ref, ha_off where, int64_t root, int parallel)
{
    ha_off off;
    const ha_space *s;
    m->refs++;
    if (!ha_decode(&m->h, ref, &off) || !(s = space_of(m, off)))
        return ha_fail(m->st, HA_ERR_REF, where, root);
    uint64_t *obj = ha_deref(&m->h, ref, off);
    uint64_t header = ha_load(obj);
    if (!ha_header_ok(header, off, s->top))
        return ha_fail(m->st, HA_ERR_HEADER, off, root);
    if (header & HA_MARKED)
        return HA_OK;
    /* Another writer clearing mark bits could otherwise keep the loop going forever. */
    if (m->objects >= m->budget)
        return ha_fail(m->st, HA_ERR_HEADER, off, root);
    int marked = set_mark(obj, header, parallel);
    if (marked <= 0)
        return marked ? ha_fail(m->st, HA_ERR_HEADER, off, root) : HA_OK;
    m->objects++;
    m->bytes += ha_words(header) * 8;
    if (!parallel && m->live)
        ha_set_live(m->live, off, ha_words(header) * 8);
    if (m->depth == m->capacity)
        m->overflowed = 1;
    else
        m->stack[m->depth++] = ref;
    return HA_OK;
}

/* Enqueue the edge in the slot at `where`; once the FIFO is full, the oldest
 * edge, whose target has had time to arrive, leaves it and is followed. */
static inline __attribute__((always_inline)) int
follow(struct marker *m, ha_ref ref, ha_off where, int parallel)
{
    if (ref == 0)
        return HA_OK;
    __builtin_prefetch(ha_prefetch_address(&m->h, ref), 1);
    if (m->queued < PREFETCH_EDGES) {
        m->fifo[(m->head + m->queued++) % PREFETCH_EDGES] = (struct edge){ref, where};
        return HA_OK;
    }
    struct edge oldest = m->fifo[m->head];
    m->fifo[m->head] = (struct edge){ref, where};
    m->head = (m->head + 1) % PREFETCH_EDGES;
    return grey(m, oldest.ref, oldest.where, -1, parallel);
}

/* Follow the oldest edge of the FIFO, which must hold one. */
static inline __attribute__((always_inline)) int follow_oldest(struct marker *m, int parallel)
{
    struct edge oldest = m->fifo[m->head];
    m->head = (m->head + 1) % PREFETCH_EDGES;
    m->queued--;
    return grey(m, oldest.ref, oldest.where, -1, parallel);
}

static inline __attribute__((always_inline)) int
follow_slot(void *m, uint64_t *slot, ha_off where)
{
    return follow(m, ha_load(slot), where, 0);
}

static inline __attribute__((always_inline)) int
follow_slot_parallel(void *m, uint64_t *slot, ha_off where)
{
    return follow(m, ha_load(slot), where, 1);
}

/* Follow the slots of the object at `off`, whose checked header is `header`. */
static inline __attribute__((always_inline)) int
scan_refs(struct marker *m, uint64_t *obj, ha_off off, uint64_t header, int parallel)
{
    return ha_visit_slots(obj, off, header, parallel ? follow_slot_parallel : follow_slot, m);
}

/* The object a grey reference names (its push checked the reference), and its
 * header as read now. */
static inline __attribute__((always_inline)) uint64_t *
grey_object(const struct marker *m, ha_ref ref, ha_off *off, uint64_t *header)
{
    ha_decode(&m->h, ref, off);
    uint64_t *obj = ha_deref(&m->h, ref, *off);
    *header = ha_load(obj);
    return obj;
}

/* Scan the grey object `ref` names (its push checked the reference). The
 * header may have changed since grey() checked it: it is checked again. */
static inline __attribute__((always_inline)) int
scan_grey(struct marker *m, ha_ref ref, int parallel)
{
    ha_off off = 0;
    uint64_t header, *obj = grey_object(m, ref, &off, &header);
    if (ha_header_ok(header, off, m->h.size) && (header & HA_MARKED))
        return scan_refs(m, obj, off, header, parallel);
    return ha_fail(m->st, HA_ERR_HEADER, off, -1);
}

/* Move the top of the stack into the scan queue, prefetching its slots: its
 * header is in cache (grey() just read it), its slots may not be. */
static inline __attribute__((always_inline)) void queue_for_scan(struct marker *m)
{
    ha_ref ref = m->stack[--m->depth];
    ha_off off = 0;
    uint64_t header, *obj = grey_object(m, ref, &off, &header);
    uint64_t last = ha_nrefs(header) < ha_words(header) ? ha_nrefs(header) : 0;
    __builtin_prefetch(obj + (last < 8 ? last : 8));
    m->ahead[(m->ahead_head + m->ahead_count++) % SCAN_AHEAD] = ref;
}

/* Scan the oldest object of the scan queue, which must hold one. */
static inline __attribute__((always_inline)) int scan_oldest(struct marker *m, int parallel)
{
    ha_ref ref = m->ahead[m->ahead_head];
    m->ahead_head = (m->ahead_head + 1) % SCAN_AHEAD;
    m->ahead_count--;
    return scan_grey(m, ref, parallel);
}

/* After an overflow, single-threaded: scan every marked object again, by
 * walking the spaces, until no push overflows (scan.c). */
int ha_mark_rescans(struct marker *m);

#endif
