/* Public API (include/qfetch.h): client lifetime, name resolution, the epoll/timerfd loop.
 * Every connection slot and its buffers are allocated here, up front; the loop then only
 * allocates a request record per qf_client_add() and grows buffers to their high-water mark. */
#include <errno.h>
#include <netdb.h>
#include <arpa/inet.h>
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

#include "engine/engine.h"

#define TIMERFD_TAG UINT64_MAX
#define DEFAULT_UA                                                                            \
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "                 \
    "Chrome/131.0.0.0 Safari/537.36"

int64_t qf_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

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
    default: return "unknown error";
    }
}

/* "HOST:PORT:ADDR" as curl's --resolve; ADDR may be a bracketed IPv6 literal. */
static int resolve_override(struct qf_host *h, const char *const *list, char *err,
                            size_t errlen)
{
    for (; list != NULL && *list != NULL; list++) {
        const char *e = *list, *c1 = strchr(e, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c1 == NULL || c2 == NULL || c1 == e) {
            snprintf(err, errlen, "--resolve wants HOST:PORT:ADDR, got '%s'", e);
            return QF_EINVAL;
        }
        char addr[64];
        const char *a = c2 + 1;
        size_t alen = strlen(a);
        if (alen >= 2 && a[0] == '[' && a[alen - 1] == ']') {
            a++;
            alen -= 2;
        }
        if (alen == 0 || alen >= sizeof(addr)) {
            snprintf(err, errlen, "--resolve: bad address in '%s'", e);
            return QF_EINVAL;
        }
        memcpy(addr, a, alen);
        addr[alen] = '\0';
        char *end;
        long port = strtol(c1 + 1, &end, 10);
        if (end != c2 || port < 1 || port > 65535) {
            snprintf(err, errlen, "--resolve: bad port in '%s'", e);
            return QF_EINVAL;
        }
        struct sockaddr_in *s4 = (struct sockaddr_in *)&h->addrs[0];
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&h->addrs[0];
        memset(&h->addrs[0], 0, sizeof(h->addrs[0]));
        int fam;
        if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
            fam = AF_INET;
        } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
            fam = AF_INET6;
        } else {
            snprintf(err, errlen, "--resolve: '%s' is not an IP address", addr);
            return QF_EINVAL;
        }
        if ((size_t)(c1 - e) != strlen(h->url.host) ||
            strncasecmp(e, h->url.host, (size_t)(c1 - e)) != 0 || port != atol(h->url.port))
            continue;
        if (fam == AF_INET) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)port);
            h->addrlens[0] = sizeof(*s4);
        } else {
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((uint16_t)port);
            h->addrlens[0] = sizeof(*s6);
        }
        h->naddr = 1;
        return 1;
    }
    return 0;
}

/* One blocking lookup per host before the loop starts; a failure fails that host's requests. */
static void resolve(struct qf_host *h)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(h->url.host, h->url.port, &hints, &res);
    if (rc != 0) {
        h->fatal = QF_ERESOLVE;
        snprintf(h->fatal_msg, sizeof(h->fatal_msg), "could not resolve host %.100s: %s",
                 h->url.host, gai_strerror(rc));
        return;
    }
    for (struct addrinfo *ai = res; ai != NULL && h->naddr < QF_MAX_ADDRS; ai = ai->ai_next) {
        memcpy(&h->addrs[h->naddr], ai->ai_addr, ai->ai_addrlen);
        h->addrlens[h->naddr++] = ai->ai_addrlen;
    }
    freeaddrinfo(res);
}

static int make_headers(struct qf_host *h, const char *ua, char *err, size_t errlen)
{
    const struct qf_url *u = &h->url;
    int v6 = strchr(u->host, ':') != NULL;
    int dflt = strcmp(u->port, u->tls ? "443" : "80") == 0;
    char hostport[300];

    for (const char *p = ua; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "user agent contains control characters");
            return QF_EINVAL;
        }
    }
    snprintf(hostport, sizeof(hostport), "%s%s%s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "",
             dflt ? "" : ":", dflt ? "" : u->port);
