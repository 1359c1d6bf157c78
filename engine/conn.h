/* One connection slot's state machine: connect, TLS handshake, send, receive, park. A
 * connection does I/O and parsing only and reports each attempt's outcome to the scheduler.
 * Included by the loop (client.c) and the scheduler, which hands connections requests. */
#ifndef QF_CONN_H
#define QF_CONN_H

#include <stdint.h>

#include "engine/decode.h"
#include "engine/h2.h"
#include "engine/host.h"
#include "engine/timer.h"
#include "parser/http.h"
#include "tls/tls.h"

#define QF_RBUF_SIZE 16384
/* Bytes one connection may read in one loop turn before the others and the timers get theirs:
 * a server that streams faster than we parse cannot hold qf_client_step(). */
#define QF_READ_BUDGET (4 * QF_RBUF_SIZE)
/* RFC 8305's Connection Attempt Delay: the next address starts this long after the last one
 * if that has not connected by then. */
#define QF_RACE_DELAY_US 250000

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
    QF_CONN_TUNNEL,     /* https via a proxy: CONNECT sent, its answer awaited (then TLS) */
    QF_CONN_MUX,        /* HTTP/2: streams in flight (or none), taking more from the scheduler */
};

struct qf_conn {
    enum qf_conn_state state;
    int fd;
    uint32_t fd_gen;       /* bumped per connection and fd so stale epoll events are dropped;
                              31 bits: resolver sockets' tags have the top bit */
    uint32_t slot;
    int order[QF_MAX_ADDRS]; /* the host's addresses, in the order this connection tries them */
    int norder, ntried;    /* how many in order, how many started */
    int race_fd[QF_MAX_ADDRS]; /* connects in flight, the oldest first; the winner becomes fd */
    unsigned char race_addr[QF_MAX_ADDRS]; /* their addresses' indexes */
    int nracing;
    int64_t next_try_us, connect_deadline_us;
    int64_t dns_us;        /* the name lookup this connection's first requests waited for */
    int write_failed;      /* send failed: read what the peer said before giving up */
    int early;             /* the request goes out as TLS 1.3 early data */
    int head_seen;         /* on_head already called for the current response */
    int got_byte;          /* a response byte arrived for the current request */
    int ready;             /* on the loop's ready list: its read budget ran out */
    unsigned nreq;         /* responses completed on this connection */
    unsigned ninflight;    /* requests written or to be written, answered in order */
    unsigned nanswered;    /* responses completed of the batch written last */
    size_t tunnel_off;     /* bytes of the host's CONNECT request sent */
    size_t tunnel_got;     /* bytes of the proxy's answer read into rbuf */
    struct qf_client *cl;
    struct qf_host *host;
    struct qf_req *req;    /* the head of the chain being answered, in order */
    struct qf_timer timer;
    int64_t t_start, t_open, t_connected, t_tls, t_first; /* us; t_open 0 when reused */
    uint64_t parked_turn;  /* the loop turn that parked it */
    struct qf_tls tls;
    char *wbuf;
    size_t wlen, woff, wcap;
    char *body;
    size_t body_cap;
    char *hbuf;            /* header capture for general requests, grown on demand */
    size_t hcap;
    struct qf_http http;
    struct qf_decode dec;  /* a coded body's inflater and inflated bytes */
    struct qf_h2 h2;       /* HTTP/2 session and streams (MUX) */
    char errmsg[160];
    char rbuf[QF_RBUF_SIZE];
};

/* The only entry from the loop: an epoll event (0: none, just go on). */
void qf_conn_step(struct qf_conn *c, uint32_t events);
/* A new connection in free slot c for the chain r. */
void qf_conn_open(struct qf_conn *c, struct qf_host *h, struct qf_req *r);
/* A parked connection takes the chain r. */
void qf_conn_assign(struct qf_conn *c, struct qf_req *r);
/* A parked connection about to be reused: 1 when it is still usable; else it is closed (the
 * server closed it or sent bytes while it idled). One parked in this loop turn was checked
 * then, and is asked again only when force is set. */
int qf_conn_reusable(struct qf_conn *c, int force);
/* A connection speaking HTTP/2 (MUX) takes the chain r as new streams. */
void qf_conn_mux_add(struct qf_conn *c, struct qf_req *r);
/* The caller cancelled r, a stream of c: it is reset; the connection goes on. */
void qf_conn_mux_cancel(struct qf_conn *c, struct qf_req *r);
/* Its deadline passed. */
void qf_conn_timeout(struct qf_conn *c);
/* Releases the fd, TLS state and its place among the host's idle ones; the slot becomes free.
 * Requests still on it must have been taken off first (qf_conn_abort). */
void qf_conn_close(struct qf_conn *c);
/* The caller cancelled the head request r of c: the response is still on the wire, so c
 * closes; the requests behind r go back to the queue. */
void qf_conn_abort(struct qf_conn *c);

#endif
