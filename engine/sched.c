/* Scheduling: request records and their pool, per-host queues, handing requests to idle or
 * new connections, and the policy for every attempt's outcome: finish, retry after a backoff,
 * re-send after a stale keep-alive connection, fail the host, slow a rate-limited host down.
 * Connections only report. */
#include <stdio.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/client.h"
#include "engine/conn.h"
#include "engine/host.h"
#include "engine/result.h"
#include "engine/sched.h"

static struct qf_req *req_reset(struct qf_client *cl, struct qf_req *r)
{
    memset(r, 0, sizeof(*r));
    r->timer.idx = -1;
    r->timer.kind = QF_TIMER_REQ;
    r->id = -1;
    r->retries = cl->retries;
    r->timeout_us = cl->timeout_us;
    return r;
}

/* A record for a general request (extra: its general part, target and headers) or a quote.
 * The timer heap is reserved for every record alive and every host's pause, so arming a
 * backoff wait or a pause cannot fail. */
struct qf_req *qf_req_new(struct qf_client *cl, size_t extra)
{
    if (qf_client_reserve_timers(cl, 1 + cl->nhosts) < 0) /* a host's pause besides its lookup */
        return NULL;
    struct qf_req *r = qf_malloc(sizeof(*r) + extra);
    if (r == NULL)
        return NULL;
    cl->nrecords++;
    return req_reset(cl, r);
}

/* A spare quote record, or a new one. */
static struct qf_req *req_quote(struct qf_client *cl)
{
    struct qf_req *r = cl->spare;
    if (r == NULL)
        return qf_req_new(cl, QF_QUOTE_EXTRA);
    cl->spare = r->next;
    return req_reset(cl, r);
}

/* Quote records go back to the spares; general ones are freed. */
void qf_req_release(struct qf_client *cl, struct qf_req *r)
{
    if (r->general == NULL) {
        r->next = cl->spare;
        cl->spare = r;
        return;
    }
    cl->nrecords--;
    qf_free(r);
}

void qf_sched_push(struct qf_host *h, struct qf_req *r, int front)
{
    h->nqueued++;
    r->where = QF_REQ_QUEUED;
    r->conn = NULL;
    if (front) {
        r->prev = NULL;
        r->next = h->qhead;
        if (h->qhead != NULL)
            h->qhead->prev = r;
        else
            h->qtail = r;
        h->qhead = r;
    } else {
        r->next = NULL;
        r->prev = h->qtail;
        if (h->qtail != NULL)
            h->qtail->next = r;
        else
            h->qhead = r;
        h->qtail = r;
    }
}

int qf_sched_pend(struct qf_host *h, const char *symbol, size_t len)
{
    if (h->pend_len + len + 1 > h->pend_cap) {
        size_t live = h->pend_len - h->pend_off;
        if (h->pend_off > 0 && h->pend_off >= live) { /* half or more taken: slide down */
            memmove(h->pend, h->pend + h->pend_off, live);
            h->pend_off = 0;
            h->pend_len = live;
        }
        if (h->pend_len + len + 1 > h->pend_cap) {
            size_t cap = h->pend_cap ? h->pend_cap * 2 : 256;
            while (cap < h->pend_len + len + 1)
                cap *= 2;
            char *p = qf_realloc(h->pend, cap);
            if (p == NULL)
                return QF_ENOMEM;
            h->pend = p;
            h->pend_cap = cap;
        }
    }
    memcpy(h->pend + h->pend_len, symbol, len + 1);
    h->pend_len += len + 1;
    h->npend++;
    h->nqueued++;
    return 0;
}

/* The end of a request, with or without a callback. */
static void done(struct qf_client *cl, struct qf_req *r)
{
    cl->ndone++;
    cl->t_last_done = cl->now_us;
    if (r->id >= 0)
        cl->byid[r->id] = NULL;
}

