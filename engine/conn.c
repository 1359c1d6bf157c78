/* One state machine per connection slot: connect, TLS handshake, send, receive, park.
 * qf_conn_step() is the only entry from the loop; only conn_set_state() writes c->state.
 * A connection does I/O and parsing only: each attempt's end is reported to the scheduler
 * (qf_sched_outcome) once the connection has parked or closed itself, and it never steps
 * another connection. The fd is registered once, edge-triggered for both directions, so each
 * handler works until its call would block (QF_AGAIN) or its read budget is spent. */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "engine/alloc.h"
#include "engine/client.h"
#include "engine/conn.h"
#include "engine/host.h"
#include "engine/proxy.h"
#include "engine/result.h"
#include "engine/sched.h"

#define QF_AGAIN (-1000) /* handler: wait for the next event */
/* A body buffer larger than this is given back when its connection closes: the client-wide
 * budget counts buffers, and a parked connection would keep a hostile response's 8 MiB. */
#define BODY_KEEP (256 * 1024)

static const char *const state_name[] = {"free", "connecting", "handshake", "send", "recv",
                                         "parked", "tunnel", "h2"};

/* Legal transitions; anything else is a programming error. */
static int legal(enum qf_conn_state from, enum qf_conn_state to)
{
    if (to == QF_CONN_FREE)
        return 1;
    switch (from) {
    case QF_CONN_FREE:
        return to == QF_CONN_CONNECTING;
    case QF_CONN_CONNECTING:
        return to == QF_CONN_HANDSHAKE || to == QF_CONN_SEND || to == QF_CONN_TUNNEL;
    case QF_CONN_TUNNEL:
        return to == QF_CONN_HANDSHAKE;
    case QF_CONN_HANDSHAKE:
        return to == QF_CONN_SEND || to == QF_CONN_RECV || to == QF_CONN_MUX;
    case QF_CONN_SEND:
        return to == QF_CONN_RECV;
    case QF_CONN_RECV:
        return to == QF_CONN_PARKED;
    case QF_CONN_PARKED:
        return to == QF_CONN_SEND;
    case QF_CONN_MUX:
        return 0;
    }
    return 0;
}

static void conn_set_state(struct qf_conn *c, enum qf_conn_state to)
{
    assert(legal(c->state, to));
    if (c->cl->log != NULL && c->state != to)
        qf_result_log(c->cl, "conn %u: %s -> %s", c->slot, state_name[c->state], state_name[to]);
    c->state = to;
}

/* Connect plus handshake may take the connect timeout, but never more than r's own. */
static int64_t connect_limit(const struct qf_client *cl, const struct qf_req *r)
{
    return cl->connect_timeout_us < r->timeout_us ? cl->connect_timeout_us : r->timeout_us;
}

static void arm(struct qf_conn *c, int64_t at_us)
{
    qf_heap_set(&c->cl->timers, &c->timer, at_us);
}

static int mux_prepare(struct qf_conn *c);
static int start_mux(struct qf_conn *c);
static int h1_again(struct qf_conn *c);
static int on_mux(struct qf_conn *c);
static void mux_timeout(struct qf_conn *c);

/* One read for TLS and plain sockets alike: > 0 bytes, 0 at end of stream, QF_WANT_READ or
 * QF_WANT_WRITE, or an error with its reason in c->errmsg (err NULL: no reason wanted). */
static ssize_t conn_read(struct qf_conn *c, char *buf, size_t len, char *err, size_t errlen)
{
    if (c->host->url.tls)
        return qf_tls_read(&c->tls, buf, len, err, errlen);
    ssize_t n = recv(c->fd, buf, len, 0);
    if (n >= 0)
        return n;
    int e = errno;
    if (e == EAGAIN || e == EINTR)
        return QF_WANT_READ;
    if (err != NULL)
        snprintf(err, errlen, "connection closed (recv: %s)", strerror(e));
    return QF_ECLOSED;
}

static ssize_t conn_write(struct qf_conn *c, const char *buf, size_t len)
{
    if (c->host->url.tls)
        return qf_tls_write(&c->tls, buf, len, c->errmsg, sizeof(c->errmsg));
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    int e = errno;
    if (e == EAGAIN || e == EINTR)
        return QF_WANT_WRITE;
    snprintf(c->errmsg, sizeof(c->errmsg), "connection closed (send: %s)", strerror(e));
    return QF_ECLOSED;
}

/* Closes the attempt at race index i; the later ones move down. */
static void race_drop(struct qf_conn *c, int i)
{
    close(c->race_fd[i]); /* also removes it from the epoll set */
    c->nracing--;
    memmove(c->race_fd + i, c->race_fd + i + 1, (size_t)(c->nracing - i) * sizeof(int));
    memmove(c->race_addr + i, c->race_addr + i + 1, (size_t)(c->nracing - i));
}

static void release_body(struct qf_conn *c)
{
    if (c->h2.cap > 0 && c->h2.c != NULL)
        qf_h2_trim(&c->h2, BODY_KEEP);
    qf_decode_release(c->cl, &c->dec, BODY_KEEP);
    if (c->body_cap <= BODY_KEEP)
        return;
    c->cl->body_total -= c->body_cap;
    qf_free(c->body);
    c->body = NULL;
    c->body_cap = 0;
}

void qf_conn_close(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    struct qf_host *h = c->host;

    assert(c->req == NULL);
    qf_heap_del(&cl->timers, &c->timer);
    if (c->state == QF_CONN_PARKED) {
        for (unsigned i = 0; i < h->nidle; i++) {
            if (h->idle[i] == c) {
                h->idle[i] = h->idle[--h->nidle];
                break;
            }
        }
    }
    if (c->state == QF_CONN_MUX) { /* its streams are reported by the caller (mux_lost) */
        for (unsigned i = 0; i < h->nmux; i++) {
            if (h->mux[i] == c) {
                h->mux[i] = h->mux[--h->nmux];
                break;
            }
        }
    } else if (c->h2.ng != NULL) { /* prepared for early data: the chain holds the requests */
        for (unsigned i = 0; i < c->h2.cap; i++)
            qf_h2_release(&c->h2, &c->h2.st[i]);
    }
    qf_h2_end(&c->h2);
    qf_tls_close(&c->tls);
    if (c->fd >= 0) {
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
    }
    while (c->nracing > 0)
        race_drop(c, c->nracing - 1);
    c->ninflight = 0;
    if (c->state != QF_CONN_FREE) {
        h->nopen--;
        conn_set_state(c, QF_CONN_FREE);
        cl->free_slots[cl->nfree++] = c->slot;
    }
}

/* Takes the chain off c and closes it. The head request is returned; the ones behind it got
 * no answer and go back to the scheduler (cut: the server closed without saying so). */
static struct qf_req *close_take(struct qf_conn *c, int cut)
{
    struct qf_req *r = c->req, *rest = r != NULL ? r->next : NULL;

