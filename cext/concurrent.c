/* The concurrent harness: start the mutator thread (mutator.c), run the
 * design's collection cycles beside it on the calling thread, join it.
 *
 * Cycles run on a schedule counted in the mutator's operations (cycle k starts
 * once k/(n+1) of them are done), so a run is the same program whatever the
 * timing, and at once whenever the mutator runs out of room. */
#include "concurrent.h"

#include <pthread.h>
#include <stdlib.h>

int ha_conc_stop_mutator(struct ha_conc *c)
{
    uint64_t epoch = c->requested + 1; /* only the collector writes `requested` */
    HA_ATOMIC_STORE(&c->requested, epoch);
    for (unsigned spins = 0; HA_ATOMIC_LOAD(&c->parked) != epoch; spins++) {
        if (HA_ATOMIC_LOAD(&c->done))
            return 0;
        if (spins < 1000)
            __builtin_ia32_pause();
        else
            sched_yield();
    }
    return 1;
}

void ha_conc_release_mutator(struct ha_conc *c)
{
    HA_ATOMIC_STORE(&c->released, c->requested);
}

void ha_conc_record_stall(struct ha_conc *c, uint64_t start, uint32_t kind)
{
    uint64_t end = ha_now_ns(); /* the bookkeeping below is not the stall's */
    uint64_t n = __atomic_fetch_add(&c->stall_count, 1, __ATOMIC_RELAXED);
    if (n + 8 < c->stall_capacity) /* else the next stall's locked add waits for this miss */
        __builtin_prefetch(&c->stalls[n + 8], 1);
    if (n < c->stall_capacity)
        c->stalls[n] = (ha_stall){.start_ns = start, .ns = end - start, .kind = kind};
}

void ha_conc_flip_spaces(struct ha_conc *c)
{
    ha_collector *gc = c->gc;
    ha_space from = gc->spaces[0];
    gc->spaces[0] = gc->spaces[1];
    gc->spaces[1] = from;
    c->relocating = 1;
}

int ha_conc_flip_roots(struct ha_conc *c, ha_root_relocator relocate, void *design)
{
    for (size_t i = 0; i < c->nroots; i++) {
        if (!c->roots[i])
            continue;
        ha_ref moved = relocate(c, design, c->roots[i]);
        if (!moved)
            return HA_ATOMIC_LOAD(&c->failed);
        c->roots[i] = moved;
    }
    ha_conc_flip_spaces(c);
    return HA_OK;
}

int ha_conc_verify(struct ha_conc *c)
{
    if (!c->mix->verify)
        return HA_OK;
    const ha_heap *h = &c->gc->heap;
    memset(c->verify_bitmap, 0, (h->size / 512 + 1) * 8);
    ha_stats st;
    int rc = ha_verify(h, &c->gc->spaces[0], 1, c->roots, c->nroots, c->verify_bitmap, &st);
    if (rc)
        *c->st = st;
    return ha_conc_fail(c, rc);
}

int ha_stamp_identities(const ha_heap *h, const ha_space *space, ha_stats *st)
{
    int rc = ha_begin_space(h, space, st);
    ha_cursor cursor = ha_cursor_of(space);
    while (!rc && ha_next_object(h, &cursor, &rc, st)) {
        uint64_t nrefs = ha_nrefs(cursor.header);
        if (ha_words(cursor.header) < nrefs + 3)
            rc = ha_fail(st, HA_ERR_ARGUMENT, cursor.off, -1);
        else
            ha_at(h, cursor.off)[1 + nrefs] = st->objects++;
    }
    return ha_end(st, rc);
}

static int mix_ok(const ha_mutator_mix *mix, size_t nroots)
{
    return nroots > 0 && mix->path_length > 0 && mix->path_length <= 1u << 20 &&
           mix->store_permille + (uint64_t)mix->alloc_permille <= 1000 &&
           mix->collections <= 1u << 20;
}

/* The collector's side: the scheduled cycles (those the mutator did not live to
 * see run after it), and a cycle whenever the mutator is out of room. */
