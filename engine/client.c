/* Public API (include/qfetch.h): client lifetime, adding and cancelling requests, and the
 * epoll/timerfd loop that steps connections, fires deadlines and lets the scheduler dispatch.
 * Every connection slot and its buffers are allocated here, up front; the loop then only
 * allocates request records up to the most in use at once (sched.c reuses finished quote
 * records) and grows buffers to their high-water mark. */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "engine/alloc.h"
#include "engine/client.h"
#include "engine/conn.h"
#include "engine/host.h"
#include "engine/sched.h"
#include "engine/timer.h"

#define TIMERFD_TAG UINT64_MAX
#define DEFAULT_UA                                                                            \
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "                 \
    "Chrome/131.0.0.0 Safari/537.36"

const char *qf_strerror(int err)
{
    switch (err) {
    case QF_OK: return "success";
    case QF_ENOMEM: return "out of memory";
    case QF_EINVAL: return "invalid argument";
    case QF_ERESOLVE: return "could not resolve host";
    case QF_ECONNECT: return "could not connect";
    case QF_ETLS: return "TLS failure";
    case QF_ECERT: return "certificate verification failed";
    case QF_ETIMEOUT: return "timed out";
    case QF_ECLOSED: return "connection closed before the response was complete";
    case QF_EHTTP: return "HTTP error status";
    case QF_EPROTO: return "malformed HTTP response";
    case QF_EBODY: return "response body too large";
    case QF_EHEADER: return "response header block too large";
    case QF_EJSON: return "invalid JSON in response body";
    case QF_ENOPRICE: return "no price in response";
    case QF_ENOSPC: return "buffer too small";
    case QF_ECONFIG: return "unusable configuration";
    case QF_ERANGE: return "price out of range";
    case QF_ECANCELED: return "canceled";
    case QF_EPROXY: return "proxy refused the request";
    default: return "unknown error";
    }
}

const char *qf_version(void)
{
    static char v[128];
    if (v[0] == '\0')
        snprintf(v, sizeof(v), "qfetch %s, %s", QF_VERSION, qf_tls_version());
    return v;
}

static char *dup_str(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = qf_malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static int has_ctl(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    }
    return 0;
}

int qf_client_reserve_timers(struct qf_client *cl, size_t extra)
{
    size_t n = cl->nconns + cl->nrecords + cl->nhosts + 1 + extra;
    return n > INT32_MAX ? QF_ENOMEM : qf_heap_reserve(&cl->timers, (int)n);
}

int qf_client_tls_ctx(struct qf_client *cl, char *err, size_t errlen)
{
    if (cl->tls_ready)
        return 0;
    if (qf_tls_ctx_init(&cl->tls, cl->cacert, err, errlen) < 0)
        return QF_ECONFIG;
    if ((cl->flags & QF_OPT_HTTP1) && qf_tls_ctx_http1(&cl->tls) < 0) {
        qf_tls_ctx_free(&cl->tls);
        snprintf(err, errlen, "cannot set the ALPN protocols");
        return QF_ECONFIG;
    }
    cl->tls_ready = 1;
    return 0;
}