    c->req = NULL;
    qf_conn_close(c);
    if (r != NULL)
        r->next = NULL;
    if (rest != NULL)
        qf_sched_unanswered(c->cl, c->host, rest, cut);
    return r;
}

void qf_conn_abort(struct qf_conn *c)
{
    close_take(c, 0);
    release_body(c);
}

/* An attempt's phases, each counted from its start (a name lookup it waited for included);
 * fresh: it opened the connection. */
static void phases(const struct qf_conn *c, int64_t t_start, int64_t t_first, int fresh,
                   struct qf_span *s)
{
    int64_t dns = fresh ? c->dns_us : 0;
    s->reused = !fresh;
    s->dns_ms = fresh ? (double)dns / 1e3 : -1;
    s->connect_ms = fresh && c->t_connected ? (double)(c->t_connected - t_start + dns) / 1e3
                                            : -1;
    s->tls_ms = fresh && c->t_tls ? (double)(c->t_tls - t_start + dns) / 1e3 : -1;
    s->first_byte_ms = t_first ? (double)(t_first - t_start + dns) / 1e3 : -1;
}

static void span(const struct qf_conn *c, struct qf_span *s)
{
    phases(c, c->t_start, c->t_first, c->t_open != 0, s);
}

/* Ends the head request's attempt with an error: the connection closes and reports. */
static int conn_fail(struct qf_conn *c, int err, const char *msg)
{
    struct qf_client *cl = c->cl;
    struct qf_outcome o = {.err = err, .status = c->http.status, .msg = msg, .retry_after_s = -1};

    /* A reused connection that failed before any response byte met a keep-alive connection
     * the server had already closed. */
    o.resendable = c->nreq > 0 && !c->got_byte && (err == QF_ECLOSED || err == QF_ETLS);
    /* Pipelined requests were written and the connection failed before all were answered. */
    o.pipeline_cut = c->woff > 0 && (c->nanswered > 0 || c->ninflight > 1);
    span(c, &o.span);
    struct qf_req *r = close_take(c, 0);
    if (r == NULL)
        return QF_CONN_FREE;
    if (cl->log != NULL)
        qf_result_log(cl, "%s: attempt %d failed on conn %u: %s",
                      r->general == NULL ? r->symbol : r->target, r->attempts, c->slot, msg);
    qf_sched_outcome(cl, r, &o);
    return QF_CONN_FREE;
}

/* Happy eyeballs (RFC 8305): a connection tries its host's addresses in qf_host_order()'s
 * order, starting the next one QF_RACE_DELAY_US after the last unless that one has connected
 * (a failure starts it at once); the first to connect wins and the others close. The connect
 * deadline bounds the whole race. */

static void addr_text(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    const void *a = sa->ss_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (inet_ntop(sa->ss_family, a, out, (socklen_t)cap) == NULL)
        snprintf(out, cap, "?");
}

/* Why a connect failed, naming what was dialled: the host, or its proxy. */
static void connect_msg(struct qf_conn *c, int err)
{
    const struct qf_host *h = c->host;

    if (h->proxy != NULL)
        snprintf(c->errmsg, sizeof(c->errmsg), "connect to proxy %s: %s", h->proxy->name,
                 strerror(err));
    else
        snprintf(c->errmsg, sizeof(c->errmsg), "connect to %.100s port %s: %s", h->url.host,
                 h->url.port, strerror(err));
}

static void race_failed(struct qf_conn *c, int ai, int err)
{
    char a[INET6_ADDRSTRLEN];

    addr_text(&c->host->addrs[ai], a, sizeof(a));
    if (c->cl->log != NULL)
        qf_result_log(c->cl, "conn %u: connect %s port %s: %s", c->slot, a, c->host->url.port,
                      strerror(err));
    connect_msg(c, err);
}

/* The race timer: the next attempt's start, or the connect deadline. */
static void race_arm(struct qf_conn *c)
{
    int more = c->ntried < c->norder;
    arm(c, more && c->next_try_us < c->connect_deadline_us ? c->next_try_us
                                                           : c->connect_deadline_us);
}

/* Starts the next address's connect; an address that fails at once passes to the next.
 * Returns 0 while any attempt is in flight, else QF_ECONNECT (or QF_ENOSPC: out of fds). */
static int race_next(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    struct qf_host *h = c->host;

    while (c->ntried < c->norder) {
        int ai = c->order[c->ntried++];
        const struct sockaddr *sa = (const struct sockaddr *)&h->addrs[ai];
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            int e = errno;
            snprintf(c->errmsg, sizeof(c->errmsg), "socket: %s", strerror(e));
            if (c->nracing > 0)
                return 0;
            return e == EMFILE || e == ENFILE ? QF_ENOSPC : QF_ECONNECT;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* Best effort: without kernel support the connect is an ordinary one. */
        if (cl->flags & QF_OPT_TCP_FASTOPEN)
            setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one));
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.u64 = (uint64_t)c->fd_gen << 32 | c->slot};
        if (epoll_ctl(cl->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            snprintf(c->errmsg, sizeof(c->errmsg), "epoll_ctl: %s", strerror(errno));
            close(fd);
            return c->nracing > 0 ? 0 : QF_ECONNECT;
        }
        c->race_fd[c->nracing] = fd;
        c->race_addr[c->nracing++] = (unsigned char)ai;
        if (cl->log != NULL) {
            char a[INET6_ADDRSTRLEN];
            addr_text(&h->addrs[ai], a, sizeof(a));
            qf_result_log(cl, "conn %u: connecting to %s port %s", c->slot, a, h->url.port);
        }
        if (connect(fd, sa, h->addrlens[ai]) == 0 || errno == EINPROGRESS) {
            c->next_try_us = cl->now_us + QF_RACE_DELAY_US;
            race_arm(c);
            return 0;
        }
        race_failed(c, ai, errno);
        race_drop(c, c->nracing - 1);
    }
    race_arm(c);
    return c->nracing > 0 ? 0 : QF_ECONNECT;
}

/* Attempt i connected: it becomes the connection's fd, under a new generation so that events
 * still queued for the others are dropped. */
static void race_won(struct qf_conn *c, int i)
{
    struct qf_client *cl = c->cl;
    int fd = c->race_fd[i];

    c->host->addr_good = c->race_addr[i];
    c->race_fd[i] = -1;
    for (int k = 0; k < c->nracing; k++) {
        if (c->race_fd[k] >= 0)
            close(c->race_fd[k]);
    }
    c->nracing = 0;
    c->fd = fd;
    c->fd_gen = (c->fd_gen + 1) & 0x7fffffff;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)c->fd_gen << 32 | c->slot};
    epoll_ctl(cl->epfd, EPOLL_CTL_MOD, fd, &ev);
}

/* Appends the request to the slot's buffer, which keeps its high-water size. 0 or
 * QF_ENOMEM. */
