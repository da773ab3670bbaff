/* Parallel mark: the single-thread mark's visitors (marking.h) on a team of
 * threads (workers.h), each with its own edge FIFO and grey stack, a share of
 * the caller's. A mark bit is set with a compare-and-swap on the header, so
 * each object is marked, counted and scanned by one thread. The roots are
 * dealt out round-robin.
 *
 * The grey stack is the thread's own, with no atomics; a grey object leaves it
 * through the scan queue (marking.h), as in the single-thread mark. Every
 * SHARE_EVERY pops, if another thread is idle and this one's work-stealing deque is
 * empty, it moves the newest half of its stack (at most SHARE_MOST) there,
 * for the idle ones to steal. A stack that fills drops the push and flags an
 * overflow, as the single-thread one does: once the team is done, the
 * single-thread rescan (scan.c) finishes the job. */
#include "marking.h"

#include <stdlib.h>

enum { SHARE_EVERY = 64, SHARE_MOST = 1024 };

struct mark_thread {
    ha_worker worker; /* first: the team hands it back */
    struct marker m;
    ha_stats st;      /* where this thread's failure is recorded */
    const ha_ref *roots;
    size_t nroots;
    int rc;
} __attribute__((aligned(64)));

/* While another thread is idle and nothing waits in this one's deque, move
 * the newest half of the grey stack there. */
static inline __attribute__((always_inline)) void share(struct marker *m, ha_team *team)
{
    if (m->depth < 2 || !__atomic_load_n(&team->idle, __ATOMIC_RELAXED) ||
        !ha_deque_looks_empty(m->deque))
        return;
    size_t give = m->depth / 2 < SHARE_MOST ? m->depth / 2 : SHARE_MOST;
    for (; give && !ha_deque_push(m->deque, m->stack[m->depth - 1]); give--)
        m->depth--;
}

/* Scan this thread's grey objects and edges until none are left; then steal. */
static void mark_worker(ha_worker *w)
{
    struct mark_thread *t = (struct mark_thread *)w;
    struct marker m = t->m;
    ha_team *team = w->team;
    m.deque = &team->deques[w->index];
    int rc = HA_OK;
    for (size_t i = w->index; i < t->nroots && !rc; i += team->threads)
        if (t->roots[i])
            rc = grey(&m, t->roots[i], 0, (int64_t)i, 1);
    uint64_t ref;
    unsigned pops = 0;
    while (!rc) {
        while (!rc && !ha_team_stopped(team)) {
            if (m.depth && m.ahead_count < SCAN_AHEAD) {
                if (++pops % SHARE_EVERY == 0)
                    share(&m, team);
                queue_for_scan(&m); /* share leaves one at least */
            } else if (m.ahead_count) {
                rc = scan_oldest(&m, 1);
            } else if (ha_deque_take(m.deque, &ref)) {
                rc = scan_grey(&m, ref, 1);
            } else if (m.queued) {
                rc = follow_oldest(&m, 1);
            } else {
                break;
            }
        }
        if (rc || !ha_team_find_work(w, &ref))
            break;
        rc = scan_grey(&m, ref, 1);
    }
    if (rc)
        ha_team_fail(team, rc, &t->st);
    t->m = m;
    t->rc = rc;
}

int ha_mark_parallel(const ha_heap *h, const ha_space *spaces, size_t nspaces,
                     const ha_ref *roots, size_t nroots, ha_ref *stack,
                     size_t stack_capacity, uint32_t threads, ha_stats *st)
{
    if (threads == 1)
        return ha_mark(h, spaces, nspaces, roots, nroots, stack, stack_capacity, st);
    int rc = ha_begin(h, st);
    if (!rc && (!ha_spaces_ok(h, spaces, nspaces) || stack_capacity == 0 || threads == 0 ||
                threads > HA_MAX_THREADS))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    if (rc)
        return ha_end(st, rc);
    struct marker base = {.h = *h, .spaces = spaces, .nspaces = nspaces, .stack = stack,
                          .capacity = stack_capacity, .st = st};
    for (size_t i = 0; i < nspaces; i++) /* objects are at least 16 bytes */
        base.budget += (spaces[i].top - spaces[i].start) / (8 * HA_MIN_WORDS);
    if (stack_capacity < threads) /* each thread's stack takes one entry at least */
        threads = (uint32_t)stack_capacity;
    size_t share_of = stack_capacity / threads;
    struct mark_thread *all = aligned_alloc(64, threads * sizeof *all);
    if (!all)
        return ha_end(st, ha_fail(st, HA_ERR_NOMEM, 0, -1));
    for (uint32_t i = 0; i < threads; i++) {
        all[i] = (struct mark_thread){.m = base, .roots = roots, .nroots = nroots};
        all[i].m.st = &all[i].st;
        all[i].m.stack = stack + i * share_of;
        all[i].m.capacity = share_of;
        all[i].st.error_root = -1;
    }
    ha_team team = {0};
    /* The deques take what the stacks hand on: at most a stack's worth each. */
    rc = ha_team_run(&team, threads, all, sizeof *all, (int64_t)share_of, mark_worker);
    if (rc)
        ha_fail(st, rc, 0, -1);
    else if (team.error)
        rc = ha_fail(st, team.error, team.failure.error_offset, team.failure.error_root);
    for (uint32_t i = 0; i < team.threads; i++) {
        base.objects += all[i].m.objects;
        base.bytes += all[i].m.bytes;
        base.refs += all[i].m.refs;
        base.overflowed |= all[i].m.overflowed;
    }
    free(all);
    if (!rc) /* the pushes a full stack dropped: their objects are marked, not scanned */
        rc = ha_mark_rescans(&base);
    st->objects = base.objects;
    st->bytes = base.bytes;
    st->refs = base.refs;
    return ha_end(st, rc);
}
