/* HTTP/2 on one connection, with nghttp2: requests become streams, received bytes go through
 * nghttp2's callbacks into each stream's response (status, headers, a body decoded and capped
 * as on HTTP/1.1), and streams that end are listed for the connection, which reports them
 * once nghttp2 has returned: no outcome, and so no caller's on_response, runs inside nghttp2.
 * A caller's on_head and on_chunk do run inside it (they must see bytes as they arrive);
 * what they may do there (cancel, add) only submits frames or frees a slot. */
#include <stdio.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "engine/alloc.h"
#include "engine/client.h"
#include "engine/conn.h"
#include "engine/h2.h"
#include "engine/result.h"
#include "engine/sched.h"

static void *mem_malloc(size_t n, void *u)
{
    (void)u;
    return qf_malloc(n);
}

static void mem_free(void *p, void *u)
{
    (void)u;
    qf_free(p);
}

static void *mem_calloc(size_t n, size_t size, void *u)
{
    (void)u;
    return qf_calloc(n, size);
}

static void *mem_realloc(void *p, size_t n, void *u)
{
    (void)u;
    return qf_realloc(p, n);
}

/* The slot of a live stream: nghttp2's stream data, checked against the slot's current stream
 * (a slot freed and reused keeps no stale stream). */
static struct qf_h2_stream *stream_of(struct qf_h2 *m, int32_t id)
{
    struct qf_h2_stream *s = nghttp2_session_get_stream_user_data(m->ng, id);

    if (s == NULL) { /* not opened yet (its HEADERS unsent): search */
        for (unsigned i = 0; i < m->cap; i++) {
            if (m->st[i].req != NULL && m->st[i].id == id)
                return &m->st[i];
        }
        return NULL;
    }
    return s->req != NULL && s->id == id ? s : NULL;
}

static void stream_end(struct qf_h2 *m, struct qf_h2_stream *s)
{
    if (!s->ended) {
        s->ended = 1;
        m->done[m->ndone++] = (unsigned)(s - m->st);
    }
}

/* The stream fails here (a cap passed, the caller aborted): it is reset, and reported with
 * err once it closes. */
static void stream_fail(struct qf_h2 *m, struct qf_h2_stream *s, int err, const char *msg)
{
    if (s->err != 0)
        return;
    s->err = err;
    snprintf(s->msg, sizeof(s->msg), "%s", msg);
    nghttp2_submit_rst_stream(m->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
}

static void deliver(struct qf_h2 *m, struct qf_h2_stream *s, const char *data, size_t len)
{
    struct qf_client *cl = m->c->cl;
    struct qf_req *r = s->req;
    struct qf_req_general *g = r->general;

    cl->in_chunk = r; /* r may not be cancelled from inside its own callback */
    int stop = g->on_chunk(data, len, g->udata);
    cl->in_chunk = NULL;
    g->body_seen += len;
    if (stop && s->req == r)
        stream_fail(m, s, QF_ECANCELED, "aborted by on_chunk");
}

/* Grows a stream buffer (body or headers) to hold need bytes, within the client's budget for
 * buffered bodies. 0 or QF_EBODY/QF_ENOMEM. */
static int grow(struct qf_client *cl, char **buf, size_t *cap, size_t need, int counted)
{
    size_t n = *cap ? *cap : 4096;

    while (n < need)
        n *= 2;
    if (counted && cl->body_total - *cap + n > cl->body_max_total)
        return QF_EBODY;
    char *b = qf_realloc(*buf, n);
    if (b == NULL)
        return QF_ENOMEM;
    if (counted)
        cl->body_total += n - *cap;
    *buf = b;
    *cap = n;
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *udata)
{
    struct qf_h2 *m = udata;
    struct qf_h2_stream *s = stream_of(m, frame->hd.stream_id);

    (void)ng;
    (void)flags;
    if (s == NULL || s->err != 0)
        return 0;
    s->header_bytes += namelen + valuelen + 32; /* RFC 9113's header list size; trailers and
                                                   1xx blocks count, as on HTTP/1.1 */
    if (s->header_bytes > QF_HTTP_HEADER_MAX) {
        stream_fail(m, s, QF_EHEADER, "response header block larger than 64 KiB");
        return 0;
    }
    if (s->headers_done) /* trailers are not kept */
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        s->status = valuelen == 3 ? (value[0] - '0') * 100 + (value[1] - '0') * 10 +
                                        (value[2] - '0')
                                  : 0;
        return 0;
    }
    if (namelen > 0 && name[0] == ':')
        return 0;
    if (namelen == 16 && memcmp(name, "content-encoding", 16) == 0) {
        size_t at = s->coding_len + (s->coding_len > 0);
        if (at + valuelen <= sizeof(s->coding)) {
            if (s->coding_len > 0)
                s->coding[s->coding_len] = ',';
            memcpy(s->coding + at, value, valuelen);
        }
        s->coding_len = at + valuelen;
    } else if (namelen == 11 && memcmp(name, "retry-after", 11) == 0) {
        s->retry_after_s = qf_http_delta_seconds((const char *)value, valuelen);
    }
    if (s->req->general == NULL)
        return 0;
    size_t need = s->hlen + namelen + valuelen + 2;
    if (need > s->hcap && grow(m->c->cl, &s->hbuf, &s->hcap, need, 0) < 0) {
        stream_fail(m, s, QF_ENOMEM, "out of memory for the response headers");
        return 0;
    }
    memcpy(s->hbuf + s->hlen, name, namelen);
    s->hbuf[s->hlen + namelen] = '\0';
    memcpy(s->hbuf + s->hlen + namelen + 1, value, valuelen);
    s->hbuf[need - 1] = '\0';
    s->hlen = need;
    s->nheaders++;
    return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *udata)
{
    struct qf_h2 *m = udata;
    struct qf_h2_stream *s = stream_of(m, frame->hd.stream_id);

    (void)ng;
    if (s != NULL && s->t_first == 0)
        s->t_first = m->c->cl->now_us;
    m->t_progress = m->c->cl->now_us;
    return 0;
}

