/* Every engine allocation goes through here, so test builds (QF_ALLOC_HOOKS) can count calls
 * and fail a chosen one. Nothing outside engine/ includes this header. */
#ifndef QF_ALLOC_H
#define QF_ALLOC_H

#include <stddef.h>

void *qf_malloc(size_t n);
void *qf_calloc(size_t n, size_t size);
void *qf_realloc(void *p, size_t n);
void qf_free(void *p);
#ifdef QF_ALLOC_HOOKS
unsigned long qf_alloc_calls(void);
/* The call that makes qf_alloc_calls() reach n returns NULL (0: none). */
void qf_alloc_fail_at(unsigned long n);
#endif

#endif
