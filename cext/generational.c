/* The generational plan: the mutator bump-allocates in a nursery; a minor
 * collection evacuates the young generation (the nursery and the survivor
 * space) by Cheney (breadth first; depth first as an option), into the other
 * survivor space while an object is younger than the tenure age and into the
 * old space after that; a full collection
 * marks the whole heap and compacts every live object into the old space.
 *
 *   spaces[0] nursery   where the mutator allocates (plan.h: HA_GEN_NURSERY)
 *   spaces[1] old       bump-allocated by promotion; compacted in place
 *   spaces[2] survivor  the young objects that survived a minor collection
 *   spaces[3] survivor  empty between collections; swapped with [2] after each
 *
 * Roots of a minor collection: the caller's roots, and the old objects' slots in
 * dirty cards (the card-marking barrier in plan.h dirties the card of every
 * slot the mutator stores to). A card stays dirty after the collection only if
 * one of its slots still refers to a young object; promoted objects whose slots
 * refer to survivors dirty their cards as they are scanned. The crossing map
 * says where the object covering each old card begins, so a card is scanned
 * without walking the old space.
 *
 * When the nursery fills, the plan collects as HotSpot's Serial collector
 * decides: a minor collection if the old space has room for what minor
 * collections have promoted lately (a weighted average, padded by three mean
 * deviations) or for every young object, a full collection otherwise. A minor
 * collection that runs out of old space anyway keeps the objects it could not
 * promote where they are (a promotion failure), finishes, and a full collection
 * follows at once. A minor collection asked for by name runs only when the old
 * space can take every young object, so it never fails halfway.
 *
 * The full collection is a sliding mark-compact (Lisp-2's order of passes with
 * the Compressor's forwarding): ha_mark_live marks the live objects and records
 * their words in a bitmap as it goes, so no pass walks the dead objects; a
 * prefix sum gives each 512-byte block
 * the address its first live word moves to, so any object's new address is that
 * plus the live words before it in its block (a popcount), with no forwarding
 * word in the object. Then one pass updates each object's references and slides
 * it down, the old space's first (each moves down or stays), then the young ones
 * behind them. A heap whose live objects do not fit the old space fails before
 * anything moves, and keeps its graph whole. */
#include "liveness.h"
#include "plan.h"

#include <stdlib.h>

#define SHIFT HA_CARD_SHIFT
#define CARD HA_CARD_BYTES
#define MAX_TENURE_AGE (HA_AGE_MASK + 1)

/* Mark stack entries for a full collection; an overflow costs a heap walk
 * (scan.c), never an object. */
#define MARK_STACK (1u << 20)

/* How far the minor collection's scans prefetch ahead of themselves (about 12
 * small objects, as copy.c), and how many slots of each grey object. */
enum { PREFETCH_BYTES = 512, PREFETCH_REFS = 4 };

static inline int in_range(ha_off off, ha_off start, ha_off top)
{
    return off - start < top - start;
}

static inline uint64_t used(const ha_space *s)
{
    return s->top - s->start;
}

/* ---- the plan's state, checked before every call ---- */

static int card_aligned(ha_off start, ha_off end)
{
    return !((start | end) & (CARD - 1));
}

int ha_generational_check(const ha_collector *gc, ha_stats *st)
{
    const ha_generations *g = &gc->generations;
    const ha_space *nursery = &gc->spaces[HA_GEN_NURSERY];
    const ha_space whole = {nursery->start, g->nursery_end, nursery->top};
    int ok = g->cards && g->crossing && g->compaction &&
             g->ncards >= (gc->heap.size >> SHIFT) + 1 && g->tenure_age >= 1 &&
             g->tenure_age <= MAX_TENURE_AGE && g->copy_order <= HA_COPY_DEPTH_FIRST &&
             nursery->end <= g->nursery_end &&
             ha_space_ok(&gc->heap, &whole) && card_aligned(whole.start, whole.end);
    for (uint32_t i = 1; ok && i < gc->nspaces; i++)
        ok = card_aligned(gc->spaces[i].start, gc->spaces[i].end) &&
             ha_semispaces_ok(&gc->heap, &whole, &gc->spaces[i]);
    return ok ? HA_OK : ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
}

/* ---- the crossing map: where the object covering each old card begins ---- */

