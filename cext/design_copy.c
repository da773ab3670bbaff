/* The copy and move designs: ART's concurrent compaction (Android 14+), a
 * sliding compaction installed page by page by userfaultfd MISSING faults, over
 * a private anonymous heap. Like minor, no barrier in the mutator's code.
 *
 * A cycle:
 * 1. A pause: mark what the roots reach (ha_mark), then record every live word
 *    in a bitmap (and every live object's start in another), and count the live
 *    words before each 64-word block: an object's new offset is the space's
 *    start plus its live words before it (LISP2's order, from a bitmap as ART
 *    computes it). The roots get their new offsets. The pages of the space's
 *    objects are moved to a collector-only address with MREMAP_DONTUNMAP, which
 *    leaves the mutator's range mapped but empty; the range is registered
 *    MISSING (and emptied again). The mutator goes on allocating above the
 *    compacted top.
 * 2. Beside the mutator, on the collector thread: each page of the range is
 *    built in a buffer (the live objects that slide onto it, their references
 *    translated to new offsets; zeros past the compacted top) and installed with
 *    UFFDIO_COPY, or, for `move`, UFFDIO_MOVE, which moves the buffer's page
 *    itself in. Pages are built in address order, and between pages the
 *    collector serves the faults the mutator took on pages not yet installed.
 * 3. Once every page is installed, the range is unregistered (which wakes a
 *    fault still in flight) and the old pages are unmapped. A page is installed
 *    once, whole: the mutator never sees one half built.
 *
 * What differs from ART: ART marks concurrently (with a read barrier during
 * marking); this marks in the pause, so the pause is the mark. The mutator
 * stores only new offsets (everything it holds came from installed pages or
 * the roots), so nothing it writes needs translating.
 *
 * As in minor, finish() unregisters, closes and unmaps on every path before the
 * mutator is joined. */
#include "concurrent.h"
#include "uffd_abi.h"

#include <stdlib.h>

enum { PAGE = 4096, WORDS_PER_PAGE = PAGE / 8 };

struct compact {
    ha_trap trap;              /* base: the heap's (only) view; start and end: the range */
    int move;                  /* install by UFFDIO_MOVE (else UFFDIO_COPY) */
    uint64_t *live, *starts;   /* a bit per heap word: live words, live objects' starts */
    uint64_t *before;          /* per 64-word block: live words in the blocks before it */
    uint64_t nblocks;
    ha_ref *stack;             /* ha_mark's */
    size_t stack_capacity;
    uint8_t *installed;        /* per page of the range */
    uint64_t *buffer;          /* one page, page aligned (a private anonymous mapping) */
    uint64_t old_pages;        /* where the range's old pages went; 0: nowhere */
    uint64_t old_bytes;
    ha_off space_start, new_top;
    uint64_t live_words;
};

static inline int bit(const uint64_t *map, uint64_t word) { return map[word / 64] >> (word % 64) & 1; }

/* The new offset of the live object at old offset `off`. */
static inline ha_off new_offset(const struct compact *s, ha_off off)
{
    uint64_t word = off / 8, block = word / 64;
    uint64_t below = s->live[block] & ((1ULL << (word % 64)) - 1);
    return s->space_start + 8 * (s->before[block] + (uint64_t)__builtin_popcountll(below));
}

/* The old word holding live word number `n` (n < live_words). */
static uint64_t live_word(const struct compact *s, uint64_t n)
{
    uint64_t lo = 0, hi = s->nblocks; /* the last block with before <= n */
    while (hi - lo > 1) {
        uint64_t mid = (lo + hi) / 2;
        if (s->before[mid] <= n)
            lo = mid;
        else
            hi = mid;
    }
    uint64_t bits = s->live[lo];
    for (uint64_t skip = n - s->before[lo]; skip; skip--)
        bits &= bits - 1;
    return lo * 64 + (uint64_t)__builtin_ctzll(bits);
}

/* The first set bit of `map` at word index >= from, below `limit`; limit if none. */
static uint64_t next_bit(const uint64_t *map, uint64_t from, uint64_t limit)
{
    for (uint64_t block = from / 64; block * 64 < limit; block++) {
        uint64_t bits = map[block] & (from > block * 64 ? ~0ULL << (from % 64) : ~0ULL);
        if (bits)
            return block * 64 + (uint64_t)__builtin_ctzll(bits) < limit
                       ? block * 64 + (uint64_t)__builtin_ctzll(bits) : limit;
    }
    return limit;
}

/* The last set bit of `map` at word index <= at (one is known to exist). */
static uint64_t last_bit(const uint64_t *map, uint64_t at)
{
    for (uint64_t block = at / 64;; block--) {
        uint64_t bits = map[block] & (at / 64 == block && at % 64 < 63
                                          ? (2ULL << (at % 64)) - 1 : ~0ULL);
        if (bits)
            return block * 64 + 63 - (uint64_t)__builtin_clzll(bits);
    }
}

