/* Loops that read the heap in place: mark/trace, linear walk, verify, and the
 * card table (write barrier and card scan). */
#include "object_model.h"

/* The header of the object at `off` in space `s`, read once, or a HEADER error. */
static int object_at(const ha_heap *h, const ha_space *s, uint64_t off,
                     uint64_t *header, ha_stats *st)
{
    *header = ha_load(ha_at(h, off));
    if (!ha_header_ok(*header, off, s->top))
        return ha_fail(st, HA_ERR_HEADER, off, -1);
    return HA_OK;
}

static int spaces_ok(const ha_heap *h, const ha_space *spaces, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!ha_space_ok(h, &spaces[i]))
            return 0;
    return 1;
}

/* ---- mark/trace: header mark bit, explicit stack, overflow by rescanning ----
 *
 * A reference is followed only to a valid header whose object fits its space,
 * and a mark bit is set only in a header just checked. Whether that header is
 * an object start, and not a payload word that looks like one, takes a walk of
 * the heap to know; verify does that walk, mark does not. */

/* Edges are enqueued, not followed at once: each target is prefetched when
 * its edge enters a small FIFO and marked only when the edge leaves it, so
 * PREFETCH_EDGES misses overlap instead of each one stalling the loop. */
enum { PREFETCH_EDGES = 16 };

struct edge {
    uint64_t ref, where; /* where: the slot's heap offset, for errors */
};

struct marker {
    ha_heap h;
    const ha_space *spaces;
    size_t nspaces;
    uint64_t *stack; /* references still to scan */
    size_t capacity, depth;
    int overflowed;
    uint64_t objects, bytes, refs;
    uint64_t budget; /* objects the spaces can hold: marking more means the heap changed */
    struct edge fifo[PREFETCH_EDGES];
    unsigned head, queued;
    ha_stats *st;
};

static inline const ha_space *space_of(const struct marker *m, uint64_t off)
{
    for (size_t i = 0; i < m->nspaces; i++)
        if (off >= m->spaces[i].start && off < m->spaces[i].top)
            return &m->spaces[i];
    return NULL;
}

/* Mark the object `ref` names and queue it for scanning. A full stack drops
 * the push and sets `overflowed`: the object is marked, and a heap walk later
 * scans it, so no recursion and no lost objects. */
static inline __attribute__((always_inline)) int
grey(struct marker *m, uint64_t ref, uint64_t where, int64_t root)
{
    uint64_t off;
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
    if (m->objects == m->budget)
        return ha_fail(m->st, HA_ERR_HEADER, off, root);
    obj[0] = header | HA_MARKED;
    m->objects++;
    m->bytes += ha_words(header) * 8;
    if (m->depth == m->capacity)
        m->overflowed = 1;
    else
        m->stack[m->depth++] = ref;
    return HA_OK;
}

/* Enqueue the edge in the slot at `where`; once the FIFO is full, the oldest
 * edge, whose target has had time to arrive, leaves it and is followed. */
static inline __attribute__((always_inline)) int
follow(struct marker *m, uint64_t ref, uint64_t where)
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
    return grey(m, oldest.ref, oldest.where, -1);
}

/* Follow the slots of the object at `off`, whose checked header is `header`. */
static inline __attribute__((always_inline)) int
scan_refs(struct marker *m, const uint64_t *obj, uint64_t off, uint64_t header)
{
    uint64_t nrefs = ha_nrefs(header);
    for (uint64_t i = 1; i <= nrefs; i++) {
        int rc = follow(m, ha_load(&obj[i]), off + 8 * i);
        if (rc)
            return rc;
    }
    return HA_OK;
}

/* Scan the stack and the FIFO empty. The state is copied into a local for
 * the loop: stores into the heap cannot alias a local whose address stays here. */
static int drain(struct marker *state)
{
    struct marker m = *state;
    int rc = HA_OK;
    while (!rc && (m.depth || m.queued)) {
        if (m.depth) {
            uint64_t ref = m.stack[--m.depth], off = 0;
            ha_decode(&m.h, ref, &off); /* checked when it was pushed */
            const uint64_t *obj = ha_deref(&m.h, ref, off);
            /* The header may have changed since grey() checked it: check it again. */
            uint64_t header = ha_load(obj);
            if (ha_header_ok(header, off, m.h.size) && (header & HA_MARKED))
                rc = scan_refs(&m, obj, off, header);
            else
                rc = ha_fail(m.st, HA_ERR_HEADER, off, -1);
        } else {
            struct edge oldest = m.fifo[m.head];
            m.head = (m.head + 1) % PREFETCH_EDGES;
            m.queued--;
            rc = grey(&m, oldest.ref, oldest.where, -1);
        }
    }
    *state = m;
    return rc;
}

