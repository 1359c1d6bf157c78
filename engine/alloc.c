/* Every engine allocation goes through here. The shipped library only forwards to malloc: it
 * has no global mutable state, so two threads each running their own client share nothing.
 * Test binaries link this file compiled with -DQF_ALLOC_HOOKS (the Makefile's test library),
 * which counts the calls (the steady state must not allocate per request: tests read
 * qf_alloc_calls() before and after a batch) and can make one chosen call fail, to prove that
 * running out of memory costs only what needed the memory. */
#include <stdlib.h>

#include "engine/alloc.h"

#ifdef QF_ALLOC_HOOKS
static unsigned long calls, fail_at; /* fail_at 0: never */

/* Whether this call is the one chosen to fail. */
static int refuse(void)
{
    return ++calls == fail_at;
}

unsigned long qf_alloc_calls(void)
{
    return calls;
}

void qf_alloc_fail_at(unsigned long n)
{
    fail_at = n;
}
#else
static int refuse(void)
{
    return 0;
}
#endif

void *qf_malloc(size_t n)
{
    return refuse() ? NULL : malloc(n);
}

void *qf_calloc(size_t n, size_t size)
{
    return refuse() ? NULL : calloc(n, size);
}

void *qf_realloc(void *p, size_t n)
{
    return refuse() ? NULL : realloc(p, n);
}

void qf_free(void *p)
{
    free(p);
}
