/*
 * rawbuf.h - raw bytes carved from a region: a RawBuffer, shared memory for the user's
 * own use (numpy arrays, counters, anything) that can never overlap pyshm's structures.
 * Zero-filled at creation, like the region; creating one writes its header only.
 */
#ifndef PYSHM_CORE_RAWBUF_H
#define PYSHM_CORE_RAWBUF_H

#include <stdint.h>

#include "layout.h"

struct pyshm_region;

/* Lives in shared memory, at the start of the object; the bytes follow. */
struct pyshm_rawbuf_shared {
    struct pyshm_object_header object;
    uint64_t size;
    uint64_t data_offset; /* region offset */
    uint64_t reserved[6];
};
_Static_assert(sizeof(struct pyshm_rawbuf_shared) == 192, "raw buffer header layout");

#define PYSHM_MAX_RAWBUF_SIZE (UINT64_C(1) << 46)

/* Process-local handle. */
struct pyshm_rawbuf {
    uint64_t offset;
    uint64_t size;
    uint8_t *data;
};

int pyshm_rawbuf_footprint(uint64_t size, uint64_t *bytes);
/* Carve and publish: 0 with *offset set, -EINVAL, -EEXIST, -ENOSPC. */
int pyshm_rawbuf_create(struct pyshm_region *r, uint64_t size, const char *name, uint64_t *offset);
/* Validate the raw buffer at `offset`: 0 or -PYSHM_ECORRUPT. */
int pyshm_rawbuf_attach(const struct pyshm_region *r, uint64_t offset, struct pyshm_rawbuf *out);

#endif
