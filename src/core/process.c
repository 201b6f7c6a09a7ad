/* process.c - holder words: this process's, and whether another's process is gone. */
#define _GNU_SOURCE
#include "process.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* State letter and start time of a process from /proc/PID/stat: 0, or -errno. */
static int read_stat(pid_t pid, char *state, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name (field 2) may hold spaces and parentheses: skip to the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -EINVAL;
    unsigned long long ticks = 0;
    /* Fields after the name: 3 state, then 4..21 skipped, 22 starttime. */
    if (sscanf(p + 1, " %c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu",
               state, &ticks) != 2)
        return -EINVAL;
    *start = (uint64_t)ticks;
    return 0;
}

static uint64_t make_holder(pid_t pid, uint64_t start)
{
    return (uint64_t)pid << PYSHM_HOLDER_PID_SHIFT | (start & PYSHM_HOLDER_START_MASK);
}

/* This process's holder word, 0 until first asked for. getpid() is a system call
 * (glibc stopped caching it), and this is read on every get and dequeue, so the word
 * is computed once and forgotten in a fork child, by an atfork handler. A race between
 * two threads computing it first is harmless: both compute the same value. */
_Atomic uint64_t pyshm_self_holder;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void forget_self(void) { atomic_store_explicit(&pyshm_self_holder, 0, memory_order_relaxed); }
static void install_atfork(void) { pthread_atfork(NULL, NULL, forget_self); }

uint64_t pyshm_holder_self(void)
{
    uint64_t holder = atomic_load_explicit(&pyshm_self_holder, memory_order_relaxed);
    if (holder != 0)
        return holder;
    pthread_once(&atfork_once, install_atfork);
    pid_t pid = getpid();
    char state;
    uint64_t start = 0;
    read_stat(pid, &state, &start); /* without /proc: start 0, pid alone */
    holder = make_holder(pid, start);
    atomic_store_explicit(&pyshm_self_holder, holder, memory_order_relaxed);
    return holder;
}

int pyshm_holder_is_gone(uint64_t holder)
{
    pid_t pid = (pid_t)(holder >> PYSHM_HOLDER_PID_SHIFT);
    if (holder == 0 || pid <= 0)
        return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 1;
    char state;
    uint64_t start;
    int rc = read_stat(pid, &state, &start);
    if (rc == -ENOENT || rc == -ESRCH)
        return 1;
    if (rc < 0)
        return 0;
    /* Another process now has the pid, or the holder is dead and not yet reaped. */
    return (start & PYSHM_HOLDER_START_MASK) != (holder & PYSHM_HOLDER_START_MASK) || state == 'Z' || state == 'X';
}