struct qf_req *qf_sched_head(struct qf_client *cl, struct qf_host *h)
{
    while (h->qhead == NULL && h->npend > 0) {
        const char *symbol = h->pend + h->pend_off;
        size_t n = strlen(symbol), index = h->pend_index++;
        struct qf_req *r = req_quote(cl); /* runs no callback: pend stays put */
        char lost[QF_SYMBOL_MAX + 1];
        memcpy(r != NULL ? r->symbol : lost, symbol, n + 1);
        h->pend_off += n + 1;
        h->npend--;
        h->nqueued--;
        if (h->npend == 0)
            h->pend_off = h->pend_len = 0;
        if (r == NULL) {
            cl->ndone++;
            qf_result_nomem(cl, lost, index); /* its callback may add, moving pend */
            continue;
        }
        r->host = h;
        r->index = index;
        r->target = r->symbol + n + 1;
        qf_symbol_encode(r->symbol, r->target, QF_QUOTE_EXTRA - (n + 1)); /* always fits */
        qf_sched_push(h, r, 0);
    }
    return h->qhead;
}

void qf_sched_unlink(struct qf_host *h, struct qf_req *r)
{
    h->nqueued--;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        h->qhead = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        h->qtail = r->prev;
    r->next = r->prev = NULL;
}

/* Another host's HTTP/2 connection without streams, or NULL. */
static struct qf_conn *mux_idle(const struct qf_host *o)
{
    for (unsigned i = 0; i < o->nmux; i++) {
        if (o->mux[i]->h2.nactive == 0)
            return o->mux[i];
    }
    return NULL;
}

/* A free slot for host h: a free one, or one taken from another host's idle connection. */
static struct qf_conn *free_slot(struct qf_client *cl, struct qf_host *h)
{
    struct qf_conn *c;

    for (unsigned i = 0; cl->nfree == 0 && i < cl->nhosts; i++) {
        struct qf_host *o = cl->hosts[i];
        if (o != h && o->nidle > 0)
            qf_conn_close(o->idle[o->nidle - 1]);
        else if (o != h && (c = mux_idle(o)) != NULL)
            qf_conn_close(c);
    }
    return cl->nfree > 0 ? &cl->conns[cl->free_slots[--cl->nfree]] : NULL;
}

/* Requests in flight the host's connections can hold (pipelined, or as HTTP/2 streams): its
 * window before a 429. */
static unsigned win_cap(const struct qf_client *cl, const struct qf_host *h)
{
    return h->h2 > 0 ? h->h2_cap : h->max * cl->pipeline;
}

/* Requests the host may be handed now: none while it is paused, else what its window leaves. */
static unsigned room(const struct qf_client *cl, const struct qf_host *h)
{
    unsigned cap = win_cap(cl, h), w = h->win != 0 && h->win < cap ? h->win : cap;

    return h->pause.idx < 0 && w > h->inflight ? w - h->inflight : 0;
}

static void send_one(struct qf_host *h, struct qf_req *r)
{
    qf_sched_unlink(h, r);
    r->epoch = h->epoch;
    h->inflight++;
}

/* Takes the queue's head and up to depth-1 more behind it (within the host's room), as a
 * chain. */
static struct qf_req *take(struct qf_client *cl, struct qf_host *h, unsigned room_left,
                           unsigned depth)
{
    struct qf_req *head = h->qhead, *tail = head, *r;

    if (depth > room_left)
        depth = room_left;
    send_one(h, head);
    for (unsigned k = 1; k < depth && (r = qf_sched_head(cl, h)) != NULL; k++) {
        send_one(h, r);
        tail->next = r;
        tail = r;
    }
    tail->next = NULL;
    return head;
}

