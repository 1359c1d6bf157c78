/* Microbenchmark of qfetch's parser alone: one HTTP response fed to qf_http_feed() in read-sized
 * pieces, then qf_json_extract() and qf_price_format() on its body, many times; prints ns/op and
 * MB/s for each stage and for the whole. No sockets, no TLS. Buffers are owned here and grown on
 * QF_ENOSPC as the parser headers' contracts ask.
 * Usage: parse_bench [-n ITER] [-s PIECE] [-c] [BODY_FILE...]   (no file: a generated body) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parser/http.h"
#include "parser/json.h"
#include "parser/price.h"
#include "qfetch.h"

#define TARGET_NS 200000000LL /* auto iteration count: grow until one stage takes this long */
#define MAX_ITER (1L << 24)

struct ctx {
    const char *resp; /* a whole response: status line, headers, body */
    size_t resp_len;
    const char *body; /* the body alone, for the JSON stage */
    size_t body_len;
    size_t piece; /* bytes per qf_http_feed() call, like one read() */
    char *buf;    /* parser-side body buffer */
    size_t cap;
    jsmntok_t *toks;
    unsigned ntoks;
    char price[32];
};

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "parse_bench: out of memory\n");
        exit(2);
    }
    return q;
}

static int http_once(struct ctx *c, struct qf_http *h)
{
    size_t off = 0;

    qf_http_init(h, c->buf, c->cap, QF_HTTP_BODY_MAX);
    while (off < c->resp_len && !h->complete) {
        size_t n = c->resp_len - off < c->piece ? c->resp_len - off : c->piece;
        ssize_t used = qf_http_feed(h, c->resp + off, n);
        if (used == QF_ENOSPC) {
            size_t cap = c->cap ? c->cap : 4096;
            while (cap < h->body_len + n)
                cap *= 2;
            c->buf = xrealloc(c->buf, cap);
            c->cap = cap;
            qf_http_set_body(h, c->buf, c->cap);
            continue;
        }
        if (used < 0)
            return (int)used;
        off += (size_t)used;
    }
    return h->complete && h->status == 200 ? 0 : QF_EPROTO;
}

static int json_once(struct ctx *c, const char *body, size_t len)
{
    struct qf_quote q;
    int rc;

    while ((rc = qf_json_extract(body, len, c->toks, c->ntoks, &q)) == QF_ENOSPC) {
        c->ntoks *= 2;
        c->toks = xrealloc(c->toks, c->ntoks * sizeof(*c->toks));
    }
    if (rc != 0)
        return rc;
    return qf_price_format(q.price, c->price, sizeof(c->price)) < 0 ? QF_ERANGE : 0;
}

enum stage { STAGE_HTTP, STAGE_JSON, STAGE_ALL };

static int stage_once(struct ctx *c, enum stage s)
{
    struct qf_http h;
    int rc;

    if (s == STAGE_JSON)
        return json_once(c, c->body, c->body_len);
    rc = http_once(c, &h);
    if (rc != 0 || s == STAGE_HTTP)
        return rc;
    return json_once(c, h.body, h.body_len);
}

