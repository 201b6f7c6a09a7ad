/*
 * layout.h - where things are in a region: the fixed part every region starts with, and
 * the header every object carved out of it starts with. Shared by every layer that reads
 * or writes the region; includes nothing of the project.
 *
 *   [0, 64)                     region header (region.h)
 *   [64, 64 + 32832)            member table (member.h): one entry per process that uses
 *                               the region, with its announcements; zero-filled memory is
 *                               a table of free entries, so a new region writes nothing here
 *   [PYSHM_OBJECTS_OFFSET, ...) carved objects (pools, rings, raw buffers), each 64-byte
 *                               aligned and starting with struct pyshm_object_header
 *
 * A region of "size" bytes (what ShareMem(size) asks for) has size bytes for objects, after
 * the fixed part; its file is PYSHM_OBJECTS_OFFSET + size bytes, rounded up to a page.
 *
 * Zero is a valid state everywhere: a new memfd or shm file reads as zeros without being
 * resident, and every structure is encoded so that zero-filled memory already is its
 * initial state (free member entries, empty rings, full free queues, blocks FREE), so
 * creating anything writes its header and nothing else.
 */
#ifndef PYSHM_CORE_LAYOUT_H
#define PYSHM_CORE_LAYOUT_H

#include <stdint.h>

/* Version 3: zero-valued initial states, the member table at a fixed place, staged ring
 * slots. Version 4: a block's state and holder words side by side (mempool.h). Regions
 * of other versions are refused on attach. */
#define PYSHM_LAYOUT_VERSION 4u

#define PYSHM_REGION_MAGIC UINT64_C(0x314e4f4947455253) /* "SREGION1" little-endian */
#define PYSHM_OBJECT_MAGIC UINT64_C(0x3154434a424f5350) /* "PSOBJCT1" */

#define PYSHM_REGION_HEADER_SIZE UINT64_C(64)
#define PYSHM_MEMBERS_OFFSET PYSHM_REGION_HEADER_SIZE
#define PYSHM_MEMBER_ENTRIES 256u
#define PYSHM_MEMBER_ENTRY_SIZE UINT64_C(128)
/* One cache line of table header (its first byte is the region's repair lock), then the entries. */
#define PYSHM_MEMBERS_SIZE (UINT64_C(64) + PYSHM_MEMBER_ENTRIES * PYSHM_MEMBER_ENTRY_SIZE)
#define PYSHM_OBJECTS_OFFSET (PYSHM_MEMBERS_OFFSET + PYSHM_MEMBERS_SIZE)

/* Room for objects a region may have. Keeps every offset below 2^47. */
#define PYSHM_MAX_REGION_SIZE (UINT64_C(1) << 46)
/* Smallest room accepted: a page, enough for any small object. */
#define PYSHM_MIN_REGION_SIZE UINT64_C(4096)

enum pyshm_object_kind { PYSHM_KIND_POOL = 1, PYSHM_KIND_RING = 2, PYSHM_KIND_RAW = 3 };

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
_Static_assert(PYSHM_OBJECTS_OFFSET % 64 == 0, "objects start on a cache line");

#endif
