/* Response-path invariants; input layout in check.h. The HTTP feed is compared whole against
 * split, and so is the inflated body of a coded one; the quote against the reference reader in
 * oracle.c; the price text against glibc's exact "%.2f" (round half even on the binary value,
 * as Decimal.quantize does). */
#include "tests/fuzz/check.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parser/http.h"
#include "parser/inflate.h"
#include "parser/json.h"
#include "parser/price.h"
#include "qfetch.h"
#include "tests/fuzz/oracle.h"

#define PRICE_TEXT_MAX 400 /* parser/json.h: longer price numbers are QF_EJSON */
#define TOKS_START 16

#define HBUF_START 8

struct plan {
    const unsigned char *sizes;
    size_t nsizes;
    int whole, exact_grow, eof, capture, head, zero_copy;
    size_t body_max;
};

struct run {
    int rc, complete, status, keep_alive, retry_after_s;
    char errmsg[sizeof(((struct qf_http *)0)->errmsg)];
    size_t consumed;
    char *body; /* malloc'd, caller frees */
    size_t body_len;
    char *hbuf; /* malloc'd when capturing, caller frees */
    size_t hlen;
    unsigned nheaders;
    char coding[32];
    size_t coding_len;
};

static size_t piece_len(const struct plan *p, size_t k, size_t left)
{
    size_t n = 1;
    if (p->whole)
        return left;
    if (p->nsizes > 0) {
        unsigned b = p->sizes[k % p->nsizes];
        n = b < 128 ? b + 1 : (size_t)(b - 127) * 256;
    }
    return n < left ? n : left;
}

static size_t grown(size_t cap, size_t need, size_t max, int exact)
{
    size_t n = exact ? need : cap ? cap * 2 : 64;
    if (n < need)
        n = need;
    return n > max ? max : n;
}

/* QF_ENOSPC: grow what the contract names (the header buffer while capturing headers lacks
 * len + 2 bytes, else the body), doubling or exactly to the minimum, within the caps; each
 * buffer needs at most one grow per feed. */
static int feed(struct ctx *c, struct qf_http *h, const char *piece, size_t n, int exact,
                ssize_t *out)
{
    ssize_t r;
    int body_grows = 0, hbuf_grows = 0;

    while ((r = qf_http_feed(h, piece, n)) == QF_ENOSPC) {
        size_t cap;
        char *nb;
        if (h->hbuf != NULL && !h->headers_done && n + 2 > h->hcap - h->hlen &&
            h->hcap < QF_HTTP_HEADER_MAX + 2) {
            CHECK(hbuf_grows++ == 0, "QF_ENOSPC again after growing hbuf to %zu for %zu bytes",
                  h->hcap, n);
            cap = grown(h->hcap, h->hlen + n + 2, QF_HTTP_HEADER_MAX + 2, exact);
            nb = realloc(h->hbuf, cap);
            if (nb == NULL)
                abort();
            qf_http_set_hbuf(h, nb, cap);
            continue;
        }
        CHECK(body_grows++ == 0, "QF_ENOSPC again after growing the body to %zu for %zu bytes",
              h->body_cap, n);
        cap = grown(h->body_cap, h->body_len + n, h->body_max, exact);
        CHECK(cap > h->body_cap, "QF_ENOSPC though body_cap %zu is at body_max %zu", h->body_cap,
              h->body_max);
        nb = realloc(h->body, cap);
        if (nb == NULL)
            abort();
        qf_http_set_body(h, nb, cap);
    }
    CHECK(r == QF_EPROTO || r == QF_EBODY || r == QF_EHEADER || r >= 0, "qf_http_feed returned %zd",
          r);
    CHECK(r < 0 || (size_t)r <= n, "consumed %zd of %zu bytes", r, n);
    CHECK(r < 0 || (size_t)r == n || h->complete, "consumed %zd of %zu without completing", r, n);
    CHECK(h->body_len <= h->body_max, "body_len %zu > body_max %zu", h->body_len, h->body_max);
    CHECK(h->body_len == 0 || h->body_len <= h->body_cap, "body_len %zu > body_cap %zu",
          h->body_len, h->body_cap);
    CHECK(h->header_bytes <= QF_HTTP_HEADER_MAX, "header_bytes %zu", h->header_bytes);
    CHECK(h->hbuf == NULL || (h->hlen <= h->hcap && h->hlen <= QF_HTTP_HEADER_MAX),
          "hlen %zu, hcap %zu", h->hlen, h->hcap);
    *out = r;
    return 0;
}

