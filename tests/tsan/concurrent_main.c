/* A C program over the concurrent harness, for ThreadSanitizer: CPython itself
 * cannot run under a preloaded libtsan here, so tests/test_tsan.py compiles
 * this file with cext/*.c and -fsanitize=thread and runs it.
 *
 *   concurrent_main DESIGN OPERATIONS COLLECTIONS SEED   run DESIGN (stw, colored,
 *       masked or minor) and the reference run on the same graph; exit 0 if their
 *       checksums agree. minor runs over view 0 and collects through view 1;
 *       copy and move over a private anonymous heap; each page-trap design with
 *       its collector slowed, so that the mutator meets trapped pages
 *   concurrent_main race                                 a deliberate data race,
 *       which TSan must report (proof the build is instrumented) */
#include "concurrent.h"
#include "multimapped.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OBJECTS = 20000, ROOTS = 64 };

static int racy;
static void *bump_racy(void *unused)
{
    (void)unused;
    racy++;
    return NULL;
}

static int race(void)
{
    pthread_t t;
    pthread_create(&t, NULL, bump_racy, NULL);
    racy++;
    pthread_join(t, NULL);
    return racy == 2 ? 0 : 1;
}

/* Build the seeded graph in a fresh semispace heap and run `design` on it. */
static int run(uint64_t base, uint32_t encoding, uint32_t design, const ha_mutator_mix *mix,
               const ha_trap_view *trap, uint64_t seed, ha_concurrent_run *out)
{
    memset((void *)(uintptr_t)base, 0, HEAP);
    ha_heap h = heap_at(base, encoding);
    ha_collector gc = {.plan = HA_PLAN_SEMISPACE, .nspaces = 2, .heap = h,
                       .spaces = {{8, HEAP / 2, 8}, {HEAP / 2, HEAP, HEAP / 2}}};
    ha_ref roots[ROOTS];
    ha_stats st;
    int rc = ha_random_graph(&h, &gc.spaces[0], OBJECTS, 2, 2, 4, NULL, NULL, 0, seed, roots,
                             ROOTS, &st);
    static ha_stall stalls[1 << 12];
    if (!rc)
        rc = ha_stamp_identities(&h, &gc.spaces[0], &st);
    if (!rc)
        rc = ha_concurrent(&gc, design, mix, trap, roots, ROOTS, stalls, 1 << 12, out, &st);
    if (rc)
        fprintf(stderr, "design %u failed: error %d at %#llx\n", design, rc,
                (unsigned long long)st.error_offset);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "race"))
        return race();
    if (argc != 5) {
        fprintf(stderr, "usage: %s DESIGN OPERATIONS COLLECTIONS SEED | race\n", argv[0]);
        return 2;
    }
    uint32_t design = HA_DESIGN_COLORED, encoding = HA_REF_OFFSET;
    if (!strcmp(argv[1], "stw"))
        design = HA_DESIGN_STW;
    else if (!strcmp(argv[1], "colored"))
        encoding = HA_REF_COLORED;
    else if (!strcmp(argv[1], "masked"))
        encoding = HA_REF_MASKED;
    else if (!strcmp(argv[1], "minor"))
        design = HA_DESIGN_MINOR;
    else if (!strcmp(argv[1], "copy"))
        design = HA_DESIGN_COPY;
    else if (!strcmp(argv[1], "move"))
        design = HA_DESIGN_MOVE;
    else
        return 2;
    ha_mutator_mix mix = {.operations = strtoull(argv[2], NULL, 0), .seed = 7,
                          .store_permille = 200, .alloc_permille = 100, .path_length = 8,
                          .collections = (uint32_t)strtoul(argv[3], NULL, 0)};
    uint64_t seed = strtoull(argv[4], NULL, 0);
    uint64_t base = multimapped();
    uintptr_t private_heap = 0;
    int compacts = design == HA_DESIGN_COPY || design == HA_DESIGN_MOVE;
    if (compacts && ha_mmap(0, HEAP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0,
                            &private_heap))
        return 3;
    if (compacts)
        base = private_heap;
    if (!base)
        return 3;
    ha_trap_view trap = {.collector_base = base + (1ULL << SHIFT), .page_size = 4096};
    ha_mutator_mix slowed = mix;
    if (design >= HA_DESIGN_MINOR)
        slowed.collector_delay_ns = 1000;
    ha_concurrent_run reference, run_with;
    if (run(base, encoding, HA_DESIGN_NONE, &mix, NULL, seed, &reference) ||
        run(base, encoding, design, &slowed, design == HA_DESIGN_MINOR ? &trap : NULL, seed,
            &run_with))
        return 4;
    printf("collections %llu checksum %llx reference %llx faults %llu\n",
           (unsigned long long)run_with.collections, (unsigned long long)run_with.checksum,
           (unsigned long long)reference.checksum, (unsigned long long)run_with.faults);
    return run_with.checksum == reference.checksum ? 0 : 5;
}
