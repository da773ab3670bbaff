/* Mutators that allocate in C and collect through a plan's hooks (plan.h)
 * when the allocation space fills: Boehm's GCBench and the Benchmarks Game's
 * binary-trees. Every live reference sits on a shadow stack, the collector's
 * roots, and is re-read after each collection because it may have moved.
 *
 * Each program takes the plan's hooks as a constant, and the entry points
 * switch on the plan, so every plan gets its own copy of the program with its
 * barriers inlined (and a NULL barrier compiled away).
 *
 * The tree builders are loops over an explicit stack, and they hold the
 * allocation state in a local `struct cursor`. The compiler must assume that a
 * store into the heap may change any uint64_t reached through a pointer, so
 * state kept in `struct mutator` would be reloaded after every word written. */
#include "plan.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

struct mutator {
    ha_collector *gc;   /* spaces[0].top is the cursor while no builder holds it */
    uint64_t allocated; /* objects allocated; bytes follow from the cursor */
    uint64_t counted;   /* where the cursor was when bytes were last counted */
    ha_ref *shadow;
    size_t capacity, sp;
    uint64_t *pauses;
    size_t pause_capacity;
    uint64_t started; /* ha_now_ns() when the program began */
    ha_gc_run *run;
    ha_stats *st;
};

/* The state a builder keeps in registers: bump allocation in [top, end). */
struct cursor {
    ha_heap h;
    uint64_t top, end, allocated;
    uint64_t ref_bias; /* every encoding is linear: ref = offset + ref_bias */
    ha_ref *shadow;
    size_t sp;
};

static struct cursor cursor_take(const struct mutator *m)
{
    const ha_space *alloc = &m->gc->spaces[0];
    return (struct cursor){.h = m->gc->heap, .top = alloc->top, .end = alloc->end,
                           .allocated = m->allocated, .ref_bias = ha_encode(&m->gc->heap, 0),
                           .shadow = m->shadow, .sp = m->sp};
}

static void cursor_put(struct mutator *m, const struct cursor *c)
{
    m->gc->spaces[0].top = c->top;
    m->allocated = c->allocated;
    m->sp = c->sp;
}

/* The allocation slow path: the plan collects (one pause) and makes room. */
static int alloc_slow(struct mutator *m, const ha_plan_hooks *hooks, uint64_t bytes)
{
    ha_stats gc;
    m->run->bytes_allocated += m->gc->spaces[0].top - m->counted;
    int rc = hooks->alloc_slow(m->gc, m->shadow, m->sp, bytes, &gc);
    if (rc == HA_OK || rc == HA_ERR_FULL) {
        if (m->run->collections < m->pause_capacity)
            m->pauses[m->run->collections] = gc.nanoseconds;
        m->run->collections++;
        m->run->gc_ns += gc.nanoseconds;
        m->run->bytes_copied += gc.bytes;
    }
    m->counted = m->gc->spaces[0].top;
    return rc ? ha_fail(m->st, rc, gc.error_offset, gc.error_root) : HA_OK;
}

/* Make room for `bytes`, collecting if the space is full; the collection may
 * move every object, so callers read references only after this. */
ALWAYS_INLINE int reserve(struct mutator *m, const ha_plan_hooks *hooks, struct cursor *c,
                          uint64_t bytes)
{
    if (__builtin_expect(c->end - c->top >= bytes, 1))
        return HA_OK;
    cursor_put(m, c);
    int rc = alloc_slow(m, hooks, bytes);
    *c = cursor_take(m);
    return rc;
}

/* A reference store into an object allocated before the mutator's last
 * safepoint, with the plan's write barrier. Initialising stores into an object
 * just bumped need none (it is younger than anything a barrier tracks). */
ALWAYS_INLINE void store_ref(const ha_plan_hooks *hooks, ha_collector *gc, uint64_t *slot,
                             ha_ref ref)
{
    *slot = ref;
    if (hooks->write_barrier)
        hooks->write_barrier(gc, slot, ref);
}

