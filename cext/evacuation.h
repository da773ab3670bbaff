/* The Cheney visitors, shared by the single-thread evacuation (copy.c) and
 * the parallel one (cheney_parallel.c): each function takes `parallel`, a
 * constant where it is inlined, so each loop compiles to its own code.
 *
 * Single-threaded, a forwarded object keeps its header with the forwarded bit
 * set, and slot 1 names the copy, so from-space still parses. In parallel two
 * threads may copy one object at once: each copies it into its own allocation
 * buffer, then installs the moved header (object_model.h) with one
 * compare-and-swap; the loser takes the winner's copy and gives its buffer the
 * room back. */
#ifndef HEAPALIAS_EVACUATION_H
#define HEAPALIAS_EVACUATION_H

#include "workers.h"

/* Everything the loop touches, by value, so the compiler can keep it in
 * registers instead of reloading it after every store into the heap. */
struct cheney {
    ha_heap h;
    ha_off from_start, from_top;
    /* Single-threaded: this collection's copies lie in [begin, top), with room
     * up to end. In parallel: begin is the to-space's, and [top, end) the room
     * left in this thread's allocation buffer. */
    ha_off begin, top, end;
    uint64_t objects, refs;
    ha_off from_next; /* where in from-space the last copied object ended */
    uint64_t seen;    /* edges to objects copied already */
    /* How the last sample of the scan went (scan_sample): */
    int in_order;     /* its copies read one run of from-space, few edges were to objects
                         copied already: no prefetching */
    int split;        /* many of its edges were: classify them (the ring) */
    ha_stats *st;
    /* Parallel only. */
    struct cheney_team *team;
    ha_deque *deque;
    ha_off lab_scan;  /* the first copy in the allocation buffer not yet scanned */
    uint64_t copied;  /* bytes copied */
};

/* Parallel, out of line (cheney_parallel.c), and given values, never the
 * loop's struct cheney, whose address would otherwise escape and keep it out
 * of registers: room for `bytes` once this thread's allocation buffer
 * [top, end) is short of it, in a new buffer or, for a large object, a place
 * of its own (`scan` is where the buffer's unscanned copies start, handed on
 * when it is left); hand the copies in [start, end) on to a deque (end ==
 * start: the one object there); fill a gap; and whether `to` can be a copy
 * this collection made (the to-space claimed). */
typedef struct ha_refill {
    int rc;
    ha_off copy, scan, top, end;
} ha_refill;
ha_refill ha_cheney_refill(struct cheney_team *team, ha_deque *q, uint64_t base, ha_off scan,
                           ha_off top, ha_off end, uint64_t bytes);
int ha_cheney_push_range(ha_deque *q, ha_off start, ha_off end);
void ha_cheney_fill(uint64_t base, ha_off at, uint64_t bytes);
int ha_cheney_copy_ok(struct cheney_team *team, ha_off begin, ha_off to);

/* Whether `to`, the forwarding reference of the from-space object whose header
 * is `header`, can name the copy this collection made of it: a reference as
 * ha_encode writes it (every encoding adds a constant to the offset) to a word
 * of [begin, top), the copies made so far, with room for the object there. A
 * stale FORWARDED bit, whose word names anything older, fails this. (Reading
 * the copy's header to match it would cost a cache miss per shared object.) */
static inline __attribute__((always_inline)) int
forwarded_ok(const struct cheney *c, ha_ref to, uint64_t header)
{
    uint64_t rel = to - ha_encode(&c->h, c->begin), span = c->top - c->begin;
    return rel < span && !(rel & 7) && ha_words(header) * 8 <= span - rel;
}

/* How far ahead of a parallel copy its buffer is prefetched for writing. */
enum { TO_SPACE_LEAD = 512 };

/* Copy the object `*slot` names out of from-space once, and point the slot at
 * the copy. `where` is the slot's heap offset (for errors), `root` its root index. */
