/* member.c - joining, leaving and testing the entries of a region's member table. */
#define _GNU_SOURCE
#include "member.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "errors.h"

static void open_lock(struct pyshm_members *ms)
{
    ms->lock_fork_gen = pyshm_fork_generation();
    int fd = pyshm_lock_open(ms->region_fd, ms->name[0] ? ms->name : NULL);
    ms->lock_fd = fd >= 0 ? fd : -1;
}

void pyshm_members_init(struct pyshm_members *ms, void *table, int region_fd, const char *name)
{
    ms->table = table;
    ms->region_fd = region_fd;
    ms->name[0] = 0;
    if (name && strlen(name) < sizeof(ms->name))
        strcpy(ms->name, name);
    open_lock(ms);
}

/* The lock description, if it is this process's own (a fork child's copy was closed). */
static int lock_fd_of(const struct pyshm_members *ms)
{
    return ms->lock_fd >= 0 && ms->lock_fork_gen == pyshm_fork_generation() ? ms->lock_fd : -1;
}

int pyshm_members_lock(struct pyshm_members *ms, uint64_t offset)
{
    if (ms->lock_fork_gen != pyshm_fork_generation())
        open_lock(ms); /* a fork child's own description */
    int fd = lock_fd_of(ms);
    return fd < 0 ? -ENOTSUP : pyshm_lock_try(fd, offset);
}

void pyshm_members_unlock(const struct pyshm_members *ms, uint64_t offset)
{
    int fd = lock_fd_of(ms);
    if (fd >= 0)
        pyshm_lock_drop(fd, offset);
}

