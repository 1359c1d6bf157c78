/* The client behind the public handle: options, hosts, connection slots, the loop's epoll and
 * timer state, the record pool and counters. The engine's modules share it; nothing outside
 * engine/ includes this header (make check-layers). */
#ifndef QF_CLIENT_H
#define QF_CLIENT_H

#include <stdint.h>

#include "engine/conn.h"
#include "engine/host.h"
#include "engine/resolve.h"
#include "engine/proxy.h"
#include "engine/sched.h"
#include "engine/timer.h"
#include "parser/json.h"
#include "qfetch.h"
#include "tls/tls.h"

#define QF_RETRY_AFTER_CAP_MS 5000
/* The codings parser/inflate.c undoes, asked for on quotes unless QF_OPT_NO_COMPRESSED. */
#define QF_ACCEPT_ENCODING "Accept-Encoding: gzip, deflate\r\n"
/* Response bytes all of a client's connections may buffer at once: a per-request cap alone
 * lets N hostile servers take N times it. */
#define QF_CLIENT_BODY_MAX ((size_t)256 << 20)

struct qf_client {
    int epfd, tfd;
    int64_t tfd_armed_us;
    qf_result_fn *cb;
    void *udata;
    qf_log_fn *log;
    qf_log_fn *warn;
    void *log_udata;
    char *sess_path;         /* TLS session cache file, NULL: none */
    char *sess_text;         /* its lines as loaded */
    unsigned flags;          /* QF_OPT_* */
    unsigned pipeline;       /* requests in flight per connection, >= 1 */
    int64_t timeout_us, connect_timeout_us;
    int retries;
    struct qf_tls_ctx tls;
    int tls_ready;
    char *cacert, *user_agent;
    char **resolve;          /* copied "HOST:PORT:ADDR" entries */
    struct qf_proxy_conf proxies;
    unsigned max_per_host;
    unsigned h2_streams;     /* requests in flight per host over HTTP/2 */
    struct qf_host **hosts;  /* hosts[0]: the quote template's */
    unsigned nhosts;
    struct qf_conn *conns;
    uint32_t nconns;
    uint32_t *free_slots;
    uint32_t nfree;
    uint32_t *ready;         /* slots whose read budget ran out: stepped again next turn
                                (room for 2 x nconns, see run_ready) */
    uint32_t nready;
    size_t body_total;       /* bytes of all connections' body buffers */
    size_t body_max_total;
    struct qf_heap timers;
    struct qf_resolver dns;
    size_t nadded, ndone, nquotes;
    size_t nrecords;         /* request records allocated, spares included: the timer heap's
                                worst case besides the connections */
    struct qf_req *spare;    /* finished quote records, linked by next */
    struct qf_req **byid;    /* general requests by id, NULL once finished */
    size_t nbyid, capbyid;
    const struct qf_req *in_chunk; /* request whose on_chunk/on_head is running */
    const struct qf_conn *stepping; /* connection inside qf_conn_step() */
    jsmntok_t *toks;
    unsigned ntoks;
    struct qf_header *hdrv;  /* headers handed to on_response, kept at high-water mark */
    size_t hdrv_cap;
    int64_t now_us, t_first_step, t_last_done;
    uint64_t turns;          /* loop turns so far */
    uint64_t rng;
    struct qf_stats st;
};

/* sesscache.c: the TLS session cache file. */
void qf_sess_load(struct qf_client *cl);
void qf_sess_apply(struct qf_client *cl, struct qf_host *h);
void qf_sess_save(struct qf_client *cl);

/* Makes room in the timer heap for every connection, record, host and the resolver, plus
 * extra: arming a timer can then never fail. 0 or QF_ENOMEM. */
int qf_client_reserve_timers(struct qf_client *cl, size_t extra);

/* Creates the client's TLS context if it has none: 0, or QF_ECONFIG with err filled. */
int qf_client_tls_ctx(struct qf_client *cl, char *err, size_t errlen);

#endif
