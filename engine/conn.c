/* One state machine per connection slot: connect, TLS handshake, send, receive, park.
 * qf_conn_step() is the only entry from the loop; only conn_set_state() writes c->state.
 * The fd is registered once, edge-triggered for both directions, so no handler ever changes
 * the epoll interest: each handler instead works until its call would block (QF_AGAIN). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "engine/engine.h"

static const char *const state_name[] = {"free", "connecting", "held",  "handshake",
                                         "send", "recv",       "parked"};

/* Legal transitions; anything else is a programming error. */
static int legal(enum qf_conn_state from, enum qf_conn_state to)
{
    if (to == QF_CONN_FREE)
        return 1;
    switch (from) {
    case QF_CONN_FREE:
        return to == QF_CONN_CONNECTING;
    case QF_CONN_CONNECTING:
        return to == QF_CONN_HANDSHAKE || to == QF_CONN_SEND || to == QF_CONN_CONNECTING ||
               to == QF_CONN_HELD;
    case QF_CONN_HELD:
        return to == QF_CONN_HANDSHAKE;
    case QF_CONN_HANDSHAKE:
        return to == QF_CONN_SEND || to == QF_CONN_RECV;
    case QF_CONN_SEND:
        return to == QF_CONN_RECV;
    case QF_CONN_RECV:
        return to == QF_CONN_PARKED || to == QF_CONN_CONNECTING;
    case QF_CONN_PARKED:
        return to == QF_CONN_SEND;
    }
    return 0;
}

static void conn_set_state(struct qf_conn *c, enum qf_conn_state to)
{
    assert(legal(c->state, to));
    if (c->cl->log != NULL && c->state != to)
        qf_sched_log(c->cl, "conn %u: %s -> %s", c->slot, state_name[c->state], state_name[to]);
    /* past the connect: handshaking or in use */
    c->host->nstarted += (to >= QF_CONN_HANDSHAKE) - (c->state >= QF_CONN_HANDSHAKE);
    int held = (to == QF_CONN_HELD) - (c->state == QF_CONN_HELD);
    c->host->nheld += held;
    c->cl->nheld += held;
    if (held < 0 && c->cl->nheld == 0) /* the next hold takes a new first sample */
        c->cl->busy_wall_us = c->cl->busy_turn_us = 0;
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

/* Releases the fd and TLS state; the slot becomes free. The request is the caller's. */
void qf_conn_close(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    struct qf_host *h = c->host;

    qf_heap_del(&cl->timers, &c->timer);
    if (c->state == QF_CONN_PARKED) {
        for (unsigned i = 0; i < h->nidle; i++) {
            if (h->idle[i] == c) {
                h->idle[i] = h->idle[--h->nidle];
                break;
            }
        }
    }
    qf_tls_close(&c->tls);
    if (c->fd >= 0) {
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
        h->nopen--;
    }
    if (c->state != QF_CONN_FREE) {
        conn_set_state(c, QF_CONN_FREE);
        cl->free_slots[cl->nfree++] = c->slot;
    }
    c->req = NULL;
}

/* Puts a chain of requests that got no answer back at the front of the host's queue, in their
 * order, not counted as attempts; fresh: they must go to a new connection. */
static void requeue_front(struct qf_client *cl, struct qf_host *h, struct qf_req *chain,
                          int fresh)
{
    struct qf_req *v[1024]; /* --pipeline is at most 1000 */
    int n = 0;

    for (struct qf_req *q = chain; q != NULL && n < 1024; q = q->next)
        v[n++] = q;
    while (n-- > 0) {
        struct qf_req *q = v[n];
        q->attempts--;
        q->want_fresh |= fresh;
        if (q->cancelled)
            qf_sched_finish(cl, q, QF_ECANCELED, 0, "canceled", NULL);
        else
            qf_sched_push(h, q, 1);
    }
}

/* Closes c and hands back the request being received. Requests pipelined behind it got no
 * answer: they go back to the queue for fresh connections, not counted as attempts, and this
 * host is not pipelined to again in this run. */
struct qf_req *qf_conn_detach(struct qf_conn *c)
{
    struct qf_req *r = c->req, *rest = r != NULL ? r->next : NULL;

    c->req = NULL;
    c->ninflight = 0;
    qf_conn_close(c);
    if (r != NULL)
        r->next = NULL;
    if (rest != NULL) {
        c->host->no_pipeline = 1;
        requeue_front(c->cl, c->host, rest, 1);
    }
    return r;
}

/* Ends the current attempt with an error. A request that failed on a reused connection before
 * any response byte met a keep-alive connection the server had already closed: re-send it once
 * on a fresh connection without counting a retry. */
static int conn_fail(struct qf_conn *c, int err, const char *msg)
{
    struct qf_client *cl = c->cl;
    struct qf_req *r = c->req;
    int status = c->http.status;
    int stale = c->nreq > 0 && !c->got_byte && r != NULL && !r->stale_resent &&
                (err == QF_ECLOSED || err == QF_ETLS);

    if (cl->log != NULL && r != NULL)
        qf_sched_log(cl, "%s: attempt %d failed on conn %u: %s",
                     r->gen == NULL ? r->symbol : r->target, r->attempts, c->slot, msg);
    qf_conn_detach(c);
    if (r == NULL)
        return QF_CONN_FREE;
    if (stale) {
        r->stale_resent = 1;
        r->want_fresh = 1;
        r->attempts--;
        cl->st.stale_resends++;
        qf_sched_push(c->host, r, 1);
    } else {
        qf_sched_attempt_failed(cl, r, err, status, msg, -1);
    }
    return QF_CONN_FREE;
}

static int start_connect(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    struct qf_host *h = c->host;

    for (; c->addr_i < h->naddr; c->addr_i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&h->addrs[c->addr_i];
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            int e = errno;
            snprintf(c->errmsg, sizeof(c->errmsg), "socket: %s", strerror(e));
            return e == EMFILE || e == ENFILE ? QF_ENOSPC : QF_ECONNECT;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* Best effort: without kernel support the connect is an ordinary one. */
        if (cl->flags & QF_OPT_TCP_FASTOPEN)
            setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one));
        c->fd = fd;
        h->nopen++;
        c->gen++;
        cl->st.conns_opened++;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.u64 = (uint64_t)c->gen << 32 | c->slot};
        if (epoll_ctl(cl->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            snprintf(c->errmsg, sizeof(c->errmsg), "epoll_ctl: %s", strerror(errno));
            return QF_ECONNECT;
        }
        if (connect(fd, sa, h->addrlens[c->addr_i]) == 0 || errno == EINPROGRESS)
            return 0;
        snprintf(c->errmsg, sizeof(c->errmsg), "connect to %.100s port %s: %s", h->url.host,
                 h->url.port, strerror(errno));
        close(fd);
        c->fd = -1;
        h->nopen--;
    }
    return QF_ECONNECT;
}