static int is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Captured headers: exactly nheaders "name\0value\0" pairs filling hlen, names made of
 * token characters, values without CR, LF or NUL. A name may be empty: llhttp 8.1 lets a
 * response's ": value" line through, and capturing it as such is harmless. */
static int check_captured(struct ctx *c, const struct qf_http *h)
{
    size_t i = 0;
    unsigned k;

    for (k = 0; k < h->nheaders; k++) {
        size_t at = i;
        while (i < h->hlen && h->hbuf[i] != '\0')
            CHECK(is_tchar((unsigned char)h->hbuf[i++]), "header %u name byte 0x%02x", k,
                  (unsigned char)h->hbuf[i - 1]);
        CHECK(i < h->hlen, "header %u: unterminated name at %zu", k, at);
        for (i++; i < h->hlen && h->hbuf[i] != '\0'; i++)
            CHECK(h->hbuf[i] != '\r' && h->hbuf[i] != '\n', "header %u value holds CR/LF", k);
        CHECK(i < h->hlen, "header %u: unterminated value", k);
        i++;
    }
    CHECK(i == h->hlen, "%u captured headers use %zu of hlen %zu bytes", h->nheaders, i, h->hlen);
    return 0;
}

/* qf_http_errmsg(): printable ASCII (a server's bytes never reach it raw), set exactly when
 * there is an error. */
static int check_errmsg(struct ctx *c, const struct qf_http *h, int rc)
{
    const char *m = qf_http_errmsg(h);
    size_t n = strnlen(m, sizeof(h->errmsg));

    CHECK(n < sizeof(h->errmsg), "errmsg not NUL-terminated");
    CHECK((n > 0) == (rc != 0), "errmsg '%s' with rc %d", m, rc);
    for (size_t i = 0; i < n; i++)
        CHECK(m[i] >= 0x20 && m[i] < 0x7f, "errmsg byte 0x%02x at %zu", (unsigned char)m[i], i);
    return 0;
}

static int finish_checks(struct ctx *c, struct qf_http *h, const struct plan *p, size_t len,
                         struct run *o)
{
    if (o->rc == 0 && !h->complete && p->eof) {
        o->rc = qf_http_finish(h);
        CHECK(o->rc == 0 || o->rc == QF_ECLOSED, "qf_http_finish returned %d", o->rc);
        CHECK((o->rc == 0) == (h->complete != 0), "qf_http_finish %d but complete %d", o->rc,
              h->complete);
    }
    if (o->rc != 0) {
        CHECK(qf_http_feed(h, "X", 1) == o->rc, "error %d not sticky for qf_http_feed", o->rc);
        CHECK(qf_http_finish(h) == o->rc, "error %d not sticky for qf_http_finish", o->rc);
    }
    if (h->complete) {
        CHECK(o->rc == 0, "complete with error %d", o->rc);
        CHECK(h->headers_done, "complete before the final header block");
        CHECK(h->status >= 200 && h->status <= 999, "complete with status %d", h->status);
        CHECK(qf_http_feed(h, "X", 1) == 0, "a feed after completion consumed bytes");
        CHECK(qf_http_finish(h) == 0, "qf_http_finish after completion failed");
        CHECK(!p->head || h->body_len == 0, "a HEAD response with %zu body bytes", h->body_len);
        if (h->hbuf != NULL && check_captured(c, h))
            return 1;
    } else if (o->rc == 0) {
        CHECK(o->consumed == len, "open response consumed %zu of %zu", o->consumed, len);
    }
    if (check_errmsg(c, h, o->rc))
        return 1;
    snprintf(o->errmsg, sizeof(o->errmsg), "%s", qf_http_errmsg(h));
    CHECK(h->retry_after_s >= -1, "retry_after_s %d", h->retry_after_s);
    CHECK(o->consumed <= len, "consumed %zu > len %zu", o->consumed, len);
    o->complete = h->complete;
    o->status = h->status;
    o->keep_alive = h->keep_alive;
    o->retry_after_s = h->retry_after_s;
    o->body_len = h->body_len;
    o->hlen = h->hlen;
    o->nheaders = h->nheaders;
    memcpy(o->coding, h->coding, sizeof(o->coding));
    o->coding_len = h->coding_len;
    return 0;
}