/* A response header block is complete: a 1xx one is forgotten; the final one decides the body's
 * decoding and goes to the caller's on_head. */
static void headers_done(struct qf_h2 *m, struct qf_h2_stream *s)
{
    struct qf_client *cl = m->c->cl;
    struct qf_req *r = s->req;

    if (s->status < 200) {
        s->status = 0;
        s->hlen = s->nheaders = 0;
        s->coding_len = 0;
        s->retry_after_s = -1;
        return;
    }
    s->headers_done = 1;
    qf_decode_begin(&s->dec, r, s->coding, s->coding_len, sizeof(s->coding));
    if (r->general == NULL || r->general->on_head == NULL)
        return;
    size_t n = qf_result_headers(cl, s->hbuf, s->hlen, s->nheaders);
    cl->in_chunk = r;
    int stop = r->general->on_head(s->status, n ? cl->hdrv : NULL, n, r->general->udata);
    cl->in_chunk = NULL;
    if (stop && s->req == r)
        stream_fail(m, s, QF_ECANCELED, "aborted by on_head");
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *udata)
{
    struct qf_h2 *m = udata;
    struct qf_h2_stream *s;

    (void)ng;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        s = stream_of(m, frame->hd.stream_id);
        if (s != NULL && s->err == 0 && !s->headers_done)
            headers_done(m, s);
        break;
    case NGHTTP2_RST_STREAM:
        if ((s = stream_of(m, frame->hd.stream_id)) != NULL)
            s->reset_by_peer = 1;
        break;
    case NGHTTP2_SETTINGS:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) /* the server's ack of ours */
            break;
        m->settings_seen = 1;
        for (size_t i = 0; i < frame->settings.niv; i++) {
            if (frame->settings.iv[i].settings_id == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                m->peer_streams = frame->settings.iv[i].value > 0 ? frame->settings.iv[i].value
                                                                  : 1;
        }
        break;
    case NGHTTP2_GOAWAY:
        m->goaway = 1;
        m->goaway_last = frame->goaway.last_stream_id;
        m->goaway_code = frame->goaway.error_code;
        break;
    default:
        break;
    }
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                   size_t len, void *udata)
{
    struct qf_h2 *m = udata;
    struct qf_client *cl = m->c->cl;
    struct qf_h2_stream *s = stream_of(m, id);

    (void)ng;
    (void)flags;
    m->t_progress = cl->now_us;
    if (s == NULL || s->err != 0)
        return 0;
    struct qf_req *r = s->req;
    int streamed = r->general != NULL && r->general->on_chunk != NULL;
    if (s->dec.active) {
        const char *in = (const char *)data;
        size_t left = len;
        int rc;
        do {
            rc = qf_decode_feed(cl, &s->dec, r, &in, &left);
            if (rc == QF_EBODY) {
                stream_fail(m, s, QF_EBODY, "response body larger than 8 MiB");
                return 0;
            }
            if (streamed && s->dec.len > 0) {
                size_t n = s->dec.len;
                s->dec.len = 0;
                deliver(m, s, s->dec.out, n);
                if (s->err != 0 || s->req != r)
                    return 0;
            }
        } while (rc == QF_ENOSPC);
        return 0;
    }
    if (streamed) {
        deliver(m, s, (const char *)data, len);
        return 0;
    }
    if (len > QF_HTTP_BODY_MAX - s->body_len) {
        stream_fail(m, s, QF_EBODY, "response body larger than 8 MiB");
        return 0;
    }
    if (s->body_len + len > s->body_cap) {
        int rc = grow(cl, &s->body, &s->body_cap, s->body_len + len, 1);
        if (rc < 0) {
            char msg[80];
            snprintf(msg, sizeof(msg), rc == QF_EBODY ? "responses buffered by this client "
                     "exceed %zu MiB" : "out of memory for the response body",
                     cl->body_max_total >> 20);
            stream_fail(m, s, rc, msg);
            return 0;
        }
    }
    memcpy(s->body + s->body_len, data, len);
    s->body_len += len;
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *udata)
{
    struct qf_h2 *m = udata;
    struct qf_h2_stream *s = stream_of(m, id);

    (void)ng;
    if (s != NULL) {
        s->code = code;
        stream_end(m, s);
    }
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *udata)
{
    struct qf_h2 *m = udata;
    struct qf_h2_stream *s;

    (void)ng;
    if (frame->hd.type == NGHTTP2_HEADERS && (s = stream_of(m, frame->hd.stream_id)) != NULL)
        s->sent = 1;
    return 0;
}

