/* The thread team and the deques' slow paths the parallel loops share (workers.h). */
#include "workers.h"

#include <pthread.h>
#include <stdlib.h>

static ha_deque_array *new_array(int64_t size, ha_deque_array *older)
{
    ha_deque_array *a = malloc(sizeof *a + (size_t)size * sizeof a->items[0]);
    if (a) {
        a->size = size;
        a->older = older;
    }
    return a;
}

int ha_deque_init(ha_deque *q, int64_t initial, int64_t cap)
{
    memset(q, 0, sizeof *q);
    q->cap = cap;
    q->array = new_array(initial, NULL);
    return q->array ? HA_OK : HA_ERR_NOMEM;
}

void ha_deque_destroy(ha_deque *q)
{
    for (ha_deque_array *a = q->array, *older; a; a = older) {
        older = a->older;
        free(a);
    }
    q->array = NULL;
}

int ha_deque_grow(ha_deque *q)
{
    ha_deque_array *a = q->array;
    if (a->size * 2 > q->cap)
        return 1;
    ha_deque_array *bigger = new_array(a->size * 2, a);
    if (!bigger)
        return 1;
    int64_t t = __atomic_load_n(&q->top, __ATOMIC_ACQUIRE), b = q->bottom;
    for (int64_t i = t; i < b; i++)
        bigger->items[i & (bigger->size - 1)] =
            __atomic_load_n(&a->items[i & (a->size - 1)], __ATOMIC_RELAXED);
    __atomic_store_n(&q->array, bigger, __ATOMIC_RELEASE);
    return 0;
}

int ha_team_fail(ha_team *team, int error, const ha_stats *where)
{
    int none = 0;
    if (__atomic_compare_exchange_n(&team->error, &none, error, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED))
        team->failure = *where; /* read only after every thread is joined */
    __atomic_store_n(&team->stop, 1, __ATOMIC_RELEASE);
    return error;
}

static inline void relax(unsigned spins)
{
    if (spins < 64) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    } else {
        sched_yield(); /* more threads than cores: let the one with work run */
    }
}

int ha_team_find_work(ha_worker *w, uint64_t *item)
{
    ha_team *team = w->team;
    unsigned n = team->threads;
    __atomic_fetch_add(&team->idle, 1, __ATOMIC_SEQ_CST);
    for (unsigned spins = 0;; spins++) {
        if (ha_team_stopped(team) || __atomic_load_n(&team->idle, __ATOMIC_SEQ_CST) == n)
            return 0;
        for (unsigned k = 1; k < n; k++) {
            unsigned v = (w->victim + k) % n;
            if (v == w->index || ha_deque_looks_empty(&team->deques[v]))
                continue;
            /* Busy before stealing: were the item counted as idle, the team could end
             * while it is still to be scanned. */
            __atomic_fetch_sub(&team->idle, 1, __ATOMIC_SEQ_CST);
            if (ha_deque_steal(&team->deques[v], item)) {
                w->victim = v;
                return 1;
            }
            __atomic_fetch_add(&team->idle, 1, __ATOMIC_SEQ_CST);
        }
        relax(spins);
    }
}

struct start {
    ha_team *team;
    ha_worker *worker;
    void (*work)(ha_worker *);
};

static void *thread_main(void *arg)
{
    struct start *s = arg;
    for (unsigned spins = 0; !__atomic_load_n(&s->team->go, __ATOMIC_ACQUIRE); spins++)
        relax(spins);
    s->work(s->worker);
    return NULL;
}

int ha_team_run(ha_team *team, unsigned threads, void *workers, size_t stride,
                int64_t deque_cap, void (*work)(ha_worker *))
{
    int rc = HA_OK;
    pthread_t *ids = calloc(threads, sizeof *ids);
    struct start *starts = calloc(threads, sizeof *starts);
    team->deques = aligned_alloc(64, threads * sizeof(ha_deque));
    unsigned ready = 0;
    if (!ids || !starts || !team->deques)
        rc = HA_ERR_NOMEM;
    int64_t initial = 1024; /* a power of two, at most the cap */
    while (initial > 1 && initial > deque_cap)
        initial /= 2;
    for (; !rc && ready < threads; ready++)
        rc = ha_deque_init(&team->deques[ready], initial, deque_cap);
    for (unsigned i = 0; !rc && i < threads; i++) {
        ha_worker *w = (ha_worker *)((char *)workers + i * stride);
        *w = (ha_worker){.team = team, .index = i, .victim = i};
        starts[i] = (struct start){team, w, work};
    }
    unsigned started = 1; /* the caller is worker 0 */
    while (!rc && started < threads &&
           pthread_create(&ids[started], NULL, thread_main, &starts[started]) == 0)
        started++;
    if (!rc) {
        team->threads = started;
        __atomic_store_n(&team->go, 1, __ATOMIC_RELEASE);
        work(starts[0].worker);
        for (unsigned i = 1; i < started; i++)
            pthread_join(ids[i], NULL);
    }
    for (unsigned i = 0; team->deques && i < ready; i++)
        ha_deque_destroy(&team->deques[i]);
    free(team->deques);
    team->deques = NULL;
    free(starts);
    free(ids);
    return rc;
}
