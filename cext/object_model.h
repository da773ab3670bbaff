/* The object model every loop shares: header layout, reference encodings and
 * the bounds checks that keep a corrupt heap from crashing a loop.
 *
 * An object is one header word, then its reference slots, then its payload,
 * all 64-bit words; at least 2 words, so a forwarding reference fits in slot 1.
 *
 *   header: | 63..62 zero | 61..58 age | 57 forwarded | 56 marked |
 *           | 55..48 magic 0xA5 | 47..32 reference slots | 31..0 size in words |
 *
 * The age counts the minor collections an object has survived in a young
 * generation (the generational plan); every other loop copies it unchanged.
 *
 * Forwarded, an object's header takes one of two forms. A stop-the-world copy
 * (copy.c) keeps the header, sets the forwarded bit and puts the reference to
 * the copy in slot 1, so the old space still parses. A concurrent copy (the
 * colored and masked designs), raced by two threads, must publish with one
 * compare-and-swap, so the whole header becomes
 *
 *   moved:  | 63..58 zero | 57 forwarded | 56 zero | 55..48 magic 0x5A |
 *           | 47..0 the copy's heap offset                              |
 *
 * A parallel copy leaves gaps at the ends of its threads' allocation buffers,
 * and fills each with one filler, so to-space still parses:
 *
 *   filler: | 63..56 zero | 55..48 magic 0xF1 | 47..32 zero | 31..0 size in words |
 *
 * A filler may be one word long; it is no object, and no reference may name
 * it. The heap walk (ha_next_object) steps over fillers, so every loop that
 * parses a heap accepts them without seeing them.
 *
 * Offset 0 of a heap is never an object, so the reference 0 is null in every
 * encoding. heapalias/objects.py reads the layout constants below through the
 * cdef (heapalias.cdef.h) and mirrors the checks in numpy, so a new header
 * field is added here, exported there, and nowhere else.
 *
 * Every loop over the heap parses it with the cursor (ha_next_object), and
 * every loop over an object's references with the slot visitor
 * (ha_visit_slots), below. */
#ifndef HEAPALIAS_OBJECT_MODEL_H
#define HEAPALIAS_OBJECT_MODEL_H

#include "heapalias.h"

#include <string.h>
#include <time.h>

/* The header layout, the one definition: heapalias/objects.py takes every
 * one of these from the compiled core (heapalias.cdef.h exports them). */
#define HA_WORDS_MASK 0xffffffffULL /* size in words: bits 31..0 */
#define HA_NREFS_SHIFT 32           /* reference slots: bits 47..32 */
#define HA_NREFS_MASK 0xffffULL
#define HA_MAGIC_SHIFT 48           /* magic: bits 55..48 */
#define HA_MAGIC_MASK 0xffULL
#define HA_MAGIC 0xA5ULL
#define HA_MARKED (1ULL << 56)
#define HA_FORWARDED (1ULL << 57)
#define HA_AGE_SHIFT 58             /* age: bits 61..58 */
#define HA_AGE_MASK 0xfULL
#define HA_RESERVED_SHIFT 62        /* bits 63..62 are zero in a valid header */
#define HA_MIN_WORDS 2ULL           /* room for the header and a forwarding reference */
#define HA_MOVED_MAGIC 0x5AULL      /* a header moved by a concurrent copy */
#define HA_MOVED_MASK 0xffffffffffffULL
#define HA_FILLER_MAGIC 0xF1ULL     /* a gap a parallel copy left */
#define HA_MAX_REFS HA_NREFS_MASK
#define HA_MAX_WORDS HA_WORDS_MASK

static inline uint64_t ha_make_header(uint64_t words, uint64_t nrefs)
{
    return words | nrefs << HA_NREFS_SHIFT | HA_MAGIC << HA_MAGIC_SHIFT;
}

static inline uint64_t ha_age(uint64_t header) { return (header >> HA_AGE_SHIFT) & HA_AGE_MASK; }

