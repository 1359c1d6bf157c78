/* HTTP/1.1 response parsing: llhttp (built strict) reads the status line and the header block,
 * this file decodes a chunked body itself, and puts status, Retry-After, keep-alive and the
 * body into caller-owned buffers. No sockets, no TLS, no allocation: when the body buffer is
 * too small the feed is refused whole (QF_ENOSPC) and the caller grows it. One static settings
 * table serves every parser; per-response state lives in struct qf_http (parser.data). */
#include "parser/http.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "qfetch.h"

/* The error messages name the caps. */
_Static_assert(QF_HTTP_LINE_MAX == 8 * 1024 && QF_HTTP_HEADER_MAX == 64 * 1024 &&
                   QF_HTTP_CHUNK_DIGITS_MAX == 16,
               "update the messages that name the caps");

enum { FIELD_OTHER, FIELD_RETRY_AFTER, FIELD_TRANSFER_ENCODING, FIELD_CONTENT_ENCODING };

/* Where the Transfer-Encoding list reader is: before a coding (or between two), in one, or
 * after one (whitespace, then ',' must follow). After ';' (parameters) the line is bad. */
enum { TE_BEFORE, TE_CODING, TE_AFTER, TE_DONE };

/* Chunked body (RFC 9112 7.1): chunk = size [ext] CRLF data CRLF; last-chunk = "0" [ext]
 * CRLF; then trailer field lines and CRLF. Whitespace around ';' and '=' (BWS) and before
 * the line's CR is allowed. llhttp 8.1 is not used for it: it refuses ";a=b;c=d" (the ';'
 * after a value is swallowed) and any whitespace around ';', and it reports nothing while it
 * reads size digits, so an endless size line of zeros could not be capped. */
enum {
    CK_SIZE,     /* hex digits of a chunk size */
    CK_SIZE_WS,  /* whitespace after the size: ';' or the line end follows */
    CK_EXT,      /* after ';': whitespace, then an extension name */
    CK_NAME,     /* in an extension name */
    CK_NAME_WS,  /* whitespace after a name: '=', ';' or the line end follows */
    CK_VALUE,    /* after '=': whitespace, then a token or a quoted string */
    CK_TOKEN,    /* in a token value */
    CK_QUOTED,   /* in a quoted-string value */
    CK_ESCAPE,   /* after a backslash in a quoted-string */
    CK_VALUE_WS, /* after a value: ';' or the line end follows */
    CK_SIZE_LF,  /* CR ending a chunk line: LF follows */
    CK_DATA,     /* ck_left data bytes to come */
    CK_DATA_CR,  /* chunk data done: CRLF follows */
    CK_DATA_LF,
    CK_TRAILER,    /* start of a trailer line, or the CRLF that ends the body */
    CK_FIELD_NAME, /* in a trailer field name */
    CK_FIELD,      /* in a trailer field value */
    CK_FIELD_LF,   /* CR ending a trailer line: LF follows */
    CK_END_LF,     /* CR of the final CRLF: LF follows */
};

static struct qf_http *from(llhttp_t *p)
{
    return p->data;
}

/* The first error wins; its message is kept with it. */
static int set_err(struct qf_http *h, int err, const char *msg)
{
    if (h->err == 0) {
        h->err = err;
        snprintf(h->errmsg, sizeof(h->errmsg), "%s", msg);
    }
    return h->err;
}

/* Callbacks report our own error through h->err; llhttp only learns "stop". */
static int fail(struct qf_http *h, int err, const char *msg)
{
    set_err(h, err, msg);
    return HPE_USER;
}

/* body_max in the largest unit that states it exactly. */
static int body_too_big(struct qf_http *h)
{
    char msg[sizeof(h->errmsg)];
    size_t m = h->body_max;
    const char *unit = "bytes";

    if (m >= 1024 * 1024 && m % (1024 * 1024) == 0)
        m /= 1024 * 1024, unit = "MiB";
    else if (m >= 1024 && m % 1024 == 0)
        m /= 1024, unit = "KiB";
    snprintf(msg, sizeof(msg), "response body larger than %zu %s", m, unit);
    return set_err(h, QF_EBODY, msg);
}

