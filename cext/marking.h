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

/* Marking keeps a side bitmap, a bit per heap word, as HotSpot's and ZGC's
 * marks do, besides the header's mark bit. An edge is tested against the
 * bitmap alone; only the first edge to an object reads its header. With two
 * edges an object on average, the header mark bit alone cost a header miss per
 * edge (two an object); the bitmap, 1/64 of the heap, mostly hits in the
 * last-level cache. The header bit is still set, once, when the object is
 * scanned: what mark leaves in the heap is unchanged, and an object an earlier
 * mark left marked is not scanned again.
 *
 * Marking goes in batches, two steps each, so that misses overlap and the
 * hot loops have no branch that depends on the graph:
 *   gather: prefetch the headers of up to MARK_BATCH grey objects on top of
 *     the stack, then take them: check each header, set its mark bit, note
 *     where its reference slots are in `edges` and prefetch the bitmap word
 *     of each target;
 *   mark:   for each edge, check the reference and set its bit in the
 *     bitmap. The bit is stored and the target pushed whether or not it was
 *     set already; the push counts only if it was not.
 * By the time an edge is marked, the rest of its batch's prefetches have
 * covered its miss.
 *
 * The designs before this one, measured on a 1 GiB random graph (mean
 * degree 2) on 2 MiB pages, one pinned CPU: an edge FIFO whose oldest edge
 * was marked as each new one came in, 78 ns per object, bound by its own
 * instructions and by branches on random data; these batches with the header
 * bit alone, 59, then 45-50 once tuned. A bitmap tried with that FIFO, and
 * with batches that read each grey object's header just after prefetching
 * it, was no faster: what pays is the gather's separate prefetch pass. */
enum { MARK_BATCH = 64, EDGE_ROOM = 4 * MARK_BATCH + 4 };

/* Objects of up to SMALL_REFS slots have them taken four words at a time,
 * without a loop whose trip count the branch predictor cannot guess. */
enum { SMALL_REFS = 4 };

/* One marking thread's state: its grey objects on `stack`, and the edges a
 * gather took from them. A parallel one also has a work-stealing `deque`, to
 * which it hands grey objects while another thread is idle. */
