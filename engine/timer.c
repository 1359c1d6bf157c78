/* The clock, and a binary min-heap of deadlines. Each timer records its own index so
 * re-arming and removal are O(log n) without searching. Capacity is reserved up front. */
#include <stdlib.h>
#include <time.h>

#include "engine/alloc.h"
#include "engine/timer.h"
#include "qfetch.h"

int64_t qf_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void swap(struct qf_heap *h, int a, int b)
{
    struct qf_timer *t = h->v[a];
    h->v[a] = h->v[b];
    h->v[b] = t;
    h->v[a]->idx = a;
    h->v[b]->idx = b;
}

static void up(struct qf_heap *h, int i)
{
    while (i > 0) {
        int p = (i - 1) / 2;
        if (h->v[p]->at_us <= h->v[i]->at_us)
            break;
        swap(h, i, p);
        i = p;
    }
}

static void down(struct qf_heap *h, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && h->v[l]->at_us < h->v[m]->at_us)
            m = l;
        if (r < h->n && h->v[r]->at_us < h->v[m]->at_us)
            m = r;
        if (m == i)
            return;
        swap(h, i, m);
        i = m;
    }
}

int qf_heap_reserve(struct qf_heap *h, int cap)
{
    if (cap <= h->cap)
        return 0;
    int ncap = h->cap ? h->cap : 64;
    while (ncap < cap)
        ncap *= 2;
    struct qf_timer **v = qf_realloc(h->v, (size_t)ncap * sizeof(*v));
    if (v == NULL)
        return QF_ENOMEM;
    h->v = v;
    h->cap = ncap;
    return 0;
}

void qf_heap_set(struct qf_heap *h, struct qf_timer *t, int64_t at_us)
{
    if (t->idx < 0) {
        /* capacity was reserved for every connection and request */
        t->idx = h->n++;
        h->v[t->idx] = t;
        t->at_us = at_us;
        up(h, t->idx);
        return;
    }
    int64_t old = t->at_us;
    t->at_us = at_us;
    if (at_us < old)
        up(h, t->idx);
    else
        down(h, t->idx);
}

void qf_heap_del(struct qf_heap *h, struct qf_timer *t)
{
    int i = t->idx;
    if (i < 0)
        return;
    t->idx = -1;
    if (--h->n == i)
        return;
    h->v[i] = h->v[h->n];
    h->v[i]->idx = i;
    up(h, i);
    down(h, h->v[i]->idx);
}

struct qf_timer *qf_heap_top(const struct qf_heap *h)
{
    return h->n > 0 ? h->v[0] : NULL;
}

void qf_heap_free(struct qf_heap *h)
{
    qf_free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
