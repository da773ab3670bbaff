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
    /* A collection of the young generation only; NULL for a plan without one. */
    int (*collect_young)(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st);
    /* Checks the plan's own state (beyond its spaces) before a call; NULL if it has none.
     * HA_OK, or an error recorded with ha_fail. */
    int (*check)(const ha_collector *gc, ha_stats *st);
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

/* ---- the generational plan (generational.c) ----
 * spaces: [0] nursery, [1] old, [2] survivors, [3] the empty survivor space. */
enum { HA_GEN_NURSERY = 0, HA_GEN_OLD = 1, HA_GEN_SURVIVOR = 2, HA_GEN_SURVIVOR_TO = 3 };

int ha_generational_alloc_slow(ha_collector *gc, ha_ref *roots, size_t nroots, uint64_t bytes,
                               ha_stats *st);
int ha_generational_collect(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st);
int ha_generational_collect_young(ha_collector *gc, ha_ref *roots, size_t nroots,
                                  ha_stats *st);
int ha_generational_check(const ha_collector *gc, ha_stats *st);

/* The heap offset of a slot the mutator reached through ha_deref: a colored
 * reference dereferences through its color's view, every other encoding through
 * the color-0 view at `base`. */
static inline uint64_t ha_slot_offset(const ha_heap *h, const uint64_t *slot)
{
    if (h->encoding == HA_REF_COLORED)
        return ((uintptr_t)slot - h->ref_base) & ((1ULL << h->shift) - 1);
    return (uintptr_t)slot - h->base;
}

/* The card-marking write barrier: dirty the card of the slot, whatever was
 * stored (unconditional, as HotSpot's serial and parallel collectors do: one
 * store, no test of either generation). A minor collection scans the dirty cards
 * of the old space for references into the young generation. */
static inline void ha_card_barrier(ha_collector *gc, uint64_t *slot, ha_ref ref)
{
    (void)ref;
    gc->generations.cards[ha_slot_offset(&gc->heap, slot) >> HA_CARD_SHIFT] = 1;
}

static const ha_plan_hooks ha_generational_hooks __attribute__((unused)) = {
    .alloc_slow = ha_generational_alloc_slow,
    .collect = ha_generational_collect,
    .collect_young = ha_generational_collect_young,
    .check = ha_generational_check,
    .write_barrier = ha_card_barrier,
    .read_barrier = NULL,
    .nspaces = 4,
};

/* ---- every plan (plans.c) ---- */

/* The hooks of `plan`, or NULL for an unknown one. */
const ha_plan_hooks *ha_plan_hooks_of(uint32_t plan);

/* Start a call on a collector: ha_begin, then check that its plan is known and
 * has its spaces, each valid and no two overlapping. */
int ha_begin_collector(const ha_collector *gc, ha_stats *st);

#endif