/* Fails every queued request of a host that cannot be reached. */
static void fail_queue(struct qf_client *cl, struct qf_host *h)
{
    struct qf_outcome o = {.err = h->fatal, .msg = h->fatal_msg, .retry_after_s = -1,
                           .span = {-1, -1, -1, -1, 0}};
    struct qf_req *r;

    while ((r = qf_sched_head(cl, h)) != NULL) {
        qf_sched_unlink(h, r);
        done(cl, r);
        qf_result_deliver(cl, r, &o);
        qf_req_release(cl, r);
    }
}

/* An HTTP/2 connection of h that can take another stream. */
static struct qf_conn *mux_room(const struct qf_host *h)
{
    for (unsigned i = 0; i < h->nmux; i++) {
        if (qf_h2_room(&h->mux[i]->h2) > 0)
            return h->mux[i];
    }
    return NULL;
}

/* Requests a new connection of h starts with: a pipelined batch, or when h speaks HTTP/2 as
 * many streams as its server allows (they go out in one flight, early data included). */
static unsigned open_depth(const struct qf_client *cl, const struct qf_host *h)
{
    if (h->h2 > 0)
        return h->nmux > 0                            ? qf_h2_limit(&h->mux[0]->h2)
               : h->h2_peer > 0 && h->h2_peer < h->h2_cap ? h->h2_peer
                                                          : h->h2_cap;
    return cl->now_us < h->pipeline_off_until_us ? 1 : cl->pipeline;
}

/* New connections wait while the host's first one has yet to tell whether its server speaks
 * HTTP/2 (and if so, how many streams it takes). */
static int must_wait(const struct qf_host *h)
{
    return h->nopen > 0 && (h->h2 == 0 || (h->h2 > 0 && h->nmux == 0));
}

static void dispatch_host(struct qf_client *cl, struct qf_host *h)
{
    struct qf_req *r;
    struct qf_conn *c;

    if (!h->resolved && !h->resolving)
        qf_host_setup(cl, h);
    if (h->resolving)
        return;
    if (h->fatal) {
        fail_queue(cl, h);
        return;
    }
    unsigned n;
    while ((n = room(cl, h)) > 0 && (r = qf_sched_head(cl, h)) != NULL) {
        /* A request's last re-send goes to a new connection when one may be opened: a server
         * closing kept-alive connections in a burst (a busy Apache) can race every idle one. */
        int fresh = r->resent >= QF_MAX_RESENDS - 1 && h->nopen < h->max &&
                    (cl->nfree > 0 || cl->nhosts > 1);
        if (h->h2 > 0 && (c = mux_room(h)) != NULL) {
            unsigned k = qf_h2_room(&c->h2);
            qf_conn_mux_add(c, take(cl, h, n, k));
        } else if (must_wait(h)) {
            break;
        } else if (h->nidle > 0 && !fresh) {
            /* Any live connection will do, a re-sent request's too: one the server closed
             * while it idled is found out here and closed. */
            c = h->idle[--h->nidle];
            if (qf_conn_reusable(c, r->resent > 0))
                qf_conn_assign(c, take(cl, h, n, open_depth(cl, h)));
        } else if (h->nopen < h->max && (cl->nfree > 0 || cl->nhosts > 1)) {
            c = free_slot(cl, h);
            if (c == NULL)
                break;
            qf_conn_open(c, h, take(cl, h, n, open_depth(cl, h)));
        } else {
            break;
        }
        if (h->fatal) { /* a certificate failure on the way */
            fail_queue(cl, h);
            return;
        }
    }
}

void qf_sched_dispatch(struct qf_client *cl)
{
    for (unsigned i = 0; i < cl->nhosts; i++) {
        if (cl->hosts[i]->nqueued > 0)
            dispatch_host(cl, cl->hosts[i]);
    }
}

int qf_sched_ready(const struct qf_client *cl)
{
    for (unsigned i = 0; i < cl->nhosts; i++) {
        const struct qf_host *h = cl->hosts[i];
        if (h->nqueued > 0 &&
            (h->fatal || (!h->resolved && !h->resolving) ||
             (room(cl, h) > 0 &&
              ((h->h2 > 0 && mux_room(h) != NULL) ||
               (!must_wait(h) &&
                (h->nidle > 0 || (h->nopen < h->max && cl->nfree > 0)))))))
            return 1;
    }
    return 0;
}