static int wbuf_room(struct qf_conn *c, size_t need)
{
    if (need > c->wcap) {
        size_t cap = need > 2 * c->wcap ? need : 2 * c->wcap;
        char *w = qf_realloc(c->wbuf, cap);
        if (w == NULL)
            return QF_ENOMEM;
        c->wbuf = w;
        c->wcap = cap;
    }
    return 0;
}

static int format_request(struct qf_conn *c, const struct qf_req *r)
{
    const struct qf_req_general *g = r->general;
    const struct qf_host *h = r->host;
    /* A quote: its host's "GET /prefix" and "suffix HTTP/1.1...". A general request: its
     * "METHOD " and its own header block. */
    const char *head = g ? g->head : h->head, *hdrs = g ? g->hdrs : h->hdrs;
    size_t hl = g ? g->head_len : h->head_len, xl = g ? g->hdrs_len : h->hdrs_len;
    size_t tl = strlen(r->target), need = c->wlen + hl + tl + xl;

    if (wbuf_room(c, need) < 0)
        return QF_ENOMEM;
    char *w = c->wbuf + c->wlen;
    memcpy(w, head, hl);
    memcpy(w + hl, r->target, tl);
    memcpy(w + hl + tl, hdrs, xl);
    c->wlen = need;
    return 0;
}

/* Prepares the parser for the response to the head request. */
static int expect_response(struct qf_conn *c)
{
    struct qf_req *r = c->req;

    c->got_byte = 0;
    c->head_seen = 0;
    c->t_first = 0;
    c->t_start = r->t_start;
    qf_http_init(&c->http, c->body, c->body_cap, QF_HTTP_BODY_MAX);
    qf_decode_expect(&c->dec);
    /* A body that arrives whole in one read is used where it is, in rbuf: the response is
     * reported before rbuf is read into again. Streamed bodies go through the buffer. */
    c->http.zero_copy = r->general == NULL || r->general->on_chunk == NULL;
    if (r->general != NULL) {
        c->http.no_body = r->general->no_body;
        if (c->hbuf == NULL && (c->hbuf = qf_malloc(c->hcap = 1024)) == NULL)
            return QF_ENOMEM;
        qf_http_set_hbuf(&c->http, c->hbuf, c->hcap);
        if (r->general->on_chunk != NULL)
            c->http.body_max = SIZE_MAX; /* streamed: the buffer only ever holds one read */
    }
    return 0;
}

/* r's attempt starts on c. */
static void begin_attempt(struct qf_conn *c, struct qf_req *r)
{
    struct qf_client *cl = c->cl;

    r->where = QF_REQ_ACTIVE;
    r->conn = c;
    r->t_start = cl->now_us;
    r->attempts++;
    if (r->attempts == 1 && cl->log != NULL && r->general == NULL)
        qf_result_log(cl, r->resent ? "Re-sending request for %s price on conn %u"
                                    : "Making request for %s price", r->symbol, c->slot);
}

/* Starts an attempt for every request of the chain (one, or several when pipelining): they
 * are written back to back and answered in order. */
static int begin_batch(struct qf_conn *c, struct qf_req *chain)
{
    int rc = 0;

    c->req = chain;
    c->ninflight = 0;
    c->nanswered = 0;
    c->write_failed = 0;
    c->wlen = c->woff = 0;
    for (struct qf_req *r = chain; r != NULL; r = r->next) {
        begin_attempt(c, r);
        c->ninflight++;
        if (rc == 0)
            rc = format_request(c, r);
    }
    return rc < 0 ? rc : expect_response(c);
}

void qf_conn_open(struct qf_conn *c, struct qf_host *h, struct qf_req *r)
{
    struct qf_client *cl = c->cl;

    release_body(c); /* a body buffer left large by the slot's last connection */
    c->host = h;
    c->nreq = 0;
    c->norder = qf_host_order(h, c->order);
    c->ntried = c->nracing = 0;
    c->fd_gen = (c->fd_gen + 1) & 0x7fffffff; /* a new connection: older events are stale */
    c->t_connected = c->t_tls = 0;
    conn_set_state(c, QF_CONN_CONNECTING);
    h->nopen++;
    cl->st.conns_opened++;
    int rc = begin_batch(c, r);
    c->t_open = cl->now_us;
    /* Opened as the host's lookup ended: the requests waited for it, and it counts inside the
     * connect timeout. */
    c->dns_us = h->resolved_turn == cl->turns && h->t_resolve_start != 0
                    ? h->t_resolved - h->t_resolve_start
                    : 0;
    c->connect_deadline_us = cl->now_us + connect_limit(cl, r) - c->dns_us;
    arm(c, c->connect_deadline_us);
    if (rc == 0)
        rc = race_next(c);
    if (rc < 0) {
        cl->stepping = c;
        conn_fail(c, rc, rc == QF_ENOMEM ? "out of memory" : c->errmsg);
        cl->stepping = NULL;
        return;
    }
    qf_conn_step(c, 0);
}

void qf_conn_assign(struct qf_conn *c, struct qf_req *r)
{
    struct qf_client *cl = c->cl;

    conn_set_state(c, QF_CONN_SEND);
    int rc = begin_batch(c, r);
    c->t_open = 0;
    arm(c, cl->now_us + r->timeout_us);
    if (rc < 0) {
        cl->stepping = c;
        conn_fail(c, rc, "out of memory");
        cl->stepping = NULL;
        return;
    }
    qf_conn_step(c, 0);
}

static int start_tls(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;

    if (qf_tls_open(&c->tls, &cl->tls, c->fd, c->host->url.host, &c->host->cache) < 0)
        return conn_fail(c, QF_ENOMEM, "cannot create TLS session");
    /* Early data goes out in the protocol of the session it resumes. */
    if ((cl->flags & QF_OPT_EARLY_DATA) && qf_tls_h2(&c->tls) && mux_prepare(c) < 0)
        return conn_fail(c, QF_ENOMEM, "out of memory");
    /* 0-RTT only with a resumable session that allows the whole request: a GET may be
     * replayed by an attacker, which the user accepted with the flag. */
    c->early = (cl->flags & QF_OPT_EARLY_DATA) && qf_tls_early_capacity(&c->tls) >= c->wlen;
    return QF_CONN_HANDSHAKE;
}

static int start_tunnel(struct qf_conn *c)
{
    c->tunnel_off = c->tunnel_got = 0;
    qf_result_log(c->cl, "conn %u: proxy %s: CONNECT %s", c->slot, c->host->proxy->name,
                  c->host->hostport);
    return QF_CONN_TUNNEL;
}

/* The proxy's CONNECT answer was not 2xx. */
static int tunnel_refused(struct qf_conn *c, int status)
{
    int err = qf_proxy_refusal(c->host->proxy, status, c->errmsg, sizeof(c->errmsg));

    c->http.status = status; /* the outcome's status: the proxy's is the last one received */
    return conn_fail(c, err, c->errmsg);
}

/* Sends the host's CONNECT request, then reads the proxy's answer into rbuf. The answer is
 * peeked (MSG_PEEK) and only its head taken from the socket: any byte after the empty line is
 * the server's, and goes to TLS. The connect deadline armed at open covers all of it. */
