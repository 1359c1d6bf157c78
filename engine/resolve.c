/* Name resolution with c-ares, driven by the client's own loop: c-ares tells us which sockets
 * to watch (sock_state_cb), the loop hands their events back (ares_process_fd), and c-ares's
 * next timeout is a timer in the client's heap. /etc/hosts, /etc/resolv.conf and the
 * nsswitch.conf order are c-ares's to read, as for curl. No thread, no blocking call. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

#include <ares.h>

#include "engine/client.h"
#include "engine/host.h"
#include "engine/resolve.h"

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct qf_client *cl = data;
    struct epoll_event ev = {.events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0),
                             .data.u64 = QF_RESOLVE_TAG | (uint32_t)fd};

    if (!readable && !writable) {
        epoll_ctl(cl->epfd, EPOLL_CTL_DEL, fd, NULL);
        return;
    }
    /* Level-triggered, as c-ares expects: it reads one datagram per call. */
    if (epoll_ctl(cl->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 && errno == ENOENT)
        epoll_ctl(cl->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Re-arms the heap timer for c-ares's next timeout. */
static void rearm(struct qf_client *cl)
{
    struct timeval tv, *t = ares_timeout(cl->dns.channel, NULL, &tv);

    if (t == NULL)
        qf_heap_del(&cl->timers, &cl->dns.timer);
    else
        qf_heap_set(&cl->timers, &cl->dns.timer,
                    qf_now_us() + (int64_t)t->tv_sec * 1000000 + t->tv_usec);
}

int qf_resolve_init(struct qf_client *cl, const char *servers, char *err, size_t errlen)
{
    static int lib_ready;
    struct ares_options o = {.sock_state_cb = sock_state, .sock_state_cb_data = cl,
                             .timeout = 2000, .tries = 2};

    if (cl->dns.channel != NULL)
        return 0;
    if (!lib_ready) {
        if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
            snprintf(err, errlen, "cannot initialise the resolver");
            return QF_ECONFIG;
        }
        lib_ready = 1;
    }
    cl->dns.timer.idx = -1;
    cl->dns.timer.kind = QF_TIMER_DNS;
    ares_channel ch;
    int rc = ares_init_options(&ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
                                            ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "cannot initialise the resolver: %s", ares_strerror(rc));
        return QF_ECONFIG;
    }
    if (servers != NULL && (rc = ares_set_servers_ports_csv(ch, servers)) != ARES_SUCCESS) {
        snprintf(err, errlen, "--dns-servers: bad list '%.100s' (%s)", servers,
                 ares_strerror(rc));
        ares_destroy(ch);
        return QF_EINVAL;
    }
    cl->dns.channel = ch;
    return 0;
}

/* The lookup of the host arg ended. A host whose deadline passed has given up on it. */
static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct qf_host *h = arg;
    struct qf_client *cl = h->cl;

    (void)timeouts;
    if (h->resolving) {
        h->resolving = 0;
        h->resolved = 1;
        h->t_resolved = qf_now_us();
        h->resolved_turn = cl->turns;
        qf_heap_del(&cl->timers, &h->timer);
        for (struct ares_addrinfo_node *n = ai != NULL ? ai->nodes : NULL;
             n != NULL && h->naddr < QF_MAX_ADDRS; n = n->ai_next) {
            if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
                n->ai_addrlen > sizeof(h->addrs[0]))
                continue;
            memcpy(&h->addrs[h->naddr], n->ai_addr, n->ai_addrlen);
            h->addrlens[h->naddr++] = n->ai_addrlen;
        }
        if (status == ARES_SUCCESS && h->naddr > 0) {
            qf_host_resolved(h);
        } else if (status != ARES_EDESTRUCTION) {
            h->fatal = QF_ERESOLVE;
            snprintf(h->fatal_msg, sizeof(h->fatal_msg), "could not resolve %s %.100s: %s",
                     h->proxy ? "proxy" : "host", h->proxy ? h->proxy->host : h->url.host,
                     status == ARES_SUCCESS ? "no address" : ares_strerror(status));
        }
    }
    if (ai != NULL)
        ares_freeaddrinfo(ai);
}

int qf_resolve_start(struct qf_client *cl, struct qf_host *h, const char *name, const char *port)
{
    char err[160];
    int rc = qf_resolve_init(cl, NULL, err, sizeof(err));

    if (rc < 0) {
        h->fatal = rc;
        snprintf(h->fatal_msg, sizeof(h->fatal_msg), "%s", err);
        return rc;
    }
    /* The port is always a number: without the flag c-ares asks NSS for a service name. */
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                        .ai_flags = ARES_AI_NUMERICSERV};
    h->resolving = 1;
    h->t_resolve_start = cl->now_us;
    qf_heap_set(&cl->timers, &h->timer, cl->now_us + cl->connect_timeout_us);
    ares_getaddrinfo(cl->dns.channel, name, port, &hints, on_addrinfo, h);
    if (cl->dns.channel != NULL)
        rearm(cl);
    return 0;
}

void qf_resolve_event(struct qf_client *cl, int fd, uint32_t events)
{
    if (cl->dns.channel == NULL)
        return;
    ares_process_fd(cl->dns.channel,
                    events & (EPOLLIN | EPOLLERR | EPOLLHUP) ? fd : ARES_SOCKET_BAD,
                    events & EPOLLOUT ? fd : ARES_SOCKET_BAD);
    rearm(cl);
}

void qf_resolve_timer(struct qf_client *cl)
{
    if (cl->dns.channel == NULL)
        return;
    ares_process_fd(cl->dns.channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm(cl);
}

void qf_resolve_free(struct qf_client *cl)
{
    if (cl->dns.channel == NULL)
        return;
    ares_destroy(cl->dns.channel);
    cl->dns.channel = NULL;
    qf_heap_del(&cl->timers, &cl->dns.timer);
}