static void write_identity(struct pyshm_member_entry *e)
{
    struct pyshm_identity id;
    pyshm_identity_self(&id);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    atomic_store_explicit(&e->pid, id.pid, memory_order_relaxed);
    atomic_store_explicit(&e->pidns, id.pidns, memory_order_relaxed);
    atomic_store_explicit(&e->pidfs, id.pidfs, memory_order_relaxed);
    atomic_store_explicit(&e->joined_ns, (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec,
                          memory_order_relaxed);
}

/* Move entry i from owner word `from` to a new incarnation owned by this process, with or
 * without a lock; fill *self. 0, or -EAGAIN if the owner word was not `from`. */
static int take_entry(struct pyshm_members *ms, uint32_t i, uint64_t from, int locked, struct pyshm_member *self)
{
    struct pyshm_member_entry *e = &ms->table->entry[i];
    uint64_t incarnation = pyshm_owner_incarnation(from) + 1;
    uint64_t flags = PYSHM_OWNER_OWNED | (locked ? 0 : PYSHM_OWNER_NOLOCK);
    uint64_t owned = incarnation << 3 | flags;
    /* M1: acq_rel, so the new owner sees what the entry's last writer did. */
    if (!atomic_compare_exchange_strong_explicit(&e->owner, &from, owned, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return -EAGAIN;
    write_identity(e);
    /* A free or repaired entry holds no claim and no block. */
    uint64_t seq = atomic_load_explicit(&e->ann_seq, memory_order_relaxed);
    self->entry = e;
    self->index = i;
    self->holder = pyshm_holder_word(incarnation, i);
    self->ann_seq = seq + (seq & 1); /* a dead writer may have left it odd */
    self->fork_gen = pyshm_fork_generation();
    /* A full seqlock write: the sequence must read even (settled) from now on, or a
     * repairer would take the idle new owner for one caught mid-write. */
    pyshm_member_write(self, 0, 0, 0);
    atomic_store_explicit(&e->held, 0, memory_order_relaxed);
    /* M1 release: identity and cleared fields before READY. */
    atomic_store_explicit(&e->owner, owned | PYSHM_OWNER_READY, memory_order_release);
    return 0;
}

int pyshm_member_join_free(struct pyshm_members *ms, struct pyshm_member *self)
{
    /* A fork child joins with a description of its own (its parent's was closed in it). */
    if (ms->lock_fork_gen != pyshm_fork_generation())
        open_lock(ms);
    int locked = lock_fd_of(ms) >= 0;
    for (uint32_t i = 0; i < PYSHM_MEMBER_ENTRIES; i++) {
        struct pyshm_member_entry *e = &ms->table->entry[i];
        uint64_t owner = atomic_load_explicit(&e->owner, memory_order_acquire);
        if (owner & PYSHM_OWNER_OWNED)
            continue;
        if (!locked) {
            if (take_entry(ms, i, owner, 0, self) == 0)
                return 0;
            continue;
        }
        /* The lock byte first: a free entry's lock is free, unless someone else is taking it. */
        uint64_t offset = pyshm_member_lock_offset(i);
        if (pyshm_members_lock(ms, offset) != 0)
            continue;
        if (take_entry(ms, i, owner, 1, self) == 0)
            return 0;
        pyshm_members_unlock(ms, offset);
    }
    return -ENOENT;
}

int pyshm_member_alive(const struct pyshm_members *ms, uint32_t i, uint64_t owner)
{
    if (!(owner & PYSHM_OWNER_OWNED))
        return 0;
    if (owner & PYSHM_OWNER_NOLOCK) {
        if (!(owner & PYSHM_OWNER_READY))
            return 1; /* joining right now, or died doing so: cannot be told */
        const struct pyshm_member_entry *e = &ms->table->entry[i];
        struct pyshm_identity id = {
            .pid = atomic_load_explicit(&e->pid, memory_order_relaxed),
            .pidns = atomic_load_explicit(&e->pidns, memory_order_relaxed),
            .pidfs = atomic_load_explicit(&e->pidfs, memory_order_relaxed),
        };
        return !pyshm_identity_gone(&id);
    }
    if (ms->region_fd < 0)
        return 1;
    /* Through the shared description, which holds no lock itself. A lock held by this
     * very handle's description (its own entry) reads as held too. */
    int held = pyshm_lock_held(ms->region_fd, pyshm_member_lock_offset(i));
    return held != 0; /* an error cannot tell: alive */
}

void pyshm_member_act_for(const struct pyshm_members *ms, uint32_t i, uint64_t owner, struct pyshm_member *actor)
{
    struct pyshm_member_entry *e = &ms->table->entry[i];
    uint64_t seq = atomic_load_explicit(&e->ann_seq, memory_order_acquire);
    actor->entry = e;
    actor->index = i;
    actor->holder = pyshm_holder_word(pyshm_owner_incarnation(owner), i);
    actor->ann_seq = seq + (seq & 1); /* the owner may have died mid-write */
    actor->fork_gen = pyshm_fork_generation();
}

int pyshm_member_retire(struct pyshm_members *ms, uint32_t i, uint64_t owner, struct pyshm_member *self)
{
    uint64_t offset = pyshm_member_lock_offset(i);
    if (self)
        return take_entry(ms, i, owner, lock_fd_of(ms) >= 0, self);
    uint64_t expected = owner;
    uint64_t free_word = pyshm_owner_incarnation(owner) << 3;
    /* M1 release: the repair's writes before the entry can be taken again. */
    int rc = atomic_compare_exchange_strong_explicit(&ms->table->entry[i].owner, &expected, free_word,
                                                     memory_order_release, memory_order_relaxed)
                 ? 0
                 : -EAGAIN;
    pyshm_members_unlock(ms, offset);
    return rc;
}

int pyshm_member_read(const struct pyshm_member_entry *e, struct pyshm_announcement *a, int attempts)
{
    for (int attempt = 0; attempt < attempts; attempt++) {
        /* A1 / A2 acquire: pairs with the release of the sequence in pyshm_member_write. */
        uint64_t s1 = atomic_load_explicit(&e->ann_seq, memory_order_acquire);
        if (s1 & 1) {
            pyshm_cpu_relax();
            continue;
        }
        a->what = atomic_load_explicit(&e->what, memory_order_acquire); /* A2 */
        a->pos = atomic_load_explicit(&e->pos, memory_order_relaxed);
        a->n = atomic_load_explicit(&e->n, memory_order_relaxed);
        /* Seqlock: the fields before the second read of the sequence. */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&e->ann_seq, memory_order_relaxed) == s1)
            return 1;
    }
    return 0;
}

void pyshm_members_close(struct pyshm_members *ms, struct pyshm_member *self)
{
    if (self && pyshm_member_is_current(self)) {
        struct pyshm_member_entry *e = self->entry;
        struct pyshm_announcement a = {0, 0, 0};
        uint64_t owner = atomic_load_explicit(&e->owner, memory_order_relaxed);
        /* Nothing held, nothing claimed: give the entry back now. Otherwise leave it as a
         * dead owner's (the lock goes with the description below): repair returns it. */
        if (atomic_load_explicit(&e->held, memory_order_relaxed) == 0 && pyshm_member_read(e, &a, 1) && a.what == 0)
            pyshm_member_retire(ms, self->index, owner, NULL);
    }
    if (self)
        memset(self, 0, sizeof(*self));
    if (ms->table && lock_fd_of(ms) >= 0)
        pyshm_lock_close(ms->lock_fd);
    ms->lock_fd = -1;
    ms->table = NULL;
}