/* Runs the stage iter times (iter <= 0: doubles it until TARGET_NS); returns ns/op or -1. */
static double measure(struct ctx *c, enum stage s, long iter, long *done)
{
    long n = iter > 0 ? iter : 16;

    if (stage_once(c, s) != 0) /* warm-up; also sizes the buffers */
        return -1;
    for (;;) {
        long long t0 = now_ns(), dt;
        for (long i = 0; i < n; i++)
            if (stage_once(c, s) != 0)
                return -1;
        dt = now_ns() - t0;
        if (iter > 0 || dt >= TARGET_NS || n >= MAX_ITER) {
            *done = n;
            return (double)dt / (double)n;
        }
        n *= 2;
    }
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    size_t cap = 0, n = 0;

    if (f == NULL)
        return NULL;
    for (int guard = 0; guard < 64; guard++) { /* 64 doublings cover any file */
        size_t got;
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            p = xrealloc(p, cap);
        }
        got = fread(p + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *len = n;
    return p;
}

/* A compact Yahoo-shaped chart body of about 2.5 KB (14 daily bars). */
static char *gen_body(size_t *len)
{
    size_t cap = 8192, o = 0;
    char *p = xrealloc(NULL, cap);
    const char *names[] = {"open", "high", "low", "close"};

    o += (size_t)snprintf(
        p + o, cap - o,
        "{\"chart\":{\"result\":[{\"meta\":{\"currency\":\"USD\",\"symbol\":\"QBENCH\","
        "\"exchangeName\":\"NMS\",\"fullExchangeName\":\"NasdaqGS\",\"instrumentType\":"
        "\"EQUITY\",\"firstTradeDate\":345479400,\"regularMarketTime\":1761768001,"
        "\"hasPrePostMarketData\":true,\"gmtoffset\":-14400,\"timezone\":\"EDT\","
        "\"exchangeTimezoneName\":\"America/New_York\",\"regularMarketPrice\":269.705,"
        "\"fiftyTwoWeekHigh\":277.32,\"fiftyTwoWeekLow\":169.21,\"regularMarketDayHigh\":271.41,"
        "\"regularMarketDayLow\":267.11,\"regularMarketVolume\":41534800,\"longName\":"
        "\"Bench Corp.\",\"shortName\":\"Bench Corp.\",\"chartPreviousClose\":252.29,"
        "\"priceHint\":2,\"dataGranularity\":\"1d\",\"range\":\"1mo\",\"validRanges\":"
        "[\"1d\",\"5d\",\"1mo\",\"3mo\",\"6mo\",\"1y\",\"2y\",\"5y\",\"10y\",\"ytd\",\"max\"]},"
        "\"timestamp\":[");
    for (int i = 0; i < 14; i++)
        o += (size_t)snprintf(p + o, cap - o, "%s%d", i ? "," : "", 1760103000 + i * 86400);
    o += (size_t)snprintf(p + o, cap - o, "],\"indicators\":{\"quote\":[{");
    for (int k = 0; k < 4; k++) {
        o += (size_t)snprintf(p + o, cap - o, "%s\"%s\":[", k ? "," : "", names[k]);
        for (int i = 0; i < 14; i++)
            o += (size_t)snprintf(p + o, cap - o, "%s%.13f", i ? "," : "",
                                  250.0 + i * 1.37 + k * 0.61);
        o += (size_t)snprintf(p + o, cap - o, "]");
    }
    o += (size_t)snprintf(p + o, cap - o, ",\"volume\":[");
    for (int i = 0; i < 14; i++)
        o += (size_t)snprintf(p + o, cap - o, "%s%d", i ? "," : "", 40000000 + i * 123457);
    o += (size_t)snprintf(p + o, cap - o, "]}],\"adjclose\":[{\"adjclose\":[");
    for (int i = 0; i < 14; i++)
        o += (size_t)snprintf(p + o, cap - o, "%s%.13f", i ? "," : "", 251.0 + i * 1.29);
    o += (size_t)snprintf(p + o, cap - o, "]}]}}],\"error\":null}}");
    *len = o;
    return p;
}

/* nginx's header block around the body: Content-Length, or chunked in 4 KiB chunks. */
static char *make_response(const char *body, size_t blen, int chunked, size_t *len)
{
    size_t cap = blen + blen / 512 * 16 + 1024, o = 0;
    char *p = xrealloc(NULL, cap);

    o += (size_t)snprintf(p, cap,
                          "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
                          "Date: Wed, 25 Nov 2026 19:21:31 GMT\r\n"
                          "Content-Type: application/json\r\n");
    if (!chunked) {
        o += (size_t)snprintf(p + o, cap - o,
                              "Content-Length: %zu\r\nLast-Modified: Wed, 25 Nov 2026 19:21:27 "
                              "GMT\r\nConnection: keep-alive\r\nETag: \"6b073537-9d1\"\r\n"
                              "Accept-Ranges: bytes\r\n\r\n",
                              blen);
        memcpy(p + o, body, blen);
        *len = o + blen;
        return p;
    }
    o += (size_t)snprintf(p + o, cap - o,
                          "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n");
    for (size_t off = 0; off < blen; off += 4096) {
        size_t n = blen - off < 4096 ? blen - off : 4096;
        o += (size_t)snprintf(p + o, cap - o, "%zx\r\n", n);
        memcpy(p + o, body + off, n);
        o += n;
        memcpy(p + o, "\r\n", 2);
        o += 2;
    }
    memcpy(p + o, "0\r\n\r\n", 5);
    *len = o + 5;
    return p;
}

static int bench_one(const char *name, const char *body, size_t blen, long iter, size_t piece,
                     int chunked)
{
    static const char *stage_name[] = {"http", "json", "total"};
    struct ctx c = {.body = body, .body_len = blen, .piece = piece, .ntoks = 256};
    char *resp = make_response(body, blen, chunked, &c.resp_len);
    int status = 0;

    c.resp = resp;
    c.toks = xrealloc(NULL, c.ntoks * sizeof(*c.toks));
    printf("parse_bench: %s: response %zu B, body %zu B, %s, fed in %zu B pieces\n", name,
           c.resp_len, blen, chunked ? "chunked" : "content-length", piece);
    for (int s = STAGE_HTTP; s <= STAGE_ALL; s++) {
        long n = 0;
        double ns = measure(&c, (enum stage)s, iter, &n);
        size_t bytes = s == STAGE_JSON ? blen : c.resp_len;
        if (ns < 0) {
            printf("  %-5s  FAILED: the parser rejected this response\n", stage_name[s]);
            status = 1;
            break;
        }
        printf("  %-5s %10.0f ns/op %9.1f MB/s  (%ld iterations)%s%s\n", stage_name[s], ns,
               (double)bytes / ns * 1e3, n, s == STAGE_ALL ? "  price " : "",
               s == STAGE_ALL ? c.price : "");
    }
    free(resp);
    free(c.buf);
    free(c.toks);
    return status;
}

int main(int argc, char **argv)
{
    long iter = 0;
    size_t piece = 16384;
    int chunked = 0, status = 0, nfiles = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            iter = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
            long s = strtol(argv[++i], NULL, 10);
            piece = s > 0 ? (size_t)s : 16384;
        } else if (strcmp(argv[i], "-c") == 0) {
            chunked = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: parse_bench [-n ITER] [-s PIECE] [-c] [BODY_FILE...]\n");
            return 2;
        } else {
            size_t len = 0;
            char *body = read_file(argv[i], &len);
            const char *base = strrchr(argv[i], '/');
            nfiles++;
            if (body == NULL) {
                perror(argv[i]);
                status = 1;
                continue;
            }
            status |= bench_one(base ? base + 1 : argv[i], body, len, iter, piece, chunked);
            free(body);
        }
    }
    if (nfiles == 0) {
        size_t len = 0;
        char *body = gen_body(&len);
        status |= bench_one("generated", body, len, iter, piece, chunked);
        free(body);
    }
    return status;
}
