/* The marking steps, shared by the single-thread mark (scan.c) and the
 * parallel one (mark_parallel.c): each function takes `parallel` and the
 * reference encoding `enc`, constants where it is inlined, so each loop
 * compiles to its own code with no switch left in it.
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

/* Marking goes in batches, two steps each, so that misses overlap and the
 * hot loops have no branch that depends on the graph:
 *   gather: take up to MARK_BATCH grey objects off the stack, note where
 *     their reference slots are in `edges` and prefetch each target's header;
 *   mark:   for each edge, check the target and set its mark bit. On one
 *     thread the bit is stored and the target pushed whether or not it was
 *     marked already; the push counts only if it was not.
 * By the time an edge is marked, the rest of its batch's prefetches have
 * covered its miss. The mark step also prefetches a target's last slot,
 * which lies on the next line for a third of the objects.
 *
 * The earlier design (an edge FIFO whose oldest edge was marked as each new
 * one came in, then a scan queue) was bound by its own instructions more than
 * by memory: over a graph that fits in L2 it took 36-48 ns per object, two
 * thirds of its time on a 1 GiB one, and its branches on whether a target
 * was marked, and on how many slots an object has, followed random data. Batches took
 * a 1 GiB random graph (mean degree 2) from 78 to 59 ns per object on 2 MiB
 * pages and from 83 to 68 on 4 KiB ones, and the L2-sized one from 48 to 35
 * (medians of 11 interleaved rounds, one pinned CPU). A side mark bitmap (a
 * bit per 16 bytes, 8 MiB for 1 GiB), batched or not, was no faster: it
 * saves the miss on an already-marked target's header, but the bitmap's own
 * misses in the last-level cache cost as much here. */
enum { MARK_BATCH = 64, EDGE_ROOM = 4 * MARK_BATCH + 4 };

/* Objects of up to SMALL_REFS slots have them copied four words at a time,
 * without a loop whose trip count the branch predictor cannot guess. */
enum { SMALL_REFS = 4 };

/* One marking thread's state: its grey objects on `stack`, and the edges a
 * gather took from them. A parallel one also has a work-stealing `deque`, to
 * which it hands grey objects while another thread is idle. */
struct marker {
    ha_heap h;
    const ha_space *spaces;
    size_t nspaces;
    ha_space first; /* spaces[0] */
    ha_ref *stack;  /* references still to scan */
    size_t capacity, depth;
    ha_deque *deque;
    int overflowed;
    uint64_t objects, bytes, refs;
    uint64_t budget; /* objects the spaces can hold: marking more means the heap changed */
    uint64_t *live;  /* ha_mark_live's table, or NULL */
    ha_ref partial;  /* an object with more slots than a gather had room for */
    uint64_t partial_next; /* and the first of its slots still to take */
    uint64_t **edges; /* EDGE_ROOM slots, each read again when its edge is marked */
    size_t nedges;
    ha_stats *st;
};

/* A marker over `spaces` (checked by the caller), its budget counted; its
 * edges are the caller's. */
static inline void marker_init(struct marker *m, const ha_heap *h, const ha_space *spaces,
                               size_t nspaces, ha_ref *stack, size_t capacity,
                               uint64_t **edges, ha_stats *st)
{
    *m = (struct marker){.h = *h, .spaces = spaces, .nspaces = nspaces, .stack = stack,
                         .capacity = capacity, .edges = edges, .st = st};
    if (nspaces)
        m->first = spaces[0];
    for (size_t i = 0; i < nspaces; i++) /* objects are at least 16 bytes */
        m->budget += (spaces[i].top - spaces[i].start) / (8 * HA_MIN_WORDS);
}

/* The top of the space holding `off`, or 0 if none does. The first space's
 * bounds are kept in the marker: spaces[] may alias the heap, so the compiler
 * would reload it after every mark. */
static inline __attribute__((always_inline)) ha_off space_top(const struct marker *m, ha_off off)
{
    if (off >= m->first.start && off < m->first.top)
        return m->first.top;
    for (size_t i = 1; i < m->nspaces; i++)
        if (off >= m->spaces[i].start && off < m->spaces[i].top)
            return m->spaces[i].top;
    return 0;
}

/* Check the non-null reference `ref`, read from the slot at `where` (root
 * `root`, or -1): 0 with its object, heap offset and header, or the error. */
