/* rawbuf.c - raw buffers carved from a region. */
#include "rawbuf.h"

#include <errno.h>

#include "atomics.h"
#include "errors.h"
#include "region.h"

int pyshm_rawbuf_footprint(uint64_t size, uint64_t *bytes)
{
    if (size == 0 || size > PYSHM_MAX_RAWBUF_SIZE)
        return -EINVAL;
    *bytes = PYSHM_ALIGN_UP(sizeof(struct pyshm_rawbuf_shared) + size, PYSHM_CACHE_LINE);
    return 0;
}

int pyshm_rawbuf_create(struct pyshm_region *r, uint64_t size, const char *name, uint64_t *offset)
{
    uint64_t bytes;
    int rc = pyshm_rawbuf_footprint(size, &bytes);
    if (rc < 0)
        return rc;
    rc = pyshm_region_carve(r, bytes, PYSHM_KIND_RAW, name, offset);
    if (rc < 0)
        return rc;
    struct pyshm_rawbuf_shared *shared = (struct pyshm_rawbuf_shared *)(r->base + *offset);
    shared->size = size;
    shared->data_offset = *offset + sizeof(*shared);
    pyshm_region_publish(r, *offset);
    return 0;
}

int pyshm_rawbuf_attach(const struct pyshm_region *r, uint64_t offset, struct pyshm_rawbuf *out)
{
    if (offset % PYSHM_CACHE_LINE != 0 || !pyshm_region_contains(r, offset, sizeof(struct pyshm_rawbuf_shared)))
        return -PYSHM_ECORRUPT;
    const struct pyshm_rawbuf_shared *shared = (const struct pyshm_rawbuf_shared *)(r->base + offset);
    struct pyshm_object_header object = shared->object;
    uint64_t size = shared->size, data = shared->data_offset, bytes;
    if (object.magic != PYSHM_OBJECT_MAGIC || object.kind != PYSHM_KIND_RAW ||
        object.layout_version != PYSHM_LAYOUT_VERSION || pyshm_rawbuf_footprint(size, &bytes) < 0 ||
        object.size != bytes || data != offset + sizeof(*shared) || !pyshm_region_contains(r, offset, bytes))
        return -PYSHM_ECORRUPT;
    out->offset = offset;
    out->size = size;
    out->data = r->base + data;
    return 0;
}
