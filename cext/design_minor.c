/* The minor design: a page-trap read barrier (Appel, Ellis and Li, 1988) made
 * of userfaultfd MINOR faults over two views of one memfd. The mutator's code
 * has no barrier at all; the kernel traps its first touch of every to-space
 * page the collector has not yet made safe, and the collector makes the page
 * safe through its own view before mapping that same page into the mutator's.
 *
 * The invariant: every to-space page the mutator can touch holds only
 * references to to-space, and no object that is still to be scanned will ever
 * be placed on it. A cycle:
 *
 * 1. Before the pause: the mutator's view of to-space (garbage until now) is
 *    zapped (MADV_DONTNEED: the memfd keeps the data, only the mutator's page
 *    table entries go) and registered MINOR. Its first chunk stays mapped.
 * 2. Flip (a pause, O(roots)): the roots' objects are copied to to-space, the
 *    roots point there; the mutator now allocates in to-space, in chunks of
 *    whole pages that no copy shares (its objects hold only to-space references).
 * 3. Beside the mutator, on the collector thread: a Cheney scan of to-space in
 *    address order, every stale slot evacuated, every page it has passed mapped
 *    into the mutator's view (UFFDIO_CONTINUE). Between small steps it reads the
 *    userfaultfd: a fault on page P is served by scanning every object that
 *    overlaps P (one that starts before P or runs past it is scanned whole), and
 *    if the copy frontier lies on P, closing P with a filler object so that no
 *    later copy lands there; then P is mapped, waking the mutator. A spare
 *    chunk for the mutator is mapped there too, ahead of its need.
 * 4. Once the scan meets the frontier, every page below it is mapped; the range
 *    is unregistered (which wakes any fault still in flight), and a last pause
 *    ends the cycle: the chunk's unused tail (and a spare never taken) becomes
 *    a filler, to-space is the allocation space, parseable from start to top.
 *
 * The collector thread is the fault handler: one thread scans, copies and
 * serves faults, so to-space has one writer and no copy is ever raced. A fault
 * waits at most for the step in progress (POLL_OBJECTS objects, or the page
 * being served).
 *
 * On every path (a failure, an early end) finish() unregisters the range and
 * closes the userfaultfd before the mutator is joined: a fault in flight is
 * woken and retried as an ordinary fault, after which the mutator sees the
 * failure and stops. Faults of another process mapping the same memfd are not
 * trapped (the registration is of this process's view). */
#include "concurrent.h"
#include "uffd_abi.h"

#include <stdlib.h>

/* FREE: a page above the frontier that some thread touched (not the mutator's
 * program, which cannot reach one): mapped for it, and trapped again (zapped)
 * before anything is placed on it. */
enum page_state { TRAPPED = 0, EXPOSED = 1, CHUNK = 2, FREE = 3 };
enum {
    POLL_OBJECTS = 64,          /* scan steps between reads of the userfaultfd */
    EXPOSE_BATCH_BYTES = 64 << 10, /* passed pages mapped in runs of about this much */
    EXPOSE_HOT_BYTES = 1 << 20,    /* but one at a time in to-space's first bytes */
    CHUNK_BYTES = 64 << 10,     /* the mutator's allocation chunk (at least a page) */
    FILLER_MIN_BYTES = 16,      /* the smallest object */
    PREFETCH_BYTES = 768,       /* how far the background scan prefetches ahead */
    PREFETCH_REFS = 4           /* slots prefetched per object */
};

struct minor {
    ha_trap trap;               /* base: the mutator's view */
    uint32_t shift;             /* log2 of the page size */
    uint64_t page;
    ha_heap ch;                 /* the heap through the collector's view */
    uint8_t *state;             /* enum page_state, per page of the heap */
    ha_off *first;              /* per page: the object covering its first byte */
    ha_off from_start, from_top;
    ha_off copy_top, copy_end;  /* the copy frontier, the end of to-space */
    ha_off scan;                /* the Cheney scan: below it, every object is scanned */
    ha_off ahead;               /* the scan's prefetching: objects below it are fetched */
    ha_off closed_from, closed_to; /* the last frontier closure's filler */
    uint64_t exposed_to;        /* pages below this were mapped (or were not trapped) */
    uint64_t chunk;             /* chunk bytes: CHUNK_BYTES rounded up to pages */
};

