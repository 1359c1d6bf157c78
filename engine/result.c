/* Response to result: a quote's body goes through the JSON extractor (parser/json.c) and the
 * price formatter (parser/price.c); a general request's status, headers and body go to its
 * on_response. The scheduler has decided that the outcome is final; this file only shapes it
 * and calls the caller's callbacks. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/client.h"
#include "engine/host.h"
#include "engine/proxy.h"
#include "engine/result.h"
#include "parser/json.h"
#include "parser/price.h"

void qf_result_log(struct qf_client *cl, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (cl->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    cl->log(line, cl->log_udata);
}

size_t qf_result_headers(struct qf_client *cl, const char *hbuf, size_t hlen, size_t n)
{
    if (hbuf == NULL || n == 0)
        return 0;
    if (n > cl->hdrv_cap) {
        struct qf_header *v = qf_realloc(cl->hdrv, n * sizeof(*v));
        if (v == NULL)
            return 0;
        cl->hdrv = v;
        cl->hdrv_cap = n;
    }
    const char *p = hbuf, *end = hbuf + hlen;
    size_t k = 0;
    while (k < n && p < end) {
        cl->hdrv[k].name = p;
        p += strlen(p) + 1;
        if (p >= end)
            break;
        cl->hdrv[k++].value = p;
        p += strlen(p) + 1;
    }
    return k;
}

void qf_result_nomem(struct qf_client *cl, const char *symbol, size_t index)
{
    struct qf_result res = {
        .index = index,
        .symbol = symbol,
        .err = QF_ENOMEM,
        .price_text = "",
        .currency = "",
        .errmsg = "out of memory",
        .connect_ms = -1,
        .tls_ms = -1,
        .first_byte_ms = -1,
        .total_ms = -1,
    };
    cl->t_last_done = cl->now_us;
    if (cl->cb != NULL)
        cl->cb(&res, cl->udata);
}

/* Token array shared by all connections: extraction is synchronous, so one suffices. It grows
 * on demand and stays at its high-water mark. */
static int extract(struct qf_client *cl, const char *body, size_t len, struct qf_quote *q)
{
    for (;;) {
        int rc = qf_json_extract(body, len, cl->toks, cl->ntoks, q);
        if (rc != QF_ENOSPC)
            return rc;
        unsigned n = cl->ntoks ? cl->ntoks * 2 : 1024;
        if (n > (1u << 23))
            return QF_EJSON;
        jsmntok_t *t = qf_realloc(cl->toks, (size_t)n * sizeof(*t));
        if (t == NULL)
            return QF_ENOMEM;
        cl->toks = t;
        cl->ntoks = n;
    }
}

