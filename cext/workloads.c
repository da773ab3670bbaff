/* Deterministic, seeded object graphs built by bump allocation in one space. */
#include "object_model.h"

#include <stdlib.h>

/* splitmix64: a full-period generator that any seed, 0 included, starts well. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Bump-allocate a zeroed object; its heap offset goes to *off. */
static int allocate(const ha_heap *h, ha_space *s, uint64_t nrefs,
                    uint64_t payload, uint64_t *off, ha_stats *st)
{
    if (nrefs > HA_MAX_REFS || payload > HA_MAX_WORDS) /* before the sum can wrap */
        return ha_fail(st, HA_ERR_ARGUMENT, s->top, -1);
    uint64_t words = ha_object_words(nrefs, payload);
    if (words > HA_MAX_WORDS)
        return ha_fail(st, HA_ERR_ARGUMENT, s->top, -1);
    if (s->end - s->top < words * 8)
        return ha_fail(st, HA_ERR_FULL, s->top, -1);
    *off = s->top;
    s->top += words * 8;
    uint64_t *obj = ha_at(h, *off);
    obj[0] = ha_make_header(words, nrefs);
    memset(obj + 1, 0, (words - 1) * 8);
    st->objects++;
    st->bytes += words * 8;
    return HA_OK;
}

/* Whether n objects can fit in the space at all, checked before a scratch
 * array of n entries is allocated: every object takes at least 16 bytes. */
static int room_for(const ha_space *s, uint64_t n, ha_stats *st)
{
    if (n > (s->end - s->top) / (8 * HA_MIN_WORDS))
        return ha_fail(st, HA_ERR_FULL, s->top, -1);
    return HA_OK;
}

struct tree {
    const ha_heap *h;
    ha_space *s;
    uint32_t payload;
    int top_down;
    ha_stats *st;
};

/* GCBench's MakeTree (bottom-up) and Populate (top-down): a complete binary
 * tree of 2^(depth+1) - 1 nodes; payload word 0 of each node holds its depth. */
static int make_tree(struct tree *t, uint32_t depth, uint64_t *node)
{
    uint64_t left = 0, right = 0;
    int rc = HA_OK;
    if (t->top_down && (rc = allocate(t->h, t->s, 2, t->payload, node, t->st)))
        return rc;
    if (depth > 0 && ((rc = make_tree(t, depth - 1, &left)) || (rc = make_tree(t, depth - 1, &right))))
        return rc;
    if (!t->top_down && (rc = allocate(t->h, t->s, 2, t->payload, node, t->st)))
        return rc;
    uint64_t *obj = ha_at(t->h, *node);
    obj[1] = depth > 0 ? ha_encode(t->h, left) : 0;
    obj[2] = depth > 0 ? ha_encode(t->h, right) : 0;
    if (t->payload)
        obj[3] = depth;
    return HA_OK;
}

int ha_tree(const ha_heap *h, ha_space *s, uint32_t depth, int top_down,
            uint32_t payload_words, ha_ref *root, ha_stats *st)
{
    int rc = ha_begin_space(h, s, st);
    if (!rc && depth > 40)
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    struct tree t = {h, s, payload_words, top_down, st};
    uint64_t node = 0;
    if (!rc)
        rc = make_tree(&t, depth, &node);
    *root = rc ? 0 : ha_encode(h, node);
    return ha_end(st, rc);
}

/* A list of n nodes {next, index}. Shuffled lists link the nodes in a random
 * order, so following `next` is a chain of dependent, scattered loads. */
int ha_linked_list(const ha_heap *h, ha_space *s, uint64_t n, int shuffled,
                   uint64_t seed, ha_ref *head, ha_stats *st)
{
    int rc = ha_begin_space(h, s, st);
    *head = 0;
    if (!rc)
        rc = room_for(s, n, st);
    if (rc || n == 0)
        return ha_end(st, rc);
    uint64_t *nodes = malloc(n * sizeof *nodes);
    if (!nodes)
        return ha_end(st, ha_fail(st, HA_ERR_NOMEM, 0, -1));
    for (uint64_t i = 0; i < n && !rc; i++)
        rc = allocate(h, s, 1, 1, &nodes[i], st);
    for (uint64_t i = n - 1; shuffled && !rc && i > 0; i--) { /* Fisher-Yates */
        uint64_t j = next_random(&seed) % (i + 1), tmp = nodes[i];
        nodes[i] = nodes[j];
        nodes[j] = tmp;
    }
    for (uint64_t i = 0; i < n && !rc; i++) {
        uint64_t *node = ha_at(h, nodes[i]);
        node[1] = i + 1 < n ? ha_encode(h, nodes[i + 1]) : 0;
        node[2] = i;
    }
    if (!rc)
        *head = ha_encode(h, nodes[0]);
    free(nodes);
    return ha_end(st, rc);
}

