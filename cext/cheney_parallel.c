/* Parallel Cheney: the single-thread evacuation's visitors (evacuation.h) on a
 * team of threads (workers.h).
 *
 * Each thread copies into its own allocation buffer (LAB), claimed from the
 * to-space with a compare-and-swap, and scans its own copies in Cheney order,
 * so a thread alone still copies breadth-first. Work moves between threads as
 * ranges of to-space: a thread hands the unscanned copies of a buffer it
 * leaves to its deque, and, while another thread is idle, the older part of
 * the copies it has yet to scan. An object too large for a buffer gets a place
 * of its own and is handed on as a range of one. The roots are dealt out
 * round-robin; a forwarding is installed with a compare-and-swap on the
 * from-space header (the moved header, object_model.h).
 *
 * The gap a thread leaves at the end of a buffer gets a filler, so to-space
 * parses from its start to its new top, however the collection ended. The
 * gaps take room: a to-space without enough to spare (room_for_threads) is
 * filled by the single-thread loop instead. */
#include "evacuation.h"

#include <stdlib.h>

/* A buffer: big enough that claims are rare, small enough that the buffers
 * threads leave part-used cost little. An object of LARGE_BYTES or more gets
 * a place of its own: the gap it could leave is at most that. */
enum { LAB_BYTES = 64 << 10, LARGE_BYTES = 8 << 10, SHARE_BYTES = 4 << 10 };

/* A range of to-space copies in one deque item: the start's word index above
 * RANGE_BITS, its length in words below; length 0 is one object, its header
 * says how long. Ranges come from a buffer, so they are shorter than that. */
enum { RANGE_BITS = 24 };
#define RANGE_MAX_START (1ULL << (64 - RANGE_BITS + 3))

struct cheney_team {
    ha_team team; /* first: the workers reach it through their ha_worker */
    ha_off claimed; /* to-space is claimed up to here; only ever grows */
    ha_off end;
};

struct cheney_thread {
    ha_worker worker; /* first: the team hands it back */
    struct cheney c;
    ha_stats st; /* where this thread's failure is recorded */
    ha_ref *roots;
    size_t nroots;
} __attribute__((aligned(64)));

void ha_cheney_fill(uint64_t base, ha_off at, uint64_t bytes)
{
    if (bytes)
        *(uint64_t *)(uintptr_t)(base + at) = ha_filler_header(bytes / 8);
}

/* Claim `want` bytes of to-space, or as few as `least` if less is left:
 * 0 with [*at, *at + *got) claimed, or HA_ERR_FULL. */