static inline uint64_t page_of(const struct minor *s, ha_off off) { return off >> s->shift; }
static inline ha_off page_start(const struct minor *s, uint64_t p) { return p << s->shift; }
static inline ha_off align_up(const struct minor *s, ha_off off)
{
    return (off + s->page - 1) & ~(s->page - 1);
}

/* Map pages [p, p + n) into the mutator's view, waking whoever waits there. */
static int expose(struct ha_conc *c, struct minor *s, uint64_t p, uint64_t n)
{
    int rc = ha_uffd_continue(s->trap.uffd, s->trap.base + page_start(s, p), n << s->shift, 1);
    if (rc)
        return ha_trap_fail(c, rc);
    c->run->pages_exposed += n;
    return HA_OK;
}

/* The object [at, at + bytes) is being placed: it covers the first byte of every
 * page boundary inside it, and a FREE page among them is trapped again first. */
static int placed(struct ha_conc *c, struct minor *s, ha_off at, uint64_t bytes)
{
    for (ha_off b = align_up(s, at); b < at + bytes; b += s->page) {
        uint64_t p = page_of(s, b);
        s->first[p] = at;
        if (s->state[p] == FREE) {
            int rc = ha_madvise(s->trap.base + b, s->page, MADV_DONTNEED);
            if (rc)
                return ha_trap_fail(c, rc);
            s->state[p] = TRAPPED;
        }
    }
    return HA_OK;
}

static int place_filler(struct ha_conc *c, struct minor *s, ha_off at, uint64_t bytes)
{
    if (bytes < FILLER_MIN_BYTES || (bytes & 7))
        return ha_conc_fail(c, ha_fail(c->st, HA_ERR_ARGUMENT, at, -1));
    int rc = placed(c, s, at, bytes);
    if (!rc)
        __atomic_store_n(ha_at(&s->ch, at), ha_make_header(bytes / 8, 0), __ATOMIC_RELAXED);
    return rc;
}

/* Move the frontier up to the page boundary `to` (one page further if the gap
 * is too small for a filler): nothing copied later lands below it. At the end
 * of to-space, a gap too small for a filler is too small for any copy too. */
static int close_frontier(struct ha_conc *c, struct minor *s, ha_off to)
{
    if (to > s->copy_end)
        to = s->copy_end;
    if (s->copy_top >= to)
        return HA_OK;
    uint64_t gap = to - s->copy_top;
    if (gap < FILLER_MIN_BYTES && to == s->copy_end)
        return HA_OK;
    if (gap < FILLER_MIN_BYTES)
        gap += s->page;
    if (gap > s->copy_end - s->copy_top)
        gap = s->copy_end - s->copy_top;
    int rc = place_filler(c, s, s->copy_top, gap);
    s->closed_from = s->copy_top;
    s->copy_top += gap;
    s->closed_to = s->copy_top;
    return rc;
}