/* Appends the request to the slot's buffer, which keeps its high-water size. 0 or
 * QF_ENOMEM. */
static int format_request(struct qf_conn *c, const struct qf_req *r)
{
    const struct qf_req_gen *g = r->gen;
    const struct qf_host *h = r->host;
    /* A quote: its host's "GET /prefix" and "suffix HTTP/1.1...". A general request: its
     * "METHOD " and its own header block. */
    const char *head = g ? g->head : h->head, *hdrs = g ? g->hdrs : h->hdrs;
    size_t hl = g ? g->head_len : h->head_len, xl = g ? g->hdrs_len : h->hdrs_len;
    size_t tl = strlen(r->target), need = c->wlen + hl + tl + xl;

    if (need > c->wcap) {
        size_t cap = need > 2 * c->wcap ? need : 2 * c->wcap;
        char *w = qf_realloc(c->wbuf, cap);
        if (w == NULL)
            return QF_ENOMEM;
        c->wbuf = w;
        c->wcap = cap;
    }
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
    /* A body that arrives whole in one read is used where it is, in rbuf: the response is
     * handled before rbuf is read into again. Streamed bodies go through the buffer. */
    c->http.zero_copy = r->gen == NULL || r->gen->on_chunk == NULL;
    if (r->gen != NULL) {
        c->http.no_body = r->gen->no_body;
        if (c->hbuf == NULL && (c->hbuf = qf_malloc(c->hcap = 1024)) == NULL)
            return QF_ENOMEM;
        qf_http_set_hbuf(&c->http, c->hbuf, c->hcap);
        if (r->gen->on_chunk != NULL)
            c->http.body_max = SIZE_MAX; /* streamed: the buffer only ever holds one read */
    }
    return 0;
}

/* Starts an attempt for every request of the chain (one, or several when pipelining): they
 * are written back to back and answered in order. */