/* Drives one response as the engine would: pieces copied to exact-size buffers, growth on
 * QF_ENOSPC, stop at completion or error, qf_http_finish() when the peer closed. */
static int drive(struct ctx *c, const char *resp, size_t len, const struct plan *p, struct run *o)
{
    struct qf_http h;
    size_t off = 0, k = 0;
    int bad = 0;

    memset(o, 0, sizeof(*o));
    qf_http_init(&h, NULL, 0, p->body_max);
    h.no_body = p->head;
    h.zero_copy = p->zero_copy;
    if (p->capture)
        qf_http_set_hbuf(&h, xmalloc(HBUF_START), HBUF_START);
    while (!bad && off < len && !h.complete) {
        size_t n = piece_len(p, k++, len - off);
        char *piece = xmalloc(n);
        ssize_t r = 0;
        memcpy(piece, resp + off, n);
        bad = feed(c, &h, piece, n, p->exact_grow, &r);
        if (!bad && h.view != NULL) {
            /* Only a feed that completed the response may leave its body in the piece; use
             * it before the piece goes, as the engine does. */
            CHECK(h.complete || r < 0, "the body was left in a feed that did not complete it");
            if (h.complete && r >= 0) {
                char *b = xmalloc(h.body_len ? h.body_len : 1);
                memcpy(b, h.view, h.body_len);
                free(h.body);
                h.body = b;
                h.body_cap = h.body_len;
            }
            h.view = NULL;
        }
        free(piece);
        if (bad)
            break;
        if (r < 0) {
            o->rc = (int)r;
            break;
        }
        o->consumed += (size_t)r;
        off += (size_t)r;
    }
    if (!bad)
        bad = finish_checks(c, &h, p, len, o);
    o->body = h.body;
    o->hbuf = h.hbuf;
    return bad;
}

static int same_runs(struct ctx *c, const struct run *w, const struct run *s)
{
    CHECK(w->rc == s->rc, "rc whole %d, split %d", w->rc, s->rc);
    CHECK(w->status == s->status, "status whole %d, split %d", w->status, s->status);
    CHECK(strcmp(w->errmsg, s->errmsg) == 0, "errmsg whole '%s', split '%s'", w->errmsg, s->errmsg);
    if (w->rc != 0)
        return 0; /* after an error, how far the body got depends on the split */
    CHECK(w->complete == s->complete, "complete whole %d, split %d", w->complete, s->complete);
    CHECK(w->consumed == s->consumed, "consumed whole %zu, split %zu", w->consumed, s->consumed);
    CHECK(w->keep_alive == s->keep_alive, "keep_alive whole %d, split %d", w->keep_alive,
          s->keep_alive);
    CHECK(w->retry_after_s == s->retry_after_s, "retry_after_s whole %d, split %d",
          w->retry_after_s, s->retry_after_s);
    CHECK(w->body_len == s->body_len, "body_len whole %zu, split %zu", w->body_len, s->body_len);
    CHECK(w->body_len == 0 || memcmp(w->body, s->body, w->body_len) == 0, "body bytes differ");
    CHECK(w->nheaders == s->nheaders && w->hlen == s->hlen,
          "captured headers whole %u in %zu bytes, split %u in %zu", w->nheaders, w->hlen,
          s->nheaders, s->hlen);
    CHECK(w->hlen == 0 || memcmp(w->hbuf, s->hbuf, w->hlen) == 0, "captured header bytes differ");
    CHECK(w->coding_len == s->coding_len && (w->coding_len > sizeof(w->coding) ||
                                             memcmp(w->coding, s->coding, w->coding_len) == 0),
          "Content-Encoding whole '%.*s', split '%.*s'", (int)(w->coding_len % 33), w->coding,
          (int)(s->coding_len % 33), s->coding);
    return 0;
}