/* The to-space reference for `ref`: its copy, made now if need be. 0 on failure. */
static ha_ref evacuate(struct ha_conc *c, struct minor *s, ha_ref ref)
{
    ha_off off;
    if (!ha_decode(&s->ch, ref, &off)) {
        ha_conc_fail(c, ha_fail(c->st, HA_ERR_REF, 0, -1));
        return 0;
    }
    if (off < s->from_start || off >= s->from_top)
        return ref; /* already in to-space */
    uint64_t *obj = ha_at(&s->ch, off), header = ha_load(obj);
    if (ha_is_moved(header)) {
        ha_off to = header & HA_MOVED_MASK;
        if (to >= s->copy_top || (to & 7) || page_of(s, to) < page_of(s, s->trap.start)) {
            ha_conc_fail(c, ha_fail(c->st, HA_ERR_HEADER, off, -1));
            return 0;
        }
        return ha_encode(&s->ch, to);
    }
    if (!ha_header_ok(header, off, s->from_top)) {
        ha_conc_fail(c, ha_fail(c->st, HA_ERR_HEADER, off, -1));
        return 0;
    }
    uint64_t bytes = ha_words(header) * 8;
    if (bytes > s->copy_end - s->copy_top) {
        ha_conc_fail(c, ha_fail(c->st, HA_ERR_FULL, s->copy_top, -1));
        return 0;
    }
    ha_off at = s->copy_top;
    if (placed(c, s, at, bytes))
        return 0;
    s->copy_top += bytes;
    memcpy(ha_at(&s->ch, at), obj, bytes);
    obj[0] = ha_moved_header(at); /* from-space: only the collector reads it now */
    c->run->bytes_relocated += bytes;
    c->run->objects_relocated++;
    return ha_encode(&s->ch, at);
}

/* The header of the to-space object at `off`, checked; 0 after a failure. */
static uint64_t to_space_header(struct ha_conc *c, struct minor *s, ha_off off)
{
    uint64_t header = ha_load(ha_at(&s->ch, off));
    if (ha_header_ok(header, off, s->copy_top))
        return header;
    ha_conc_fail(c, ha_fail(c->st, HA_ERR_HEADER, off, -1));
    return 0;
}

/* Prefetch the from-space objects the to-space object `obj` refers to: the
 * scan meets them in no particular order, and one at a time, each miss would
 * wait for the last (a page's ~100 objects made a fault cost ~10 us). */
static inline void prefetch_referents(const struct minor *s, const uint64_t *obj, uint64_t header)
{
    for (uint64_t i = 1; i <= ha_nrefs(header) && i <= PREFETCH_REFS; i++) {
        ha_ref ref = ha_load(&obj[i]);
        if (ref >= s->from_start && ref < s->from_top) /* offsets; a prefetch never faults */
            __builtin_prefetch(ha_at(&s->ch, ref));
    }
}

/* Evacuate every stale slot of the to-space object at `off`. The mutator may
 * be reading and storing the object's slots on a page already mapped for it
 * (an object that runs onto it): those hold to-space references only, which
 * this leaves alone, so it writes only slots the mutator cannot reach. */
static int scan_object(struct ha_conc *c, struct minor *s, ha_off off, uint64_t header)
{
    uint64_t *obj = ha_at(&s->ch, off);
    for (uint64_t i = 1; i <= ha_nrefs(header); i++) {
        ha_ref ref = ha_load(&obj[i]);
        if (!ref || ref < s->from_start || ref >= s->from_top) /* offsets: a cheap test */
            continue;
        ha_ref moved = evacuate(c, s, ref);
        if (!moved)
            return HA_ATOMIC_LOAD(&c->failed);
        ha_conc_delay(c); /* a slowed collector: the mutator meets more traps */
        __atomic_store_n(&obj[i], moved, __ATOMIC_RELAXED);
    }
    return HA_OK;
}

/* Whether the object starting at `off` is already scanned: below the scan, or
 * on a page that was made safe (every object starting there was scanned). */
static inline int scanned(const struct minor *s, ha_off off)
{
    return off < s->scan || s->state[page_of(s, off)] != TRAPPED;
}

/* Make page p safe for the mutator and map it: scan every object overlapping
 * it, close the frontier if it lies on it; a page above the frontier is only
 * mapped (FREE). */
