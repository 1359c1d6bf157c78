/* Scheduling: request records and their pool, per-host queues, dispatch to connections, and
 * the one place that decides what an attempt's outcome leads to (finish, retry after a
 * backoff, re-send, fail the host). Connections report; this module decides. */
#ifndef QF_SCHED_H
#define QF_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "engine/timer.h"
#include "qfetch.h"

struct qf_client;
struct qf_host;
struct qf_conn;

enum qf_req_where { QF_REQ_QUEUED, QF_REQ_WAITING, QF_REQ_ACTIVE };

/* What only general requests (qf_client_request) carry. A quote's request line and headers
 * come from its host. */
struct qf_req_general {
    const char *method;       /* "GET" or "HEAD" */
    const char *head;         /* "GET " or "HEAD ": the request line before the target */
    size_t head_len;
    const char *hdrs;         /* " HTTP/1.1\r\nHost: ...\r\n\r\n", written after the target */
    size_t hdrs_len;
    size_t body_seen;         /* streamed bytes so far */
    qf_response_fn *on_response;
    qf_chunk_fn *on_chunk;
    qf_head_fn *on_head;
    void *udata;
    int no_body;              /* HEAD */
    int compressed;           /* Accept-Encoding sent: a coded body is inflated */
};

struct qf_req {
    struct qf_timer timer; /* backoff wait before the next attempt */
    struct qf_req *next, *prev;
    struct qf_host *host;
    struct qf_conn *conn;  /* while ACTIVE */
    struct qf_req_general *general; /* in the same allocation; NULL: a quote */
    size_t index;          /* quotes: order of qf_client_add() */
    int64_t t_start;       /* start of the current attempt */
    int64_t timeout_us;
    char *target;          /* the percent-encoded symbol, or a general request's path */
    int id;                /* general requests: key in the client's id table; quotes: -1 */
    int attempts;          /* attempts started */
    int retries;
    unsigned epoch;        /* its host's epoch when it was handed to a connection */
    unsigned char where;   /* enum qf_req_where */
    unsigned char resent;  /* times re-sent after a stale keep-alive connection */
    unsigned char cancelled;    /* cancelled while its connection was busy: drop when it ends */
    char symbol[];         /* quotes: the symbol, then target; general requests: unused (general
                            * follows the record, then target and the header block) */
};

/* A quote record has room for the longest symbol and its percent-encoding, so finished ones
 * can be reused for the next quote (the pool keeps them on a spare list). */
#define QF_QUOTE_EXTRA (QF_SYMBOL_MAX + 1 + 3 * QF_SYMBOL_MAX + 1)

/* How long an attempt took in its phases; -1 where a phase did not happen on it. */
struct qf_span {
    double dns_ms, connect_ms, tls_ms, first_byte_ms;
    int reused;            /* the attempt went over a kept-alive connection */
};

/* Why a rate-limited request ended: its retries ran out, or the server asked for a longer
 * wait (Retry-After) than QF_RETRY_AFTER_CAP_MS. */
enum qf_limit { QF_LIMIT_NONE, QF_LIMIT_RETRIES, QF_LIMIT_LONG };

/* What one attempt came to, reported by its connection, which has already parked or closed
 * itself: a decision may hand the request (or others) to any connection. The views are valid
 * during the call only. */
struct qf_outcome {
    int err;               /* 0: a complete response */
    int status;            /* HTTP status, 0 before one arrived */
    const char *msg;       /* why it failed */
    int retry_after_s;     /* the response's Retry-After, -1: none */
    int resendable;        /* failed before any response byte on a reused connection */
    int pipeline_cut;      /* it failed with pipelined requests outstanding */
    const char *body;      /* the whole body, or NULL when it was streamed to on_chunk */
    size_t body_len;
    const char *headers;   /* general requests: "name\0value\0" pairs, nheaders of them */
    size_t headers_len, nheaders;
    struct qf_span span;
    /* Set by the scheduler on a final outcome that the host's rate limit decided. */
    enum qf_limit limited;
    int wait_s;            /* with limited: the wait the server asks for, or the host's pause */
};

/* The record pool: records alive are bounded by the most in use at once. */
struct qf_req *qf_req_new(struct qf_client *cl, size_t extra);
void qf_req_release(struct qf_client *cl, struct qf_req *r);

void qf_sched_push(struct qf_host *h, struct qf_req *r, int front);
int qf_sched_pend(struct qf_host *h, const char *symbol, size_t len); /* 0 or QF_ENOMEM */
/* The queue's head: a queued record, else the oldest pending quote put in a record. */
struct qf_req *qf_sched_head(struct qf_client *cl, struct qf_host *h);
void qf_sched_unlink(struct qf_host *h, struct qf_req *r);
/* Hands queued requests to idle or new connections; called by the loop, once per turn. */
void qf_sched_dispatch(struct qf_client *cl);
/* Whether dispatch has work it can start now (qf_client_timeout_ms() answers 0 then). */
int qf_sched_ready(const struct qf_client *cl);
/* The attempt of r ended as o says: finish, retry or re-send. */
void qf_sched_outcome(struct qf_client *cl, struct qf_req *r, const struct qf_outcome *o);
/* A connection closed with the chain of requests behind its head unanswered; cut: the server
 * closed it without announcing it, so the host is not pipelined to for QF_PIPELINE_PAUSE_US.
 * They go back to the queue's front, not as attempts. */
#define QF_PIPELINE_PAUSE_US 5000000
/* A request that met a kept-alive connection the server had closed goes again, not as a retry,
 * this many times at most (a server closing every connection after each answer without saying
 * so can race several). */
#define QF_MAX_RESENDS 3
void qf_sched_unanswered(struct qf_client *cl, struct qf_host *h, struct qf_req *chain, int cut);
/* A request's backoff wait is over. */
void qf_sched_timer(struct qf_client *cl, struct qf_req *r);
/* The request is cancelled by the caller: no callback. */
void qf_sched_drop(struct qf_client *cl, struct qf_req *r);

#endif