static int begin_batch(struct qf_conn *c, struct qf_req *chain)
{
    struct qf_client *cl = c->cl;
    int rc = 0;

    c->req = chain;
    c->ninflight = 0;
    c->write_failed = 0;
    c->wlen = c->woff = 0;
    for (struct qf_req *r = chain; r != NULL; r = r->next) {
        r->where = QF_REQ_ACTIVE;
        r->conn = c;
        r->t_start = cl->now_us;
        r->attempts++;
        c->ninflight++;
        if (r->attempts == 1 && cl->log != NULL && r->gen == NULL)
            qf_sched_log(cl, "Making request for %s price", r->symbol);
        if (rc == 0)
            rc = format_request(c, r);
    }
    return rc < 0 ? rc : expect_response(c);
}

/* A new connection for the chain r in a free slot. Failures become the attempt's outcome. */
void qf_conn_open(struct qf_conn *c, struct qf_host *h, struct qf_req *r)
{
    struct qf_client *cl = c->cl;

    c->host = h;
    c->nreq = 0;
    c->addr_i = 0;
    c->t_connected = c->t_tls = 0;
    conn_set_state(c, QF_CONN_CONNECTING);
    int rc = begin_batch(c, r);
    c->t_open = cl->now_us;
    arm(c, cl->now_us + connect_limit(cl, r));
    if (rc < 0) {
        conn_fail(c, rc, "out of memory");
        return;
    }
    rc = start_connect(c);
    if (rc == QF_ENOSPC && h->nopen > 0) {
        /* Out of fds: live with the connections we have and queue the requests again. */
        h->max = h->nopen;
        c->req = NULL;
        c->ninflight = 0;
        qf_conn_close(c);
        requeue_front(cl, h, r, 0);
        return;
    }
    if (rc < 0) {
        conn_fail(c, QF_ECONNECT, c->errmsg);
        return;
    }
    qf_conn_step(c, 0);
}

/* A parked connection takes the next request (or chain of pipelined requests). */
void qf_conn_assign(struct qf_conn *c, struct qf_req *r)
{
    struct qf_client *cl = c->cl;

    conn_set_state(c, QF_CONN_SEND);
    int rc = begin_batch(c, r);
    c->t_open = 0;
    if (c->host->serve_us == 0)
        c->t_sent = qf_now_us(); /* for measure_serve() */
    arm(c, cl->now_us + r->timeout_us);
    if (rc < 0) {
        conn_fail(c, rc, "out of memory");
        return;
    }
    qf_conn_step(c, 0);
}

/* Closes a connected but unused connection: its requests go back to the front of the queue,
 * not counted as attempts, for the connections that are busy anyway. */
static int spare(struct qf_conn *c)
{
    struct qf_req *chain = c->req;

    c->cl->st.conns_unused++;
    c->req = NULL;
    c->ninflight = 0;
    qf_conn_close(c);
    requeue_front(c->cl, c->host, chain, 0);
    return QF_CONN_FREE;
}

static int start_tls(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;

    if (qf_tls_open(&c->tls, &cl->tls, c->fd, c->host->url.host, &c->host->cache) < 0)
        return conn_fail(c, QF_ENOMEM, "cannot create TLS session");
    /* 0-RTT only with a resumable session that allows the whole request: a GET may be
     * replayed by an attacker, which the user accepted with the flag. */
    c->early = (cl->flags & QF_OPT_EARLY_DATA) && qf_tls_early_capacity(&c->tls) >= c->wlen;
    c->t_hs = qf_now_us(); /* fresh: the loop's clock can be a long turn behind */
    return QF_CONN_HANDSHAKE;
}

/* What a handshake takes here: the host's first full one as measured (a slow client, a
 * sanitizer build), never less than the nominal QF_HANDSHAKE_US. Holds wait this long for
 * the answers that decide them. */
static int64_t handshake_us(const struct qf_host *h)
{
    return h->hs_us > QF_HANDSHAKE_US ? h->hs_us : QF_HANDSHAKE_US;
}

/* A session ticket for host h is on its way: a handshake is running, or a connection's first
 * answer, which the server's tickets precede, is still due. */
static int ticket_coming(const struct qf_client *cl, const struct qf_host *h)
{
    for (uint32_t i = 0; i < cl->nconns; i++) {
        const struct qf_conn *o = &cl->conns[i];
        if (o->host == h && (o->state == QF_CONN_HANDSHAKE ||
                             ((o->state == QF_CONN_SEND || o->state == QF_CONN_RECV) &&
                              o->nreq == 0 && o->t_open != 0)))
            return 1;
    }
    return 0;
}