/* The pause's work: mark, the bitmaps and block counts, the new top. */
static int plan_compaction(struct ha_conc *c, struct compact *s)
{
    ha_collector *gc = c->gc;
    const ha_heap *h = &gc->heap;
    ha_space *space = &gc->spaces[0];
    ha_stats st;
    int rc = ha_mark(h, space, 1, c->roots, c->nroots, s->stack, s->stack_capacity, &st);
    if (rc) {
        *c->st = st;
        return ha_conc_fail(c, rc);
    }
    memset(s->live, 0, s->nblocks * 8);
    memset(s->starts, 0, s->nblocks * 8);
    ha_cursor cursor = ha_cursor_of(space);
    while (ha_next_object(h, &cursor, &rc, &st)) {
        if (!(cursor.header & HA_MARKED))
            continue;
        *ha_at(h, cursor.off) = cursor.header & ~HA_MARKED;
        uint64_t first = cursor.off / 8, words = ha_words(cursor.header);
        s->starts[first / 64] |= 1ULL << (first % 64);
        for (uint64_t w = first; w < first + words; w++)
            s->live[w / 64] |= 1ULL << (w % 64);
    }
    if (rc) {
        *c->st = st;
        return ha_conc_fail(c, rc);
    }
    uint64_t total = 0;
    for (uint64_t b = 0; b < s->nblocks; b++) {
        s->before[b] = total;
        total += (uint64_t)__builtin_popcountll(s->live[b]);
    }
    s->live_words = total;
    s->space_start = space->start;
    s->new_top = space->start + 8 * total;
    for (size_t i = 0; i < c->nroots; i++)
        if (c->roots[i])
            c->roots[i] = new_offset(s, c->roots[i]);
    c->run->bytes_relocated += 8 * total;
    c->run->objects_relocated += st.objects;
    return HA_OK;
}

/* Build page `p` (a heap page index) in the buffer: the words that slide onto
 * it, references translated; zeros elsewhere. */
static int build_page(struct ha_conc *c, struct compact *s, uint64_t p)
{
    const ha_off page_start = p * PAGE, page_end = page_start + PAGE;
    memset(s->buffer, 0, PAGE);
    ha_off first_new = page_start > s->space_start ? page_start : s->space_start;
    if (first_new >= s->new_top)
        return HA_OK;
    const uint64_t *old = (const uint64_t *)(uintptr_t)(s->old_pages - s->trap.start);
    uint64_t heap_words = c->gc->heap.size / 8;
    /* The live object covering the page's first new word, then each one after. */
    uint64_t word = last_bit(s->starts, live_word(s, (first_new - s->space_start) / 8));
    while (word < heap_words) {
        ha_off at = new_offset(s, word * 8);
        if (at >= page_end)
            break;
        uint64_t header = old[word], words = ha_words(header), nrefs = ha_nrefs(header);
        for (uint64_t i = 0; i < words; i++) {
            ha_off dest = at + 8 * i;
            if (dest < page_start)
                continue;
            if (dest >= page_end)
                break;
            uint64_t value = old[word + i];
            if (i >= 1 && i <= nrefs && value) {
                if (value % 8 || value / 8 >= heap_words || !bit(s->starts, value / 8))
                    return ha_conc_fail(c, ha_fail(c->st, HA_ERR_REF, 8 * (word + i), -1));
                value = new_offset(s, value);
                ha_conc_delay(c); /* a slowed collector: the mutator meets more traps */
            }
            s->buffer[(dest - page_start) / 8] = value;
        }
        word = next_bit(s->starts, word + words, heap_words);
    }
    return HA_OK;
}

/* Build and install page p, once; a fault there is woken by the install. */
static int install(struct ha_conc *c, struct compact *s, uint64_t p)
{
    uint64_t index = p - s->trap.start / PAGE;
    if (s->installed[index])
        return HA_OK;
    int rc = build_page(c, s, p);
    if (rc)
        return rc;
    uintptr_t dst = s->trap.base + p * PAGE, src = (uintptr_t)s->buffer;
    rc = s->move ? ha_uffd_move(s->trap.uffd, dst, src, PAGE, 1)
                 : ha_uffd_copy(s->trap.uffd, dst, src, PAGE, 1);
    if (rc)
        return ha_trap_fail(c, rc);
    s->installed[index] = 1;
    c->run->pages_exposed++;
    return HA_OK;
}

static int serve_fault(struct ha_conc *c, void *design, ha_off off)
{
    return install(c, design, off / PAGE);
}

/* Put the range's pages back in the mutator's hands: unregister (waking any
 * fault), unmap the old pages. */
static int release_range(struct ha_conc *c, struct compact *s)
{
    int rc = ha_trap_unregister(c, &s->trap);
    if (s->old_pages) {
        int unmapped = ha_munmap(s->old_pages, s->old_bytes);
        s->old_pages = 0;
        if (unmapped && !rc)
            rc = ha_trap_fail(c, unmapped);
    }
    return rc;
}

/* In the pause, after planning: the range's pages go to the collector, the
 * mutator's range is left empty and trapped. */