static int serve_page(struct ha_conc *c, struct minor *s, uint64_t p)
{
    if (s->state[p] == TRAPPED && s->copy_top <= page_start(s, p)) {
        s->state[p] = FREE; /* nothing there yet: no need to close the frontier */
    } else if (s->state[p] == TRAPPED) {
        ha_off start = page_start(s, p), end = start + s->page;
        int rc = HA_OK;
        if (s->scan < end && s->copy_top > start) {
            ha_off off = s->first[p] > s->scan ? s->first[p] : s->scan;
            /* First every referent fetched at once, then the scan (which checks). */
            for (ha_off at = off; at < end && at < s->copy_top;) {
                uint64_t header = ha_load(ha_at(&s->ch, at));
                if (!ha_header_ok(header, at, s->copy_top))
                    break;
                if (!scanned(s, at))
                    prefetch_referents(s, ha_at(&s->ch, at), header);
                at += ha_words(header) * 8;
            }
            while (!rc && off < end && off < s->copy_top) { /* copies may extend the top */
                uint64_t header = to_space_header(c, s, off);
                if (!header)
                    return HA_ATOMIC_LOAD(&c->failed);
                if (!scanned(s, off)) /* a straddler from a page already safe is done */
                    rc = scan_object(c, s, off, header);
                off += ha_words(header) * 8;
            }
        }
        if (!rc)
            rc = close_frontier(c, s, end);
        if (rc)
            return rc;
        s->state[p] = EXPOSED;
    }
    return expose(c, s, p, 1);
}

static int serve_fault(struct ha_conc *c, void *design, ha_off off)
{
    struct minor *s = design;
    return serve_page(c, s, page_of(s, off));
}

/* Map pages [p, p + n) for the mutator's chunk. A FREE one among them is mapped
 * already, and UFFDIO_CONTINUE stops at a mapped page (EEXIST, or EAGAIN after
 * mapping the pages before it), so the runs between them are mapped one by one. */
static int expose_chunk(struct ha_conc *c, struct minor *s, uint64_t p, uint64_t n)
{
    for (uint64_t run = p, end = p + n; run < end;) {
        uint64_t stop = run;
        while (stop < end && s->state[stop] != FREE)
            stop++;
        int rc = stop > run ? expose(c, s, run, stop - run) : HA_OK;
        if (rc)
            return rc;
        run = stop + 1; /* past the FREE page (or the end) */
    }
    memset(s->state + p, CHUNK, n);
    return HA_OK;
}

/* Map a spare chunk of whole pages at the frontier for the mutator, if it
 * asked and none is there: ahead of need (NEED_CHUNK_AHEAD) only while
 * to-space has room for four more, at once when it waits (NEED_CHUNK_NOW).
 * None when to-space has no room left: the mutator then waits for the
 * cycle's end, and allocates after it. */
static int serve_chunk(struct ha_conc *c, struct minor *s)
{
    uint32_t need = HA_ATOMIC_LOAD(&c->need_chunk);
    if (!need || HA_ATOMIC_LOAD(&c->spare_end))
        return HA_OK;
    ha_off frontier = align_up(s, s->copy_top);
    uint64_t room = frontier < s->copy_end ? s->copy_end - frontier : 0;
    if (room < s->page || (need == HA_NEED_CHUNK_AHEAD && room / 5 < s->chunk))
        return HA_OK; /* too little room: the frontier stays open for copies */
    int rc = close_frontier(c, s, frontier);
    uint64_t bytes = s->chunk < s->copy_end - s->copy_top ? s->chunk
                     : (s->copy_end - s->copy_top) & ~(s->page - 1);
    if (rc || !bytes || (s->copy_top & (s->page - 1)))
        return rc;
    if ((rc = expose_chunk(c, s, page_of(s, s->copy_top), bytes >> s->shift)))
        return rc;
    HA_ATOMIC_STORE(&c->need_chunk, 0); /* before the spare: the mutator may ask again */
    c->spare_start = s->copy_top;
    HA_ATOMIC_STORE(&c->spare_end, s->copy_top + bytes);
    s->copy_top += bytes;
    s->trap.quiet_ns = ha_now_ns(); /* a fault from now on is the mutator's next stall */
    return HA_OK;
}