static int malformed(struct qf_http *h, const char *reason)
{
    static const char prefix[] = "malformed HTTP response: ";
    char msg[sizeof(h->errmsg)];
    snprintf(msg, sizeof(msg), "%s%.*s", prefix, (int)(sizeof(msg) - sizeof(prefix)), reason);
    return set_err(h, QF_EPROTO, msg);
}

static int is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int is_ws(char ch)
{
    return ch == ' ' || ch == '\t';
}

static int lower(char c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int hex_value(char ch)
{
    static const char digits[] = "0123456789abcdef";
    const char *d = ch != '\0' ? memchr(digits, lower(ch), 16) : NULL;
    return d != NULL ? (int)(d - digits) : -1;
}

static int name_is(const char *s, size_t len, const char *lower_name)
{
    size_t i;
    if (len != strlen(lower_name))
        return 0;
    for (i = 0; i < len; i++) {
        if (lower(s[i]) != lower_name[i])
            return 0;
    }
    return 1;
}

static void reset_message(struct qf_http *h)
{
    h->hlen = 0; /* an interim (1xx) response's headers are not the final ones */
    h->nheaders = 0;
    h->status = 0;
    h->retry_after_s = -1;
    h->coding_len = 0;
    h->in_fields = 0;
    h->field_id = FIELD_OTHER;
    h->line_len = 0;
    h->field_len = 0;
    h->value_len = 0;
    h->te_state = TE_BEFORE;
    h->te_bad = 0;
    h->te_seen = 0;
    h->te_chunked = h->te_other = 0;
    h->te_tok_len = 0;
    h->te_first[0] = '\0';
}

static int on_message_begin(llhttp_t *p)
{
    reset_message(from(p));
    return 0;
}

/* The status line and each field line are capped on their own, below the block's cap. */
static int count_line(struct qf_http *h, size_t len)
{
    if (len > QF_HTTP_LINE_MAX - h->line_len)
        return fail(h, QF_EHEADER, "response header line longer than 8 KiB");
    h->line_len += len;
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    return count_line(from(p), len);
}

static int on_status_complete(llhttp_t *p)
{
    struct qf_http *h = from(p);
    h->in_fields = 1;
    h->line_len = 0;
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
        return fail(h, QF_EHEADER, "response header block larger than 64 KiB");
    memcpy(h->hbuf + h->hlen, at, len);
    h->hlen += len;
    return 0;
}

static int capture_end(struct qf_http *h)
{
    if (h->hbuf == NULL)
        return 0;
    if (h->hlen >= h->hcap)
        return fail(h, QF_EHEADER, "response header block larger than 64 KiB");
    h->hbuf[h->hlen++] = '\0';
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct qf_http *h = from(p);
    if (count_line(h, len) != 0)
        return HPE_USER;
    accumulate(h->field, sizeof(h->field), &h->field_len, at, len);
    return capture(h, at, len);
}

/* One coding of the list has been read: chunked, or one we cannot decode. */
static void te_coding_end(struct qf_http *h)
{
    if (name_is(h->te_tok, h->te_tok_len, "chunked")) {
        h->te_chunked++;
    } else if (h->te_other++ == 0) { /* 21 bytes tell the message to cut at 20 */
        size_t n = h->te_tok_len < 21 ? h->te_tok_len : 21;
        memcpy(h->te_first, h->te_tok, n);
        h->te_first[n] = '\0';
    }
    h->te_tok_len = 0;
}

/* Transfer-Encoding = #transfer-coding (RFC 9112 6.1, lists as in RFC 9110 5.6.1): tokens
 * separated by commas with optional whitespace; empty elements are allowed. */
static void te_scan(struct qf_http *h, const char *at, size_t len)
{
    size_t i;

    for (i = 0; i < len && h->te_state != TE_DONE; i++) {
        unsigned char ch = (unsigned char)at[i];
        if (h->te_state == TE_CODING && is_tchar(ch)) {
            if (h->te_tok_len < sizeof(h->te_tok))
                h->te_tok[h->te_tok_len] = (char)ch;
            h->te_tok_len++;
            continue;
        }
        if (h->te_state == TE_CODING) {
            te_coding_end(h);
            h->te_state = TE_AFTER;
        }
        if (is_ws((char)ch))
            continue;
        h->te_seen = 1;
        if (ch == ',') {
            h->te_state = TE_BEFORE;
        } else if (h->te_state == TE_BEFORE && is_tchar(ch)) {
            h->te_state = TE_CODING;
            h->te_tok[0] = (char)ch;
            h->te_tok_len = 1;
        } else { /* parameters (none is defined for chunked), or not a list at all */
            h->te_bad = 1;
            h->te_state = TE_DONE;
        }
    }
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct qf_http *h = from(p);
    if (count_line(h, len) != 0)
        return HPE_USER;
    if (h->field_id == FIELD_RETRY_AFTER || h->field_id == FIELD_CONTENT_ENCODING)
        accumulate(h->value, sizeof(h->value), &h->value_len, at, len);
    else if (h->field_id == FIELD_TRANSFER_ENCODING)
        te_scan(h, at, len);
    return capture(h, at, len);
}

static int on_header_field_complete(llhttp_t *p)
{
    struct qf_http *h = from(p);
    if (h->field_len <= sizeof(h->field)) {
        if (name_is(h->field, h->field_len, "retry-after"))
            h->field_id = FIELD_RETRY_AFTER;
        else if (name_is(h->field, h->field_len, "transfer-encoding"))
            h->field_id = FIELD_TRANSFER_ENCODING;
        else if (name_is(h->field, h->field_len, "content-encoding"))
            h->field_id = FIELD_CONTENT_ENCODING;
    }
    return capture_end(h);
}

/* delta-seconds (RFC 9110 10.2.3) only: the HTTP-date form and anything that does not fit an
 * int give -1, as if absent, and the scheduler uses its own backoff. */
int qf_http_delta_seconds(const char *s, size_t len)
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
    if (h->field_id == FIELD_RETRY_AFTER)
        h->retry_after_s =
            h->value_len <= sizeof(h->value) ? qf_http_delta_seconds(h->value, h->value_len) : -1;
    else if (h->field_id == FIELD_CONTENT_ENCODING)
        add_coding(h);
    if (h->field_id == FIELD_TRANSFER_ENCODING) {
        if (h->te_state == TE_CODING)
            te_coding_end(h);
        if (h->te_state != TE_DONE) /* the next Transfer-Encoding line continues the list */
            h->te_state = TE_BEFORE;
    }
    h->field_id = FIELD_OTHER;
    h->line_len = 0;
    h->field_len = 0;
    h->value_len = 0;
    h->nheaders++;
    return capture_end(h);
}

