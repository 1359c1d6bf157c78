/* Hosts: one per scheme, name and port, each with its request queue, idle connections,
 * resolved addresses and TLS session cache. A host resolves on its first dispatch (a --resolve
 * entry, an address literal, or a lookup in the loop), so an unused host costs nothing. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/alloc.h"
#include "engine/client.h"
#include "engine/host.h"
#include "engine/resolve.h"
#include "engine/proxy.h"
#include "engine/sched.h"

/* One IP literal (an IPv6 one may be bracketed) and port into sa. 0, or QF_EINVAL. */
static int parse_addr(const char *a, size_t alen, long port, struct sockaddr_storage *sa,
                      socklen_t *salen)
{
    char addr[64];
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;

    if (alen >= 2 && a[0] == '[' && a[alen - 1] == ']') {
        a++;
        alen -= 2;
    }
    if (alen == 0 || alen >= sizeof(addr))
        return QF_EINVAL;
    memcpy(addr, a, alen);
    addr[alen] = '\0';
    memset(sa, 0, sizeof(*sa));
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *salen = sizeof(*s4);
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *salen = sizeof(*s6);
    } else {
        return QF_EINVAL;
    }
    return 0;
}

/* Parses "HOST:PORT:ADDR[,ADDR...]" (curl's --resolve). When it names name:port (h non-NULL),
 * its addresses become h's, in the order given. Returns 1 applied, 0 not this host,
 * QF_EINVAL malformed. */
static int parse_resolve(const char *e, const char *name, const char *port, struct qf_host *h,
                         char *err, size_t errlen)
{
    const char *c1 = strchr(e, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c1 == NULL || c2 == NULL || c1 == e) {
        snprintf(err, errlen, "--resolve wants HOST:PORT:ADDR[,ADDR...], got '%.100s'", e);
        return QF_EINVAL;
    }
    char *end;
    long p = strtol(c1 + 1, &end, 10);
    if (end != c2 || p < 1 || p > 65535) {
        snprintf(err, errlen, "--resolve: bad port in '%.100s'", e);
        return QF_EINVAL;
    }
    struct sockaddr_storage sa[QF_MAX_ADDRS];
    socklen_t len[QF_MAX_ADDRS];
    int n = 0;
    for (const char *a = c2 + 1;; n++) {
        const char *comma = strchr(a, ',');
        size_t alen = comma ? (size_t)(comma - a) : strlen(a);
        if (n == QF_MAX_ADDRS) {
            snprintf(err, errlen, "--resolve: more than %d addresses in '%.100s'",
                     QF_MAX_ADDRS, e);
            return QF_EINVAL;
        }
        if (parse_addr(a, alen, p, &sa[n], &len[n]) < 0) {
            snprintf(err, errlen, "--resolve: '%.*s' is not an IP address",
                     (int)(alen < 60 ? alen : 60), a);
            return QF_EINVAL;
        }
        if (comma == NULL)
            break;
        a = comma + 1;
    }
    n++;
    if (h == NULL || (size_t)(c1 - e) != strlen(name) ||
        strncasecmp(e, name, (size_t)(c1 - e)) != 0 || p != atol(port))
        return 0;
    for (int i = 0; i < n; i++) {
        h->addrs[i] = sa[i];
        h->addrlens[i] = len[i];
    }
    h->naddr = n;
    return 1;
}

int qf_host_check_resolve(const char *entry, char *err, size_t errlen)
{
    return parse_resolve(entry, NULL, NULL, NULL, err, errlen) < 0 ? QF_EINVAL : 0;
}

/* RFC 8305 section 4: the families alternate, starting with the first address's (the
 * resolver's RFC 6724 order prefers it), each family keeping its own order. */
static void interleave(struct qf_host *h)
{
    struct sockaddr_storage a[QF_MAX_ADDRS];
    socklen_t l[QF_MAX_ADDRS];
    int fam = h->addrs[0].ss_family, next[2] = {0, 0}; /* the first family's, the others' */

    for (int n = 0; n < h->naddr; n++) {
        for (int t = 0, k = n % 2; t < 2; t++, k ^= 1) {
            int j = next[k];
            while (j < h->naddr && (h->addrs[j].ss_family == fam) != (k == 0))
                j++;
            if (j < h->naddr) {
                a[n] = h->addrs[j];
                l[n] = h->addrlens[j];
                next[k] = j + 1;
                break;
            }
        }
    }
    memcpy(h->addrs, a, sizeof(a[0]) * (size_t)h->naddr);
    memcpy(h->addrlens, l, sizeof(l[0]) * (size_t)h->naddr);
}

