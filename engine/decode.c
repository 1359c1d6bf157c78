/* Coded response bodies: the connection hands each feed's body bytes here, as they arrive, and
 * they are inflated into the slot's own buffer, so memory follows the inflated size (capped
 * like any body) and the parser's buffer only ever holds one feed of coded bytes. A body that
 * cannot be decoded is a per-response error: the rest of it is read and dropped, so the
 * connection stays usable, and the report says why. */
#include <stdio.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/client.h"
#include "engine/decode.h"
#include "engine/sched.h"
#include "qfetch.h"

static voidpf zlib_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return qf_malloc((size_t)items * size);
}

static void zlib_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    qf_free(p);
}

void qf_decode_init(struct qf_decode *d)
{
    qf_inflate_init(&d->z, zlib_alloc, zlib_free, NULL);
}

void qf_decode_expect(struct qf_decode *d)
{
    d->checked = d->active = d->unsupported = d->err = 0;
    d->len = d->raw = 0;
    d->msg[0] = '\0';
}

static int streamed(const struct qf_req *r)
{
    return r->general != NULL && r->general->on_chunk != NULL;
}

void qf_decode_begin(struct qf_decode *d, const struct qf_req *r, const char *coding,
                     size_t coding_len, size_t coding_cap)
{
    const struct qf_req_general *g = r->general;

    d->checked = 1;
    if (g != NULL && !g->compressed)
        return; /* the caller gets the body as sent, as curl does without --compressed */
    enum qf_coding cd = coding_len > coding_cap ? QF_CODING_UNKNOWN
                                                : qf_inflate_coding(coding, coding_len);
    if (cd == QF_CODING_IDENTITY)
        return;
    d->active = 1;
    if (cd == QF_CODING_UNKNOWN) {
        size_t n = coding_len < coding_cap ? coding_len : coding_cap;
        char name[3 * 32 + 1]; /* the server's text, made fit to print */
        qf_text_clean(coding, n < 32 ? n : 32, name, sizeof(name));
        d->unsupported = 1;
        snprintf(d->msg, sizeof(d->msg), "unsupported content-encoding \"%s%s\"", name,
                 n < coding_len ? "..." : "");
        return;
    }
    /* A streamed body has no cap, as without a coding; the ratio cap still holds. */
    int rc = qf_inflate_begin(&d->z, cd, streamed(r) ? UINT64_MAX : QF_HTTP_BODY_MAX);
    if (rc < 0) {
        d->err = rc;
        snprintf(d->msg, sizeof(d->msg), "%s", d->z.msg);
    }
}

/* Doubles the inflated-body buffer, up to one byte past the body cap (the inflater reports
 * the byte past it), within the client's budget for all buffered bodies. */
static int grow_out(struct qf_client *cl, struct qf_decode *d, const struct qf_req *r)
{
    size_t max = streamed(r) ? QF_DECODE_PIECE : QF_HTTP_BODY_MAX + 1;
    size_t cap = d->cap ? 2 * d->cap : QF_DECODE_PIECE;

    if (cap > max)
        cap = max;
    if (cap <= d->cap) {
        snprintf(d->msg, sizeof(d->msg), "response body larger than %d MiB once inflated",
                 QF_HTTP_BODY_MAX >> 20);
        return QF_EBODY;
    }
    if (cl->body_total - d->cap + cap > cl->body_max_total) {
        snprintf(d->msg, sizeof(d->msg), "responses buffered by this client exceed %zu MiB",
                 cl->body_max_total >> 20);
        return QF_EBODY;
    }
    char *b = qf_realloc(d->out, cap);
    if (b == NULL) {
        snprintf(d->msg, sizeof(d->msg), "out of memory for the inflated body");
        return QF_ENOMEM;
    }
    cl->body_total += cap - d->cap;
    d->out = b;
    d->cap = cap;
    return 0;
}

int qf_decode_feed(struct qf_client *cl, struct qf_decode *d, const struct qf_req *r,
                   const char **in, size_t *len)
{
    int rc = 0;

    /* Dropped or inflated, coded bytes are read: they are capped like a body as sent. */
    if (!streamed(r) && *len > QF_HTTP_BODY_MAX - d->raw)
        return QF_EBODY;
    d->raw += *len;
    if (d->unsupported && d->err == 0 && *len > 0)
        d->err = QF_EPROTO;
    while (d->err == 0) {
        if (d->len == d->cap && (d->cap == 0 || !streamed(r)) && (rc = grow_out(cl, d, r)) < 0) {
            d->err = rc;
            break;
        }
        rc = qf_inflate_feed(&d->z, in, len, d->out, d->cap, &d->len);
        if (rc == 0)
            return 0;
        if (rc == QF_ENOSPC && streamed(r) && d->len == d->cap)
            return QF_ENOSPC;
        if (rc != QF_ENOSPC) {
            d->err = rc;
            snprintf(d->msg, sizeof(d->msg), "%s", d->z.msg);
        }
    }
    *len = 0; /* dropped: the report carries the error */
    return 0;
}

void qf_decode_outcome(struct qf_decode *d, struct qf_outcome *o)
{
    if (!d->active)
        return;
    if (d->err == 0 && !d->unsupported && (d->err = qf_inflate_end(&d->z)) != 0)
        snprintf(d->msg, sizeof(d->msg), "%s", d->z.msg);
    if (d->err != 0) {
        o->err = d->err;
        o->msg = d->msg;
        return;
    }
    if (o->body != NULL) { /* NULL: streamed, body_len counts what on_chunk got */
        o->body = d->len > 0 ? d->out : "";
        o->body_len = d->len;
    }
}

void qf_decode_release(struct qf_client *cl, struct qf_decode *d, size_t keep)
{
    if (d->cap <= keep)
        return;
    cl->body_total -= d->cap;
    qf_free(d->out);
    d->out = NULL;
    d->cap = d->len = 0;
}

void qf_decode_free(struct qf_decode *d)
{
    qf_inflate_free(&d->z);
    qf_free(d->out);
    d->out = NULL;
    d->cap = d->len = 0;
}
