/* Hosts: one per scheme, name and port, with its request queue, idle connections, addresses
 * and TLS session cache. */
#ifndef QF_HOST_H
#define QF_HOST_H

#include <sys/socket.h>

#include "engine/timer.h"
#include "engine/url.h"
#include "tls/tls.h"

#define QF_MAX_ADDRS 8

struct qf_client;
struct qf_conn;
struct qf_proxy;
struct qf_req;

struct qf_host {
    struct qf_url url;
    struct qf_client *cl;
    int resolved;          /* addresses known (or the host failed) */
    int resolving;         /* a lookup is running; timer holds its deadline */
    struct qf_timer timer;
    int64_t t_resolve_start, t_resolved; /* the lookup's span, 0 without one */
    uint64_t resolved_turn; /* the loop turn that got the answer */
    struct sockaddr_storage addrs[QF_MAX_ADDRS];
    socklen_t addrlens[QF_MAX_ADDRS];
    int naddr;
    int addr_good;         /* the address a connection last reached, -1: none yet */
    unsigned char addr_slow[QF_MAX_ADDRS]; /* its connect timed out: tried last from now on */
    int fatal;             /* resolution, TLS setup or certificate failure: fails every request */
    int64_t pipeline_off_until_us; /* a pipeline was cut: one request at a time until then */
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
    /* One rate limit per host, kept by sched.c: requests handed to connections and not yet
     * reported; the window they may fill (0: no 429 yet, the connections' capacity); the
     * window a 429 last met (regrowing to it is slow); successes toward the next +1; 429
     * episodes since the last success; halvings so far (a request carries the count it was
     * sent under). While pause is armed nothing is dispatched to this host. */
    unsigned inflight, win, win_top, win_acks, n429, epoch;
    struct qf_timer pause;
    /* HTTP/2: whether the host speaks it (1), not (-1: plain http, --http1.1, or ALPN said
     * http/1.1), or not known yet (0: one connection goes first and tells, as curl's
     * "wait to multiplex"); the session cache's newest session tells at once. Its connections
     * that speak it, each carrying up to h2_cap streams (the host's in-flight limit). */
    int h2;
    unsigned h2_cap;
    struct qf_conn **mux;
    unsigned nmux;
};

/* First use of h: make sure the client's TLS context exists and resolve its name: a --resolve
 * entry or an address literal at once, else a lookup that ends later (h->resolving). A failure
 * marks the host fatal, with its message: every request to it then fails with it. */
void qf_host_setup(struct qf_client *cl, struct qf_host *h);
/* The resolver filled h's addresses: put them in the order connections try them. */
void qf_host_resolved(struct qf_host *h);
/* h's lookup took the whole connect timeout: h fails, every request to it with it. */
void qf_host_timeout(struct qf_client *cl, struct qf_host *h);
struct qf_host *qf_host_get(struct qf_client *cl, struct qf_url *u, int quotes);
void qf_host_free(struct qf_host *h);
int qf_host_check_resolve(const char *entry, char *err, size_t errlen);
/* The order in which a new connection tries h's addresses (indexes into addrs): the one that
 * last worked first, then the rest as resolved (families interleaved, RFC 8305), those that
 * timed out last. Returns how many. */
int qf_host_order(const struct qf_host *h, int *order);

#endif
