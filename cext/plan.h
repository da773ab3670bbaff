/* The collector interface: the hooks through which a mutator allocates,
 * stores and loads references, and collects. A plan is one C file that
 * defines its hooks, and one entry in ha_plan_hooks_of (plans.c).
 *
 * The drivers take the hooks as a constant pointer and GCC inlines them
 * through it, so a plan whose barriers are NULL costs its mutators nothing: the
 * `if (hooks->write_barrier)` folds away (see docs/collectors/adding.md). */
#ifndef HEAPALIAS_PLAN_H
#define HEAPALIAS_PLAN_H

#include "object_model.h"

typedef struct ha_plan_hooks {
    /* Make room for `bytes` in spaces[0], collecting as the plan sees fit; the
     * roots are updated in place. HA_ERR_FULL if there is still no room. `st`
     * gets the collection's stats: one call is one pause. */
    int (*alloc_slow)(ha_collector *gc, ha_ref *roots, size_t nroots, uint64_t bytes,
                      ha_stats *st);
    /* A full collection. */
    int (*collect)(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st);
    /* Runs after the mutator stores `ref` into `slot` of an object it did not
     * allocate since its last safepoint; NULL when the plan needs no barrier. */
    void (*write_barrier)(ha_collector *gc, uint64_t *slot, ha_ref ref);
    /* Applied to every reference the mutator loads from a heap slot; NULL when
     * the plan needs none. */
    ha_ref (*read_barrier)(ha_collector *gc, uint64_t *slot, ha_ref ref);
    /* How many spaces the plan declares. */
    uint32_t nspaces;
} ha_plan_hooks;

/* ---- the semispace plan (semispace.c) ---- */
int ha_semispace_alloc_slow(ha_collector *gc, ha_ref *roots, size_t nroots, uint64_t bytes,
                            ha_stats *st);
int ha_semispace_collect(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st);

static const ha_plan_hooks ha_semispace_hooks __attribute__((unused)) = {
    .alloc_slow = ha_semispace_alloc_slow,
    .collect = ha_semispace_collect,
    .write_barrier = NULL,
    .read_barrier = NULL,
    .nspaces = 2,
};

/* ---- every plan (plans.c) ---- */

/* The hooks of `plan`, or NULL for an unknown one. */
const ha_plan_hooks *ha_plan_hooks_of(uint32_t plan);

/* Start a call on a collector: ha_begin, then check that its plan is known and
 * has its spaces, each valid and no two overlapping. */
int ha_begin_collector(const ha_collector *gc, ha_stats *st);

#endif