/* Whether the loop spent at least half the time since the last sample (at most one a
 * millisecond) handling events rather than waiting for them: then this process is what makes
 * handshakes slow (a small board, a loaded machine, valgrind), and one more full handshake
 * would compete with the others for it. Time inside handlers counts even when the process is
 * preempted there, which a CPU clock would miss on a crowded machine. */
static int loop_busy(struct qf_client *cl)
{
    /* Every held connection asks as its timer fires (a thousand in one turn with -c 1000):
     * one clock read per loop turn answers them all. */
    if (cl->busy_turn_us == cl->now_us)
        return cl->busy;
    cl->busy_turn_us = cl->now_us;
    /* A fresh clock (a loop turn can be long), and this turn's time so far counts too. */
    int64_t wall_us = qf_now_us();
    int64_t busy_us = cl->busy_us + (wall_us - cl->now_us);

    if (cl->busy_wall_us != 0 && wall_us - cl->busy_wall_us < QF_HANDSHAKE_US)
        return cl->busy;
    cl->busy =
        cl->busy_wall_us != 0 && 2 * (busy_us - cl->busy_at_us) >= wall_us - cl->busy_wall_us;
    cl->busy_wall_us = wall_us;
    cl->busy_at_us = busy_us;
    return cl->busy;
}

/* A held connection may wait on for a ticket: within QF_HOLD_MAX_US of its connect, or for
 * as long as this process is busy, leaving half the connect timeout for its handshake. */
static int may_wait(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    int64_t next_us = cl->now_us + QF_HANDSHAKE_US;

    return next_us < c->t_connected + QF_HOLD_MAX_US ||
           (next_us < c->t_open + connect_limit(cl, c->req) / 2 && loop_busy(cl));
}

/* The handshake of a held connection: started with the connect's deadline back, or skipped
 * when the host's other connections are enough (qf_sched_want) or it cannot be used. While
 * the round trip is short next to a handshake's CPU (the reason it was held), it also waits
 * for a session ticket another connection is about to bring, as may_wait() allows: a
 * resumption skips the certificate check and the server's signature. A server
 * sends two tickets after a full handshake and one after a resumption, so connections
 * resume in a chain. coming: NULL when the wait is over (an event on the socket); else
 * ticket_coming()'s answer shared by one pass over the held connections, -1 until asked. The
 * hold's own timer asks too: on a busy machine it can fire before the answer that measures the
 * server, and a ticket on its way is still worth the wait. */
static int unhold(struct qf_conn *c, int *coming)
{
    struct qf_client *cl = c->cl;
    struct qf_host *h = c->host;

    if (h->fatal || (h->nstarted > 0 && h->nstarted >= qf_sched_want(h)))
        return spare(c);
    if (coming != NULL && h->cache.n == 0 && may_wait(c)) {
        if (*coming < 0)
            *coming = ticket_coming(cl, h);
        if (*coming) {
            arm(c, cl->now_us + QF_HANDSHAKE_US);
            return QF_CONN_HELD;
        }
    }
    arm(c, c->t_open + connect_limit(cl, c->req));
    if (coming != NULL)
        *coming = 1; /* this handshake brings a ticket */
    return start_tls(c);
}

static int after_connect(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    struct qf_host *h = c->host;

    c->t_connected = cl->now_us;
    if (!h->url.tls) {
        arm(c, c->t_start + c->req->timeout_us);
        return QF_CONN_SEND;
    }
    /* A Fast Open connect returns at once: no round trip to learn from. The kernel's sample
     * from the SYN exchange is preferred: the loop's clock also counts the time this process
     * took to get back to the socket (other connects, a loaded machine, valgrind). */
    if (h->rtt_us == 0 && !(cl->flags & QF_OPT_TCP_FASTOPEN)) {
        struct tcp_info ti;
        socklen_t tl = sizeof(ti);
        int64_t loop_us = c->t_connected - c->t_open;
        if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 &&
            tl >= offsetof(struct tcp_info, tcpi_rtt) + sizeof(ti.tcpi_rtt) && ti.tcpi_rtt > 0 &&
            (int64_t)ti.tcpi_rtt < loop_us)
            loop_us = ti.tcpi_rtt;
        h->rtt_us = loop_us > 0 ? loop_us : 1;
    }
    /* Another connection is already handshaking and the round trip is short next to a
     * handshake: wait for that connection's first answer before spending one more handshake
     * on this host; but no longer than a handshake's time past its request (a slow server
     * makes parallel connections worth it) and never more than QF_HOLD_MAX_US. */
    if (h->nstarted > 0 && h->serve_us == 0 && h->rtt_us > 0 && h->rtt_us < QF_HANDSHAKE_US) {
        arm(c, cl->now_us + QF_HOLD_MAX_US);
        if (cl->busy_wall_us == 0)
            loop_busy(cl); /* the first sample: what the first hold's end compares with */
        return QF_CONN_HELD;
    }
    if (h->nstarted > 0 && h->nstarted >= qf_sched_want(h))
        return spare(c);
    return start_tls(c);
}

