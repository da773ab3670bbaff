/* The mapping layer. Thin syscall wrappers: each returns -errno instead of
 * touching errno, so Python never has to race the C library for it. Then the
 * relocation of page-aligned ranges, built on them: 0 or -errno as well, with
 * the bytes moved and the time in an ha_stats. */
#include "object_model.h" /* heapalias.h, and ha_now_ns for the relocation stats */

#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#endif
#ifndef PR_SET_VMA_ANON_NAME
#define PR_SET_VMA_ANON_NAME 0
#endif

static int fail(void) { return -errno; }

int ha_memfd_create(const char *name, unsigned int flags)
{
    long fd = syscall(SYS_memfd_create, name, flags);
    return fd < 0 ? fail() : (int)fd;
}

int ha_ftruncate(int fd, int64_t length)
{
    return ftruncate(fd, (off_t)length) < 0 ? fail() : 0;
}

/* Allocation only (mode 0): heapalias never punches holes. A peer may map the
 * heap, and on hugetlb a punched page it touches again needs a fresh page from
 * the pool: SIGBUS when the pool is empty. */
int ha_fallocate(int fd, int64_t offset, int64_t length)
{
    return fallocate(fd, 0, (off_t)offset, (off_t)length) < 0 ? fail() : 0;
}

int ha_close(int fd) { return close(fd) < 0 ? fail() : 0; }

int ha_mmap(uintptr_t hint, size_t length, int prot, int flags, int fd,
            int64_t offset, uintptr_t *out)
{
    void *p = mmap((void *)hint, length, prot, flags, fd, (off_t)offset);
    if (p == MAP_FAILED)
        return fail();
    *out = (uintptr_t)p;
    return 0;
}

/* The raw syscall with all five arguments: glibc's wrapper reads new_address
 * only for some flags, and a four-argument call passes garbage there. */
int ha_mremap(uintptr_t old_address, size_t old_size, size_t new_size,
              int flags, uintptr_t new_address, uintptr_t *out)
{
    long p = syscall(SYS_mremap, old_address, old_size, new_size, flags,
                     new_address);
    if (p == -1)
        return fail();
    *out = (uintptr_t)p;
    return 0;
}

int ha_munmap(uintptr_t address, size_t length)
{
    return munmap((void *)address, length) < 0 ? fail() : 0;
}

int ha_mprotect(uintptr_t address, size_t length, int prot)
{
    return mprotect((void *)address, length, prot) < 0 ? fail() : 0;
}

int ha_madvise(uintptr_t address, size_t length, int advice)
{
    return madvise((void *)address, length, advice) < 0 ? fail() : 0;
}

int ha_name_anon(uintptr_t address, size_t length, const char *name)
{
    int rc = prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, address, length,
                   (unsigned long)name);
    return rc < 0 ? fail() : 0;
}

/* Fallback populate for kernels before 5.14 (no MADV_POPULATE_*). Only call
 * it on memory whose backing is already committed, or it may SIGBUS. */
int ha_touch(uintptr_t address, size_t length, size_t stride, int write)
{
    if (stride == 0)
        return -EINVAL;
    for (size_t off = 0; off < length; off += stride) {
        volatile unsigned char *p = (volatile unsigned char *)(address + off);
        unsigned char v = *p;
        if (write)
            *p = v;
    }
    return 0;
}

/* ---- relocation: the same move two ways, timed ---- */

/* Move `length` bytes of a memfd heap (file_offset, mapped at old_address) to
 * new_address by mapping the same file pages there, as Mesh and C4 do; no byte
 * is copied. The old range is replaced by PROT_NONE, so a stale pointer faults.
 * Without a file (fd < 0), mremap moves the pages of shared anonymous memory.
 *
 * All or nothing for the old range: on failure it is mapped as before, so the
 * caller's view of it stays valid; only new_address may have changed (mapped,
 * or a hole after a move back), and the caller puts it back. */
int ha_relocate_remap(int fd, uint64_t old_address, uint64_t file_offset,
                      uint64_t length, uint64_t new_address, int populate,
                      ha_stats *st)
{
    uintptr_t got;
    int rc = 0;
    memset(st, 0, sizeof *st);
    st->error_root = -1;
    uint64_t start = ha_now_ns();
    /* Populate (fault in the page tables, as a copy would have) before the old
     * range is given up: it may fail (EINVAL before Linux 5.14). */
    if (fd >= 0) {
        rc = ha_mmap(new_address, length, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_FIXED, fd, (int64_t)file_offset, &got);
        if (!rc && populate)
            rc = ha_madvise(new_address, length, MADV_POPULATE_WRITE);
    } else {
        if (populate) /* mremap takes the page tables along */
            rc = ha_madvise(old_address, length, MADV_POPULATE_WRITE);
        if (!rc)
            rc = ha_mremap(old_address, length, length, MREMAP_MAYMOVE | MREMAP_FIXED,
                           new_address, &got);
    }
    if (!rc) {
        rc = ha_mmap(old_address, length, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &got);
        if (rc && fd < 0) /* the move left a hole there: move the pages back */
            ha_mremap(new_address, length, length, MREMAP_MAYMOVE | MREMAP_FIXED,
                      old_address, &got);
    }
    st->nanoseconds = ha_now_ns() - start;
    st->objects = rc ? 0 : 1;
    st->bytes = rc ? 0 : length;
    return rc;
}

/* The baseline: memcpy, which cannot fail (the caller checked both ranges). */
int ha_relocate_copy(uint64_t dst, uint64_t src, uint64_t length, ha_stats *st)
{
    memset(st, 0, sizeof *st);
    st->error_root = -1;
    uint64_t start = ha_now_ns();
    memcpy((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, length);
    st->nanoseconds = ha_now_ns() - start;
    st->objects = 1;
    st->bytes = length;
    return 0;
}
