/* Counting allocator: the steady state must not allocate per request, and tests check it
 * by reading qf_alloc_calls() before and after a batch. */
#include <stdlib.h>

#include "engine/engine.h"

static unsigned long calls;

void *qf_malloc(size_t n)
{
    calls++;
    return malloc(n);
}

void *qf_calloc(size_t n, size_t size)
{
    calls++;
    return calloc(n, size);
}

void *qf_realloc(void *p, size_t n)
{
    calls++;
    return realloc(p, n);
}

void qf_free(void *p)
{
    free(p);
}

unsigned long qf_alloc_calls(void)
{
    return calls;
}
