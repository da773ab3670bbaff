/* Loops that read the heap in place: mark/trace, linear walk, verify, and the
 * card table (write barrier and card scan). */
#include "marking.h"

#include <stdlib.h>
#include <sys/mman.h>

/* ---- mark/trace: side bitmap and header mark bit, explicit stack, overflow by rescanning ----
 *
 * A reference is followed only to a valid header whose object fits its space,
 * and a mark bit is set only in a header just checked. Whether that header is
 * an object start, and not a payload word that looks like one, takes a walk of
 * the heap to know; verify does that walk, mark does not. */

/* Mark until no edge, partial object or grey object is left, with `enc` a
 * constant. The state is copied into a local for the loop: stores into the
 * heap cannot alias a local whose address stays here. */
static inline __attribute__((always_inline)) int drain_as(struct marker *state, uint32_t enc)
{
    struct marker m = *state;
    int rc = HA_OK;
    while (!rc && has_work(&m))
        rc = mark_step(&m, 0, enc);
    *state = m;
    return rc;
}

static int drain(struct marker *m)
{
    int rc = HA_OK;
    HA_WITH_ENCODING(m->h.encoding, E, rc = drain_as(m, E));
    return rc;
}

/* After an overflow: scan every marked object again, by walking the spaces. */
static int rescan(struct marker *m)
{
    int rc = HA_OK;
    for (size_t i = 0; i < m->nspaces && !rc; i++) {
        ha_cursor c = ha_cursor_of(&m->spaces[i]);
        while (!rc && ha_next_object(&m->h, &c, &rc, m->st)) {
            if (c.header & HA_MARKED)
                rc = add_slots(m, ha_at(&m->h, c.off), c.off, c.header, 1,
                               ha_nrefs(c.header) + 1, 0);
            if (!rc && m->depth) /* edges may wait; new grey objects may not */
                rc = drain(m);
        }
    }
    return rc ? rc : drain(m);
}

int ha_mark_rescans(struct marker *m)
{
    int rc = HA_OK;
    while (!rc && m->overflowed) {
        m->overflowed = 0;
        rc = rescan(m);
    }
    return rc;
}

/* The bitmap covers the heap from offset 0 to the spaces' highest top, so
 * that a word's bit needs no subtraction: the part below the lowest space is
 * never touched. Bitmaps up to MARKS_MAPPED bytes come from calloc; larger
 * ones from a fresh mapping, zeroed by the kernel page by page as marking
 * touches it, on huge pages where it can have them (16 MiB for a GiB). */
enum { MARKS_MAPPED = 1 << 20 };

int ha_marks_alloc(struct marker *m)
{
    ha_off high = 0;
    for (size_t i = 0; i < m->nspaces; i++)
        high = m->spaces[i].top > high ? m->spaces[i].top : high;
    m->marks_words = high / 512 + 1;
    size_t bytes = m->marks_words * 8;
    if (bytes <= MARKS_MAPPED) {
        m->marks = calloc(m->marks_words, 8);
    } else {
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        m->marks = p == MAP_FAILED ? NULL : p;
        if (m->marks)
            madvise(p, bytes, MADV_HUGEPAGE); /* advice: 4 KiB pages if refused */
    }
    return m->marks ? HA_OK : ha_fail(m->st, HA_ERR_NOMEM, 0, -1);
}

void ha_marks_free(struct marker *m)
{
    if (m->marks && m->marks_words * 8 <= MARKS_MAPPED)
        free(m->marks);
    else if (m->marks)
        munmap(m->marks, m->marks_words * 8);
    m->marks = NULL;
}

int ha_mark(const ha_heap *h, const ha_space *spaces, size_t nspaces,
            const ha_ref *roots, size_t nroots, ha_ref *stack,
            size_t stack_capacity, ha_stats *st)
{
    return ha_mark_live(h, spaces, nspaces, roots, nroots, stack, stack_capacity, NULL, st);
}