/* A request's HEADERS could not go out (the server sent GOAWAY first): it never reached the
 * server, and no close follows for a stream that never opened. */
static int on_not_sent(nghttp2_session *ng, const nghttp2_frame *frame, int lib_error,
                       void *udata)
{
    struct qf_h2 *m = udata;
    struct qf_h2_stream *s;

    (void)ng;
    (void)lib_error;
    if (frame->hd.type == NGHTTP2_HEADERS && (s = stream_of(m, frame->hd.stream_id)) != NULL) {
        s->unsent = 1;
        stream_end(m, s);
    }
    return 0;
}

/* nghttp2's own words for what went wrong on the connection (no server bytes in them). */
static int on_error(nghttp2_session *ng, int lib_error, const char *msg, size_t len, void *udata)
{
    struct qf_h2 *m = udata;

    (void)ng;
    (void)lib_error;
    if (m->why[0] == '\0')
        qf_text_clean(msg, len < 80 ? len : 80, m->why, sizeof(m->why));
    return 0;
}

int qf_h2_start(struct qf_h2 *m, struct qf_conn *c, unsigned cap, unsigned peer)
{
    static nghttp2_mem mem = {NULL, mem_malloc, mem_free, mem_calloc, mem_realloc};
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;

    if (cap > m->cap) {
        struct qf_h2_stream *st = qf_realloc(m->st, cap * sizeof(*st));
        unsigned *done = st != NULL ? qf_realloc(m->done, cap * sizeof(*done)) : NULL;
        if (st != NULL)
            m->st = st;
        if (done == NULL)
            return QF_ENOMEM;
        m->done = done;
        memset(st + m->cap, 0, (cap - m->cap) * sizeof(*st));
        for (unsigned i = m->cap; i < cap; i++)
            qf_decode_init(&st[i].dec);
        m->cap = cap;
    }
    m->c = c;
    m->nactive = m->ndone = m->nstreams = 0;
    m->goaway = 0;
    m->goaway_last = 0;
    m->goaway_code = 0;
    m->peer_streams = 0;
    m->peer_guess = peer > 0 && peer < cap ? peer : cap;
    m->settings_seen = 0;
    m->why[0] = '\0';
    m->t_progress = c->cl->now_us;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return QF_ENOMEM;
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_not_sent);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    int rc = nghttp2_option_new(&opt);
    if (rc == 0) {
        /* Until the server's SETTINGS say otherwise: what it said last time, or the table. */
        nghttp2_option_set_peer_max_concurrent_streams(opt, peer > 0 && peer < cap ? peer : cap);
        rc = nghttp2_session_client_new3(&m->ng, cb, m, opt, &mem);
        nghttp2_option_del(opt);
    }
    nghttp2_session_callbacks_del(cb);
    if (rc != 0) {
        m->ng = NULL;
        return QF_ENOMEM;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, QF_H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, QF_HTTP_HEADER_MAX},
    };
    if (nghttp2_submit_settings(m->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(m->ng, NGHTTP2_FLAG_NONE, 0,
                                              QF_H2_CONN_WINDOW) != 0) {
        qf_h2_end(m);
        return QF_ENOMEM;
    }
    return 0;
}