/* Record the object of `bytes` at `off` for every card whose first word it covers. */
static inline __attribute__((always_inline)) void
note_crossing(uint32_t *crossing, ha_off off, uint64_t bytes)
{
    for (uint64_t c = (off + CARD - 1) >> SHIFT; (c << SHIFT) < off + bytes; c++)
        crossing[c] = (uint32_t)(((c << SHIFT) - off) >> 3);
}

/* Give the old objects placed since the plan last looked (by a library user or
 * a test, bump-allocating into the old space) their crossing entries. */
static int update_crossing(ha_collector *gc, ha_stats *st)
{
    ha_generations *g = &gc->generations;
    const ha_space *old = &gc->spaces[HA_GEN_OLD];
    ha_off from = in_range(g->crossing_top, old->start, old->top + 1) ? g->crossing_top
                                                                       : old->start;
    ha_cursor c = ha_cursor_over(from, old->top);
    int rc = HA_OK;
    while (ha_next_object(&gc->heap, &c, &rc, st))
        note_crossing(g->crossing, c.off, ha_words(c.header) * 8);
    if (!rc)
        g->crossing_top = old->top;
    return rc;
}

/* Clear the cards of [start, end) (card-aligned). */
static void clear_cards(uint8_t *cards, ha_off start, ha_off end)
{
    memset(cards + (start >> SHIFT), 0, (end - start) >> SHIFT);
}

/* ---- minor collection: Cheney over the young generation ---- */

/* Everything the loop touches, by value, so that stores into the heap cannot
 * make the compiler reload it (as in copy.c). */
struct young {
    ha_heap h;
    ha_off nursery_start, nursery_top;   /* evacuated */
    ha_off survivor_start, survivor_top; /* evacuated */
    ha_off to_begin, to_top, to_end;     /* the survivor space being filled */
    ha_off promoted, old_top, old_end;   /* this collection's promotions: [promoted, old_top) */
    uint64_t tenure_age;
    uint8_t *cards;
    uint32_t *crossing;
    uint64_t objects, bytes, refs, dirty;
    ha_off copied;  /* the copy the last evacuate() made, or 0 */
    int overflowed; /* the depth-first stack was full: a copy went unscanned */
    int may_keep;   /* a young object the old space cannot take stays in place */
    struct kept *kept; /* those objects, in the order they were kept */
    size_t nkept, kept_capacity;
    ha_stats *st;
};

/* A young object kept in place by a promotion failure: forwarded to itself
 * until the collection ends, which restores the two words that took. */
struct kept {
    ha_off off;
    uint64_t header, first_word;
};

/* Whether `to`, the forwarding reference of the young object at `from` whose
 * header is `header`, names a copy this collection made, with room for the
 * object, or the object itself (kept in place). */
static inline int forwarded_ok(const struct young *y, ha_ref to, ha_off from, uint64_t header)
{
    uint64_t bytes = ha_words(header) * 8;
    ha_off off;
    if (!ha_decode(&y->h, to, &off) || to != ha_encode(&y->h, off))
        return 0;
    return (in_range(off, y->to_begin, y->to_top) && bytes <= y->to_top - off) ||
           (in_range(off, y->promoted, y->old_top) && bytes <= y->old_top - off) ||
           (off == from && y->nkept);
}

/* The old space cannot take the young object at `off`: keep it where it is,
 * forwarded to itself, for the scan of kept objects to visit its slots. */
static __attribute__((noinline)) int keep(struct young *y, uint64_t *obj, ha_off off,
                                          uint64_t header, ha_ref *slot, int64_t root)
{
    if (!y->may_keep)
        return ha_fail(y->st, HA_ERR_FULL, off, root);
    if (y->nkept == y->kept_capacity) {
        size_t capacity = y->kept_capacity ? 2 * y->kept_capacity : 1024;
        struct kept *grown = realloc(y->kept, capacity * sizeof *grown);
        if (!grown)
            return ha_fail(y->st, HA_ERR_NOMEM, off, root);
        y->kept = grown;
        y->kept_capacity = capacity;
    }
    y->kept[y->nkept++] = (struct kept){off, header, obj[1]};
    obj[0] = header | HA_FORWARDED;
    obj[1] = *slot = ha_encode(&y->h, off);
    y->copied = 0;
    return HA_OK;
}

/* Evacuate the young object `*slot` names, once, and point the slot at its copy:
 * in the survivor space, one year older, until it reaches the tenure age or the
 * survivor space is full; in the old space after that. */
