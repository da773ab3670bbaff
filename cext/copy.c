/* Cheney evacuation, shaped after whippet's semi.c: forward the roots, then
 * scan to-space until the grey pointer meets the allocation pointer.
 *
 * Every header is read once and checked before it is used, in from-space and
 * in to-space alike: another thread or process may write the heap, and the
 * bytes copied may come through another view (`load_base`) than the header
 * checked. A copy therefore gets the checked header, and the scan checks each
 * to-space header again, so it always advances and never leaves to-space. */
#include "object_model.h"

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

/* Everything the loop touches, by value, so the compiler can keep it in
 * registers instead of reloading it after every store into the heap. */
struct cheney {
    ha_heap h;
    ha_off from_start, from_top;
    ha_off begin, top, end; /* to-space: this collection's copies lie in [begin, top) */
    uint64_t objects, refs;
    ha_off from_next; /* where in from-space the last copied object ended */
    ha_stats *st;
};

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

/* Copy the object `*slot` names out of from-space once, and point the slot at
 * the copy. `where` is the slot's heap offset (for errors), `root` its root index. */
static inline __attribute__((always_inline)) int
forward(struct cheney *c, ha_ref *slot, ha_off where, int64_t root)
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
    uint64_t header = ha_load(obj);
    if (!ha_header_ok(header, off, c->from_top))
        return ha_fail(c->st, HA_ERR_HEADER, off, root);
    if (header & HA_FORWARDED) {
        ha_ref to = ha_load(&obj[1]);
        if (!forwarded_ok(c, to, header))
            return ha_fail(c->st, HA_ERR_HEADER, off, root);
        *slot = to;
        return HA_OK;
    }
    uint64_t bytes = ha_words(header) * 8;
    if (c->end - c->top < bytes)
        return ha_fail(c->st, HA_ERR_FULL, off, root);
    ha_off copy = c->top;
    uint64_t *dst = ha_at(&c->h, copy);
    c->top += bytes;
    ha_copy_words(dst, (const uint64_t *)(uintptr_t)(c->h.load_base + off), bytes);
    dst[0] = header; /* the header checked, whatever the load view held */
    c->from_next = off + bytes;
    obj[0] = header | HA_FORWARDED;
    obj[1] = *slot = ha_encode(&c->h, copy);
    c->objects++;
    return HA_OK;
}

static inline __attribute__((always_inline)) int
forward_slot(void *c, uint64_t *slot, ha_off where)
{
    return forward(c, slot, where, -1);
}

/* Forward every reference of the grey object at `*grey`, then step past it. */
static inline __attribute__((always_inline)) int scan(struct cheney *c, ha_off *grey)
{
    uint64_t *obj = ha_at(&c->h, *grey);
    uint64_t header = ha_load(obj);
    if (!ha_header_ok(header, *grey, c->top))
        return ha_fail(c->st, HA_ERR_HEADER, *grey, -1);
    int rc = ha_visit_slots(obj, *grey, header, forward_slot, c);
    if (!rc)
        *grey += ha_words(header) * 8;
    return rc;
}

/* A freshly allocated graph is scattered in breadth-first order, and the loop
 * would wait on one from-space miss after another; so the referents of grey
 * objects a little ahead of the scan are prefetched. Once the graph has been
 * copied, from-space reads run in order, the hardware prefetcher covers them,
 * and parsing ahead would only cost time: every SAMPLE grey objects the loop
 * checks whether the copies they made read one run of from-space, and
 * prefetches for the next SAMPLE only if they did not. */
enum { PREFETCH_OBJECTS = 12, PREFETCH_REFS = 4, SAMPLE = 256 };

/* Prefetch what the grey object at `*ahead` references, and step past it. */
static inline __attribute__((always_inline)) void prefetch(struct cheney *c, ha_off *ahead)
{
    ha_prefetch_referents(&c->h, ahead, c->top, PREFETCH_REFS);
}

/* Scan up to SAMPLE grey objects, prefetching ahead if `scattered`. */
static inline __attribute__((always_inline)) int
scan_some(struct cheney *c, ha_off *grey, int scattered)
{
    int rc = HA_OK;
    if (!scattered) {
        for (unsigned n = 0; n < SAMPLE && !rc && *grey < c->top; n++)
            rc = scan(c, grey);
        return rc;
    }
    ha_off ahead = *grey;
    unsigned lead = 0; /* grey objects from grey to ahead */
    for (unsigned n = 0; n < SAMPLE && !rc && *grey < c->top; n++, lead--) {
        for (; lead < PREFETCH_OBJECTS && ahead < c->top; lead++)
            prefetch(c, &ahead);
        rc = scan(c, grey);
    }
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
        rc = forward(c, &roots[i], 0, (int64_t)i);
    while (!rc && grey < c->top) {
        ha_off from_next = c->from_next, top = c->top;
        rc = scan_some(c, &grey, scattered);
        scattered = c->from_next - from_next != c->top - top;
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
    struct cheney c = {*h, from->start, from->top, to->top, to->top, to->end, 0, 0, 0, st};
    switch (h->encoding) { /* one loop per encoding, each with the encoding a constant */
    case HA_REF_OFFSET:
        rc = evacuate(&c, roots, nroots, HA_REF_OFFSET);
        break;
    case HA_REF_ADDRESS:
        rc = evacuate(&c, roots, nroots, HA_REF_ADDRESS);
        break;
    case HA_REF_COLORED:
        rc = evacuate(&c, roots, nroots, HA_REF_COLORED);
        break;
    default:
        rc = evacuate(&c, roots, nroots, HA_REF_MASKED);
    }
    st->bytes = c.top - to->top;
    to->top = c.top;
    st->objects = c.objects;
    st->refs = c.refs;
    return ha_end(st, rc);
}