/* The held connections of host h wait until at_us at most. */
static void shorten_holds(struct qf_client *cl, struct qf_host *h, int64_t at_us)
{
    for (uint32_t i = 0; i < cl->nconns; i++) {
        struct qf_conn *o = &cl->conns[i];
        if (o->state == QF_CONN_HELD && o->host == h && o->timer.at_us > at_us)
            arm(o, at_us);
    }
}

/* Ends a hold from outside the connection's own step (a timer, another connection's answer,
 * a ticket). With coming non-NULL it may go on waiting for a ticket. */
static void end_hold(struct qf_conn *c, int *coming)
{
    int next = unhold(c, coming);
    if (next != QF_CONN_FREE && next != QF_CONN_HELD) {
        conn_set_state(c, (enum qf_conn_state)next);
        qf_conn_step(c, 0);
    }
}

/* The server's time is measured, or a ticket arrived: the held connections are started or
 * closed by what qf_sched_want() now says, or wait on for a ticket. */
static void release_held(struct qf_client *cl, struct qf_host *h)
{
    int coming = -1;
    for (uint32_t i = 0; i < cl->nconns && h->nheld > 0; i++) {
        if (cl->conns[i].state == QF_CONN_HELD && cl->conns[i].host == h)
            end_hold(&cl->conns[i], &coming);
    }
}

/* A held connection: an error or a close from the server ends the wait (the handshake then
 * reports it); anything else waits for the timer, the first response or a ticket. */
static int on_held(struct qf_conn *c, uint32_t events)
{
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
        return QF_AGAIN;
    return unhold(c, NULL);
}

static int on_connecting(struct qf_conn *c, uint32_t events)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        return QF_AGAIN;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr == 0)
        return after_connect(c);
    snprintf(c->errmsg, sizeof(c->errmsg), "connect to %.100s port %s: %s", c->host->url.host,
             c->host->url.port, strerror(soerr));
    /* Try the host's next address on the same slot. */
    close(c->fd);
    c->fd = -1;
    c->host->nopen--;
    c->addr_i++;
    if (c->addr_i < c->host->naddr && start_connect(c) == 0)
        return QF_AGAIN;
    return conn_fail(c, QF_ECONNECT, c->errmsg);
}