static inline __attribute__((always_inline)) int
forward(struct cheney *c, ha_ref *slot, ha_off where, int64_t root, int parallel)
{
    ha_ref ref = ha_load(slot);
    ha_off off;
    if (ref == 0)
        return HA_OK;
    c->refs++;
    if (!ha_decode(&c->h, ref, &off))
        return ha_fail(c->st, HA_ERR_REF, where, root);
    if (off < c->from_start || off >= c->from_top)
        return HA_OK; /* not being evacuated */
    uint64_t *obj = ha_deref(&c->h, ref, off);
    /* In parallel, acquire: a moved header's copy was claimed before it was published. */
    uint64_t header = parallel ? __atomic_load_n(obj, __ATOMIC_ACQUIRE) : ha_load(obj);
    if (parallel && ha_is_moved(header)) {
        if (!ha_cheney_copy_ok(c->team, c->begin, header & HA_MOVED_MASK))
            return ha_fail(c->st, HA_ERR_HEADER, off, root);
        c->seen++;
        *slot = ha_encode(&c->h, header & HA_MOVED_MASK);
        return HA_OK;
    }
    if (!ha_header_ok(header, off, c->from_top))
        return ha_fail(c->st, HA_ERR_HEADER, off, root);
    if (header & HA_FORWARDED) { /* in parallel, never this collection's: stale */
        ha_ref to = ha_load(&obj[1]);
        if (parallel || !forwarded_ok(c, to, header))
            return ha_fail(c->st, HA_ERR_HEADER, off, root);
        c->seen++;
        *slot = to;
        return HA_OK;
    }
    uint64_t bytes = ha_words(header) * 8;
    ha_off copy = c->top;
    if (c->end - c->top >= bytes) {
        c->top += bytes;
    } else if (!parallel) {
        return ha_fail(c->st, HA_ERR_FULL, off, root);
    } else {
        ha_refill r = ha_cheney_refill(c->team, c->deque, c->h.base, c->lab_scan, c->top,
                                       c->end, bytes);
        c->lab_scan = r.scan;
        c->top = r.top;
        c->end = r.end;
        if (r.rc)
            return ha_fail(c->st, r.rc, off, root);
        copy = r.copy;
    }
    uint64_t *dst = ha_at(&c->h, copy);
    /* The compare-and-swap below drains the store buffer: without the line
     * already owned, each copy would wait for its own store miss. */
    if (parallel)
        __builtin_prefetch((const char *)dst + TO_SPACE_LEAD, 1);
    const uint64_t *src = (const uint64_t *)(uintptr_t)(c->h.load_base + off);
    /* In parallel the header word is another thread's to swap: copy the rest. */
    ha_copy_words(dst + parallel, src + parallel, bytes - 8 * parallel);
    dst[0] = header; /* the header checked, whatever the load view held */
    if (parallel) {
        uint64_t seen = header;
        /* The room a copy took: the end of the buffer's, or a place of its own. */
        int own_place = copy + bytes != c->top;
        if (!__atomic_compare_exchange_n(obj, &seen, ha_moved_header(copy), 0, __ATOMIC_RELEASE,
                                         __ATOMIC_ACQUIRE)) {
            if (own_place)
                ha_cheney_fill(c->h.base, copy, bytes); /* to-space must still parse */
            else
                c->top = copy;
            if (!ha_is_moved(seen) || !ha_cheney_copy_ok(c->team, c->begin, seen & HA_MOVED_MASK))
                return ha_fail(c->st, HA_ERR_HEADER, off, root); /* a writer races us */
            *slot = ha_encode(&c->h, seen & HA_MOVED_MASK);
            return HA_OK;
        }
        c->copied += bytes;
        int rc = own_place ? ha_cheney_push_range(c->deque, copy, copy) : HA_OK;
        if (rc)
            return ha_fail(c->st, rc, off, root);
    } else {
        obj[0] = header | HA_FORWARDED;
        obj[1] = ha_encode(&c->h, copy);
    }
    c->from_next = off + bytes;
    *slot = ha_encode(&c->h, copy);
    c->objects++;
    return HA_OK;
}

static inline __attribute__((always_inline)) int
forward_slot(void *c, uint64_t *slot, ha_off where)
{
    return forward(c, slot, where, -1, 0);
}

static inline __attribute__((always_inline)) int
forward_slot_parallel(void *c, uint64_t *slot, ha_off where)
{
    return forward(c, slot, where, -1, 1);
}

/* Forward every reference of the grey object at `*grey`, which must end by
 * `limit`, then step past it. In parallel the step comes first: an allocation
 * buffer that fills while the object is scanned hands on what lies after it. */
static inline __attribute__((always_inline)) int
scan(struct cheney *c, ha_off *grey, ha_off limit, int parallel)
{
    ha_off at = *grey;
    uint64_t *obj = ha_at(&c->h, at);
    uint64_t header = ha_load(obj);
    if (!ha_header_ok(header, at, limit))
        return ha_fail(c->st, HA_ERR_HEADER, at, -1);
    if (parallel)
        *grey = at + ha_words(header) * 8;
    int rc = ha_visit_slots(obj, at, header, parallel ? forward_slot_parallel : forward_slot, c);
    if (!rc && !parallel)
        *grey += ha_words(header) * 8;
    return rc;
}