static inline __attribute__((always_inline)) int
evacuate(struct young *y, ha_ref *slot, ha_off where, int64_t root)
{
    ha_ref ref = ha_load(slot);
    ha_off off, limit;
    y->copied = 0;
    if (ref == 0)
        return HA_OK;
    y->refs++;
    if (!ha_decode(&y->h, ref, &off))
        return ha_fail(y->st, HA_ERR_REF, where, root);
    if (in_range(off, y->nursery_start, y->nursery_top))
        limit = y->nursery_top;
    else if (in_range(off, y->survivor_start, y->survivor_top))
        limit = y->survivor_top;
    else
        return HA_OK; /* old, or a copy this collection made */
    uint64_t *obj = ha_deref(&y->h, ref, off);
    uint64_t header = ha_load(obj);
    if (!ha_header_ok(header, off, limit))
        return ha_fail(y->st, HA_ERR_HEADER, off, root);
    if (header & HA_FORWARDED) {
        ha_ref to = ha_load(&obj[1]);
        if (!forwarded_ok(y, to, off, header))
            return ha_fail(y->st, HA_ERR_HEADER, off, root);
        *slot = to;
        return HA_OK;
    }
    uint64_t bytes = ha_words(header) * 8, age = ha_age(header) + 1;
    ha_off copy;
    if (age < y->tenure_age && y->to_end - y->to_top >= bytes) {
        copy = y->to_top;
        y->to_top += bytes;
    } else {
        if (y->old_end - y->old_top < bytes)
            return keep(y, obj, off, header, slot, root);
        copy = y->old_top;
        y->old_top += bytes;
        note_crossing(y->crossing, copy, bytes);
        if (age > HA_AGE_MASK)
            age = HA_AGE_MASK;
    }
    uint64_t *dst = ha_at(&y->h, copy);
    ha_copy_words(dst, (const uint64_t *)(uintptr_t)(y->h.load_base + off), bytes);
    dst[0] = ha_with_age(header, age); /* the header checked, whatever the load view held */
    obj[0] = header | HA_FORWARDED;
    obj[1] = *slot = ha_encode(&y->h, copy);
    y->copied = copy;
    y->objects++;
    y->bytes += bytes;
    return HA_OK;
}

static inline __attribute__((always_inline)) int
evacuate_slot(void *y, uint64_t *slot, ha_off where)
{
    return evacuate(y, slot, where, -1);
}

/* A slot of an old object: evacuate its referent, and dirty the slot's card if
 * the referent is still young (a survivor), so the next minor collection finds
 * the slot again. */
static inline __attribute__((always_inline)) int
evacuate_old_slot(void *ctx, uint64_t *slot, ha_off where)
{
    struct young *y = ctx;
    int rc = evacuate(y, slot, where, -1);
    ha_off off;
    ha_ref ref = *slot;
    if (!rc && ref && ha_decode(&y->h, ref, &off) && in_range(off, y->to_begin, y->to_top))
        y->cards[where >> SHIFT] = 1;
    return rc;
}

/* Forward the slots of the copy at `*grey` (below `top`), then step past it. */
static inline __attribute__((always_inline)) int
scan(struct young *y, ha_off *grey, ha_off top, ha_slot_visitor visit)
{
    uint64_t *obj = ha_at(&y->h, *grey);
    uint64_t header = ha_load(obj);
    if (!ha_header_ok(header, *grey, top))
        return ha_fail(y->st, HA_ERR_HEADER, *grey, -1);
    int rc = ha_visit_slots(obj, *grey, header, visit, y);
    if (!rc)
        *grey += ha_words(header) * 8;
    return rc;
}

/* Forward the slots of the kept object number `i`; its first word is on the
 * side while the object is forwarded to itself. */
static int scan_kept(struct young *y, size_t i)
{
    ha_off off = y->kept[i].off;
    uint64_t header = y->kept[i].header;
    if (!ha_nrefs(header))
        return HA_OK;
    ha_ref first = y->kept[i].first_word; /* evacuate may grow (move) the array */
    int rc = evacuate(y, &first, off + 8, -1);
    y->kept[i].first_word = first;
    return rc ? rc : ha_visit_slot_range(ha_at(&y->h, off), off, header, 2, ha_nrefs(header) + 1,
                                         evacuate_slot, y);
}

