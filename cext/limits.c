/* Physical limits the loops are judged against, measured in the same run:
 * memcpy bandwidth, sequential read bandwidth, dependent-load latency and the
 * cost of a first-touch page fault. Each returns nanoseconds for the whole job. */
#include "object_model.h"

#include <unistd.h>

uint64_t ha_memcpy_ns(uint64_t dst, uint64_t src, uint64_t length, uint32_t repeats)
{
    uint64_t start = ha_now_ns();
    for (uint32_t r = 0; r < repeats; r++) {
        memcpy((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, length);
        __asm__ volatile("" ::: "memory"); /* keep every copy */
    }
    return ha_now_ns() - start;
}

/* Sum every word, with four independent accumulators so the loads, not the
 * adds, set the pace. */
uint64_t ha_read_ns(uint64_t src, uint64_t length, uint32_t repeats, uint64_t *sum)
{
    const uint64_t *w = (const uint64_t *)(uintptr_t)src;
    uint64_t n = length / 8, a = 0, b = 0, c = 0, d = 0;
    uint64_t start = ha_now_ns();
    for (uint32_t r = 0; r < repeats; r++) {
        uint64_t i = 0;
        for (; i + 4 <= n; i += 4) {
            a += w[i];
            b += w[i + 1];
            c += w[i + 2];
            d += w[i + 3];
        }
        for (; i < n; i++)
            a += w[i];
        __asm__ volatile("" ::: "memory");
    }
    uint64_t ns = ha_now_ns() - start;
    *sum = a + b + c + d;
    return ns;
}

/* Link `slots` cache-line-spaced words into one random cycle, then follow it
 * `steps` times: each load's address is the previous load's value. */
uint64_t ha_chase_ns(uint64_t buffer, uint64_t slots, uint64_t steps, uint64_t seed,
                     uint64_t *last)
{
    uint64_t *w = (uint64_t *)(uintptr_t)buffer;
    const uint64_t stride = 8; /* words: one slot per 64-byte line */
    if (slots < 2)
        return 0;
    for (uint64_t i = 0; i < slots; i++)
        w[i * stride] = i;
    for (uint64_t i = slots - 1; i > 0; i--) { /* Sattolo: a single cycle */
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t j = (seed >> 33) % i, tmp = w[i * stride];
        w[i * stride] = w[j * stride];
        w[j * stride] = tmp;
    }
    for (uint64_t i = 0; i < slots; i++) /* slot numbers to addresses */
        w[i * stride] = buffer + w[i * stride] * stride * 8;
    uint64_t p = buffer, start = ha_now_ns();
    for (uint64_t s = 0; s < steps; s++)
        p = *(volatile uint64_t *)(uintptr_t)p;
    uint64_t ns = ha_now_ns() - start;
    *last = p;
    return ns;
}

/* Map fresh private anonymous memory (flags adds e.g. MAP_HUGETLB), touch one
 * byte per page, unmap. Returns the touch time, or -errno. */
int64_t ha_fault_ns(uint64_t length, int flags)
{
    uintptr_t p;
    int rc = ha_mmap(0, length, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0, &p);
    if (rc)
        return rc;
    uint64_t page = (flags & MAP_HUGETLB) ? (2ULL << 20) : (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t start = ha_now_ns();
    for (uint64_t off = 0; off < length; off += page)
        ((volatile char *)p)[off] = 1;
    uint64_t ns = ha_now_ns() - start;
    ha_munmap(p, length);
    return (int64_t)ns;
}
