/*
 * object.h - the header every object carved from a region starts with.
 * See region.h for how objects are carved and published.
 */
#ifndef PYSHM_CORE_OBJECT_H
#define PYSHM_CORE_OBJECT_H

#include <stdint.h>

#define PYSHM_OBJECT_MAGIC UINT64_C(0x3154434a424f5350) /* "PSOBJCT1" */
#define PYSHM_LAYOUT_VERSION 2u

enum pyshm_object_kind { PYSHM_KIND_POOL = 1, PYSHM_KIND_RING = 2, PYSHM_KIND_ANNOUNCE = 3 };

/* Longest object name, in bytes, without the terminating zero. */
#define PYSHM_NAME_MAX 63

struct pyshm_object_header {
    uint64_t magic;
    uint32_t kind;
    uint32_t layout_version;
    uint64_t size; /* bytes carved for the object, header included */
    uint64_t next; /* offset of the object published before this one, 0 for none */
    uint64_t reserved[4];
    char name[PYSHM_NAME_MAX + 1]; /* zero-terminated; empty for an unnamed object */
};
_Static_assert(sizeof(struct pyshm_object_header) == 128, "object header layout");

#endif