unsigned qf_h2_limit(const struct qf_h2 *m)
{
    if (m->ng == NULL)
        return 0;
    if (!m->settings_seen) /* streams past it would wait inside nghttp2, their clocks running */
        return m->peer_guess;
    uint32_t peer = nghttp2_session_get_remote_settings(m->ng,
                                                        NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return peer < m->cap ? (unsigned)peer : m->cap;
}

unsigned qf_h2_room(const struct qf_h2 *m)
{
    unsigned lim = qf_h2_limit(m);

    return m->goaway || lim <= m->nactive ? 0 : lim - m->nactive;
}

/* Makes room in the scratch buffers for one request's header list. */
static int scratch(struct qf_h2 *m, size_t bytes, size_t nv)
{
    if (bytes > m->scratch_cap) {
        char *b = qf_realloc(m->scratch, bytes);
        if (b == NULL)
            return QF_ENOMEM;
        m->scratch = b;
        m->scratch_cap = bytes;
    }
    if (nv > m->nv_cap) {
        nghttp2_nv *v = qf_realloc(m->nv, nv * sizeof(*v));
        if (v == NULL)
            return QF_ENOMEM;
        m->nv = v;
        m->nv_cap = nv;
    }
    return 0;
}

static nghttp2_nv nv_make(const char *name, size_t nl, const char *value, size_t vl)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nl, vl, NGHTTP2_NV_FLAG_NONE};
}

/* Fields HTTP/2 forbids (RFC 9113 8.2.2), and Host, which :authority replaces. */
static int connection_field(const char *name, size_t len)
{
    static const char *const drop[] = {"host", "connection", "keep-alive", "proxy-connection",
                                       "transfer-encoding", "upgrade", "te"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        if (strlen(drop[i]) == len && strncasecmp(drop[i], name, len) == 0)
            return 1;
    }
    return 0;
}

/* r's header list, from the HTTP/1.1 request the host (a quote) or the request (general) made:
 * "METHOD /before" + target + "after HTTP/1.1\r\nName: value\r\n...\r\n". Returns the count. */
