/* Physical limits the loops are judged against, measured in the same run.
 * Each is the fastest known way to do a case's work: copy (memcpy or a
 * non-temporal streaming copy), write (memset or streaming stores), read,
 * write-then-read, and independent random loads; plus the dependent-load
 * latency and the cost of a first-touch page fault, for reference. Each
 * returns nanoseconds for the whole job. */
#include "object_model.h"

#include <pthread.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

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
 * adds, set the pace. With `prefetch`, also ask for the line HA_PREFETCH_AHEAD
 * bytes on: the hardware prefetcher stops at each 4 KiB page, and on some
 * machines this read is the faster one. */
static uint64_t sum_words(const uint64_t *w, uint64_t n, int prefetch)
{
    uint64_t a = 0, b = 0, c = 0, d = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        if (prefetch)
            __builtin_prefetch(w + i + HA_PREFETCH_AHEAD / 8, 0, 0);
        a += w[i] + w[i + 4];
        b += w[i + 1] + w[i + 5];
        c += w[i + 2] + w[i + 6];
        d += w[i + 3] + w[i + 7];
    }
    for (; i < n; i++)
        a += w[i];
    return a + b + c + d;
}

uint64_t ha_read_ns(uint64_t src, uint64_t length, uint32_t repeats, int prefetch,
                    uint64_t *sum)
{
    uint64_t total = 0, start = ha_now_ns();
    for (uint32_t r = 0; r < repeats; r++) {
        total += sum_words((const uint64_t *)(uintptr_t)src, length / 8, prefetch);
        __asm__ volatile("" ::: "memory");
    }
    uint64_t ns = ha_now_ns() - start;
    *sum = total;
    return ns;
}

/* One thread's share of a read on several cores. */
struct read_share {
    const uint64_t *words;
    uint64_t n;
    int prefetch;
    uint64_t sum;
};

static void *read_share(void *arg)
{
    struct read_share *r = arg;
    r->sum = sum_words(r->words, r->n, r->prefetch);
    return NULL;
}

static uint32_t clamp_threads(uint32_t threads)
{
    return threads < 1 ? 1 : threads > HA_MAX_THREADS ? HA_MAX_THREADS : threads;
}

/* Run `work` on `threads` items of `size` bytes at `items` at once, the caller
 * taking the first; the wall time. A thread that cannot be started has its
 * item done by the caller after the others (every started thread is joined). */
static uint64_t run_together(void *(*work)(void *), void *items, size_t size, uint32_t threads)
{
    pthread_t ids[HA_MAX_THREADS];
    int started[HA_MAX_THREADS];
    char *item = items;
    uint64_t start = ha_now_ns();
    for (uint32_t i = 1; i < threads; i++)
        started[i] = pthread_create(&ids[i], NULL, work, item + i * size) == 0;
    work(item);
    for (uint32_t i = 1; i < threads; i++) {
        if (started[i])
            pthread_join(ids[i], NULL);
        else
            work(item + i * size);
    }
    return ha_now_ns() - start;
}

/* Read `length` bytes on `threads` threads at once (1 to HA_MAX_THREADS), each
 * its own contiguous share: the bandwidth every core streaming together gets,
 * which caps what parallel loops can gain. */
uint64_t ha_read_threads_ns(uint64_t src, uint64_t length, uint32_t threads, int prefetch,
                            uint64_t *sum)
{
    threads = clamp_threads(threads);
    struct read_share shares[HA_MAX_THREADS];
    uint64_t n = length / 8, per = (n / threads + 7) / 8 * 8, total = 0;
    for (uint32_t i = 0; i < threads; i++) {
        uint64_t first = per * i < n ? per * i : n;
        uint64_t last = per * (i + 1) < n && i + 1 < threads ? per * (i + 1) : n;
        shares[i] = (struct read_share){(const uint64_t *)(uintptr_t)src + first, last - first,
                                        prefetch, 0};
    }
    uint64_t ns = run_together(read_share, shares, sizeof shares[0], threads);
    for (uint32_t i = 0; i < threads; i++)
        total += shares[i].sum;
    *sum = total;
    return ns;
}