int ha_mark_live(const ha_heap *h, const ha_space *spaces, size_t nspaces,
                 const ha_ref *roots, size_t nroots, ha_ref *stack, size_t stack_capacity,
                 uint64_t *live, ha_stats *st)
{
    int rc = ha_begin(h, st);
    if (!rc && (!ha_spaces_ok(h, spaces, nspaces) || stack_capacity == 0))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    struct marker m;
    uint64_t *edges[EDGE_ROOM];
    marker_init(&m, h, spaces, rc ? 0 : nspaces, stack, stack_capacity, edges, st);
    m.live = live;
    if (!rc)
        rc = ha_marks_alloc(&m);
    for (size_t i = 0; i < nroots && !rc; i++)
        if (roots[i] && !(rc = grey(&m, roots[i], 0, (int64_t)i, 0, h->encoding)))
            rc = drain(&m);
    if (!rc)
        rc = ha_mark_rescans(&m);
    ha_marks_free(&m);
    st->objects = m.objects;
    st->bytes = m.bytes;
    st->refs = m.refs;
    return ha_end(st, rc);
}

int ha_clear_marks(const ha_heap *h, const ha_space *s, ha_stats *st)
{
    int rc = ha_begin_space(h, s, st);
    ha_cursor c = ha_cursor_of(s);
    while (!rc && ha_next_object(h, &c, &rc, st)) {
        *ha_at(h, c.off) = c.header & ~HA_MARKED;
        st->objects += (c.header & HA_MARKED) != 0;
    }
    return ha_end(st, rc);
}

/* ---- linear walk: parse headers bottom to top (refs counts slots, not reads them) ---- */

int ha_walk(const ha_heap *h, const ha_space *s, ha_off *offsets,
            size_t capacity, ha_stats *st)
{
    int rc = ha_begin_space(h, s, st);
    /* Locals, not *st: a store into `offsets` could otherwise change them. */
    const ha_heap heap = *h;
    uint64_t objects = 0, refs = 0;
    ha_cursor c = ha_cursor_of(s);
    while (!rc && ha_next_object(&heap, &c, &rc, st)) {
        __builtin_prefetch(ha_at(&heap, c.off + HA_PREFETCH_AHEAD));
        if (objects < capacity)
            offsets[objects] = c.off;
        refs += ha_nrefs(c.header);
        objects++;
    }
    st->objects = objects;
    st->refs = refs;
    st->bytes = c.off - s->start; /* a bad header stops the walk at itself */
    return ha_end(st, rc);
}

/* ---- verify: every reference names an object start in one of the spaces ---- */

static int bit(const uint64_t *bitmap, ha_off off)
{
    return (bitmap[off >> 9] >> ((off >> 3) & 63)) & 1;
}

static int check_ref(const ha_heap *h, const uint64_t *bitmap, ha_ref ref,
                     ha_off where, int64_t root, ha_stats *st)
{
    ha_off off;
    if (ref == 0)
        return HA_OK;
    st->refs++;
    if (!ha_decode(h, ref, &off))
        return ha_fail(st, HA_ERR_REF, where, root);
    if (!bit(bitmap, off))
        return ha_fail(st, HA_ERR_NOT_OBJECT, where, root);
    return HA_OK;
}

struct checker {
    const ha_heap *h;
    const uint64_t *bitmap;
    ha_stats *st;
};

static inline __attribute__((always_inline)) int
check_slot(void *ctx, uint64_t *slot, ha_off where)
{
    const struct checker *k = ctx;
    return check_ref(k->h, k->bitmap, ha_load(slot), where, -1, k->st);
}