static int claim(struct cheney_team *t, uint64_t least, uint64_t want, ha_off *at,
                 uint64_t *got)
{
    ha_off start = __atomic_load_n(&t->claimed, __ATOMIC_RELAXED);
    do {
        uint64_t left = t->end - start;
        if (left < least)
            return HA_ERR_FULL;
        *got = left < want ? left : want;
    } while (!__atomic_compare_exchange_n(&t->claimed, &start, start + *got, 1,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    *at = start;
    return HA_OK;
}

int ha_cheney_push_range(ha_deque *q, ha_off start, ha_off end)
{
    uint64_t words = (end - start) / 8;
    uint64_t item = start / 8 << RANGE_BITS | (words < (1u << RANGE_BITS) ? words : 0);
    return ha_deque_push(q, item) ? HA_ERR_NOMEM : HA_OK;
}

ha_refill ha_cheney_refill(struct cheney_team *team, ha_deque *q, uint64_t base, ha_off scan,
                           ha_off top, ha_off end, uint64_t bytes)
{
    ha_refill r = {.scan = scan, .top = top, .end = end};
    uint64_t got;
    if (bytes >= LARGE_BYTES) { /* a place of its own, handed on once it is copied */
        r.rc = claim(team, bytes, bytes, &r.copy, &got);
        return r;
    }
    /* Leave this buffer: hand on its unscanned copies, fill its gap, take another. */
    if (scan < top && (r.rc = ha_cheney_push_range(q, scan, top)))
        return r;
    ha_cheney_fill(base, top, end - top);
    r.scan = r.top = end;
    ha_off at;
    if ((r.rc = claim(team, bytes, LAB_BYTES, &at, &got)))
        return r;
    r.scan = r.copy = at;
    r.top = at + bytes;
    r.end = at + got;
    return r;
}

int ha_cheney_copy_ok(struct cheney_team *team, ha_off begin, ha_off to)
{
    return to >= begin && !(to & 7) && to < __atomic_load_n(&team->claimed, __ATOMIC_RELAXED);
}

/* Scan the copies in [start, end) (end == start: the one object there),
 * prefetching as the single-thread loop does. */
static inline __attribute__((always_inline)) int scan_range(struct cheney *c, uint64_t item)
{
    ha_off grey = (item >> RANGE_BITS) * 8;
    ha_off end = grey + (item & ((1u << RANGE_BITS) - 1)) * 8;
    if (end == grey) {
        uint64_t header = ha_load(ha_at(&c->h, grey));
        if (!ha_header_ok(header, grey, c->h.size))
            return ha_fail(c->st, HA_ERR_HEADER, grey, -1);
        end = grey + ha_words(header) * 8;
    }
    int rc = HA_OK;
    while (!rc && grey < end) /* prefetching: another thread's copies */
        rc = c->split ? scan_ring(c, &grey, &end, 1, c->h.encoding)
                      : scan_ahead(c, &grey, &end, 1, 1);
    return rc;
}

/* While a thread is idle and this one's deque is empty: hand on the older
 * part of this buffer's unscanned copies, whole objects of SHARE_BYTES or more. */
static inline __attribute__((always_inline)) int share(struct cheney *c)
{
    if (c->top - c->lab_scan < 2 * SHARE_BYTES || !ha_deque_looks_empty(c->deque) ||
        !__atomic_load_n(&c->team->team.idle, __ATOMIC_RELAXED))
        return HA_OK;
    ha_off cut = c->lab_scan;
    while (cut - c->lab_scan < SHARE_BYTES) {
        uint64_t header = ha_load(ha_at(&c->h, cut));
        if (!ha_header_ok(header, cut, c->top))
            return ha_fail(c->st, HA_ERR_HEADER, cut, -1);
        cut += ha_words(header) * 8;
    }
    int rc = ha_cheney_push_range(c->deque, c->lab_scan, cut);
    if (!rc)
        c->lab_scan = cut;
    return rc;
}

/* Scan up to SAMPLE copies of this thread's buffer, in Cheney order, the way
 * the single-thread loop scans (evacuation.h). A copy may fill the buffer:
 * then lab_scan and top move to a new one, and the scan goes on there. */
static inline __attribute__((always_inline)) int scan_buffer(struct cheney *c)
{
    int rc = scan_sample(c, &c->lab_scan, 1, c->h.encoding);
    return rc ? rc : share(c);
}

/* Forward this thread's roots, then scan until the team runs out of work. */
static inline __attribute__((always_inline)) void evacuate(ha_worker *w, uint32_t encoding)
{
    struct cheney_thread *t = (struct cheney_thread *)w;
    struct cheney c = t->c;
    c.h.encoding = encoding;
    ha_team *team = w->team;
    c.deque = &team->deques[w->index];
    int rc = HA_OK;
    for (size_t i = w->index; i < t->nroots && !rc; i += team->threads)
        rc = forward(&c, &t->roots[i], 0, (int64_t)i, 1);
    uint64_t item;
    while (!rc) {
        while (!rc && !ha_team_stopped(team)) {
            if (c.lab_scan < c.top)
                rc = scan_buffer(&c);
            else if (ha_deque_take(c.deque, &item))
                rc = scan_range(&c, item);
            else
                break;
        }
        if (rc || !ha_team_find_work(w, &item))
            break;
        rc = scan_range(&c, item);
    }
    ha_cheney_fill(c.h.base, c.top, c.end - c.top);
    if (rc)
        ha_team_fail(team, rc, &t->st);
    t->c = c;
}

static void cheney_worker(ha_worker *w)
{
    /* each with the encoding a constant */
    HA_WITH_ENCODING(((struct cheney_thread *)w)->c.h.encoding, E, evacuate(w, E));
}

/* Whether to-space has room for everything from-space holds, for the gaps
 * buffers leave (each under LARGE_BYTES in a LAB_BYTES buffer: at most 1/7 of
 * what they hold, counted as 1/4), and for every thread's last buffer. With
 * less, a parallel copy could run out of room where one thread would not. */
static int room_for_threads(const ha_space *from, const ha_space *to, uint32_t threads)
{
    uint64_t used = from->top - from->start;
    return to->end - to->top >= used + used / 4 + (uint64_t)threads * LAB_BYTES;
}

int ha_cheney_parallel(const ha_heap *h, const ha_space *from, ha_space *to,
                       ha_ref *roots, size_t nroots, uint32_t threads, ha_stats *st)
{
    if (threads == 1 || (threads <= HA_MAX_THREADS && ha_space_ok(h, from) &&
                         ha_space_ok(h, to) && !room_for_threads(from, to, threads)))
        return ha_cheney(h, from, to, roots, nroots, st);
    int rc = ha_begin(h, st);
    if (!rc && (!ha_semispaces_ok(h, from, to) || threads == 0 || threads > HA_MAX_THREADS ||
                h->size > RANGE_MAX_START))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    if (rc)
        return ha_end(st, rc);
    struct cheney_team shared = {.claimed = to->top, .end = to->end};
    struct cheney base = {.h = *h, .from_start = from->start, .from_top = from->top,
                          .begin = to->top, .team = &shared};
    struct cheney_thread *all = aligned_alloc(64, threads * sizeof *all);
    if (!all)
        return ha_end(st, ha_fail(st, HA_ERR_NOMEM, 0, -1));
    for (uint32_t i = 0; i < threads; i++) {
        all[i] = (struct cheney_thread){.c = base, .roots = roots, .nroots = nroots};
        all[i].c.st = &all[i].st;
        all[i].st.error_root = -1;
    }
    /* The deques hold ranges; they grow as long as memory lasts. */
    rc = ha_team_run(&shared.team, threads, all, sizeof *all, INT64_MAX / 2, cheney_worker);
    if (rc)
        ha_fail(st, rc, 0, -1);
    else if (shared.team.error)
        rc = ha_fail(st, shared.team.error, shared.team.failure.error_offset,
                     shared.team.failure.error_root);
    for (uint32_t i = 0; i < shared.team.threads; i++) {
        st->objects += all[i].c.objects;
        st->refs += all[i].c.refs;
        st->bytes += all[i].c.copied;
    }
    free(all);
    to->top = shared.claimed;
    return ha_end(st, rc);
}