/* A reference load from a heap slot, with the plan's read barrier. */
ALWAYS_INLINE ha_ref load_ref(const ha_plan_hooks *hooks, ha_collector *gc, uint64_t *slot)
{
    ha_ref ref = ha_load(slot);
    return hooks->read_barrier ? hooks->read_barrier(gc, slot, ref) : ref;
}

/* Reserve room on the shadow stack for `slots` more references. */
static int reserve_slots(struct mutator *m, size_t slots)
{
    return m->capacity - m->sp < slots ? ha_fail(m->st, HA_ERR_FULL, 0, (int64_t)m->sp) : HA_OK;
}

/* How far ahead of the bump pointer allocation prefetches. */
#define ALLOC_PREFETCH 256

/* Bump-allocate in reserved space: write the header, zero words [zero_from,
 * words), and return the reference; `*obj` is where to store the rest. */
ALWAYS_INLINE uint64_t bump(struct cursor *c, uint64_t words, uint64_t nrefs,
                            uint64_t zero_from, uint64_t **obj)
{
    uint64_t off = c->top;
    *obj = ha_at(&c->h, off);
    /* The allocation space is cold: every new line costs a read for ownership. Like
     * HotSpot's allocation prefetch, ask for the line ALLOC_PREFETCH bytes ahead for
     * writing, so that miss overlaps the work in between (prefetches never fault). */
    __builtin_prefetch((char *)*obj + ALLOC_PREFETCH, 1, 3);
    c->top += words * 8;
    c->allocated++;
    (*obj)[0] = ha_make_header(words, nrefs);
    if (words <= 8) /* small objects: a loop the compiler unrolls beats a memset call */
        for (uint64_t i = zero_from; i < words; i++)
            (*obj)[i] = 0;
    else
        memset(*obj + zero_from, 0, (words - zero_from) * 8);
    return off + c->ref_bias;
}

/* The object a reference names, or NULL unless it names a valid header with
 * at least `nrefs` reference slots and `words` words: the heap is shared, and
 * a header another writer changed must not send a store past the object. */
ALWAYS_INLINE uint64_t *deref(const ha_heap *h, uint64_t ref, uint64_t nrefs, uint64_t words)
{
    uint64_t off = 0;
    if (!ha_decode(h, ref, &off))
        return NULL;
    uint64_t *obj = ha_deref(h, ref, off), header = ha_load(obj);
    return ha_header_ok(header, off, h->size) && ha_nrefs(header) >= nrefs &&
           ha_words(header) >= words ? obj : NULL;
}

/* Allocate one zeroed object and push its reference. */
static int push_object(struct mutator *m, const ha_plan_hooks *hooks, uint64_t nrefs,
                       uint64_t payload)
{
    uint64_t words = ha_object_words(nrefs, payload), *obj;
    int rc = reserve_slots(m, 1);
    struct cursor c = cursor_take(m);
    if (!rc && !(rc = reserve(m, hooks, &c, words * 8)))
        c.shadow[c.sp++] = bump(&c, words, nrefs, 1, &obj);
    cursor_put(m, &c);
    return rc;
}

/* Bottom-up (GCBench's MakeTree), in post-order: after the k-th leaf, ctz(k)
 * subtrees are complete, and each joins the top two stack entries under a new
 * parent. Leaves the root on the shadow stack. Every store initialises a
 * parent just allocated, so none needs a barrier. */
static int make_tree(struct mutator *m, const ha_plan_hooks *hooks, int depth,
                     uint64_t payload)
{
    uint64_t words = ha_object_words(2, payload), *obj;
    int rc = reserve_slots(m, (size_t)depth + 1);
    struct cursor c = cursor_take(m);
    for (uint64_t k = 1; !rc && k <= 1ULL << depth; k++) {
        int joins = __builtin_ctzll(k);
        if ((rc = reserve(m, hooks, &c, words * 8 * (uint64_t)(1 + joins))))
            break;
        c.shadow[c.sp++] = bump(&c, words, 2, 1, &obj);
        for (; joins > 0; joins--) {
            uint64_t ref = bump(&c, words, 2, 3, &obj);
            obj[1] = c.shadow[c.sp - 2];
            obj[2] = c.shadow[c.sp - 1];
            c.shadow[--c.sp - 1] = ref;
        }
    }
    cursor_put(m, &c);
    return rc;
}

