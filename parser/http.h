/* Incremental HTTP/1.1 response parser over llhttp: bytes in, status/headers/body out.
 * Knows nothing of sockets, TLS or the engine. Never allocates: the caller owns the body
 * buffer and grows it when qf_http_feed() returns QF_ENOSPC. */
#ifndef QF_PARSER_HTTP_H
#define QF_PARSER_HTTP_H

#include <stddef.h>
#include <sys/types.h>

#include <llhttp.h>

#define QF_HTTP_HEADER_MAX (64 * 1024)       /* status line + header block */
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
    size_t header_bytes;   /* header block bytes so far (1xx blocks included); once the
                              final block is done: chunk extension and trailer bytes */
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
    int field_id;
    int field_blank;       /* the name holds a blank: RFC 9112 5.1 forbids it */
    size_t field_len;
    char field[16];
    size_t value_len;
    char value[32];
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
 * QF_HTTP_HEADER_MAX + 2), and call again. Errors: QF_EPROTO, QF_EBODY, QF_EHEADER (sticky). */
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

#endif