/* After an overflow: scan every marked object again, by walking the spaces. */
static int rescan(struct marker *m)
{
    for (size_t i = 0; i < m->nspaces; i++) {
        const ha_space *s = &m->spaces[i];
        uint64_t header;
        for (uint64_t off = s->start; off < s->top; off += ha_words(header) * 8) {
            int rc = object_at(&m->h, s, off, &header, m->st);
            if (!rc && (header & HA_MARKED))
                rc = scan_refs(m, ha_at(&m->h, off), off, header);
            if (!rc && m->depth) /* edges may wait in the FIFO; new grey objects may not */
                rc = drain(m);
            if (rc)
                return rc;
        }
    }
    return drain(m);
}

int ha_mark(const ha_heap *h, const ha_space *spaces, size_t nspaces,
            const uint64_t *roots, size_t nroots, uint64_t *stack,
            size_t stack_capacity, ha_stats *st)
{
    int rc = ha_begin(h, st);
    if (!rc && (!spaces_ok(h, spaces, nspaces) || stack_capacity == 0))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    struct marker m = {.h = *h, .spaces = spaces, .nspaces = nspaces, .stack = stack,
                       .capacity = stack_capacity, .st = st};
    for (size_t i = 0; !rc && i < nspaces; i++) /* objects are at least 16 bytes */
        m.budget += (spaces[i].top - spaces[i].start) / (8 * HA_MIN_WORDS);
    for (size_t i = 0; i < nroots && !rc; i++)
        if (roots[i] && !(rc = grey(&m, roots[i], 0, (int64_t)i)))
            rc = drain(&m);
    while (!rc && m.overflowed) {
        m.overflowed = 0;
        rc = rescan(&m);
    }
    st->objects = m.objects;
    st->bytes = m.bytes;
    st->refs = m.refs;
    return ha_end(st, rc);
}

int ha_clear_marks(const ha_heap *h, const ha_space *s, ha_stats *st)
{
    int rc = ha_begin_space(h, s, st);
    uint64_t header;
    for (uint64_t off = s->start; !rc && off < s->top; off += ha_words(header) * 8) {
        if (!(rc = object_at(h, s, off, &header, st))) {
            *ha_at(h, off) = header & ~HA_MARKED;
            st->objects += (header & HA_MARKED) != 0;
        }
    }
    return ha_end(st, rc);
}

/* ---- linear walk: parse headers bottom to top (refs counts slots, not reads them) ---- */

int ha_walk(const ha_heap *h, const ha_space *s, uint64_t *offsets,
            size_t capacity, ha_stats *st)
{
    int rc = ha_begin_space(h, s, st);
    /* Locals, not *st: a store into `offsets` could otherwise change them. */
    const ha_heap heap = *h;
    const ha_space space = *s;
    uint64_t header, objects = 0, refs = 0, off;
    for (off = space.start; !rc && off < space.top; off += ha_words(header) * 8) {
        __builtin_prefetch(ha_at(&heap, off + HA_PREFETCH_AHEAD));
        if ((rc = object_at(&heap, &space, off, &header, st)))
            break;
        if (objects < capacity)
            offsets[objects] = off;
        refs += ha_nrefs(header);
        objects++;
    }
    st->objects = objects;
    st->refs = refs;
    st->bytes = off - space.start; /* a bad header stops `off` at itself */
    return ha_end(st, rc);
}

/* ---- verify: every reference names an object start in one of the spaces ---- */

static int bit(const uint64_t *bitmap, uint64_t off)
{
    return (bitmap[off >> 9] >> ((off >> 3) & 63)) & 1;
}

static int check_ref(const ha_heap *h, const uint64_t *bitmap, uint64_t ref,
                     uint64_t where, int64_t root, ha_stats *st)
{
    uint64_t off;
    if (ref == 0)
        return HA_OK;
    st->refs++;
    if (!ha_decode(h, ref, &off))
        return ha_fail(st, HA_ERR_REF, where, root);
    if (!bit(bitmap, off))
        return ha_fail(st, HA_ERR_NOT_OBJECT, where, root);
    return HA_OK;
}