uint64_t ha_stream_copy_ns(uint64_t dst, uint64_t src, uint64_t length, uint32_t repeats)
{
    uint64_t start = ha_now_ns();
    for (uint32_t r = 0; r < repeats; r++) {
        ha_copy_streaming((uint64_t *)(uintptr_t)dst, (const uint64_t *)(uintptr_t)src, length);
        __asm__ volatile("" ::: "memory");
    }
    return ha_now_ns() - start;
}

/* Fill `length` bytes with 0x01 bytes: memset (which picks its own stores), or
 * non-temporal stores that skip the read-for-ownership (memset off x86). */
static void fill(uint64_t dst, uint64_t length, int streaming)
{
#if defined(__x86_64__)
    if (streaming) {
        uint64_t *w = (uint64_t *)(uintptr_t)dst;
        const uint64_t ones = 0x0101010101010101ULL;
        for (; ((uintptr_t)w & 15) && length >= 8; length -= 8)
            *w++ = ones;
        __m128i v = _mm_set1_epi64x((long long)ones), *d = (__m128i *)w;
        for (; length >= 64; length -= 64, d += 4) {
            _mm_stream_si128(d, v);
            _mm_stream_si128(d + 1, v);
            _mm_stream_si128(d + 2, v);
            _mm_stream_si128(d + 3, v);
        }
        _mm_sfence();
        memset(d, 1, length);
        return;
    }
#endif
    (void)streaming;
    memset((void *)(uintptr_t)dst, 1, length);
}

uint64_t ha_write_ns(uint64_t dst, uint64_t length, uint32_t repeats, int streaming)
{
    uint64_t start = ha_now_ns();
    for (uint32_t r = 0; r < repeats; r++) {
        fill(dst, length, streaming);
        __asm__ volatile("" ::: "memory");
    }
    return ha_now_ns() - start;
}

/* Write `length` bytes through one address, then read them back through
 * another: two views of one heap, or the same view twice for the limit. */
uint64_t ha_write_read_ns(uint64_t write_to, uint64_t read_from, uint64_t length,
                          int streaming, int prefetch, uint64_t *sum)
{
    uint64_t start = ha_now_ns();
    fill(write_to, length, streaming);
    __asm__ volatile("" ::: "memory");
    uint64_t total = sum_words((const uint64_t *)(uintptr_t)read_from, length / 8, prefetch);
    uint64_t ns = ha_now_ns() - start;
    *sum = total;
    return ns;
}

/* Load one word from each of `steps` random cache lines of `slots`. The
 * addresses come from a generator, not from the loads, so the loads overlap:
 * the most random lines per second the memory system serves, which bounds any
 * loop that visits objects in random order (mark). */
uint64_t ha_gather_ns(uint64_t buffer, uint64_t slots, uint64_t steps, uint64_t seed,
                      uint64_t *sum)
{
    const uint64_t *w = (const uint64_t *)(uintptr_t)buffer;
    uint64_t x = seed | 1, total = 0, start = ha_now_ns();
    for (uint64_t s = 0; s < steps; s++) {
        x ^= x << 13; /* xorshift64 */
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t slot = (uint64_t)(((unsigned __int128)x * slots) >> 64);
        total += w[slot * 8];
    }
    uint64_t ns = ha_now_ns() - start;
    *sum = total;
    return ns;
}

/* Link `slots` cache-line-spaced words of `buffer` into one random cycle: each
 * slot's word becomes the address of the next slot. */
void ha_link_cycle(uint64_t buffer, uint64_t slots, uint64_t seed)
{
    uint64_t *w = (uint64_t *)(uintptr_t)buffer;
    const uint64_t stride = 8; /* words: one slot per 64-byte line */
    if (slots < 2)
        return;
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
}