static uint64_t rnd(struct qf_client *cl)
{
    /* xorshift64*: jitter only, no security meaning */
    cl->rng ^= cl->rng >> 12;
    cl->rng ^= cl->rng << 25;
    cl->rng ^= cl->rng >> 27;
    return cl->rng * 2685821657736338717ULL;
}

static int retryable(int err, int status)
{
    switch (err) {
    case QF_ECONNECT:
    case QF_ETIMEOUT:
    case QF_ECLOSED:
        return 1;
    case 0:
    case QF_EHTTP:
        return status == 429 || status == 502 || status == 503 || status == 504;
    default:
        return 0;
    }
}

/* Waits before the next attempt: exponential backoff with jitter in [d/2, d]; the server's
 * Retry-After wins, capped so a hostile value cannot stall the batch. */
static void backoff(struct qf_client *cl, struct qf_req *r, const char *msg, int retry_after_s)
{
    int64_t d_ms = 100LL << (r->attempts - 1 < 5 ? r->attempts - 1 : 5);
    if (d_ms > 2000)
        d_ms = 2000;
    d_ms = d_ms / 2 + (int64_t)(rnd(cl) % (uint64_t)(d_ms / 2 + 1));
    if (retry_after_s >= 0)
        d_ms = retry_after_s * 1000LL < QF_RETRY_AFTER_CAP_MS ? retry_after_s * 1000LL
                                                              : QF_RETRY_AFTER_CAP_MS;
    cl->st.retries++;
    qf_result_log(cl, "%s: retrying in %lld ms after: %s",
                  r->general == NULL ? r->symbol : r->target, (long long)d_ms, msg);
    r->where = QF_REQ_WAITING;
    r->conn = NULL;
    qf_heap_set(&cl->timers, &r->timer, cl->now_us + d_ms * 1000);
}

static void finish(struct qf_client *cl, struct qf_req *r, const struct qf_outcome *o)
{
    done(cl, r);
    if (!r->cancelled)
        qf_result_deliver(cl, r, o);
    qf_req_release(cl, r);
}

/* ---- One rate limit per host ------------------------------------------------------------
 * A server limits an address, not a request: a 429 (or a 503 with Retry-After) slows the whole
 * host. Its in-flight window is halved (additive increase, multiplicative decrease: one more
 * per window of successes, up to -c, the host's connections) and the host pauses: until
 * Retry-After, capped, or for an exponential backoff with jitter per consecutive 429. The
 * requests it hit go back to the front of the host's queue, paced by the window. */

#define PAUSE_BASE_MS 1000 /* without Retry-After: 0.5-1 s, doubled per consecutive 429 */
/* Regrowing the window to where a 429 met it takes this many windows of successes instead of
 * one: against a fixed limit the plain sawtooth would meet it again every few requests, and
 * each meeting costs a refused request per request in flight. */
#define WIN_PROBE 16

static int rate_limited(const struct qf_outcome *o)
{
    return o->err == 0 && (o->status == 429 || (o->status == 503 && o->retry_after_s >= 0));
}

/* A complete answer, neither a rate limit nor a server error: the window grows. Answers to
 * requests sent before the last halving say nothing about the window since. */
static void host_served(struct qf_host *h, const struct qf_req *r)
{
    if (r->epoch != h->epoch)
        return;
    h->n429 = 0;
    if (h->win == 0 || h->win >= h->max)
        return;
    unsigned need = h->win + 1 >= h->win_top ? h->win * WIN_PROBE : h->win;
    if (++h->win_acks < need)
        return;
    h->win++;
    h->win_acks = 0;
    if (h->win >= h->win_top)
        h->win_top = 0; /* the old limit is passed: plain growth again */
}