/* Give the kept objects their own two words back, failed or not. */
static void restore_kept(struct young *y)
{
    for (size_t i = 0; i < y->nkept; i++) {
        uint64_t *obj = ha_at(&y->h, y->kept[i].off);
        obj[0] = y->kept[i].header;
        obj[1] = y->kept[i].first_word;
    }
}

/* Keep `*ahead` PREFETCH_BYTES past the scan at `grey`, prefetching as it goes. */
static inline __attribute__((always_inline)) void
scan_ahead(const struct young *y, ha_off grey, ha_off *ahead, ha_off top)
{
    if (*ahead < grey)
        *ahead = grey;
    while (*ahead < top && *ahead - grey < PREFETCH_BYTES)
        ha_prefetch_referents(&y->h, ahead, top, PREFETCH_REFS);
}

/* Whether none of the 8 cards from `c` is dirty. */
static inline int eight_clean(const uint8_t *cards, uint64_t c)
{
    uint64_t eight;
    memcpy(&eight, cards + c, 8);
    return eight == 0;
}

/* ---- depth-first copy order: pre-order, as a recursive copy would ---- */

/* Frames of the explicit stack: a copy, and the next of its slots to evacuate. A
 * deeper graph overflows it; the copies it could not take are scanned by a
 * Cheney sweep over every copy afterwards (scanning a copy twice is harmless:
 * its slots already name copies). */
enum { DEPTH_FRAMES = 1024 };

struct frame {
    ha_off obj;
    uint32_t slot, nrefs;
    int old; /* a promoted copy: its slots that stay young dirty their cards */
};

/* Push the copy evacuate() just made, if any. */
static inline __attribute__((always_inline)) int
push_copy(struct young *y, struct frame *stack, unsigned *depth)
{
    ha_off copy = y->copied;
    if (!copy)
        return HA_OK;
    if (*depth == DEPTH_FRAMES) {
        y->overflowed = 1;
        return HA_OK;
    }
    uint64_t header = ha_load(ha_at(&y->h, copy));
    int old = in_range(copy, y->promoted, y->old_top);
    if (!ha_header_ok(header, copy, old ? y->old_top : y->to_top))
        return ha_fail(y->st, HA_ERR_HEADER, copy, -1);
    stack[(*depth)++] = (struct frame){copy, 1, (uint32_t)ha_nrefs(header), old};
    return HA_OK;
}

/* Evacuate everything the copy y->copied reaches, depth first. */
static inline __attribute__((always_inline)) int
copy_depth_first(struct young *y, struct frame *stack)
{
    unsigned depth = 0;
    int rc = push_copy(y, stack, &depth);
    while (!rc && depth) {
        struct frame *top = &stack[depth - 1];
        if (top->slot > top->nrefs) {
            depth--;
            continue;
        }
        ha_off where = top->obj + 8 * top->slot++;
        uint64_t *slot = ha_at(&y->h, where);
        rc = top->old ? evacuate_old_slot(y, slot, where) : evacuate_slot(y, slot, where);
        if (!rc)
            rc = push_copy(y, stack, &depth);
    }
    return rc;
}

/* A slot in a dirty card: evacuate its referent, depth first if there is a stack. */
struct card_visit {
    struct young *y;
    struct frame *stack;
};

static inline __attribute__((always_inline)) int
evacuate_card_slot(void *ctx, uint64_t *slot, ha_off where)
{
    struct card_visit *visit = ctx;
    int rc = evacuate_old_slot(visit->y, slot, where);
    return rc || !visit->stack ? rc : copy_depth_first(visit->y, visit->stack);
}

/* The remembered set: evacuate what the old objects' slots in dirty cards of
 * [start, top) refer to. Each dirty card is cleaned, and dirtied again if a slot
 * in it still refers to a young object. With a stack, each referent is copied
 * depth first, with what it reaches, before the next slot. */
