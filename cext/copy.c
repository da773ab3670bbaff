/* Cheney evacuation, shaped after whippet's semi.c: forward the roots, then
 * scan to-space until the grey pointer meets the allocation pointer. */
#include "object_model.h"

struct cheney {
    const ha_heap *h;
    const ha_space *from;
    ha_space *to;
    ha_stats *st;
};

/* Copy the object `*slot` names out of from-space once, and point the slot at
 * the copy. `where` is the slot's heap offset (for errors), `root` its root index. */
static int forward(struct cheney *c, uint64_t *slot, uint64_t where, int64_t root)
{
    uint64_t ref = *slot, off;
    if (ref == 0)
        return HA_OK;
    c->st->refs++;
    if (!ha_decode(c->h, ref, &off))
        return ha_fail(c->st, HA_ERR_REF, where, root);
    if (off < c->from->start || off >= c->from->top)
        return HA_OK; /* not being evacuated */
    uint64_t *obj = ha_deref(c->h, ref, off);
    uint64_t header = obj[0];
    if (!ha_header_ok(header, off, c->from->top))
        return ha_fail(c->st, HA_ERR_HEADER, off, root);
    if (header & HA_FORWARDED) {
        *slot = obj[1];
        return HA_OK;
    }
    uint64_t bytes = ha_words(header) * 8;
    if (c->to->end - c->to->top < bytes)
        return ha_fail(c->st, HA_ERR_FULL, off, root);
    uint64_t copy = c->to->top;
    c->to->top += bytes;
    memcpy(ha_at(c->h, copy), (const void *)(uintptr_t)(c->h->load_base + off), bytes);
    obj[0] = header | HA_FORWARDED;
    obj[1] = *slot = ha_encode(c->h, copy);
    c->st->objects++;
    c->st->bytes += bytes;
    return HA_OK;
}

/* Forward every reference of the grey object at `*grey`, then step past it. */
static int scan(struct cheney *c, uint64_t *grey)
{
    uint64_t *obj = ha_at(c->h, *grey);
    uint64_t nrefs = ha_nrefs(obj[0]);
    for (uint64_t i = 1; i <= nrefs; i++) {
        int rc = forward(c, &obj[i], *grey + 8 * i, -1);
        if (rc)
            return rc;
    }
    *grey += ha_words(obj[0]) * 8;
    return HA_OK;
}

int ha_cheney(const ha_heap *h, const ha_space *from, ha_space *to,
              uint64_t *roots, size_t nroots, ha_stats *st)
{
    int rc = ha_begin(h, st);
    if (rc)
        return ha_end(st, rc);
    if (!ha_space_ok(h, from) || !ha_space_ok(h, to) ||
        (from->start < to->end && to->start < from->end))
        return ha_end(st, ha_fail(st, HA_ERR_ARGUMENT, 0, -1));
    struct cheney c = {h, from, to, st};
    uint64_t grey = to->top;
    for (size_t i = 0; i < nroots && !rc; i++)
        rc = forward(&c, &roots[i], 0, (int64_t)i);
    while (!rc && grey < to->top)
        rc = scan(&c, &grey);
    return ha_end(st, rc);
}

/* ---- relocation: the same move two ways ---- */

/* Move `length` bytes of a memfd heap (file_offset, mapped at old_address) to
 * new_address by mapping the same file pages there, as Mesh and C4 do; no byte
 * is copied. The old range is replaced by PROT_NONE, so a stale pointer faults.
 * Without a file (fd < 0), mremap moves the pages of shared anonymous memory. */
int ha_relocate_remap(int fd, uint64_t old_address, uint64_t file_offset,
                      uint64_t length, uint64_t new_address, int populate,
                      ha_stats *st)
{
    uintptr_t got;
    int rc;
    memset(st, 0, sizeof *st);
    st->error_root = -1;
    uint64_t start = ha_now_ns();
    if (fd >= 0)
        rc = ha_mmap(new_address, length, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_FIXED, fd, (int64_t)file_offset, &got);
    else
        rc = ha_mremap(old_address, length, length, MREMAP_MAYMOVE | MREMAP_FIXED,
                       new_address, &got);
    if (!rc)
        rc = ha_mmap(old_address, length, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &got);
    if (!rc && populate) /* fault in the new page tables, as a copy would have */
        rc = ha_madvise(new_address, length, MADV_POPULATE_WRITE);
    st->nanoseconds = ha_now_ns() - start;
    st->objects = rc ? 0 : 1;
    st->bytes = rc ? 0 : length;
    return rc;
}

int ha_relocate_copy(uint64_t dst, uint64_t src, uint64_t length, ha_stats *st)
{
    memset(st, 0, sizeof *st);
    st->error_root = -1;
    uint64_t start = ha_now_ns();
    memcpy((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, length);
    st->nanoseconds = ha_now_ns() - start;
    st->objects = 1;
    st->bytes = length;
    return HA_OK;
}