static int is_interim(int status)
{
    return status >= 100 && status <= 199;
}

/* A Transfer-Encoding we can frame is exactly one "chunked" (RFC 9112 6.1, 7): any other
 * coding is one we cannot decode, so its body would be the coded bytes, never what the
 * caller asked for (and were chunked not last, the body would end only at close). An empty
 * field is no Transfer-Encoding, as llhttp sees it; commas alone frame nothing, but llhttp
 * would read them as "until close". Returns 0 or a sticky error. */
static int check_transfer_encoding(struct qf_http *h)
{
    char msg[sizeof(h->errmsg)];

    if (h->te_other > 0 && !h->te_bad) {
        snprintf(msg, sizeof(msg), "unsupported transfer-coding \"%.20s%s\"", h->te_first,
                 strlen(h->te_first) > 20 ? "..." : "");
        return set_err(h, QF_EPROTO, msg);
    }
    if (h->te_bad || (h->te_seen && h->te_chunked == 0))
        return malformed(h, "invalid Transfer-Encoding");
    if (h->te_chunked > 1)
        return malformed(h, "chunked applied more than once");
    h->chunked = h->te_chunked == 1;
    return 0;
}

/* Returning 1 tells llhttp "no body": 1xx, 204 and 304 never have one (RFC 9112 6.3), but
 * llhttp 8.1 would read Content-Length bytes after them. A chunked body is decoded here, so
 * llhttp is told "no body" for it too. A Content-Length over the cap fails now, before the
 * body is downloaded. 101 would switch protocols, which we never ask for. */
static int on_headers_complete(llhttp_t *p)
{
    struct qf_http *h = from(p);
    int st = llhttp_get_status_code(p);

    h->status = st;
    if (st < 100 || st == 101) {
        malformed(h, "unexpected status code");
        return HPE_USER;
    }
    if (is_interim(st))
        return 1;
    h->headers_done = 1;
    if (st == 204 || st == 304 || h->no_body)
        return 1; /* Transfer-Encoding too only says what a body would have had */
    if (check_transfer_encoding(h) != 0)
        return HPE_USER;
    if (h->chunked) {
        h->ck_state = CK_SIZE;
        return 1;
    }
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > h->body_max) {
        body_too_big(h);
        return HPE_USER;
    }
    return 0;
}

