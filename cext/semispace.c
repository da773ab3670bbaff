/* The semispace plan: the mutator allocates in spaces[0]; a collection
 * evacuates what the roots reach into spaces[1] (Cheney: copy.c, or
 * cheney_parallel.c on gc->threads threads) and swaps the two. Nothing is
 * shared between a mutator's stores and the collector, so the plan has no
 * barriers. */
#include "plan.h"

int ha_semispace_collect(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st)
{
    ha_space *from = &gc->spaces[0], *to = &gc->spaces[1];
    int rc = ha_cheney_parallel(&gc->heap, from, to, roots, nroots,
                                gc->threads ? gc->threads : 1, st);
    if (rc)
        return rc;
    ha_space emptied = *from;
    emptied.top = emptied.start;
    *from = *to;
    *to = emptied;
    return HA_OK;
}

int ha_semispace_alloc_slow(ha_collector *gc, ha_ref *roots, size_t nroots, uint64_t bytes,
                            ha_stats *st)
{
    int rc = ha_semispace_collect(gc, roots, nroots, st);
    const ha_space *alloc = &gc->spaces[0];
    if (!rc && alloc->end - alloc->top < bytes)
        rc = ha_fail(st, HA_ERR_FULL, alloc->top, -1);
    return rc;
}