/* First line of a short text body, for messages like "HTTP 429: Edge: Too Many Requests". */
static void text_detail(const char *body, size_t len, char *out, size_t cap)
{
    size_t o = 0;

    out[0] = '\0';
    if (len == 0 || body[0] == '<' || body[0] == '{')
        return;
    for (size_t i = 0; i < len && o + 1 < cap && o < 100; i++) {
        unsigned char ch = (unsigned char)body[i];
        if (ch == '\r' || ch == '\n')
            break;
        out[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    out[o] = '\0';
}

/* Fills a quote's price, or its error and message, from a complete response. */
static void quote_from_body(struct qf_client *cl, const struct qf_outcome *o,
                            struct qf_result *res, struct qf_quote *qp, char *msg, size_t msgcap,
                            char *text, size_t textcap)
{
    const char *body = o->body;
    size_t len = o->body_len;

    if (o->status >= 200 && o->status < 300) {
        int rc = extract(cl, body, len, qp);
        if (rc == 0 && qf_price_format(qp->price, text, textcap) < 0) {
            res->err = QF_ERANGE;
            snprintf(msg, msgcap, "price out of range");
        } else if (rc == 0) {
            res->price = qp->price;
            res->price_text = text;
            res->currency = qp->currency;
            return;
        } else if (rc == QF_ENOPRICE) {
            res->err = rc;
            snprintf(msg, msgcap, "no price in response%s%s",
                     qp->err_desc[0] ? ": " : " (regularMarketPrice missing or not a number)",
                     qp->err_desc);
        } else if (rc == QF_EJSON) {
            res->err = rc;
            snprintf(msg, msgcap, "invalid JSON in response body (%zu bytes)", len);
        } else {
            res->err = rc;
            snprintf(msg, msgcap, "%s", qf_strerror(rc));
        }
        return;
    }
    char detail[200] = "";
    if (len > 0 && body[0] == '{' && extract(cl, body, len, qp) != QF_EJSON && qp->err_desc[0])
        snprintf(detail, sizeof(detail), "%s", qp->err_desc);
    else
        text_detail(body, len, detail, sizeof(detail));
    res->err = QF_EHTTP;
    snprintf(msg, msgcap, "HTTP %d%s%s", o->status, detail[0] ? ": " : "", detail);
}

/* A quote the host's rate limit ended, said plainly whatever the body was (Yahoo's 429 body
 * may be JSON, or name a symbol "delisted"). A 503 keeps the status line's message. */
static int limit_message(const struct qf_client *cl, const struct qf_req *r,
                         const struct qf_outcome *o, char *msg, size_t cap)
{
    const char *host = r->host->url.host;
    const char *hint = cl->max_per_host > 2   ? "try -c 2 or "
                       : cl->max_per_host > 1 ? "try -c 1 or "
                                              : "";

    if (o->limited == QF_LIMIT_LONG && o->status == 429)
        snprintf(msg, cap,
                 "rate limited by %.100s (HTTP 429): the server asks to wait %d s, beyond the %d s "
                 "qfetch waits; Yahoo limits requests per address, try again then",
                 host, o->wait_s, QF_RETRY_AFTER_CAP_MS / 1000);
    else if (o->limited == QF_LIMIT_LONG)
        snprintf(msg, cap,
                 "HTTP %d from %.100s: the server asks to wait %d s, beyond the %d s qfetch waits",
                 o->status, host, o->wait_s, QF_RETRY_AFTER_CAP_MS / 1000);
    else if (o->status == 429)
        snprintf(msg, cap,
                 "rate limited by %.100s (HTTP 429) after %d attempt%s; Yahoo limits requests per "
                 "address, %swait %d s",
                 host, r->attempts, r->attempts == 1 ? "" : "s", hint, o->wait_s);
    else
        return 0;
    return 1;
}

static double total_ms(const struct qf_client *cl, const struct qf_req *r,
                       const struct qf_span *s)
{
    double dns = s->dns_ms > 0 ? s->dns_ms : 0;
    return r->t_start != 0 ? (double)(cl->now_us - r->t_start) / 1000.0 + dns : -1;
}

static void deliver_quote(struct qf_client *cl, const struct qf_req *r, const struct qf_outcome *o)
{
    char msg[320], text[32];
    struct qf_quote q; /* the currency points into it */
    struct qf_result res = {
        .index = r->index,
        .symbol = r->symbol,
        .err = o->err,
        .status = o->status,
        .price_text = "",
        .currency = "",
        .errmsg = o->msg != NULL ? o->msg : "",
        .attempts = r->attempts,
        .connect_ms = o->span.connect_ms,
        .tls_ms = o->span.tls_ms,
        .first_byte_ms = o->span.first_byte_ms,
        .total_ms = total_ms(cl, r, &o->span),
        .dns_ms = o->span.dns_ms,
        .reused = o->span.reused,
    };

    if (o->err == 0) {
        msg[0] = '\0';
        if (o->limited != QF_LIMIT_NONE && limit_message(cl, r, o, msg, sizeof(msg)))
            res.err = QF_EHTTP;
        else
            quote_from_body(cl, o, &res, &q, msg, sizeof(msg), text, sizeof(text));
        res.errmsg = msg;
        if (o->status == 407 && r->host->proxy != NULL) /* asked in absolute form */
            res.err = qf_proxy_refusal(r->host->proxy, 407, msg, sizeof(msg));
    }
    char clean[3 * sizeof(msg) + 1]; /* what qfetch.h promises of every errmsg */
    qf_text_clean(res.errmsg, strlen(res.errmsg), clean, sizeof(clean));
    res.errmsg = clean;
    if (cl->log != NULL) {
        if (res.err == 0)
            qf_result_log(cl,
                          "Received results for %s (dns %.1f ms, connect %.1f ms, tls %.1f ms, "
                          "first byte %.1f ms, total %.1f ms%s)",
                          r->symbol, res.dns_ms, res.connect_ms, res.tls_ms, res.first_byte_ms,
                          res.total_ms, res.reused ? ", reused connection" : "");
        else
            qf_result_log(cl, "Received results for %s: error: %s", r->symbol, res.errmsg);
    }
    if (cl->cb != NULL)
        cl->cb(&res, cl->udata);
}

static void deliver_response(struct qf_client *cl, const struct qf_req *r,
                             const struct qf_outcome *o)
{
    const struct qf_req_general *g = r->general;
    struct qf_response res = {
        .id = r->id,
        .udata = g->udata,
        .err = o->err,
        .status = o->status,
        .errmsg = o->msg != NULL ? o->msg : "",
        .attempts = r->attempts,
        .connect_ms = o->span.connect_ms,
        .tls_ms = o->span.tls_ms,
        .first_byte_ms = o->span.first_byte_ms,
        .total_ms = total_ms(cl, r, &o->span),
        .dns_ms = o->span.dns_ms,
        .reused = o->span.reused,
    };

    char clean[3 * 320 + 1]; /* what qfetch.h promises of every errmsg */
    qf_text_clean(res.errmsg, strlen(res.errmsg), clean, sizeof(clean));
    res.errmsg = clean;
    if (o->err == 0) {
        res.nheaders = qf_result_headers(cl, o->headers, o->headers_len, o->nheaders);
        res.headers = res.nheaders ? cl->hdrv : NULL;
        res.body = o->body;
        res.body_len = o->body_len;
    }
    qf_result_log(cl, "Received %s %s: %s", g->method, r->target, o->err == 0 ? "ok" : res.errmsg);
    g->on_response(&res);
}

void qf_result_deliver(struct qf_client *cl, const struct qf_req *r, const struct qf_outcome *o)
{
    if (r->general == NULL)
        deliver_quote(cl, r, o);
    else
        deliver_response(cl, r, o);
}