static inline __attribute__((always_inline)) int
check_target(struct marker *m, ha_ref ref, ha_off where, int64_t root, uint32_t enc,
             uint64_t **obj, ha_off *off, uint64_t *header)
{
    ha_off top;
    if (!ha_decode_as(&m->h, ref, off, enc) || !(top = space_top(m, *off)))
        return ha_fail(m->st, HA_ERR_REF, where, root);
    *obj = ha_deref_as(&m->h, ref, *off, enc);
    *header = ha_load(*obj);
    if (!ha_header_ok(*header, *off, top))
        return ha_fail(m->st, HA_ERR_HEADER, *off, root);
    return HA_OK;
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

/* Mark the object `ref` names and push it. A full stack drops the push and
 * sets `overflowed`: the object is marked, and a heap walk later scans it, so
 * no recursion and no lost objects. The one-edge form of the mark step: for
 * roots, the parallel mark, and a batch the stack has no room for. */
static inline __attribute__((always_inline)) int
grey(struct marker *m, ha_ref ref, ha_off where, int64_t root, int parallel, uint32_t enc)
{
    ha_off off = 0;
    uint64_t *obj = NULL, header = 0;
    m->refs++;
    int rc = check_target(m, ref, where, root, enc, &obj, &off, &header);
    if (rc || (header & HA_MARKED))
        return rc;
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

/* The mark step over the gathered edges. */
static inline __attribute__((always_inline)) int
mark_edges(struct marker *m, int parallel, uint32_t enc)
{
    size_t n = m->nedges;
    m->nedges = 0;
    if (m->live || m->capacity - m->depth < n) {
        for (size_t i = 0; i < n; i++) {
            ha_ref ref = ha_load(m->edges[i]);
            int rc = ref ? grey(m, ref, ha_offset_in_view(&m->h, m->edges[i], enc), -1,
                                parallel, enc)
                         : HA_OK;
            if (rc)
                return rc;
        }
        return HA_OK;
    }
    /* Room for every push. On one thread, no branch on what the graph holds.
     * In parallel, the targets seen unmarked are listed first, then each is
     * marked by a compare-and-swap: a branch on whether to swap would follow
     * random data. The state is in locals: a store into the heap could alias *m. */
    const ha_heap h = m->h;
    const ha_off first_start = m->first.start, first_top = m->first.top;
    uint64_t *const *edges = m->edges;
    ha_ref *stack = m->stack;
    size_t depth = m->depth;
    uint64_t objects = m->objects, bytes = m->bytes, refs = m->refs;
    int rc = HA_OK;
    struct { uint64_t *obj, header; ha_ref ref; } unmarked[parallel ? EDGE_ROOM : 1];
    size_t nunmarked = 0;
    for (size_t i = 0; i < n; i++) {
        ha_ref ref = ha_load(edges[i]);
        ha_off off = 0, top = 0;
        if (!ref)
            continue;
        if (ha_decode_as(&h, ref, &off, enc))
            top = off >= first_start && off < first_top ? first_top : space_top(m, off);
        uint64_t *obj = ha_deref_as(&h, ref, off, enc), header = 0;
        if (!top || !ha_header_ok(header = ha_load(obj), off, top)) {
            /* The one-edge path says what is wrong (or marks it, if a writer
             * mended it meanwhile), on the marker's own counters. */
            m->depth = depth, m->objects = objects, m->bytes = bytes, m->refs = refs;
            if ((rc = grey(m, ref, ha_offset_in_view(&h, edges[i], enc), -1, parallel, enc)))
                return rc;
            depth = m->depth, objects = m->objects, bytes = m->bytes, refs = m->refs;
            continue;
        }
        refs++;
        uint64_t fresh = !(header & HA_MARKED), nrefs = ha_nrefs(header);
        __builtin_prefetch(obj + (nrefs < 8 ? nrefs : 8));
        if (parallel) {
            unmarked[nunmarked].obj = obj;
            unmarked[nunmarked].header = header;
            unmarked[nunmarked].ref = ref;
            nunmarked += fresh;
            continue;
        }
        obj[0] = header | HA_MARKED;
        stack[depth] = ref;
        depth += fresh;
        objects += fresh;
        bytes += ha_words(header) * 8 & -fresh;
    }
    for (size_t i = 0; i < nunmarked; i++) {
        int marked = set_mark(unmarked[i].obj, unmarked[i].header, 1);
        if (marked < 0) {
            rc = ha_fail(m->st, HA_ERR_HEADER, ha_offset_in_view(&h, unmarked[i].obj, enc), -1);
            break;
        }
        stack[depth] = unmarked[i].ref;
        depth += (size_t)marked;
        objects += (uint64_t)marked;
        bytes += ha_words(unmarked[i].header) * 8 & -(uint64_t)marked;
    }
    m->depth = depth;
    m->objects = objects;
    m->bytes = bytes;
    m->refs = refs;
    /* Checked once a batch: a batch marks at most EDGE_ROOM objects more. */
    if (!rc && objects > m->budget)
        rc = ha_fail(m->st, HA_ERR_HEADER, 0, -1);
    return rc;
}

/* Add the edge in `slot`, prefetching its target; with no room left, mark
 * the edges first. */
static inline __attribute__((always_inline)) int
add_edge(struct marker *m, uint64_t *slot, int parallel, uint32_t enc)
{
    int rc = m->nedges == EDGE_ROOM ? mark_edges(m, parallel, enc) : HA_OK;
    __builtin_prefetch(ha_prefetch_address_as(&m->h, ha_load(slot), enc), 1);
    m->edges[m->nedges++] = slot;
    return rc;
}

/* The slot visitors, for the paths where slots are few or cold (large
 * objects, the rescan): the encoding is read from the heap, not a constant. */
static inline __attribute__((always_inline)) int add_slot(void *m, uint64_t *slot, ha_off where)
{
    (void)where; /* worked out again if the edge is bad */
    return add_edge(m, slot, 0, ((struct marker *)m)->h.encoding);
}

static inline __attribute__((always_inline)) int
add_slot_parallel(void *m, uint64_t *slot, ha_off where)
{
    (void)where;
    return add_edge(m, slot, 1, ((struct marker *)m)->h.encoding);
}

/* Add the edges of slots [first, end) of the object at `off`, whose checked
 * header is `header` (the rescan after an overflow, and large objects). */
static inline __attribute__((always_inline)) int
add_slots(struct marker *m, uint64_t *obj, ha_off off, uint64_t header, uint64_t first,
          uint64_t end, int parallel)
{
    return ha_visit_slot_range(obj, off, header, first, end,
                               parallel ? add_slot_parallel : add_slot, m);
}

/* Take slots [first, ...) of the grey object `ref` names (its push checked
 * the reference) into the edges: 1 if they all fit, 0 if the edges filled
 * (the rest is left in `partial`), or minus an error. Its header may have
 * changed since it was marked: it is checked again. */
static inline __attribute__((always_inline)) int
take_object(struct marker *m, ha_ref ref, uint64_t first, int parallel, uint32_t enc)
{
    ha_off off = 0;
    ha_decode_as(&m->h, ref, &off, enc);
    uint64_t *obj = ha_deref_as(&m->h, ref, off, enc), header = ha_load(obj);
    if (!ha_header_ok(header, off, m->h.size) || !(header & HA_MARKED))
        return -ha_fail(m->st, HA_ERR_HEADER, off, -1);
    uint64_t end = ha_nrefs(header) + 1, room = EDGE_ROOM - m->nedges;
    if (first > end) /* a writer shrank the object since its last take */
        return 1;
    if (end - first > room) {
        m->partial = ref;
        m->partial_next = first + room;
        end = first + room;
    }
    /* The edges have room for these slots: add_edge does not mark mid-way. */
    int rc = add_slots(m, obj, off, header, first, end, parallel);
    return rc ? -rc : !m->partial;
}

/* The gather step: take grey objects off the stack (the rest of a partial one
 * first) until MARK_BATCH are taken or the edges are full. Objects of up to
 * SMALL_REFS slots, nearly all of them, take the loop written here, its
 * state in locals; any other goes through take_object. */
static inline __attribute__((always_inline)) int gather(struct marker *m, int parallel, uint32_t enc)
{
    if (m->partial) {
        ha_ref ref = m->partial;
        m->partial = 0;
        int fit = take_object(m, ref, m->partial_next, parallel, enc);
        if (fit <= 0)
            return -fit;
    }
    const ha_heap h = m->h;
    const ha_ref *stack = m->stack;
    uint64_t **edges = m->edges;
    size_t depth = m->depth, n = m->nedges;
    for (unsigned taken = 0; taken < MARK_BATCH && depth && n + SMALL_REFS <= EDGE_ROOM; taken++) {
        ha_ref ref = stack[--depth];
        ha_off off = 0;
        ha_decode_as(&h, ref, &off, enc);
        uint64_t *obj = ha_deref_as(&h, ref, off, enc), header = ha_load(obj);
        uint64_t nrefs = ha_nrefs(header);
        /* The mark step checked this header; what can have changed since (a
         * writer races the mark) is caught here only as far as it matters:
         * the slots read stay in the heap, and every edge is checked. */
        if (nrefs > SMALL_REFS || off + 8 * (SMALL_REFS + 1) > h.size ||
            (header & (HA_MAGIC_MASK << HA_MAGIC_SHIFT | HA_MARKED)) !=
                (HA_MAGIC << HA_MAGIC_SHIFT | HA_MARKED)) {
            m->depth = depth;
            m->nedges = n;
            int fit = take_object(m, ref, 1, parallel, enc);
            if (fit <= 0)
                return -fit;
            depth = m->depth;
            n = m->nedges;
            continue;
        }
        /* Four slots noted whatever the count: the count says which edges are real. */
        for (uint64_t i = 0; i < SMALL_REFS; i++)
            edges[n + i] = &obj[i + 1];
        for (uint64_t i = 0; i < nrefs; i++)
            __builtin_prefetch(ha_prefetch_address_as(&h, ha_load(&obj[i + 1]), enc), 1);
        n += nrefs;
    }
    m->depth = depth;
    m->nedges = n;
    return HA_OK;
}

/* Whether `m` holds work: edges, a partial object, or grey objects. */
static inline int has_work(const struct marker *m)
{
    return m->nedges || m->partial || m->depth;
}

/* One step of draining: mark the edges, or gather more. */
static inline __attribute__((always_inline)) int mark_step(struct marker *m, int parallel, uint32_t enc)
{
    return m->nedges ? mark_edges(m, parallel, enc) : gather(m, parallel, enc);
}

/* After an overflow, single-threaded: scan every marked object again, by
 * walking the spaces, until no push overflows (scan.c). */
int ha_mark_rescans(struct marker *m);

#endif