int ha_verify(const ha_heap *h, const ha_space *spaces, size_t nspaces,
              const ha_ref *roots, size_t nroots, uint64_t *bitmap,
              ha_stats *st)
{
    int rc = ha_begin(h, st);
    if (!rc && !ha_spaces_ok(h, spaces, nspaces))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    for (size_t i = 0; i < nspaces && !rc; i++) {
        ha_cursor c = ha_cursor_of(&spaces[i]);
        while (ha_next_object(h, &c, &rc, st)) {
            bitmap[c.off >> 9] |= 1ULL << ((c.off >> 3) & 63);
            st->objects++;
            st->bytes += ha_words(c.header) * 8;
        }
    }
    /* The second walk checks each header again: another writer may have
     * changed it, and only an object start the first walk found is scanned. */
    struct checker checker = {h, bitmap, st};
    for (size_t i = 0; i < nspaces && !rc; i++) {
        ha_cursor c = ha_cursor_of(&spaces[i]);
        while (!rc && ha_next_object(h, &c, &rc, st))
            rc = bit(bitmap, c.off)
                     ? ha_visit_slots(ha_at(h, c.off), c.off, c.header, check_slot, &checker)
                     : ha_fail(st, HA_ERR_HEADER, c.off, -1);
    }
    for (size_t i = 0; i < nroots && !rc; i++)
        rc = check_ref(h, bitmap, roots[i], 0, (int64_t)i, st);
    return ha_end(st, rc);
}

/* ---- card table: one byte per 2^card_shift heap bytes, dirtied per slot ---- */

int ha_write_ref(const ha_heap *h, uint8_t *cards, uint32_t card_shift,
                 ha_off object, uint32_t slot, ha_ref ref, ha_stats *st)
{
    ha_off off;
    int rc = ha_begin(h, st);
    if (rc)
        return ha_end(st, rc);
    if (cards && (card_shift < 3 || card_shift > 30))
        return ha_end(st, ha_fail(st, HA_ERR_ARGUMENT, object, -1));
    if (object == 0 || object >= h->size - 8 || (object & 7))
        return ha_end(st, ha_fail(st, HA_ERR_REF, object, -1));
    uint64_t header = ha_load(ha_at(h, object));
    if (!ha_header_ok(header, object, h->size))
        return ha_end(st, ha_fail(st, HA_ERR_HEADER, object, -1));
    if (slot >= ha_nrefs(header) || (ref && !ha_decode(h, ref, &off)))
        return ha_end(st, ha_fail(st, HA_ERR_ARGUMENT, object, -1));
    ha_off where = object + 8 + 8 * (uint64_t)slot;
    *ha_at(h, where) = ref;
    if (cards)
        cards[where >> card_shift] = 1;
    st->refs = 1;
    st->cards = cards ? 1 : 0;
    return ha_end(st, HA_OK);
}

/* What the card scan's slot visitor needs: the dirty cards, and where to
 * record the slots that refer into [target_start, target_end). */
struct card_scan {
    const ha_heap *h;
    const uint8_t *cards;
    uint32_t card_shift;
    ha_off target_start, target_end;
    ha_off *found;
    size_t capacity;
    ha_stats *st;
};

static inline __attribute__((always_inline)) int
card_slot(void *ctx, uint64_t *slot, ha_off where)
{
    const struct card_scan *k = ctx;
    ha_ref ref;
    ha_off target;
    if (!k->cards[where >> k->card_shift] || (ref = ha_load(slot)) == 0)
        return HA_OK;
    if (!ha_decode(k->h, ref, &target))
        return ha_fail(k->st, HA_ERR_REF, where, -1);
    if (target >= k->target_start && target < k->target_end) {
        if (k->st->refs < k->capacity)
            k->found[k->st->refs] = where;
        k->st->refs++;
    }
    return HA_OK;
}

int ha_card_scan(const ha_heap *h, const ha_space *s, const uint8_t *cards,
                 uint32_t card_shift, ha_off target_start,
                 ha_off target_end, ha_off *found, size_t capacity,
                 ha_stats *st)
{
    int rc = ha_begin(h, st);
    if (!rc && (!ha_space_ok(h, s) || card_shift < 3 || card_shift > 30))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    if (rc)
        return ha_end(st, rc);
    for (uint64_t card = s->start >> card_shift;
         s->top > s->start && card <= (s->top - 1) >> card_shift; card++)
        st->cards += cards[card] != 0;
    struct card_scan scan = {h, cards, card_shift, target_start, target_end, found, capacity, st};
    ha_cursor c = ha_cursor_of(s);
    while (!rc && ha_next_object(h, &c, &rc, st)) {
        st->objects++;
        rc = ha_visit_slots(ha_at(h, c.off), c.off, c.header, card_slot, &scan);
    }
    return ha_end(st, rc);
}
