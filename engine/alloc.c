/* Counting allocator: the steady state must not allocate per request, and tests check it
 * by reading qf_alloc_calls() before and after a batch. Tests can also make one chosen call
 * fail, to prove that running out of memory costs only what needed the memory. */
#include <stdlib.h>

#include "engine/alloc.h"

static unsigned long calls, fail_at; /* fail_at 0: never */

void *qf_malloc(size_t n)
{
    return ++calls == fail_at ? NULL : malloc(n);
}

void *qf_calloc(size_t n, size_t size)
{
    return ++calls == fail_at ? NULL : calloc(n, size);
}

void *qf_realloc(void *p, size_t n)
{
    return ++calls == fail_at ? NULL : realloc(p, n);
}

void qf_free(void *p)
{
    free(p);
}

unsigned long qf_alloc_calls(void)
{
    return calls;
}

void qf_alloc_fail_at(unsigned long n)
{
    fail_at = n;
}