/* Map the trapped pages the scan has passed, in runs, once there are at least
 * `batch` of them (or all of them). */
static int expose_passed(struct ha_conc *c, struct minor *s, uint64_t batch)
{
    uint64_t passed = page_of(s, s->scan);
    if (passed < s->exposed_to + batch)
        return HA_OK;
    for (uint64_t p = s->exposed_to; p < passed;) {
        if (s->state[p] != TRAPPED) {
            p++;
            continue;
        }
        uint64_t run = p;
        while (run < passed && s->state[run] == TRAPPED)
            s->state[run++] = EXPOSED;
        int rc = expose(c, s, p, run - p);
        if (rc)
            return rc;
        p = run;
    }
    s->exposed_to = passed;
    return HA_OK;
}

/* Step `*off` over the mutator's chunks (whole pages, never scanned). */
static inline void skip_chunks(const struct minor *s, ha_off *off)
{
    while (*off < s->copy_top && s->state[page_of(s, *off)] == CHUNK)
        *off = page_start(s, page_of(s, *off) + 1);
}

/* Prefetch the referents of the objects up to PREFETCH_BYTES past the scan. */
static void prefetch_ahead(struct minor *s)
{
    if (s->ahead < s->scan)
        s->ahead = s->scan;
    while (s->ahead < s->scan + PREFETCH_BYTES) {
        skip_chunks(s, &s->ahead);
        if (s->ahead >= s->copy_top)
            return;
        const uint64_t *obj = ha_at(&s->ch, s->ahead);
        uint64_t header = ha_load(obj);
        if (!ha_header_ok(header, s->ahead, s->copy_top))
            return; /* the scan reports it */
        if (s->state[page_of(s, s->ahead)] != EXPOSED)
            prefetch_referents(s, obj, header);
        s->ahead += ha_words(header) * 8;
    }
}

/* Up to POLL_OBJECTS steps of the Cheney scan (chunks are stepped over whole). */
static int scan_ahead(struct ha_conc *c, struct minor *s)
{
    /* To-space begins with the roots' copies, in breadth-first order: the pages
     * the mutator walks first. Mapped as soon as they are passed (the step ends
     * at a page boundary), they spare it a fault each; further on, runs of
     * pages spare the collector ioctls. */
    int hot = s->scan - s->trap.start < EXPOSE_HOT_BYTES;
    uint64_t page = page_of(s, s->scan);
    for (unsigned n = 0; n < POLL_OBJECTS && s->scan < s->copy_top &&
                         !(hot && page_of(s, s->scan) != page); n++) {
        skip_chunks(s, &s->scan);
        if (s->scan >= s->copy_top)
            break;
        prefetch_ahead(s);
        uint64_t header = to_space_header(c, s, s->scan);
        if (!header)
            return HA_ATOMIC_LOAD(&c->failed);
        int rc = s->state[page_of(s, s->scan)] == EXPOSED ? HA_OK
                 : scan_object(c, s, s->scan, header);
        if (rc)
            return rc;
        s->scan += ha_words(header) * 8;
    }
    uint64_t batch = hot ? 1 : EXPOSE_BATCH_BYTES >> s->shift;
    return expose_passed(c, s, batch ? batch : 1);
}

/* Where the mutator's first chunk, which begins to-space, ends: on the page
 * boundary at most a chunk on (4 KiB at least: room for its allocations and a
 * filler), so that a heap of a few huge pages still has room for copies. */
static ha_off first_chunk_end(const struct minor *s, const ha_space *to)
{
    uint64_t least = s->chunk - s->page + 4096;
    return align_up(s, to->start + least);
}

