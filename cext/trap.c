/* What the page-trap designs (design_minor.c, design_copy.c) share: their
 * userfaultfd, its registered range, and the loop that serves its faults. */
#include "concurrent.h"
#include "uffd_abi.h"

#include <errno.h>
#include <unistd.h>

int ha_trap_fail(struct ha_conc *c, int neg_errno)
{
    return ha_conc_fail(c, ha_fail(c->st, HA_ERR_SYSCALL, (uint64_t)-neg_errno, -1));
}

int ha_trap_open(struct ha_conc *c, ha_trap *t, uint64_t features)
{
    /* Without privilege, a user-mode-only userfaultfd may still be allowed by the
     * system call, or by access to /dev/userfaultfd. */
    int fd = ha_uffd_open(0, 1);
    if (fd == -EPERM)
        fd = ha_uffd_open(1, 1);
    if (fd < 0)
        return ha_fail(c->st, HA_ERR_SYSCALL, (uint64_t)-fd, -1);
    t->uffd = fd;
    uint64_t granted, ioctls;
    int rc = ha_uffd_api(fd, features, &granted, &ioctls);
    return rc ? ha_fail(c->st, HA_ERR_SYSCALL, (uint64_t)-rc, -1) : HA_OK;
}

int ha_trap_register(struct ha_conc *c, ha_trap *t, ha_off start, ha_off end, uint64_t mode)
{
    int rc = ha_uffd_register(t->uffd, t->base + start, end - start, mode, NULL);
    if (rc)
        return ha_trap_fail(c, rc);
    t->start = start;
    t->end = end;
    return HA_OK;
}

int ha_trap_unregister(struct ha_conc *c, ha_trap *t)
{
    if (!t->end)
        return HA_OK;
    int rc = ha_uffd_unregister(t->uffd, t->base + t->start, t->end - t->start);
    t->end = 0;
    return rc ? ha_trap_fail(c, rc) : HA_OK;
}

void ha_trap_close(struct ha_conc *c, ha_trap *t)
{
    if (t->uffd < 0)
        return;
    ha_trap_unregister(c, t);
    close(t->uffd); /* would unregister and wake all the same */
    t->uffd = -1;
}

int ha_trap_serve_faults(struct ha_conc *c, ha_trap *t, ha_trap_server serve, void *design)
{
    for (;;) {
        uint64_t address, flags;
        int got = ha_uffd_next_fault(t->uffd, 0, &address, &flags);
        if (got < 0)
            return ha_trap_fail(c, got);
        if (!got) {
            t->quiet_ns = ha_now_ns();
            return HA_OK;
        }
        uint64_t read_at = ha_now_ns();
        ha_off off = address - t->base;
        int rc = address < t->base || off < t->start || off >= t->end
                     ? ha_uffd_wake(t->uffd, address & ~(t->page - 1), t->page)
                     : serve(c, design, off);
        if (rc)
            return rc < 0 ? ha_trap_fail(c, rc) : rc;
        c->run->faults++;
        c->run->fault_service_ns += ha_now_ns() - read_at;
        ha_conc_record_stall(c, t->quiet_ns, HA_STALL_FAULT);
    }
}