static inline uint64_t ha_with_age(uint64_t header, uint64_t age)
{
    return (header & ~(HA_AGE_MASK << HA_AGE_SHIFT)) | (age & HA_AGE_MASK) << HA_AGE_SHIFT;
}

/* A card is the unit of a card table (the generational plan's remembered set,
 * collectors.CardTable by default): a write barrier dirties the card of the slot
 * it stores to, and a minor collection scans the dirty cards of the old space.
 * 512 bytes, as in HotSpot. */
#define HA_CARD_SHIFT 9
#define HA_CARD_BYTES (1ULL << HA_CARD_SHIFT)

/* The header of an object a concurrent copy moved to `off`, and back. */
static inline uint64_t ha_moved_header(uint64_t off)
{
    return HA_FORWARDED | HA_MOVED_MAGIC << HA_MAGIC_SHIFT | off;
}

static inline int ha_is_moved(uint64_t header)
{
    return (header & ~HA_MOVED_MASK) == (HA_FORWARDED | HA_MOVED_MAGIC << HA_MAGIC_SHIFT);
}

/* The filler of a gap of `words` words (1 or more), and whether `header` is a
 * filler that fits in [off, limit). */
static inline uint64_t ha_filler_header(uint64_t words)
{
    return HA_FILLER_MAGIC << HA_MAGIC_SHIFT | words;
}

static inline int ha_filler_ok(uint64_t header, ha_off off, ha_off limit)
{
    uint64_t words = header & HA_WORDS_MASK;
    return (header & ~HA_WORDS_MASK) == HA_FILLER_MAGIC << HA_MAGIC_SHIFT && words >= 1 &&
           words <= (limit - off) / 8;
}

/* Words of an object with these reference slots and payload words. */
static inline uint64_t ha_object_words(uint64_t nrefs, uint64_t payload)
{
    uint64_t words = 1 + nrefs + payload;
    return words < HA_MIN_WORDS ? HA_MIN_WORDS : words;
}

/* Every read of a heap word that decides what a loop does next goes through
 * here: another thread or process may be writing the heap, and the compiler
 * must neither read the word twice nor tear it, so the value a loop checks is
 * the value it uses. A relaxed atomic load is a plain load on x86-64 and arm64. */
static inline uint64_t ha_load(const uint64_t *word)
{
    return __atomic_load_n(word, __ATOMIC_RELAXED);
}

static inline uint64_t ha_words(uint64_t header) { return header & HA_WORDS_MASK; }
static inline uint64_t ha_nrefs(uint64_t header) { return (header >> HA_NREFS_SHIFT) & HA_NREFS_MASK; }

/* A header is valid if its magic matches, its reserved bits are zero and the
 * object fits in [off, limit). Loops read a header once (ha_load), check that
 * copy, and use only it. The conditions are or-ed, not short-circuited: one
 * branch in the loops instead of five. */
static inline int ha_header_ok(uint64_t header, ha_off off, ha_off limit)
{
    uint64_t words = ha_words(header);
    uint64_t fixed = header & (HA_MAGIC_MASK << HA_MAGIC_SHIFT | 3ULL << HA_RESERVED_SHIFT);
    return !((fixed != HA_MAGIC << HA_MAGIC_SHIFT) | (words < HA_MIN_WORDS) |
             (ha_nrefs(header) >= words) | (words > (limit - off) / 8));
}

static inline uint64_t *ha_at(const ha_heap *h, uint64_t off)
{
    return (uint64_t *)(uintptr_t)(h->base + off);
}

/* Decode a non-null reference to a word-aligned heap offset; 0 if it names no
 * place in the heap. Colored and masked references must carry a known color.
 * The _as forms take the encoding as a parameter: a hot loop inlines them
 * with a constant (HA_WITH_ENCODING), and its switches fold away. */
