/* space.c - a process's handle on a region: mapping, membership, validated pools. */
#define _GNU_SOURCE
#include "space.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "errors.h"
#include "repair.h"

/* How long joining waits for another process's repair to free an entry. */
#define JOIN_PATIENCE_MS 1000

static int set_up(struct pyshm_space *s, int rc, const char *name)
{
    if (rc < 0)
        return rc;
    pyshm_members_init(&s->members, pyshm_region_members(&s->region), s->region.fd, name);
    return 0;
}

static void zero(struct pyshm_space *s)
{
    memset(s, 0, sizeof(*s));
    s->region.fd = -1;
    s->members.region_fd = -1;
    s->members.lock_fd = -1;
}

int pyshm_space_create(struct pyshm_space *s, uint64_t size)
{
    zero(s);
    return set_up(s, pyshm_region_create(&s->region, size), NULL);
}

int pyshm_space_create_named(struct pyshm_space *s, uint64_t size, const char *name, uint64_t *room)
{
    zero(s);
    return set_up(s, pyshm_region_create_named(&s->region, size, name, room), name);
}

int pyshm_space_attach_fd(struct pyshm_space *s, int fd, const char *name)
{
    zero(s);
    return set_up(s, pyshm_region_attach_fd(&s->region, fd), name);
}

int pyshm_space_attach_named(struct pyshm_space *s, const char *name)
{
    zero(s);
    return set_up(s, pyshm_region_attach_named(&s->region, name), name);
}

void pyshm_space_close(struct pyshm_space *s)
{
    if (s->members.table)
        pyshm_members_close(&s->members, &s->self);
    pyshm_pool_table_free(&s->pools);
    pyshm_region_close(&s->region);
    zero(s);
}

int pyshm_space_join(struct pyshm_space *s)
{
    if (pyshm_member_is_current(&s->self))
        return 0;
    /* After a fork the entry is the parent's: this process needs its own. */
    memset(&s->self, 0, sizeof(s->self));
    for (int attempt = 0; attempt < JOIN_PATIENCE_MS; attempt++) {
        if (pyshm_member_join_free(&s->members, &s->self) == 0)
            return 0;
        /* Every entry is taken: those of processes that are gone are freed by a repair. */
        struct pyshm_repair_report report;
        int rc = pyshm_repair(s, 0, &report);
        if (rc == 0 && report.entries > 0)
            continue;
        if (rc == -ENOMEM || rc == -PYSHM_ECORRUPT)
            return rc;
        if (rc != -EBUSY && report.pending == 0)
            return -PYSHM_ENOMEMBER; /* all alive, or this process cannot repair */
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return -PYSHM_ENOMEMBER;
}