static int take_pages(struct ha_conc *c, struct compact *s, ha_off top)
{
    uint64_t base = s->trap.base;
    s->trap.start = s->space_start & ~(uint64_t)(PAGE - 1);
    ha_off end = (top + PAGE - 1) & ~(uint64_t)(PAGE - 1);
    s->old_bytes = end - s->trap.start;
    memset(s->installed, 0, s->old_bytes / PAGE);
    if (!s->old_bytes)
        return HA_OK;
    uintptr_t moved;
    int rc = ha_mremap(base + s->trap.start, s->old_bytes, s->old_bytes,
                       MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0, &moved);
    if (rc)
        return ha_trap_fail(c, rc);
    s->old_pages = moved;
    if ((rc = ha_trap_register(c, &s->trap, s->trap.start, end, UFFDIO_REGISTER_MODE_MISSING)))
        return rc;
    /* Then emptied again: another thread's touch between the mremap and the
     * registration mapped a page there (a zero page, or a fresh one), which the
     * mutator would read or write untrapped before its page was installed. From
     * the registration on, every touch traps. (Registering first, as ART does,
     * made the third cycle's mremap fail here with EFAULT: its range then spans
     * more than one VMA, it seems, which mremap refuses.) */
    if ((rc = ha_madvise(base + s->trap.start, s->old_bytes, MADV_DONTNEED)))
        return ha_trap_fail(c, rc);
    return HA_OK;
}

static int compact_cycle(struct ha_conc *c)
{
    struct compact *s = c->design_state;
    ha_space *space = &c->gc->spaces[0];
    int parked = ha_conc_stop_mutator(c);
    int rc = plan_compaction(c, s);
    if (!rc)
        rc = take_pages(c, s, space->top);
    if (!rc)
        space->top = s->new_top;
    if (parked)
        ha_conc_release_mutator(c);
    s->trap.quiet_ns = ha_now_ns();
    uint64_t last = (s->new_top + PAGE - 1) / PAGE; /* pages past it are zero on demand */
    for (uint64_t p = s->trap.start / PAGE; !rc && s->trap.end && p < last; p++)
        if (!(rc = ha_trap_serve_faults(c, &s->trap, serve_fault, s)))
            rc = install(c, s, p);
    if (!rc && s->trap.end)
        rc = ha_trap_serve_faults(c, &s->trap, serve_fault, s);
    int released = release_range(c, s);
    rc = rc ? rc : released;
    if (!rc && c->mix->verify) {
        parked = ha_conc_stop_mutator(c);
        rc = ha_conc_verify(c);
        if (parked)
            ha_conc_release_mutator(c);
    }
    return rc;
}

static int prepare(struct ha_conc *c, int move)
{
    const ha_heap *h = &c->gc->heap;
    if (h->encoding != HA_REF_OFFSET || h->base % PAGE || h->size % PAGE)
        return ha_fail(c->st, HA_ERR_ARGUMENT, 0, -1);
    struct compact *s = calloc(1, sizeof *s);
    if (!s)
        return ha_fail(c->st, HA_ERR_NOMEM, 0, -1);
    c->design_state = s;
    s->trap = (ha_trap){.uffd = -1, .base = h->base, .page = PAGE};
    s->move = move;
    s->nblocks = h->size / 512 + 1;
    s->stack_capacity = 1 << 16;
    uintptr_t buffer = 0;
    if (!(s->live = calloc(s->nblocks, 8)) || !(s->starts = calloc(s->nblocks, 8)) ||
        !(s->before = calloc(s->nblocks, 8)) || !(s->installed = calloc(h->size / PAGE, 1)) ||
        !(s->stack = malloc(s->stack_capacity * sizeof *s->stack)))
        return ha_fail(c->st, HA_ERR_NOMEM, 0, -1);
    int rc = ha_mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0,
                     &buffer);
    s->buffer = (uint64_t *)buffer;
    if (rc)
        return ha_fail(c->st, HA_ERR_SYSCALL, (uint64_t)-rc, -1);
    return ha_trap_open(c, &s->trap, move ? UFFD_FEATURE_MOVE : 0);
}

static int prepare_copy(struct ha_conc *c) { return prepare(c, 0); }
static int prepare_move(struct ha_conc *c) { return prepare(c, 1); }

static void finish(struct ha_conc *c)
{
    struct compact *s = c->design_state;
    if (!s)
        return;
    release_range(c, s);
    ha_trap_close(c, &s->trap);
    if (s->buffer)
        ha_munmap((uintptr_t)s->buffer, PAGE);
    free(s->live);
    free(s->starts);
    free(s->before);
    free(s->installed);
    free(s->stack);
    free(s);
    c->design_state = NULL;
}

const ha_design_ops ha_design_copy = {.name = "copy", .prepare = prepare_copy,
                                      .cycle = compact_cycle, .finish = finish};
const ha_design_ops ha_design_move = {.name = "move", .prepare = prepare_move,
                                      .cycle = compact_cycle, .finish = finish};
