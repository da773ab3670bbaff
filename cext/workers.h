/* What the parallel loops (mark_parallel.c, cheney_parallel.c) share: a team of
 * threads with a start gate, a stop flag and a termination test, and one
 * work-stealing deque per thread.
 *
 * The deque is Chase and Lev's, in the C11 form of Lê, Pop, Cohen and Zappa
 * Nardelli (PPoPP 2013): its owner pushes and takes at the bottom, thieves
 * steal at the top, and only a take of the last item and a steal race, by a
 * compare-and-swap on `top`. Items are 64-bit words. The array grows by
 * doubling up to `cap` items; an array it outgrew stays allocated until the
 * deque is destroyed, as a thief may still be reading it. The fences of the
 * paper are folded into seq_cst and release/acquire accesses, which cost the
 * same on x86-64 and which ThreadSanitizer understands (it ignores fences).
 *
 * Termination (Flood, Detlefs, Shavit and Zhang, 2001): a thread whose own
 * deque is empty counts itself idle and looks for work to steal; it leaves the
 * idle count before it steals. When every thread is idle, no deque holds an
 * item and none can get one: the work is done. Nothing here waits on a lock,
 * so the design has no convoy at 64 threads; each thread touches another's
 * deque only to steal from it. */
#ifndef HEAPALIAS_WORKERS_H
#define HEAPALIAS_WORKERS_H

#include "object_model.h"

#include <sched.h>

/* One array of a deque: a power of two of items, and the array it replaced. */
typedef struct ha_deque_array {
    int64_t size; /* items; a power of two */
    struct ha_deque_array *older;
    uint64_t items[];
} ha_deque_array;

/* Each deque on its own cache lines: thieves write `top`, the owner `bottom`. */
typedef struct ha_deque {
    _Alignas(64) int64_t top;
    _Alignas(64) int64_t bottom;
    ha_deque_array *array;
    int64_t cap; /* the most items it may hold: a push beyond fails */
} ha_deque;

/* A deque of `initial` items (a power of two), growing up to `cap`; 0 or HA_ERR_NOMEM. */
int ha_deque_init(ha_deque *q, int64_t initial, int64_t cap);
void ha_deque_destroy(ha_deque *q);
/* The owner's slow path: double the array. 0, or 1 if it may not (cap) or cannot (malloc). */
int ha_deque_grow(ha_deque *q);

/* Owner only: push an item at the bottom; 0, or 1 if the deque is full (see cap). */
static inline int ha_deque_push(ha_deque *q, uint64_t item)
{
    int64_t b = __atomic_load_n(&q->bottom, __ATOMIC_RELAXED);
    int64_t t = __atomic_load_n(&q->top, __ATOMIC_ACQUIRE);
    ha_deque_array *a = __atomic_load_n(&q->array, __ATOMIC_RELAXED);
    if (b - t > a->size - 1) {
        if (ha_deque_grow(q))
            return 1;
        a = __atomic_load_n(&q->array, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&a->items[b & (a->size - 1)], item, __ATOMIC_RELAXED);
    __atomic_store_n(&q->bottom, b + 1, __ATOMIC_RELEASE); /* publishes the item */
    return 0;
}

/* Owner only: take the item pushed last; 1 with *item set, 0 if empty. */
static inline int ha_deque_take(ha_deque *q, uint64_t *item)
{
    int64_t b = __atomic_load_n(&q->bottom, __ATOMIC_RELAXED) - 1;
    ha_deque_array *a = __atomic_load_n(&q->array, __ATOMIC_RELAXED);
    __atomic_store_n(&q->bottom, b, __ATOMIC_SEQ_CST); /* then read top: store-load order */
    int64_t t = __atomic_load_n(&q->top, __ATOMIC_SEQ_CST);
    if (t > b) {
        __atomic_store_n(&q->bottom, b + 1, __ATOMIC_RELAXED);
        return 0;
    }
    *item = __atomic_load_n(&a->items[b & (a->size - 1)], __ATOMIC_RELAXED);
    if (t < b)
        return 1;
    /* The last item: a thief may be stealing it too. */
    int won = __atomic_compare_exchange_n(&q->top, &t, t + 1, 0, __ATOMIC_SEQ_CST,
                                          __ATOMIC_RELAXED);
    __atomic_store_n(&q->bottom, b + 1, __ATOMIC_RELAXED);
    return won;
}

/* Any thread: steal the oldest item; 1 with *item set, 0 if empty or lost a race. */
static inline int ha_deque_steal(ha_deque *q, uint64_t *item)
{
    int64_t t = __atomic_load_n(&q->top, __ATOMIC_SEQ_CST);
    int64_t b = __atomic_load_n(&q->bottom, __ATOMIC_SEQ_CST);
    if (t >= b)
        return 0;
    ha_deque_array *a = __atomic_load_n(&q->array, __ATOMIC_ACQUIRE);
    uint64_t x = __atomic_load_n(&a->items[t & (a->size - 1)], __ATOMIC_RELAXED);
    if (!__atomic_compare_exchange_n(&q->top, &t, t + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        return 0;
    *item = x;
    return 1;
}

static inline int ha_deque_looks_empty(ha_deque *q)
{
    return __atomic_load_n(&q->top, __ATOMIC_RELAXED) >=
           __atomic_load_n(&q->bottom, __ATOMIC_RELAXED);
}

/* What every thread of a team sees. A parallel loop embeds this first in its
 * own shared state, and its per-thread state starts with an ha_worker. */
typedef struct ha_team {
    unsigned threads;   /* running, the caller included */
    int go;             /* the start gate: 1 once every thread is started */
    int stop;           /* set by the first thread that fails: everyone returns */
    int error;          /* that thread's error, and where (its ha_stats) */
    ha_stats failure;
    _Alignas(64) unsigned idle;
    ha_deque *deques;   /* one per thread */
} ha_team;

typedef struct ha_worker {
    ha_team *team;
    unsigned index;
    unsigned victim; /* where the last steal looked */
} ha_worker;

static inline int ha_team_stopped(ha_team *team)
{
    return __atomic_load_n(&team->stop, __ATOMIC_RELAXED);
}

/* Record the first failure (its code and the ha_stats naming where) and stop
 * the team; returns the code, so a loop can `return ha_team_fail(...)`. */
int ha_team_fail(ha_team *team, int error, const ha_stats *where);

/* Steal an item for worker `w`, whose own deque is empty, or learn that the
 * work is done: 1 with *item set; 0 when every thread is idle or the team
 * stopped. */
int ha_team_find_work(ha_worker *w, uint64_t *item);

/* Run `work(worker)` on `threads` threads, the calling thread being worker 0:
 * `workers` holds each thread's state, `stride` bytes apart, each starting
 * with an ha_worker (filled here). Every thread started is joined before this
 * returns; if fewer can be started than asked, the team runs with those that
 * were (team->threads says how many). Returns 0, or HA_ERR_NOMEM if the
 * deques cannot be allocated (nothing ran). */
int ha_team_run(ha_team *team, unsigned threads, void *workers, size_t stride,
                int64_t deque_cap, void (*work)(ha_worker *));

#endif
