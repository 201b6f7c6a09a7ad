/*
 * errors.h - the error codes of the core, in one place.
 *
 * Every core function that can fail returns 0 (or a count) on success and a negative
 * errno value on failure. The codes below are pyshm's own meanings, each mapped onto an
 * errno value no system call of the core returns for another reason; the binding turns
 * each into exactly one Python exception (src/ext/errors.c). Plain errno values keep
 * their usual meaning: -EINVAL (an argument out of range), -ENOMEM, -ENOSPC (no room
 * left in the region), -EEXIST / -ENOENT (names), -ESHUTDOWN (the ring was shut down),
 * -EAGAIN (a free queue stayed blocked by a claim that did not finish in time), -EBUSY
 * (another process is repairing the region).
 *
 * ring.h, the bottom layer, uses none of these: it reports "not ready" and "corrupt" in
 * its own return values, and the queue layer above it translates.
 */
#ifndef PYSHM_CORE_ERRORS_H
#define PYSHM_CORE_ERRORS_H

#include <errno.h>

#define PYSHM_EEMPTY ENODATA          /* nothing to dequeue, no free block */
#define PYSHM_EFULL ENOBUFS           /* no room to enqueue */
#define PYSHM_ESTALE EALREADY         /* the block is not held at this generation (given back twice) */
#define PYSHM_ENOTYOURS EPERM         /* the block is held by another process (a fork parent's view) */
#define PYSHM_ECORRUPT EBADMSG        /* shared memory holds a value no correct process writes */
#define PYSHM_ETOOBIG EMSGSIZE        /* the block is smaller than the length asked for */
#define PYSHM_ENOTREGION EMEDIUMTYPE  /* the file is not a pyshm region */
#define PYSHM_EVERSION EPROTONOSUPPORT /* a region of another layout version */
#define PYSHM_ENOMEMBER EUSERS        /* every member entry of the region belongs to a live process */

#endif