static int scan_cards(struct young *y, ha_off start, ha_off top, struct frame *stack)
{
    int rc = HA_OK;
    struct card_visit visit = {y, stack};
    if (top <= start)
        return HA_OK;
    uint64_t last = (top - 1) >> SHIFT;
    for (uint64_t c = start >> SHIFT; !rc && c <= last; c++) {
        if (!(c & 7) && last - c >= 7 && eight_clean(y->cards, c)) {
            c += 7;
            continue;
        }
        if (!y->cards[c])
            continue;
        y->cards[c] = 0;
        y->dirty++;
        ha_off card = c << SHIFT, end = card + CARD < top ? card + CARD : top;
        uint64_t back = (uint64_t)y->crossing[c] * 8;
        if (back > card - start)
            return ha_fail(y->st, HA_ERR_HEADER, card, -1);
        ha_cursor cur = ha_cursor_over(card - back, top);
        while (!rc && ha_next_object(&y->h, &cur, &rc, y->st) && cur.off < end)
            rc = ha_visit_slot_range(ha_at(&y->h, cur.off), cur.off, cur.header,
                                     card > cur.off ? (card - cur.off) / 8 : 0,
                                     (end - cur.off) / 8, evacuate_card_slot, &visit);
    }
    return rc;
}

/* A root, in the depth-first order: evacuate it, then what its copy reaches. */
static inline __attribute__((always_inline)) int
evacuate_deep(struct young *y, struct frame *stack, ha_ref *slot, int64_t root)
{
    int rc = evacuate(y, slot, 0, root);
    return rc ? rc : copy_depth_first(y, stack);
}

/* The minor collection's loop: roots, then dirty cards, then the copies in the
 * survivor space and the promoted ones, until both scans catch up (Cheney). In
 * depth-first order, each root's and each card slot's referent is copied with
 * everything it reaches before the next; the Cheney scans then run only if the
 * depth-first stack overflowed. */
static inline __attribute__((always_inline)) int
evacuate_young(struct young *y, ha_ref *roots, size_t nroots, ha_off old_start, uint32_t encoding,
               struct frame *stack)
{
    int rc = HA_OK;
    ha_off grey_young = y->to_top, grey_old = y->old_top;
    y->h.encoding = encoding;
    for (size_t i = 0; i < nroots && !rc; i++)
        rc = stack ? evacuate_deep(y, stack, &roots[i], (int64_t)i)
                   : evacuate(y, &roots[i], 0, (int64_t)i);
    if (!rc)
        rc = scan_cards(y, old_start, y->promoted, stack);
    if (stack && !y->overflowed && !y->nkept)
        return rc;
    /* The young objects lie in allocation order, not the scan's: what each grey
     * object references is prefetched a little ahead of the scan, as copy.c does
     * (the first minor collection of GCBench at 2x its minimum heap: 9.3-10.1 ms
     * without, 8.1-8.3 with). */
    ha_off ahead_young = grey_young, ahead_old = grey_old;
    size_t grey_kept = 0;
    while (!rc && (grey_young < y->to_top || grey_old < y->old_top || grey_kept < y->nkept)) {
        while (!rc && grey_young < y->to_top) {
            scan_ahead(y, grey_young, &ahead_young, y->to_top);
            rc = scan(y, &grey_young, y->to_top, evacuate_slot);
        }
        while (!rc && grey_old < y->old_top) {
            scan_ahead(y, grey_old, &ahead_old, y->old_top);
            rc = scan(y, &grey_old, y->old_top, evacuate_old_slot);
        }
        while (!rc && grey_kept < y->nkept)
            rc = scan_kept(y, grey_kept++);
    }
    return rc;
}

/* Whether the old space can take every young object. */
static int promotion_fits(const ha_collector *gc)
{
    const ha_space *old = &gc->spaces[HA_GEN_OLD];
    return old->end - old->top >=
           used(&gc->spaces[HA_GEN_NURSERY]) + used(&gc->spaces[HA_GEN_SURVIVOR]);
}

/* The promotion estimate (HotSpot's for Serial: a weighted average of the bytes
 * each minor collection promoted, weight 10%, padded by three mean deviations). */
enum { PROMOTED_WEIGHT_PERCENT = 10, PROMOTED_PADDING = 3 };

static void note_promoted(ha_generations *g, uint64_t bytes)
{
    int64_t error = (int64_t)bytes - (int64_t)g->promoted_average;
    g->promoted_average += error * PROMOTED_WEIGHT_PERCENT / 100;
    int64_t deviation = (error < 0 ? -error : error) - (int64_t)g->promoted_deviation;
    g->promoted_deviation += deviation * PROMOTED_WEIGHT_PERCENT / 100;
}

/* Whether a minor collection is worth attempting when the nursery fills: the
 * old space has room for the padded estimate, or for every young object. */