/* A freshly allocated graph is scattered in breadth-first order, and the
 * loop would wait on one from-space miss after another; so the referents of
 * grey objects ahead of the scan are prefetched. Once a tree has been
 * copied, from-space reads run in order, the hardware prefetcher covers
 * them, and parsing ahead would only cost time. A graph with shared objects
 * is another matter: an edge to an object copied already reads its
 * forwarding word, scattered whatever the order, and whether a target was
 * copied already is a branch on random data. So the scan goes by samples of
 * SAMPLE grey objects, each judged (scan_sample) to choose the next one's
 * way:
 *   - copies in one run of from-space, under one edge in SEEN_SCATTERED to an
 *     object copied already: no prefetching (scan_ahead);
 *   - copies scattered but few such edges, or copies in order but many: the
 *     referents of the grey objects PREFETCH_OBJECTS ahead prefetched
 *     (scan_ahead);
 *   - copies scattered and more such edges: the ring (scan_ring), whose
 *     edges are classified before they are forwarded.
 * Judged by the copies alone, a random graph copied a second time ran 1.7x
 * slower than with the lookahead (1 GiB, one thread: 109-115 against 48-51
 * ns/object); the ring's classifying made a fresh binary tree (no object
 * shared) 1.25x slower, and javac's heap copied a second time (its shared
 * objects mostly in cache) about 1.1x in noisy pairs. */
enum { PREFETCH_OBJECTS = 12, PREFETCH_REFS = 4, SAMPLE = 256, SEEN_SCATTERED = 8 };

/* Prefetch what the grey object at `*ahead` references, and step past it
 * (object_model.h); a bad header, or one past `limit`, ends the prefetching,
 * and scan() reports it. */
static inline __attribute__((always_inline)) void
prefetch(struct cheney *c, ha_off *ahead, ha_off limit)
{
    ha_prefetch_referents(&c->h, ahead, limit, PREFETCH_REFS);
}

/* Scan up to SAMPLE grey objects from `*grey` while they lie below `*limit`,
 * prefetching (if `prefetching`) the referents of those PREFETCH_OBJECTS
 * ahead. In parallel a full buffer moves the scan to the next one, and the
 * prefetching starts again there. */
static inline __attribute__((always_inline)) int
scan_ahead(struct cheney *c, ha_off *grey, const ha_off *limit, int prefetching, int parallel)
{
    ha_off ahead = *grey;
    unsigned lead = 0; /* grey objects from *grey to ahead */
    int rc = HA_OK;
    for (unsigned n = 0; n < SAMPLE && !rc && *grey < *limit; n++, lead -= lead > 0) {
        if (ahead < *grey || ahead > *limit) {
            ahead = *grey;
            lead = 0;
        }
        for (; prefetching && lead < PREFETCH_OBJECTS && ahead < *limit; lead++)
            prefetch(c, &ahead, *limit);
        rc = scan(c, grey, *limit, parallel);
    }
    return rc;
}

/* The scattered scan keeps the slots of the grey objects ahead of it in a
 * ring and forwards them a batch at a time, while the misses of the batches
 * behind are in flight. Each grey object is parsed once, and the copies come
 * in the plain scan's order. An object with more slots than GATHER_REFS, or
 * a bad header, stops the gathering; once every edge before it is forwarded,
 * scan() takes it (and reports a bad header). */
enum { EDGE_BATCH = 32, GATHER_REFS = 64, EDGE_RING = 128 };
_Static_assert(2 * EDGE_BATCH - 1 + GATHER_REFS <= EDGE_RING, "the ring holds what is gathered");

/* A batch's edges split by what their targets held when it was classified:
 * not forwarded yet, and forwarded already, each list in ring order. */
struct edge_lists {
    uint64_t *fresh[EDGE_RING], *seen[EDGE_RING];
    unsigned nfresh, nseen;
};

/* Split the `n` edges of the ring from `head` into `l`, and prefetch what
 * forwarding each will read beyond its header: a fresh target's last word
 * (on another line than the header for an object that straddles two), a
 * forwarded one's forwarding reference. No branch follows what the targets
 * hold. The split only guesses: forward() checks everything again. */
static inline __attribute__((always_inline)) void
classify(const struct cheney *c, uint64_t *const *ring, unsigned head, unsigned n,
         struct edge_lists *l, int parallel, uint32_t enc)
{
    static const uint64_t none = 0;
    unsigned nfresh = 0, nseen = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t *slot = ring[(head + i) % EDGE_RING];
        ha_ref ref = ha_load(slot);
        ha_off off = 0;
        const uint64_t *obj = &none;
        if (ha_decode_as(&c->h, ref, &off, enc) && off >= c->from_start && off < c->from_top)
            obj = ha_deref_as(&c->h, ref, off, enc);
        uint64_t header = ha_load(obj);
        uint64_t forwarded = parallel ? ha_is_moved(header) : (header & HA_FORWARDED) != 0;
        /* An integer, not a pointer: a bad header may give any size. */
        uint64_t last = ha_words(header) * 8 - 8, ahead = 8 + ((last - 8) & (forwarded - 1));
        __builtin_prefetch((const void *)((uintptr_t)obj + ahead), 1);
        l->fresh[nfresh] = slot;
        l->seen[nseen] = slot;
        nfresh += !forwarded;
        nseen += forwarded;
    }
    l->nfresh = nfresh;
    l->nseen = nseen;
}

