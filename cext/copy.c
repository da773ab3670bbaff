/* Cheney evacuation, shaped after whippet's semi.c: forward the roots, then
 * scan to-space until the grey pointer meets the allocation pointer.
 *
 * Every header is read once and checked before it is used, in from-space and
 * in to-space alike: another thread or process may write the heap, and the
 * bytes copied may come through another view (`load_base`) than the header
 * checked. A copy therefore gets the checked header, and the scan checks each
 * to-space header again, so it always advances and never leaves to-space. */
#include "evacuation.h"

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

/* A copy with non-temporal stores (plain memcpy off x86): the Cheney copy of
 * large objects, and the streaming half of the copy limit in limits.c.
 * dst and src are word-aligned. */
void ha_copy_streaming(uint64_t *dst, const uint64_t *src, uint64_t bytes)
{
#if defined(__x86_64__)
    if (((uintptr_t)dst & 8) && bytes >= 8) { /* one word makes dst 16-aligned */
        *dst++ = *src++;
        bytes -= 8;
    }
    __m128i *d = (__m128i *)dst;
    const __m128i *s = (const __m128i *)src;
    uint64_t n = bytes / 64;
    for (uint64_t i = 0; i < n; i++, d += 4, s += 4) {
        __builtin_prefetch((const char *)s + HA_PREFETCH_AHEAD, 0, 0);
        __m128i a = _mm_loadu_si128(s), b = _mm_loadu_si128(s + 1);
        __m128i c = _mm_loadu_si128(s + 2), e = _mm_loadu_si128(s + 3);
        _mm_stream_si128(d, a);
        _mm_stream_si128(d + 1, b);
        _mm_stream_si128(d + 2, c);
        _mm_stream_si128(d + 3, e);
    }
    _mm_sfence();
    memcpy(d, s, bytes % 64);
#else
    memcpy(dst, src, bytes);
#endif
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
         struct edge_lists *l, uint32_t enc)
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
        uint64_t header = ha_load(obj), forwarded = (header & HA_FORWARDED) != 0;
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
static inline __attribute__((always_inline)) int forward_lists(struct cheney *c, struct edge_lists *l)
{
    int rc = HA_OK;
    for (unsigned i = 0; i < l->nfresh && !rc; i++)
        rc = forward(c, l->fresh[i], (ha_off)((uintptr_t)l->fresh[i] - c->h.base), -1, 0);
    for (unsigned i = 0; i < l->nseen && !rc; i++)
        rc = forward(c, l->seen[i], (ha_off)((uintptr_t)l->seen[i] - c->h.base), -1, 0);
    l->nfresh = l->nseen = 0;
    return rc;
}

/* A batch is gathered (its targets' headers prefetched), classified a batch
 * later (their other lines prefetched), and forwarded a batch after that. A
 * batch is classified before the one ahead of it is forwarded, so some of
 * its fresh targets may be copied by then: forward() sees that. */
static inline __attribute__((always_inline)) int
scan_scattered(struct cheney *c, ha_off *grey, uint32_t enc)
{
    uint64_t *ring[EDGE_RING];
    struct edge_lists lists[2];
    unsigned head = 0, tail = 0, gathered = 0, next = 0;
    ha_off at = *grey;
    int rc = HA_OK;
    lists[0].nfresh = lists[0].nseen = lists[1].nfresh = lists[1].nseen = 0;
    while (!rc) {
        int stuck = 0;
        while (tail - head < 2 * EDGE_BATCH && gathered < SAMPLE && at < c->top) {
            uint64_t *obj = ha_at(&c->h, at);
            uint64_t header = ha_load(obj), nrefs = ha_nrefs(header);
            if (!ha_header_ok(header, at, c->top) || nrefs > GATHER_REFS) {
                stuck = 1;
                break;
            }
            for (uint64_t i = 1; i <= nrefs; i++) {
                __builtin_prefetch(ha_prefetch_address_as(&c->h, ha_load(&obj[i]), enc), 1);
                ring[tail++ % EDGE_RING] = &obj[i];
            }
            at += ha_words(header) * 8;
            gathered++;
        }
        struct edge_lists *ready = &lists[next], *later = &lists[!next];
        unsigned batch = tail - head;
        if (batch == 0 && ready->nfresh + ready->nseen == 0) {
            if (!stuck)
                break;
            rc = scan(c, &at, c->top, 0); /* the large object, or the bad header */
            gathered++;
            continue;
        }
        if (batch > EDGE_BATCH && at < c->top && gathered < SAMPLE)
            batch = EDGE_BATCH;
        classify(c, ring, head, batch, later, enc);
        head += batch;
        rc = forward_lists(c, ready);
        next = !next;
    }
    *grey = at;
    return rc;
}

/* Scan up to SAMPLE grey objects, prefetching ahead if `scattered`. */
static inline __attribute__((always_inline)) int
scan_some(struct cheney *c, ha_off *grey, int scattered, uint32_t enc)
{
    int rc = HA_OK;
    if (scattered)
        return scan_scattered(c, grey, enc);
    for (unsigned n = 0; n < SAMPLE && !rc && *grey < c->top; n++)
        rc = scan(c, grey, c->top, 0);
    return rc;
}

/* The Cheney loop itself: forward the roots, then scan the grey objects. */
static inline __attribute__((always_inline)) int
evacuate(struct cheney *c, ha_ref *roots, size_t nroots, uint32_t encoding)
{
    int rc = HA_OK, scattered = 1;
    ha_off grey = c->top;
    c->h.encoding = encoding;
    for (size_t i = 0; i < nroots && !rc; i++)
        rc = forward(c, &roots[i], 0, (int64_t)i, 0);
    while (!rc && grey < c->top) {
        ha_off from_next = c->from_next, top = c->top;
        uint64_t refs = c->refs, seen = c->seen;
        rc = scan_some(c, &grey, scattered, encoding);
        /* In order only if the copies read one run of from-space, and few
         * edges led to objects copied already: those are read scattered. */
        scattered = c->from_next - from_next != c->top - top ||
                    (c->seen - seen) * SEEN_SCATTERED > c->refs - refs;
    }
    return rc;
}

int ha_cheney(const ha_heap *h, const ha_space *from, ha_space *to,
              ha_ref *roots, size_t nroots, ha_stats *st)
{
    int rc = ha_begin(h, st);
    if (rc)
        return ha_end(st, rc);
    if (!ha_semispaces_ok(h, from, to))
        return ha_end(st, ha_fail(st, HA_ERR_ARGUMENT, 0, -1));
    struct cheney c = {.h = *h, .from_start = from->start, .from_top = from->top,
                       .begin = to->top, .top = to->top, .end = to->end, .st = st};
    /* one loop per encoding, each with the encoding a constant */
    HA_WITH_ENCODING(h->encoding, E, rc = evacuate(&c, roots, nroots, E));
    st->bytes = c.top - to->top;
    to->top = c.top;
    st->objects = c.objects;
    st->refs = c.refs;
    return ha_end(st, rc);
}
