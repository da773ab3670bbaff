/* The object model every loop shares: header layout, reference encodings and
 * the bounds checks that keep a corrupt heap from crashing a loop.
 *
 * An object is one header word, then its reference slots, then its payload,
 * all 64-bit words; at least 2 words, so a forwarding reference fits in slot 1.
 *
 *   header: | 63..58 zero | 57 forwarded | 56 marked | 55..48 magic 0xA5 |
 *           | 47..32 reference slots     | 31..0 size in words            |
 *
 * Offset 0 of a heap is never an object, so the reference 0 is null in every
 * encoding. heapalias/objects.py mirrors this file in numpy. */
#ifndef HEAPALIAS_OBJECT_MODEL_H
#define HEAPALIAS_OBJECT_MODEL_H

#include "heapalias.h"

#include <string.h>
#include <time.h>

#define HA_MAGIC 0xA5ULL
#define HA_MARKED (1ULL << 56)
#define HA_FORWARDED (1ULL << 57)
#define HA_MIN_WORDS 2
#define HA_MAX_REFS 0xffffULL
#define HA_MAX_WORDS 0xffffffffULL

static inline uint64_t ha_make_header(uint64_t words, uint64_t nrefs)
{
    return words | nrefs << 32 | HA_MAGIC << 48;
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

static inline uint64_t ha_words(uint64_t header) { return header & 0xffffffffULL; }
static inline uint64_t ha_nrefs(uint64_t header) { return (header >> 32) & 0xffffULL; }

/* A header is valid if its magic matches and the object fits in [off, limit).
 * Loops read a header once (ha_load), check that copy, and use only it. */
static inline int ha_header_ok(uint64_t header, uint64_t off, uint64_t limit)
{
    uint64_t words = ha_words(header);
    return ((header >> 48) & 0xff) == HA_MAGIC && (header >> 58) == 0 &&
           words >= HA_MIN_WORDS && ha_nrefs(header) < words &&
           words <= (limit - off) / 8;
}

static inline uint64_t *ha_at(const ha_heap *h, uint64_t off)
{
    return (uint64_t *)(uintptr_t)(h->base + off);
}

/* Decode a non-null reference to a word-aligned heap offset; 0 if it names no
 * place in the heap. Colored and masked references must carry a known color. */
static inline int ha_decode(const ha_heap *h, uint64_t ref, uint64_t *off)
{
    uint64_t rel;
    switch (h->encoding) {
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

/* Where a load through `ref` goes. address and colored use the pointer as
 * stored (ZGC before JDK 21: no mask); offset and masked add the offset to the
 * color-0 view, which is what stripping the color bits amounts to. */
static inline uint64_t *ha_deref(const ha_heap *h, uint64_t ref, uint64_t off)
{
    if (h->encoding == HA_REF_ADDRESS || h->encoding == HA_REF_COLORED)
        return (uint64_t *)(uintptr_t)ref;
    return ha_at(h, off);
}

/* How far ahead loops that stream through memory prefetch: the hardware
 * prefetcher stops at every 4 KiB page, and this starts the next one early. */
#define HA_PREFETCH_AHEAD 1024

/* Where a load through `ref` would go, unchecked: only for prefetches, which
 * never fault. */
static inline const void *ha_prefetch_address(const ha_heap *h, uint64_t ref)
{
    switch (h->encoding) {
    case HA_REF_OFFSET:
        return ha_at(h, ref);
    case HA_REF_MASKED:
        return ha_at(h, (ref - h->ref_base) & ((1ULL << h->shift) - 1));
    default:
        return (const void *)(uintptr_t)ref;
    }
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