/* Top-down (GCBench's Populate), in pre-order: the stack above the caller's
 * entries holds the nodes still to populate, left child on top, and `levels`
 * the depth below each. Each node gets both children in one reservation, and
 * may be older than the last collection, so its stores take the barrier. */
static int populate(struct mutator *m, const ha_plan_hooks *hooks, int depth, size_t parent,
                    uint64_t payload)
{
    enum { MAX_DEPTH = 62 };
    unsigned char levels[MAX_DEPTH + 1];
    uint64_t words = ha_object_words(2, payload), *node, *child;
    size_t base = m->sp;
    int rc = depth > MAX_DEPTH ? ha_fail(m->st, HA_ERR_ARGUMENT, 0, -1)
                               : reserve_slots(m, (size_t)depth + 1);
    struct cursor c = cursor_take(m);
    if (!rc && depth > 0) {
        c.shadow[c.sp++] = c.shadow[parent];
        levels[0] = (unsigned char)depth;
    }
    while (!rc && c.sp > base) {
        if ((rc = reserve(m, hooks, &c, 2 * words * 8)))
            break;
        if (!(node = deref(&c.h, c.shadow[c.sp - 1], 2, 0))) {
            rc = ha_fail(m->st, HA_ERR_REF, 0, (int64_t)(c.sp - 1));
            break;
        }
        uint64_t left = bump(&c, words, 2, 1, &child), right = bump(&c, words, 2, 1, &child);
        store_ref(hooks, m->gc, &node[1], left);
        store_ref(hooks, m->gc, &node[2], right);
        unsigned char below = levels[c.sp - 1 - base] - 1;
        if (below == 0) {
            c.sp--;
            continue;
        }
        c.shadow[c.sp - 1] = right;
        c.shadow[c.sp] = left;
        levels[c.sp - 1 - base] = levels[c.sp - base] = below;
        c.sp++;
    }
    c.sp = base;
    cursor_put(m, &c);
    return rc;
}

/* Nodes of the tree of `depth` levels below `ref`, counted without allocating;
 * -1 if a node is not a tree node (`words` words, two reference slots) or the
 * tree is deeper, which only a heap changed under the program can make (a cycle
 * would otherwise walk forever). Depth first, as the programs' recursive checks
 * are, with an explicit stack; one copy per encoding, each with the encoding a
 * constant (the walk visits 600 M nodes in binary-trees 21, most of its time).
 * A node's header is checked with one compare: the tree node's header, whatever
 * its age or mark bits, at an offset where the node fits the heap. */
ALWAYS_INLINE int64_t count_nodes(const ha_plan_hooks *hooks, ha_collector *gc, ha_ref ref,
                                  int depth, uint64_t words, uint32_t encoding)
{
    enum { MAX_DEPTH = 62 };
    const uint64_t node = ha_make_header(words, 2);
    const uint64_t ignored = HA_AGE_MASK << HA_AGE_SHIFT | HA_MARKED;
    ha_heap h = gc->heap;
    h.encoding = encoding;
    struct {
        ha_ref ref;
        int depth;
    } stack[MAX_DEPTH + 2];
    int sp = 0;
    int64_t nodes = 0;
    if (depth > MAX_DEPTH)
        return -1;
    while (1) {
        while (ref) {
            uint64_t off;
            if (depth < 0 || !ha_decode(&h, ref, &off) || off > h.size - 8 * words)
                return -1;
            uint64_t *obj = ha_deref(&h, ref, off);
            if ((ha_load(obj) & ~ignored) != node)
                return -1;
            nodes++;
            depth--;
            stack[sp].ref = load_ref(hooks, gc, &obj[2]); /* the right subtree, for later */
            stack[sp++].depth = depth;
            ref = load_ref(hooks, gc, &obj[1]);
        }
        if (!sp)
            return nodes;
        sp--;
        ref = stack[sp].ref;
        depth = stack[sp].depth;
    }
}

ALWAYS_INLINE int64_t item_check(const ha_plan_hooks *hooks, ha_collector *gc, ha_ref ref,
                                 int depth, uint64_t words)
{
    int64_t check = 0;
    HA_WITH_ENCODING(gc->heap.encoding, E, check = count_nodes(hooks, gc, ref, depth, words, E));
    return check;
}

