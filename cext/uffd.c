/* userfaultfd: every system call the page-trap designs (design_minor.c) and
 * the probe make, in one place. Each returns 0 (or a descriptor, or a count)
 * on success and -errno on failure, as mapping.c's calls do.
 *
 * The userspace headers here may be older than the kernel: uffd_abi.h
 * defines what they lack from the kernel's uapi values. */
#include "uffd_abi.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int neg_errno(long rc) { return rc < 0 ? -errno : (int)rc; }

int ha_uffd_open(int via_device, int user_mode_only)
{
    int flags = O_CLOEXEC | O_NONBLOCK | (user_mode_only ? UFFD_USER_MODE_ONLY : 0);
    if (!via_device) {
#ifdef SYS_userfaultfd
        return neg_errno(syscall(SYS_userfaultfd, flags));
#else
        return -ENOSYS;
#endif
    }
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0)
        return -errno;
    int rc = neg_errno(ioctl(dev, USERFAULTFD_IOC_NEW, flags));
    close(dev);
    return rc;
}

int ha_uffd_api(int fd, uint64_t features, uint64_t *features_out, uint64_t *ioctls_out)
{
    struct uffdio_api api = {.api = UFFD_API, .features = features};
    if (ioctl(fd, UFFDIO_API, &api))
        return -errno;
    *features_out = api.features;
    *ioctls_out = api.ioctls;
    return 0;
}

int ha_uffd_features(int via_device, uint64_t *features_out, uint64_t *ioctls_out)
{
    int fd = ha_uffd_open(via_device, 1);
    if (fd == -EPERM || fd == -EINVAL) /* kernel faults need privilege, or no such flag */
        fd = ha_uffd_open(via_device, 0);
    if (fd < 0)
        return fd;
    int rc = ha_uffd_api(fd, 0, features_out, ioctls_out);
    close(fd);
    return rc;
}

int ha_uffd_register(int fd, uintptr_t start, size_t length, uint64_t mode,
                     uint64_t *ioctls_out)
{
    struct uffdio_register reg = {.range = {.start = start, .len = length}, .mode = mode};
    if (ioctl(fd, UFFDIO_REGISTER, &reg))
        return -errno;
    if (ioctls_out)
        *ioctls_out = reg.ioctls;
    return 0;
}

int ha_uffd_wake(int fd, uintptr_t start, size_t length)
{
    struct uffdio_range range = {.start = start, .len = length};
    return ioctl(fd, UFFDIO_WAKE, &range) ? -errno : 0;
}

/* Unregister, then wake the range once more: the kernel wakes the faults pending
 * there before it write-locks each VMA, so a fault taken under the per-VMA lock
 * (not the mmap lock the unregister holds) can still queue itself after that wake
 * and sleep for ever (seen on 6.18 with 2 CPUs). The write lock waits for the
 * fault's read lock, which the fault holds until it has queued: once the
 * unregister returns, this wake finds it, and it retries as an ordinary fault. */
int ha_uffd_unregister(int fd, uintptr_t start, size_t length)
{
    struct uffdio_range range = {.start = start, .len = length};
    if (ioctl(fd, UFFDIO_UNREGISTER, &range))
        return -errno;
    return ha_uffd_wake(fd, start, length);
}

/* EEXIST (a page already mapped there) counts as success for CONTINUE: the
 * page is mapped, which is all the caller wants. */
int ha_uffd_continue(int fd, uintptr_t start, size_t length, int wake)
{
    struct uffdio_continue arg = {.range = {.start = start, .len = length},
                                  .mode = wake ? 0 : UFFDIO_CONTINUE_MODE_DONTWAKE};
    if (ioctl(fd, UFFDIO_CONTINUE, &arg) && errno != EEXIST)
        return -errno;
    return 0;
}

int ha_uffd_copy(int fd, uintptr_t dst, uintptr_t src, size_t length, int wake)
{
    struct uffdio_copy arg = {.dst = dst, .src = src, .len = length,
                              .mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE};
    return ioctl(fd, UFFDIO_COPY, &arg) ? -errno : 0;
}

int ha_uffd_move(int fd, uintptr_t dst, uintptr_t src, size_t length, int wake)
{
    struct uffdio_move arg = {.dst = dst, .src = src, .len = length,
                              .mode = wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE};
    return ioctl(fd, UFFDIO_MOVE, &arg) ? -errno : 0;
}

int ha_uffd_next_fault(int fd, int timeout_ms, uint64_t *address, uint64_t *flags)
{
    for (;;) {
        struct uffd_msg msg;
        ssize_t got = read(fd, &msg, sizeof msg);
        if (got == (ssize_t)sizeof msg) {
            if (msg.event != UFFD_EVENT_PAGEFAULT)
                continue; /* no other event was asked for */
            *address = msg.arg.pagefault.address;
            *flags = msg.arg.pagefault.flags;
            return 1;
        }
        if (got >= 0)
            return -EIO;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN || !timeout_ms)
            return errno == EAGAIN ? 0 : -errno;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, timeout_ms);
        if (ready < 0 && errno != EINTR)
            return -errno;
        if (ready == 0)
            return 0;
        timeout_ms = 0; /* one wait, then one more read */
    }
}

/* Move `length` bytes of private anonymous memory from `src` to `dst` (both
 * page aligned, dst mapped private anonymous with no page present) the way a
 * fault-driven compactor installs pages: register dst MISSING, then UFFDIO_COPY
 * (copies the bytes into new pages) or UFFDIO_MOVE (moves the pages themselves:
 * src is left a hole). Only the ioctl is timed: the userfaultfd is set up once
 * per heap in a collector. The relocation case times it beside memcpy and remap. */
int ha_relocate_uffd(int move, uint64_t dst, uint64_t src, uint64_t length, ha_stats *st)
{
    memset(st, 0, sizeof *st);
    st->error_root = -1;
    uint64_t features, ioctls, start = 0;
    int fd = ha_uffd_open(0, 1), rc = fd < 0 ? fd : 0;
    if (!rc)
        rc = ha_uffd_api(fd, move ? UFFD_FEATURE_MOVE : 0, &features, &ioctls);
    if (!rc)
        rc = ha_uffd_register(fd, dst, length, UFFDIO_REGISTER_MODE_MISSING, NULL);
    if (!rc) {
        start = ha_now_ns();
        rc = move ? ha_uffd_move(fd, dst, src, length, 0) : ha_uffd_copy(fd, dst, src, length, 0);
        st->nanoseconds = ha_now_ns() - start;
        ha_uffd_unregister(fd, dst, length);
    }
    if (fd >= 0)
        close(fd);
    st->objects = !rc;
    st->bytes = rc ? 0 : length;
    return rc;
}
