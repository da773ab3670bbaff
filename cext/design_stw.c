/* The stop-the-world design, the baseline: stop the mutator, evacuate with
 * the semispace plan's collection (Cheney, then flip), let it go. The whole
 * evacuation is one pause. */
#include "concurrent.h"

static int stw_cycle(struct ha_conc *c)
{
    int parked = ha_conc_stop_mutator(c);
    ha_stats gc;
    int rc = ha_semispace_collect(c->gc, c->roots, c->nroots, &gc);
    if (!rc) {
        c->run->bytes_relocated += gc.bytes;
        c->run->objects_relocated += gc.objects;
        rc = ha_conc_verify(c);
    } else {
        *c->st = gc;
        ha_conc_fail(c, rc);
    }
    if (parked)
        ha_conc_release_mutator(c);
    return rc;
}

const ha_design_ops ha_design_stw = {.name = "stw", .cycle = stw_cycle};