int qf_host_order(const struct qf_host *h, int *order)
{
    int n = 0;

    if (h->addr_good >= 0)
        order[n++] = h->addr_good;
    for (int pass = 0; pass < 2; pass++) { /* those that timed out last */
        for (int i = 0; i < h->naddr; i++) {
            if (i != h->addr_good && h->addr_slow[i] == pass)
                order[n++] = i;
        }
    }
    return n;
}

void qf_host_setup(struct qf_client *cl, struct qf_host *h)
{
    char err[160];
    /* Through a proxy the connections go to the proxy: its name is the one resolved, and a
     * --resolve entry applies when it names the proxy's host and port. */
    const char *name = h->proxy ? h->proxy->host : h->url.host;
    const char *port = h->proxy ? h->proxy->port : h->url.port;

    h->resolved = 1;
    if (h->proxy_bad != NULL) {
        h->fatal = QF_ECONFIG;
        snprintf(h->fatal_msg, sizeof(h->fatal_msg), "%s", h->proxy_bad);
        return;
    }
    if (h->url.tls && qf_client_tls_ctx(cl, err, sizeof(err)) < 0) {
        h->fatal = QF_ECONFIG;
        snprintf(h->fatal_msg, sizeof(h->fatal_msg), "%s", err);
        return;
    }
    for (char **e = cl->resolve; e != NULL && *e != NULL; e++) {
        if (parse_resolve(*e, name, port, h, err, sizeof(err)) == 1)
            return;
    }
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&h->addrs[0];
    struct sockaddr_in *s4 = (struct sockaddr_in *)&h->addrs[0];
    long portn = atol(port);
    if (inet_pton(AF_INET6, name, &s6->sin6_addr) == 1) { /* a literal: no lookup */
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)portn);
        h->addrlens[0] = sizeof(*s6);
        h->naddr = 1;
    } else if (inet_pton(AF_INET, name, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)portn);
        h->addrlens[0] = sizeof(*s4);
        h->naddr = 1;
    } else {
        h->resolved = 0;
        qf_resolve_start(cl, h, name, port);
    }
}

void qf_host_resolved(struct qf_host *h)
{
    interleave(h);
}

void qf_host_timeout(struct qf_client *cl, struct qf_host *h)
{
    h->resolving = 0;
    h->resolved = 1;
    h->fatal = QF_ERESOLVE;
    snprintf(h->fatal_msg, sizeof(h->fatal_msg), "could not resolve %s %.100s: no answer "
             "within %.1f s", h->proxy ? "proxy" : "host", h->proxy ? h->proxy->host : h->url.host,
             (double)cl->connect_timeout_us / 1e6);
}

/* A quote's request around its target, made once per host: "GET " and the URL prefix before
 * it; the URL suffix and the header block after it. An http:// proxy is asked in absolute
 * form ("GET http://host/path"), with the proxy's credentials. ae: the Accept-Encoding line or
 * "". */
static int quote_request(struct qf_host *h, const char *ua, const char *ae)
{
#define QUOTE_HDRS                                                                                 \
    "%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: application/json\r\n"                    \
    "%sConnection: keep-alive\r\n%s\r\n"
    int abs = h->proxy != NULL && !h->url.tls;
    const char *auth = abs && h->proxy->auth ? h->proxy->auth : "";
    const char *origin = abs ? "http://" : "", *hp = abs ? h->hostport : "";
    int n = snprintf(NULL, 0, QUOTE_HDRS, h->url.suffix, h->hostport, ua, ae, auth);
    int m = snprintf(NULL, 0, "GET %s%s%s", origin, hp, h->url.prefix);
    h->hdrs = qf_malloc((size_t)n + 1);
    h->head = qf_malloc((size_t)m + 1);
    if (h->hdrs == NULL || h->head == NULL)
        return QF_ENOMEM;
    snprintf(h->hdrs, (size_t)n + 1, QUOTE_HDRS, h->url.suffix, h->hostport, ua, ae, auth);
    snprintf(h->head, (size_t)m + 1, "GET %s%s%s", origin, hp, h->url.prefix);
    h->hdrs_len = (size_t)n;
    h->head_len = (size_t)m;
    return 0;
}