/* A body in the fed bytes moves to the body buffer: a second piece arrived, or the feed ends
 * before the response does. It fits: qf_http_feed() asked for room for the whole feed (or
 * the buffer already holds body_max), and the view is part of this feed. */
static int keep_view(struct qf_http *h)
{
    if (h->body_len > h->body_cap)
        return body_too_big(h);
    if (h->body_len > 0) /* body may still be NULL */
        memcpy(h->body, h->view, h->body_len);
    h->view = NULL;
    return 0;
}

/* qf_http_feed() checked the room up front, so running out here means body_max. */
static int add_body(struct qf_http *h, const char *at, size_t len)
{
    if (len > h->body_max - h->body_len)
        return body_too_big(h);
    if (h->zero_copy && h->body_len == 0) { /* perhaps the whole body: leave it where it is */
        h->view = at;
        h->body_len = len;
        return 0;
    }
    if (h->view != NULL && keep_view(h) != 0)
        return h->err;
    if (len > h->body_cap - h->body_len)
        return body_too_big(h);
    memcpy(h->body + h->body_len, at, len);
    h->body_len += len;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    return add_body(from(p), at, len) != 0 ? HPE_USER : 0;
}

/* 1xx responses are skipped: the next message on the wire is the real one. Pausing stops
 * llhttp right after the final header block (chunked) or response, so the chunked body,
 * pipelined or stray bytes stay unconsumed. RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0
 * response means faulty framing; the connection closes after it. */