static int on_handshake(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;

    while (c->early && c->woff < c->wlen) {
        ssize_t n = qf_tls_write_early(&c->tls, c->wbuf + c->woff, c->wlen - c->woff, c->errmsg,
                                       sizeof(c->errmsg));
        if (n == QF_WANT_READ || n == QF_WANT_WRITE) {
            c->want = (int)n;
            return QF_AGAIN;
        }
        if (n < 0)
            return conn_fail(c, (int)n, c->errmsg);
        c->woff += (size_t)n;
    }
    int rc = qf_tls_handshake(&c->tls, c->errmsg, sizeof(c->errmsg));

    if (rc == QF_WANT_READ || rc == QF_WANT_WRITE) {
        c->want = rc;
        return QF_AGAIN;
    }
    if (rc == QF_ECERT) {
        /* Nothing is ever written to an unverified peer, and no other request to this host
         * may be: the certificate will not get better within this run. */
        struct qf_host *h = c->host;
        if (!h->fatal) {
            h->fatal = QF_ECERT;
            snprintf(h->fatal_msg, sizeof(h->fatal_msg), "%s", c->errmsg);
        }
        struct qf_req *r = qf_conn_detach(c);
        if (r != NULL)
            qf_sched_finish(cl, r, QF_ECERT, 0, h->fatal_msg, NULL);
        return QF_CONN_FREE;
    }
    if (rc == QF_ETLS) {
        /* A refused handshake (no common version or cipher, an alert) repeats on retry. */
        struct qf_req *r = qf_conn_detach(c);
        if (r != NULL)
            qf_sched_finish(cl, r, QF_ETLS, 0, c->errmsg, NULL);
        return QF_CONN_FREE;
    }
    if (rc < 0)
        return conn_fail(c, rc, c->errmsg);
    c->t_tls = cl->now_us;
    if (cl->log != NULL)
        qf_sched_log(cl, "conn %u: %s %s, %s", c->slot, qf_tls_version_of(&c->tls),
                     qf_tls_suite(&c->tls), qf_tls_resumed(&c->tls) ? "resumed" : "full handshake");
    if (qf_tls_resumed(&c->tls)) {
        cl->st.tls_resumed++;
    } else {
        cl->st.tls_full++;
        if (c->host->hs_us == 0) {
            int64_t hs_us = qf_now_us() - c->t_hs;
            c->host->hs_us = hs_us > 0 ? hs_us : 1;
        }
    }
    if (c->host->serve_us == 0) /* its first answer is due about a handshake from now */
        shorten_holds(cl, c->host, cl->now_us + 2 * handshake_us(c->host));
    arm(c, c->t_start + c->req->timeout_us);
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
        ssize_t n;
        if (c->host->url.tls) {
            n = qf_tls_write(&c->tls, c->wbuf + c->woff, c->wlen - c->woff, c->errmsg,
                             sizeof(c->errmsg));
            if (n == QF_WANT_READ || n == QF_WANT_WRITE) {
                c->want = (int)n;
                return QF_AGAIN;
            }
        } else {
            n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return QF_AGAIN;
            if (n < 0) {
                snprintf(c->errmsg, sizeof(c->errmsg), "connection closed (send: %s)",
                         strerror(errno));
                n = QF_ECLOSED;
            }
        }
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
     * arrival raises a fresh edge (EPOLLET): a read now would almost always be an EAGAIN
     * syscall (0.65 of them per request at 10,000 tickers over 8 connections). */
    conn_set_state(c, QF_CONN_RECV);
    return QF_AGAIN;
}

/* Grows whichever buffer the parser lacks room in to take len more bytes. */
static int grow_body(struct qf_conn *c, size_t len)
{
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
    char *b = qf_realloc(c->body, cap);
    if (b == NULL)
        return QF_ENOMEM;
    c->body = b;
    c->body_cap = cap;
    qf_http_set_body(&c->http, b, cap);
    return 0;
}

/* Bytes already waiting after the last expected response belong to no request: parking the
 * connection would hand them to the next one as its answer. With read-ahead OpenSSL takes all
 * the socket held in one read, so only its buffer needs a look (a session ticket there is
 * consumed by the read and is not app data); a plain read that did not fill the buffer left
 * the socket empty. Bytes arriving later wake the parked connection, which then closes. */
static int stray_bytes(struct qf_conn *c, int filled)
{
    char b[64];

    if (c->host->url.tls) {
        if (!qf_tls_pending(&c->tls))
            return 0;
        ssize_t n = qf_tls_read(&c->tls, b, sizeof(b), NULL, 0);
        return n != QF_WANT_READ && n != QF_WANT_WRITE;
    }
    if (!filled)
        return 0;
    ssize_t n = recv(c->fd, b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EINTR);
}

/* Measures the server's time per request for qf_sched_want(), with a fresh clock: the loop's
 * may not have moved since the request went out. A connection's first answer also carries
 * the server's end of the handshake, so a second answer is awaited when requests are
 * queued (held connections wait at most a handshake's time more for it). */
static void measure_serve(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    struct qf_host *h = c->host;
    int64_t now_us = qf_now_us(), serve_us;

    if (c->nreq == 0 && h->nqueued > 0) {
        shorten_holds(cl, h, now_us + handshake_us(h));
        return;
    }
    serve_us = now_us - (c->nreq == 0 ? c->t_tls : c->t_sent);
    h->serve_us = serve_us > 0 ? serve_us : 1; /* on_complete() then releases the holds */
}

/* The head request's response is complete: hand it to the scheduler, then park or close,
 * or go on with the next pipelined response. more_bytes: the read held bytes after it;
 * filled: that read filled the buffer, so the socket may hold more.
 * Returns QF_CONN_RECV when another response is expected on this connection. */
