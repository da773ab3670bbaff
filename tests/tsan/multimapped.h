/* The heap the TSan programs share: HEAP bytes of a memfd, mapped COLORS times,
 * view k at base + (k << SHIFT), as ObjectHeap's colored layout has it. */
#ifndef TSAN_MULTIMAPPED_H
#define TSAN_MULTIMAPPED_H

#include "heapalias.h"

enum { HEAP = 8 << 20, COLORS = 3, SHIFT = 23 };

/* The base of a fresh multimapped heap; 0 on failure. */
static uint64_t multimapped(void)
{
    uintptr_t base, view;
    int fd = ha_memfd_create("tsan", 0);
    if (fd < 0 || ha_ftruncate(fd, HEAP) ||
        ha_mmap(0, (size_t)COLORS << SHIFT, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0,
                &base))
        return 0;
    for (int k = 0; k < COLORS; k++)
        if (ha_mmap(base + ((uint64_t)k << SHIFT), HEAP, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_FIXED, fd, 0, &view))
            return 0;
    ha_close(fd);
    return base;
}

/* The heap at `base` with `encoding`; new references get color 0. */
static ha_heap heap_at(uint64_t base, uint32_t encoding)
{
    ha_heap h = {.base = base, .load_base = base, .size = HEAP, .encoding = encoding,
                 .ncolors = 1};
    if (encoding != HA_REF_OFFSET)
        h = (ha_heap){.base = base, .load_base = base, .size = HEAP, .ref_base = base,
                      .encoding = encoding, .shift = SHIFT, .ncolors = COLORS};
    return h;
}

#endif
