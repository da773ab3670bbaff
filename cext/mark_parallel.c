/* Parallel mark: the single-thread mark's visitors (marking.h) on a team of
 * threads (workers.h), each with its own edge FIFO and a work-stealing deque
 * of grey objects. A mark bit is set with a compare-and-swap on the header, so
 * each object is marked, counted and scanned by one thread. The roots are
 * dealt out round-robin. A deque that fills (its share of the stack capacity)
 * drops the push and flags an overflow, as the single-thread stack does: once
 * the team is done, the single-thread rescan (scan.c) finishes the job. */
#include "marking.h"

#include <stdlib.h>

struct mark_thread {
    ha_worker worker; /* first: the team hands it back */
    struct marker m;
    ha_stats st;      /* where this thread's failure is recorded */
    const ha_ref *roots;
    size_t nroots;
    int rc;
} __attribute__((aligned(64)));

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
    while (!rc) {
        while (!rc && !ha_team_stopped(team)) {
            if (ha_deque_take(m.deque, &ref))
                rc = scan_grey(&m, ref, 1);
            else if (m.queued)
                rc = follow_oldest(&m, 1);
            else
                break;
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
    struct mark_thread *all = aligned_alloc(64, threads * sizeof *all);
    if (!all)
        return ha_end(st, ha_fail(st, HA_ERR_NOMEM, 0, -1));
    for (uint32_t i = 0; i < threads; i++) {
        all[i] = (struct mark_thread){.m = base, .roots = roots, .nroots = nroots};
        all[i].m.st = &all[i].st;
        all[i].st.error_root = -1;
    }
    int64_t cap = 1; /* each deque's share of the stack, a power of two */
    while ((uint64_t)cap * 2 <= stack_capacity / threads)
        cap *= 2;
    ha_team team = {0};
    rc = ha_team_run(&team, threads, all, sizeof *all, cap, mark_worker);
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
    if (!rc) /* the pushes a full deque dropped: their objects are marked, not scanned */
        rc = ha_mark_rescans(&base);
    st->objects = base.objects;
    st->bytes = base.bytes;
    st->refs = base.refs;
    return ha_end(st, rc);
}
