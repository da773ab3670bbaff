/* The colored design (ZGC before JDK 21, and with masked references
 * generational ZGC's way of reading them): objects move while the mutator
 * runs, and a load barrier keeps the mutator from ever seeing an old copy.
 *
 * A cycle:
 * 1. Flip (a pause, O(1)): the allocation space becomes from-space, the other
 *    to-space; the good color advances, so every reference in the heap and the
 *    roots is now bad.
 * 2. Relocate and remap (beside the mutator): the collector heals the roots,
 *    then scans to-space in address order. Each slot holding a bad reference
 *    gets the good reference to the object's copy, which it makes if nobody
 *    has yet, in its allocation buffer in to-space, so the scan reaches it in
 *    turn. The mutator's load barrier does the same to each slot (roots too)
 *    it loads a bad reference from. The mutator stores only good references
 *    (everything it holds came through the barrier), so a scanned object
 *    stays good.
 * 3. End (a pause): once the scan has met the top of to-space with the mutator
 *    parked, no bad reference is left anywhere the mutator can reach, and
 *    from-space is garbage. It is zeroed (after the pause): to-space must be
 *    zero above its top, so that a header not yet published reads as 0.
 *
 * Two threads may copy one object: each copies it to its own buffer, then
 * tries to swing the old header to a "moved" header naming its copy with one
 * compare-and-swap. The loser turns its copy into a dead filler object and
 * takes the winner's. A dereference goes through the view of the reference's
 * own color (colored encoding), or strips the color (masked encoding): the
 * heap's encoding decides, the code is the same. */
#include "concurrent.h"

