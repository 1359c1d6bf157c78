/* Incremental HTTP/1.1 response parser: llhttp (strict) for the head, our own decoder for
 * chunked framing; bytes in, status/headers/body out. Every token is capped (a line, the
 * header block, a chunk size, extensions and trailers). Knows nothing of sockets, TLS or the
 * engine. Never allocates: the caller owns the body buffer and grows it on QF_ENOSPC. */
#ifndef QF_PARSER_HTTP_H
#define QF_PARSER_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <llhttp.h>

#define QF_HTTP_HEADER_MAX (64 * 1024)       /* status line + header block; also chunk
                                                extensions + trailers of one body */
#define QF_HTTP_LINE_MAX (8 * 1024)          /* one field line, status line, chunk line */
#define QF_HTTP_CHUNK_DIGITS_MAX 16          /* hex digits of a chunk size, zeros included */
#define QF_HTTP_BODY_MAX (8 * 1024 * 1024)   /* default body cap */

struct qf_http {
    llhttp_t parser;
    int status;            /* 0 until the status line is parsed */
    int retry_after_s;     /* Retry-After in seconds; -1 absent or not delta-seconds */
    /* Content-Encoding as received, its lines joined by ','; coding_len > sizeof(coding): too
     * long to keep (not a coding qf_inflate_coding() knows) */
    char coding[32];
    size_t coding_len;
    int complete;          /* the final (non-1xx) response is complete */
    int keep_alive;        /* valid once complete: connection may carry another request */
    int headers_done;      /* header block of the final response parsed */
    int err;               /* sticky QF_E* once a feed failed */
    char errmsg[96];       /* why, once err is set: printable ASCII (see qf_http_errmsg) */
    size_t header_bytes;   /* header block bytes so far (1xx blocks included) */
    char *body;            /* caller-owned */
    size_t body_len, body_cap, body_max;
    int no_body;           /* set after init for a HEAD request: the response has no body */
    int zero_copy;         /* set after init: a body that arrives whole in one feed is left in
                              the fed bytes (read it with qf_http_body()) instead of copied */
    const char *view;      /* that body, while it is in the fed bytes; NULL when in body */
    /* Optional header capture (hbuf set after init): "name\0value\0" pairs of the final
     * response, at most QF_HTTP_HEADER_MAX bytes; grown by the caller on QF_ENOSPC. */
    char *hbuf;
    size_t hlen, hcap;
    unsigned nheaders;
    /* header match state: names of interest are short, values capped */
    int in_fields;         /* the status line is done: field lines follow */
    int scan;              /* line ends just seen, for the HTAB scan (parser/http.c) */
    int field_id;
    size_t line_len;       /* bytes of the current status or field line */
    size_t field_len;
    char field[24];
    size_t value_len;
    char value[32];
    /* Transfer-Encoding: the codings of every such field line, as a list */
    int te_state;
    int te_bad;            /* not a list of tokens, or a coding with parameters */
    int te_seen;           /* a byte other than whitespace in a Transfer-Encoding value */
    unsigned te_chunked;   /* "chunked" elements */
    unsigned te_other;     /* other codings: none of them can be decoded */
    size_t te_tok_len;
    char te_tok[24];       /* the coding being read */
    char te_first[24];     /* the first coding that is not chunked, for the error */
    /* Chunked body: decoded here, not by llhttp (see parser/http.c) */
    int chunked;           /* the body is chunked; llhttp is done with this response */
    int ck_state;
    unsigned ck_digits;
    uint64_t ck_left;      /* chunk size, then data bytes still to come */
    size_t ck_line;        /* bytes of the current chunk or trailer line */
    size_t framing_bytes;  /* chunk extension and trailer bytes of this body */
};

/* Prepares h for one response. body/body_cap may be NULL/0; body_max caps the body size. */
void qf_http_init(struct qf_http *h, char *body, size_t body_cap, size_t body_max);

/* Installs a bigger body buffer holding the same first body_len bytes (after a grow). */
void qf_http_set_body(struct qf_http *h, char *body, size_t body_cap);

/* Turns on header capture into hbuf (non-NULL, any size: QF_ENOSPC asks for more), or installs
 * a bigger buffer holding the same first hlen bytes. */
void qf_http_set_hbuf(struct qf_http *h, char *hbuf, size_t hcap);

/* Feeds len bytes. Returns the number consumed: len, or fewer only when the response became
 * complete (bytes after it are not part of it: the caller must not reuse the connection if
 * any remain). QF_ENOSPC: nothing consumed, grow the body to >= body_len + len (up to
 * body_max), or while capturing headers the header buffer to >= hlen + len + 2 (up to
 * QF_HTTP_HEADER_MAX + 2), and call again. Errors: QF_EPROTO, QF_EBODY, QF_EHEADER (sticky);
 * qf_http_errmsg() says why. */
ssize_t qf_http_feed(struct qf_http *h, const char *buf, size_t len);

/* The body of a complete response: in the body buffer, or with zero_copy possibly still in
 * the bytes of the feed that completed it (valid until the caller changes those bytes). */
static inline const char *qf_http_body(const struct qf_http *h)
{
    return h->view != NULL ? h->view : h->body;
}

/* The peer closed the connection. Returns 0 when that completes the response (a
 * close-delimited body, or it was already complete), QF_ECLOSED when it was cut short. */
int qf_http_finish(struct qf_http *h);

/* A Retry-After value in delta-seconds (RFC 9110 10.2.3), blanks around it allowed; -1 for
 * the HTTP-date form or anything that does not fit an int (as if absent). */
int qf_http_delta_seconds(const char *s, size_t len);

/* Why the sticky error happened, for the request's errmsg: for QF_EPROTO "malformed HTTP
 * response: <reason>" (llhttp's reason, or ours for the chunked framing) or "unsupported
 * transfer-coding \"gzip\""; for QF_EBODY and QF_EHEADER which cap was passed. Printable
 * ASCII only (a coding name from the server is a token, cut to 20 bytes), at most
 * sizeof(errmsg) - 1 bytes; "" when there is no error. Valid until the next init. */
const char *qf_http_errmsg(const struct qf_http *h);

#endif