static int on_complete(struct qf_conn *c, int more_bytes, int filled)
{
    struct qf_client *cl = c->cl;
    struct qf_req *r = c->req, *next = r->next;
    /* Bytes after the last expected response are not part of anything: never reuse. */
    int keep = c->http.keep_alive && !c->write_failed && (next != NULL || !more_bytes);

    qf_heap_del(&cl->timers, &c->timer);
    if (c->host->serve_us == 0 && c->t_tls != 0)
        measure_serve(c);
    c->nreq++;
    /* Once the server's time is measured, holds end by qf_sched_want() and tickets: this
     * answer may have brought one, or shown that none is coming. */
    if (c->host->nheld > 0 && c->host->serve_us != 0)
        release_held(cl, c->host);
    if (!keep) {
        qf_conn_detach(c);
    } else if (next == NULL && stray_bytes(c, filled)) {
        qf_conn_detach(c);
        keep = 0;
    } else if (next == NULL) {
        c->req = NULL;
        c->ninflight = 0;
        conn_set_state(c, QF_CONN_PARKED);
        c->host->idle[c->host->nidle++] = c;
        if (c->host->nqueued == 0 && c->host->url.tls)
            qf_tls_idle(&c->tls); /* no work queued: idle until the caller adds some */
    } else {
        c->req = next;
        c->ninflight--;
    }
    r->next = NULL;
    /* The callback may add requests (dispatched after this event) or cancel some: those on
     * this connection are only flagged while it is being stepped. */
    qf_sched_response(cl, r, c);
    if (!keep || next == NULL)
        return QF_AGAIN;
    if (expect_response(c) < 0) {
        conn_fail(c, QF_ENOMEM, "out of memory");
        return QF_CONN_FREE;
    }
    arm(c, cl->now_us + c->req->timeout_us);
    return QF_CONN_RECV;
}

/* Hands status and headers to on_head before any body byte is delivered. Returns non-zero
 * when the callback aborted the request (the slot is then free). */
static int head(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    struct qf_req *r = c->req;

    c->head_seen = 1;
    size_t n = qf_sched_headers(cl, &c->http);
    cl->in_chunk = r;
    int stop = r->gen->on_head(c->http.status, n ? cl->hdrv : NULL, n, r->gen->udata);
    cl->in_chunk = NULL;
    if (!stop)
        return 0;
    int status = c->http.status;
    qf_conn_detach(c);
    qf_sched_finish(cl, r, QF_ECANCELED, status, "aborted by on_head", NULL);
    return 1;
}

/* Hands the body bytes of this read to the request's on_chunk; the buffer is then reused.
 * Returns non-zero when the callback aborted the request (the slot is then free). */
static int stream(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;
    struct qf_req *r = c->req;

    cl->in_chunk = r;
    int stop = r->gen->on_chunk(c->http.body, c->http.body_len, r->gen->udata);
    cl->in_chunk = NULL;
    r->gen->body_seen += c->http.body_len;
    c->http.body_len = 0;
    if (!stop)
        return 0;
    int status = c->http.status;
    qf_conn_detach(c);
    qf_sched_finish(cl, r, QF_ECANCELED, status, "aborted by on_chunk", NULL);
    return 1;
}

/* The parser rejected the response; llhttp errors are sticky, so the connection goes too. */
static int parse_fail(struct qf_conn *c, int err)
{
    struct qf_client *cl = c->cl;
    struct qf_req *r = c->req;
    const char *what = err == QF_EBODY     ? "response body larger than 8 MiB"
                       : err == QF_EHEADER ? "response header block too large"
                                           : "malformed HTTP response";
    int status = c->http.status;

    qf_conn_detach(c);
    qf_sched_attempt_failed(cl, r, err, status, what, -1);
    return QF_CONN_FREE;
}