/* The host's limit answered r (ra_s: its Retry-After, within the cap, or -1). The first such
 * answer to a request sent since the last halving halves the window and pauses the host;
 * later ones tell of the same overload, though a later Retry-After may extend the pause.
 * Returns the pause left, in ms. */
static int64_t host_slow(struct qf_client *cl, struct qf_host *h, const struct qf_req *r,
                         int status, int ra_s)
{
    int64_t d_ms = ra_s >= 0 ? ra_s * 1000LL : -1;

    if (r->epoch == h->epoch) {
        unsigned cap = win_cap(cl, h), flight = h->inflight + 1; /* r was in flight */
        unsigned w = h->win != 0 && h->win < cap ? h->win : cap;
        if (flight < w)
            w = flight;
        h->win_top = w;
        /* Pipelined requests behind a refused one are refused too: a limited host gets at most
         * one request per connection. */
        h->win = w / 2 > h->max ? h->max : w / 2 > 0 ? w / 2 : 1;
        h->win_acks = 0;
        h->epoch++;
        if (h->n429 < 16)
            h->n429++;
        if (d_ms < 0) {
            d_ms = (int64_t)PAUSE_BASE_MS << (h->n429 - 1 < 4 ? h->n429 - 1 : 4);
            if (d_ms > QF_RETRY_AFTER_CAP_MS)
                d_ms = QF_RETRY_AFTER_CAP_MS;
            d_ms = d_ms / 2 + (int64_t)(rnd(cl) % (uint64_t)(d_ms / 2 + 1));
        }
        qf_result_log(cl, "%s: HTTP %d: window %u, host paused %lld ms", h->url.host, status,
                      h->win, (long long)d_ms);
    }
    if (d_ms > 0) {
        int64_t until = cl->now_us + d_ms * 1000;
        if (h->pause.idx < 0)
            cl->st.host_pauses++;
        if (h->pause.idx < 0 || h->pause.at_us < until)
            qf_heap_set(&cl->timers, &h->pause, until);
    }
    return h->pause.idx >= 0 ? (h->pause.at_us - cl->now_us + 999) / 1000 : 0;
}

/* Back into the queue, to be sent at the host's pace: ahead of every request with fewer
 * attempts, behind those with as many. A refused batch keeps its order, and the requests
 * nearest their last attempt go first: pushed to the very front one by one, the batch would
 * turn round each time and its last requests be refused again and again. */
static void requeue(struct qf_host *h, struct qf_req *r)
{
    struct qf_req *q = h->qhead;

    while (q != NULL && q->attempts >= r->attempts)
        q = q->next;
    if (q == NULL || q->prev == NULL) {
        qf_sched_push(h, r, q != NULL);
        return;
    }
    h->nqueued++;
    r->where = QF_REQ_QUEUED;
    r->prev = q->prev;
    r->next = q;
    q->prev->next = r;
    q->prev = r;
}

/* r met the host's rate limit: back to the front of the queue, or its final outcome. */
static void on_limited(struct qf_client *cl, struct qf_req *r, const struct qf_outcome *o,
                       int can_retry)
{
    struct qf_host *h = r->host;
    struct qf_outcome x = *o;

    cl->st.rate_limited++;
    if (o->retry_after_s >= 0 && o->retry_after_s * 1000LL > QF_RETRY_AFTER_CAP_MS) {
        /* Retrying before the server's word would only be refused again. The host does not
         * pause for a wait it would not keep, nor shrink for an answer that ends r anyway. */
        x.limited = QF_LIMIT_LONG;
        x.wait_s = o->retry_after_s;
        finish(cl, r, &x);
        return;
    }
    int64_t left_ms = host_slow(cl, h, r, o->status, o->retry_after_s);
    if (can_retry) {
        cl->st.retries++;
        qf_result_log(cl, "%s: HTTP %d, back in the queue of %s",
                      r->general == NULL ? r->symbol : r->target, o->status, h->url.host);
        requeue(h, r);
        return;
    }
    x.limited = QF_LIMIT_RETRIES;
    x.wait_s = left_ms > 1000 ? (int)((left_ms + 999) / 1000) : 1;
    finish(cl, r, &x);
}