struct marker {
    ha_heap h;
    const ha_space *spaces;
    size_t nspaces;
    ha_space busiest; /* the space holding the most bytes, checked inline by the hot loops */
    uint64_t *marks; /* the side bitmap: a bit per heap word up to the spaces' top; shared */
    size_t marks_words;
    ha_ref *stack;  /* grey objects: marked in the bitmap, their headers not yet read */
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
 * edges are the caller's, its bitmap comes from ha_marks_alloc. */
static inline void marker_init(struct marker *m, const ha_heap *h, const ha_space *spaces,
                               size_t nspaces, ha_ref *stack, size_t capacity,
                               uint64_t **edges, ha_stats *st)
{
    *m = (struct marker){.h = *h, .spaces = spaces, .nspaces = nspaces, .stack = stack,
                         .capacity = capacity, .edges = edges, .st = st};
    for (size_t i = 0; i < nspaces; i++) {
        uint64_t used = spaces[i].top - spaces[i].start;
        if (i == 0 || used > m->busiest.top - m->busiest.start)
            m->busiest = spaces[i];
        m->budget += used / (8 * HA_MIN_WORDS); /* objects are at least 16 bytes */
    }
}

/* Give `m` a zeroed bitmap over its spaces (HA_ERR_NOMEM if none), and take
 * it back (scan.c). */
int ha_marks_alloc(struct marker *m);
void ha_marks_free(struct marker *m);

/* The word of bitmap `marks` holding the bit of heap offset `off` (in a
 * space), and the bit. */
static inline __attribute__((always_inline)) uint64_t *mark_word(uint64_t *marks, ha_off off)
{
    return &marks[off >> 9];
}

static inline __attribute__((always_inline)) uint64_t mark_bit(ha_off off)
{
    return 1ULL << (off >> 3 & 63);
}

/* The heap offset a reference of encoding `enc` names, unchecked: for
 * prefetches, and for references checked when they were pushed. */
static inline __attribute__((always_inline)) ha_off
unchecked_offset(const ha_heap *h, uint64_t ref, uint32_t enc)
{
    uint64_t off = enc == HA_REF_OFFSET ? ref : ref - h->ref_base;
    if (enc == HA_REF_COLORED || enc == HA_REF_MASKED)
        off &= (1ULL << h->shift) - 1;
    return off;
}

/* The heap offset of `ref` in `off`, if `ref` names a word of the busiest
 * space (nearly every edge): the hot loops' check, one branch. Anything else
 * (null, another space, an error) is for the one-edge path to sort out. */
static inline __attribute__((always_inline)) int
in_busiest_space(const ha_heap *h, ha_off busiest_start, ha_off busiest_span, uint64_t ref,
                 uint32_t enc, ha_off *off)
{
    uint64_t bad = 0;
    if (enc == HA_REF_COLORED || enc == HA_REF_MASKED)
        bad = ((ref - h->ref_base) >> h->shift) >= h->ncolors;
    *off = unchecked_offset(h, ref, enc);
    return !(bad | (*off & 7) | (*off - busiest_start >= busiest_span));
}

/* Prefetch the bitmap word of the reference `ref` if `real`, unchecked; if
 * not, the bitmap's first word. A mask, not a branch. A null offset
 * reference lands on that first word too; a corrupt one prefetches some
 * address that may not be mapped, which a prefetch may do. */
static inline __attribute__((always_inline)) void
prefetch_mark(const struct marker *m, uint64_t ref, uint64_t real, uint32_t enc)
{
    __builtin_prefetch(&m->marks[(unchecked_offset(&m->h, ref, enc) >> 9) & real], 1);
}

/* Set the bitmap bit of `off`: 1 if it was clear. In parallel the bitmap is
 * a filter, not the truth: a thread's store may undo another's bit, and then
 * both push the object; the compare-and-swap on its header (blacken) lets
 * one of them scan it. Atomic or-ing the bits instead cost a locked
 * instruction per object. Relaxed atomics are plain moves on x86, so both
 * loops run the same code. */
static inline __attribute__((always_inline)) int test_and_set_mark(uint64_t *word, uint64_t bit)
{
    uint64_t was = __atomic_load_n(word, __ATOMIC_RELAXED);
    __atomic_store_n(word, was | bit, __ATOMIC_RELAXED);
    return !(was & bit);
}

/* The top of the space holding `off`, or 0 if none does. The busiest space's
 * bounds are kept in the marker: spaces[] may alias the heap, so the compiler
 * would reload it after every mark. */
static inline __attribute__((always_inline)) ha_off space_top(const struct marker *m, ha_off off)
{
    if (off >= m->busiest.start && off < m->busiest.top)
        return m->busiest.top;
    for (size_t i = 0; i < m->nspaces; i++)
        if (off >= m->spaces[i].start && off < m->spaces[i].top)
            return m->spaces[i].top;
    return 0;
}

/* Set the header mark bit of the object at `obj`, whose checked header is
 * `header`: 1 if this call set it. In parallel with a compare-and-swap, as a
 * writer may race the mark: a header that changed meanwhile is -1. */
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

/* Blacken the grey object at `obj` (heap offset `off`, in a space ending at
 * `top`): check its header and set its mark bit, counting it in `objects` and
 * `bytes`. 1 with the header if its slots are to be taken, 0 if it was marked
 * already (by an earlier mark, or by another thread that pushed it too), or
 * minus an error. */
static inline __attribute__((always_inline)) int
blacken(struct marker *m, uint64_t *obj, ha_off off, ha_off top, uint64_t *header, int parallel,
        uint64_t *objects, uint64_t *bytes)
{
    *header = ha_load(obj);
    if (!ha_header_ok(*header, off, top))
        return -ha_fail(m->st, HA_ERR_HEADER, off, -1);
    if (*header & HA_MARKED)
        return 0;
    int marked = set_mark(obj, *header, parallel);
    if (marked <= 0)
        return marked ? -ha_fail(m->st, HA_ERR_HEADER, off, -1) : 0;
    *objects += 1;
    *bytes += ha_words(*header) * 8;
    if (!parallel && m->live)
        ha_set_live(m->live, off, ha_words(*header) * 8);
    return 1;
}

/* Mark the object `ref` names in the bitmap and push it. A full stack drops
 * the push and sets `overflowed`: the object is blackened at once, and a heap
 * walk later scans it, so no recursion and no lost objects. The one-edge form
 * of the mark step: for roots (whose headers are checked here, to name the
 * root if one is bad), the rarer spaces, and a batch the stack has no room for. */
static inline __attribute__((always_inline)) int
grey(struct marker *m, ha_ref ref, ha_off where, int64_t root, int parallel, uint32_t enc)
{
    ha_off off = 0, top = 0;
    uint64_t header = 0;
    m->refs++;
    if (!ha_decode_as(&m->h, ref, &off, enc) || !(top = space_top(m, off)))
        return ha_fail(m->st, HA_ERR_REF, where, root);
    uint64_t *obj = ha_deref_as(&m->h, ref, off, enc);
    if (root >= 0 && !ha_header_ok(ha_load(obj), off, top))
        return ha_fail(m->st, HA_ERR_HEADER, off, root);
    if (!test_and_set_mark(mark_word(m->marks, off), mark_bit(off)))
        return HA_OK;
    if (m->depth < m->capacity) {
        m->stack[m->depth++] = ref;
        return HA_OK;
    }
    m->overflowed = 1;
    int black = blacken(m, obj, off, top, &header, parallel, &m->objects, &m->bytes);
    return black < 0 ? -black : HA_OK;
}

/* The one-edge path for the edge in `slot`, kept out of the hot loop. */
static __attribute__((noinline)) int grey_slot(struct marker *m, uint64_t *slot, int parallel)
{
    uint32_t enc = m->h.encoding;
    ha_ref ref = ha_load(slot);
    return ref ? grey(m, ref, ha_offset_in_view(&m->h, slot, enc), -1, parallel, enc) : HA_OK;
}

/* The mark step over the gathered edges. */
static inline __attribute__((always_inline)) int
mark_edges(struct marker *m, int parallel, uint32_t enc)
{
    size_t n = m->nedges;
    m->nedges = 0;
    if (m->capacity - m->depth < n) {
        for (size_t i = 0; i < n; i++) {
            int rc = grey_slot(m, m->edges[i], parallel);
            if (rc)
                return rc;
        }
        return HA_OK;
    }
    /* Room for every push: the target is pushed whatever its bit was, and
     * counts only if it was clear, so no branch follows the graph. The state
     * is in locals: a store into the heap could alias *m. */
    const ha_heap h = m->h;
    const ha_off busiest_start = m->busiest.start;
    const ha_off busiest_span = m->busiest.top - m->busiest.start;
    uint64_t *const marks = m->marks;
    uint64_t *const *edges = m->edges;
    ha_ref *stack = m->stack;
    size_t depth = m->depth;
    uint64_t refs = m->refs;
    for (size_t i = 0; i < n; i++) {
        ha_ref ref = ha_load(edges[i]);
        ha_off off;
        if (!in_busiest_space(&h, busiest_start, busiest_span, ref, enc, &off)) {
            m->depth = depth, m->refs = refs;
            int rc = grey_slot(m, edges[i], parallel);
            if (rc)
                return rc;
            depth = m->depth, refs = m->refs;
            continue;
        }
        refs++;
        stack[depth] = ref;
        depth += test_and_set_mark(mark_word(marks, off), mark_bit(off));
    }
    m->depth = depth;
    m->refs = refs;
    return HA_OK;
}

/* Add the edge in `slot`, prefetching its bitmap word; with no room left,
 * mark the edges first. */
static inline __attribute__((always_inline)) int
add_edge(struct marker *m, uint64_t *slot, int parallel, uint32_t enc)
{
    int rc = m->nedges == EDGE_ROOM ? mark_edges(m, parallel, enc) : HA_OK;
    prefetch_mark(m, ha_load(slot), ~0ULL, enc);
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

/* Take slots [first, ...) of the black object at `obj` (heap offset `off`)
 * into the edges: 1 if they all fit, 0 if the edges filled (the rest is left
 * in `partial`), or minus an error. Its header may have changed since it was
 * blackened: it is checked again. */
static inline __attribute__((always_inline)) int
take_slots(struct marker *m, ha_ref ref, uint64_t *obj, ha_off off, uint64_t first, int parallel)
{
    uint64_t header = ha_load(obj);
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
 * first) until MARK_BATCH are taken or the edges are full, their headers
 * prefetched in a pass of their own first. Objects of up to SMALL_REFS slots,
 * nearly all of them, have their slots taken by the loop written here; any
 * other goes through take_slots. */
static inline __attribute__((always_inline)) int gather(struct marker *m, int parallel, uint32_t enc)
{
    if (m->partial) {
        ha_ref ref = m->partial;
        ha_off off = unchecked_offset(&m->h, ref, enc); /* checked when it was pushed */
        m->partial = 0;
        int fit = take_slots(m, ref, ha_deref_as(&m->h, ref, off, enc), off, m->partial_next,
                             parallel);
        if (fit <= 0)
            return -fit;
    }
    const ha_heap h = m->h;
    const ha_off busiest_start = m->busiest.start, busiest_top = m->busiest.top;
    const ha_off busiest_span = busiest_top - busiest_start;
    const ha_ref *stack = m->stack;
    uint64_t **edges = m->edges;
    size_t depth = m->depth, n = m->nedges;
    /* Both lines the header and four slots may span. */
    for (size_t i = 0; i < MARK_BATCH && i < depth; i++) {
        const char *obj = ha_prefetch_address_as(&h, stack[depth - 1 - i], enc);
        __builtin_prefetch(obj, 1);
        __builtin_prefetch(obj + 8 * SMALL_REFS, 1);
    }
    uint64_t objects = m->objects, bytes = m->bytes;
    int rc = HA_OK;
    for (unsigned taken = 0; taken < MARK_BATCH && depth && n + SMALL_REFS <= EDGE_ROOM; taken++) {
        ha_ref ref = stack[--depth];
        ha_off off = unchecked_offset(&h, ref, enc); /* checked when it was pushed */
        ha_off top = off - busiest_start < busiest_span ? busiest_top : space_top(m, off);
        uint64_t *obj = ha_deref_as(&h, ref, off, enc), header;
        int black = blacken(m, obj, off, top, &header, parallel, &objects, &bytes);
        if (black <= 0) {
            rc = -black;
            if (rc)
                break;
            continue;
        }
        uint64_t nrefs = ha_nrefs(header);
        if (nrefs > SMALL_REFS || off + 8 * (SMALL_REFS + 1) > h.size) {
            m->depth = depth, m->nedges = n;
            int fit = take_slots(m, ref, obj, off, 1, parallel);
            depth = m->depth, n = m->nedges;
            if (fit < 0) {
                rc = -fit;
                break;
            }
            if (!fit)
                break; /* the edges are full */
            continue;
        }
        /* Four slots noted and read whatever the count (the count says which
         * edges are real): they lie on the two lines prefetched above. */
#pragma GCC unroll 4
        for (uint64_t i = 0; i < SMALL_REFS; i++) {
            uint64_t real = -(uint64_t)(i < nrefs);
            edges[n + i] = &obj[i + 1];
            prefetch_mark(m, ha_load(&obj[i + 1]), real, enc);
        }
        n += nrefs;
    }
    m->depth = depth;
    m->nedges = n;
    m->objects = objects;
    m->bytes = bytes;
    /* Checked once a gather: one marks at most MARK_BATCH objects more. */
    if (!rc && objects > m->budget)
        rc = ha_fail(m->st, HA_ERR_HEADER, 0, -1);
    return rc;
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