/* Before the flip: trap the mutator's view of to-space, save its first chunk. */
static int trap_to_space(struct ha_conc *c, struct minor *s, const ha_space *to)
{
    ha_off chunk_end = first_chunk_end(s, to);
    s->trap.start = to->start & ~(s->page - 1);
    ha_off trap_end = align_up(s, to->end);
    /* Registered first, then zapped: a touch in between (another thread's) would
     * map a page again, which the mutator would then read untrapped. */
    int rc = ha_trap_register(c, &s->trap, s->trap.start, trap_end, UFFDIO_REGISTER_MODE_MINOR);
    if (rc)
        return rc;
    if ((rc = ha_madvise(s->trap.base + chunk_end, trap_end - chunk_end, MADV_DONTNEED)))
        return ha_trap_fail(c, rc);
    memset(s->state + page_of(s, s->trap.start), CHUNK, page_of(s, chunk_end - s->trap.start));
    memset(s->state + page_of(s, chunk_end), TRAPPED, page_of(s, trap_end - chunk_end));
    s->copy_top = s->scan = s->ahead = chunk_end;
    s->closed_from = s->closed_to = 0;
    s->copy_end = to->end;
    s->exposed_to = page_of(s, chunk_end);
    return HA_OK;
}

static ha_ref evacuate_root(struct ha_conc *c, void *s, ha_ref root)
{
    return evacuate(c, s, root);
}

static int flip(struct ha_conc *c, struct minor *s)
{
    ha_collector *gc = c->gc;
    ha_space from = gc->spaces[0], to = gc->spaces[1];
    s->from_start = from.start;
    s->from_top = from.top;
    c->to_end = s->copy_top; /* the first chunk: [to.start, the first copy) */
    HA_ATOMIC_STORE(&c->to_top, to.start);
    c->spare_end = 0;
    HA_ATOMIC_STORE(&c->need_chunk, HA_NEED_CHUNK_AHEAD); /* once the roots are copied */
    for (size_t i = 0; i < c->nroots; i++) /* the misses overlap: the pause is the copies */
        if (c->roots[i] >= s->from_start && c->roots[i] < s->from_top)
            __builtin_prefetch(ha_at(&s->ch, c->roots[i]));
    return ha_conc_flip_roots(c, evacuate_root, s);
}

/* The end pause: the chunk's tail becomes a filler, to-space the allocation space.
 * A closure of the frontier that nothing was copied after is undone: it only kept
 * copies off a page the mutator could read, and none come any more. On 2 MiB pages
 * it is most of to-space (the mutator, following a root, faults on the frontier's
 * page at once, and that fault's scan is often the whole cycle's), which the
 * mutator would otherwise find full after every cycle. */
static int end(struct ha_conc *c, struct minor *s)
{
    ha_collector *gc = c->gc;
    uint64_t tail = c->to_end - HA_ATOMIC_LOAD(&c->to_top);
    int rc = tail ? place_filler(c, s, c->to_top, tail) : HA_OK;
    if (!rc && c->spare_end) /* mapped ahead, never taken */
        rc = place_filler(c, s, c->spare_start, c->spare_end - c->spare_start);
    c->spare_end = 0;
    if (s->closed_to == s->copy_top)
        s->copy_top = s->closed_from;
    gc->spaces[0].top = s->copy_top;
    gc->spaces[1].top = gc->spaces[1].start;
    c->relocating = 0;
    HA_ATOMIC_STORE(&c->need_chunk, 0);
    return rc ? rc : ha_conc_verify(c);
}