/* ---- Coded bodies ------------------------------------------------------------------------ */

struct zrun {
    int rc;
    char *out; /* malloc'd */
    size_t len;
    uint64_t in_total;
    char msg[112];
};

static void append(struct zrun *o, size_t *cap, const char *b, size_t n)
{
    if (n == 0)
        return;
    if (o->len + n > *cap) {
        while (o->len + n > *cap)
            *cap = *cap ? *cap * 2 : 256;
        o->out = realloc(o->out, *cap);
        if (o->out == NULL)
            abort();
    }
    memcpy(o->out + o->len, b, n);
    o->len += n;
}

/* One body through qf_inflate: input in the plan's pieces (whole: at once), each copied to an
 * exact-size buffer; output into room bytes (exact size too), emptied whenever it fills. A
 * broken contract is reported after the buffers are freed. */
static int inflate_run(struct ctx *c, enum qf_coding coding, const char *body, size_t len,
                       const struct plan *p, size_t room, struct zrun *o)
{
    struct qf_inflate z;
    size_t off = 0, k = 0, cap = 0, left = 0, made = 0;
    char *obuf = xmalloc(room);
    int broken = 0, again = 0;

    memset(o, 0, sizeof(*o));
    qf_inflate_init(&z, NULL, NULL, NULL);
    if (qf_inflate_begin(&z, coding, QF_FUZZ_INFLATE_MAX) != 0)
        broken = 1;
    while (!broken && o->rc == 0 && off < len) {
        size_t n = piece_len(p, k++, len - off);
        char *piece = xmalloc(n);
        const char *in = piece;
        left = n;
        memcpy(piece, body + off, n);
        for (;;) {
            made = 0;
            int rc = qf_inflate_feed(&z, &in, &left, obuf, room, &made);
            append(o, &cap, obuf, made);
            if ((rc == QF_ENOSPC && made != room) || (rc == 0 && left != 0)) {
                broken = rc == 0 ? 3 : 2;
                break;
            }
            if (rc != QF_ENOSPC) {
                o->rc = rc;
                break;
            }
        }
        free(piece);
        off += n;
    }
    if (!broken && o->rc == 0)
        o->rc = qf_inflate_end(&z);
    if (!broken && o->rc != 0) { /* errors are sticky */
        const char *x = "x";
        size_t one = 1;
        again = qf_inflate_feed(&z, &x, &one, obuf, room, &made);
    }
    o->in_total = z.in_total;
    snprintf(o->msg, sizeof(o->msg), "%s", z.msg);
    qf_inflate_free(&z);
    free(obuf);
    CHECK(broken != 1, "qf_inflate_begin failed");
    CHECK(broken != 2, "QF_ENOSPC with %zu of %zu bytes made", made, room);
    CHECK(broken != 3, "qf_inflate_feed returned 0 with %zu bytes left", left);
    CHECK(o->rc == 0 || again == o->rc, "error %d not sticky: %d", o->rc, again);
    return 0;
}

