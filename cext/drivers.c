/* Mutators that allocate in C and collect with ha_cheney when a semispace
 * fills: Boehm's GCBench and the Benchmarks Game's binary-trees. Every live
 * reference sits on a shadow stack, the collector's roots, and is re-read
 * after each allocation because a collection may have moved it. */
#include "object_model.h"

struct mutator {
    ha_heap h;          /* by value: stores into the heap cannot alias it */
    uint64_t top, end;  /* the allocation cursor, cached from `from` */
    uint64_t allocated; /* objects allocated; bytes follow from the cursor */
    uint64_t counted;   /* where the cursor was when bytes were last counted */
    ha_space *from, *to;
    uint64_t *shadow;
    size_t capacity, sp;
    uint64_t *pauses;
    size_t pause_capacity;
    ha_gc_run *run;
    ha_stats *st;
};

static int collect(struct mutator *m)
{
    ha_stats gc;
    m->from->top = m->top;
    m->run->bytes_allocated += m->top - m->counted;
    int rc = ha_cheney(&m->h, m->from, m->to, m->shadow, m->sp, &gc);
    if (rc)
        return ha_fail(m->st, rc, gc.error_offset, gc.error_root);
    if (m->run->collections < m->pause_capacity)
        m->pauses[m->run->collections] = gc.nanoseconds;
    m->run->collections++;
    m->run->gc_ns += gc.nanoseconds;
    m->run->bytes_copied += gc.bytes;
    ha_space *old = m->from; /* flip */
    m->from = m->to;
    m->to = old;
    m->to->top = m->to->start;
    m->top = m->counted = m->from->top;
    m->end = m->from->end;
    return HA_OK;
}

/* Allocate a zeroed object and push its reference on the shadow stack. */
/* Inlined into every caller, so the object's size is a constant there. */
static inline __attribute__((always_inline)) int
push_new(struct mutator *m, uint64_t nrefs, uint64_t payload)
{
    uint64_t words = 1 + nrefs + payload, bytes;
    if (words < HA_MIN_WORDS)
        words = HA_MIN_WORDS;
    bytes = words * 8;
    if (__builtin_expect(m->sp == m->capacity, 0))
        return ha_fail(m->st, HA_ERR_FULL, 0, (int64_t)m->sp);
    if (__builtin_expect(m->end - m->top < bytes, 0)) {
        int rc = collect(m);
        if (rc)
            return rc;
        if (m->end - m->top < bytes)
            return ha_fail(m->st, HA_ERR_FULL, m->top, -1);
    }
    uint64_t off = m->top;
    m->top += bytes;
    uint64_t *obj = ha_at(&m->h, off);
    obj[0] = ha_make_header(words, nrefs);
    if (words <= 8) /* small objects: a loop the compiler unrolls beats a memset call */
        for (uint64_t i = 1; i < words; i++)
            obj[i] = 0;
    else
        memset(obj + 1, 0, bytes - 8);
    m->shadow[m->sp++] = ha_encode(&m->h, off);
    m->allocated++;
    return HA_OK;
}

/* The object a shadow-stack slot names (valid until the next allocation). */
static inline __attribute__((always_inline)) uint64_t *
slot_object(struct mutator *m, size_t index)
{
    uint64_t off = 0;
    ha_decode(&m->h, m->shadow[index], &off);
    return ha_deref(&m->h, m->shadow[index], off);
}

/* Bottom-up: children first, then the parent; leaves the tree on the stack. */
static int make_tree(struct mutator *m, int depth, uint64_t payload)
{
    int rc;
    if (depth <= 0)
        return push_new(m, 2, payload);
    if (depth == 1) { /* two leaves, allocated here rather than by two calls */
        if ((rc = push_new(m, 2, payload)) || (rc = push_new(m, 2, payload)))
            return rc;
    } else if ((rc = make_tree(m, depth - 1, payload)) || (rc = make_tree(m, depth - 1, payload))) {
        return rc;
    }
    if ((rc = push_new(m, 2, payload)))
        return rc;
    /* stack: left, right, node -> node, pointing at left and right */
    uint64_t *obj = slot_object(m, m->sp - 1);
    obj[1] = m->shadow[m->sp - 3];
    obj[2] = m->shadow[m->sp - 2];
    m->shadow[m->sp - 3] = m->shadow[m->sp - 1];
    m->sp -= 2;
    return HA_OK;
}

/* Top-down (GCBench's Populate): give the node at `parent` two new children,
 * then populate each. The right child is handled by the loop instead of a
 * call; the children stay on the shadow stack until the whole subtree is done. */
static int populate(struct mutator *m, int depth, size_t parent)
{
    size_t base = m->sp;
    int rc;
    for (; depth > 0; depth--) {
        if ((rc = push_new(m, 2, 1)) || (rc = push_new(m, 2, 1)))
            return rc;
        size_t left = m->sp - 2, right = m->sp - 1;
        uint64_t *node = slot_object(m, parent);
        node[1] = m->shadow[left];
        node[2] = m->shadow[right];
        if (depth > 1 && (rc = populate(m, depth - 1, left)))
            return rc;
        parent = right;
    }
    m->sp = base;
    return HA_OK;
}

/* Nodes reachable from a tree root, counted without allocating. */
static int64_t item_check(struct mutator *m, uint64_t ref)
{
    uint64_t off;
    if (ref == 0 || !ha_decode(&m->h, ref, &off))
        return 0;
    uint64_t *node = ha_deref(&m->h, ref, off);
    return 1 + item_check(m, node[1]) + item_check(m, node[2]);
}