/* A payload size: uniform in [min, max], or drawn from a table of sizes
 * with cumulative weights (the last one is the total). */
struct sizes {
    uint32_t min, max;
    const uint32_t *table;
    const uint64_t *cumulative;
    size_t entries;
};

static int sizes_ok(const struct sizes *z)
{
    if (!z->entries)
        return z->min <= z->max;
    for (size_t i = 1; i < z->entries; i++)
        if (z->cumulative[i] < z->cumulative[i - 1])
            return 0;
    return z->cumulative[z->entries - 1] > 0;
}

static uint64_t draw_size(const struct sizes *z, uint64_t *seed)
{
    if (!z->entries)
        return z->min + next_random(seed) % ((uint64_t)z->max - z->min + 1);
    uint64_t x = next_random(seed) % z->cumulative[z->entries - 1];
    size_t low = 0, high = z->entries - 1; /* the first entry whose cumulative exceeds x */
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (z->cumulative[mid] > x)
            high = mid;
        else
            low = mid + 1;
    }
    return z->table[low];
}

/* Point a slot at a node drawn at random. */
struct wiring {
    const ha_heap *h;
    const ha_off *nodes;
    uint64_t n, seed;
};

static int wire_slot(void *ctx, uint64_t *slot, ha_off where)
{
    struct wiring *w = ctx;
    (void)where;
    *slot = ha_encode(w->h, w->nodes[next_random(&w->seed) % w->n]);
    return HA_OK;
}

/* n nodes, each with 0..2*mean_degree references to uniformly chosen nodes
 * and a payload drawn as draw_size() says; nroots random nodes as roots. */
int ha_random_graph(const ha_heap *h, ha_space *s, uint64_t n, uint32_t mean_degree,
                    uint32_t payload_min, uint32_t payload_max, const uint32_t *size_table,
                    const uint64_t *size_cumulative, size_t size_entries, uint64_t seed,
                    ha_ref *roots, size_t nroots, ha_stats *st)
{
    struct sizes sizes = {payload_min, payload_max, size_table, size_cumulative, size_entries};
    int rc = ha_begin_space(h, s, st);
    if (!rc && (!sizes_ok(&sizes) || 2ULL * mean_degree > HA_MAX_REFS || (n == 0 && nroots > 0)))
        rc = ha_fail(st, HA_ERR_ARGUMENT, 0, -1);
    if (!rc)
        rc = room_for(s, n, st);
    if (rc || n == 0)
        return ha_end(st, rc);
    uint64_t *nodes = malloc(n * sizeof *nodes);
    if (!nodes)
        return ha_end(st, ha_fail(st, HA_ERR_NOMEM, 0, -1));
    for (uint64_t i = 0; i < n && !rc; i++) {
        uint64_t nrefs = next_random(&seed) % (2ULL * mean_degree + 1);
        rc = allocate(h, s, nrefs, draw_size(&sizes, &seed), &nodes[i], st);
    }
    struct wiring wiring = {h, nodes, n, seed};
    for (uint64_t i = 0; i < n && !rc; i++) {
        uint64_t *node = ha_at(h, nodes[i]), header = ha_load(node);
        if (ha_header_ok(header, nodes[i], s->top)) /* another writer may have changed it */
            ha_visit_slots(node, nodes[i], header, wire_slot, &wiring);
        else
            rc = ha_fail(st, HA_ERR_HEADER, nodes[i], -1);
    }
    for (size_t r = 0; r < nroots && !rc; r++)
        wire_slot(&wiring, &roots[r], 0); /* a root is a slot like any other */
    free(nodes);
    return ha_end(st, rc);
}

/* n objects of payload_words each, chained by their one reference. */
int ha_large_objects(const ha_heap *h, ha_space *s, uint64_t n,
                     uint64_t payload_words, ha_ref *head, ha_stats *st)
{
    int rc = ha_begin_space(h, s, st);
    uint64_t previous = 0, off = 0;
    *head = 0;
    for (uint64_t i = 0; i < n && !rc; i++) {
        if ((rc = allocate(h, s, 1, payload_words, &off, st)))
            break;
        if (i == 0)
            *head = ha_encode(h, off);
        else
            ha_at(h, previous)[1] = ha_encode(h, off);
        previous = off;
    }
    if (rc)
        *head = 0;
    return ha_end(st, rc);
}