/* Forward the edges of `l`, the fresh ones first. The copies come in the
 * plain scan's order, since only those copy, and forward() takes one
 * predictable way through each list, where one pass in ring order would
 * branch on random data at every edge. */
static inline __attribute__((always_inline)) int
forward_lists(struct cheney *c, struct edge_lists *l, int parallel)
{
    int rc = HA_OK;
    for (unsigned i = 0; i < l->nfresh && !rc; i++)
        rc = forward(c, l->fresh[i], (ha_off)((uintptr_t)l->fresh[i] - c->h.base), -1, parallel);
    for (unsigned i = 0; i < l->nseen && !rc; i++)
        rc = forward(c, l->seen[i], (ha_off)((uintptr_t)l->seen[i] - c->h.base), -1, parallel);
    l->nfresh = l->nseen = 0;
    return rc;
}

/* Scan up to SAMPLE grey objects from `*grey` while they lie below `*limit`
 * (both may move while edges are forwarded: to-space grows, and in parallel
 * a full buffer moves the scan to the next one) through the ring. A batch is
 * gathered (its targets' headers prefetched), classified a batch later
 * (their other lines prefetched), and forwarded a batch after that. A batch
 * is classified before the one ahead of it is forwarded, so some of its
 * fresh targets may be copied by then: forward() sees that. */
static inline __attribute__((always_inline)) int
scan_ring(struct cheney *c, ha_off *grey, const ha_off *limit, int parallel, uint32_t enc)
{
    uint64_t *ring[EDGE_RING];
    struct edge_lists lists[2];
    unsigned head = 0, tail = 0, gathered = 0, next = 0;
    int rc = HA_OK;
    lists[0].nfresh = lists[0].nseen = lists[1].nfresh = lists[1].nseen = 0;
    while (!rc) {
        int stuck = 0;
        while (tail - head < 2 * EDGE_BATCH && gathered < SAMPLE && *grey < *limit) {
            ha_off at = *grey;
            uint64_t *obj = ha_at(&c->h, at);
            uint64_t header = ha_load(obj), nrefs = ha_nrefs(header);
            if (!ha_header_ok(header, at, *limit) || nrefs > GATHER_REFS) {
                stuck = 1;
                break;
            }
            for (uint64_t i = 1; i <= nrefs; i++) {
                __builtin_prefetch(ha_prefetch_address_as(&c->h, ha_load(&obj[i]), enc), 1);
                ring[tail++ % EDGE_RING] = &obj[i];
            }
            *grey = at + ha_words(header) * 8;
            gathered++;
        }
        struct edge_lists *ready = &lists[next], *later = &lists[!next];
        unsigned batch = tail - head;
        if (batch == 0 && ready->nfresh + ready->nseen == 0) {
            if (!stuck)
                break;
            rc = scan(c, grey, *limit, parallel); /* the large object, or the bad header */
            gathered++;
            continue;
        }
        if (batch > EDGE_BATCH && *grey < *limit && gathered < SAMPLE)
            batch = EDGE_BATCH;
        classify(c, ring, head, batch, later, parallel, enc);
        head += batch;
        rc = forward_lists(c, ready, parallel);
        next = !next;
    }
    return rc;
}

/* One sample of the scan from `*grey` (to-space's top is its limit), the way
 * the last one's judgement chose; then judge it for the next (see SAMPLE).
 * A sample that moves to a new buffer in parallel counts as out of order. */
static inline __attribute__((always_inline)) int
scan_sample(struct cheney *c, ha_off *grey, int parallel, uint32_t enc)
{
    ha_off from_next = c->from_next, top = c->top;
    uint64_t refs = c->refs, seen = c->seen;
    int rc = c->split ? scan_ring(c, grey, &c->top, parallel, enc)
                      : scan_ahead(c, grey, &c->top, !c->in_order, parallel);
    int many_seen = (c->seen - seen) * SEEN_SCATTERED > c->refs - refs;
    int copies_in_order = c->from_next - from_next == c->top - top;
    c->split = many_seen && !copies_in_order;
    c->in_order = copies_in_order && !many_seen;
    return rc;
}

#endif
