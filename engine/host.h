/* Hosts: one per scheme, name and port, with its request queue, idle connections, addresses
 * and TLS session cache. */
#ifndef QF_HOST_H
#define QF_HOST_H

#include <sys/socket.h>

#include "engine/url.h"
#include "tls/tls.h"

#define QF_MAX_ADDRS 8

struct qf_client;
struct qf_conn;
struct qf_proxy;
struct qf_req;

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
     * is taken only when one is dispatched, so a waiting quote costs its symbol's bytes. */
    char *pend;
    size_t pend_off, pend_len, pend_cap;
    unsigned npend;
    size_t pend_index;     /* qf_client_add() index of the quote at pend_off */
    struct qf_conn **idle; /* parked connections, a stack of at most max */
    unsigned nidle, nopen, max;
    /* Quotes: the request around the encoded symbol, made once: "GET /prefix" before it, and
     * "suffix HTTP/1.1\r\nHost: ...\r\n\r\n" after it. */
    char *head, *hdrs;
    size_t head_len, hdrs_len;
    char *hostport;        /* Host header value */
    /* Through a proxy (NULL: direct), whose addresses addrs then holds. https:// targets send
     * tunnel, the CONNECT request, on each new connection; http:// ones ask in absolute form. */
    const struct qf_proxy *proxy;
    const char *proxy_bad; /* the scheme's proxy setting is unusable: why (fails requests) */
    char *tunnel;
    size_t tunnel_len;
};

/* First use of h: resolve its name (a --resolve entry, an address literal or a lookup) and
 * make sure the client's TLS context exists. A failure marks the host fatal, with its message:
 * every request to it then fails with it. */
void qf_host_setup(struct qf_client *cl, struct qf_host *h);
struct qf_host *qf_host_get(struct qf_client *cl, struct qf_url *u, int quotes);
void qf_host_free(struct qf_host *h);
int qf_host_check_resolve(const char *entry, char *err, size_t errlen);

#endif
