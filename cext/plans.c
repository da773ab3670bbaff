/* The table of plans, and the checks every plan's caller makes first. */
#include "plan.h"

const ha_plan_hooks *ha_plan_hooks_of(uint32_t plan)
{
    switch (plan) {
    case HA_PLAN_SEMISPACE:
        return &ha_semispace_hooks;
    case HA_PLAN_GENERATIONAL:
        return &ha_generational_hooks;
    default:
        return NULL;
    }
}

int ha_begin_collector(const ha_collector *gc, ha_stats *st)
{
    int rc = ha_begin(&gc->heap, st);
    const ha_plan_hooks *hooks = ha_plan_hooks_of(gc->plan);
    if (!rc && (!hooks || gc->nspaces != hooks->nspaces || gc->nspaces > HA_MAX_SPACES))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    for (uint32_t i = 0; !rc && i < gc->nspaces; i++) {
        if (!ha_space_ok(&gc->heap, &gc->spaces[i]))
            rc = ha_fail(st, HA_ERR_ARGUMENT, gc->spaces[i].start, -1);
        for (uint32_t j = 0; !rc && j < i; j++)
            if (!ha_semispaces_ok(&gc->heap, &gc->spaces[i], &gc->spaces[j]))
                rc = ha_fail(st, HA_ERR_ARGUMENT, gc->spaces[i].start, -1);
    }
    if (!rc && hooks->check)
        rc = hooks->check(gc, st);
    return rc;
}

int ha_collect(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st)
{
    int rc = ha_begin_collector(gc, st);
    if (rc)
        return ha_end(st, rc);
    return ha_plan_hooks_of(gc->plan)->collect(gc, roots, nroots, st);
}

int ha_collect_young(ha_collector *gc, ha_ref *roots, size_t nroots, ha_stats *st)
{
    int rc = ha_begin_collector(gc, st);
    if (!rc && !ha_plan_hooks_of(gc->plan)->collect_young)
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    if (rc)
        return ha_end(st, rc);
    return ha_plan_hooks_of(gc->plan)->collect_young(gc, roots, nroots, st);
}

int ha_collect_for(ha_collector *gc, ha_ref *roots, size_t nroots, uint64_t bytes,
                   ha_stats *st)
{
    int rc = ha_begin_collector(gc, st);
    if (rc)
        return ha_end(st, rc);
    return ha_plan_hooks_of(gc->plan)->alloc_slow(gc, roots, nroots, bytes, st);
}
