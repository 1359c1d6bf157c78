/* Hosts: one per scheme, name and port, each with its request queue, idle connections,
 * resolved addresses and TLS session cache. A host resolves on its first dispatch (one
 * blocking lookup, or a --resolve entry), so a client that never uses a host pays nothing. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/alloc.h"
#include "engine/client.h"
#include "engine/host.h"
#include "engine/sched.h"

/* Parses "HOST:PORT:ADDR" (ADDR may be a bracketed IPv6 literal). Fills sa when it applies to
 * host:port. Returns 1 applied, 0 not this host, QF_EINVAL malformed. */
static int parse_resolve(const char *e, const char *host, const char *port,
                         struct sockaddr_storage *sa, socklen_t *salen, char *err, size_t errlen)
{
    const char *c1 = strchr(e, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c1 == NULL || c2 == NULL || c1 == e) {
        snprintf(err, errlen, "--resolve wants HOST:PORT:ADDR, got '%.100s'", e);
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
        snprintf(err, errlen, "--resolve: bad address in '%.100s'", e);
        return QF_EINVAL;
    }
    memcpy(addr, a, alen);
    addr[alen] = '\0';
    char *end;
    long p = strtol(c1 + 1, &end, 10);
    if (end != c2 || p < 1 || p > 65535) {
        snprintf(err, errlen, "--resolve: bad port in '%.100s'", e);
        return QF_EINVAL;
    }
    struct sockaddr_storage tmp;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&tmp;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&tmp;
    memset(&tmp, 0, sizeof(tmp));
    socklen_t len;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)p);
        len = sizeof(*s4);
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)p);
        len = sizeof(*s6);
    } else {
        snprintf(err, errlen, "--resolve: '%.60s' is not an IP address", addr);
        return QF_EINVAL;
    }
    if (host == NULL || (size_t)(c1 - e) != strlen(host) ||
        strncasecmp(e, host, (size_t)(c1 - e)) != 0 || p != atol(port))
        return 0;
    *sa = tmp;
    *salen = len;
    return 1;
}

int qf_host_check_resolve(const char *entry, char *err, size_t errlen)
{
    struct sockaddr_storage sa;
    socklen_t len;
    return parse_resolve(entry, NULL, NULL, &sa, &len, err, errlen) < 0 ? QF_EINVAL : 0;
}

void qf_host_setup(struct qf_client *cl, struct qf_host *h)
{
    char err[160];

    h->resolved = 1;
    if (h->url.tls && qf_client_tls_ctx(cl, err, sizeof(err)) < 0) {
        h->fatal = QF_ECONFIG;
        snprintf(h->fatal_msg, sizeof(h->fatal_msg), "%s", err);
        return;
    }
    for (char **e = cl->resolve; e != NULL && *e != NULL; e++) {
        if (parse_resolve(*e, h->url.host, h->url.port, &h->addrs[0], &h->addrlens[0], err,
                          sizeof(err)) == 1) {
            h->naddr = 1;
            return;
        }
    }
    /* An address literal needs no lookup; AI_ADDRCONFIG alone would cost a netlink query. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(h->url.host, h->url.port, &hints, &res);
    if (rc == EAI_NONAME) {
        hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
        rc = getaddrinfo(h->url.host, h->url.port, &hints, &res);
    }
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

/* A quote's request around its target, made once per host: "GET " and the URL prefix before
 * it; the URL suffix and the header block after it. ae: the Accept-Encoding line or "". */
static int quote_request(struct qf_host *h, const char *ua, const char *ae)
{
#define QUOTE_HDRS                                                                                 \
    "%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: application/json\r\n"                    \
    "%sConnection: keep-alive\r\n\r\n"
    int n = snprintf(NULL, 0, QUOTE_HDRS, h->url.suffix, h->hostport, ua, ae);
    int m = snprintf(NULL, 0, "GET %s", h->url.prefix);
    h->hdrs = qf_malloc((size_t)n + 1);
    h->head = qf_malloc((size_t)m + 1);
    if (h->hdrs == NULL || h->head == NULL)
        return QF_ENOMEM;
    snprintf(h->hdrs, (size_t)n + 1, QUOTE_HDRS, h->url.suffix, h->hostport, ua, ae);
    snprintf(h->head, (size_t)m + 1, "GET %s", h->url.prefix);
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
    cl->hosts = v;
    struct qf_host *h = qf_calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->url = *u;
    u->prefix = u->suffix = NULL;
    h->max = cl->max_per_host;
    h->idle = qf_calloc(h->max, sizeof(*h->idle));
    int v6 = strchr(h->url.host, ':') != NULL;
    int dflt = strcmp(h->url.port, h->url.tls ? "443" : "80") == 0;
    size_t hp = strlen(h->url.host) + 9;
    h->hostport = qf_malloc(hp);
    if (h->idle == NULL || h->hostport == NULL) {
        qf_host_free(h);
        return NULL;
    }
    snprintf(h->hostport, hp, "%s%s%s%s%s", v6 ? "[" : "", h->url.host, v6 ? "]" : "",
             dflt ? "" : ":", dflt ? "" : h->url.port);
    if (quotes && quote_request(h, cl->user_agent,
                                (cl->flags & QF_OPT_NO_COMPRESSED) ? "" : QF_ACCEPT_ENCODING) < 0) {
        qf_host_free(h);
        return NULL;
    }
    if (h->url.tls)
        qf_sess_apply(cl, h);
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
    qf_free(h->hdrs);
    qf_free(h->head);
    qf_free(h->hostport);
    qf_url_free(&h->url);
    qf_tls_cache_free(&h->cache);
    qf_free(h);
}