static int on_recv(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;

    for (;;) {
        ssize_t n;
        if (c->host->url.tls) {
            n = qf_tls_read(&c->tls, c->rbuf, sizeof(c->rbuf), c->errmsg, sizeof(c->errmsg));
            if (n == QF_WANT_READ || n == QF_WANT_WRITE) {
                c->want = (int)n;
                if (c->write_failed)
                    break;
                return QF_AGAIN;
            }
        } else {
            n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (c->write_failed)
                    break;
                return QF_AGAIN;
            }
            if (n < 0) {
                snprintf(c->errmsg, sizeof(c->errmsg), "connection closed (recv: %s)",
                         strerror(errno));
                n = QF_ECLOSED;
            }
        }
        if (n < 0)
            return conn_fail(c, (int)n, c->errmsg);
        if (n == 0) {
            if (qf_http_finish(&c->http) == 0) {
                c->http.keep_alive = 0;
                return on_complete(c, 0, 0);
            }
            if (c->got_byte)
                snprintf(c->errmsg, sizeof(c->errmsg),
                         "connection closed before the response was complete");
            else
                snprintf(c->errmsg, sizeof(c->errmsg),
                         "connection closed before any response byte");
            return conn_fail(c, QF_ECLOSED, c->errmsg);
        }
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
                if (grow_body(c, left) < 0)
                    return conn_fail(c, QF_ENOMEM, "out of memory for the response body");
            }
            if (used < 0)
                return parse_fail(c, (int)used);
            off += (size_t)used;
            const struct qf_req_gen *g = c->req->gen;
            if (g != NULL && g->on_head != NULL && c->http.headers_done && !c->head_seen &&
                head(c) != 0)
                return QF_CONN_FREE;
            if (g != NULL && g->on_chunk != NULL && c->http.body_len > 0 && stream(c) != 0)
                return QF_CONN_FREE;
            if (!c->http.complete)
                break;
            int next = on_complete(c, off < (size_t)n, (size_t)n == sizeof(c->rbuf));
            if (next != QF_CONN_RECV)
                return next;
        }
    }
    /* The write failed and the peer said nothing complete. */
    return conn_fail(c, QF_ECLOSED, c->errmsg);
}

/* An event on an idle connection: the server closed it, or sent bytes nobody asked for. */
static int on_parked(struct qf_conn *c)
{
    char b[256];
    ssize_t n;

    if (c->host->url.tls) {
        n = qf_tls_read(&c->tls, b, sizeof(b), NULL, 0);
        if (n == QF_WANT_READ || n == QF_WANT_WRITE)
            return QF_AGAIN; /* e.g. a TLS 1.3 session ticket, now stored */
    } else {
        n = recv(c->fd, b, sizeof(b), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return QF_AGAIN;
    }
    qf_conn_close(c);
    return QF_CONN_FREE;
}

static void conn_step(struct qf_conn *c, uint32_t events);

void qf_conn_step(struct qf_conn *c, uint32_t events)
{
    const struct qf_conn *outer = c->cl->stepping;

    c->cl->stepping = c;
    conn_step(c, events);
    c->cl->stepping = outer;
}

static void conn_step(struct qf_conn *c, uint32_t events)
{
    for (;;) {
        int next;
        switch (c->state) {
        case QF_CONN_CONNECTING:
            next = on_connecting(c, events);
            break;
        case QF_CONN_HELD:
            next = on_held(c, events);
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
        case QF_CONN_FREE:
        default:
            return;
        }
        if (next == QF_AGAIN || next == QF_CONN_FREE)
            return;
        conn_set_state(c, (enum qf_conn_state)next);
    }
}

void qf_conn_timeout(struct qf_conn *c)
{
    struct qf_client *cl = c->cl;

    if (c->state == QF_CONN_HELD) { /* no answer yet: go on, or wait on for a ticket */
        /* The hold timers that fire in one turn share one ticket_coming() answer, as
         * release_held()'s pass does: with -c 1000, each would scan every slot. */
        struct qf_host *h = c->host;
        if (h->coming_us != cl->now_us) {
            h->coming_us = cl->now_us;
            h->coming = -1;
        }
        end_hold(c, &h->coming);
        return;
    }
    int64_t req_us = c->req != NULL ? c->req->timeout_us : cl->timeout_us;
    int connecting = c->state == QF_CONN_CONNECTING || c->state == QF_CONN_HANDSHAKE;
    const char *phase = c->state == QF_CONN_CONNECTING  ? "connecting"
                        : c->state == QF_CONN_HANDSHAKE ? "in the TLS handshake"
                        : c->got_byte                   ? "receiving the response"
                                                        : "waiting for the response";
    int64_t limit = connecting && cl->connect_timeout_us < req_us ? cl->connect_timeout_us
                                                                   : req_us;

    snprintf(c->errmsg, sizeof(c->errmsg), "timed out after %.1f s %s", (double)limit / 1e6,
             phase);
    conn_fail(c, QF_ETIMEOUT, c->errmsg);
}
