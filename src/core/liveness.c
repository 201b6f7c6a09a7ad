/* liveness.c - OFD locks on the region file, the fork registry, and identities. */
#define _GNU_SOURCE
#include "liveness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef PIDFD_GET_PID_NAMESPACE
#define PIDFD_GET_PID_NAMESPACE _IO(0xFF, 5)
#endif

/* ---- descriptors a fork child must close ---------------------------------------------- */

#define MAX_LOCK_FDS 4096
static _Atomic int lock_fds[MAX_LOCK_FDS];
static _Atomic uint64_t fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In the child, right after fork: the parent's locks must live exactly as long as the
 * parent, so the child lets go of its copies of their descriptions at once. Runs before
 * any other code of the child, single-threaded: no lock needed. */
static void close_inherited(void)
{
    for (int i = 0; i < MAX_LOCK_FDS; i++) {
        int fd = atomic_exchange_explicit(&lock_fds[i], -1, memory_order_relaxed);
        if (fd >= 0)
            close(fd);
    }
    atomic_fetch_add_explicit(&fork_generation, 1, memory_order_relaxed);
}

static void init_registry(void)
{
    for (int i = 0; i < MAX_LOCK_FDS; i++)
        atomic_store_explicit(&lock_fds[i], -1, memory_order_relaxed);
    pthread_atfork(NULL, NULL, close_inherited);
}

uint64_t pyshm_fork_generation(void) { return atomic_load_explicit(&fork_generation, memory_order_relaxed); }

static int same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int reopen(int region_fd, const char *name)
{
    if (name) {
        int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
        if (fd >= 0 && same_file(fd, region_fd))
            return fd;
        if (fd >= 0)
            close(fd); /* unlinked, and the name now belongs to another region */
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", region_fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0 && same_file(fd, region_fd))
        return fd;
    if (fd >= 0)
        close(fd);
    return -ENOTSUP;
}

int pyshm_lock_open(int region_fd, const char *name)
{
    if (region_fd < 0)
        return -ENOTSUP;
    pthread_once(&atfork_once, init_registry);
    int fd = reopen(region_fd, name);
    if (fd < 0)
        return fd;
    for (int i = 0; i < MAX_LOCK_FDS; i++) {
        int expected = -1;
        if (atomic_compare_exchange_strong_explicit(&lock_fds[i], &expected, fd, memory_order_relaxed,
                                                    memory_order_relaxed))
            return fd;
    }
    close(fd); /* a fork child could not let go of it: better no lock than a wrong one */
    return -ENOTSUP;
}

void pyshm_lock_close(int lock_fd)
{
    if (lock_fd < 0)
        return;
    for (int i = 0; i < MAX_LOCK_FDS; i++) {
        int expected = lock_fd;
        if (atomic_compare_exchange_strong_explicit(&lock_fds[i], &expected, -1, memory_order_relaxed,
                                                    memory_order_relaxed))
            break;
    }
    close(lock_fd);
}

static struct flock byte_at(short type, uint64_t offset)
{
    struct flock fl;
    memset(&fl, 0, sizeof(fl)); /* l_pid must be 0 for OFD locks */
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)offset;
    fl.l_len = 1;
    return fl;
}

int pyshm_lock_try(int lock_fd, uint64_t offset)
{
    struct flock fl = byte_at(F_WRLCK, offset);
    if (fcntl(lock_fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    return errno == EACCES ? -EAGAIN : -errno;
}

void pyshm_lock_drop(int lock_fd, uint64_t offset)
{
    struct flock fl = byte_at(F_UNLCK, offset);
    fcntl(lock_fd, F_OFD_SETLK, &fl);
}

int pyshm_lock_held(int fd, uint64_t offset)
{
    struct flock fl = byte_at(F_WRLCK, offset);
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return -errno;
    return fl.l_type != F_UNLCK;
}

/* ---- identities, for processes without a lock ------------------------------------------ */

static uint64_t inode_of(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* Whether pidfds are pidfs inodes, one per process: two live processes must differ. */
static int pidfs_unique(int self_pidfd)
{
    int parent = (int)syscall(SYS_pidfd_open, getppid(), 0);
    int unique = parent >= 0 && inode_of(parent) != inode_of(self_pidfd);
    if (parent >= 0)
        close(parent);
    return unique;
}

static uint64_t pid_namespace_of(int pidfd)
{
    int ns = pidfd >= 0 ? ioctl(pidfd, PIDFD_GET_PID_NAMESPACE, 0) : -1;
    if (ns >= 0) {
        uint64_t ino = inode_of(ns);
        close(ns);
        return ino;
    }
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

void pyshm_identity_self(struct pyshm_identity *id)
{
    id->pid = (uint64_t)getpid();
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    id->pidns = pid_namespace_of(pidfd);
    id->pidfs = pidfd >= 0 && pidfs_unique(pidfd) ? inode_of(pidfd) : 0;
    if (pidfd >= 0)
        close(pidfd);
}

int pyshm_identity_gone(const struct pyshm_identity *id)
{
    struct pyshm_identity self;
    pyshm_identity_self(&self);
    /* A pid means something only in the namespace it was read in. */
    if (id->pid == 0 || id->pid > INT32_MAX || id->pidns == 0 || id->pidns != self.pidns)
        return 0;
    int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)id->pid, 0);
    if (pidfd < 0)
        return errno == ESRCH;
    int gone = id->pidfs != 0 && self.pidfs != 0 && inode_of(pidfd) != id->pidfs;
    close(pidfd);
    return gone;
}