int ha_lab_refill(struct ha_conc *c, const ha_heap *h, ha_lab *lab, uint64_t bytes, ha_stats *st)
{
    ha_lab_retire(h, lab);
    ha_off at = HA_ATOMIC_LOAD(&c->to_top), end;
    do {
        if (at > c->to_end || c->to_end - at < bytes) {
            ha_conc_fail(c, ha_fail(st, HA_ERR_FULL, at, -1));
            return 0;
        }
        /* Near the end, exactly what is asked: a buffer would strand room another needs. */
        end = c->to_end - at < 2 * HA_LAB_BYTES ? at + bytes : at + HA_LAB_BYTES;
    } while (!__atomic_compare_exchange_n(&c->to_top, &at, end, 1, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    *lab = (ha_lab){.top = at, .end = end};
    for (ha_off line = at & ~63ULL; line < at + HA_LAB_LEAD && line < end; line += 64)
        __builtin_prefetch(ha_at(h, line), 1);
    return 1;
}

ha_ref ha_colored_relocate(struct ha_conc *c, const ha_heap *h, ha_ref ref, ha_lab *lab,
                           uint64_t *bytes, uint64_t *objects, ha_stats *st)
{
    ha_off off;
    if (!ha_decode(h, ref, &off)) {
        ha_conc_fail(c, ha_fail(st, HA_ERR_REF, 0, -1));
        return 0;
    }
    if (off < c->from_start || off >= c->from_top)
        return ha_encode(h, off); /* not being relocated: only its color was stale */
    uint64_t *obj = ha_deref(h, ref, off);
    uint64_t header = __atomic_load_n(obj, __ATOMIC_ACQUIRE);
    for (;;) {
        if (ha_is_moved(header)) {
            ha_off to = header & HA_MOVED_MASK;
            if (to < c->to_start || to >= c->to_end || (to & 7)) {
                ha_conc_fail(c, ha_fail(st, HA_ERR_HEADER, off, -1));
                return 0;
            }
            return ha_encode(h, to);
        }
        if (!ha_header_ok(header, off, c->from_top)) {
            ha_conc_fail(c, ha_fail(st, HA_ERR_HEADER, off, -1));
            return 0;
        }
        uint64_t size = ha_words(header) * 8;
        ha_off at = ha_lab_reserve(c, h, lab, size, st);
        if (!at)
            return 0;
        uint64_t *copy = ha_at(h, at);
        if (size <= 64) /* small objects: an inlined loop beats a memcpy call */
            for (uint64_t i = 1; i < size / 8; i++)
                copy[i] = obj[i];
        else
            memcpy(copy + 1, obj + 1, size - 8);
        __atomic_store_n(copy, header, __ATOMIC_RELEASE);
        if (__atomic_compare_exchange_n(obj, &header, ha_moved_header(at), 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            *bytes += size;
            *objects += 1;
            return ha_encode(h, at);
        }
        /* Lost the race: `header` now names the winner's copy; ours is dead. */
        __atomic_store_n(copy, ha_make_header(size / 8, 0), __ATOMIC_RELEASE);
    }
}


/* The header at `off` in to-space once its writer has published it; 0 if the
 * run failed meanwhile (a reservation past the end is never published). An
 * unpublished header is the rest of an allocation buffer: the collector's own
 * (the scan has caught up with its copies), which it retires, or the
 * mutator's, which it asks the mutator to retire. */
static uint64_t published_header(struct ha_conc *c, const ha_heap *h, ha_lab *lab, ha_off off)
{
    const uint64_t *word = ha_at(h, off);
    uint64_t header = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    if (header)
        return header;
    if (off == lab->top && lab->top < lab->end)
        ha_lab_retire(h, lab);
    else
        HA_ATOMIC_STORE(&c->retire_lab, 1);
    for (unsigned spins = 0; !(header = __atomic_load_n(word, __ATOMIC_ACQUIRE)); spins++) {
        if (HA_ATOMIC_LOAD(&c->failed))
            return 0;
        if (spins > 1000)
            sched_yield();
    }
    return header;
}

enum { PREFETCH_OBJECTS = 12, PREFETCH_REFS = 4 };

/* Prefetch the from-space headers the published object at `*ahead` refers to
 * with a bad color, and step past it (or a filler); stop (leave *ahead) at an
 * unpublished or bad header, which the scan itself will wait for or report.
 * Prefetches never fault, so the references need no checks. */
static inline void prefetch_ahead(const struct ha_conc *c, const ha_heap *h, uint32_t good,
                                  ha_off *ahead)
{
    const uint64_t *obj = ha_at(h, *ahead);
    uint64_t header = __atomic_load_n(obj, __ATOMIC_ACQUIRE);
    if (ha_filler_ok(header, *ahead, c->to_end)) {
        *ahead += ha_words(header) * 8;
        return;
    }
    if (!ha_header_ok(header, *ahead, c->to_end))
        return;
    for (uint64_t i = 1; i <= ha_nrefs(header) && i <= PREFETCH_REFS; i++) {
        ha_ref ref = ha_load(&obj[i]);
        if (ref && !ha_has_color(h, ref, good))
            __builtin_prefetch(ha_prefetch_address(h, ref));
    }
    *ahead += ha_words(header) * 8;
}

/* Scan to-space from `*scan` to its current top, healing every bad slot and
 * copying into `lab`; the objects ahead of the scan have their referents
 * prefetched, as in Cheney's loop (copy.c), since from-space is read in no
 * particular order. */
static int scan_to_space(struct ha_conc *c, ha_lab *lab, ha_off *scan)
{
    const ha_heap *h = &c->gc->heap;
    uint32_t good = h->store_color;
    ha_off ahead = *scan, top;
    unsigned lead = 0; /* objects from the scan to `ahead` */
    while (*scan < (top = HA_ATOMIC_LOAD(&c->to_top))) {
        for (; lead < PREFETCH_OBJECTS && ahead < top; lead++) {
            ha_off was = ahead;
            prefetch_ahead(c, h, good, &ahead);
            if (ahead == was)
                break;
        }
        uint64_t *obj = ha_at(h, *scan), header = published_header(c, h, lab, *scan);
        if (!header)
            return HA_ATOMIC_LOAD(&c->failed);
        if (ha_filler_ok(header, *scan, c->to_end)) {
            /* nothing to scan */
        } else if (!ha_header_ok(header, *scan, c->to_end)) {
            return ha_conc_fail(c, ha_fail(c->st, HA_ERR_HEADER, *scan, -1));
        } else {
            for (uint64_t i = 1; i <= ha_nrefs(header); i++) {
                ha_ref ref = ha_load(&obj[i]);
                if (!ref || ha_has_color(h, ref, good))
                    continue;
                ha_ref healed = ha_colored_relocate(c, h, ref, lab, &c->run->bytes_relocated,
                                                    &c->run->objects_relocated, c->st);
                if (!healed)
                    return HA_ATOMIC_LOAD(&c->failed);
                ha_conc_delay(c); /* a slowed collector, for the slow path's sake */
                /* A failed exchange means the mutator stored a good reference there.
                 * Release: the mutator reads the copy through this slot. */
                __atomic_compare_exchange_n(&obj[i], &ref, healed, 0, __ATOMIC_RELEASE,
                                            __ATOMIC_RELAXED);
            }
        }
        *scan += ha_words(header) * 8;
        if (ahead <= *scan) {
            ahead = *scan;
            lead = 0;
        } else {
            lead--;
        }
    }
    return HA_OK;
}

/* Before the mutator starts, make the heap what a cycle expects:
 * - every reference in the allocation space and the roots of the good color: a
 *   heap left by another run, or built by hand, may hold any mix of colors, and
 *   a stale reference that happened to carry the next good color would escape
 *   the barrier;
 * - every byte past each space's top zero: a cycle tells an object not yet
 *   published by its zero header, and old bytes there would read as headers.
 *   Each cycle then zeroes what it leaves behind in from-space. */
static int prepare(struct ha_conc *c)
{
    for (uint32_t i = 0; i < 2; i++) {
        const ha_space *s = &c->gc->spaces[i];
        memset(ha_at(&c->gc->heap, s->top), 0, s->end - s->top);
    }
    const ha_heap *h = &c->gc->heap;
    ha_cursor cursor = ha_cursor_of(&c->gc->spaces[0]);
    int rc = HA_OK;
    ha_off off;
    while (ha_next_object(h, &cursor, &rc, c->st)) {
        uint64_t *obj = ha_at(h, cursor.off);
        for (uint64_t i = 1; i <= ha_nrefs(cursor.header); i++) {
            ha_ref ref = ha_load(&obj[i]);
            if (ref && !ha_decode(h, ref, &off))
                return ha_fail(c->st, HA_ERR_REF, cursor.off + 8 * i, -1);
            if (ref)
                obj[i] = ha_encode(h, off);
        }
    }
    for (size_t i = 0; !rc && i < c->nroots; i++) {
        if (c->roots[i] && !ha_decode(h, c->roots[i], &off))
            return ha_fail(c->st, HA_ERR_REF, 0, (int64_t)i);
        if (c->roots[i])
            c->roots[i] = ha_encode(h, off);
    }
    return rc;
}

/* The flip: a pause that moves the good color on, so that every reference in
 * the heap and the roots turns bad at once, and swaps the spaces. The roots are
 * healed after it (heal_roots), as JDK 16's ZGC processes thread stacks after
 * its pause (JEP 376): the mutator loads a root through its barrier too. */
static void flip(struct ha_conc *c)
{
    ha_collector *gc = c->gc;
    ha_space from = gc->spaces[0], to = gc->spaces[1];
    c->from_start = from.start;
    c->from_top = from.top;
    c->to_start = to.start;
    c->to_end = to.end;
    HA_ATOMIC_STORE(&c->to_top, to.start);
    gc->heap.store_color = (gc->heap.store_color + 1) % gc->heap.ncolors;
    ha_conc_flip_spaces(c);
}

/* Heal every bad root, racing the mutator's barrier as for any slot. */
static int heal_roots(struct ha_conc *c, ha_lab *lab)
{
    const ha_heap *h = &c->gc->heap;
    for (size_t i = 0; i < c->nroots; i++) {
        ha_ref root = HA_ATOMIC_LOAD(&c->roots[i]);
        if (root && !ha_has_color(h, root, h->store_color))
            __builtin_prefetch(ha_prefetch_address(h, root));
    }
    for (size_t i = 0; i < c->nroots; i++) {
        ha_ref root = HA_ATOMIC_LOAD(&c->roots[i]);
        if (!root || ha_has_color(h, root, h->store_color))
            continue;
        ha_ref healed = ha_colored_relocate(c, h, root, lab, &c->run->bytes_relocated,
                                            &c->run->objects_relocated, c->st);
        if (!healed)
            return HA_ATOMIC_LOAD(&c->failed);
        __atomic_compare_exchange_n(&c->roots[i], &root, healed, 0, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED);
    }
    return HA_OK;
}

static int colored_cycle(struct ha_conc *c)
{
    ha_collector *gc = c->gc;
    if (gc->heap.encoding < HA_REF_COLORED || gc->heap.ncolors < 2)
        return ha_conc_fail(c, ha_fail(c->st, HA_ERR_ARGUMENT, 0, -1));
    ha_lab lab = {0};
    int parked = ha_conc_stop_mutator(c);
    flip(c);
    if (parked)
        ha_conc_release_mutator(c);
    int rc = heal_roots(c, &lab);
    ha_off scan = c->to_start;
    while (!rc) {
        if ((rc = scan_to_space(c, &lab, &scan)))
            break;
        parked = ha_conc_stop_mutator(c);
        int finished = scan == HA_ATOMIC_LOAD(&c->to_top);
        if (finished) { /* nothing left to scan, and the mutator is parked */
            gc->spaces[0].top = HA_ATOMIC_LOAD(&c->to_top);
            c->relocating = 0;
            rc = ha_conc_verify(c);
        }
        if (parked)
            ha_conc_release_mutator(c);
        if (finished || rc)
            break;
    }
    if (rc)
        return rc;
    ha_space *from = &gc->spaces[1];
    memset(ha_at(&gc->heap, from->start), 0, from->top - from->start);
    from->top = from->start;
    return HA_OK;
}

const ha_design_ops ha_design_colored = {.name = "colored", .prepare = prepare,
                                         .cycle = colored_cycle};
