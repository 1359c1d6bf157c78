/* One connection slot's state machine: connect, TLS handshake, send, receive, park. A
 * connection does I/O and parsing only and reports each attempt's outcome to the scheduler.
 * Included by the loop (client.c) and the scheduler, which hands connections requests. */
#ifndef QF_CONN_H
#define QF_CONN_H

#include <stdint.h>

#include "engine/decode.h"
#include "engine/timer.h"
#include "parser/http.h"
#include "tls/tls.h"

#define QF_RBUF_SIZE 16384
/* Bytes one connection may read in one loop turn before the others and the timers get theirs:
 * a server that streams faster than we parse cannot hold qf_client_step(). */
#define QF_READ_BUDGET (4 * QF_RBUF_SIZE)

struct qf_client;
struct qf_host;
struct qf_req;

enum qf_conn_state {
    QF_CONN_FREE,       /* slot unused, no fd */
    QF_CONN_CONNECTING, /* non-blocking connect() in flight */
    QF_CONN_HANDSHAKE,  /* TLS handshake */
    QF_CONN_SEND,       /* request bytes left in wbuf */
    QF_CONN_RECV,       /* feeding the response parser */
    QF_CONN_PARKED,     /* keep-alive, waiting for the scheduler to hand it a request */
};

struct qf_conn {
    enum qf_conn_state state;
    int fd;
    uint32_t fd_gen;       /* bumped per fd so stale epoll events are dropped */
    uint32_t slot;
    int addr_i;            /* address being tried */
    int write_failed;      /* send failed: read what the peer said before giving up */
    int early;             /* the request goes out as TLS 1.3 early data */
    int head_seen;         /* on_head already called for the current response */
    int got_byte;          /* a response byte arrived for the current request */
    int ready;             /* on the loop's ready list: its read budget ran out */
    unsigned nreq;         /* responses completed on this connection */
    unsigned ninflight;    /* requests written or to be written, answered in order */
    struct qf_client *cl;
    struct qf_host *host;
    struct qf_req *req;    /* the head of the chain being answered, in order */
    struct qf_timer timer;
    int64_t t_start, t_open, t_connected, t_tls, t_first; /* us; t_open 0 when reused */
    struct qf_tls tls;
    char *wbuf;
    size_t wlen, woff, wcap;
    char *body;
    size_t body_cap;
    char *hbuf;            /* header capture for general requests, grown on demand */
    size_t hcap;
    struct qf_http http;
    struct qf_decode dec;  /* a coded body's inflater and inflated bytes */
    char errmsg[160];
    char rbuf[QF_RBUF_SIZE];
};

/* The only entry from the loop: an epoll event (0: none, just go on). */
void qf_conn_step(struct qf_conn *c, uint32_t events);
/* A new connection in free slot c for the chain r. */
void qf_conn_open(struct qf_conn *c, struct qf_host *h, struct qf_req *r);
/* A parked connection takes the chain r. */
void qf_conn_assign(struct qf_conn *c, struct qf_req *r);
/* Its deadline passed. */
void qf_conn_timeout(struct qf_conn *c);
/* Releases the fd, TLS state and its place among the host's idle ones; the slot becomes free.
 * Requests still on it must have been taken off first (qf_conn_abort). */
void qf_conn_close(struct qf_conn *c);
/* The caller cancelled the head request r of c: the response is still on the wire, so c
 * closes; the requests behind r go back to the queue. */
void qf_conn_abort(struct qf_conn *c);

#endif
