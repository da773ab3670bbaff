/* The C core's API: one prototype per function, shared with cffi (see build_native.py). */
#ifndef HEAPALIAS_H
#define HEAPALIAS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

/* Older libc headers lack these; the values are the kernel ABI. */
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 4U
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
#endif
#ifndef MFD_HUGE_1GB
#define MFD_HUGE_1GB (30U << 26)
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB (30 << 26)
#endif

/* cffi-begin: everything up to cffi-end is also the cdef Python sees.
 * Each function returns 0 (or a non-negative result) on success and -errno on
 * failure; addresses come back through an out-parameter. */
int ha_memfd_create(const char *name, unsigned int flags);
int ha_ftruncate(int fd, int64_t length);
int ha_fallocate(int fd, int mode, int64_t offset, int64_t length);
int ha_close(int fd);

int ha_mmap(uintptr_t hint, size_t length, int prot, int flags, int fd,
            int64_t offset, uintptr_t *out);
int ha_mremap(uintptr_t old_address, size_t old_size, size_t new_size,
              int flags, uintptr_t new_address, uintptr_t *out);
int ha_munmap(uintptr_t address, size_t length);
int ha_mprotect(uintptr_t address, size_t length, int prot);
int ha_madvise(uintptr_t address, size_t length, int advice);
int ha_name_anon(uintptr_t address, size_t length, const char *name);

int ha_touch(uintptr_t address, size_t length, size_t stride, int write);
/* cffi-end */

#endif
