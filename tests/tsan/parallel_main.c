/* A C program over the parallel loops, for ThreadSanitizer (see concurrent_main.c
 * for why not through CPython); tests/test_tsan.py builds and runs it.
 *
 *   parallel_main ENCODING THREADS SEED   mark a seeded random graph and evacuate it
 *       back and forth on THREADS threads; exit 0 if every count agrees with the
 *       single-thread loops and to-space verifies
 *   parallel_main corrupt THREADS         the same with one header broken: exit 0 if
 *       both loops report it */
#include "multimapped.h"
#include "object_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OBJECTS = 30000, ROOTS = 64, STACK = 1 << 16 };

static ha_ref stack[STACK];
static uint64_t bitmap[HEAP / 512 + 1];

static int fail(const char *what, int rc, const ha_stats *st)
{
    fprintf(stderr, "%s: error %d at %#llx\n", what, rc, (unsigned long long)st->error_offset);
    return 4;
}

/* Mark on one thread and on `threads`; 0 if they mark the same. */
static int mark_both(const ha_heap *h, const ha_space *s, const ha_ref *roots, uint32_t threads)
{
    ha_stats one, many;
    int rc = ha_mark(h, s, 1, roots, ROOTS, stack, STACK, &one);
    if (!rc)
        rc = ha_clear_marks(h, s, &many);
    if (rc)
        return fail("mark", rc, &one);
    for (size_t capacity = 64; capacity <= STACK; capacity *= STACK / 64) { /* overflow, not */
        if ((rc = ha_mark_parallel(h, s, 1, roots, ROOTS, stack, capacity, threads, &many)))
            return fail("parallel mark", rc, &many);
        if (many.objects != one.objects || many.bytes != one.bytes)
            return fail("parallel mark counts", 5, &many);
        ha_clear_marks(h, s, &many);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 3 && !strcmp(argv[1], "corrupt"))) {
        fprintf(stderr, "usage: %s ENCODING THREADS SEED | corrupt THREADS\n", argv[0]);
        return 2;
    }
    static const char *names[] = {"offset", "address", "colored", "masked"};
    uint32_t encoding = 0;
    while (encoding < 4 && strcmp(argv[1], names[encoding]))
        encoding++;
    int corrupt = encoding == 4;
    uint32_t threads = (uint32_t)strtoul(argv[2], NULL, 0);
    uint64_t seed = argc == 4 ? strtoull(argv[3], NULL, 0) : 1, base = multimapped();
    if (!base)
        return 3;
    ha_heap h = heap_at(base, corrupt ? HA_REF_OFFSET : encoding);
    h.store_color = h.ncolors - 1;
    ha_space halves[2] = {{8, HEAP / 2, 8}, {HEAP / 2, HEAP, HEAP / 2}};
    ha_ref roots[ROOTS];
    ha_stats st;
    int rc = ha_random_graph(&h, &halves[0], OBJECTS, 2, 0, 6, NULL, NULL, 0, seed, roots,
                             ROOTS, &st);
    if (rc)
        return fail("graph", rc, &st);
    if (corrupt) {
        ha_off victim = halves[0].top / 2 / 8 * 8;
        ha_cursor c = ha_cursor_of(&halves[0]);
        while (ha_next_object(&h, &c, &rc, &st) && c.off < victim)
            ;
        *ha_at(&h, c.off) = 0xBAD;
        rc = ha_mark_parallel(&h, &halves[0], 1, roots, ROOTS, stack, STACK, threads, &st);
        int evacuated = ha_cheney_parallel(&h, &halves[0], &halves[1], roots, ROOTS, threads,
                                           &st);
        printf("mark %d cheney %d\n", rc, evacuated);
        return rc == HA_ERR_HEADER && evacuated == HA_ERR_HEADER ? 0 : 5;
    }
    ha_stats one;
    if ((rc = mark_both(&h, &halves[0], roots, threads)) ||
        (rc = ha_mark(&h, &halves[0], 1, roots, ROOTS, stack, STACK, &one)) ||
        (rc = ha_clear_marks(&h, &halves[0], &st)))
        return rc;
    for (int round = 0; round < 4; round++) {
        ha_space *from = &halves[round % 2], *to = &halves[1 - round % 2];
        if ((rc = ha_cheney_parallel(&h, from, to, roots, ROOTS, threads, &st)))
            return fail("parallel cheney", rc, &st);
        if (st.objects != one.objects || st.bytes != one.bytes)
            return fail("parallel cheney counts", 5, &st);
        from->top = from->start;
        memset(bitmap, 0, sizeof bitmap);
        if ((rc = ha_verify(&h, to, 1, roots, ROOTS, bitmap, &st)) || st.objects != one.objects)
            return fail("verify", rc ? rc : 5, &st);
        if ((rc = mark_both(&h, to, roots, threads)))
            return rc;
    }
    printf("objects %llu\n", (unsigned long long)one.objects);
    return 0;
}