static int on_tunnel(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    const struct qf_host *h = c->host;
    const char *name = h->proxy->name;
    int status;
    size_t head_len;

    while (c->tunnel_off < h->tunnel_len) {
        ssize_t n = send(c->fd, h->tunnel + c->tunnel_off, h->tunnel_len - c->tunnel_off,
                         MSG_NOSIGNAL);
        if (n < 0) {
            int e = errno;
            if (e == EAGAIN || e == EINTR)
                return QF_AGAIN;
            snprintf(c->errmsg, sizeof(c->errmsg), "proxy %s: connection closed (send: %s)",
                     name, strerror(e));
            return conn_fail(c, QF_ECLOSED, c->errmsg);
        }
        c->tunnel_off += (size_t)n;
    }
    int rc = 0;
    while (rc == 0) {
        ssize_t n = recv(c->fd, c->rbuf + c->tunnel_got, sizeof(c->rbuf) - c->tunnel_got,
                         MSG_PEEK);
        if (n < 0) {
            int e = errno;
            if (e == EAGAIN || e == EINTR)
                return QF_AGAIN;
            snprintf(c->errmsg, sizeof(c->errmsg), "proxy %s: connection closed during CONNECT "
                     "(recv: %s)", name, strerror(e));
            return conn_fail(c, QF_ECLOSED, c->errmsg);
        }
        if (n == 0) {
            snprintf(c->errmsg, sizeof(c->errmsg), "proxy %s closed the connection during "
                     "CONNECT", name);
            return conn_fail(c, QF_ECLOSED, c->errmsg);
        }
        rc = qf_proxy_reply(c->rbuf, c->tunnel_got + (size_t)n, sizeof(c->rbuf), &status,
                            &head_len);
        if (rc < 0) {
            snprintf(c->errmsg, sizeof(c->errmsg), "proxy %s: %s", name,
                     rc == QF_EHEADER ? "answer to CONNECT too large"
                                      : "malformed answer to CONNECT");
            return conn_fail(c, QF_EPROTO, c->errmsg);
        }
        /* Bytes before the head's end are the head's: taken, so that a close shows as end of
         * stream (a peek never shows it while bytes wait). Its end: taken up to there. */
        size_t take = rc == 1 ? head_len - c->tunnel_got : (size_t)n;
        if (recv(c->fd, c->rbuf + c->tunnel_got, take, 0) != (ssize_t)take) {
            snprintf(c->errmsg, sizeof(c->errmsg), "proxy %s: recv: %s", name, strerror(errno));
            return conn_fail(c, QF_ECLOSED, c->errmsg);
        }
        c->tunnel_got += take;
        cl->st.bytes_read += take;
    }
    if (cl->log != NULL) { /* the proxy's status line, cleaned: it may be anything */
        char line[3 * 120 + 1];
        size_t n = strcspn(c->rbuf, "\r\n");
        qf_text_clean(c->rbuf, n < 120 ? n : 120, line, sizeof(line));
        qf_result_log(cl, "conn %u: proxy %s: %s", c->slot, name, line);
    }
    if (status < 200 || status > 299)
        return tunnel_refused(c, status);
    c->t_connected = cl->now_us; /* connected to the target, as far as timings tell */
    return start_tls(c);
}