static int minor_cycle(struct ha_conc *c)
{
    struct minor *s = c->design_state;
    int rc = trap_to_space(c, s, &c->gc->spaces[1]);
    if (rc)
        return rc;
    int parked = ha_conc_stop_mutator(c);
    rc = flip(c, s);
    if (parked)
        ha_conc_release_mutator(c);
    s->trap.quiet_ns = ha_now_ns();
    while (!rc && s->scan < s->copy_top) {
        if (!(rc = ha_trap_serve_faults(c, &s->trap, serve_fault, s)) &&
            !(rc = serve_chunk(c, s)))
            rc = scan_ahead(c, s);
    }
    if (!rc) /* the frontier's page too: nothing is left to scan */
        rc = expose_passed(c, s, 0);
    if (!rc && s->copy_top > page_start(s, s->exposed_to) &&
        s->state[s->exposed_to] == TRAPPED) {
        s->state[s->exposed_to] = EXPOSED;
        rc = expose(c, s, s->exposed_to, 1);
    }
    if (!rc)
        rc = ha_trap_serve_faults(c, &s->trap, serve_fault, s);
    if (!rc)
        rc = ha_trap_unregister(c, &s->trap); /* wakes a fault still in flight */
    if (rc)
        return rc;
    parked = ha_conc_stop_mutator(c);
    rc = end(c, s);
    if (parked)
        ha_conc_release_mutator(c);
    return rc;
}

/* Whether a cycle can trap `to` without trapping `from`: no page holds both, and
 * `to` has room for the mutator's first chunk and some copies. */
static int trappable(const struct minor *s, const ha_space *from, const ha_space *to)
{
    ha_off to_first = to->start & ~(s->page - 1), to_last = align_up(s, to->end);
    ha_off from_first = from->start & ~(s->page - 1), from_last = align_up(s, from->end);
    return (to_last <= from_first || from_last <= to_first) &&
           to->end >= first_chunk_end(s, to) + 4096;
}

static int prepare(struct ha_conc *c)
{
    const ha_trap_view *trap = c->trap;
    const ha_heap *h = &c->gc->heap;
    uint64_t page = trap->page_size;
    if (page < 4096 || (page & (page - 1)) || h->size % page || !trap->collector_base ||
        trap->collector_base % page || h->base % page)
        return ha_fail(c->st, HA_ERR_ARGUMENT, 0, -1);
    struct minor *s = calloc(1, sizeof *s);
    if (!s)
        return ha_fail(c->st, HA_ERR_NOMEM, 0, -1);
    c->design_state = s;
    s->trap.uffd = -1;
    s->trap.page = s->page = page;
    s->shift = (uint32_t)__builtin_ctzll(page);
    s->chunk = CHUNK_BYTES > page ? CHUNK_BYTES : page;
    s->ch = *h;
    s->ch.base = s->ch.load_base = trap->collector_base;
    s->trap.base = h->base;
    uint64_t pages = h->size >> s->shift;
    if (!trappable(s, &c->gc->spaces[0], &c->gc->spaces[1]) ||
        !trappable(s, &c->gc->spaces[1], &c->gc->spaces[0]))
        return ha_fail(c->st, HA_ERR_ARGUMENT, 0, -1);
    if (!(s->state = calloc(pages, 1)) || !(s->first = calloc(pages, sizeof *s->first)))
        return ha_fail(c->st, HA_ERR_NOMEM, 0, -1);
    /* Every page in the memfd now: UFFDIO_CONTINUE maps only pages that exist. */
    int rc = ha_madvise(trap->collector_base, h->size, MADV_POPULATE_WRITE);
    if (rc)
        return ha_fail(c->st, HA_ERR_SYSCALL, (uint64_t)-rc, -1);
    if ((rc = ha_trap_open(c, &s->trap, page == 4096 ? UFFD_FEATURE_MINOR_SHMEM
                                                      : UFFD_FEATURE_MINOR_HUGETLBFS)))
        return rc;
    c->refills_chunks = 1;
    return HA_OK;
}

static void finish(struct ha_conc *c)
{
    struct minor *s = c->design_state;
    if (!s)
        return;
    ha_trap_close(c, &s->trap);
    free(s->state);
    free(s->first);
    free(s);
    c->design_state = NULL;
}

const ha_design_ops ha_design_minor = {.name = "minor", .prepare = prepare,
                                       .cycle = minor_cycle, .finish = finish};
