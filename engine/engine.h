/* Engine internals shared by the engine's sources: client, hosts, connection slots, requests, timers.
 * Nothing outside engine/ includes this header (make check-layers). The engine glues tls/
 * (bytes over a verified channel) to parser/ (bytes to values) and implements qfetch.h. */
#ifndef QF_ENGINE_H
#define QF_ENGINE_H

#include <stdint.h>
#include <sys/socket.h>

#include "parser/http.h"
#include "parser/json.h"
#include "qfetch.h"
#include "tls/tls.h"

#define QF_AGAIN (-1000)        /* handler: wait for the next event */
#define QF_RBUF_SIZE 16384
#define QF_SYMBOL_MAX 64
#define QF_MAX_ADDRS 8
#define QF_RETRY_AFTER_CAP_MS 5000
/* What a full TLS handshake costs the two ends in CPU, about (ECDHE on both, an ECDSA sign and
 * a certificate chain check): the price of one more connection beyond its round trip. */
#define QF_HANDSHAKE_US 1000
/* Longest a connected QF_CONN_HELD connection waits, unless this process is the bottleneck
 * and a session ticket is on its way (conn.c's may_wait()). */
#define QF_HOLD_MAX_US 10000

/* alloc.c: every engine allocation goes through here so tests can count them. */
void *qf_malloc(size_t n);
void *qf_calloc(size_t n, size_t size);
void *qf_realloc(void *p, size_t n);
void qf_free(void *p);
#ifdef QF_ALLOC_HOOKS /* the test library's alloc.o only (Makefile): libqfetch.a keeps no count */
unsigned long qf_alloc_calls(void);
/* Tests: the call that makes qf_alloc_calls() reach n returns NULL (0: none). */
void qf_alloc_fail_at(unsigned long n);
#endif

/* timer.c: one min-heap of deadlines for connections and backoff waits. */
enum qf_timer_kind { QF_TIMER_CONN, QF_TIMER_REQ };
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

/* url.c: the URL template split around "{}". */
struct qf_url {
    int tls;
    char host[256];
    char port[8];
    char *prefix; /* request target before the symbol, e.g. "/v8/finance/chart/" */
    char *suffix; /* after it, e.g. "?interval=1d" or "" */
};
int qf_url_parse(struct qf_url *u, const char *tmpl, char *err, size_t errlen);
/* A plain URL: fills tls/host/port (prefix, suffix NULL) and points *path at the rest. */
int qf_url_origin(struct qf_url *u, const char *url, const char **path, char *err,
                  size_t errlen);
void qf_url_free(struct qf_url *u);

enum qf_req_where { QF_REQ_QUEUED, QF_REQ_WAITING, QF_REQ_ACTIVE };

struct qf_host;
struct qf_conn;

/* What only general requests (qf_client_request) carry. A quote's request line and headers
 * come from its host. */
struct qf_req_gen {
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
};

struct qf_req {
    struct qf_timer timer; /* backoff wait before the next attempt */
    struct qf_req *next, *prev;
    struct qf_host *host;
    struct qf_conn *conn;  /* while ACTIVE */
    struct qf_req_gen *gen; /* general requests (in the same allocation); NULL: a quote */
    size_t index;          /* quotes: order of qf_client_add() */
    int64_t t_start;       /* start of the current attempt */
    int64_t timeout_us;
    char *target;          /* the percent-encoded symbol, or a general request's path */
    int id;                /* general requests: key in the client's id table; quotes: -1 */
    int attempts;          /* attempts started */
    int retries;
    unsigned char where;   /* enum qf_req_where */
    unsigned char stale_resent; /* already re-sent once after a stale keep-alive connection */
    unsigned char want_fresh;   /* the next attempt must use a new connection */
    unsigned char cancelled;    /* cancelled while its connection was busy: drop when it ends */
    char symbol[];         /* quotes: the symbol, then target; general requests: unused (gen
                            * follows the record, then target and the header block) */
};

/* A quote record has room for the longest symbol and its percent-encoding, so finished ones
 * can be reused for the next quote (client.c keeps them on a spare list). */
#define QF_QUOTE_EXTRA (QF_SYMBOL_MAX + 1 + 3 * QF_SYMBOL_MAX + 1)

