/* HTTP/1.1 response parsing over llhttp: status, Retry-After, keep-alive and the body into a
 * caller-owned buffer. No sockets, no TLS, no allocation: when the body buffer is too small
 * the feed is refused whole (QF_ENOSPC) and the caller grows it. One static settings table
 * serves every parser; per-response state lives in struct qf_http (parser.data). */
#include "parser/http.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "qfetch.h"

enum { FIELD_OTHER, FIELD_RETRY_AFTER, FIELD_CONTENT_ENCODING };

static struct qf_http *from(llhttp_t *p)
{
    return p->data;
}

/* Callbacks report our own error through h->err; llhttp only learns "stop". */
static int fail(struct qf_http *h, int err)
{
    if (h->err == 0)
        h->err = err;
    return HPE_USER;
}

static void reset_message(struct qf_http *h)
{
    h->hlen = 0; /* an interim (1xx) response's headers are not the final ones */
    h->nheaders = 0;
    h->status = 0;
    h->retry_after_s = -1;
    h->coding_len = 0;
    h->field_id = FIELD_OTHER;
    h->field_len = 0;
    h->value_len = 0;
}

static int on_message_begin(llhttp_t *p)
{
    reset_message(from(p));
    return 0;
}

/* Bytes after the header block (chunk extensions, trailers) share the header cap: nothing
 * else bounds them. */
static int count_framing(struct qf_http *h, size_t len)
{
    if (len > QF_HTTP_HEADER_MAX - h->header_bytes)
        return fail(h, QF_EHEADER);
    h->header_bytes += len;
    return 0;
}

/* Names and values may arrive in any number of pieces: accumulate, match at completion.
 * Only the first sizeof(field) bytes are kept; field_len keeps counting so that a longer
 * name never matches. */
static void accumulate(char *buf, size_t cap, size_t *len, const char *at, size_t n)
{
    if (*len < cap)
        memcpy(buf + *len, at, n < cap - *len ? n : cap - *len);
    *len = n > SIZE_MAX - *len ? SIZE_MAX : *len + n;
}

/* Captured names and values are appended as they arrive and NUL-terminated when complete;
 * qf_http_feed() made sure the buffer has room for the whole feed. */
static int capture(struct qf_http *h, const char *at, size_t len)
{
    if (h->hbuf == NULL)
        return 0;
    if (len + 1 > h->hcap - h->hlen)
        return fail(h, QF_EHEADER);
    memcpy(h->hbuf + h->hlen, at, len);
    h->hlen += len;
    return 0;
}

static int capture_end(struct qf_http *h)
{
    if (h->hbuf == NULL)
        return 0;
    if (h->hlen >= h->hcap)
        return fail(h, QF_EHEADER);
    h->hbuf[h->hlen++] = '\0';
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct qf_http *h = from(p);
    if (h->headers_done)
        return count_framing(h, len);
    accumulate(h->field, sizeof(h->field), &h->field_len, at, len);
    if (memchr(at, ' ', len) != NULL || memchr(at, '\t', len) != NULL)
        h->field_blank = 1;
    return capture(h, at, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct qf_http *h = from(p);
    if (h->headers_done)
        return count_framing(h, len);
    if (h->field_id != FIELD_OTHER)
        accumulate(h->value, sizeof(h->value), &h->value_len, at, len);
    return capture(h, at, len);
}

static int name_is(const char *s, size_t len, const char *lower)
{
    size_t i;
    if (len != strlen(lower))
        return 0;
    for (i = 0; i < len; i++) {
        char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
        if (c != lower[i])
            return 0;
    }
    return 1;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct qf_http *h = from(p);
    if (h->headers_done)
        return 0;
    /* llhttp 8.1 lets "Name : value" and "Content Length: 5" through in responses with the
     * blank in the name; RFC 9112 5.1 forbids it, and a name that is not what it seems (a
     * length that frames nothing, a Retry-After that is ignored) is refused. */
    if (h->field_blank)
        return fail(h, QF_EPROTO);
    if (h->field_len <= sizeof(h->field) && name_is(h->field, h->field_len, "retry-after"))
        h->field_id = FIELD_RETRY_AFTER;
    else if (h->field_len <= sizeof(h->field) &&
             name_is(h->field, h->field_len, "content-encoding"))
        h->field_id = FIELD_CONTENT_ENCODING;
    return capture_end(h);
}

/* delta-seconds (RFC 9110 10.2.3) only: the HTTP-date form and anything that does not fit an
 * int give -1, as if absent, and the scheduler uses its own backoff. */
static int parse_delta_seconds(const char *s, size_t len)
{
    size_t i = 0;
    long v = 0;

    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i == len)
        return -1;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
        if (v > INT_MAX)
            return -1;
    }
    return (int)v;
}