static inline __attribute__((always_inline)) int
ha_decode_as(const ha_heap *h, uint64_t ref, uint64_t *off, uint32_t enc)
{
    uint64_t rel;
    switch (enc) {
    case HA_REF_OFFSET:
        rel = ref;
        break;
    case HA_REF_ADDRESS:
        rel = ref - h->ref_base;
        break;
    default:
        rel = ref - h->ref_base;
        if ((rel >> h->shift) >= h->ncolors)
            return 0;
        rel &= (1ULL << h->shift) - 1;
    }
    if (rel >= h->size || (rel & 7))
        return 0;
    *off = rel;
    return 1;
}

static inline int ha_decode(const ha_heap *h, uint64_t ref, uint64_t *off)
{
    return ha_decode_as(h, ref, off, h->encoding);
}

/* Where a load through `ref` goes. address and colored use the pointer as
 * stored (ZGC before JDK 21: no mask); offset and masked add the offset to the
 * color-0 view, which is what stripping the color bits amounts to. */
static inline __attribute__((always_inline)) uint64_t *
ha_deref_as(const ha_heap *h, uint64_t ref, uint64_t off, uint32_t enc)
{
    if (enc == HA_REF_ADDRESS || enc == HA_REF_COLORED)
        return (uint64_t *)(uintptr_t)ref;
    return ha_at(h, off);
}

static inline uint64_t *ha_deref(const ha_heap *h, uint64_t ref, uint64_t off)
{
    return ha_deref_as(h, ref, off, h->encoding);
}

/* The heap offset of the word `word` points to, through whichever view a
 * reference of encoding `enc` loads from (ha_deref). */
static inline __attribute__((always_inline)) ha_off
ha_offset_in_view(const ha_heap *h, const uint64_t *word, uint32_t enc)
{
    uint64_t at = (uint64_t)(uintptr_t)word;
    if (enc == HA_REF_COLORED)
        return (at - h->ref_base) & ((1ULL << h->shift) - 1);
    return at - (enc == HA_REF_ADDRESS ? h->ref_base : h->base);
}

/* Run `body` with the constant `E` set to `enc`: the body's _as calls then
 * compile once per encoding, with no switch left in the loop. */
#define HA_WITH_ENCODING(enc, E, body)                                                       \
    switch (enc) {                                                                           \
    case HA_REF_OFFSET: { const uint32_t E = HA_REF_OFFSET; body; } break;                  \
    case HA_REF_ADDRESS: { const uint32_t E = HA_REF_ADDRESS; body; } break;                \
    case HA_REF_COLORED: { const uint32_t E = HA_REF_COLORED; body; } break;                \
    default: { const uint32_t E = HA_REF_MASKED; body; } break;                             \
    }

/* How far ahead loops that stream through memory prefetch: the hardware
 * prefetcher stops at every 4 KiB page, and this starts the next one early. */
#define HA_PREFETCH_AHEAD 1024

/* Where a load through `ref` would go, unchecked: only for prefetches, which
 * never fault. */
static inline __attribute__((always_inline)) const void *
ha_prefetch_address_as(const ha_heap *h, uint64_t ref, uint32_t enc)
{
    switch (enc) {
    case HA_REF_OFFSET:
        return ha_at(h, ref);
    case HA_REF_MASKED:
        return ha_at(h, (ref - h->ref_base) & ((1ULL << h->shift) - 1));
    default:
        return (const void *)(uintptr_t)ref;
    }
}

static inline const void *ha_prefetch_address(const ha_heap *h, uint64_t ref)
{
    return ha_prefetch_address_as(h, ref, h->encoding);
}

static inline uint64_t ha_encode(const ha_heap *h, uint64_t off)
{
    switch (h->encoding) {
    case HA_REF_OFFSET:
        return off;
    case HA_REF_ADDRESS:
        return h->ref_base + off;
    default:
        return h->ref_base + ((uint64_t)h->store_color << h->shift) + off;
    }
}

/* Record what went wrong; cold and out of line, so the loops' hot paths keep
 * only a branch to it. */
static __attribute__((cold, noinline, unused)) int
ha_fail(ha_stats *st, int error, uint64_t off, int64_t root)
{
    st->error = error;
    st->error_offset = off;
    st->error_root = root;
    return error;
}

