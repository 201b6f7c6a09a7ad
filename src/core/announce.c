/* announce.c - the region's announcement table and this process's entry in it. */
#include "announce.h"

#include <stddef.h>
#include <string.h>

#include "process.h"
#include "region.h"

uint64_t pyshm_announce_table_size(void) { return sizeof(struct pyshm_announce_table); }

struct pyshm_announce_table *pyshm_announce_table_of(const struct pyshm_region *r)
{
    if (!r->base)
        return NULL;
    struct pyshm_region_header *h = (struct pyshm_region_header *)r->base;
    /* Acquire: pairs with the release CAS that installs the table in make_table. */
    uint64_t offset = atomic_load_explicit(&h->announce_offset, memory_order_acquire);
    uint64_t size = sizeof(struct pyshm_announce_table);
    if (offset == 0 || offset % PYSHM_CACHE_LINE != 0 || offset < PYSHM_REGION_HEADER_SIZE || offset > r->size ||
        r->size - offset < size)
        return NULL;
    struct pyshm_announce_table *t = (struct pyshm_announce_table *)(r->base + offset);
    if (t->object.magic != PYSHM_OBJECT_MAGIC || t->object.kind != PYSHM_KIND_ANNOUNCE ||
        t->object.size != size || t->entries != PYSHM_ANNOUNCE_ENTRIES)
        return NULL;
    return t;
}

/* Carve and install the table if the region has none; the loser of a race leaves its
 * copy carved and unused (carved memory is never returned). */
static struct pyshm_announce_table *make_table(struct pyshm_region *r)
{
    struct pyshm_announce_table *t = pyshm_announce_table_of(r);
    if (t)
        return t;
    struct pyshm_region_header *h = (struct pyshm_region_header *)r->base;
    if (atomic_load_explicit(&h->announce_offset, memory_order_relaxed) != 0)
        return NULL; /* garbage in the header: no table rather than a second one */
    uint64_t offset;
    if (pyshm_region_carve(r, sizeof(struct pyshm_announce_table), PYSHM_KIND_ANNOUNCE, NULL, &offset) < 0)
        return NULL;
    t = (struct pyshm_announce_table *)(r->base + offset);
    /* Zero whatever a faulty process may have written there: every entry free. */
    memset((char *)t + sizeof(t->object), 0, sizeof(*t) - sizeof(t->object));
    t->entries = PYSHM_ANNOUNCE_ENTRIES;
    uint64_t expected = 0;
    /* Release: pairs with the acquire load in pyshm_announce_table_of. */
    atomic_compare_exchange_strong_explicit(&h->announce_offset, &expected, offset, memory_order_release,
                                            memory_order_relaxed);
    return pyshm_announce_table_of(r);
}

struct pyshm_announce_entry *pyshm_announcer_take(struct pyshm_announcer *a)
{
    uint64_t self = pyshm_holder_self();
    /* The announcer lives in its region handle (which may have been copied). */
    struct pyshm_region *r = (struct pyshm_region *)((char *)a - offsetof(struct pyshm_region, announcer));
    atomic_store_explicit(&a->entry, NULL, memory_order_relaxed);
    struct pyshm_announce_table *t = r->base ? make_table(r) : NULL;
    if (!t) {
        atomic_store_explicit(&a->unavailable, 1, memory_order_relaxed);
        return NULL;
    }
    for (uint32_t i = 0; i < PYSHM_ANNOUNCE_ENTRIES; i++) {
        struct pyshm_announce_entry *e = &t->entry[i];
        uint64_t expected = 0;
        if (atomic_load_explicit(&e->owner, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong_explicit(&e->owner, &expected, self, memory_order_relaxed,
                                                    memory_order_relaxed)) {
            atomic_store_explicit(&e->what, 0, memory_order_relaxed);
            atomic_store_explicit(&a->owner, self, memory_order_relaxed);
            atomic_store_explicit(&a->entry, e, memory_order_release);
            return e;
        }
    }
    /* All taken by live processes: this handle announces nothing from now on. */
    atomic_store_explicit(&a->unavailable, 1, memory_order_relaxed);
    return NULL;
}

void pyshm_announcer_release(struct pyshm_announcer *a)
{
    struct pyshm_announce_entry *e = atomic_load_explicit(&a->entry, memory_order_relaxed);
    uint64_t owner = atomic_load_explicit(&a->owner, memory_order_relaxed);
    if (e && owner == pyshm_holder_self()) {
        atomic_store_explicit(&e->what, 0, memory_order_relaxed);
        atomic_compare_exchange_strong_explicit(&e->owner, &owner, 0, memory_order_release, memory_order_relaxed);
    }
    atomic_store_explicit(&a->entry, NULL, memory_order_relaxed);
}