static int start_run(struct mutator *m, const ha_heap *h, ha_space *a, ha_space *b)
{
    memset(m->run, 0, sizeof *m->run);
    m->h = *h;
    m->top = m->counted = a->top;
    m->end = a->end;
    int rc = ha_begin(h, m->st);
    if (!rc && (!ha_space_ok(h, a) || !ha_space_ok(h, b) || m->capacity < 64 ||
                (a->start < b->end && b->start < a->end)))
        rc = ha_fail(m->st, HA_ERR_ARGUMENT, 0, -1);
    m->run->total_ns = ha_now_ns();
    return rc;
}

/* Stop the clock, and tell the caller which space now holds the live data:
 * `a` gets the allocation space, `b` the empty one. */
static int finish_run(struct mutator *m, ha_space *a, ha_space *b, int rc)
{
    m->from->top = m->top;
    m->run->bytes_allocated += m->top - m->counted;
    m->run->objects_allocated = m->allocated;
    ha_space live = *m->from, spare = *m->to;
    *a = live;
    *b = spare;
    m->run->total_ns = ha_now_ns() - m->run->total_ns;
    return ha_end(m->st, rc);
}

#define TREE_SIZE(d) ((1LL << ((d) + 1)) - 1)

int ha_gcbench(const ha_heap *h, ha_space *a, ha_space *b, uint64_t *shadow,
               size_t shadow_capacity, uint64_t *pauses, size_t pause_capacity,
               ha_gc_run *run, ha_stats *st)
{
    enum { STRETCH = 18, LONG_LIVED = 16, ARRAY = 500000, MIN_DEPTH = 4, MAX_DEPTH = 16 };
    struct mutator m = {.from = a, .to = b, .shadow = shadow, .capacity = shadow_capacity,
                        .pauses = pauses, .pause_capacity = pause_capacity, .run = run, .st = st};
    int rc = start_run(&m, h, a, b);
    /* Stretch the memory space quickly, then drop the tree. */
    /* Node counts come from the allocation counter: GCBench itself never walks. */
    uint64_t allocated = m.allocated;
    if (!rc && !(rc = make_tree(&m, STRETCH, 1))) {
        run->check[run->nchecks++] = (int64_t)(m.allocated - allocated);
        m.sp--;
    }
    /* A long-lived tree, populated top-down, and a long-lived array of doubles. */
    size_t tree = m.sp, array = m.sp + 1;
    if (!rc && !(rc = push_new(&m, 2, 1)))
        rc = populate(&m, LONG_LIVED, tree);
    if (!rc && !(rc = push_new(&m, 0, ARRAY))) {
        double *values = (double *)(slot_object(&m, array) + 1);
        for (int i = 0; i < ARRAY / 2; i++)
            values[i] = 1.0 / i;
    }
    for (int depth = MIN_DEPTH; !rc && depth <= MAX_DEPTH; depth += 2) {
        long iterations = 2 * TREE_SIZE(STRETCH) / TREE_SIZE(depth);
        allocated = m.allocated;
        for (long i = 0; !rc && i < iterations; i++) { /* top-down */
            if (!(rc = push_new(&m, 2, 1)) && !(rc = populate(&m, depth, m.sp - 1)))
                m.sp--;
        }
        for (long i = 0; !rc && i < iterations; i++) { /* bottom-up */
            if (!(rc = make_tree(&m, depth, 1)))
                m.sp--;
        }
        run->check[run->nchecks++] = (int64_t)(m.allocated - allocated);
    }
    if (!rc) {
        double *values = (double *)(slot_object(&m, array) + 1);
        run->check[run->nchecks++] = item_check(&m, shadow[tree]);
        run->check[run->nchecks++] = values[1000] == 1.0 / 1000; /* GCBench's own test */
    }
    return finish_run(&m, a, b, rc);
}

int ha_binary_trees(const ha_heap *h, ha_space *a, ha_space *b, uint32_t max_depth,
                    uint64_t *shadow, size_t shadow_capacity, uint64_t *pauses,
                    size_t pause_capacity, ha_gc_run *run, ha_stats *st)
{
    enum { MIN_DEPTH = 4 };
    struct mutator m = {.from = a, .to = b, .shadow = shadow, .capacity = shadow_capacity,
                        .pauses = pauses, .pause_capacity = pause_capacity, .run = run, .st = st};
    int rc = start_run(&m, h, a, b);
    if (!rc && (max_depth > 30 || (size_t)max_depth + 8 > shadow_capacity))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    int depth_max = max_depth < MIN_DEPTH + 2 ? MIN_DEPTH + 2 : (int)max_depth;
    if (!rc && !(rc = make_tree(&m, depth_max + 1, 0))) { /* stretch */
        run->check[run->nchecks++] = item_check(&m, shadow[m.sp - 1]);
        m.sp--;
    }
    size_t long_lived = m.sp;
    if (!rc)
        rc = make_tree(&m, depth_max, 0);
    for (int depth = MIN_DEPTH; !rc && depth <= depth_max; depth += 2) {
        long iterations = 1L << (depth_max - depth + MIN_DEPTH);
        int64_t check = 0;
        for (long i = 0; !rc && i < iterations; i++) {
            if (!(rc = make_tree(&m, depth, 0))) {
                check += item_check(&m, shadow[m.sp - 1]);
                m.sp--;
            }
        }
        run->check[run->nchecks++] = check;
    }
    if (!rc)
        run->check[run->nchecks++] = item_check(&m, shadow[long_lived]);
    return finish_run(&m, a, b, rc);
}