enum qf_conn_state {
    QF_CONN_FREE,       /* slot unused, no fd */
    QF_CONN_CONNECTING, /* non-blocking connect() in flight */
    QF_CONN_HELD,       /* connected; the TLS handshake waits to learn if the host needs it */
    QF_CONN_HANDSHAKE,  /* TLS handshake, direction in want */
    QF_CONN_SEND,       /* request bytes left in wbuf */
    QF_CONN_RECV,       /* feeding the response parser */
    QF_CONN_PARKED,     /* keep-alive, waiting for the scheduler to hand it a request */
};

struct qf_client;

struct qf_conn {
    enum qf_conn_state state;
    int fd;
    uint32_t gen;          /* bumped per fd so stale epoll events are dropped */
    uint32_t slot;
    int want;              /* QF_WANT_READ / QF_WANT_WRITE of the last TLS call */
    int addr_i;            /* address being tried */
    int write_failed;      /* send failed: read what the peer said before giving up */
    int early;             /* the request goes out as TLS 1.3 early data */
    int head_seen;         /* on_head already called for the current response */
    int got_byte;          /* a response byte arrived for the current request */
    unsigned nreq;         /* responses completed on this connection */
    unsigned ninflight;    /* requests written or to be written, answered in order */
    struct qf_client *cl;
    struct qf_host *host;
    struct qf_req *req;
    struct qf_timer timer;
    int64_t t_start, t_open, t_connected, t_tls, t_first; /* us; t_open 0 when reused */
    int64_t t_hs;          /* the handshake's start (a held connection's ends its hold) */
    int64_t t_sent;        /* a reused connection's request, while the host's serve_us is 0 */
    struct qf_tls tls;
    char *wbuf;
    size_t wlen, woff, wcap;
    char *body;
    size_t body_cap;
    char *hbuf;            /* header capture for general requests, grown on demand */
    size_t hcap;
    struct qf_http http;
    char errmsg[160];
    char rbuf[QF_RBUF_SIZE];
};

struct qf_host {
    struct qf_url url;
    int resolved;
    struct sockaddr_storage addrs[QF_MAX_ADDRS];
    socklen_t addrlens[QF_MAX_ADDRS];
    int naddr;
    int fatal;             /* resolution, TLS setup or certificate failure: fails every request */
    int no_pipeline;       /* a pipelined connection closed early: one request at a time */
    char fatal_msg[160];
    struct qf_tls_cache cache;
    struct qf_req *qhead, *qtail; /* queued records: retries, general requests */
    unsigned nqueued;             /* records queued plus quotes pending below */
    /* Quotes added but not yet dispatched, packed "SYMBOL\0" in qf_client_add() order. A record
     * is taken only when one is dispatched, so a waiting quote costs its symbol's bytes, not a
     * record: 10,000 queued quotes were 1.3 MB as records. */
    char *pend;
    size_t pend_off, pend_len, pend_cap;
    unsigned npend;
    size_t pend_index;     /* qf_client_add() index of the quote at pend_off */
    struct qf_conn **idle; /* parked connections, a stack of at most max */
    unsigned nidle, nopen, max;
    unsigned nstarted;     /* connections past the connect, in handshake or in use */
    unsigned nheld;        /* connections in QF_CONN_HELD */
    int64_t rtt_us;        /* the first connect's duration, 0 until measured */
    int64_t serve_us;      /* the first response's time after the handshake, 0 until measured */
    int64_t hs_us;         /* the first full handshake's time here, 0 until measured */
    int64_t coming_us;     /* the loop turn (its now_us) whose hold timers share coming */
    int coming;            /* conn.c's ticket_coming() for that turn, -1 until asked */
    /* Quotes: the request around the encoded symbol, made once: "GET /prefix" before it, and
     * "suffix HTTP/1.1\r\nHost: ...\r\n\r\n" after it. */
    char *head, *hdrs;
    size_t head_len, hdrs_len;
    char *hostport;        /* Host header value */
};