static int check_zrun(struct ctx *c, const char *what, const struct zrun *o)
{
    CHECK(o->rc == 0 || o->rc == QF_EPROTO || o->rc == QF_EBODY, "%s: rc %d", what, o->rc);
    CHECK((o->rc != 0) == (o->msg[0] != '\0'), "%s: rc %d with message '%s'", what, o->rc,
          o->msg);
    CHECK(o->rc != QF_EPROTO || strncmp(o->msg, "corrupt gzip body: ", 19) == 0 ||
              strncmp(o->msg, "corrupt deflate body: ", 22) == 0,
          "%s: message '%s'", what, o->msg);
    CHECK(o->rc != QF_EBODY || strstr(o->msg, "decompression bomb") != NULL ||
              strstr(o->msg, "once inflated") != NULL,
          "%s: message '%s'", what, o->msg);
    CHECK(o->len <= QF_FUZZ_INFLATE_MAX + 1, "%s: %zu bytes out", what, o->len);
    CHECK(o->rc != 0 || o->len <= QF_INFLATE_RATIO_FREE ||
              o->len <= o->in_total * QF_INFLATE_RATIO_MAX,
          "%s: %zu bytes from %llu passed the ratio cap", what, o->len,
          (unsigned long long)o->in_total);
    return 0;
}

/* A body coded gzip or deflate is inflated at once and in the split plan's pieces into a small
 * buffer: both must agree (the ratio cap is checked at different points, so a bomb may be
 * refused by one way only), and the inflated body replaces the coded one for the quote checks.
 * *out stays NULL when the body is not coded, or does not inflate. */
static int check_inflate(struct ctx *c, const struct run *w, const struct run *s,
                         const struct plan *split, size_t room, char **out, size_t *len)
{
    enum qf_coding coding = w->coding_len > sizeof(w->coding)
                                ? QF_CODING_UNKNOWN
                                : qf_inflate_coding(w->coding, w->coding_len);
    struct plan whole = *split;
    struct zrun a, b;
    int bad;

    *out = NULL;
    if (coding != QF_CODING_GZIP && coding != QF_CODING_DEFLATE)
        return 0;
    whole.whole = 1;
    bad = inflate_run(c, coding, w->body, w->body_len, &whole, QF_FUZZ_INFLATE_MAX + 1, &a);
    if (bad)
        return bad;
    bad = inflate_run(c, coding, s->body, s->body_len, split, room, &b) ||
          check_zrun(c, "whole", &a) || check_zrun(c, "split", &b);
    if (!bad && a.rc != b.rc) {
        const struct zrun *x = a.rc == QF_EBODY ? &a : &b;
        if (!(x->rc == QF_EBODY && strstr(x->msg, "decompression bomb") != NULL))
            bad = violation(c, __FILE__, __LINE__, "inflate rc whole %d (%s), split %d (%s)",
                            a.rc, a.msg, b.rc, b.msg);
    }
    if (!bad && a.rc == 0 && b.rc == 0 &&
        (a.len != b.len || (a.len > 0 && memcmp(a.out, b.out, a.len) != 0)))
        bad = violation(c, __FILE__, __LINE__, "inflated whole %zu bytes, split %zu differ", a.len,
                        b.len);
    if (!bad && a.rc == 0 && b.rc == 0) {
        *out = a.out;
        *len = a.len;
        a.out = NULL;
    }
    free(a.out);
    free(b.out);
    return bad;
}

/* Two decimals of v, checked against glibc's exact rounding, its length contract and the
 * value it stands for. */