static int minor_is_safe(const ha_collector *gc)
{
    const ha_generations *g = &gc->generations;
    const ha_space *old = &gc->spaces[HA_GEN_OLD];
    return !used(&gc->spaces[HA_GEN_SURVIVOR_TO]) &&
           (promotion_fits(gc) || old->end - old->top >= g->promoted_average +
                                                          PROMOTED_PADDING * g->promoted_deviation);
}

/* A minor collection. Unless `may_fail_promotion`, it runs only when the old
 * space can take every young object. Otherwise the young objects the old space
 * cannot take stay where they are, the collection completes, *failed is set,
 * and the spaces are left as they are for a full collection to follow. */
static int minor(ha_collector *gc, ha_ref *roots, size_t nroots, int may_fail_promotion,
                 int *failed, ha_stats *st)
{
    ha_generations *g = &gc->generations;
    ha_space *nursery = &gc->spaces[HA_GEN_NURSERY], *old = &gc->spaces[HA_GEN_OLD];
    ha_space *survivor = &gc->spaces[HA_GEN_SURVIVOR], *to = &gc->spaces[HA_GEN_SURVIVOR_TO];
    *failed = 0;
    if (used(to))
        return ha_fail(st, HA_ERR_ARGUMENT, to->start, -1); /* only a full collection empties it */
    if (!may_fail_promotion && !promotion_fits(gc))
        return ha_fail(st, HA_ERR_FULL, old->top, -1);
    int rc = update_crossing(gc, st);
    if (rc)
        return rc;
    struct frame *stack = NULL;
    if (g->copy_order == HA_COPY_DEPTH_FIRST && !(stack = malloc(DEPTH_FRAMES * sizeof *stack)))
        return ha_fail(st, HA_ERR_NOMEM, 0, -1);
    struct young y = {
        .h = gc->heap, .nursery_start = nursery->start, .nursery_top = nursery->top,
        .survivor_start = survivor->start, .survivor_top = survivor->top,
        .to_begin = to->top, .to_top = to->top, .to_end = to->end,
        .promoted = old->top, .old_top = old->top, .old_end = old->end,
        .tenure_age = g->tenure_age, .cards = g->cards, .crossing = g->crossing,
        .may_keep = may_fail_promotion, .st = st,
    };
    /* one loop per encoding, each with the encoding a constant */
    HA_WITH_ENCODING(gc->heap.encoding, E,
                     rc = evacuate_young(&y, roots, nroots, old->start, E, stack));
    free(stack);
    restore_kept(&y);
    free(y.kept);
    st->objects += y.objects;
    st->bytes += y.bytes;
    st->refs += y.refs;
    st->cards += y.dirty;
    /* Failed or not, every space keeps parsing: the copies made lie below the tops. */
    to->top = y.to_top;
    old->top = g->crossing_top = y.old_top;
    if (rc)
        return rc;
    note_promoted(g, y.old_top - y.promoted);
    g->minor_collections++;
    if (y.nkept) {
        g->promotion_failures++;
        *failed = 1;
        return HA_OK;
    }
    nursery->top = nursery->start;
    survivor->top = survivor->start;
    ha_space emptied = *survivor;
    *survivor = *to;
    *to = emptied;
    clear_cards(g->cards, nursery->start, g->nursery_end);
    clear_cards(g->cards, survivor->start, survivor->end);
    clear_cards(g->cards, to->start, to->end);
    return HA_OK;
}

/* ---- full collection: mark, then compact every live object into the old space ---- */

/* The compaction table (ha_generations.compaction) is liveness.h's: two words
 * per 512-byte block (a card), its live words' bitmap and where they move. */
_Static_assert(HA_LIVE_BLOCK_SHIFT == HA_CARD_SHIFT, "a table block is a card");

static inline int live_word(uint64_t *table, ha_off off)
{
    return (ha_live_block(table, off)[0] >> ((off >> 3) & 63)) & 1;
}

/* Where the live object at `off` moves: its block's destination, plus the live
 * words before it in the block. */
static inline ha_off destination(uint64_t *table, ha_off off)
{
    const uint64_t *b = ha_live_block(table, off);
    return b[1] + 8 * (uint64_t)__builtin_popcountll(b[0] & ((1ULL << ((off >> 3) & 63)) - 1));
}