int ha_verify(const ha_heap *h, const ha_space *spaces, size_t nspaces,
              const uint64_t *roots, size_t nroots, uint64_t *bitmap,
              ha_stats *st)
{
    int rc = ha_begin(h, st);
    if (!rc && !spaces_ok(h, spaces, nspaces))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    uint64_t header;
    for (size_t i = 0; i < nspaces && !rc; i++) {
        const ha_space *s = &spaces[i];
        for (uint64_t off = s->start; off < s->top; off += ha_words(header) * 8) {
            if ((rc = object_at(h, s, off, &header, st)))
                break;
            bitmap[off >> 9] |= 1ULL << ((off >> 3) & 63);
            st->objects++;
            st->bytes += ha_words(header) * 8;
        }
    }
    /* The second walk checks each header again: another writer may have
     * changed it, and only an object start the first walk found is scanned. */
    for (size_t i = 0; i < nspaces && !rc; i++) {
        const ha_space *s = &spaces[i];
        for (uint64_t off = s->start; off < s->top && !rc; off += ha_words(header) * 8) {
            if ((rc = object_at(h, s, off, &header, st)))
                break;
            if (!bit(bitmap, off)) {
                rc = ha_fail(st, HA_ERR_HEADER, off, -1);
                break;
            }
            const uint64_t *obj = ha_at(h, off);
            for (uint64_t k = 1; k <= ha_nrefs(header) && !rc; k++)
                rc = check_ref(h, bitmap, ha_load(&obj[k]), off + 8 * k, -1, st);
        }
    }
    for (size_t i = 0; i < nroots && !rc; i++)
        rc = check_ref(h, bitmap, roots[i], 0, (int64_t)i, st);
    return ha_end(st, rc);
}

/* ---- card table: one byte per 2^card_shift heap bytes, dirtied per slot ---- */

int ha_write_ref(const ha_heap *h, uint8_t *cards, uint32_t card_shift,
                 uint64_t object, uint32_t slot, uint64_t ref)
{
    uint64_t off;
    if (cards && (card_shift < 3 || card_shift > 30))
        return HA_ERR_ARGUMENT;
    if (h->size < 16 || object == 0 || object >= h->size - 8 || (object & 7))
        return HA_ERR_REF;
    uint64_t header = ha_load(ha_at(h, object));
    if (!ha_header_ok(header, object, h->size))
        return HA_ERR_HEADER;
    if (slot >= ha_nrefs(header) || (ref && !ha_decode(h, ref, &off)))
        return HA_ERR_ARGUMENT;
    uint64_t where = object + 8 + 8 * (uint64_t)slot;
    *ha_at(h, where) = ref;
    if (cards)
        cards[where >> card_shift] = 1;
    return HA_OK;
}

int ha_card_scan(const ha_heap *h, const ha_space *s, const uint8_t *cards,
                 uint32_t card_shift, uint64_t target_start,
                 uint64_t target_end, uint64_t *found, size_t capacity,
                 ha_stats *st)
{
    int rc = ha_begin(h, st);
    if (!rc && (!ha_space_ok(h, s) || card_shift < 3 || card_shift > 30))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    if (rc)
        return ha_end(st, rc);
    for (uint64_t c = s->start >> card_shift; s->top > s->start && c <= (s->top - 1) >> card_shift; c++)
        st->cards += cards[c] != 0;
    uint64_t header;
    for (uint64_t off = s->start; off < s->top; off += ha_words(header) * 8) {
        if ((rc = object_at(h, s, off, &header, st)))
            break;
        st->objects++;
        const uint64_t *obj = ha_at(h, off);
        for (uint64_t k = 1; k <= ha_nrefs(header); k++) {
            uint64_t where = off + 8 * k, target, ref;
            if (!cards[where >> card_shift] || (ref = ha_load(&obj[k])) == 0)
                continue;
            if (!ha_decode(h, ref, &target)) {
                rc = ha_fail(st, HA_ERR_REF, where, -1);
                break;
            }
            if (target >= target_start && target < target_end) {
                if (st->refs < capacity)
                    found[st->refs] = where;
                st->refs++;
            }
        }
        if (rc)
            break;
    }
    return ha_end(st, rc);
}