/* Content-Encoding lines join into one list (RFC 9110 5.3); one longer than value[] can hold is
 * marked too long, and never taken for a coding we know. */
static void add_coding(struct qf_http *h)
{
    size_t kept = h->value_len < sizeof(h->value) ? h->value_len : sizeof(h->value);

    if (h->coding_len > 0)
        accumulate(h->coding, sizeof(h->coding), &h->coding_len, ",", 1);
    accumulate(h->coding, sizeof(h->coding), &h->coding_len, h->value, kept);
    if (h->value_len > kept)
        h->coding_len = SIZE_MAX;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct qf_http *h = from(p);
    if (h->headers_done)
        return 0;
    if (h->field_id == FIELD_RETRY_AFTER)
        h->retry_after_s =
            h->value_len <= sizeof(h->value) ? parse_delta_seconds(h->value, h->value_len) : -1;
    else if (h->field_id == FIELD_CONTENT_ENCODING)
        add_coding(h);
    h->field_id = FIELD_OTHER;
    h->field_len = 0;
    h->field_blank = 0;
    h->value_len = 0;
    h->nheaders++;
    return capture_end(h);
}

static int is_interim(int status)
{
    return status >= 100 && status <= 199;
}

/* Returning 1 tells llhttp "no body": 1xx, 204 and 304 never have one (RFC 9112 6.3), but
 * llhttp 8.1 would read Content-Length bytes after them. A Content-Length over the cap fails
 * now, before the body is downloaded. 101 would switch protocols, which we never ask for. */
static int on_headers_complete(llhttp_t *p)
{
    struct qf_http *h = from(p);
    int st = llhttp_get_status_code(p);

    h->status = st;
    if (st < 100 || st == 101)
        return fail(h, QF_EPROTO);
    if (is_interim(st))
        return 1;
    h->headers_done = 1;
    h->header_bytes = 0;
    if (st == 204 || st == 304 || h->no_body)
        return 1;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > h->body_max)
        return fail(h, QF_EBODY);
    return 0;
}

/* A body in the fed bytes moves to the body buffer: a second piece arrived, or the feed ends
 * before the response does. It fits: qf_http_feed() asked for room for the whole feed (or
 * the buffer already holds body_max), and the view is part of this feed. */
static int keep_view(struct qf_http *h)
{
    if (h->body_len > h->body_cap)
        return fail(h, QF_EBODY);
    if (h->body_len > 0) /* body may still be NULL */
        memcpy(h->body, h->view, h->body_len);
    h->view = NULL;
    return 0;
}

/* qf_http_feed() checked the room up front, so running out here means body_max. */
static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct qf_http *h = from(p);
    if (len > h->body_max - h->body_len)
        return fail(h, QF_EBODY);
    if (h->zero_copy && h->body_len == 0) { /* perhaps the whole body: leave it where it is */
        h->view = at;
        h->body_len = len;
        return 0;
    }
    if (h->view != NULL && keep_view(h) != 0)
        return HPE_USER;
    if (len > h->body_cap - h->body_len)
        return fail(h, QF_EBODY);
    memcpy(h->body + h->body_len, at, len);
    h->body_len += len;
    return 0;
}

