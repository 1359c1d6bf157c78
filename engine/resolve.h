/* Name resolution inside the client's loop: c-ares, its sockets in the client's epoll set and
 * its timeouts in the client's timer heap, so no lookup ever blocks qf_client_step(). */
#ifndef QF_RESOLVE_H
#define QF_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/timer.h"

/* The epoll tag of a resolver socket: the top bit set, the fd below. Connection tags keep the
 * top bit clear (conn.c masks its generation to 31 bits). */
#define QF_RESOLVE_TAG (UINT64_C(1) << 63)

struct qf_client;
struct qf_host;

struct qf_resolver {
    void *channel;         /* ares_channel, NULL until the first lookup (or --dns-servers) */
    struct qf_timer timer; /* c-ares's next timeout */
};

/* Creates the channel with the client's options (servers: "ADDR[:PORT],..." or NULL for
 * /etc/resolv.conf). 0, or QF_ECONFIG/QF_EINVAL with err filled. */
int qf_resolve_init(struct qf_client *cl, const char *servers, char *err, size_t errlen);
/* Starts resolving name:port for h (its own, or its proxy's): the callback fills h's addresses,
 * or makes h fatal. 0, or an error with h made fatal. */
int qf_resolve_start(struct qf_client *cl, struct qf_host *h, const char *name, const char *port);
/* A resolver socket's epoll event, and the resolver's timer. */
void qf_resolve_event(struct qf_client *cl, int fd, uint32_t events);
void qf_resolve_timer(struct qf_client *cl);
/* Cancels every lookup (their callbacks run, finding nothing to fill) and frees the channel. */
void qf_resolve_free(struct qf_client *cl);

#endif
