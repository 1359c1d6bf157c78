/* Scheduling: per-host request queues, handing requests to idle or new connections,
 * outcomes (quotes extracted from bodies, general responses), retries with backoff, and
 * result delivery. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/engine.h"
#include "parser/price.h"

void qf_sched_log(struct qf_client *cl, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (cl->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    cl->log(line, cl->log_udata);
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

/* A quote whose record could not be allocated still gets its one result. */
static void quote_nomem(struct qf_client *cl, const char *symbol, size_t index)
{
    struct qf_result res = {
        .index = index,
        .symbol = symbol,
        .err = QF_ENOMEM,
        .price_text = "",
        .currency = "",
        .errmsg = "out of memory",
        .connect_ms = -1,
        .tls_ms = -1,
        .first_byte_ms = -1,
        .total_ms = -1,
    };
    cl->ndone++;
    cl->t_last_done = cl->now_us;
    if (cl->cb != NULL)
        cl->cb(&res, cl->udata);
}

/* The queue's head: a queued record, else the oldest pending quote put in a record. */
struct qf_req *qf_sched_head(struct qf_client *cl, struct qf_host *h)
{
    while (h->qhead == NULL && h->npend > 0) {
        const char *symbol = h->pend + h->pend_off;
        size_t n = strlen(symbol), index = h->pend_index++;
        struct qf_req *r = qf_req_quote(cl); /* runs no callback: pend stays put */
        char lost[QF_SYMBOL_MAX + 1];
        memcpy(r != NULL ? r->symbol : lost, symbol, n + 1);
        h->pend_off += n + 1;
        h->npend--;
        h->nqueued--;
        if (h->npend == 0)
            h->pend_off = h->pend_len = 0;
        if (r == NULL) {
            quote_nomem(cl, lost, index); /* its callback may add, moving pend */
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

/* How many connections host h is worth. Until the first connect has measured the round trip
 * and the first response the server's time, all that are allowed: across a real network the
 * parallel handshakes are what make a batch fast. After that, one more TLS connection costs
 * a round trip and a handshake's CPU at both ends, and is worth it only when the requests in
 * hand would keep the others busy longer than that (on loopback 9 requests keep one
 * connection busy for less than one handshake). */
unsigned qf_sched_want(const struct qf_host *h)
{
    if (!h->url.tls || h->rtt_us == 0 || h->serve_us == 0)
        return h->max;
    int64_t work = (int64_t)(h->nqueued + h->nopen) * h->serve_us;
    int64_t cost = h->rtt_us + QF_HANDSHAKE_US;
    int64_t want = (work + cost - 1) / cost;
    return want < 1 ? 1 : want > (int64_t)h->max ? h->max : (unsigned)want;
}

/* A free slot for host h: a free one, or one taken from another host's idle connection. */
static struct qf_conn *free_slot(struct qf_client *cl, struct qf_host *h)
{
    if (cl->nfree == 0) {
        for (unsigned i = 0; i < cl->nhosts; i++) {
            struct qf_host *o = cl->hosts[i];
            if (o != h && o->nidle > 0) {
                qf_conn_close(o->idle[o->nidle - 1]);
                break;
            }
        }
    }
    return cl->nfree > 0 ? &cl->conns[cl->free_slots[--cl->nfree]] : NULL;
}

/* Takes the queue's head, and with pipelining up to depth-1 more behind it, as a chain. */
static struct qf_req *take(struct qf_client *cl, struct qf_host *h)
{
    unsigned depth = h->no_pipeline ? 1 : cl->pipeline;
    struct qf_req *head = h->qhead, *tail = head, *r;

    qf_sched_unlink(h, head);
    for (unsigned k = 1; k < depth && (r = qf_sched_head(cl, h)) != NULL && !r->want_fresh; k++) {
        qf_sched_unlink(h, r);
        tail->next = r;
        tail = r;
    }
    tail->next = NULL;
    return head;
}

static void dispatch_host(struct qf_client *cl, struct qf_host *h)
{
    struct qf_req *r;

    if (!h->resolved && h->nqueued > 0)
        qf_host_ready(cl, h);
    while ((r = qf_sched_head(cl, h)) != NULL) {
        if (h->fatal) {
            qf_sched_unlink(h, r);
            qf_sched_finish(cl, r, h->fatal, 0, h->fatal_msg, NULL);
        } else if (!r->want_fresh && h->nidle > 0) {
            struct qf_conn *c = h->idle[--h->nidle];
            qf_conn_assign(c, take(cl, h));
        } else if (h->nopen < qf_sched_want(h) && (cl->nfree > 0 || cl->nhosts > 1)) {
            struct qf_conn *c = free_slot(cl, h);
            if (c == NULL)
                break;
            r->want_fresh = 0;
            qf_conn_open(c, h, take(cl, h));
        } else if (h->nidle > 0) {
            qf_conn_close(h->idle[h->nidle - 1]); /* make room for a fresh connection */
        } else {
            break;
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

static double span_ms(int64_t from, int64_t to)
{
    return from != 0 && to != 0 ? (double)(to - from) / 1000.0 : -1;
}

static void timings(const struct qf_client *cl, const struct qf_req *r, const struct qf_conn *c,
                    double *connect_ms, double *tls_ms, double *first_ms, double *total_ms,
                    int *reused)
{
    *connect_ms = *tls_ms = *first_ms = -1;
    *reused = 0;
    *total_ms = span_ms(r->t_start, cl->now_us);
    if (c != NULL) {
        *reused = c->t_open == 0;
        *connect_ms = span_ms(c->t_start, c->t_open ? c->t_connected : 0);
        *tls_ms = span_ms(c->t_start, c->t_open ? c->t_tls : 0);
        *first_ms = span_ms(c->t_start, c->t_first);
    }
}

static void done(struct qf_client *cl, struct qf_req *r)
{
    cl->ndone++;
    cl->t_last_done = cl->now_us;
    if (r->id >= 0)
        cl->byid[r->id] = NULL;
}

void qf_sched_quote(struct qf_client *cl, struct qf_req *r, int err, int status,
                    const char *msg, double price, const char *price_text, const char *currency,
                    const struct qf_conn *c)
{
    struct qf_result res = {
        .index = r->index,
        .symbol = r->symbol,
        .err = err,
        .status = status,
        .price = price,
        .price_text = price_text,
        .currency = currency,
        .errmsg = msg != NULL ? msg : "",
        .attempts = r->attempts,
    };
    timings(cl, r, c, &res.connect_ms, &res.tls_ms, &res.first_byte_ms, &res.total_ms,
            &res.reused);
    if (cl->log != NULL) {
        if (err == 0)
            qf_sched_log(cl,
                         "Received results for %s (connect %.1f ms, tls %.1f ms, first byte "
                         "%.1f ms, total %.1f ms%s)",
                         r->symbol, res.connect_ms, res.tls_ms, res.first_byte_ms, res.total_ms,
                         res.reused ? ", reused connection" : "");
        else
            qf_sched_log(cl, "Received results for %s: error: %s", r->symbol, res.errmsg);
    }
    done(cl, r);
    if (cl->cb != NULL)
        cl->cb(&res, cl->udata);
    qf_req_release(cl, r);
}

/* Headers captured by the parser as "name\0value\0" pairs, as an array for the callback. */
size_t qf_sched_headers(struct qf_client *cl, const struct qf_http *h)
{
    if (h->hbuf == NULL || h->nheaders == 0)
        return 0;
    if (h->nheaders > cl->hdrv_cap) {
        struct qf_header *v = qf_realloc(cl->hdrv, h->nheaders * sizeof(*v));
        if (v == NULL)
            return 0;
        cl->hdrv = v;
        cl->hdrv_cap = h->nheaders;
    }
    const char *p = h->hbuf, *end = h->hbuf + h->hlen;
    size_t n = 0;
    while (n < h->nheaders && p < end) {
        cl->hdrv[n].name = p;
        p += strlen(p) + 1;
        if (p >= end)
            break;
        cl->hdrv[n++].value = p;
        p += strlen(p) + 1;
    }
    return n;
}

/* The end of a request: a quote without a price, or a general request's outcome. With a
 * connection, its parser still holds the response (status, headers, body). */
void qf_sched_finish(struct qf_client *cl, struct qf_req *r, int err, int status,
                     const char *msg, const struct qf_conn *c)
{
    if (r->cancelled) {
        done(cl, r);
        qf_req_release(cl, r);
        return;
    }
    const struct qf_req_gen *g = r->gen;
    if (g == NULL) {
        qf_sched_quote(cl, r, err, status, msg, 0, "", "", c);
        return;
    }
    struct qf_response res = {
        .id = r->id,
        .udata = g->udata,
        .err = err,
        .status = status,
        .errmsg = msg != NULL ? msg : "",
        .attempts = r->attempts,
    };
    timings(cl, r, c, &res.connect_ms, &res.tls_ms, &res.first_byte_ms, &res.total_ms,
            &res.reused);
    if (c != NULL && c->req == NULL && err == 0) {
        res.nheaders = qf_sched_headers(cl, &c->http);
        res.headers = res.nheaders ? cl->hdrv : NULL;
        res.body = g->on_chunk != NULL ? NULL : c->http.body_len ? qf_http_body(&c->http) : "";
        res.body_len = g->on_chunk != NULL ? g->body_seen : c->http.body_len;
    }
    qf_sched_log(cl, "Received %s %s: %s", g->method, r->target, err == 0 ? "ok" : res.errmsg);
    done(cl, r);
    g->on_response(&res);
    qf_req_release(cl, r);
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
    case QF_EHTTP:
        return status == 429 || status == 502 || status == 503 || status == 504;
    default:
        return 0;
    }
}

void qf_sched_attempt_failed(struct qf_client *cl, struct qf_req *r, int err, int status,
                             const char *msg, int retry_after_s)
{
    /* Streamed bytes cannot be taken back: such a request is never retried. */
    if (!retryable(err, status) || r->attempts > r->retries ||
        (r->gen != NULL && r->gen->body_seen > 0)) {
        qf_sched_finish(cl, r, err, status, msg, NULL);
        return;
    }
    /* Exponential backoff with jitter in [d/2, d]; the server's Retry-After wins, capped so a
     * hostile value cannot stall the batch. */
    int64_t d_ms = 100LL << (r->attempts - 1 < 5 ? r->attempts - 1 : 5);
    if (d_ms > 2000)
        d_ms = 2000;
    d_ms = d_ms / 2 + (int64_t)(rnd(cl) % (uint64_t)(d_ms / 2 + 1));
    if (retry_after_s >= 0)
        d_ms = retry_after_s * 1000LL < QF_RETRY_AFTER_CAP_MS ? retry_after_s * 1000LL
                                                              : QF_RETRY_AFTER_CAP_MS;
    cl->st.retries++;
    qf_sched_log(cl, "%s: retrying in %lld ms after: %s", r->gen == NULL ? r->symbol : r->target,
                 (long long)d_ms, msg);
    r->where = QF_REQ_WAITING;
    r->conn = NULL;
    qf_heap_set(&cl->timers, &r->timer, cl->now_us + d_ms * 1000);
}

void qf_sched_timer(struct qf_client *cl, struct qf_req *r)
{
    (void)cl;
    qf_sched_push(r->host, r, 1);
}

/* Token array shared by all connections: parsing is synchronous, so one suffices. It grows
 * on demand and stays at its high-water mark. */
static int extract(struct qf_client *cl, const char *body, size_t len, struct qf_quote *q)
{
    for (;;) {
        int rc = qf_json_extract(body, len, cl->toks, cl->ntoks, q);
        if (rc != QF_ENOSPC)
            return rc;
        unsigned n = cl->ntoks ? cl->ntoks * 2 : 1024;
        if (n > (1u << 23))
            return QF_EJSON;
        jsmntok_t *t = qf_realloc(cl->toks, (size_t)n * sizeof(*t));
        if (t == NULL)
            return QF_ENOMEM;
        cl->toks = t;
        cl->ntoks = n;
    }
}

/* First line of a short text body, for messages like "HTTP 429: Edge: Too Many Requests". */
static void text_detail(const char *body, size_t len, char *out, size_t cap)
{
    size_t o = 0;

    out[0] = '\0';
    if (len == 0 || body[0] == '<' || body[0] == '{')
        return;
    for (size_t i = 0; i < len && o + 1 < cap && o < 100; i++) {
        unsigned char ch = (unsigned char)body[i];
        if (ch == '\r' || ch == '\n')
            break;
        out[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    out[o] = '\0';
}

static void quote_response(struct qf_client *cl, struct qf_req *r, const struct qf_conn *c)
{
    const struct qf_http *h = &c->http;
    const char *body = qf_http_body(h);
    size_t len = h->body_len;
    int status = h->status;
    struct qf_quote q;
    char msg[320];

    if (status >= 200 && status < 300) {
        int rc = extract(cl, body, len, &q);
        if (rc == 0) {
            char text[32];
            if (qf_price_format(q.price, text, sizeof(text)) < 0) {
                qf_sched_quote(cl, r, QF_ERANGE, status, "price out of range", 0, "", "", c);
                return;
            }
            qf_sched_quote(cl, r, 0, status, "", q.price, text, q.currency, c);
            return;
        }
        if (rc == QF_ENOPRICE)
            snprintf(msg, sizeof(msg), "no price in response%s%s",
                     q.err_desc[0] ? ": " : " (regularMarketPrice missing or not a number)",
                     q.err_desc);
        else if (rc == QF_EJSON)
            snprintf(msg, sizeof(msg), "invalid JSON in response body (%zu bytes)", len);
        else
            snprintf(msg, sizeof(msg), "%s", qf_strerror(rc));
        qf_sched_quote(cl, r, rc, status, msg, 0, "", "", c);
        return;
    }
    char detail[200] = "";
    if (len > 0 && body[0] == '{' && extract(cl, body, len, &q) != QF_EJSON && q.err_desc[0])
        snprintf(detail, sizeof(detail), "%s", q.err_desc);
    else
        text_detail(body, len, detail, sizeof(detail));
    snprintf(msg, sizeof(msg), "HTTP %d%s%s", status, detail[0] ? ": " : "", detail);
    if (retryable(QF_EHTTP, status) && r->attempts <= r->retries)
        qf_sched_attempt_failed(cl, r, QF_EHTTP, status, msg, h->retry_after_s);
    else
        qf_sched_quote(cl, r, QF_EHTTP, status, msg, 0, "", "", c);
}

/* A complete response arrived on c (already parked or closed; c->req is NULL). */
void qf_sched_response(struct qf_client *cl, struct qf_req *r, const struct qf_conn *c)
{
    if (r->gen == NULL) {
        quote_response(cl, r, c);
        return;
    }
    int status = c->http.status;
    if (retryable(QF_EHTTP, status) && r->attempts <= r->retries && r->gen->body_seen == 0) {
        char msg[32];
        snprintf(msg, sizeof(msg), "HTTP %d", status);
        qf_sched_attempt_failed(cl, r, QF_EHTTP, status, msg, c->http.retry_after_s);
        return;
    }
    qf_sched_finish(cl, r, 0, status, "", c);
}
