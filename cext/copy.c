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

/* The Cheney loop itself: forward the roots, then scan the grey objects. */
static inline __attribute__((always_inline)) int
evacuate(struct cheney *c, ha_ref *roots, size_t nroots, uint32_t encoding)
{
    int rc = HA_OK;
    ha_off grey = c->top;
    c->h.encoding = encoding;
    for (size_t i = 0; i < nroots && !rc; i++)
        rc = forward(c, &roots[i], 0, (int64_t)i, 0);
    while (!rc && grey < c->top)
        rc = scan_sample(c, &grey, 0, encoding);
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