static int check_price_text(struct ctx *c, double v)
{
    char out[32], ref[64];
    int n = qf_price_format(v, out, sizeof(out));

    if (!isfinite(v) || fabs(v) >= 1e26) {
        CHECK(n == QF_ERANGE, "qf_price_format(%a) gave %d, want QF_ERANGE", v, n);
        return 0;
    }
    CHECK(n > 0 && (size_t)n < sizeof(out), "qf_price_format(%a) returned %d", v, n);
    CHECK(strlen(out) == (size_t)n, "qf_price_format(%a): length %d but text '%s'", v, n, out);
    snprintf(ref, sizeof(ref), "%.2f", v);
    CHECK(strcmp(out, ref) == 0, "qf_price_format(%a) = '%s', exact rounding gives '%s'", v, out,
          ref);
    double back = strtod(out, NULL);
    CHECK(fabs(back - v) <= 0.005 + fabs(v) * 4 * DBL_EPSILON,
          "qf_price_format(%a) = '%s' is more than half a cent away", v, out);

    char *exact = xmalloc((size_t)n + 1), *tight = xmalloc((size_t)n);
    int n1 = qf_price_format(v, exact, (size_t)n + 1), n2 = qf_price_format(v, tight, (size_t)n);
    int same = n1 == n && memcmp(exact, out, (size_t)n + 1) == 0;
    free(exact);
    free(tight);
    CHECK(same, "qf_price_format(%a) with cap %d gave %d", v, n + 1, n1);
    CHECK(n2 == QF_ENOSPC, "qf_price_format(%a) with cap %d gave %d, want QF_ENOSPC", v, n, n2);
    return 0;
}

/* qf_json_extract with a token array of exactly ntoks entries, doubling from start on
 * QF_ENOSPC; the contract bounds the need at len + 1 tokens. */
static int extract(struct ctx *c, const char *body, size_t len, unsigned start, struct qf_quote *q,
                   int *rc)
{
    unsigned n = start;
    for (;;) {
        jsmntok_t *toks = xmalloc(n * sizeof(*toks));
        *rc = qf_json_extract(body, len, toks, n, q);
        free(toks);
        if (*rc != QF_ENOSPC)
            break;
        CHECK(n < len + 1, "QF_ENOSPC with %u tokens for a %zu-byte body", n, len);
        n = n * 2 > len + 1 ? (unsigned)len + 1 : n * 2;
    }
    CHECK(*rc == 0 || *rc == QF_ENOPRICE || *rc == QF_EJSON || *rc == QF_ERANGE,
          "qf_json_extract returned %d", *rc);
    return 0;
}

/* Clean text (include/qfetch.h): valid UTF-8 without control or bidi characters, so that
 * cleaning it again changes nothing. */
static int text_safe(struct ctx *c, const char *what, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    char again[3 * 160 + 1];
    CHECK(n < cap, "%s not NUL-terminated", what);
    CHECK(3 * n + 1 <= sizeof(again), "%s: %zu bytes", what, n);
    CHECK(qf_oracle_text(s, n, again, 1) == n && memcmp(again, s, n) == 0,
          "%s is not clean text: '%s'", what, s);
    return 0;
}

/* What copy_string() must give for string value v: the whole decoded text when it fits,
 * else "" (whole_only) or a prefix cut at most a few bytes short of the buffer. */
static int expect_string(struct ctx *c, const char *what, const char *js, struct qf_oracle_val v,
                         const char *got, size_t cap, int whole_only)
{
    size_t glen = strlen(got), dlen;
    char *want;

    if (v.type != QF_ORACLE_STRING) {
        CHECK(glen == 0, "%s: '%s' from a non-string value", what, got);
        return 0;
    }
    /* A malformed byte becomes U+FFFD: the text may grow to 3 times its raw length. */
    want = xmalloc(3 * v.len + 1);
    dlen = qf_oracle_json_string(js, v, want, 3 * v.len + 1, 1);
    int ok = dlen < cap   ? glen == dlen && memcmp(got, want, dlen) == 0
             : whole_only ? glen == 0
                          : glen + 8 >= cap && memcmp(got, want, glen) == 0;
    free(want);
    CHECK(ok, "%s: got '%s' (%zu bytes) from a %zu-byte decoded string", what, got, glen, dlen);
    return 0;
}