#define HDRS_FMT                                                                               \
    " HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: application/json\r\n"                       \
    "Connection: keep-alive\r\n\r\n"
    int n = snprintf(NULL, 0, HDRS_FMT, hostport, ua);
    h->hdrs = qf_malloc((size_t)n + 1);
    if (h->hdrs == NULL)
        return QF_ENOMEM;
    snprintf(h->hdrs, (size_t)n + 1, HDRS_FMT, hostport, ua);
    h->hdrs_len = (size_t)n;
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
        o->connect_timeout_ms < 0 || o->retries > 100) {
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
    c->log_udata = o->log_udata;
    c->timeout_us = (o->timeout_ms ? o->timeout_ms : 10000) * 1000LL;
    c->connect_timeout_us = (o->connect_timeout_ms ? o->connect_timeout_ms : 5000) * 1000LL;
    c->retries = o->retries < 0 ? 0 : o->retries == 0 ? 2 : o->retries;
    c->rng = (uint64_t)qf_now_us() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)c;
    if (c->rng == 0)
        c->rng = 1;

    struct qf_host *h = &c->host;
    if (qf_url_parse(&h->url, o->url_template ? o->url_template : QF_DEFAULT_URL, err, elen) < 0)
        goto fail;
    if (make_headers(h, o->user_agent ? o->user_agent : DEFAULT_UA, err, elen) < 0)
        goto fail;
    int ov = resolve_override(h, o->resolve, err, elen);
    if (ov < 0)
        goto fail;
    if (ov == 0)
        resolve(h);
    if (h->url.tls && qf_tls_ctx_init(&c->tls, o->cacert, err, elen) < 0)
        goto fail;

    /* Writes to a peer that has gone raise SIGPIPE inside OpenSSL's socket BIO; a library
     * must not die of it. Only the default action is replaced, never a handler of the host. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }

    h->max = (unsigned)(o->connections ? o->connections : QF_DEFAULT_CONNECTIONS);
    c->nconns = h->max;
    c->conns = qf_calloc(c->nconns, sizeof(*c->conns));
    c->free_slots = qf_calloc(c->nconns, sizeof(*c->free_slots));
    h->idle = qf_calloc(c->nconns, sizeof(*h->idle));
    c->wcap = 4 + strlen(h->url.prefix) + 3 * QF_SYMBOL_MAX + strlen(h->url.suffix) +
              h->hdrs_len + 1;
    if (c->conns == NULL || c->free_slots == NULL || h->idle == NULL)
        goto nomem;
    for (uint32_t i = 0; i < c->nconns; i++) {
        struct qf_conn *cn = &c->conns[i];
        cn->fd = -1;
        cn->slot = i;
        cn->cl = c;
        cn->host = h;
        cn->timer.idx = -1;
        cn->timer.kind = QF_TIMER_CONN;
        cn->wbuf = qf_malloc(c->wcap);
        if (cn->wbuf == NULL)
            goto nomem;
        c->free_slots[c->nfree++] = c->nconns - 1 - i;
    }
    if (qf_heap_reserve(&c->timers, (int)c->nconns + 64) < 0)
        goto nomem;
    c->ntoks = 2048; /* a typical chart body needs a few hundred to a few thousand */
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
    return c;
nomem:
    snprintf(err, elen, "out of memory");
fail:
    qf_client_free(c);
    return NULL;
}