/* ---- the two loops every collector writes: over a heap, over an object ----
 *
 * The heap walk: parse the objects of [start, top) bottom to top. Each header
 * is read once (ha_load) and checked against `top` before the loop body sees
 * it, and the walk steps by that same copy, so a header another writer changes
 * can neither stall the walk nor send it past `top`:
 *
 *     ha_cursor c = ha_cursor_of(s);
 *     while (ha_next_object(h, &c, &rc, st))
 *         ... c.off, c.header ...
 *
 * After the loop c.off is where the walk stopped: `top`, or the bad header. */
typedef struct ha_cursor {
    ha_off off;      /* the object the loop body sees */
    ha_off next;     /* where the walk reads its next header */
    ha_off top;      /* the end of the objects */
    uint64_t header; /* the header of `off`, read once and checked */
} ha_cursor;

static inline ha_cursor ha_cursor_over(ha_off start, ha_off top)
{
    return (ha_cursor){.off = start, .next = start, .top = top};
}

static inline ha_cursor ha_cursor_of(const ha_space *s)
{
    return ha_cursor_over(s->start, s->top);
}

/* Step to the next object, over any fillers: 1 with c->off and c->header set;
 * 0 at the end, or at a bad header, where *rc is set to a HEADER error naming it. */
static inline __attribute__((always_inline)) int
ha_next_object(const ha_heap *h, ha_cursor *c, int *rc, ha_stats *st)
{
    for (;;) {
        c->off = c->next;
        if (c->off >= c->top)
            return 0;
        c->header = ha_load(ha_at(h, c->off));
        c->next = c->off + ha_words(c->header) * 8;
        if (ha_header_ok(c->header, c->off, c->top))
            return 1;
        if (!ha_filler_ok(c->header, c->off, c->top)) {
            *rc = ha_fail(st, HA_ERR_HEADER, c->off, -1);
            return 0;
        }
    }
}

/* The slot visitor: call visit(ctx, slot, where) on the reference slots of
 * the object `obj` at heap offset `off`, whose header, read once and checked
 * (ha_header_ok), is `header`: the count comes from that copy only. `where`
 * is the slot's heap offset; `obj` is where loads go (ha_deref: a colored
 * view, say), `off` what errors name. Stops at the first non-zero result of
 * visit, and returns it. Inlined with a constant `visit`, this compiles to
 * the loop written out.
 *
 * Not for a visitor that only prefetches: GCC counts __builtin_prefetch as
 * no side effect, finds such a visitor pure, and drops the call. */
typedef int (*ha_slot_visitor)(void *ctx, uint64_t *slot, ha_off where);

/* The visitor over the slots of words [first, end) of the object only (word 0
 * is the header): a card scan visits the part of an object that lies in one
 * card. The range is clipped to the reference slots the header claims. */
static inline __attribute__((always_inline)) int
ha_visit_slot_range(uint64_t *obj, ha_off off, uint64_t header, uint64_t first, uint64_t end,
                    ha_slot_visitor visit, void *ctx)
{
    uint64_t nrefs = ha_nrefs(header);
    if (end > nrefs + 1)
        end = nrefs + 1;
    for (uint64_t i = first < 1 ? 1 : first; i < end; i++) {
        int rc = visit(ctx, &obj[i], off + 8 * i);
        if (rc)
            return rc;
    }
    return HA_OK;
}

static inline __attribute__((always_inline)) int
ha_visit_slots(uint64_t *obj, ha_off off, uint64_t header, ha_slot_visitor visit, void *ctx)
{
    return ha_visit_slot_range(obj, off, header, 1, ha_nrefs(header) + 1, visit, ctx);
}

/* A copying collector's scan reads its grey objects in order but what they
 * reference scattered: prefetch the referents of the grey object at `*ahead`
 * (at most `max_refs` of its slots), a few objects ahead of the scan, and step
 * past it. Prefetches never fault, so the references need no checks (the scan
 * checks them before any load); the header does, as it says which words to
 * read: a bad one ends the prefetching (*ahead = top), and the scan reports it. */