/* `rounds` steps of each of `k` chases at once: the k loads of a step do not
 * depend on each other, so up to k misses are in flight. With k a constant
 * (inlined), the pointers live in registers. */
static inline __attribute__((always_inline)) void
chase_together(uint64_t *p, unsigned k, uint64_t rounds)
{
    for (uint64_t r = 0; r < rounds; r++)
        for (unsigned j = 0; j < k; j++)
            p[j] = *(volatile uint64_t *)(uintptr_t)p[j];
}

/* Follow `chases` (1 to HA_MAX_CHASES) chases around a cycle ha_link_cycle
 * made, each from a random slot, `steps` loads in all: the memory's
 * parallelism, which bounds a trace whose graph offers `chases` independent
 * edges at a time. *last gets a sum of where they ended. */
uint64_t ha_chases_ns(uint64_t buffer, uint64_t slots, uint32_t chases, uint64_t steps,
                      uint64_t seed, uint64_t *last)
{
    uint64_t p[HA_MAX_CHASES];
    if (slots < 2 || chases == 0)
        return 0;
    if (chases > HA_MAX_CHASES)
        chases = HA_MAX_CHASES;
    for (unsigned j = 0; j < chases; j++) { /* far apart on the cycle, almost surely */
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        p[j] = ((const uint64_t *)(uintptr_t)buffer)[((seed >> 33) % slots) * 8];
    }
    uint64_t rounds = steps / chases, start = ha_now_ns();
    switch (chases) { /* the common counts with k a constant */
    case 1: chase_together(p, 1, rounds); break;
    case 2: chase_together(p, 2, rounds); break;
    case 4: chase_together(p, 4, rounds); break;
    case 8: chase_together(p, 8, rounds); break;
    case 16: chase_together(p, 16, rounds); break;
    case 32: chase_together(p, 32, rounds); break;
    case 64: chase_together(p, 64, rounds); break;
    default: chase_together(p, chases, rounds);
    }
    uint64_t ns = ha_now_ns() - start, sum = 0;
    for (unsigned j = 0; j < chases; j++)
        sum += p[j];
    *last = sum;
    return ns;
}

struct chase_share {
    uint64_t buffer, slots, steps, seed, last;
    uint32_t chases;
};

static void *chase_share(void *arg)
{
    struct chase_share *c = arg;
    ha_chases_ns(c->buffer, c->slots, c->chases, c->steps, c->seed, &c->last);
    return NULL;
}

/* ha_chases_ns on `threads` threads at once (1 to HA_MAX_THREADS), each from
 * random slots of its own and making `steps` loads: the memory's parallelism
 * with every core tracing, which caps what parallel traces can gain (a core's
 * own fill buffers and page walkers add up; the memory behind them may not).
 * The wall time. */
uint64_t ha_chases_threads_ns(uint64_t buffer, uint64_t slots, uint32_t chases, uint64_t steps,
                              uint64_t seed, uint32_t threads, uint64_t *last)
{
    threads = clamp_threads(threads);
    struct chase_share shares[HA_MAX_THREADS];
    for (uint32_t i = 0; i < threads; i++)
        shares[i] = (struct chase_share){buffer, slots, steps, seed + 7919 * i, 0, chases};
    uint64_t ns = run_together(chase_share, shares, sizeof shares[0], threads), sum = 0;
    for (uint32_t i = 0; i < threads; i++)
        sum += shares[i].last;
    *last = sum;
    return ns;
}

/* Link a random cycle through `slots` cache-line-spaced words, then follow it
 * `steps` times: each load's address is the previous load's value. */
uint64_t ha_chase_ns(uint64_t buffer, uint64_t slots, uint64_t steps, uint64_t seed,
                     uint64_t *last)
{
    if (slots < 2)
        return 0;
    ha_link_cycle(buffer, slots, seed);
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
