/* inspect.c - read-only views of a region's members and objects (inspect.h). */
#define _GNU_SOURCE
#include "inspect.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block_ring.h"
#include "errors.h"
#include "liveness.h"
#include "member.h"
#include "mempool.h"
#include "rawbuf.h"

/* ---- a read-only mapping ----------------------------------------------------------------- */

int pyshm_inspect_open_fd(struct pyshm_region *r, int fd)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    uint64_t file_size = (uint64_t)st.st_size;
    if (!S_ISREG(st.st_mode) || file_size < PYSHM_OBJECTS_OFFSET) {
        close(fd);
        return -PYSHM_ENOTREGION;
    }
    void *base = mmap(NULL, file_size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int err = errno;
        close(fd);
        return -err;
    }
    const struct pyshm_region_header *shared = base;
    int rc = 0;
    uint64_t size = 0;
    /* O3 acquire, as attaching does: a region being created is not one yet. */
    if (atomic_load_explicit((pyshm_atomic64 *)&shared->magic, memory_order_acquire) != PYSHM_REGION_MAGIC) {
        rc = -PYSHM_ENOTREGION;
    } else {
        /* Read once, validate the copies. */
        uint32_t version = shared->layout_version, header_size = shared->header_size;
        size = shared->size;
        if (version != PYSHM_LAYOUT_VERSION)
            rc = -PYSHM_EVERSION;
        else if (header_size != PYSHM_REGION_HEADER_SIZE || size < PYSHM_MIN_REGION_SIZE ||
                 size > PYSHM_MAX_REGION_SIZE || pyshm_region_file_size(size) > file_size)
            rc = -PYSHM_ECORRUPT;
    }
    if (rc < 0) {
        munmap(base, file_size);
        close(fd);
        return rc;
    }
    r->base = base;
    r->size = size;
    r->map_size = file_size;
    r->fd = fd;
    return 0;
}

int pyshm_inspect_open_named(struct pyshm_region *r, const char *name)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    return pyshm_inspect_open_fd(r, fd);
}

/* ---- members ------------------------------------------------------------------------------ */

static int judge_nolock(const struct pyshm_member_entry *e, uint64_t owner)
{
    if (!(owner & PYSHM_OWNER_READY))
        return PYSHM_ALIVE_UNKNOWN; /* joining right now, or died doing so */
    struct pyshm_identity id = {
        .pid = atomic_load_explicit(&e->pid, memory_order_relaxed),
        .pidns = atomic_load_explicit(&e->pidns, memory_order_relaxed),
        .pidfs = atomic_load_explicit(&e->pidfs, memory_order_relaxed),
    };
    if (pyshm_identity_gone(&id))
        return PYSHM_ALIVE_NO;
    struct pyshm_identity self;
    pyshm_identity_self(&self);
    /* Not gone, in our pid namespace: a process with its pid exists (the same one, when
     * pidfd inodes tell). Elsewhere nothing can be told. */
    return id.pidns != 0 && id.pidns == self.pidns ? PYSHM_ALIVE_YES : PYSHM_ALIVE_UNKNOWN;
}

uint32_t pyshm_inspect_members(const struct pyshm_region *r, int fd, struct pyshm_inspect_member *out)
{
    const struct pyshm_member_table *table = pyshm_region_members(r);
    uint32_t n = 0;
    for (uint32_t i = 0; i < PYSHM_MEMBER_ENTRIES; i++) {
        const struct pyshm_member_entry *e = &table->entry[i];
        /* M1 acquire: the identity is read only once READY says it is written. */
        uint64_t owner = atomic_load_explicit((pyshm_atomic64 *)&e->owner, memory_order_acquire);
        if (!(owner & PYSHM_OWNER_OWNED))
            continue;
        struct pyshm_inspect_member *m = &out[n++];
        memset(m, 0, sizeof(*m));
        m->index = i;
        m->incarnation = pyshm_owner_incarnation(owner);
        m->nolock = (owner & PYSHM_OWNER_NOLOCK) != 0;
        if (owner & PYSHM_OWNER_READY) {
            m->pid = atomic_load_explicit((pyshm_atomic64 *)&e->pid, memory_order_relaxed);
            m->joined_ns = atomic_load_explicit((pyshm_atomic64 *)&e->joined_ns, memory_order_relaxed);
        }
        m->held = atomic_load_explicit((pyshm_atomic64 *)&e->held, memory_order_relaxed);
        struct pyshm_announcement a;
        /* A writer mid-write all along (odd sequence) counts as announcing. */
        m->announcing = !pyshm_member_read(e, &a, PYSHM_READ_LIVE) || a.what != 0;
        if (m->nolock) {
            m->alive = judge_nolock(e, owner);
        } else if (fd < 0) {
            m->alive = PYSHM_ALIVE_UNKNOWN;
        } else {
            /* The test repairs use (pyshm_member_alive): is the lock byte held. */
            int held = pyshm_lock_held(fd, pyshm_member_lock_offset(i));
            m->alive = held < 0 ? PYSHM_ALIVE_UNKNOWN : held ? PYSHM_ALIVE_YES : PYSHM_ALIVE_NO;
        }
    }
    return n;
}