/* Record a check value, or fail if item_check found no tree. */
static int record(struct mutator *m, int64_t check)
{
    if (check < 0)
        return ha_fail(m->st, HA_ERR_HEADER, 0, -1);
    m->run->check[m->run->nchecks++] = check;
    return HA_OK;
}

static int start_run(struct mutator *m)
{
    memset(m->run, 0, sizeof *m->run);
    int rc = ha_begin_collector(m->gc, m->st);
    if (!rc && m->capacity < 64)
        rc = ha_fail(m->st, HA_ERR_ARGUMENT, 0, -1);
    m->counted = m->gc->spaces[0].top;
    m->started = ha_now_ns();
    return rc;
}

/* Stop the program's clock (GCBench stops it before its checks, as Java's does). */
static void stop_clock(struct mutator *m)
{
    if (!m->run->total_ns)
        m->run->total_ns = ha_now_ns() - m->started;
}

/* The collector's spaces already say where the live data is: spaces[0]. */
static int finish_run(struct mutator *m, int rc)
{
    stop_clock(m);
    m->run->bytes_allocated += m->gc->spaces[0].top - m->counted;
    m->run->objects_allocated = m->allocated;
    return ha_end(m->st, rc);
}

#define TREE_SIZE(d) ((1LL << ((d) + 1)) - 1)

/* GCBench's program over the collector in m->gc. */
ALWAYS_INLINE int gcbench(struct mutator *m, const ha_plan_hooks *hooks)
{
    enum { STRETCH = 18, LONG_LIVED = 16, ARRAY = 500000, MIN_DEPTH = 4, MAX_DEPTH = 16 };
    enum { PAYLOAD = 1 }; /* Java's two int fields */
    ha_gc_run *run = m->run;
    ha_ref *shadow = m->shadow;
    int rc = start_run(m);
    /* Stretch the memory space quickly, then drop the tree. */
    /* Node counts come from the allocation counter: GCBench itself never walks. */
    uint64_t allocated = m->allocated;
    if (!rc && !(rc = make_tree(m, hooks, STRETCH, PAYLOAD))) {
        run->check[run->nchecks++] = (int64_t)(m->allocated - allocated);
        m->sp--;
    }
    /* A long-lived tree, populated top-down, and a long-lived array of doubles. */
    size_t tree = m->sp, array = m->sp + 1;
    if (!rc && !(rc = push_object(m, hooks, 2, PAYLOAD)))
        rc = populate(m, hooks, LONG_LIVED, tree, PAYLOAD);
    if (!rc && !(rc = push_object(m, hooks, 0, ARRAY))) {
        uint64_t *values = deref(&m->gc->heap, shadow[array], 0, 1 + ARRAY);
        if (!values)
            rc = ha_fail(m->st, HA_ERR_HEADER, 0, (int64_t)array);
        for (int i = 0; values && i < ARRAY / 2; i++)
            ((double *)(values + 1))[i] = 1.0 / i;
    }
    for (int depth = MIN_DEPTH; !rc && depth <= MAX_DEPTH; depth += 2) {
        long iterations = 2 * TREE_SIZE(STRETCH) / TREE_SIZE(depth);
        allocated = m->allocated;
        for (long i = 0; !rc && i < iterations; i++) { /* top-down */
            if (!(rc = push_object(m, hooks, 2, PAYLOAD)) &&
                !(rc = populate(m, hooks, depth, m->sp - 1, PAYLOAD)))
                m->sp--;
        }
        for (long i = 0; !rc && i < iterations; i++) { /* bottom-up */
            if (!(rc = make_tree(m, hooks, depth, PAYLOAD)))
                m->sp--;
        }
        run->check[run->nchecks++] = (int64_t)(m->allocated - allocated);
    }
    stop_clock(m);
    /* The array may have moved. */
    uint64_t *values = rc ? NULL : deref(&m->gc->heap, shadow[array], 0, 1 + ARRAY);
    if (!rc && !values)
        rc = ha_fail(m->st, HA_ERR_HEADER, 0, (int64_t)array);
    if (!rc && !(rc = record(m, item_check(hooks, m->gc, shadow[tree], LONG_LIVED,
                                            ha_object_words(2, PAYLOAD)))))
        rc = record(m, ((double *)(values + 1))[1000] == 1.0 / 1000); /* GCBench's own test */
    return finish_run(m, rc);
}