static inline __attribute__((always_inline)) void
ha_prefetch_referents(const ha_heap *h, ha_off *ahead, ha_off top, uint64_t max_refs)
{
    const uint64_t *obj = ha_at(h, *ahead);
    uint64_t header = ha_load(obj);
    if (!ha_header_ok(header, *ahead, top)) {
        *ahead = top;
        return;
    }
    /* Written out, not ha_visit_slots: a visitor that only prefetches is
     * dropped by the compiler (see above), and this loop follows nothing. */
    uint64_t nrefs = ha_nrefs(header);
    for (uint64_t i = 1; i <= nrefs && i <= max_refs; i++) {
        /* An integer, not a pointer: a corrupt slot may name an address whose
         * next line would wrap, and pointer arithmetic may not. */
        uintptr_t target = (uintptr_t)ha_prefetch_address(h, obj[i]);
        __builtin_prefetch((const void *)target, 1);
        __builtin_prefetch((const void *)(target + 32), 1); /* an object may straddle lines */
    }
    *ahead += ha_words(header) * 8;
}

/* Objects this large are copied with non-temporal stores: they would only
 * evict the cache, and skipping the read-for-ownership is what lets a large
 * memcpy run at full bandwidth. */
#define HA_STREAM_BYTES (256u << 10)

/* Copy an object's words for a collector (dst and src word-aligned, apart). */
static inline __attribute__((always_inline)) void
ha_copy_words(uint64_t *dst, const uint64_t *src, uint64_t bytes)
{
    if (bytes <= 64 && bytes >= 16) {
        /* Four 16-byte moves, overlapping where the object is shorter: a loop
         * would end on a branch that random sizes keep mispredicting. */
        for (uint64_t i = 0; i < 4; i++) {
            uint64_t at = 16 * i < bytes - 16 ? 16 * i : bytes - 16;
            memcpy((char *)dst + at, (const char *)src + at, 16);
        }
        return;
    }
    if (bytes < 16) {
        for (uint64_t i = 0; i < bytes / 8; i++)
            dst[i] = src[i];
        return;
    }
    if (bytes >= HA_STREAM_BYTES) {
        ha_copy_streaming(dst, src, bytes);
        return;
    }
    memcpy(dst, src, bytes);
}

static inline int ha_space_ok(const ha_heap *h, const ha_space *s)
{
    return s->start > 0 && s->start <= s->top && s->top <= s->end &&
           s->end <= h->size && ((s->start | s->top | s->end) & 7) == 0;
}

/* Two valid spaces that do not overlap, as a copying collector needs. */
static inline int ha_semispaces_ok(const ha_heap *h, const ha_space *a, const ha_space *b)
{
    return ha_space_ok(h, a) && ha_space_ok(h, b) && (a->end <= b->start || b->end <= a->start);
}

static inline uint64_t ha_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* The calling thread's CPU time. */
static inline uint64_t ha_thread_cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* Start a loop: clear the stats and validate the heap description. */
static inline int ha_begin(const ha_heap *h, ha_stats *st)
{
    memset(st, 0, sizeof *st);
    st->error_root = -1;
    st->nanoseconds = ha_now_ns();
    if (h->encoding > HA_REF_MASKED || h->size < 16 || (h->size & 7) ||
        (h->encoding >= HA_REF_COLORED &&
         (h->shift >= 64 || h->ncolors == 0 || h->store_color >= h->ncolors ||
          (1ULL << h->shift) < h->size)))
        return ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    return HA_OK;
}

/* Start a loop over one space: ha_begin, then check the space. */
static inline int ha_begin_space(const ha_heap *h, const ha_space *s, ha_stats *st)
{
    int rc = ha_begin(h, st);
    if (!rc && !ha_space_ok(h, s))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    return rc;
}

static inline int ha_end(ha_stats *st, int rc)
{
    st->nanoseconds = ha_now_ns() - st->nanoseconds;
    return rc;
}

#endif