/* ---- objects ------------------------------------------------------------------------------ */

struct holders {
    /* Per entry index: 1 if blocks held under (incarnation[i], i) are a gone member's. */
    uint64_t incarnation[PYSHM_MEMBER_ENTRIES];
    uint8_t owned[PYSHM_MEMBER_ENTRIES];
    uint8_t gone[PYSHM_MEMBER_ENTRIES];
    const struct pyshm_member_table *table;
};

static int held_by_gone(const struct holders *h, uint64_t holder)
{
    uint32_t i = (uint32_t)(holder & 0xffu);
    uint64_t incarnation = holder >> 8;
    if (h->owned[i] && h->incarnation[i] == incarnation)
        return h->gone[i];
    /* Not in the snapshot: a member that joined since is not gone. */
    uint64_t owner = atomic_load_explicit((pyshm_atomic64 *)&h->table->entry[i].owner, memory_order_acquire);
    return !((owner & PYSHM_OWNER_OWNED) && pyshm_owner_incarnation(owner) == incarnation);
}

static void inspect_pool(const struct pyshm_region *r, const struct holders *h, struct pyshm_inspect_object *o)
{
    struct pyshm_pool p;
    if (pyshm_pool_attach(r, o->offset, &p) < 0)
        return;
    o->valid = 1;
    o->count = p.count;
    o->elt_size = p.elt_size;
    o->free_count = pyshm_pool_free_count(&p);
    /* Blocks past the touched mark were never out: FREE (and never made resident here). */
    uint64_t touched = pyshm_pool_touched(&p);
    for (uint64_t i = 0; i < touched && i < p.count; i++) {
        /* S2 acquire: the holder word of the generation read. */
        uint64_t state = atomic_load_explicit(&p.words[i].state, memory_order_acquire);
        enum pyshm_block_kind kind = pyshm_block_kind_of(state);
        if (kind == PYSHM_BLOCK_IN_RING) {
            o->in_ring_count++;
        } else if (kind == PYSHM_BLOCK_HELD) {
            o->held_count++;
            if (held_by_gone(h, atomic_load_explicit(&p.words[i].holder, memory_order_relaxed)))
                o->held_by_dead++;
        }
    }
}

static void inspect_ring(const struct pyshm_region *r, struct pyshm_inspect_object *o)
{
    struct pyshm_block_ring q;
    if (pyshm_block_ring_attach(r, o->offset, &q) < 0)
        return;
    o->valid = 1;
    o->count = q.queue.ring.capacity;
    o->used = pyshm_block_ring_count(&q);
    o->shutdown = (int)pyshm_block_ring_shutdown_state(&q);
}

static void inspect_raw(const struct pyshm_region *r, struct pyshm_inspect_object *o)
{
    struct pyshm_rawbuf b;
    if (pyshm_rawbuf_attach(r, o->offset, &b) < 0)
        return;
    o->valid = 1;
    o->size = b.size;
}

struct offsets {
    uint64_t *at;
    size_t n, cap;
};

static int collect(void *ctx, uint64_t offset, const struct pyshm_object_header *obj)
{
    (void)obj;
    struct offsets *list = ctx;
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 16;
        uint64_t *at = realloc(list->at, cap * sizeof(*at));
        if (!at)
            return -ENOMEM;
        list->at = at;
        list->cap = cap;
    }
    list->at[list->n++] = offset;
    return 0;
}

int pyshm_inspect_objects(const struct pyshm_region *r, const struct pyshm_inspect_member *members,
                          uint32_t n_members, int (*visit)(void *, const struct pyshm_inspect_object *), void *ctx)
{
    struct holders *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->table = pyshm_region_members(r);
    for (uint32_t k = 0; k < n_members && k < PYSHM_MEMBER_ENTRIES; k++) {
        uint32_t i = members[k].index;
        if (i >= PYSHM_MEMBER_ENTRIES)
            continue;
        h->owned[i] = 1;
        h->incarnation[i] = members[k].incarnation;
        h->gone[i] = members[k].alive == PYSHM_ALIVE_NO;
    }
    /* The walk (bounded, validated links) is newest first: collect, then visit oldest first. */
    struct offsets list = {NULL, 0, 0};
    int rc = pyshm_region_walk(r, collect, &list);
    for (size_t k = list.n; rc == 0 && k-- > 0;) {
        struct pyshm_inspect_object o;
        memset(&o, 0, sizeof(o));
        o.offset = list.at[k];
        /* A private copy of the header (the walk validated that it lies in the region). */
        struct pyshm_object_header header;
        memcpy(&header, r->base + o.offset, sizeof(header));
        o.kind = header.kind;
        memcpy(o.name, header.name, PYSHM_NAME_MAX);
        o.name[PYSHM_NAME_MAX] = 0;
        if (header.magic == PYSHM_OBJECT_MAGIC) {
            if (header.kind == PYSHM_KIND_POOL)
                inspect_pool(r, h, &o);
            else if (header.kind == PYSHM_KIND_RING)
                inspect_ring(r, &o);
            else if (header.kind == PYSHM_KIND_RAW)
                inspect_raw(r, &o);
        }
        rc = visit(ctx, &o);
    }
    free(list.at);
    free(h);
    return rc;
}
