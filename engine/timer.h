/* The engine's clock and one min-heap of deadlines (connections' and backoff waits'). */
#ifndef QF_TIMER_H
#define QF_TIMER_H

#include <stdint.h>

/* What a timer belongs to: a connection's deadline, a request's backoff, a host's name
 * resolution deadline, the resolver's own timeouts. */
enum qf_timer_kind { QF_TIMER_CONN, QF_TIMER_REQ, QF_TIMER_HOST, QF_TIMER_DNS };
struct qf_timer {
    int64_t at_us;
    int idx; /* position in the heap, -1 when not armed */
    enum qf_timer_kind kind;
};
struct qf_heap {
    struct qf_timer **v;
    int n, cap;
};
int qf_heap_reserve(struct qf_heap *h, int cap);
void qf_heap_set(struct qf_heap *h, struct qf_timer *t, int64_t at_us); /* arm or move */
void qf_heap_del(struct qf_heap *h, struct qf_timer *t);
struct qf_timer *qf_heap_top(const struct qf_heap *h);
void qf_heap_free(struct qf_heap *h);

/* CLOCK_MONOTONIC in microseconds. */
int64_t qf_now_us(void);

#endif