/* Finds the host of u, or adds it (taking u's prefix and suffix). NULL on QF_ENOMEM. */
struct qf_host *qf_host_get(struct qf_client *cl, struct qf_url *u, int quotes)
{
    for (unsigned i = 0; i < cl->nhosts; i++) {
        struct qf_host *h = cl->hosts[i];
        if (h->url.tls == u->tls && strcmp(h->url.port, u->port) == 0 &&
            strcasecmp(h->url.host, u->host) == 0 && !quotes)
            return h;
    }
    struct qf_host **v = qf_realloc(cl->hosts, (cl->nhosts + 1) * sizeof(*v));
    if (v == NULL)
        return NULL;
    if (qf_client_reserve_timers(cl, 1) < 0) /* the host's resolution deadline */
        return NULL;
    cl->hosts = v;
    struct qf_host *h = qf_calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->url = *u;
    u->prefix = u->suffix = NULL;
    h->cl = cl;
    h->addr_good = -1;
    h->timer.idx = -1;
    h->timer.kind = QF_TIMER_HOST;
    h->max = cl->max_per_host;
    h->pause.idx = -1;
    h->pause.kind = QF_TIMER_PAUSE;
    h->idle = qf_calloc(h->max, sizeof(*h->idle));
    h->mux = qf_calloc(h->max, sizeof(*h->mux));
    h->h2 = h->url.tls && !(cl->flags & QF_OPT_HTTP1) ? 0 : -1;
    h->h2_cap = cl->h2_streams;
    int v6 = strchr(h->url.host, ':') != NULL;
    int dflt = strcmp(h->url.port, h->url.tls ? "443" : "80") == 0;
    size_t hp = strlen(h->url.host) + 9;
    h->hostport = qf_malloc(hp);
    if (h->idle == NULL || h->mux == NULL || h->hostport == NULL) {
        qf_host_free(h);
        return NULL;
    }
    snprintf(h->hostport, hp, "%s%s%s%s%s", v6 ? "[" : "", h->url.host, v6 ? "]" : "",
             dflt ? "" : ":", dflt ? "" : h->url.port);
    h->proxy = qf_proxy_for(&cl->proxies, h->url.tls, h->url.host, h->url.port, &h->proxy_bad);
    if (h->proxy != NULL && h->url.tls) {
        int n = qf_proxy_connect_request(h->proxy, h->url.host, h->url.port, cl->user_agent,
                                         &h->tunnel);
        if (n < 0) {
            qf_host_free(h);
            return NULL;
        }
        h->tunnel_len = (size_t)n;
    }
    if (quotes && quote_request(h, cl->user_agent,
                                (cl->flags & QF_OPT_NO_COMPRESSED) ? "" : QF_ACCEPT_ENCODING) < 0) {
        qf_host_free(h);
        return NULL;
    }
    if (h->url.tls) {
        qf_sess_apply(cl, h);
        int hint = qf_tls_cache_h2(&h->cache); /* what the last run's connections spoke */
        if (h->h2 == 0 && hint >= 0)
            h->h2 = hint ? 1 : -1;
    }
    cl->hosts[cl->nhosts++] = h;
    return h;
}

void qf_host_free(struct qf_host *h)
{
    if (h == NULL)
        return;
    while (h->qhead != NULL) {
        struct qf_req *r = h->qhead;
        h->qhead = r->next;
        qf_free(r);
    }
    qf_free(h->pend);
    qf_free(h->idle);
    qf_free(h->mux);
    qf_free(h->hdrs);
    qf_free(h->head);
    qf_free(h->hostport);
    qf_free(h->tunnel);
    qf_url_free(&h->url);
    qf_tls_cache_free(&h->cache);
    qf_free(h);
}