/* The first live word in [off, top), or top. */
static inline ha_off next_live(uint64_t *table, ha_off off, ha_off top)
{
    while (off < top) {
        uint64_t bits = ha_live_block(table, off)[0] >> ((off >> 3) & 63);
        if (bits) {
            off += 8 * (uint64_t)__builtin_ctzll(bits);
            return off < top ? off : top;
        }
        off = ((off >> SHIFT) + 1) << SHIFT;
    }
    return top;
}

struct compactor {
    ha_heap h;
    uint64_t *table;
    uint64_t refs;
    ha_stats *st;
};

/* The heap walk over live objects only: ha_next_object, stepping by the bitmap.
 * A live word that does not start a valid, marked header is corruption. */
static inline __attribute__((always_inline)) int
next_live_object(const struct compactor *k, ha_cursor *c, int *rc)
{
    c->off = next_live(k->table, c->next, c->top);
    if (c->off >= c->top)
        return 0;
    __builtin_prefetch(ha_at(&k->h, c->off + HA_PREFETCH_AHEAD)); /* see ha_walk */
    c->header = ha_load(ha_at(&k->h, c->off));
    if (!ha_header_ok(c->header, c->off, c->top) || !(c->header & HA_MARKED)) {
        *rc = ha_fail(k->st, HA_ERR_HEADER, c->off, -1);
        return 0;
    }
    c->next = c->off + ha_words(c->header) * 8;
    return 1;
}

static inline __attribute__((always_inline)) int
update(struct compactor *k, ha_ref *slot, ha_off where, int64_t root)
{
    ha_ref ref = ha_load(slot);
    ha_off off;
    if (ref == 0)
        return HA_OK;
    k->refs++;
    if (!ha_decode(&k->h, ref, &off))
        return ha_fail(k->st, HA_ERR_REF, where, root);
    if (!live_word(k->table, off))
        return ha_fail(k->st, HA_ERR_NOT_OBJECT, where, root);
    *slot = ha_encode(&k->h, destination(k->table, off));
    return HA_OK;
}

static inline __attribute__((always_inline)) int
update_slot(void *k, uint64_t *slot, ha_off where)
{
    return update(k, slot, where, -1);
}

/* Slide `bytes` from src down to dst (dst <= src, or apart). */
static inline void slide_words(uint64_t *dst, const uint64_t *src, uint64_t bytes)
{
    if (bytes <= 64) { /* a forward copy is safe when dst <= src */
        for (uint64_t i = 0; i < bytes / 8; i++)
            dst[i] = src[i];
        return;
    }
    memmove(dst, src, bytes);
}

/* Mark what the roots reach, in every space, in the headers and in the table's
 * bitmaps (scan.c's ha_mark_live); `marked` gets the live objects and bytes. */
static int mark_live(ha_collector *gc, const ha_ref *roots, size_t nroots, ha_stats *marked,
                     ha_stats *st)
{
    ha_ref *stack = malloc(MARK_STACK * sizeof *stack);
    if (!stack)
        return ha_fail(st, HA_ERR_NOMEM, 0, -1);
    int rc = ha_mark_live(&gc->heap, gc->spaces, gc->nspaces, roots, nroots, stack, MARK_STACK,
                          gc->generations.compaction, marked);
    free(stack);
    if (rc)
        ha_fail(st, rc, marked->error_offset, marked->error_root);
    return rc;
}

/* Empty the table's blocks for the spaces, whatever the collection did. */
static void clear_table(uint64_t *table, ha_space *const order[], int n)
{
    for (int i = 0; i < n; i++)
        if (used(order[i]))
            memset(ha_live_block(table, order[i]->start), 0,
                   16 * (((order[i]->top - 1) >> SHIFT) - (order[i]->start >> SHIFT) + 1));
}

/* After a failure: clear the marks of the live objects. */
static void unmark(struct compactor *k, ha_space *const order[], int n)
{
    int rc = HA_OK;
    for (int i = 0; i < n && !rc; i++) {
        ha_cursor c = ha_cursor_of(order[i]);
        while (next_live_object(k, &c, &rc))
            *ha_at(&k->h, c.off) = c.header & ~HA_MARKED;
    }
}