qf_client *qf_client_new(const struct qf_options *o, qf_result_fn *cb, void *udata, char *errbuf,
                         size_t errlen)
{
    static const struct qf_options dflt;
    char tmp[320];
    char *err = errbuf != NULL && errlen > 0 ? errbuf : tmp;
    size_t elen = errbuf != NULL && errlen > 0 ? errlen : sizeof(tmp);

    if (o == NULL)
        o = &dflt;
    err[0] = '\0';
    if (o->connections < 0 || o->connections > 10000 || o->timeout_ms < 0 ||
        o->connect_timeout_ms < 0 || o->retries > 100 || o->max_total_connections < 0 ||
        o->max_total_connections > 100000 || o->pipeline < 0 || o->pipeline > 1000) {
        snprintf(err, elen, "option out of range");
        return NULL;
    }
    struct qf_client *c = qf_calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, elen, "out of memory");
        return NULL;
    }
    c->epfd = c->tfd = -1;
    c->cb = cb;
    c->udata = udata;
    c->log = o->log;
    c->warn = o->warn;
    c->log_udata = o->log_udata;
    c->flags = o->flags;
    if (c->flags & QF_OPT_NO_EXIT_CLEANUP)
        qf_tls_init_no_exit_cleanup(); /* before anything else touches OpenSSL */
    c->pipeline = o->pipeline > 1 ? (unsigned)o->pipeline : 1;
    c->timeout_us = (o->timeout_ms ? o->timeout_ms : 10000) * 1000LL;
    c->connect_timeout_us = (o->connect_timeout_ms ? o->connect_timeout_ms : 5000) * 1000LL;
    c->retries = o->retries < 0 ? 0 : o->retries == 0 ? 2 : o->retries;
    c->rng = (uint64_t)qf_now_us() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)c;
    if (c->rng == 0)
        c->rng = 1;
    c->max_per_host = (unsigned)(o->connections ? o->connections : QF_DEFAULT_CONNECTIONS);
    c->h2_streams = (unsigned)(o->connections ? o->connections : QF_DEFAULT_STREAMS);
    c->nconns = o->max_total_connections ? (uint32_t)o->max_total_connections : c->max_per_host;

    const char *ua = o->user_agent ? o->user_agent : DEFAULT_UA;
    if (has_ctl(ua)) {
        snprintf(err, elen, "user agent contains control characters");
        goto fail;
    }
    c->user_agent = dup_str(ua);
    c->cacert = dup_str(o->cacert);
    size_t nres = 0;
    while (o->resolve != NULL && o->resolve[nres] != NULL)
        nres++;
    c->resolve = qf_calloc(nres + 1, sizeof(*c->resolve));
    if (c->user_agent == NULL || (o->cacert && c->cacert == NULL) || c->resolve == NULL)
        goto nomem;
    for (size_t i = 0; i < nres; i++) {
        if (qf_host_check_resolve(o->resolve[i], err, elen) < 0)
            goto fail;
        if ((c->resolve[i] = dup_str(o->resolve[i])) == NULL)
            goto nomem;
    }
    if (qf_proxy_conf_init(&c->proxies, o->proxy, o->noproxy,
                           (c->flags & QF_OPT_PROXY_ENV) ? getenv : NULL, err, elen) < 0)
        goto fail;
    if (c->proxies.warning[0] != '\0' && c->warn != NULL)
        c->warn(c->proxies.warning, c->log_udata);

    if (o->session_cache != NULL) {
        if ((c->sess_path = dup_str(o->session_cache)) == NULL)
            goto nomem;
        qf_sess_load(c);
    }
    struct qf_url u;
    if (qf_url_parse(&u, o->url_template ? o->url_template : QF_DEFAULT_URL, err, elen) < 0)
        goto fail;
    if (qf_host_get(c, &u, 1) == NULL) {
        qf_url_free(&u);
        goto nomem;
    }
    if (c->hosts[0]->proxy_bad != NULL) { /* the quotes' proxy variable is unusable */
        snprintf(err, elen, "%s", c->hosts[0]->proxy_bad);
        goto fail;
    }
    /* A bad CA file is a configuration error now, not a per-request failure later. */
    if ((c->hosts[0]->url.tls || c->cacert != NULL) && qf_client_tls_ctx(c, err, elen) < 0)
        goto fail;

    /* Writes to a peer that has gone raise SIGPIPE inside OpenSSL's socket BIO; a library
     * must not die of it. Only the default action is replaced, never a handler of the host. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }

    c->conns = qf_calloc(c->nconns, sizeof(*c->conns));
    c->free_slots = qf_calloc(c->nconns, sizeof(*c->free_slots));
    /* A slot stepped from the list may join it again while its old place is still there. */
    c->ready = qf_calloc(2 * (size_t)c->nconns, sizeof(*c->ready));
    if (c->conns == NULL || c->free_slots == NULL || c->ready == NULL)
        goto nomem;
    c->body_max_total = QF_CLIENT_BODY_MAX;
    size_t wcap = c->hosts[0]->head_len + 3 * QF_SYMBOL_MAX + c->hosts[0]->hdrs_len + 1;
    for (uint32_t i = 0; i < c->nconns; i++) {
        struct qf_conn *cn = &c->conns[i];
        cn->fd = -1;
        cn->slot = i;
        cn->cl = c;
        cn->host = c->hosts[0];
        cn->timer.idx = -1;
        cn->timer.kind = QF_TIMER_CONN;
        qf_decode_init(&cn->dec);
        cn->wbuf = qf_malloc(wcap);
        if (cn->wbuf == NULL)
            goto nomem;
        cn->wcap = wcap;
        c->free_slots[c->nfree++] = c->nconns - 1 - i;
    }
    if (qf_heap_reserve(&c->timers, (int)c->nconns + 64) < 0)
        goto nomem;
    c->ntoks = 64; /* a price or currency takes 1 token, an error object about 5 */
    if ((c->toks = qf_calloc(c->ntoks, sizeof(*c->toks))) == NULL)
        goto nomem;
    if ((c->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0) {
        snprintf(err, elen, "cannot create epoll/timerfd: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TIMERFD_TAG};
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->tfd, &ev) < 0) {
        snprintf(err, elen, "epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    if (o->dns_servers != NULL && qf_resolve_init(c, o->dns_servers, err, elen) < 0)
        goto fail;
    return c;
nomem:
    snprintf(err, elen, "out of memory");
fail:
    qf_client_free(c);
    return NULL;
}

/* A quote is only packed into its host's pending list here; the scheduler makes its record
 * when a connection can take it. */
int qf_client_add(qf_client *c, const char *symbol)
{
    size_t n = strlen(symbol);

    if (n == 0 || n > QF_SYMBOL_MAX || strspn(symbol, ".") == n) /* see qf_symbol_encode */
        return QF_EINVAL;
    for (const unsigned char *p = (const unsigned char *)symbol; *p; p++) {
        if (*p <= ' ' || *p == 0x7f)
            return QF_EINVAL;
    }
    if (c->nquotes >= INT32_MAX || qf_sched_pend(c->hosts[0], symbol, n) < 0)
        return QF_ENOMEM;
    c->nadded++;
    return (int)c->nquotes++;
}

/* "Name: value" with a token name and no CR/LF; reports whether it is one of ours. */
static int header_line(const char *l, int *ours)
{
    static const char *const mine[] = {"user-agent", "accept", "connection", "accept-encoding"};
    const char *colon = strchr(l, ':');
    if (colon == NULL || colon == l || has_ctl(l))
        return QF_EINVAL;
    for (const char *p = l; p < colon; p++) {
        if (strchr("!#$%&'*+-.^_`|~", *p) == NULL && !(*p >= '0' && *p <= '9') &&
            !((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'))
            return QF_EINVAL;
    }
    size_t nl = (size_t)(colon - l);
    if (nl == 4 && strncasecmp(l, "host", 4) == 0)
        return QF_EINVAL; /* the URL decides the host */
    for (int i = 0; i < 4; i++) {
        if (nl == strlen(mine[i]) && strncasecmp(l, mine[i], nl) == 0)
            *ours |= 1 << i;
    }
    return 0;
}

int qf_client_request(qf_client *c, const struct qf_request *rq)
{
    char err[256];
    const char *path;
    struct qf_url u;
    int ours = 0;

    if (rq == NULL || rq->url == NULL || rq->on_response == NULL || rq->timeout_ms < 0 ||
        rq->retries > 100)
        return QF_EINVAL;
    const char *method = rq->method ? rq->method : "GET";
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return QF_EINVAL;
    if (qf_url_origin(&u, rq->url, &path, err, sizeof(err)) < 0)
        return QF_EINVAL;
    size_t xlen = 0;
    for (const char *const *hl = rq->headers; hl != NULL && *hl != NULL; hl++) {
        if (header_line(*hl, &ours) < 0)
            return QF_EINVAL;
        xlen += strlen(*hl) + 2;
    }
    struct qf_host *h = qf_host_get(c, &u, 0);
    if (h == NULL)
        return QF_ENOMEM;
    if (c->nbyid == c->capbyid) {
        size_t ncap = c->capbyid ? c->capbyid * 2 : 64;
        if (ncap > INT32_MAX)
            return QF_ENOMEM;
        struct qf_req **v = qf_realloc(c->byid, ncap * sizeof(*v));
        if (v == NULL)
            return QF_ENOMEM;
        c->byid = v;
        c->capbyid = ncap;
    }
    /* target, then the header block: " HTTP/1.1\r\nHost: ...\r\n" ours, theirs, "\r\n". An
     * http:// proxy is asked in absolute form, with its credentials. */
    int abs = h->proxy != NULL && !h->url.tls;
    const char *origin = abs ? "http://" : "", *hp = abs ? h->hostport : "";
    const char *auth = abs && h->proxy->auth ? h->proxy->auth : "";
    size_t plen = strlen(origin) + strlen(hp) + strlen(path) + (*path != '/');
    size_t hlen = 11 + 6 + strlen(h->hostport) + 2 + 12 + strlen(c->user_agent) + 2 + 13 + 26 +
                  strlen(auth) + sizeof(QF_ACCEPT_ENCODING) + xlen + 2;
    /* One allocation: the record, its general part right after it (sizeof keeps the alignment), then
     * the target and the header block. symbol[] is a quote's only. */
    struct qf_req *r = qf_req_new(c, sizeof(struct qf_req_general) + plen + 1 + hlen + 1);
    if (r == NULL)
        return QF_ENOMEM;
    struct qf_req_general *g = r->general = (struct qf_req_general *)(void *)(r + 1);
    memset(g, 0, sizeof(*g));
    r->host = h;
    r->target = (char *)(g + 1);
    snprintf(r->target, plen + 1, "%s%s%s%s", origin, hp, *path != '/' ? "/" : "", path);
    char *hd = r->target + plen + 1;
    int n = snprintf(hd, hlen + 1, " HTTP/1.1\r\nHost: %s\r\n%s%s%s%s%s%s", h->hostport,
                     ours & 1 ? "" : "User-Agent: ", ours & 1 ? "" : c->user_agent,
                     ours & 1 ? "" : "\r\n", ours & 2 ? "" : "Accept: */*\r\n",
                     rq->compressed && !(ours & 8) ? QF_ACCEPT_ENCODING : "",
                     ours & 4 ? "" : "Connection: keep-alive\r\n");
    n += snprintf(hd + n, hlen + 1 - (size_t)n, "%s", auth);
    for (const char *const *hl = rq->headers; hl != NULL && *hl != NULL; hl++)
        n += snprintf(hd + n, hlen + 1 - (size_t)n, "%s\r\n", *hl);
    n += snprintf(hd + n, hlen + 1 - (size_t)n, "\r\n");
    g->hdrs = hd;
    g->hdrs_len = (size_t)n;
    g->no_body = method[0] == 'H';
    g->compressed = rq->compressed != 0;
    g->method = g->no_body ? "HEAD" : "GET";
    g->head = g->no_body ? "HEAD " : "GET ";
    g->head_len = strlen(g->head);
    if (rq->timeout_ms > 0)
        r->timeout_us = rq->timeout_ms * 1000LL;
    if (rq->retries != 0)
        r->retries = rq->retries < 0 ? 0 : rq->retries;
    g->on_response = rq->on_response;
    g->on_chunk = rq->on_chunk;
    g->on_head = rq->on_head;
    g->udata = rq->udata;
    r->id = (int)c->nbyid;
    c->byid[c->nbyid++] = r;
    c->nadded++;
    qf_sched_push(h, r, 0);
    return r->id;
}

int qf_client_cancel(qf_client *c, int id)
{
    if (id < 0 || (size_t)id >= c->nbyid || c->byid[id] == NULL || c->in_chunk == c->byid[id])
        return QF_EINVAL;
    struct qf_req *r = c->byid[id];
    switch (r->where) {
    case QF_REQ_QUEUED:
        qf_sched_unlink(r->host, r);
        break;
    case QF_REQ_WAITING:
        qf_heap_del(&c->timers, &r->timer);
        break;
    case QF_REQ_ACTIVE:
        if (r->conn->state == QF_CONN_MUX) { /* RST_STREAM: the connection goes on */
            qf_conn_mux_cancel(r->conn, r);
            break;
        }
        if (r->conn == c->stepping || r->conn->req != r) {
            /* Its connection is mid-step, or r waits behind a pipelined request: the
             * scheduler drops r without a callback when its attempt ends. */
            r->cancelled = 1;
            c->byid[id] = NULL;
            return 0;
        }
        qf_conn_abort(r->conn);
        break;
    }
    qf_sched_drop(c, r);
    return 0;
}

int qf_client_fd(const qf_client *c)
{
    return c->epfd;
}

int qf_client_timeout_ms(const qf_client *c)
{
    if (c->nready > 0 || qf_sched_ready(c))
        return 0;
    const struct qf_timer *t = qf_heap_top(&c->timers);
    if (t == NULL)
        return c->ndone < c->nadded ? 1000 : -1;
    int64_t d = t->at_us - qf_now_us();
    if (d <= 0)
        return 0;
    return (int)((d + 999) / 1000);
}

static void run_timers(struct qf_client *c)
{
    struct qf_timer *t;

    while ((t = qf_heap_top(&c->timers)) != NULL && t->at_us <= c->now_us) {
        qf_heap_del(&c->timers, t);
        switch (t->kind) {
        case QF_TIMER_CONN:
            qf_conn_timeout((struct qf_conn *)((char *)t - offsetof(struct qf_conn, timer)));
            break;
        case QF_TIMER_REQ:
            qf_sched_timer(c, (struct qf_req *)((char *)t - offsetof(struct qf_req, timer)));
            break;
        case QF_TIMER_HOST:
            qf_host_timeout(c, (struct qf_host *)((char *)t - offsetof(struct qf_host, timer)));
            break;
        case QF_TIMER_DNS:
            qf_resolve_timer(c);
            break;
        case QF_TIMER_PAUSE: /* a host's rate-limit pause is over: dispatch follows */
            break;
        }
    }
}

/* Steps the connections whose read budget ran out last turn: they may hold bytes that no
 * new edge will announce. Ones that run out again wait for the next turn. */
static void run_ready(struct qf_client *c, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct qf_conn *cn = &c->conns[c->ready[i]];
        cn->ready = 0;
        if (cn->state == QF_CONN_RECV || cn->state == QF_CONN_MUX)
            qf_conn_step(cn, EPOLLIN);
    }
    c->nready -= n;
    memmove(c->ready, c->ready + n, c->nready * sizeof(*c->ready));
}

/* A full handshake verifies the server's certificate: the trust goes into the store while
 * the lookup, the SYN and the ClientHello are on their way rather than when the certificate
 * is back. Hosts with sessions to offer resume without it; a refused one loads it then. */
static void trust_early(struct qf_client *c)
{
    if (c->tls.trust_state != QF_TLS_TRUST_PEM && c->tls.trust_state != QF_TLS_TRUST_SYSTEM)
        return;
    for (unsigned i = 0; i < c->nhosts; i++) {
        const struct qf_host *h = c->hosts[i];
        if (h->url.tls && !h->fatal && (h->resolving || h->nopen > 0) &&
            h->cache.n + h->cache.npend == 0) {
            qf_tls_ctx_trust(&c->tls); /* a failure shows in the handshakes it fails */
            c->now_us = qf_now_us();
            return;
        }
    }
}

/* One loop turn: I/O events, connections with bytes left from the last turn, expired
 * deadlines, then queued requests. Every part is bounded, so a turn is too. */
static int turn(struct qf_client *c, int timeout_ms)
{
    struct epoll_event ev[64];
    uint32_t nready = c->nready;
    int n = epoll_wait(c->epfd, ev, 64, nready > 0 ? 0 : timeout_ms);
    if (n < 0 && errno != EINTR)
        return QF_EINVAL;
    c->now_us = qf_now_us();
    c->turns++;
    for (int i = 0; i < n; i++) {
        uint64_t tag = ev[i].data.u64;
        if (tag != TIMERFD_TAG && (tag & QF_RESOLVE_TAG)) {
            qf_resolve_event(c, (int)(uint32_t)tag, ev[i].events);
            continue;
        }
        if (tag == TIMERFD_TAG) {
            uint64_t ticks;
            if (read(c->tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                return QF_EINVAL;
            c->tfd_armed_us = 0;
            continue;
        }
        struct qf_conn *cn = &c->conns[(uint32_t)tag];
        if (cn->fd_gen != (uint32_t)(tag >> 32) || cn->state == QF_CONN_FREE)
            continue; /* the slot got a new fd since this event was queued */
        qf_conn_step(cn, ev[i].events);
    }
    run_ready(c, nready);
    c->now_us = qf_now_us(); /* deadlines are judged by the clock after the work */
    run_timers(c);
    qf_sched_dispatch(c);
    trust_early(c);
    return (int)(c->nadded - c->ndone);
}

static void start_clock(struct qf_client *c)
{
    if (c->t_first_step == 0) {
        c->now_us = qf_now_us();
        c->t_first_step = c->now_us;
    }
}

int qf_client_step(qf_client *c)
{
    start_clock(c);
    int left = turn(c, 0);
    if (left < 0)
        return left;
    /* The host loop polls our epoll fd: deadlines must make it readable too. */
    const struct qf_timer *t = qf_heap_top(&c->timers);
    int64_t at = t != NULL ? t->at_us : 0;
    if (at != c->tfd_armed_us) {
        struct itimerspec its = {0};
        if (at != 0) {
            its.it_value.tv_sec = at / 1000000;
            its.it_value.tv_nsec = (at % 1000000) * 1000;
        }
        timerfd_settime(c->tfd, TFD_TIMER_ABSTIME, &its, NULL);
        c->tfd_armed_us = at;
    }
    return left;
}

/* With a session cache, a run must leave it no poorer than it found it, or every other run
 * is cold: a connection that resumed (so the server hands out tickets) and has no new ticket
 * yet gets one about a round trip after its first answer when it sent early data (the server
 * sends it once the client's Finished arrives). qf_client_free() waits for those, until one
 * handshake's round trip past the last answer (at most 1 s); this returns that time, or 0 when
 * none is due. */
static int64_t tickets_due_us(const struct qf_client *c)
{
    int64_t until = 0;

    for (uint32_t i = 0; c->sess_path != NULL && i < c->nconns; i++) {
        const struct qf_conn *cn = &c->conns[i];
        int idle = cn->state == QF_CONN_PARKED || (cn->state == QF_CONN_MUX && cn->h2.nactive == 0);
        if (!idle || !cn->host->url.tls || cn->t_tls == 0 ||
            !qf_tls_resumed(&cn->tls) || qf_tls_tickets(&cn->tls) > 0)
            continue;
        /* Unspent sessions enough for as many connections as this run has: the next run
         * like it resumes every one without waiting for more (an HTTP/2 host needs one). */
        if ((unsigned)cn->host->cache.n >= cn->host->nopen)
            continue;
        int64_t rtt = cn->t_tls - cn->t_connected;
        rtt = rtt < 1000 ? 1000 : rtt > 1000000 ? 1000000 : rtt;
        if (c->t_last_done + rtt > until)
            until = c->t_last_done + rtt;
    }
    return until;
}

int qf_client_run(qf_client *c)
{
    start_clock(c);
    c->now_us = qf_now_us();
    qf_sched_dispatch(c);
    while (c->ndone < c->nadded) {
        int rc = turn(c, qf_client_timeout_ms(c));
        if (rc < 0)
            return rc;
    }
    return 0;
}

void qf_client_stats(const qf_client *c, struct qf_stats *st)
{
    *st = c->st;
    st->wall_ms = c->t_last_done > c->t_first_step
                      ? (double)(c->t_last_done - c->t_first_step) / 1000.0
                      : 0;
}

void qf_client_free(qf_client *c)
{
    if (c == NULL)
        return;
    /* After the last answer, so a caller prints its results first. */
    while (c->ndone == c->nadded && c->epfd >= 0) {
        int64_t until = tickets_due_us(c), now = qf_now_us();
        if (until <= now || turn(c, (int)((until - now + 999) / 1000)) < 0)
            break;
    }
    qf_resolve_free(c); /* first: its callbacks still see every host */
    for (uint32_t i = 0; c->conns != NULL && i < c->nconns; i++) {
        struct qf_conn *cn = &c->conns[i];
        while (cn->req != NULL) {
            struct qf_req *r = cn->req;
            cn->req = r->next;
            qf_free(r);
        }
        for (unsigned k = 0; cn->state == QF_CONN_MUX && k < cn->h2.cap; k++) {
            struct qf_req *r = cn->h2.st[k].req;
            qf_h2_release(&cn->h2, &cn->h2.st[k]);
            qf_free(r);
        }
        if (cn->state != QF_CONN_FREE)
            qf_conn_close(cn);
        qf_h2_free(c, &cn->h2);
        qf_free(cn->wbuf);
        qf_free(cn->body);
        qf_free(cn->hbuf);
        qf_decode_free(&cn->dec);
    }
    for (int i = 0; i < c->timers.n; i++) {
        struct qf_timer *t = c->timers.v[i];
        if (t->kind == QF_TIMER_REQ)
            qf_free((char *)t - offsetof(struct qf_req, timer));
    }
    while (c->spare != NULL) {
        struct qf_req *r = c->spare;
        c->spare = r->next;
        qf_free(r);
    }
    if (c->sess_path != NULL)
        qf_sess_save(c);
    qf_free(c->sess_path);
    qf_free(c->sess_text);
    for (unsigned i = 0; i < c->nhosts; i++)
        qf_host_free(c->hosts[i]);
    qf_free(c->hosts);
    qf_heap_free(&c->timers);
    qf_free(c->conns);
    qf_free(c->free_slots);
    qf_free(c->ready);
    qf_free(c->toks);
    qf_free(c->hdrv);
    qf_free(c->byid);
    qf_free(c->cacert);
    qf_free(c->user_agent);
    for (char **e = c->resolve; e != NULL && *e != NULL; e++)
        qf_free(*e);
    qf_free(c->resolve);
    qf_proxy_conf_free(&c->proxies);
    if (c->tls_ready)
        qf_tls_ctx_free(&c->tls);
    if (c->epfd >= 0)
        close(c->epfd);
    if (c->tfd >= 0)
        close(c->tfd);
    qf_free(c);
}