static int number_value(const char *js, struct qf_oracle_val v, double *out)
{
    char buf[PRICE_TEXT_MAX + 1];
    memcpy(buf, js + v.at, v.len);
    buf[v.len] = '\0';
    *out = strtod(buf, NULL);
    return isfinite(*out) ? 0 : QF_ERANGE;
}

/* The extraction must agree with the reference reader on validity, the price and strings. */
static int check_against_oracle(struct ctx *c, const char *js, size_t len, int rc,
                                const struct qf_quote *q)
{
    struct qf_oracle_val root, none = {QF_ORACLE_NONE, 0, 0}, chart, res, meta, p, err;
    size_t at = 0;
    int v = qf_oracle_json_parse(js, len, QF_JSON_DEPTH_MAX, 0, &root, &at);

    if (v != 1) {
        CHECK(rc == QF_EJSON, "%s JSON (reader stopped at %zu of %zu) gave %d, want QF_EJSON",
              v < 0 ? "too deeply nested" : "invalid", at, len, rc);
        return 0;
    }
    if (root.type != QF_ORACLE_OBJECT && root.type != QF_ORACLE_ARRAY) {
        CHECK(rc == QF_ENOPRICE, "top-level scalar gave %d, want QF_ENOPRICE", rc);
        CHECK(q->currency[0] == '\0' && q->err_code[0] == '\0' && q->err_desc[0] == '\0',
              "strings filled from a top-level scalar");
        return 0;
    }
    chart = qf_oracle_json_get(js, root, "chart");
    res = qf_oracle_json_get(js, chart, "result");
    meta = qf_oracle_json_get(
        js, res.type == QF_ORACLE_ARRAY ? qf_oracle_json_index(js, res, 0) : none, "meta");
    p = qf_oracle_json_get(js, meta, "regularMarketPrice");
    if (p.type != QF_ORACLE_NUMBER) {
        CHECK(rc == QF_ENOPRICE, "price is %s (type %d) but rc %d, want QF_ENOPRICE",
              p.type == QF_ORACLE_NONE ? "absent" : "not a number", (int)p.type, rc);
    } else if (p.len > PRICE_TEXT_MAX) {
        CHECK(rc == QF_EJSON, "a %zu-character price gave %d, want QF_EJSON", p.len, rc);
    } else {
        double want;
        int wrc = number_value(js, p, &want);
        CHECK(rc == wrc, "price '%.*s' gave %d, want %d", (int)p.len, js + p.at, rc, wrc);
        CHECK(rc != 0 || memcmp(&want, &q->price, sizeof(want)) == 0,
              "price '%.*s' read as %a, strtod gives %a", (int)p.len, js + p.at, q->price, want);
    }
    if (expect_string(c, "currency", js, qf_oracle_json_get(js, meta, "currency"), q->currency,
                      sizeof(q->currency), 1))
        return 1;
    err = qf_oracle_json_get(js, chart, "error");
    if (err.type != QF_ORACLE_OBJECT)
        err = qf_oracle_json_get(js, qf_oracle_json_get(js, root, "finance"), "error");
    if (expect_string(c, "err_code", js, qf_oracle_json_get(js, err, "code"), q->err_code,
                      sizeof(q->err_code), 0))
        return 1;
    return expect_string(c, "err_desc", js, qf_oracle_json_get(js, err, "description"), q->err_desc,
                         sizeof(q->err_desc), 0);
}

static int same_quote(struct ctx *c, const char *what, int rc1, const struct qf_quote *a, int rc2,
                      const struct qf_quote *b)
{
    CHECK(rc1 == rc2, "%s: rc %d vs %d", what, rc1, rc2);
    CHECK(rc1 != 0 || memcmp(&a->price, &b->price, sizeof(a->price)) == 0, "%s: price %a vs %a",
          what, a->price, b->price);
    CHECK(strcmp(a->currency, b->currency) == 0 && strcmp(a->err_code, b->err_code) == 0 &&
              strcmp(a->err_desc, b->err_desc) == 0,
          "%s: strings differ", what);
    return 0;
}