static int on_message_complete(llhttp_t *p)
{
    struct qf_http *h = from(p);
    if (!h->headers_done)
        return 0;
    h->keep_alive = llhttp_should_keep_alive(p);
    if (h->chunked && p->http_major == 1 && p->http_minor == 0)
        h->keep_alive = 0;
    if (!h->chunked)
        h->complete = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_status_complete = on_status_complete,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
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

/* llhttp's reason, its first word lowercased when it is a plain word ("Invalid character in
 * chunk size" -> "invalid ...", "Content-Length can't ..." unchanged). */
static void llhttp_failed(struct qf_http *h)
{
    const char *why = llhttp_get_error_reason(&h->parser);
    char reason[sizeof(h->errmsg)];
    size_t i;

    snprintf(reason, sizeof(reason), "%s", why != NULL && why[0] != '\0' ? why : "parse error");
    for (i = 1; reason[i] >= 'a' && reason[i] <= 'z'; i++)
        ;
    if (reason[i] == ' ' || reason[i] == '\0')
        reason[0] = (char)lower(reason[0]);
    malformed(h, reason);
}

/* One llhttp run over buf[0..len). Returns the bytes consumed or a sticky error. */
static ssize_t run_llhttp(struct qf_http *h, const char *buf, size_t len)
{
    llhttp_errno_t e = llhttp_execute(&h->parser, buf, len);

    if (e == HPE_OK)
        return (ssize_t)len;
    if (e == HPE_PAUSED && (h->complete || h->chunked))
        return llhttp_get_error_pos(&h->parser) - buf;
    if (h->err == 0)
        llhttp_failed(h);
    return h->err;
}

/* Where the next llhttp run over buf[0..len) stops while a header block is open: at a HTAB,
 * just after a blank line (the block may end there: the body is never scanned), or at len.
 * h->scan carries "after LF" (1) and "after LF CR" (2) from one feed to the next. */
static size_t next_stop(struct qf_http *h, const char *buf, size_t len)
{
    size_t i = 0;

    while (i < len) {
        const char *lf, *tab;
        size_t end;
        if (h->scan == 1 && buf[i] == '\r') {
            h->scan = 2;
            i++;
            continue;
        }
        if (h->scan != 0 && buf[i] == '\n') {
            h->scan = 0;
            return i + 1;
        }
        h->scan = 0;
        lf = memchr(buf + i, '\n', len - i);
        end = lf != NULL ? (size_t)(lf - buf) : len;
        if ((tab = memchr(buf + i, '\t', end - i)) != NULL)
            return (size_t)(tab - buf);
        if (lf == NULL)
            break;
        i = end + 1;
        h->scan = 1;
    }
    return len;
}

/* llhttp 8.1 takes only SP after a Content-Length or Connection value ("5<TAB>" is refused,
 * "close<TAB>" is not seen as close); RFC 9110 5.6.3 makes HTAB and SP the same whitespace.
 * So in field lines, and only there, llhttp is handed SP for each HTAB: a captured value
 * holds SP where the server sent HTAB. Returns the bytes consumed. */
static ssize_t execute(struct qf_http *h, const char *buf, size_t len)
{
    size_t off = 0;

    while (off < len) {
        size_t n = h->headers_done ? len - off : next_stop(h, buf + off, len - off);
        const char *at = buf + off;
        ssize_t r;

        if (n == 0) { /* a HTAB */
            at = h->in_fields && !h->headers_done ? " " : at;
            n = 1;
        }
        r = run_llhttp(h, at, n);
        if (r < 0)
            return r;
        off += (size_t)r;
        if (h->complete || h->chunked) /* llhttp paused: the rest is not its to read */
            return (ssize_t)off;
    }
    return (ssize_t)off;
}

/* Chunk extensions and trailers add nothing to the body: besides each line's cap (CRLF not
 * counted, size digits counted), their bytes in one body share the header block's cap. */
static int count_framing(struct qf_http *h)
{
    if (++h->ck_line > QF_HTTP_LINE_MAX)
        return set_err(h, QF_EHEADER, "chunk line or trailer line longer than 8 KiB");
    if (++h->framing_bytes > QF_HTTP_HEADER_MAX)
        return set_err(h, QF_EHEADER, "chunk extensions and trailers larger than 64 KiB");
    return 0;
}

/* One byte of a chunk line after the size digits: extensions, whitespace, the CR. Each
 * extension is ;name or ;name=token or ;name="quoted" (RFC 9112 7.1.1). */
static int chunk_ext_byte(struct qf_http *h, unsigned char ch)
{
    int s = h->ck_state, next = -1;

    if (ch != '\r' && count_framing(h) != 0)
        return h->err;
    switch (s) {
    case CK_QUOTED:
        if (ch == '"')
            next = CK_VALUE_WS;
        else if (ch == '\\')
            next = CK_ESCAPE;
        else if (ch == '\t' || (ch >= 0x20 && ch != 0x7f))
            next = CK_QUOTED;
        break;
    case CK_ESCAPE:
        if (ch == '\t' || (ch >= 0x20 && ch != 0x7f))
            next = CK_QUOTED;
        break;
    case CK_EXT:
        if (is_ws((char)ch))
            next = s;
        else if (is_tchar(ch))
            next = CK_NAME;
        break;
    case CK_VALUE:
        if (is_ws((char)ch))
            next = s;
        else if (ch == '"')
            next = CK_QUOTED;
        else if (is_tchar(ch))
            next = CK_TOKEN;
        break;
    default: /* CK_SIZE_WS, CK_NAME, CK_NAME_WS, CK_TOKEN, CK_VALUE_WS */
        if ((s == CK_NAME || s == CK_TOKEN) && is_tchar(ch))
            next = s;
        else if (is_ws((char)ch))
            next = s == CK_NAME ? CK_NAME_WS : s == CK_TOKEN ? CK_VALUE_WS : s;
        else if (ch == ';')
            next = CK_EXT;
        else if (ch == '=' && (s == CK_NAME || s == CK_NAME_WS))
            next = CK_VALUE;
        else if (ch == '\r')
            next = CK_SIZE_LF;
        break;
    }
    if (next < 0)
        return malformed(h, s == CK_SIZE_WS ? "invalid chunk size" : "invalid chunk extension");
    h->ck_state = next;
    return 0;
}

/* One byte of the trailer section: field lines (name ":" value) and the final CRLF. */
static int trailer_byte(struct qf_http *h, unsigned char ch)
{
    int next = -1;

    if (h->ck_state == CK_END_LF) {
        if (ch != '\n')
            return malformed(h, "expected CRLF at the end of the chunked body");
        h->complete = 1;
        return 0;
    }
    if (h->ck_state == CK_TRAILER && ch == '\r') {
        h->ck_state = CK_END_LF;
        return 0;
    }
    if (ch != '\r' && ch != '\n' && count_framing(h) != 0)
        return h->err;
    switch (h->ck_state) {
    case CK_TRAILER:
        next = is_tchar(ch) ? CK_FIELD_NAME : -1;
        break;
    case CK_FIELD_NAME:
        next = is_tchar(ch) ? CK_FIELD_NAME : ch == ':' ? CK_FIELD : -1;
        break;
    case CK_FIELD:
        next = ch == '\r' ? CK_FIELD_LF : ch == '\t' || (ch >= 0x20 && ch != 0x7f) ? CK_FIELD : -1;
        break;
    case CK_FIELD_LF:
        next = ch == '\n' ? CK_TRAILER : -1;
        h->ck_line = 0;
        break;
    }
    if (next < 0)
        return malformed(h, "invalid trailer field");
    h->ck_state = next;
    return 0;
}

/* Decodes chunked framing from buf[0..len) into the body. Returns the bytes consumed (fewer
 * than len only once the body is complete) or a sticky error. */
static ssize_t dechunk(struct qf_http *h, const char *buf, size_t len)
{
    size_t i = 0;

    while (i < len && !h->complete) {
        unsigned char ch = (unsigned char)buf[i];
        int v;

        switch (h->ck_state) {
        case CK_DATA: {
            size_t n = len - i < h->ck_left ? len - i : (size_t)h->ck_left;
            if (add_body(h, buf + i, n) != 0)
                return h->err;
            h->ck_left -= n;
            i += n;
            if (h->ck_left == 0)
                h->ck_state = CK_DATA_CR;
            continue;
        }
        case CK_DATA_CR:
        case CK_DATA_LF:
            if (ch != (h->ck_state == CK_DATA_CR ? '\r' : '\n'))
                return malformed(h, "expected CRLF after chunk data");
            if (h->ck_state == CK_DATA_CR) {
                h->ck_state = CK_DATA_LF;
            } else {
                h->ck_state = CK_SIZE;
                h->ck_digits = 0;
                h->ck_left = 0;
                h->ck_line = 0;
            }
            break;
        case CK_SIZE:
            if ((v = hex_value((char)ch)) >= 0) {
                if (++h->ck_digits > QF_HTTP_CHUNK_DIGITS_MAX)
                    return malformed(h, "chunk size longer than 16 hex digits");
                h->ck_line++;
                h->ck_left = h->ck_left << 4 | (uint64_t)v;
                break;
            }
            if (h->ck_digits == 0)
                return malformed(h, "invalid chunk size");
            h->ck_state = CK_SIZE_WS;
            if (chunk_ext_byte(h, ch) != 0)
                return h->err;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                return malformed(h, "expected CRLF after chunk size");
            h->ck_line = 0;
            h->ck_state = h->ck_left > 0 ? CK_DATA : CK_TRAILER;
            break;
        case CK_TRAILER:
        case CK_FIELD_NAME:
        case CK_FIELD:
        case CK_FIELD_LF:
        case CK_END_LF:
            if (trailer_byte(h, ch) != 0)
                return h->err;
            break;
        default:
            if (chunk_ext_byte(h, ch) != 0)
                return h->err;
            break;
        }
        i++;
    }
    return (ssize_t)i;
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
        if (h->chunked) {
            r = dechunk(h, buf + off, n);
        } else {
            if (!h->headers_done && n > QF_HTTP_HEADER_MAX - h->header_bytes)
                n = QF_HTTP_HEADER_MAX - h->header_bytes;
            r = execute(h, buf + off, n);
        }
        if (r < 0)
            return r;
        if (!h->headers_done && !h->complete) {
            h->header_bytes += (size_t)r;
            if (h->header_bytes >= QF_HTTP_HEADER_MAX)
                return set_err(h, QF_EHEADER, "response header block larger than 64 KiB");
        }
        off += (size_t)r;
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
    if (!h->chunked)
        llhttp_finish(&h->parser);
    if (h->complete)
        return 0;
    return set_err(h, QF_ECLOSED, "connection closed before the response was complete");
}

const char *qf_http_errmsg(const struct qf_http *h)
{
    return h->err == 0 ? "" : h->errmsg;
}