/* An event on one of the racing sockets: each is asked without blocking. */
static int on_connecting(struct qf_conn *c)
{
    struct pollfd p[QF_MAX_ADDRS];
    int n = c->nracing, failed = 0;

    for (int i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = c->race_fd[i], .events = POLLOUT};
    if (poll(p, (nfds_t)n, 0) <= 0)
        return QF_AGAIN;
    for (int i = n - 1; i >= 0; i--) {
        if (!(p[i].revents & (POLLOUT | POLLERR | POLLHUP)))
            continue;
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(c->race_fd[i], SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
            soerr = errno;
        if (soerr == 0) {
            race_won(c, i);
            c->t_connected = c->cl->now_us;
            if (c->host->tunnel != NULL)
                return start_tunnel(c);
            if (!c->host->url.tls) {
                arm(c, c->t_start + c->req->timeout_us);
                return QF_CONN_SEND;
            }
            return start_tls(c);
        }
        race_failed(c, c->race_addr[i], soerr);
        race_drop(c, i);
        failed++;
    }
    /* A failure starts the next address at once. */
    while (failed-- > 0 && c->ntried < c->norder) {
        int rc = race_next(c);
        if (rc < 0)
            return conn_fail(c, rc, c->errmsg);
    }
    if (c->nracing == 0)
        return conn_fail(c, QF_ECONNECT, c->errmsg);
    return QF_AGAIN;
}

static int on_handshake(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;

    while (c->early && c->woff < c->wlen) {
        ssize_t n = qf_tls_write_early(&c->tls, c->wbuf + c->woff, c->wlen - c->woff, c->errmsg,
                                       sizeof(c->errmsg));
        if (n == QF_WANT_READ || n == QF_WANT_WRITE)
            return QF_AGAIN;
        if (n < 0)
            return conn_fail(c, (int)n, c->errmsg);
        c->woff += (size_t)n;
    }
    int rc = qf_tls_handshake(&c->tls, c->errmsg, sizeof(c->errmsg));

    if (rc == QF_WANT_READ || rc == QF_WANT_WRITE)
        return QF_AGAIN;
    if (rc < 0)
        return conn_fail(c, rc, c->errmsg);
    c->t_tls = cl->now_us;
    if (cl->log != NULL)
        qf_result_log(cl, "conn %u: %s %s, %s, %s", c->slot, qf_tls_version_of(&c->tls),
                      qf_tls_suite(&c->tls), qf_tls_resumed(&c->tls) ? "resumed" : "full handshake",
                      qf_tls_h2(&c->tls) ? "h2" : "http/1.1");
    if (qf_tls_resumed(&c->tls))
        cl->st.tls_resumed++;
    else
        cl->st.tls_full++;
    arm(c, c->t_start + c->req->timeout_us);
    if (qf_tls_h2(&c->tls)) {
        if (c->early) {
            c->early = 0;
            if (qf_tls_early_accepted(&c->tls))
                cl->st.early_data += c->ninflight;
            else
                c->woff = 0; /* rejected: the same frames go again */
        }
        return start_mux(c);
    }
    c->host->h2 = -1; /* the other connections need not wait for this one any more */
    if (c->h2.ng != NULL && h1_again(c) < 0) /* prepared for HTTP/2, answered in HTTP/1.1 */
        return conn_fail(c, QF_ENOMEM, "out of memory");
    if (c->early) {
        c->early = 0;
        if (qf_tls_early_accepted(&c->tls)) {
            cl->st.requests_sent += c->ninflight;
            cl->st.early_data += c->ninflight;
            return QF_CONN_RECV;
        }
        c->woff = 0; /* rejected: the server discarded it, send it normally */
    }
    return QF_CONN_SEND;
}

static int on_send(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;

    while (c->woff < c->wlen) {
        ssize_t n = conn_write(c, c->wbuf + c->woff, c->wlen - c->woff);
        if (n == QF_WANT_READ || n == QF_WANT_WRITE)
            return QF_AGAIN;
        if (n < 0) {
            /* The peer may have answered (e.g. 429) and closed before reading everything we
             * sent: read what it said before giving up. */
            c->write_failed = 1;
            cl->st.requests_sent += c->ninflight;
            return QF_CONN_RECV;
        }
        c->woff += (size_t)n;
    }
    cl->st.requests_sent += c->ninflight;
    if (c->nreq > 0)
        cl->st.reused += c->ninflight;
    /* The answer is made of bytes the peer sends after reading this request, and their
     * arrival raises a fresh edge (EPOLLET): a read now would almost always be EAGAIN. */
    conn_set_state(c, QF_CONN_RECV);
    return QF_AGAIN;
}

/* Grows whichever buffer the parser lacks room in to take len more bytes, within the
 * request's cap and the client's budget for all buffered bodies. */
static int grow(struct qf_conn *c, size_t len)
{
    struct qf_client *cl = c->cl;

    if (c->http.hbuf != NULL && !c->http.headers_done && c->hcap - c->http.hlen < len + 2) {
        size_t cap = c->hcap * 2 > c->http.hlen + len + 2 ? c->hcap * 2 : c->http.hlen + len + 2;
        char *b = qf_realloc(c->hbuf, cap);
        if (b == NULL)
            return QF_ENOMEM;
        c->hbuf = b;
        c->hcap = cap;
        qf_http_set_hbuf(&c->http, b, cap);
        return 0;
    }
    size_t need = c->http.body_len + len, cap = c->body_cap ? c->body_cap : 16384;

    while (cap < need)
        cap *= 2;
    if (cap > QF_HTTP_BODY_MAX)
        cap = QF_HTTP_BODY_MAX;
    if (cl->body_total - c->body_cap + cap > cl->body_max_total) {
        snprintf(c->errmsg, sizeof(c->errmsg),
                 "responses buffered by this client exceed %zu MiB", cl->body_max_total >> 20);
        return QF_EBODY;
    }
    char *b = qf_realloc(c->body, cap);
    if (b == NULL) {
        snprintf(c->errmsg, sizeof(c->errmsg), "out of memory for the response body");
        return QF_ENOMEM;
    }
    cl->body_total += cap - c->body_cap;
    c->body = b;
    c->body_cap = cap;
    qf_http_set_body(&c->http, b, cap);
    return 0;
}

/* Whether the server sent more after the last expected response, or closed: parking the
 * connection would hand those bytes to the next request as its answer, or send it into a
 * closed connection. OpenSSL's read-ahead may hold them (a session ticket there is consumed
 * by the read and is not app data); otherwise the socket is asked, never blocking. */
static int not_reusable(struct qf_conn *c)
{
    char b[64];

    if (c->host->url.tls) {
        ssize_t n = qf_tls_read(&c->tls, b, sizeof(b), NULL, 0);
        return n != QF_WANT_READ && n != QF_WANT_WRITE;
    }
    ssize_t n = recv(c->fd, b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EINTR);
}

int qf_conn_reusable(struct qf_conn *c, int force)
{
    if ((!force && c->parked_turn == c->cl->turns) || !not_reusable(c))
        return 1;
    if (c->cl->log != NULL)
        qf_result_log(c->cl, "conn %u: closed by the server while idle", c->slot);
    qf_conn_close(c);
    return 0;
}

/* The head request's response is complete: the connection parks, closes, or goes on with the
 * next pipelined response, and then the response is reported. more_bytes: the read held
 * bytes after it. Returns QF_CONN_RECV when another response is expected here. */
static int on_complete(struct qf_conn *c, int more_bytes)
{
    struct qf_client *cl = c->cl;
    struct qf_req *r = c->req, *next = r->next;
    /* Bytes after the last expected response are not part of anything: never reuse. */
    int keep = c->http.keep_alive && !c->write_failed && (next != NULL || !more_bytes);
    const struct qf_http *h = &c->http;
    struct qf_outcome o = {
        .status = h->status,
        .retry_after_s = h->retry_after_s,
        .body = r->general != NULL && r->general->on_chunk != NULL ? NULL
                : h->body_len                                      ? qf_http_body(h)
                                                                   : "",
        .body_len = h->body_len,
        .headers = h->hbuf,
        .headers_len = h->hlen,
        .nheaders = h->nheaders,
    };

    if (r->general != NULL && r->general->on_chunk != NULL)
        o.body_len = r->general->body_seen;
    qf_decode_outcome(&c->dec, &o);
    qf_heap_del(&cl->timers, &c->timer);
    span(c, &o.span);
    c->nreq++;
    c->nanswered++;
    if (keep && next == NULL && not_reusable(c))
        keep = 0;
    if (!keep) {
        /* The requests behind r were cut only when the server did not announce the close. */
        close_take(c, c->http.keep_alive);
    } else if (next == NULL) {
        c->req = NULL;
        c->ninflight = 0;
        c->parked_turn = cl->turns;
        conn_set_state(c, QF_CONN_PARKED);
        c->host->idle[c->host->nidle++] = c;
        if (c->host->nqueued == 0 && c->host->url.tls)
            qf_tls_idle(&c->tls); /* no work queued: idle until the caller adds some */
    } else {
        c->req = next;
        c->ninflight--;
        r->next = NULL;
    }
    /* The body and headers stay where they are (rbuf, the body and header buffers) until the
     * next read or expect_response(): the report comes first. */
    qf_sched_outcome(cl, r, &o);
    if (!keep || next == NULL)
        return QF_AGAIN;
    if (c->state != QF_CONN_RECV)
        return QF_CONN_FREE; /* the caller's callback cancelled the next request */
    if (expect_response(c) < 0)
        return conn_fail(c, QF_ENOMEM, "out of memory");
    arm(c, cl->now_us + c->req->timeout_us);
    return QF_CONN_RECV;
}

/* The caller's on_head or on_chunk asked to stop: the response is still on the wire. Returns
 * 1: the slot is free. */
static int aborted(struct qf_conn *c, const char *why)
{
    struct qf_outcome o = {.err = QF_ECANCELED, .status = c->http.status, .msg = why,
                           .retry_after_s = -1};
    span(c, &o.span);
    struct qf_req *r = close_take(c, 0);
    qf_sched_outcome(c->cl, r, &o);
    return 1;
}

/* Hands status and headers to on_head before any body byte is delivered. Returns non-zero
 * when the callback aborted the request. */
static int head(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    struct qf_req *r = c->req;

    c->head_seen = 1;
    size_t n = qf_result_headers(cl, c->http.hbuf, c->http.hlen, c->http.nheaders);
    cl->in_chunk = r;
    int stop = r->general->on_head(c->http.status, n ? cl->hdrv : NULL, n, r->general->udata);
    cl->in_chunk = NULL;
    return stop ? aborted(c, "aborted by on_head") : 0;
}

/* Hands body bytes of this read to the request's on_chunk; their buffer is then reused.
 * Returns non-zero when the callback aborted the request. */
static int stream(struct qf_conn *c, const char *data, size_t len)
{
    struct qf_client *cl = c->cl;
    struct qf_req *r = c->req;

    cl->in_chunk = r;
    int stop = r->general->on_chunk(data, len, r->general->udata);
    cl->in_chunk = NULL;
    r->general->body_seen += len;
    return stop ? aborted(c, "aborted by on_chunk") : 0;
}

/* The parser rejected the response; llhttp errors are sticky, so the connection goes too. */
static int parse_fail(struct qf_conn *c, int err)
{
    snprintf(c->errmsg, sizeof(c->errmsg), "%s", qf_http_errmsg(&c->http)); /* names why */
    return conn_fail(c, err, c->errmsg);
}

/* A coded body (engine/decode.c): the bytes this feed gave the parser are inflated, and the
 * parser's buffer is free again for the next feed; a streamed request gets the inflated
 * bytes. Returns non-zero when the slot is free: the body was too large, or on_chunk
 * aborted. */
static int decode(struct qf_conn *c)
{
    const struct qf_req_general *g = c->req->general;
    const char *in = qf_http_body(&c->http);
    size_t len = c->http.body_len;
    int rc;

    c->http.body_len = 0;
    do {
        rc = qf_decode_feed(c->cl, &c->dec, c->req, &in, &len);
        if (rc == QF_EBODY) {
            parse_fail(c, rc);
            return 1;
        }
        if (g != NULL && g->on_chunk != NULL && c->dec.len > 0) {
            size_t n = c->dec.len;
            c->dec.len = 0;
            if (!c->req->cancelled && stream(c, c->dec.out, n) != 0)
                return 1;
        }
    } while (rc == QF_ENOSPC);
    return 0;
}

/* Puts c on the loop's ready list: its budget for this turn is spent, bytes may be waiting
 * and no new edge will say so. */
static int yield_turn(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;

    if (!c->ready) {
        c->ready = 1;
        cl->ready[cl->nready++] = c->slot;
    }
    return QF_AGAIN;
}

static int on_recv(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    size_t budget = QF_READ_BUDGET;

    for (;;) {
        if (budget == 0)
            return yield_turn(c);
        ssize_t n = conn_read(c, c->rbuf, sizeof(c->rbuf), c->errmsg, sizeof(c->errmsg));
        if (n == QF_WANT_READ || n == QF_WANT_WRITE) {
            if (c->write_failed) /* the write failed and the peer said nothing complete */
                return conn_fail(c, QF_ECLOSED, c->errmsg);
            return QF_AGAIN;
        }
        if (n < 0)
            return conn_fail(c, (int)n, c->errmsg);
        if (n == 0) {
            if (qf_http_finish(&c->http) == 0) {
                c->http.keep_alive = 0;
                return on_complete(c, 0);
            }
            snprintf(c->errmsg, sizeof(c->errmsg), "connection closed before %s",
                     c->got_byte ? "the response was complete" : "any response byte");
            return conn_fail(c, QF_ECLOSED, c->errmsg);
        }
        budget -= (size_t)n < budget ? (size_t)n : budget;
        cl->st.bytes_read += (uint64_t)n;
        /* One read may end a response and start the next pipelined one. */
        for (size_t off = 0; off < (size_t)n;) {
            if (!c->got_byte) {
                c->got_byte = 1;
                c->t_first = cl->now_us;
            }
            size_t left = (size_t)n - off;
            ssize_t used;
            while ((used = qf_http_feed(&c->http, c->rbuf + off, left)) == QF_ENOSPC) {
                int rc = grow(c, left);
                if (rc < 0)
                    return conn_fail(c, rc, c->errmsg);
            }
            if (used < 0)
                return parse_fail(c, (int)used);
            off += (size_t)used;
            /* A request cancelled from an earlier response's callback hears nothing more. */
            const struct qf_req_general *g = c->req->general;
            int quiet = c->req->cancelled;
            if (g != NULL && g->on_head != NULL && c->http.headers_done && !c->head_seen &&
                !quiet && head(c) != 0)
                return QF_CONN_FREE;
            if (c->http.headers_done && !c->dec.checked)
                qf_decode_begin(&c->dec, c->req, c->http.coding, c->http.coding_len,
                                sizeof(c->http.coding));
            if (c->dec.active && c->http.body_len > 0 && decode(c) != 0)
                return QF_CONN_FREE;
            if (g != NULL && g->on_chunk != NULL && c->http.body_len > 0) {
                size_t blen = c->http.body_len;
                c->http.body_len = 0;
                if (!quiet && stream(c, c->http.body, blen) != 0)
                    return QF_CONN_FREE;
            }
            if (!c->http.complete)
                break;
            int next = on_complete(c, off < (size_t)n);
            if (next != QF_CONN_RECV)
                return next;
        }
    }
}

/* An event on an idle connection: a session ticket (consumed), or the server closed it or
 * sent bytes nobody asked for. */
static int on_parked(struct qf_conn *c)
{
    char b[256];
    ssize_t n = conn_read(c, b, sizeof(b), NULL, 0);

    if (n == QF_WANT_READ || n == QF_WANT_WRITE)
        return QF_AGAIN;
    qf_conn_close(c);
    return QF_CONN_FREE;
}


/* ---- HTTP/2 (MUX) ------------------------------------------------------------------------
 * One connection, many streams (engine/h2.c). Requests come from the scheduler whenever the
 * connection has room (qf_conn_mux_add); each stream that ends is reported once nghttp2 has
 * returned from the bytes that ended it; the connection itself ends on EOF, an error or the
 * server's GOAWAY, and then reports every stream it still carried. */

/* The chain's requests become streams; first: they opened the connection. */
static int mux_submit_chain(struct qf_conn *c, int first)
{
    struct qf_client *cl = c->cl;

    for (struct qf_req *r = c->req; r != NULL; r = r->next) {
        if (qf_h2_submit(&c->h2, r, first) < 0)
            return QF_ENOMEM;
        cl->st.h2_streams++;
    }
    if (c->h2.nstreams > cl->st.h2_streams_max)
        cl->st.h2_streams_max = c->h2.nstreams;
    return 0;
}

/* Moves the frames nghttp2 has queued into wbuf, coalesced into few TLS records. */
static int mux_pull(struct qf_conn *c)
{
    const char *p;
    ssize_t n = 0;

    while (c->wlen < QF_RBUF_SIZE && (n = qf_h2_output(&c->h2, &p)) > 0) {
        if (wbuf_room(c, c->wlen + (size_t)n) < 0)
            return QF_ENOMEM;
        memcpy(c->wbuf + c->wlen, p, (size_t)n);
        c->wlen += (size_t)n;
    }
    return n < 0 ? QF_ENOMEM : 0;
}

/* The session resumed spoke HTTP/2: the chain goes out as its first streams, in early data. */
static int mux_prepare(struct qf_conn *c)
{
    if (qf_h2_start(&c->h2, c, c->host->h2_cap, c->host->h2_peer) < 0 ||
        mux_submit_chain(c, 1) < 0)
        return QF_ENOMEM;
    c->wlen = c->woff = 0;
    return mux_pull(c);
}

/* The session was prepared for HTTP/2 and the server answered in HTTP/1.1: the chain's
 * requests are written again, as HTTP/1.1. */
static int h1_again(struct qf_conn *c)
{
    for (unsigned i = 0; i < c->h2.cap; i++)
        qf_h2_release(&c->h2, &c->h2.st[i]);
    qf_h2_end(&c->h2);
    c->wlen = c->woff = 0;
    c->early = 0;
    for (struct qf_req *r = c->req; r != NULL; r = r->next) {
        if (format_request(c, r) < 0)
            return QF_ENOMEM;
    }
    return 0;
}

/* The handshake chose h2: the chain becomes the connection's first streams. */
static int start_mux(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    struct qf_host *h = c->host;

    if (c->h2.ng == NULL) {
        if (qf_h2_start(&c->h2, c, h->h2_cap, h->h2_peer) < 0 || mux_submit_chain(c, 1) < 0)
            return conn_fail(c, QF_ENOMEM, "out of memory");
        c->wlen = c->woff = 0; /* the HTTP/1.1 bytes were never sent */
    }
    cl->st.requests_sent += c->ninflight;
    c->req = NULL;
    c->ninflight = 0;
    h->h2 = 1;
    h->mux[h->nmux++] = c;
    cl->st.h2_conns++;
    return QF_CONN_MUX;
}

/* Writes what is queued. 0 when all is out, QF_AGAIN when the socket is full, or an error
 * with the reason in c->errmsg. */
static int mux_flush(struct qf_conn *c)
{
    for (;;) {
        if (c->woff == c->wlen) {
            c->wlen = c->woff = 0;
            if (mux_pull(c) < 0) {
                snprintf(c->errmsg, sizeof(c->errmsg), "out of memory");
                return QF_ENOMEM;
            }
            if (c->wlen == 0)
                return 0;
        }
        ssize_t n = conn_write(c, c->wbuf + c->woff, c->wlen - c->woff);
        if (n == QF_WANT_READ || n == QF_WANT_WRITE)
            return QF_AGAIN;
        if (n < 0)
            return (int)n;
        c->woff += (size_t)n;
    }
}

/* The earliest deadline of the streams in flight, or none. */
static void mux_arm(struct qf_conn *c)
{
    int64_t at = 0;

    for (unsigned i = 0; i < c->h2.cap; i++) {
        const struct qf_h2_stream *s = &c->h2.st[i];
        if (s->req != NULL && !s->ended && (at == 0 || s->t_start + s->req->timeout_us < at))
            at = s->t_start + s->req->timeout_us;
    }
    if (at != 0)
        arm(c, at);
    else
        qf_heap_del(&c->cl->timers, &c->timer);
}

/* Reports stream s with outcome o; its slot is free again, its buffers stay until reused. */
static void mux_report_one(struct qf_conn *c, struct qf_h2_stream *s, struct qf_outcome *o)
{
    struct qf_client *cl = c->cl;
    struct qf_req *r = s->req;

    phases(c, s->t_start, s->t_first, s->first && c->t_open != 0, &o->span);
    if (o->err == 0)
        c->nreq++;
    else if (cl->log != NULL)
        qf_result_log(cl, "%s: attempt %d failed on conn %u: %s",
                      r->general == NULL ? r->symbol : r->target, r->attempts, c->slot, o->msg);
    qf_h2_release(&c->h2, s);
    qf_sched_outcome(cl, r, o);
    if (s->body_cap > BODY_KEEP || s->dec.cap > BODY_KEEP) /* the report is over */
        qf_h2_trim(&c->h2, BODY_KEEP);
}

/* Reports the streams that ended in the last feed. A report's callback may cancel another
 * stream: its slot is then free and skipped here. */
static void mux_report(struct qf_conn *c)
{
    struct qf_h2 *m = &c->h2;

    for (unsigned k = 0; k < m->ndone; k++) {
        struct qf_h2_stream *s = &m->st[m->done[k]];
        struct qf_outcome o;
        if (s->req == NULL)
            continue;
        qf_h2_outcome(m, s, &o);
        mux_report_one(c, s, &o);
    }
    m->ndone = 0;
}

/* The connection is over (err, msg: why): it closes, then reports every stream it carried.
 * Those the server never worked on go again, not as attempts; the others fail with err. */
static int mux_lost(struct qf_conn *c, int err, const char *msg)
{
    struct qf_h2 *m = &c->h2;
    unsigned n = 0;

    mux_report(c);
    for (unsigned i = 0; i < m->cap; i++) {
        if (m->st[i].req != NULL)
            m->done[n++] = i;
    }
    if (n == 0 && c->cl->log != NULL)
        qf_result_log(c->cl, "conn %u: HTTP/2 connection closed: %s", c->slot, msg);
    qf_conn_close(c); /* the stream table stays with the slot, as does errmsg */
    for (unsigned k = 0; k < n; k++) {
        struct qf_h2_stream *s = &m->st[m->done[k]];
        struct qf_outcome o;
        if (s->req == NULL) /* cancelled by an earlier report's callback */
            continue;
        if (s->ended || s->err != 0 || !qf_h2_processed(m, s)) {
            qf_h2_outcome(m, s, &o);
        } else { /* cut: as on HTTP/1.1, a reused connection that failed before any byte of
                  * the answer met a server that had closed it */
            memset(&o, 0, sizeof(o));
            o.err = err == QF_EPROTO ? QF_ECLOSED : err; /* the connection's fault, not its */
            o.msg = msg;
            o.status = s->status;
            o.retry_after_s = -1;
            o.resendable = s->t_first == 0 && m->t_progress <= s->t_start && c->nreq > 0 &&
                           (err == QF_ECLOSED || err == QF_ETLS);
        }
        mux_report_one(c, s, &o);
    }
    return QF_CONN_FREE;
}

static int on_mux(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    size_t budget = QF_READ_BUDGET;

    for (;;) {
        int rc = mux_flush(c);
        if (rc < 0 && rc != QF_AGAIN)
            return mux_lost(c, rc == QF_ENOMEM ? QF_ENOMEM : QF_ECLOSED, c->errmsg);
        if (budget == 0)
            return yield_turn(c);
        ssize_t n = conn_read(c, c->rbuf, sizeof(c->rbuf), c->errmsg, sizeof(c->errmsg));
        if (n == QF_WANT_READ || n == QF_WANT_WRITE) {
            mux_arm(c);
            if (c->h2.nactive == 0 && c->host->nqueued == 0 && c->host->url.tls)
                qf_tls_idle(&c->tls); /* no work queued: idle until the caller adds some */
            return QF_AGAIN;
        }
        if (n == 0)
            snprintf(c->errmsg, sizeof(c->errmsg), "connection closed before the response "
                     "was complete");
        if (n <= 0)
            return mux_lost(c, n == 0 ? QF_ECLOSED : (int)n, c->errmsg);
        budget -= (size_t)n < budget ? (size_t)n : budget;
        cl->st.bytes_read += (uint64_t)n;
        rc = qf_h2_feed(&c->h2, c->rbuf, (size_t)n, c->errmsg, sizeof(c->errmsg));
        if (c->h2.peer_streams > 0) /* the next connections start within it */
            c->host->h2_peer = c->h2.peer_streams;
        mux_report(c);
        if (rc < 0) {
            mux_flush(c); /* best effort: the GOAWAY nghttp2 queued says why */
            return mux_lost(c, rc, c->errmsg);
        }
    }
}

void qf_conn_mux_add(struct qf_conn *c, struct qf_req *chain)
{
    struct qf_client *cl = c->cl;
    struct qf_req *next;

    cl->stepping = c;
    for (struct qf_req *r = chain; r != NULL; r = next) {
        next = r->next;
        r->next = NULL;
        begin_attempt(c, r);
        if (qf_h2_submit(&c->h2, r, 0) < 0) {
            struct qf_outcome o = {.err = QF_ENOMEM, .msg = "out of memory", .retry_after_s = -1,
                                   .span = {-1, -1, -1, -1, 1}};
            qf_sched_outcome(cl, r, &o);
            continue;
        }
        cl->st.requests_sent++;
        cl->st.reused++;
        cl->st.h2_streams++;
    }
    if (c->h2.nstreams > cl->st.h2_streams_max)
        cl->st.h2_streams_max = c->h2.nstreams;
    cl->stepping = NULL;
    qf_conn_step(c, 0);
}

void qf_conn_mux_cancel(struct qf_conn *c, struct qf_req *r)
{
    qf_h2_cancel(&c->h2, r);
    yield_turn(c); /* its RST_STREAM goes out next turn */
}

/* Streams past their deadline fail; when no stream got a response byte since the oldest of
 * them started, the server is not serving this connection: it closes with all of them (and
 * retries go to a new one). */
static void mux_timeout(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    struct qf_h2 *m = &c->h2;

    for (unsigned i = 0; i < m->cap; i++) {
        struct qf_h2_stream *s = &m->st[i];
        if (s->req == NULL || s->ended || s->t_start + s->req->timeout_us > cl->now_us)
            continue;
        snprintf(c->errmsg, sizeof(c->errmsg), "timed out after %.1f s %s",
                 (double)s->req->timeout_us / 1e6,
                 s->t_first ? "receiving the response" : "waiting for the response");
        if (m->t_progress <= s->t_start) {
            mux_lost(c, QF_ETIMEOUT, c->errmsg);
            return;
        }
        struct qf_outcome o = {.err = QF_ETIMEOUT, .status = s->status, .msg = c->errmsg,
                               .retry_after_s = -1};
        qf_h2_reset(m, s);
        mux_report_one(c, s, &o);
    }
    int rc = mux_flush(c); /* the resets */
    if (rc < 0 && rc != QF_AGAIN) {
        mux_lost(c, rc == QF_ENOMEM ? QF_ENOMEM : QF_ECLOSED, c->errmsg);
        return;
    }
    mux_arm(c);
}

void qf_conn_step(struct qf_conn *c, uint32_t events)
{
    struct qf_client *cl = c->cl;

    (void)events; /* it only wakes the connection: each handler asks its socket itself */
    assert(cl->stepping == NULL); /* never one connection from inside another's handler */
    cl->stepping = c;
    for (;;) {
        int next;
        switch (c->state) {
        case QF_CONN_CONNECTING:
            next = on_connecting(c);
            break;
        case QF_CONN_TUNNEL:
            next = on_tunnel(c);
            break;
        case QF_CONN_HANDSHAKE:
            next = on_handshake(c);
            break;
        case QF_CONN_SEND:
            next = on_send(c);
            break;
        case QF_CONN_RECV:
            next = on_recv(c);
            break;
        case QF_CONN_PARKED:
            next = on_parked(c);
            break;
        case QF_CONN_MUX:
            next = on_mux(c);
            break;
        case QF_CONN_FREE:
        default:
            next = QF_AGAIN;
            break;
        }
        if (next == QF_AGAIN || next == QF_CONN_FREE)
            break;
        conn_set_state(c, (enum qf_conn_state)next);
    }
    cl->stepping = NULL;
    if (c->state == QF_CONN_FREE)
        release_body(c); /* the report that pointed into it is over */
}

void qf_conn_timeout(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;

    if (c->state == QF_CONN_MUX) {
        cl->stepping = c;
        mux_timeout(c);
        cl->stepping = NULL;
        return;
    }
    if (c->state == QF_CONN_CONNECTING) {
        if (cl->now_us < c->connect_deadline_us) { /* the next address's turn */
            cl->stepping = c;
            int rc = race_next(c);
            if (rc < 0)
                conn_fail(c, rc, c->errmsg);
            cl->stepping = NULL;
            return;
        }
        for (int i = 0; i < c->nracing; i++) /* tried last for the rest of the run */
            c->host->addr_slow[c->race_addr[i]] = 1;
    }
    int64_t req_us = c->req != NULL ? c->req->timeout_us : cl->timeout_us;
    int connecting = c->state == QF_CONN_CONNECTING || c->state == QF_CONN_HANDSHAKE ||
                     c->state == QF_CONN_TUNNEL;
    const char *phase = c->state == QF_CONN_CONNECTING  ? "connecting"
                        : c->state == QF_CONN_TUNNEL    ? "waiting for the answer to CONNECT"
                        : c->state == QF_CONN_HANDSHAKE ? "in the TLS handshake"
                        : c->got_byte                   ? "receiving the response"
                                                        : "waiting for the response";
    int64_t limit = connecting && cl->connect_timeout_us < req_us ? cl->connect_timeout_us
                                                                   : req_us;
    /* Until the tunnel stands, the proxy is the one not answering. */
    const char *proxy = c->host->proxy != NULL &&
                        (c->state == QF_CONN_CONNECTING || c->state == QF_CONN_TUNNEL)
                            ? c->host->proxy->name : NULL;

    snprintf(c->errmsg, sizeof(c->errmsg), "%s%s%stimed out after %.1f s %s",
             proxy ? "proxy " : "", proxy ? proxy : "", proxy ? ": " : "", (double)limit / 1e6,
             phase);
    cl->stepping = c;
    conn_fail(c, QF_ETIMEOUT, c->errmsg);
    cl->stepping = NULL;
    release_body(c);
}
