/*
 * liveness.h - whether a process is alive, as the kernel tells it, not as /proc shows it.
 *
 * Each process that uses a region holds, for as long as it lives, an exclusive lock on
 * one byte of the region's file: the first byte of its member entry (member.h). The
 * lock is an open-file-description lock (F_OFD_SETLK) taken through a private open file
 * description of the region file that the process opens for itself (reopening the named
 * file, or /proc/self/fd/N for an unnamed one) and never shares: it is close-on-exec, and
 * a fork child closes its inherited copy at once (an atfork handler), so the lock lives
 * exactly as long as the process that took it. The kernel drops it when that process
 * exits or is killed, before it becomes a zombie; a main thread that called pthread_exit
 * while other threads run leaves it in place. Any process can test the lock (F_OFD_GETLK)
 * without /proc, whatever its pid namespace, user or /proc mount options.
 *
 * Where a process cannot open a private description (an unnamed region and no /proc),
 * it holds no lock and records who it is instead: its pid, the inode of its pid
 * namespace and of its pidfd (pidfs, Linux 6.9+). Another process then calls it gone
 * only when it can be sure: same pid namespace, and no process with that pid, or one
 * whose pidfd is another inode. Otherwise the answer is "alive".
 *
 * The process-wide part: the registry of lock descriptors that a fork child must close,
 * and a fork generation that changes in every child, so that handles can tell that the
 * membership they hold belongs to their parent.
 */
#ifndef PYSHM_CORE_LIVENESS_H
#define PYSHM_CORE_LIVENESS_H

#include <stdint.h>

/* A private open file description of the region file behind region_fd (and called `name`
 * in /dev/shm, or NULL), registered so that fork children close it: the descriptor, or
 * -errno (-ENOTSUP when none can be had). */
int pyshm_lock_open(int region_fd, const char *name);
/* Close a descriptor from pyshm_lock_open (in the process that opened it). */
void pyshm_lock_close(int lock_fd);
/* Take the exclusive lock on byte `offset`: 0, -EAGAIN if another description holds it. A
 * description that holds it already takes it again. */
int pyshm_lock_try(int lock_fd, uint64_t offset);
void pyshm_lock_drop(int lock_fd, uint64_t offset);
/* Whether some description other than fd's holds a lock on byte `offset`: 1, 0, or -errno. */
int pyshm_lock_held(int fd, uint64_t offset);

/* Changes in every fork child (0 in a process that never forked from one using pyshm). */
uint64_t pyshm_fork_generation(void);

/* Who a process is, for those that hold no lock. */
struct pyshm_identity {
    uint64_t pid;
    uint64_t pidns; /* inode of its pid namespace, 0 if unknown */
    uint64_t pidfs; /* inode of a pidfd of it (pidfs), 0 if unknown */
};
void pyshm_identity_self(struct pyshm_identity *id);
/* 1 if the process is surely gone, 0 if it is alive or that cannot be told. */
int pyshm_identity_gone(const struct pyshm_identity *id);

#endif
