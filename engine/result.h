/* Response to result: a quote's body through the JSON extractor and price formatting, a
 * general request's status, headers and body, and the timings, delivered to the caller's
 * callbacks. No policy: the scheduler has already decided that this is the final outcome. */
#ifndef QF_RESULT_H
#define QF_RESULT_H

#include "engine/sched.h"

struct qf_client;

/* Delivers r's final outcome: a quote's qf_result or a general request's qf_response. */
void qf_result_deliver(struct qf_client *cl, const struct qf_req *r, const struct qf_outcome *o);
/* Headers as "name\0value\0" pairs, as the caller's array (kept at its high-water mark). */
size_t qf_result_headers(struct qf_client *cl, const char *hbuf, size_t hlen, size_t n);
/* A quote that could not get a record still gets its one result. */
void qf_result_nomem(struct qf_client *cl, const char *symbol, size_t index);
/* One "-v" line through the caller's log callback. */
void qf_result_log(struct qf_client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
