/* The live-word table of a sliding compaction (the generational plan's full
 * collection): two words per 512-byte block, a bitmap of the block's live
 * words and the address the first of them moves to. ha_mark_live fills the
 * bitmaps while it marks, so the compaction finds the live objects without a
 * walk over the dead ones. */
#ifndef HEAPALIAS_LIVENESS_H
#define HEAPALIAS_LIVENESS_H

#include "object_model.h"

#define HA_LIVE_BLOCK_SHIFT 9 /* 64 words a block: one bitmap word */
#define HA_LIVE_BLOCK_BYTES (1ULL << HA_LIVE_BLOCK_SHIFT)

static inline uint64_t *ha_live_block(uint64_t *table, ha_off off)
{
    return &table[2 * (off >> HA_LIVE_BLOCK_SHIFT)];
}

/* Record the words of the live object of `bytes` at `off`. */
static inline void ha_set_live(uint64_t *table, ha_off off, uint64_t bytes)
{
    for (uint64_t word = off >> 3, end = (off + bytes) >> 3; word < end;) {
        uint64_t bit = word & 63, n = end - word < 64 - bit ? end - word : 64 - bit;
        ha_live_block(table, word << 3)[0] |= (n == 64 ? ~0ULL : (1ULL << n) - 1) << bit;
        word += n;
    }
}

/* ha_mark, also recording each object it marks in `live` (zeroed blocks for
 * every space marked; the heap's size in blocks, two words each). */
int ha_mark_live(const ha_heap *h, const ha_space *spaces, size_t nspaces,
                 const ha_ref *roots, size_t nroots, ha_ref *stack, size_t stack_capacity,
                 uint64_t *live, ha_stats *st);

#endif