static int header_list(struct qf_h2 *m, const struct qf_req *r)
{
    const struct qf_req_general *g = r->general;
    const struct qf_host *h = r->host;
    const char *head = g ? g->head : h->head, *hdrs = g ? g->hdrs : h->hdrs;
    size_t hl = g ? g->head_len : h->head_len, xl = g ? g->hdrs_len : h->hdrs_len;
    size_t tl = strlen(r->target), lines = 0;

    for (size_t i = 0; i < xl; i++)
        lines += hdrs[i] == '\n';
    if (scratch(m, hl + tl + xl + 1, lines + 4) < 0)
        return QF_ENOMEM;
    const char *sp = memchr(head, ' ', hl), *eol = strstr(hdrs, "\r\n");
    if (sp == NULL || eol == NULL || eol - hdrs < 9) /* " HTTP/1.1" ends the first line */
        return QF_EINVAL;
    char *path = m->scratch, *low = m->scratch;
    size_t pl = 0, before = hl - (size_t)(sp + 1 - head), after = (size_t)(eol - hdrs) - 9;
    memcpy(path, sp + 1, before);
    memcpy(path + before, r->target, tl);
    memcpy(path + before + tl, hdrs, after);
    pl = before + tl + after;
    low += pl;
    nghttp2_nv *nv = m->nv;
    int n = 0;
    nv[n++] = nv_make(":method", 7, head, (size_t)(sp - head));
    nv[n++] = nv_make(":scheme", 7, h->url.tls ? "https" : "http", h->url.tls ? 5 : 4);
    nv[n++] = nv_make(":authority", 10, h->hostport, strlen(h->hostport));
    nv[n++] = nv_make(":path", 5, path, pl);
    for (const char *p = eol + 2; p < hdrs + xl;) {
        const char *end = strstr(p, "\r\n"), *colon;
        if (end == NULL || end == p)
            break;
        colon = memchr(p, ':', (size_t)(end - p));
        if (colon != NULL && !connection_field(p, (size_t)(colon - p))) {
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            for (size_t i = 0; i < nl; i++) /* HTTP/2 field names are lower case */
                low[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
            nv[n++] = nv_make(low, nl, v, (size_t)(end - v));
            low += nl;
        }
        p = end + 2;
    }
    return n;
}

int qf_h2_submit(struct qf_h2 *m, struct qf_req *r, int first)
{
    struct qf_h2_stream *s = NULL;

    for (unsigned i = 0; i < m->cap && s == NULL; i++) {
        if (m->st[i].req == NULL && !m->st[i].ended)
            s = &m->st[i];
    }
    int n = s != NULL ? header_list(m, r) : QF_ENOMEM;
    if (n < 0)
        return n;
    int32_t id = nghttp2_submit_request(m->ng, NULL, m->nv, (size_t)n, NULL, s);
    if (id < 0)
        return QF_ENOMEM;
    s->req = r;
    s->id = id;
    s->status = 0;
    s->retry_after_s = -1;
    s->headers_done = s->reset_by_peer = s->sent = s->unsent = s->ended = s->err = 0;
    s->first = first;
    s->code = 0;
    s->header_bytes = s->coding_len = s->body_len = s->hlen = 0;
    s->nheaders = 0;
    qf_decode_expect(&s->dec);
    s->t_start = r->t_start;
    s->t_first = 0;
    s->msg[0] = '\0';
    m->nactive++;
    m->nstreams++;
    return 0;
}

ssize_t qf_h2_output(struct qf_h2 *m, const char **out)
{
    const uint8_t *p = NULL;
    ssize_t n = m->ng != NULL ? nghttp2_session_mem_send(m->ng, &p) : 0;

    *out = (const char *)p;
    return n < 0 ? QF_ENOMEM : n;
}

int qf_h2_feed(struct qf_h2 *m, const char *buf, size_t len, char *msg, size_t msglen)
{
    ssize_t n = nghttp2_session_mem_recv(m->ng, (const uint8_t *)buf, len);

    if (n < 0) {
        snprintf(msg, msglen, "HTTP/2 protocol error: %s",
                 m->why[0] ? m->why : nghttp2_strerror((int)n));
        return QF_EPROTO;
    }
    if (!nghttp2_session_want_read(m->ng) && !nghttp2_session_want_write(m->ng)) {
        if (m->goaway && m->goaway_code != NGHTTP2_NO_ERROR)
            snprintf(msg, msglen, "HTTP/2 connection closed by the server: %s",
                     nghttp2_http2_strerror(m->goaway_code));
        else if (m->goaway)
            snprintf(msg, msglen, "HTTP/2 connection closed by the server (GOAWAY)");
        else
            snprintf(msg, msglen, "HTTP/2 protocol error: %s",
                     m->why[0] ? m->why : "the server broke the protocol");
        return QF_EPROTO;
    }
    return 0;
}

int qf_h2_processed(const struct qf_h2 *m, const struct qf_h2_stream *s)
{
    return s->sent && !s->unsent && (!m->goaway || s->id <= m->goaway_last);
}

void qf_h2_outcome(struct qf_h2 *m, struct qf_h2_stream *s, struct qf_outcome *o)
{
    const struct qf_req_general *g = s->req->general;
    int streamed = g != NULL && g->on_chunk != NULL;

    memset(o, 0, sizeof(*o));
    o->status = s->status;
    o->retry_after_s = s->retry_after_s;
    if (s->err != 0) {
        o->err = s->err;
        o->msg = s->msg;
        return;
    }
    if (!qf_h2_processed(m, s) || s->code == NGHTTP2_REFUSED_STREAM) {
        /* The server never worked on it: another connection may take it, not as a retry. */
        o->err = QF_ECLOSED;
        o->resendable = 1;
        o->msg = s->code == NGHTTP2_REFUSED_STREAM
                     ? "HTTP/2 stream refused by the server (REFUSED_STREAM)"
                     : "HTTP/2 connection going away (GOAWAY) before this stream";
        return;
    }
    if (s->code != NGHTTP2_NO_ERROR || !s->headers_done) {
        o->err = QF_EPROTO;
        o->msg = s->msg;
        snprintf(s->msg, sizeof(s->msg), "%s: %s",
                 s->reset_by_peer ? "HTTP/2 stream reset by the server"
                                  : "malformed HTTP/2 response",
                 s->code != NGHTTP2_NO_ERROR ? nghttp2_http2_strerror(s->code)
                                             : "no final response");
        return;
    }
    o->body = streamed ? NULL : s->body_len ? s->body : "";
    o->body_len = streamed ? g->body_seen : s->body_len;
    o->headers = s->hbuf;
    o->headers_len = s->hlen;
    o->nheaders = s->nheaders;
    qf_decode_outcome(&s->dec, o);
}

void qf_h2_release(struct qf_h2 *m, struct qf_h2_stream *s)
{
    if (s->req == NULL && !s->ended)
        return;
    if (m->ng != NULL && s->id > 0)
        nghttp2_session_set_stream_user_data(m->ng, s->id, NULL);
    s->req = NULL;
    s->ended = 0;
    s->id = 0;
    m->nactive--;
}

void qf_h2_trim(struct qf_h2 *m, size_t keep)
{
    struct qf_client *cl = m->c->cl;

    for (unsigned i = 0; i < m->cap; i++) {
        struct qf_h2_stream *s = &m->st[i];
        if (s->req != NULL || s->body_cap <= keep)
            continue;
        cl->body_total -= s->body_cap;
        qf_free(s->body);
        s->body = NULL;
        s->body_cap = 0;
        qf_decode_release(cl, &s->dec, keep);
    }
}

void qf_h2_reset(struct qf_h2 *m, struct qf_h2_stream *s)
{
    if (m->ng != NULL && !s->ended)
        nghttp2_submit_rst_stream(m->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
}

void qf_h2_cancel(struct qf_h2 *m, struct qf_req *r)
{
    for (unsigned i = 0; i < m->cap; i++) {
        struct qf_h2_stream *s = &m->st[i];
        if (s->req == r) {
            qf_h2_reset(m, s);
            qf_h2_release(m, s);
            return;
        }
    }
}

void qf_h2_end(struct qf_h2 *m)
{
    if (m->ng != NULL)
        nghttp2_session_del(m->ng);
    m->ng = NULL;
}

void qf_h2_free(struct qf_client *cl, struct qf_h2 *m)
{
    qf_h2_end(m);
    for (unsigned i = 0; i < m->cap; i++) {
        struct qf_h2_stream *s = &m->st[i];
        cl->body_total -= s->body_cap;
        qf_free(s->body);
        qf_free(s->hbuf);
        qf_decode_free(&s->dec);
    }
    qf_free(m->st);
    qf_free(m->done);
    qf_free(m->nv);
    qf_free(m->scratch);
    memset(m, 0, sizeof(*m));
}