int qf_client_add(qf_client *c, const char *symbol)
{
    size_t n = strlen(symbol);
    char enc[3 * QF_SYMBOL_MAX + 1];

    if (n == 0 || n > QF_SYMBOL_MAX)
        return QF_EINVAL;
    for (const unsigned char *p = (const unsigned char *)symbol; *p; p++) {
        if (*p <= ' ' || *p == 0x7f)
            return QF_EINVAL;
    }
    int el = qf_symbol_encode(symbol, enc, sizeof(enc));
    if (el < 0)
        return QF_EINVAL;
    size_t pending = c->nadded - c->ndone;
    if (qf_heap_reserve(&c->timers, (int)(c->nconns + pending + 1)) < 0)
        return QF_ENOMEM;
    struct qf_req *r = qf_malloc(sizeof(*r) + n + 1 + (size_t)el + 1);
    if (r == NULL)
        return QF_ENOMEM;
    memset(r, 0, sizeof(*r));
    r->timer.idx = -1;
    r->timer.kind = QF_TIMER_REQ;
    r->index = c->nadded++;
    memcpy(r->symbol, symbol, n + 1);
    r->enc = r->symbol + n + 1;
    memcpy(r->enc, enc, (size_t)el + 1);
    qf_sched_push(&c->host, r, 0);
    return (int)r->index;
}

int qf_client_fd(const qf_client *c)
{
    return c->epfd;
}

int qf_client_timeout_ms(const qf_client *c)
{
    if (c->host.qhead != NULL && !c->host.fatal &&
        (c->host.nidle > 0 || (c->host.nopen < c->host.max && c->nfree > 0)))
        return 0;
    if (c->host.qhead != NULL && c->host.fatal)
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
        if (t->kind == QF_TIMER_CONN)
            qf_conn_timeout((struct qf_conn *)((char *)t - offsetof(struct qf_conn, timer)));
        else
            qf_sched_timer(c, (struct qf_req *)((char *)t - offsetof(struct qf_req, timer)));
    }
}

/* One loop turn: I/O events, then expired deadlines, then queued requests. */
static int turn(struct qf_client *c, int timeout_ms)
{
    struct epoll_event ev[64];
    int n = epoll_wait(c->epfd, ev, 64, timeout_ms);
    if (n < 0 && errno != EINTR)
        return QF_EINVAL;
    c->now_us = qf_now_us();
    for (int i = 0; i < n; i++) {
        uint64_t tag = ev[i].data.u64;
        if (tag == TIMERFD_TAG) {
            uint64_t ticks;
            if (read(c->tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                return QF_EINVAL;
            c->tfd_armed_us = 0;
            continue;
        }
        struct qf_conn *cn = &c->conns[(uint32_t)tag];
        if (cn->gen != (uint32_t)(tag >> 32) || cn->state == QF_CONN_FREE)
            continue; /* the slot got a new fd since this event was queued */
        qf_conn_step(cn, ev[i].events);
    }
    run_timers(c);
    qf_sched_dispatch(c);
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
    struct qf_host *h = &c->host;
    for (uint32_t i = 0; c->conns != NULL && i < c->nconns; i++) {
        struct qf_conn *cn = &c->conns[i];
        qf_free(cn->req);
        cn->req = NULL;
        if (cn->state != QF_CONN_FREE)
            qf_conn_close(cn);
        qf_free(cn->wbuf);
        if (cn->body_cap)
            qf_free(cn->body);
    }
    for (int i = 0; i < c->timers.n; i++) {
        struct qf_timer *t = c->timers.v[i];
        if (t->kind == QF_TIMER_REQ)
            qf_free((char *)t - offsetof(struct qf_req, timer));
    }
    while (h->qhead != NULL) {
        struct qf_req *r = h->qhead;
        h->qhead = r->next;
        qf_free(r);
    }
    qf_heap_free(&c->timers);
    qf_free(c->conns);
    qf_free(c->free_slots);
    qf_free(h->idle);
    qf_free(h->hdrs);
    qf_free(c->toks);
    qf_url_free(&h->url);
    qf_tls_cache_free(&h->cache);
    qf_tls_ctx_free(&c->tls);
    if (c->epfd >= 0)
        close(c->epfd);
    if (c->tfd >= 0)
        close(c->tfd);
    qf_free(c);
}