/* binary-trees' program over the collector in m->gc. */
ALWAYS_INLINE int binary_trees(struct mutator *m, const ha_plan_hooks *hooks, uint32_t max_depth)
{
    enum { MIN_DEPTH = 4, NODE = 3 /* words: a header and two references */ };
    ha_ref *shadow = m->shadow;
    int rc = start_run(m);
    if (!rc && max_depth > 30)
        rc = ha_fail(m->st, HA_ERR_ARGUMENT, 0, -1);
    int depth_max = max_depth < MIN_DEPTH + 2 ? MIN_DEPTH + 2 : (int)max_depth;
    if (!rc && !(rc = make_tree(m, hooks, depth_max + 1, 0))) { /* stretch */
        rc = record(m, item_check(hooks, m->gc, shadow[m->sp - 1], depth_max + 1, NODE));
        m->sp--;
    }
    size_t long_lived = m->sp;
    if (!rc)
        rc = make_tree(m, hooks, depth_max, 0);
    for (int depth = MIN_DEPTH; !rc && depth <= depth_max; depth += 2) {
        long iterations = 1L << (depth_max - depth + MIN_DEPTH);
        int64_t check = 0;
        for (long i = 0; !rc && i < iterations; i++) {
            if (!(rc = make_tree(m, hooks, depth, 0))) {
                int64_t nodes = item_check(hooks, m->gc, shadow[m->sp - 1], depth, NODE);
                rc = nodes < 0 ? record(m, nodes) : HA_OK;
                check += nodes;
                m->sp--;
            }
        }
        if (!rc)
            rc = record(m, check);
    }
    if (!rc)
        rc = record(m, item_check(hooks, m->gc, shadow[long_lived], depth_max, NODE));
    return finish_run(m, rc);
}

/* ---- entry points: one copy of each program per plan ---- */

static struct mutator mutator_for(ha_collector *gc, ha_ref *shadow, size_t shadow_capacity,
                                  uint64_t *pauses, size_t pause_capacity, ha_gc_run *run,
                                  ha_stats *st)
{
    return (struct mutator){.gc = gc, .shadow = shadow, .capacity = shadow_capacity,
                            .pauses = pauses, .pause_capacity = pause_capacity, .run = run,
                            .st = st};
}

/* An unknown plan: report it as ha_begin_collector would. */
static int unknown_plan(struct mutator *m)
{
    memset(m->run, 0, sizeof *m->run);
    return ha_end(m->st, ha_begin_collector(m->gc, m->st));
}

int ha_gcbench(ha_collector *gc, ha_ref *shadow, size_t shadow_capacity, uint64_t *pauses,
               size_t pause_capacity, ha_gc_run *run, ha_stats *st)
{
    struct mutator m = mutator_for(gc, shadow, shadow_capacity, pauses, pause_capacity, run, st);
    switch (gc->plan) {
    case HA_PLAN_SEMISPACE:
        return gcbench(&m, &ha_semispace_hooks);
    case HA_PLAN_GENERATIONAL:
        return gcbench(&m, &ha_generational_hooks);
    default:
        return unknown_plan(&m);
    }
}

int ha_binary_trees(ha_collector *gc, uint32_t max_depth, ha_ref *shadow,
                    size_t shadow_capacity, uint64_t *pauses, size_t pause_capacity,
                    ha_gc_run *run, ha_stats *st)
{
    struct mutator m = mutator_for(gc, shadow, shadow_capacity, pauses, pause_capacity, run, st);
    switch (gc->plan) {
    case HA_PLAN_SEMISPACE:
        return binary_trees(&m, &ha_semispace_hooks, max_depth);
    case HA_PLAN_GENERATIONAL:
        return binary_trees(&m, &ha_generational_hooks, max_depth);
    default:
        return unknown_plan(&m);
    }
}