struct qf_client {
    int epfd, tfd;
    int64_t tfd_armed_us;
    qf_result_fn *cb;
    void *udata;
    qf_log_fn *log;
    qf_log_fn *warn;
    void *log_udata;
    char *sess_path;         /* TLS session cache file, NULL: none */
    char *sess_text;         /* its lines as loaded */
    unsigned flags;          /* QF_OPT_* */
    unsigned pipeline;       /* requests in flight per connection, >= 1 */
    int64_t timeout_us, connect_timeout_us;
    int retries;
    struct qf_tls_ctx tls;
    int tls_ready;
    char *cacert, *user_agent;
    char **resolve;          /* copied "HOST:PORT:ADDR" entries */
    unsigned max_per_host;
    struct qf_host **hosts;  /* hosts[0]: the quote template's */
    unsigned nhosts;
    struct qf_conn *conns;
    uint32_t nconns;
    uint32_t *free_slots;
    uint32_t nfree;
    struct qf_heap timers;
    size_t nadded, ndone, nquotes;
    size_t nrecords;         /* request records allocated, spares included: the timer heap's
                                worst case besides the connections */
    struct qf_req *spare;    /* finished quote records, linked by next */
    struct qf_req **byid;    /* general requests by id, NULL once finished */
    size_t nbyid, capbyid;
    const struct qf_req *in_chunk; /* request whose on_chunk is running */
    const struct qf_conn *stepping; /* connection inside qf_conn_step() */
    jsmntok_t *toks;
    unsigned ntoks;
    struct qf_header *hdrv;  /* headers handed to on_response, kept at high-water mark */
    size_t hdrv_cap;
    int64_t now_us, t_first_step, t_last_done;
    /* Loop utilisation while connections are held (conn.c's loop_busy()): time spent
     * handling events, summed over turns, and the last sample of it. */
    unsigned nheld; /* connections in QF_CONN_HELD, all hosts */
    int64_t busy_us, busy_wall_us, busy_at_us;
    int64_t busy_turn_us; /* the turn (its now_us) that last asked */
    int busy;
    uint64_t rng;
    struct qf_stats st;
};

/* conn.c */
void qf_conn_step(struct qf_conn *c, uint32_t events);
void qf_conn_open(struct qf_conn *c, struct qf_host *h, struct qf_req *r);
void qf_conn_assign(struct qf_conn *c, struct qf_req *r);
void qf_conn_timeout(struct qf_conn *c);
void qf_conn_close(struct qf_conn *c);
struct qf_req *qf_conn_detach(struct qf_conn *c);

/* client.c: request records. */
struct qf_req *qf_req_new(struct qf_client *cl, size_t extra);
struct qf_req *qf_req_quote(struct qf_client *cl); /* a spare quote record, or a new one */
void qf_req_release(struct qf_client *cl, struct qf_req *r); /* quotes go back to the spares */

/* host.c */
int qf_host_ready(struct qf_client *cl, struct qf_host *h);
struct qf_host *qf_host_get(struct qf_client *cl, struct qf_url *u, int quotes);
void qf_host_free(struct qf_host *h);
int qf_host_check_resolve(const char *entry, char *err, size_t errlen);

/* sesscache.c */
void qf_sess_load(struct qf_client *cl);
void qf_sess_apply(struct qf_client *cl, struct qf_host *h);
void qf_sess_save(struct qf_client *cl);

/* sched.c: queueing, outcomes, retries */
void qf_sched_push(struct qf_host *h, struct qf_req *r, int front);
int qf_sched_pend(struct qf_host *h, const char *symbol, size_t len); /* 0 or QF_ENOMEM */
struct qf_req *qf_sched_head(struct qf_client *cl, struct qf_host *h);
void qf_sched_unlink(struct qf_host *h, struct qf_req *r);
void qf_sched_dispatch(struct qf_client *cl);
unsigned qf_sched_want(const struct qf_host *h);
void qf_sched_attempt_failed(struct qf_client *cl, struct qf_req *r, int err, int status,
                             const char *msg, int retry_after_s);
void qf_sched_response(struct qf_client *cl, struct qf_req *r, const struct qf_conn *c);
void qf_sched_finish(struct qf_client *cl, struct qf_req *r, int err, int status,
                     const char *msg, const struct qf_conn *c);
void qf_sched_quote(struct qf_client *cl, struct qf_req *r, int err, int status,
                    const char *msg, double price, const char *price_text, const char *currency,
                    const struct qf_conn *c);
void qf_sched_timer(struct qf_client *cl, struct qf_req *r);
size_t qf_sched_headers(struct qf_client *cl, const struct qf_http *h);
void qf_sched_log(struct qf_client *cl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

int64_t qf_now_us(void);

#endif