static int collect_beside(struct ha_conc *c)
{
    const ha_mutator_mix *mix = c->mix;
    uint64_t scheduled = 0;
    for (;;) {
        int done = HA_ATOMIC_LOAD(&c->done);
        uint64_t due = mix->operations / (mix->collections + 1) * (scheduled + 1);
        int on_schedule = scheduled < mix->collections &&
                          (done || HA_ATOMIC_LOAD(&c->operations) >= due);
        int wanted = on_schedule || HA_ATOMIC_LOAD(&c->need_gc);
        if (!wanted && done)
            return HA_OK;
        if (!wanted) {
            sched_yield();
            continue;
        }
        scheduled += on_schedule;
        HA_ATOMIC_STORE(&c->need_gc, 0);
        uint64_t start = ha_now_ns();
        int rc = c->design->cycle(c);
        c->run->collector_ns += ha_now_ns() - start;
        if (rc)
            return ha_conc_fail(c, rc);
        c->run->collections++;
    }
}

int ha_concurrent(ha_collector *gc, uint32_t design, const ha_mutator_mix *mix,
                  const ha_trap_view *trap, ha_ref *roots, size_t nroots, ha_stall *stalls,
                  size_t stall_capacity, ha_concurrent_run *run, ha_stats *st)
{
    memset(run, 0, sizeof *run);
    int rc = ha_begin_collector(gc, st);
    if (rc)
        return ha_end(st, rc);
    const ha_design_ops *ops = NULL;
    switch (design) {
    case HA_DESIGN_NONE:
        break;
    case HA_DESIGN_STW:
        ops = &ha_design_stw;
        break;
    case HA_DESIGN_COLORED:
        ops = &ha_design_colored;
        break;
    case HA_DESIGN_MINOR:
        ops = &ha_design_minor;
        break;
    case HA_DESIGN_COPY:
        ops = &ha_design_copy;
        break;
    case HA_DESIGN_MOVE:
        ops = &ha_design_move;
        break;
    default:
        return ha_end(st, ha_fail(st, HA_ERR_ARGUMENT, 0, -1));
    }
    if (gc->plan != HA_PLAN_SEMISPACE || !mix_ok(mix, nroots) ||
        (ops == &ha_design_colored &&
         (gc->heap.encoding < HA_REF_COLORED || gc->heap.ncolors < 2)) ||
        (ops == &ha_design_minor && (!trap || gc->heap.encoding != HA_REF_OFFSET)))
        return ha_end(st, ha_fail(st, HA_ERR_ARGUMENT, 0, -1));
    struct ha_conc c = {.gc = gc, .design = ops, .trap = trap, .roots = roots,
                        .nroots = nroots, .stalls = stalls, .stall_capacity = stall_capacity,
                        .st = st, .mix_copy = *mix};
    c.mix = &c.mix_copy;
    c.run = &c.counts;
    c.mutator_st.error_root = -1;
    if (mix->verify && !(c.verify_bitmap = calloc(gc->heap.size / 512 + 1, 8)))
        return ha_end(st, ha_fail(st, HA_ERR_NOMEM, 0, -1));
    pthread_t mutator;
    if ((ops && ops->prepare && (rc = ops->prepare(&c))) ||
        (pthread_create(&mutator, NULL, ha_mutator_main, &c) &&
         (rc = ha_fail(st, HA_ERR_NOMEM, 0, -1)))) {
        if (ops && ops->finish)
            ops->finish(&c);
        free(c.verify_bitmap);
        return ha_end(st, rc);
    }
    uint64_t cpu_started = ha_thread_cpu_ns();
    rc = ops ? collect_beside(&c) : HA_OK;
    c.counts.collector_cpu_ns = ha_thread_cpu_ns() - cpu_started;
    if (ops && ops->finish) /* before the join: the mutator may be blocked on a trap */
        ops->finish(&c);
    if (rc) /* a parked mutator sees the failure and stops */
        ha_conc_release_mutator(&c);
    pthread_join(mutator, NULL);
    free(c.verify_bitmap);
    *run = c.counts;
    run->stalls = c.stall_count;
    run->bytes_relocated += c.mutator_bytes_relocated;
    run->objects_relocated += c.mutator_objects_relocated;
    rc = HA_ATOMIC_LOAD(&c.failed);
    if (rc && !st->error) /* the mutator's failure: its details */
        *st = (ha_stats){.error = c.mutator_st.error, .error_offset = c.mutator_st.error_offset,
                         .error_root = c.mutator_st.error_root, .nanoseconds = st->nanoseconds};
    st->objects = run->objects_relocated;
    st->bytes = run->bytes_relocated;
    return ha_end(st, rc);
}