static int full(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st)
{
    ha_generations *g = &gc->generations;
    ha_space *old = &gc->spaces[HA_GEN_OLD];
    /* The old space's objects first: each slides down or stays, and the young
     * ones land behind the last of them. */
    ha_space *const order[4] = {old, &gc->spaces[HA_GEN_SURVIVOR],
                                &gc->spaces[HA_GEN_SURVIVOR_TO], &gc->spaces[HA_GEN_NURSERY]};
    struct compactor k = {.h = gc->heap, .table = g->compaction, .st = st};
    ha_stats marked;
    int rc = mark_live(gc, roots, nroots, &marked, st);
    if (rc) {
        for (int i = 0; i < 4; i++) /* as far as each space parses */
            ha_clear_marks(&gc->heap, order[i], &marked);
        clear_table(k.table, order, 4);
        return rc;
    }
    uint64_t objects = marked.objects;
    if (marked.bytes > old->end - old->start) { /* nothing has moved: the graph is whole */
        unmark(&k, order, 4);
        clear_table(k.table, order, 4);
        return ha_fail(st, HA_ERR_FULL, old->end, -1);
    }
    ha_off to = old->start;
    for (int i = 0; i < 4; i++)
        for (ha_off b = order[i]->start; b < order[i]->top; b += CARD) {
            ha_live_block(k.table, b)[1] = to;
            to += 8 * (uint64_t)__builtin_popcountll(ha_live_block(k.table, b)[0]);
        }
    for (size_t i = 0; i < nroots && !rc; i++)
        rc = update(&k, &roots[i], 0, (int64_t)i);
    /* One pass updates each object's references and slides it: a new address
     * comes from the table, never from the referent, so it does not matter
     * whether the referent has moved yet. */
    to = old->start;
    uint64_t moved = 0;
    for (int i = 0; i < 4 && !rc; i++) {
        ha_cursor c = ha_cursor_of(order[i]);
        while (!rc && next_live_object(&k, &c, &rc)) {
            uint64_t bytes = ha_words(c.header) * 8, *dst = ha_at(&k.h, to);
            if (bytes > old->end - to) { /* a header that grew since it was counted */
                rc = ha_fail(st, HA_ERR_HEADER, c.off, -1);
                break;
            }
            if ((rc = ha_visit_slots(ha_at(&k.h, c.off), c.off, c.header, update_slot, &k)))
                break;
            if (to != c.off) /* a dense prefix of the old space stays where it is */
                slide_words(dst, ha_at(&k.h, c.off), bytes);
            dst[0] = c.header & ~HA_MARKED;
            note_crossing(g->crossing, to, bytes);
            moved += to != c.off ? bytes : 0;
            to += bytes;
        }
    }
    clear_table(k.table, order, 4);
    st->objects += objects;
    st->bytes += moved;
    st->refs += k.refs;
    if (rc) /* only a heap changed under the plan gets here: see docs/collectors */
        return rc;
    old->top = g->crossing_top = to;
    for (int i = 1; i < 4; i++)
        order[i]->top = order[i]->start;
    memset(g->cards, 0, g->ncards); /* no young object is left to remember */
    g->full_collections++;
    return HA_OK;
}

/* ---- the hooks ---- */

int ha_generational_alloc_slow(ha_collector *gc, ha_ref *roots, size_t nroots, uint64_t bytes,
                               ha_stats *st)
{
    ha_space *nursery = &gc->spaces[HA_GEN_NURSERY];
    int rc = ha_begin(&gc->heap, st);
    if (rc)
        return ha_end(st, rc);
    if (bytes > gc->generations.nursery_end - nursery->start) /* no collection makes room */
        return ha_end(st, ha_fail(st, HA_ERR_FULL, nursery->top, -1));
    int failed = 1; /* a promotion failure: a full collection follows at once */
    if (minor_is_safe(gc))
        rc = minor(gc, roots, nroots, 1, &failed, st);
    if (!rc && failed)
        rc = full(gc, roots, nroots, st);
    nursery->end = gc->generations.nursery_end;
    if (!rc && nursery->end - nursery->top < bytes)
        rc = ha_fail(st, HA_ERR_FULL, nursery->top, -1);
    return ha_end(st, rc);
}

int ha_generational_collect(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st)
{
    int rc = ha_begin(&gc->heap, st);
    if (!rc)
        rc = full(gc, roots, nroots, st);
    return ha_end(st, rc);
}

int ha_generational_collect_young(ha_collector *gc, ha_ref *roots, size_t nroots,
                                  ha_stats *st)
{
    int failed, rc = ha_begin(&gc->heap, st);
    if (!rc)
        rc = minor(gc, roots, nroots, 0, &failed, st);
    return ha_end(st, rc);
}