static int on_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    return count_framing(from(p), len);
}

/* 1xx responses are skipped: the next message on the wire is the real one. Pausing stops
 * llhttp right after the final response, so pipelined or stray bytes stay unconsumed. */
static int on_message_complete(llhttp_t *p)
{
    struct qf_http *h = from(p);
    if (!h->headers_done)
        return 0;
    h->keep_alive = llhttp_should_keep_alive(p);
    h->complete = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_extension_name = on_chunk_extension,
    .on_chunk_extension_value = on_chunk_extension,
    .on_message_complete = on_message_complete,
};

void qf_http_init(struct qf_http *h, char *body, size_t body_cap, size_t body_max)
{
    memset(h, 0, sizeof(*h));
    llhttp_init(&h->parser, HTTP_RESPONSE, &settings);
    h->parser.data = h;
    h->body = body;
    h->body_cap = body_cap;
    h->body_max = body_max;
    h->retry_after_s = -1;
}

void qf_http_set_body(struct qf_http *h, char *body, size_t body_cap)
{
    h->body = body;
    h->body_cap = body_cap;
}

void qf_http_set_hbuf(struct qf_http *h, char *hbuf, size_t hcap)
{
    h->hbuf = hbuf;
    h->hcap = hbuf != NULL ? hcap : 0;
}

/* Runs llhttp over buf[0..len). Returns the bytes consumed or a sticky error. */
static ssize_t execute(struct qf_http *h, const char *buf, size_t len)
{
    llhttp_errno_t e = llhttp_execute(&h->parser, buf, len);

    if (e == HPE_OK)
        return (ssize_t)len;
    if (e == HPE_PAUSED && h->complete)
        return llhttp_get_error_pos(&h->parser) - buf;
    if (h->err == 0)
        h->err = QF_EPROTO;
    return h->err;
}

/* While the header block is open, llhttp sees at most the bytes left under the cap, so an
 * endless header fails at exactly QF_HTTP_HEADER_MAX whatever the split. */
ssize_t qf_http_feed(struct qf_http *h, const char *buf, size_t len)
{
    size_t off = 0;

    if (h->err != 0)
        return h->err;
    if (h->complete)
        return 0;
    if (len > h->body_cap - h->body_len && h->body_cap < h->body_max)
        return QF_ENOSPC;
    /* A feed adds at most its own bytes plus two NULs (llhttp ends an empty value only when
     * the next line starts); captured headers never exceed the header cap. */
    if (h->hbuf != NULL && !h->headers_done && len + 2 > h->hcap - h->hlen &&
        h->hcap < QF_HTTP_HEADER_MAX + 2)
        return QF_ENOSPC;
    while (off < len && !h->complete) {
        size_t n = len - off;
        ssize_t r;
        if (!h->headers_done && n > QF_HTTP_HEADER_MAX - h->header_bytes)
            n = QF_HTTP_HEADER_MAX - h->header_bytes;
        r = execute(h, buf + off, n);
        if (r < 0)
            return r;
        off += (size_t)r;
        if (!h->headers_done && !h->complete) {
            h->header_bytes += (size_t)r;
            if (h->header_bytes >= QF_HTTP_HEADER_MAX)
                return h->err = QF_EHEADER;
        }
    }
    if (h->view != NULL && !h->complete && keep_view(h) != 0)
        return h->err;
    return (ssize_t)off;
}

/* llhttp_finish() runs on_message_complete for a close-delimited body; anything else still
 * open (headers, Content-Length or chunked body) was cut short. */
int qf_http_finish(struct qf_http *h)
{
    if (h->complete)
        return 0;
    if (h->err != 0)
        return h->err;
    llhttp_finish(&h->parser);
    if (h->complete)
        return 0;
    if (h->err == 0)
        h->err = QF_ECLOSED;
    return h->err;
}