void qf_sched_outcome(struct qf_client *cl, struct qf_req *r, const struct qf_outcome *o)
{
    struct qf_host *h = r->host;
    /* Streamed bytes cannot be taken back: such a request is never retried. */
    int can_retry = r->attempts <= r->retries &&
                    (r->general == NULL || r->general->body_seen == 0) && !r->cancelled;

    h->inflight--;
    r->conn = NULL;
    if (o->pipeline_cut) /* the server may not take pipelined requests: one at a time a while */
        h->pipeline_off_until_us = cl->now_us + QF_PIPELINE_PAUSE_US;
    if (r->cancelled) {
        finish(cl, r, o);
        return;
    }
    if (o->resendable && r->resent < QF_MAX_RESENDS) {
        /* A keep-alive connection the server had closed: the request never reached it. */
        r->resent++;
        r->attempts--;
        cl->st.stale_resends++;
        qf_result_log(cl, "%s: re-sending after: %s",
                      r->general == NULL ? r->symbol : r->target, o->msg);
        qf_sched_push(h, r, 1);
        return;
    }
    if (o->err == QF_ENOSPC && h->nopen > 0) {
        /* Out of file descriptors: live with the connections this host has. */
        h->max = h->nopen;
        r->attempts--;
        qf_sched_push(h, r, 1);
        return;
    }
    if ((o->err == QF_ECERT || o->err == QF_ECONFIG) && !h->fatal) {
        /* Nothing is ever written to an unverified peer, and no other request to this host
         * may be: the certificate (or a CA file that would not load) will not get better
         * within this run. */
        h->fatal = o->err;
        snprintf(h->fatal_msg, sizeof(h->fatal_msg), "%s", o->msg);
    }
    if (rate_limited(o)) {
        on_limited(cl, r, o, can_retry);
        return;
    }
    if (o->err == 0 && o->status < 500)
        host_served(h, r);
    if (retryable(o->err, o->status) && can_retry) {
        char msg[32];
        if (o->err == 0)
            snprintf(msg, sizeof(msg), "HTTP %d", o->status);
        backoff(cl, r, o->err == 0 ? msg : o->msg, o->err == 0 ? o->retry_after_s : -1);
        return;
    }
    if (o->err == QF_ENOSPC) {
        struct qf_outcome x = *o;
        x.err = QF_ECONNECT;
        finish(cl, r, &x);
        return;
    }
    finish(cl, r, o);
}

void qf_sched_unanswered(struct qf_client *cl, struct qf_host *h, struct qf_req *chain, int cut)
{
    struct qf_req *v[1024]; /* --pipeline is at most 1000 */
    int n = 0;

    if (cut) /* the server may not take pipelined requests: one at a time for a while */
        h->pipeline_off_until_us = cl->now_us + QF_PIPELINE_PAUSE_US;
    for (struct qf_req *q = chain; q != NULL && n < 1024; q = q->next)
        v[n++] = q;
    while (n-- > 0) { /* back to the front, in their order */
        struct qf_req *q = v[n];
        h->inflight--;
        q->attempts--;
        if (q->cancelled) {
            done(cl, q);
            qf_req_release(cl, q);
        } else {
            qf_sched_push(h, q, 1);
        }
    }
}

void qf_sched_timer(struct qf_client *cl, struct qf_req *r)
{
    (void)cl;
    qf_sched_push(r->host, r, 1);
}

void qf_sched_drop(struct qf_client *cl, struct qf_req *r)
{
    if (r->where == QF_REQ_ACTIVE)
        r->host->inflight--;
    done(cl, r);
    qf_req_release(cl, r);
}
