/* fault.c - the kill points of fault.h; empty unless built with -DPYSHM_FAULT_INJECTION. */
#define _GNU_SOURCE
#include "fault.h"

#ifdef PYSHM_FAULT_INJECTION

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong hits;

void pyshm_fault_point(const char *name)
{
    const char *spec = getenv("PYSHM_FAULT");
    const char *colon = spec ? strrchr(spec, ':') : NULL;
    if (!colon)
        return;
    size_t len = (size_t)(colon - spec);
    int any = len == 1 && spec[0] == '*';
    if (!any && (strlen(name) != len || memcmp(name, spec, len) != 0))
        return;
    unsigned long target = strtoul(colon + 1, NULL, 10);
    if (atomic_fetch_add(&hits, 1) + 1 == target)
        kill(getpid(), SIGKILL);
}

#else

typedef int pyshm_fault_points_not_built; /* ISO C wants at least one declaration */

#endif
