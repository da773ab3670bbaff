/* Parallel mark: the single-thread mark's steps (marking.h) on a team of
 * threads (workers.h), each with its own edges and grey stack, a share of
 * the caller's. The threads share the side bitmap, as a filter: two threads
 * may both push an object, but the compare-and-swap that sets its header's
 * mark bit lets one of them count and scan it. The roots are dealt out
 * round-robin.
 *
 * The grey stack is the thread's own, with no atomics. Every SHARE_EVERY
 * gathers, if another thread is idle and this one's work-stealing deque is
 * empty, it moves the newest half of its stack (at most SHARE_MOST) there,
 * for the idle ones to steal. A stack that fills drops the push and flags an
 * overflow, as the single-thread one does: once the team is done, the
 * single-thread rescan (scan.c) finishes the job. */
#include "marking.h"

#include <stdlib.h>

enum { SHARE_EVERY = 4, SHARE_MOST = 1024 };

struct mark_thread {
    ha_worker worker; /* first: the team hands it back */
    struct marker m;
    ha_stats st;      /* where this thread's failure is recorded */
    uint64_t *edges[EDGE_ROOM];
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

/* Push a grey object taken from a deque, which this thread's stack has room
 * for: it holds none when the thread looks for work. */
static inline void push_taken(struct marker *m, ha_ref ref)
{
    m->stack[m->depth++] = ref;
}

/* Mark this thread's edges and grey objects until none are left; then steal.
 * `enc` is a constant (mark_worker). */
static inline __attribute__((always_inline)) void mark_worker_as(ha_worker *w, uint32_t enc)
{
    struct mark_thread *t = (struct mark_thread *)w;
    struct marker local = t->m, *m = &local; /* a local: heap stores cannot alias it */
    ha_team *team = w->team;
    m->deque = &team->deques[w->index];
    int rc = HA_OK;
    for (size_t i = w->index; i < t->nroots && !rc; i += team->threads)
        if (t->roots[i])
            rc = grey(m, t->roots[i], 0, (int64_t)i, 1, enc);
    uint64_t ref;
    unsigned gathers = 0;
    while (!rc) {
        while (!rc && !ha_team_stopped(team)) {
            if (m->nedges) {
                rc = mark_edges(m, 1, enc);
            } else if (m->depth || m->partial) {
                if (++gathers % SHARE_EVERY == 0)
                    share(m, team);
                rc = gather(m, 1, enc);
            } else if (ha_deque_take(m->deque, &ref)) {
                push_taken(m, ref);
            } else {
                break;
            }
        }
        if (rc || !ha_team_find_work(w, &ref))
            break;
        push_taken(m, ref);
    }
    if (rc)
        ha_team_fail(team, rc, &t->st);
    t->m = local;
    t->rc = rc;
}

static void mark_worker(ha_worker *w)
{
    HA_WITH_ENCODING(((struct mark_thread *)w)->m.h.encoding, E, mark_worker_as(w, E));
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
    struct marker base;
    uint64_t *edges[EDGE_ROOM]; /* the rescan's */
    marker_init(&base, h, spaces, nspaces, stack, stack_capacity, edges, st);
    if ((rc = ha_marks_alloc(&base)))
        return ha_end(st, rc);
    if (stack_capacity < threads) /* each thread's stack takes one entry at least */
        threads = (uint32_t)stack_capacity;
    size_t share_of = stack_capacity / threads;
    struct mark_thread *all = aligned_alloc(64, threads * sizeof *all);
    if (!all) {
        ha_marks_free(&base);
        return ha_end(st, ha_fail(st, HA_ERR_NOMEM, 0, -1));
    }
    for (uint32_t i = 0; i < threads; i++) {
        all[i] = (struct mark_thread){.m = base, .roots = roots, .nroots = nroots};
        all[i].m.st = &all[i].st;
        all[i].m.edges = all[i].edges;
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
    ha_marks_free(&base);
    st->objects = base.objects;
    st->bytes = base.bytes;
    st->refs = base.refs;
    return ha_end(st, rc);
}