/* body (exact-size copy) -> quote with a token array grown from start, checked against the
 * reference reader; the split feed's body (equal bytes) -> quote with the array at the
 * contract's bound, which must agree; then the price found is formatted. */
static int check_body(struct ctx *c, const char *body, const char *split_body, size_t len,
                      unsigned start)
{
    struct qf_quote q1, q2;
    int rc1, rc2, bad;
    char *js = xmalloc(len);

    if (len > 0)
        memcpy(js, body, len);
    bad = extract(c, js, len, start, &q1, &rc1) ||
          text_safe(c, "currency", q1.currency, sizeof(q1.currency)) ||
          text_safe(c, "err_code", q1.err_code, sizeof(q1.err_code)) ||
          text_safe(c, "err_desc", q1.err_desc, sizeof(q1.err_desc)) ||
          check_against_oracle(c, js, len, rc1, &q1);
    if (!bad) {
        if (len > 0)
            memcpy(js, split_body, len);
        bad = extract(c, js, len, (unsigned)len + 1, &q2, &rc2) ||
              same_quote(c, "whole feed, grown tokens vs split feed, tokens at the bound", rc1, &q1,
                         rc2, &q2);
    }
    free(js);
    if (!bad && rc1 == 0)
        bad = check_price_text(c, q1.price);
    return bad;
}

int qf_fuzz_check_response(const unsigned char *data, size_t len, char *why, size_t whylen)
{
    struct ctx cx = {why, whylen}, *c = &cx;
    struct plan whole, split;
    struct run w, s;
    size_t k;
    int bad;

    why[0] = '\0';
    if (len < 2)
        return 0;
    k = data[0] & 15u;
    if (k > len - 2)
        k = len - 2;
    split = (struct plan){.sizes = data + 2,
                          .nsizes = k,
                          .eof = (data[0] >> 4) & 1,
                          .body_max = data[0] & 0x20 ? QF_FUZZ_SMALL_BODY_MAX : QF_HTTP_BODY_MAX,
                          .exact_grow = (data[0] >> 6) & 1,
                          .capture = data[1] & 1,
                          .head = (data[1] >> 1) & 1,
                          .zero_copy = (data[1] >> 2) & 1};
    whole = split;
    whole.whole = 1;
    whole.exact_grow = 0;
    whole.zero_copy = 0; /* the reference run copies */

    const char *resp = (const char *)data + 2 + k;
    size_t rlen = len - 2 - k;
    bad = drive(c, resp, rlen, &whole, &w);
    if (!bad)
        bad = drive(c, resp, rlen, &split, &s) || same_runs(c, &w, &s);
    else
        s.body = s.hbuf = NULL;
    if (!bad && w.rc == 0 && w.complete) {
        char *zbody = NULL;
        size_t zlen = 0;
        if (data[1] & 8)
            bad = check_inflate(c, &w, &s, &split, 1 + 37 * (size_t)(data[1] >> 4), &zbody,
                                &zlen);
        if (!bad && zbody != NULL)
            bad = check_body(c, zbody, zbody, zlen, data[0] & 0x80 ? 1 : TOKS_START);
        else if (!bad)
            bad = check_body(c, w.body, s.body, w.body_len, data[0] & 0x80 ? 1 : TOKS_START);
        free(zbody);
    }
    free(w.body);
    free(s.body);
    free(w.hbuf);
    free(s.hbuf);

    /* Any 8 bytes as a double: NaN, infinities, subnormals and huge values for the formatter;
     * then its nearest multiple of 1/8, which is an exact half-cent tie when odd (0.125). */
    if (!bad && len >= 8) {
        double v;
        memcpy(&v, data + len - 8, sizeof(v));
        bad = check_price_text(c, v) || check_price_text(c, nearbyint(v * 8) / 8);
    }
    return bad;
}
