/* qf_http over llhttp. Every response is fed three ways (whole, one byte at a time, split at
 * every offset into two pieces), each piece ending at a guard page, and all ways must agree
 * on status, body, keep-alive, Retry-After, the error and the consumed count. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "parser/http.h"
#include "qfetch.h"
#include "testutil.h"

#define NA (-100) /* expected value not checked */

struct expect {
    int rc;
    int status;
    int keep_alive;
    int retry_after_s;
    const char *body;   /* NULL: not checked */
    size_t body_len;    /* used when body != NULL; SIZE_MAX: strlen(body) */
    size_t consumed;    /* SIZE_MAX: the whole input */
    const char *errmsg; /* NULL: not checked; else qf_http_errmsg() at the end */
};

/* Splitting at every offset is quadratic: above this size, cut at a stride plus the edges. */
#define EVERY_OFFSET_MAX 2048

/* The response that failed, escaped and cut, so the failing case can be told. */
static void show(const char *resp, size_t len)
{
    char out[200];
    size_t n = 0;
    for (size_t i = 0; i < len && n + 8 < sizeof(out); i++) {
        unsigned char ch = (unsigned char)resp[i];
        if (i == 120 && len > 160)
            i = len - 40, n += (size_t)snprintf(out + n, sizeof(out) - n, "...");
        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            out[n++] = (char)ch;
        else
            n += (size_t)snprintf(out + n, sizeof(out) - n, "\\x%02x", ch);
    }
    out[n] = '\0';
    print_message("response (%zu bytes): %s\n", len, out);
}

#define RUN_FAIL(...)                                                                              \
    do {                                                                                           \
        show(resp, len);                                                                           \
        fail_msg(__VA_ARGS__);                                                                     \
    } while (0)

static void check_run(const char *what, size_t cut, const struct qf_test_http_run *r,
                      const struct expect *e, const char *resp, size_t len)
{
    size_t blen = e->body && e->body_len == SIZE_MAX ? strlen(e->body) : e->body_len;
    size_t consumed = e->consumed == SIZE_MAX ? len : e->consumed;

    if (r->rc != e->rc)
        RUN_FAIL("%s (cut %zu): rc %d, want %d", what, cut, r->rc, e->rc);
    if (e->status != NA && r->status != e->status)
        RUN_FAIL("%s (cut %zu): status %d, want %d", what, cut, r->status, e->status);
    if (e->errmsg != NULL && strcmp(r->errmsg, e->errmsg) != 0)
        RUN_FAIL("%s (cut %zu): errmsg '%s', want '%s'", what, cut, r->errmsg, e->errmsg);
    if (e->rc != 0 && e->rc != QF_ECLOSED)
        return; /* after an error, how much was consumed depends on the split */
    if (r->consumed != consumed)
        RUN_FAIL("%s (cut %zu): consumed %zu, want %zu", what, cut, r->consumed, consumed);
    if (e->rc != 0)
        return;
    if (!r->complete)
        RUN_FAIL("%s (cut %zu): not complete", what, cut);
    if (e->keep_alive != NA && r->keep_alive != e->keep_alive)
        RUN_FAIL("%s (cut %zu): keep_alive %d, want %d", what, cut, r->keep_alive, e->keep_alive);
    if (e->retry_after_s != NA && r->retry_after_s != e->retry_after_s)
        RUN_FAIL("%s (cut %zu): retry_after %d, want %d", what, cut, r->retry_after_s,
                 e->retry_after_s);
    if (e->body && (r->body_len != blen || (blen && memcmp(r->body, e->body, blen) != 0)))
        RUN_FAIL("%s (cut %zu): body differs (%zu bytes, want %zu)", what, cut, r->body_len, blen);
}

static void check_one(const char *what, const char *resp, size_t len, size_t first, size_t step,
                      int eof, size_t body_max, const struct expect *e)
{
    struct qf_test_http_run r;
    qf_test_http_drive(resp, len, first, step, eof, body_max, &r);
    check_run(what, first, &r, e, resp, len);
    qf_test_http_run_free(&r);
}

static void check_ways_max(const char *resp, size_t len, int eof, size_t body_max,
                           const struct expect *e)
{
    size_t cut, stride = len <= EVERY_OFFSET_MAX ? 1 : len / 509 + 1;

    check_one("whole", resp, len, 0, 0, eof, body_max, e);
    check_one("bytes", resp, len, 0, 1, eof, body_max, e);
    for (cut = 1; cut < len; cut += stride)
        check_one("split", resp, len, cut, 0, eof, body_max, e);
    for (cut = len > 8 ? len - 8 : 1; cut < len; cut++)
        check_one("split", resp, len, cut, 0, eof, body_max, e);
}

static void check_ways(const char *resp, int eof, const struct expect *e)
{
    check_ways_max(resp, strlen(resp), eof, QF_HTTP_BODY_MAX, e);
}

static struct expect ok200(const char *body, int keep_alive)
{
    struct expect e = {0, 200, keep_alive, -1, body, SIZE_MAX, SIZE_MAX, NULL};
    return e;
}

/* ---- Bodies in every framing ---------------------------------------------------------- */

struct body {
    const char *data;
    size_t len;
};

static const char big_seed[] = "{\"chart\":{\"result\":[{\"meta\":{\"regularMarketPrice\":1.5}}]}}";

static void framings_for(const struct body *b)
{
    static const size_t odd[] = {1, 7, 0x1f};
    static const size_t one[] = {1};
    static const size_t big[] = {0x1000, 3, 0xabc};
    const struct qf_test_chunking chunkings[] = {
        {NULL, 0, NULL, NULL},
        {odd, 3, NULL, NULL},
        {one, 1, NULL, NULL},
        {big, 3, NULL, NULL},
        {odd, 3, ";name=value", "X-Checksum: abc\r\nRetry-After: 9\r\n"},
        {big, 3, ";flag;name=value", "Expires: Wed, 21 Oct 2015 07:28:00 GMT\r\n"},
        {odd, 3, ";q=\"a b;c\"", NULL},
    };
    struct expect e = ok200(NULL, 1);
    char *resp;
    size_t n, k;

    e.body = b->data, e.body_len = b->len;
    n = qf_test_wrap("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", b->data, b->len,
                     QF_TEST_CL, NULL, &resp);
    check_ways_max(resp, n, 0, QF_HTTP_BODY_MAX, &e);
    free(resp);
    for (k = 0; k < sizeof(chunkings) / sizeof(chunkings[0]); k++) {
        n = qf_test_wrap("HTTP/1.1 200 OK\r\n", b->data, b->len, QF_TEST_CHUNKED, &chunkings[k],
                         &resp);
        check_ways_max(resp, n, 0, QF_HTTP_BODY_MAX, &e);
        free(resp);
    }
    e.keep_alive = 0;
    n = qf_test_wrap("HTTP/1.1 200 OK\r\n", b->data, b->len, QF_TEST_EOF, NULL, &resp);
    check_ways_max(resp, n, 1, QF_HTTP_BODY_MAX, &e);
    free(resp);
    n = qf_test_wrap("HTTP/1.0 200 OK\r\n", b->data, b->len, QF_TEST_EOF, NULL, &resp);
    check_ways_max(resp, n, 1, QF_HTTP_BODY_MAX, &e);
    free(resp);
}

static void test_bodies_all_framings(void **state)
{
    static const char binary[] = "a\0b\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\xff\xfe";
    char *large = malloc(20000);
    size_t i;
    struct body bodies[] = {
        {"", 0},        {"x", 1}, {big_seed, sizeof(big_seed) - 1}, {binary, sizeof(binary) - 1},
        {large, 20000},
    };
    (void)state;
    for (i = 0; i < 20000; i++)
        large[i] = big_seed[i % (sizeof(big_seed) - 1)];
    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
        framings_for(&bodies[i]);
    free(large);
}

/* ---- Keep-alive ------------------------------------------------------------------------ */

static void test_keep_alive(void **state)
{
    struct expect e = ok200("hi", 1);
    (void)state;
    check_ways("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 0, &e);
    check_ways("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi", 0, &e);
    check_ways("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi", 0, &e);
    e.keep_alive = 0;
    /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing; close after it. */
    check_ways("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n"
               "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
               0, &e);
    check_ways("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi", 0, &e);
    check_ways("HTTP/1.1 200 OK\r\nCONNECTION: CLOSE\r\nContent-Length: 2\r\n\r\nhi", 0, &e);
    check_ways("HTTP/1.1 200 OK\r\nConnection: close\r\n"
               "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
               0, &e);
    check_ways("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", 0, &e);
    check_ways("HTTP/1.0 200 OK\r\n\r\nhi", 1, &e);
    check_ways("HTTP/1.1 200 OK\r\n\r\nhi", 1, &e);
    check_ways("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nhi", 1, &e);
}

/* ---- Retry-After ----------------------------------------------------------------------- */

static void retry_after_case(const char *header_lines, int want)
{
    char resp[512];
    struct expect e = {0, 429, 1, want, "", SIZE_MAX, SIZE_MAX, NULL};
    snprintf(resp, sizeof(resp), "HTTP/1.1 429 Too Many Requests\r\n%sContent-Length: 0\r\n\r\n",
             header_lines);
    check_ways(resp, 0, &e);
}

static void test_retry_after(void **state)
{
    (void)state;
    retry_after_case("", -1);
    retry_after_case("Retry-After: 120\r\n", 120);
    retry_after_case("retry-after: 3\r\n", 3);
    retry_after_case("RETRY-AFTER: 3\r\n", 3);
    retry_after_case("rEtRy-AfTeR:0\r\n", 0);
    retry_after_case("Retry-After:   7   \r\n", 7);
    retry_after_case("Retry-After: \t7\t\r\n", 7);
    retry_after_case("Retry-After: 2147483647\r\n", INT_MAX);
    retry_after_case("Retry-After: 2147483648\r\n", -1);
    retry_after_case("Retry-After: 0000000000000000000000000000005\r\n", 5);
    retry_after_case("Retry-After: 99999999999999999999999999999999999999999\r\n", -1);
    retry_after_case("Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n", -1);
    retry_after_case("Retry-After: 12a\r\n", -1);
    retry_after_case("Retry-After: 1.5\r\n", -1);
    retry_after_case("Retry-After: -5\r\n", -1);
    retry_after_case("Retry-After: +5\r\n", -1);
    retry_after_case("Retry-After: 1 2\r\n", -1);
    retry_after_case("Retry-After:\r\n", -1);
    retry_after_case("Retry-After-Extra: 5\r\n", -1);
    retry_after_case("X-Retry-After: 5\r\n", -1);
    retry_after_case("Retry-Afte: 5\r\n", -1);
    retry_after_case("X-Long-Header-Name-Longer-Than-Sixteen: 5\r\n", -1);
    retry_after_case("Retry-After: 5\r\nRetry-After: 6\r\n", 6);
    retry_after_case("Retry-After: 5\r\nRetry-After: soon\r\n", -1);
    retry_after_case("Retry-After: 5\r\nX-Other: 6\r\n", 5);
    retry_after_case("X-Other: 6\r\nRetry-After: 5\r\n", 5);
}

/* ---- Interim responses ------------------------------------------------------------------ */

static void test_interim_responses(void **state)
{
    struct expect e = ok200("hello", 1);
    (void)state;
    check_ways("HTTP/1.1 100 Continue\r\n\r\n"
               "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
               0, &e);
    check_ways("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
               "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nRetry-After: 9\r\n\r\n"
               "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
               0, &e);
    e.keep_alive = 0;
    check_ways("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nhello", 1, &e);
    /* EOF after only an interim response: the real one never came. */
    e = (struct expect){QF_ECLOSED, NA, NA, NA, NULL, 0, SIZE_MAX, NULL};
    check_ways("HTTP/1.1 100 Continue\r\n\r\n", 1, &e);
}

/* ---- Bytes after the response ----------------------------------------------------------- */

static void trailing_case(const char *resp1, const char *body, int status)
{
    static const char *const after[] = {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "X",
                                        "\r\n", "garbage that is not HTTP"};
    struct expect e = {0, status, 1, -1, body, SIZE_MAX, strlen(resp1), NULL};
    char buf[512];
    size_t i;

    for (i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
        snprintf(buf, sizeof(buf), "%s%s", resp1, after[i]);
        check_ways(buf, 0, &e);
    }
}

static void test_bytes_after_response(void **state)
{
    (void)state;
    trailing_case("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", 200);
    trailing_case("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "", 200);
    trailing_case("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
                  "hello", 200);
    trailing_case("HTTP/1.1 204 No Content\r\n\r\n", "", 204);
    trailing_case("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "", 304);
}

/* Two responses in one buffer, as on a kept-alive connection: re-init parses the second. */
static void test_reinit_for_next_response(void **state)
{
    static const char two[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
                              "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n"
                              "Retry-After: 4\r\n\r\n2\r\nno\r\n0\r\n\r\n";
    char body[64];
    struct qf_http h;
    ssize_t r1, r2;
    (void)state;

    qf_http_init(&h, body, sizeof(body), sizeof(body));
    r1 = qf_http_feed(&h, two, sizeof(two) - 1);
    assert_int_equal(r1, 41);
    assert_true(h.complete && h.keep_alive && h.status == 200 && h.body_len == 3);
    assert_int_equal(qf_http_feed(&h, two + r1, sizeof(two) - 1 - (size_t)r1), 0);
    assert_int_equal(qf_http_finish(&h), 0);
    qf_http_init(&h, body, sizeof(body), sizeof(body));
    assert_int_equal(h.status, 0);
    assert_int_equal(h.body_len, 0);
    r2 = qf_http_feed(&h, two + r1, sizeof(two) - 1 - (size_t)r1);
    assert_int_equal(r2, (ssize_t)(sizeof(two) - 1) - r1);
    assert_true(h.complete && h.keep_alive);
    assert_int_equal(h.status, 404);
    assert_int_equal(h.retry_after_s, 4);
    assert_int_equal(h.body_len, 2);
    assert_memory_equal(body, "no", 2);
    /* Re-init also clears a sticky error. */
    assert_int_equal(qf_http_feed(&h, "x", 1), 0);
    qf_http_init(&h, body, sizeof(body), sizeof(body));
    assert_int_equal(qf_http_feed(&h, "junk\r\n", 6), QF_EPROTO);
    assert_int_equal(qf_http_feed(&h, "HTTP/1.1 200 OK\r\n", 17), QF_EPROTO);
    assert_int_equal(qf_http_finish(&h), QF_EPROTO);
    qf_http_init(&h, body, sizeof(body), sizeof(body));
    assert_int_equal(qf_http_feed(&h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38), 38);
    assert_true(h.complete);
}

/* ---- Truncation ------------------------------------------------------------------------ */

/* Every proper prefix of a length-delimited response, then EOF: QF_ECLOSED. */
static void truncate_all(const char *resp, size_t len, size_t body_at)
{
    size_t cut;
    for (cut = 0; cut < len; cut++) {
        struct expect e = {QF_ECLOSED, NA, NA, NA, NULL, 0, cut, NULL};
        check_one("whole", resp, cut, 0, 0, 1, QF_HTTP_BODY_MAX, &e);
        if (cut % 7 == 0 || cut + 3 > len || cut < body_at + 3)
            check_one("bytes", resp, cut, 0, 1, 1, QF_HTTP_BODY_MAX, &e);
    }
}

static void test_truncated(void **state)
{
    static const size_t odd[] = {1, 7, 0x1f};
    const struct qf_test_chunking ck = {odd, 3, ";e=1", "T: 1\r\n"};
    char *resp;
    size_t n;
    (void)state;

    n = qf_test_wrap("HTTP/1.1 200 OK\r\n", big_seed, sizeof(big_seed) - 1, QF_TEST_CL, NULL,
                     &resp);
    truncate_all(resp, n, n - (sizeof(big_seed) - 1));
    free(resp);
    n = qf_test_wrap("HTTP/1.1 200 OK\r\n", big_seed, sizeof(big_seed) - 1, QF_TEST_CHUNKED, &ck,
                     &resp);
    truncate_all(resp, n, 0);
    free(resp);
    /* A close-delimited body is complete at any cut after the header block. */
    n = qf_test_wrap("HTTP/1.0 200 OK\r\n", big_seed, sizeof(big_seed) - 1, QF_TEST_EOF, NULL,
                     &resp);
    for (size_t cut = 0; cut <= n; cut++) {
        size_t head = n - (sizeof(big_seed) - 1);
        struct expect e = {cut < head ? QF_ECLOSED : 0, NA, 0, -1, big_seed, 0, cut, NULL};
        e.body_len = cut < head ? 0 : cut - head;
        check_one("whole", resp, cut, 0, 0, 1, QF_HTTP_BODY_MAX, &e);
        check_one("bytes", resp, cut, 0, 1, 1, QF_HTTP_BODY_MAX, &e);
    }
    free(resp);
}

static void test_finish_edges(void **state)
{
    struct qf_http h;
    char body[16];
    (void)state;
    qf_http_init(&h, body, sizeof(body), sizeof(body));
    assert_int_equal(qf_http_finish(&h), QF_ECLOSED); /* nothing at all arrived */
    assert_int_equal(qf_http_finish(&h), QF_ECLOSED);
    assert_int_equal(qf_http_feed(&h, "HTTP/1.1 200 OK\r\n", 17), QF_ECLOSED);
    qf_http_init(&h, body, sizeof(body), sizeof(body));
    assert_int_equal(qf_http_feed(&h, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA", 39), 39);
    assert_int_equal(qf_http_finish(&h), 0);
    assert_int_equal(qf_http_finish(&h), 0);
    assert_true(h.keep_alive);
    assert_int_equal(qf_http_feed(&h, "", 0), 0);
}

/* ---- Caps ------------------------------------------------------------------------------ */

/* A header block of exactly `total` bytes (status line through the blank line): X-Pad lines
 * of 4000 bytes, the last one shorter. */
static size_t make_header_block(char *buf, size_t total, const char *tail)
{
    static const char start[] = "HTTP/1.1 200 OK\r\n";
    size_t n = sizeof(start) - 1, tl = strlen(tail), end = total - tl - 2;
    memcpy(buf, start, n);
    while (n < end) {
        size_t line = end - n > 4000 + 12 ? 4000 : end - n;
        memcpy(buf + n, "X-Pad: ", 7);
        memset(buf + n + 7, 'p', line - 9);
        memcpy(buf + n + line - 2, "\r\n", 2);
        n += line;
    }
    memcpy(buf + n, tail, tl);
    memcpy(buf + total - 2, "\r\n", 2);
    return total;
}

static void test_header_cap(void **state)
{
    char *buf = malloc(QF_HTTP_HEADER_MAX + 64);
    struct expect ok = ok200("", 1), big = {QF_EHEADER, NA, NA, NA, NULL, 0, 0, NULL};
    size_t n, cut;
    (void)state;

    n = make_header_block(buf, QF_HTTP_HEADER_MAX, "Content-Length: 0\r\n");
    check_one("whole", buf, n, 0, 0, 0, QF_HTTP_BODY_MAX, &ok);
    check_one("bytes", buf, n, 0, 1, 0, QF_HTTP_BODY_MAX, &ok);
    for (cut = 1; cut < n; cut += 997)
        check_one("split", buf, n, cut, 0, 0, QF_HTTP_BODY_MAX, &ok);
    n = make_header_block(buf, QF_HTTP_HEADER_MAX + 1, "Content-Length: 0\r\n");
    check_one("whole", buf, n, 0, 0, 0, QF_HTTP_BODY_MAX, &big);
    check_one("bytes", buf, n, 0, 1, 0, QF_HTTP_BODY_MAX, &big);
    for (cut = n - 40; cut < n; cut++)
        check_one("split", buf, n, cut, 0, 0, QF_HTTP_BODY_MAX, &big);
    /* No terminator at all: fails once the cap is reached, without waiting for more. */
    check_one("open", buf, QF_HTTP_HEADER_MAX, 0, 0, 0, QF_HTTP_BODY_MAX, &big);
    /* Interim responses count against the same cap: an endless 100 stream fails. */
    for (n = 0; n + 25 <= QF_HTTP_HEADER_MAX + 50; n += 25)
        memcpy(buf + n, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    check_one("1xx", buf, n, 0, 0, 0, QF_HTTP_BODY_MAX, &big);
    check_one("1xx", buf, n, 0, 1, 0, QF_HTTP_BODY_MAX, &big);
    free(buf);
}

/* Chunk extensions and trailers are bounded by the same cap as the header block. */
static void test_framing_cap(void **state)
{
    char *ext = malloc(QF_HTTP_HEADER_MAX + 64), *resp;
    struct qf_test_chunking ck = {NULL, 0, ext, NULL};
    struct expect big = {QF_EHEADER, 200, NA, NA, NULL, 0, 0, NULL};
    size_t n;
    (void)state;

    ext[0] = ';';
    memset(ext + 1, 'e', QF_HTTP_HEADER_MAX);
    ext[QF_HTTP_HEADER_MAX + 1] = '\0';
    n = qf_test_wrap("HTTP/1.1 200 OK\r\n", "abc", 3, QF_TEST_CHUNKED, &ck, &resp);
    check_one("whole", resp, n, 0, 0, 0, QF_HTTP_BODY_MAX, &big);
    check_one("split", resp, n, 100, 0, 0, QF_HTTP_BODY_MAX, &big);
    free(resp);
    ck.ext = NULL;
    memcpy(ext, "X-T: ", 5); /* a trailer whose value alone is over the cap */
    memset(ext + QF_HTTP_HEADER_MAX, 'e', 32);
    memcpy(ext + QF_HTTP_HEADER_MAX + 32, "\r\n", 3);
    ck.trailers = ext;
    n = qf_test_wrap("HTTP/1.1 200 OK\r\n", "abc", 3, QF_TEST_CHUNKED, &ck, &resp);
    check_one("whole", resp, n, 0, 0, 0, QF_HTTP_BODY_MAX, &big);
    check_one("split", resp, n, 100, 0, 0, QF_HTTP_BODY_MAX, &big);
    free(resp);
    free(ext);
}

static void check_capped(const char *resp, size_t body_max, const struct expect *e)
{
    check_ways_max(resp, strlen(resp), 0, body_max, e);
}

static void test_body_cap(void **state)
{
    static const char ten[] = "0123456789", eleven[] = "0123456789A";
    static const size_t odd[] = {1, 7, 0x1f};
    const struct qf_test_chunking ck = {odd, 3, NULL, NULL};
    struct expect ok = ok200(ten, 1), big = {QF_EBODY, 200, NA, NA, NULL, 0, 0, NULL};
    enum qf_test_framing fr;
    char *resp;
    size_t n;
    (void)state;

    for (fr = QF_TEST_CL; fr <= QF_TEST_EOF; fr++) {
        ok.keep_alive = fr != QF_TEST_EOF;
        n = qf_test_wrap("HTTP/1.1 200 OK\r\n", ten, 10, fr, &ck, &resp);
        check_ways_max(resp, n, fr == QF_TEST_EOF, 10, &ok);
        free(resp);
        n = qf_test_wrap("HTTP/1.1 200 OK\r\n", eleven, 11, fr, &ck, &resp);
        check_ways_max(resp, n, fr == QF_TEST_EOF, 10, &big);
        free(resp);
    }
    /* A Content-Length over the cap fails at the header block, before any body byte. */
    check_capped("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 10, &big);
    check_capped("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 10, &big);
    /* No body at all is allowed whatever the cap. */
    ok = ok200("", 1);
    check_capped("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, &ok);
    ok.status = 304;
    check_capped("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", 10, &ok);
}

/* ---- QF_ENOSPC ------------------------------------------------------------------------- */

/* The contract, step by step: refuse the whole feed, then accept it after the grow. */
static void test_enospc_contract(void **state)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789";
    char small[8], *big = malloc(128);
    struct qf_http h;
    (void)state;

    qf_http_init(&h, NULL, 0, 100);
    assert_int_equal(qf_http_feed(&h, resp, sizeof(resp) - 1), QF_ENOSPC);
    assert_int_equal(h.status, 0); /* nothing consumed: the parser has not moved */
    assert_int_equal(qf_http_feed(&h, resp, sizeof(resp) - 1), QF_ENOSPC);
    qf_http_set_body(&h, small, sizeof(small));
    assert_int_equal(qf_http_feed(&h, resp, sizeof(resp) - 1), QF_ENOSPC);
    assert_int_equal(qf_http_feed(&h, resp, 8), 8); /* fits in the room left */
    assert_int_equal(qf_http_feed(&h, "", 0), 0);
    assert_int_equal(h.body_len, 0);
    memcpy(big, small, h.body_len);
    qf_http_set_body(&h, big, 128);
    assert_int_equal(qf_http_feed(&h, resp + 8, sizeof(resp) - 9), (ssize_t)sizeof(resp) - 9);
    assert_true(h.complete);
    assert_int_equal(h.body_len, 20);
    assert_memory_equal(big, "01234567890123456789", 20);
    /* body_cap == body_max: no more growing; overflow is QF_EBODY, not QF_ENOSPC. */
    qf_http_init(&h, small, sizeof(small), sizeof(small));
    assert_int_equal(qf_http_feed(&h, resp, sizeof(resp) - 1), QF_EBODY);
    free(big);
}

/* The driver grows like the engine; growth must happen, the result must not depend on it. */
static void test_enospc_growth_loop(void **state)
{
    size_t len = 300000, n, i;
    char *body = malloc(len), *resp;
    struct qf_test_http_run r;
    (void)state;

    for (i = 0; i < len; i++)
        body[i] = (char)('a' + i % 26);
    n = qf_test_wrap("HTTP/1.1 200 OK\r\n", body, len, QF_TEST_CHUNKED, NULL, &resp);
    qf_test_http_drive(resp, n, 0, 1000, 0, QF_HTTP_BODY_MAX, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.body_len, len);
    assert_memory_equal(r.body, body, len);
    assert_true(r.grows >= 10);
    qf_test_http_run_free(&r);
    qf_test_http_drive(resp, n, 0, 1, 0, QF_HTTP_BODY_MAX, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.consumed, n);
    assert_memory_equal(r.body, body, len);
    qf_test_http_run_free(&r);
    free(resp);
    free(body);
}

/* ---- Malformed responses --------------------------------------------------------------- */

static void test_malformed(void **state)
{
    static const char *const bad[] = {
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTX/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/11 200 OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "hello world\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS record on a plain socket */
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
         "2\r\nab\r\n0\r\n\r\n"),
        "HTTP/1.1 200 OK\r\nX-Bad\x01Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    };
    struct expect e = {QF_EPROTO, NA, NA, NA, NULL, 0, 0, NULL};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct qf_test_http_run r;
        qf_test_http_drive(bad[i], strlen(bad[i]), 0, 0, 1, QF_HTTP_BODY_MAX, &r);
        if (r.rc != QF_EPROTO)
            fail_msg("case %zu accepted: rc %d status %d", i, r.rc, r.status);
        qf_test_http_run_free(&r);
        check_ways(bad[i], 1, &e);
    }
}

/* ---- Strict framing ------------------------------------------------------------------- */

#define CHUNKED_HEAD "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

struct refused {
    const char *resp;
    int rc;
    const char *errmsg;
};

/* Each response is refused the same way whole, byte by byte and at every split, and when the
 * peer then closes (the error, not QF_ECLOSED). */
static void check_refused(const struct refused *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct expect e = {cases[i].rc, NA, NA, NA, NULL, 0, 0, cases[i].errmsg};
        check_ways(cases[i].resp, 0, &e);
        check_ways(cases[i].resp, 1, &e);
    }
}

/* Loose llhttp skipped the two bytes after chunk data unseen, so data longer or shorter than
 * its size, or not followed by CRLF, gave a body with bytes dropped or framing bytes in it. */
static void test_chunk_framing_errors(void **state)
{
    static const char after_data[] = "malformed HTTP response: expected CRLF after chunk data";
    static const char bad_size[] = "malformed HTTP response: invalid chunk size";
    static const char bad_ext[] = "malformed HTTP response: invalid chunk extension";
    static const char size_lf[] = "malformed HTTP response: expected CRLF after chunk size";
    static const char bad_trailer[] = "malformed HTTP response: invalid trailer field";
    static const struct refused cases[] = {
        /* no CRLF after the data: two other bytes, none, half of it */
        {CHUNKED_HEAD "5\r\nhelloXX0\r\n\r\n", QF_EPROTO, after_data},
        {CHUNKED_HEAD "5\r\nhello0\r\n\r\n", QF_EPROTO, after_data},
        {CHUNKED_HEAD "5\r\nhello\n0\r\n\r\n", QF_EPROTO, after_data},
        {CHUNKED_HEAD "5\r\nhello\r0\r\n\r\n", QF_EPROTO, after_data},
        {CHUNKED_HEAD "3\r\nhello0\r\n\r\n", QF_EPROTO, after_data}, /* loose: body "hel" */
        {CHUNKED_HEAD "5\r\nhello\r\n3\r\nabcXY0\r\n\r\n", QF_EPROTO, after_data},
        /* size smaller than the data (two short: exactly the bytes loose llhttp skipped) */
        {CHUNKED_HEAD "3\r\nhello\r\n0\r\n\r\n", QF_EPROTO, after_data},
        {CHUNKED_HEAD "4\r\nhello\r\n0\r\n\r\n", QF_EPROTO, after_data},
        /* size larger than the data: the CRLF and the next line are read as data */
        {CHUNKED_HEAD "7\r\nhello\r\n0\r\n\r\n", QF_EPROTO, after_data},
        {CHUNKED_HEAD "6\r\nhello\r\n0\r\n\r\n", QF_EPROTO, after_data},
        /* garbage in or after the size */
        {CHUNKED_HEAD "5x\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_size},
        {CHUNKED_HEAD "5 x\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_size},
        {CHUNKED_HEAD "5\x7f\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_size},
        {CHUNKED_HEAD "x5\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_size},
        {CHUNKED_HEAD "-5\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_size},
        {CHUNKED_HEAD "+5\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_size},
        {CHUNKED_HEAD "0x5\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_size},
        {CHUNKED_HEAD " 5\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_size},
        {CHUNKED_HEAD "\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_size},
        {CHUNKED_HEAD "5\rXhello\r\n0\r\n\r\n", QF_EPROTO, size_lf},
        {CHUNKED_HEAD "5\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_size},
        {CHUNKED_HEAD "5\r\nhello\r\n0\n\r\n", QF_EPROTO, bad_size},
        {CHUNKED_HEAD "5;\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_ext},
        {CHUNKED_HEAD "5;=b\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_ext},
        {CHUNKED_HEAD "5;a=\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_ext},
        {CHUNKED_HEAD "5;a b\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_ext},
        {CHUNKED_HEAD "5;a=b c\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_ext},
        {CHUNKED_HEAD "5;a=\"b\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_ext},
        {CHUNKED_HEAD "5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_ext},
        {CHUNKED_HEAD "5;a=b\n\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_ext},
        {CHUNKED_HEAD "5;a=b\rhello\r\n0\r\n\r\n", QF_EPROTO, size_lf},
        {CHUNKED_HEAD "5;a@=b\r\nhello\r\n0\r\n\r\n", QF_EPROTO, bad_ext},
        /* 17 hex digits, even when they are zeros */
        {CHUNKED_HEAD "00000000000000005\r\nhello\r\n0\r\n\r\n", QF_EPROTO,
         "malformed HTTP response: chunk size longer than 16 hex digits"},
        {CHUNKED_HEAD "ffffffffffffffffff\r\n", QF_EPROTO, NULL},
        /* the trailer section and the final CRLF */
        {CHUNKED_HEAD "0\r\nbad line\r\n\r\n", QF_EPROTO, bad_trailer},
        {CHUNKED_HEAD "0\r\n: v\r\n\r\n", QF_EPROTO, bad_trailer},
        {CHUNKED_HEAD "0\r\nX: a\rb\r\n\r\n", QF_EPROTO, bad_trailer},
        {CHUNKED_HEAD "0\r\nX: a\nY: b\r\n\r\n", QF_EPROTO, bad_trailer},
        {CHUNKED_HEAD "0\r\nX: a\x01\r\n\r\n", QF_EPROTO, bad_trailer},
        {CHUNKED_HEAD "0\r\nX: a\r\n b\r\n\r\n", QF_EPROTO, bad_trailer},
        {CHUNKED_HEAD "0\r\n\rX", QF_EPROTO,
         "malformed HTTP response: expected CRLF at the end of the chunked body"},
        {CHUNKED_HEAD "0\r\n\n", QF_EPROTO, bad_trailer},
    };
    (void)state;
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));
}

/* What RFC 9112 7.1 allows in chunk lines, all of which give the same body. */
static void test_chunk_extensions_accepted(void **state)
{
    static const char *const exts[] = {
        ";a=b;c=d",
        ";a;b;c",
        ";a=b;c",
        ";a;b=c",
        " ;a=b",
        "\t;a=b",
        "; a=b",
        ";\ta=b",
        ";a = b",
        ";a\t=\tb",
        " ; a = b ; c = d ",
        ";a=\"x;y\\\"z\"",
        ";a=\"\" ;b",
        ";a=\"\t\x80\xff\"",
        ";a=\"\\\\\"",
        ";A-Z_0.9~!#$%&'*+^`|=x",
        " ",
        "\t \t",
        ";a ",
        ";a=b\t",
    };
    static const size_t sizes[] = {1, 2, 0x1f, 0xa, 0xAB};
    struct qf_test_chunking ck = {sizes, 5, NULL, "X-T: 1\r\nChecksum:\r\nY:\t x \r\n"};
    struct expect e = ok200(NULL, 1);
    char *resp;
    size_t n;
    (void)state;

    e.body = big_seed, e.body_len = sizeof(big_seed) - 1;
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        ck.ext = exts[i];
        n = qf_test_wrap("HTTP/1.1 200 OK\r\n", big_seed, sizeof(big_seed) - 1, QF_TEST_CHUNKED,
                         &ck, &resp);
        check_ways_max(resp, n, 0, QF_HTTP_BODY_MAX, &e);
        free(resp);
    }
    /* Upper and lower case hex, leading zeros up to 16 digits. */
    e.body = "helloworld!", e.body_len = SIZE_MAX;
    check_ways(CHUNKED_HEAD "0000000000000005\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", 0, &e);
    check_ways(CHUNKED_HEAD "5\r\nhello\r\n0006\r\nworld!\r\n0000000000000000\r\n\r\n", 0, &e);
}

/* llhttp is built with LLHTTP_STRICT_MODE: a CR must be followed by LF in the status line and
 * the header block, and a header name holds no blank. */
static void test_strict_line_ends(void **state)
{
    static const struct refused cases[] = {
        {"HTTP/1.1 200 OK\rX-A: 1\r\nContent-Length: 2\r\n\r\nhi", QF_EPROTO,
         "malformed HTTP response: expected LF after CR"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\rXhi", QF_EPROTO,
         "malformed HTTP response: expected LF after headers"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\rX\r\n\r\nhi", QF_EPROTO, NULL},
        {"HTTP/1.1 200 OK\r\nContent Length: 2\r\n\r\nhi", QF_EPROTO,
         "malformed HTTP response: invalid header token"},
        {"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nhi", QF_EPROTO, NULL},
        {"HTTP/1.1 200 OK\r\nContent-Length\t: 2\r\n\r\nhi", QF_EPROTO, NULL},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi", QF_EPROTO,
         "malformed HTTP response: duplicate Content-Length"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", QF_EPROTO,
         "malformed HTTP response: Content-Length can't be present with Transfer-Encoding"},
    };
    struct expect e = ok200("hi", 1);
    (void)state;
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));
    /* What real servers send stays accepted. */
    check_ways("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi", 0, &e);
    check_ways("HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nhi", 0, &e);
    check_ways("HTTP/1.1 200 OK\tfine\r\nContent-Length: 2\r\n\r\nhi", 0, &e);
    check_ways("HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nhi", 0, &e);
    check_ways("HTTP/1.1 200 OK\r\nContent-Length:2\r\n\r\nhi", 0, &e);
    check_ways("HTTP/1.1 200 OK\r\nContent-Length: 2 \r\n\r\nhi", 0, &e);
    check_ways("HTTP/1.1 200 OK\r\nX-Empty:\r\nX-B: \x80\xff\r\nContent-Length: 2\r\n\r\nhi", 0,
               &e);
}

/* ---- Transfer-Encoding ----------------------------------------------------------------- */

/* A coding we cannot decode is a per-response error at the header block, whatever framing
 * would follow: never the coded bytes as a body, never a wait for the peer to close. */
static void test_transfer_codings_refused(void **state)
{
    static const char gzip[] = "unsupported transfer-coding \"gzip\"";
    static const char bad_te[] = "malformed HTTP response: invalid Transfer-Encoding";
    static const struct refused cases[] = {
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         QF_EPROTO, gzip},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         QF_EPROTO, gzip},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, another\r\n\r\nhello", QF_EPROTO,
         "unsupported transfer-coding \"another\""},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello", QF_EPROTO, gzip},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: GZip\r\n\r\nhello", QF_EPROTO,
         "unsupported transfer-coding \"GZip\""},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhello", QF_EPROTO,
         "unsupported transfer-coding \"identity\""},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhello\r\n0\r\n\r\n",
         QF_EPROTO, gzip},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\nhello",
         QF_EPROTO, gzip},
        {"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: x-a-very-long-coding-"
         "name-beyond-twenty\r\n\r\nhello",
         QF_EPROTO, "unsupported transfer-coding \"x-a-very-long-coding...\""},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: x-exactly-20-bytes-x\r\n\r\nhello", QF_EPROTO,
         "unsupported transfer-coding \"x-exactly-20-bytes-x\""},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", QF_EPROTO,
         "malformed HTTP response: chunked applied more than once"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", QF_EPROTO, bad_te},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked chunked\r\n\r\n0\r\n\r\n", QF_EPROTO,
         bad_te},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", QF_EPROTO, bad_te},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip;level=9\r\n\r\nhello", QF_EPROTO, bad_te},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\nhello", QF_EPROTO, bad_te},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: , ,\r\nTransfer-Encoding:\r\n\r\nhello", QF_EPROTO,
         bad_te},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello", QF_EPROTO,
         NULL},
    };
    (void)state;
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_transfer_encoding_accepted(void **state)
{
    static const char *const values[] = {
        "chunked", "chunked\t", "\tchunked", "chunked \t ",  "CHUNKED",
        "Chunked", "chunked,",  ", chunked", ",,chunked, ,", "chunked , ",
    };
    struct expect e = ok200("hello", 1);
    char resp[256];
    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: %s\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                 values[i]);
        check_ways(resp, 0, &e);
    }
    /* The list may span field lines; empty ones add nothing. */
    check_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nhello\r\n0\r\n\r\n",
               0, &e);
    check_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\nContent-Length: 5\r\n\r\nhello", 0, &e);
    /* No body at all: the codings only say what a body would have had. */
    e = ok200("", 1);
    e.status = 204;
    check_ways("HTTP/1.1 204 No Content\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, &e);
    e.status = 304;
    check_ways("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip\r\n\r\n", 0, &e);
    e.status = 200;
    check_ways("HTTP/1.1 100 Continue\r\nTransfer-Encoding: gzip\r\n\r\n"
               "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
               0, &e);
}

/* HTAB is whitespace wherever SP is: after a Content-Length or Connection value too. */
static void test_tab_is_whitespace(void **state)
{
    struct expect e = ok200("hello", 1);
    (void)state;
    check_ways("HTTP/1.1 200 OK\r\nContent-Length: 5\t\r\n\r\nhello", 0, &e);
    check_ways("HTTP/1.1 200 OK\r\nContent-Length:\t5\t \t\r\n\r\nhello", 0, &e);
    check_ways("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Tab: a\tb\r\n\r\nhello", 0, &e);
    e.keep_alive = 0;
    check_ways("HTTP/1.1 200 OK\r\nConnection: close\t\r\nContent-Length: 5\r\n\r\nhello", 0, &e);
    check_ways("HTTP/1.1 200 OK\r\nConnection:\tkeep-alive,\tclose\r\nContent-Length: 5\r\n\r\n"
               "hello",
               0, &e);
    /* Tabs in the body are the body's. */
    e = ok200("a\tb\t", 1);
    check_ways("HTTP/1.1 200 OK\r\nContent-Length: 4\t\r\n\r\na\tb\t", 0, &e);
    check_ways(CHUNKED_HEAD "4\t;\tx\t\r\na\tb\t\r\n0\r\n\r\n", 0, &e);
}

/* ---- Caps on every token ---------------------------------------------------------------- */

/* A response of head + `n` copies of `fill` + tail, in a malloc'd buffer. */
static size_t repeat(const char *head, char fill, size_t n, const char *tail, char **out)
{
    size_t hl = strlen(head), tl = strlen(tail);
    char *b = malloc(hl + n + tl + 1);
    memcpy(b, head, hl);
    memset(b + hl, fill, n);
    memcpy(b + hl + n, tail, tl + 1);
    *out = b;
    return hl + n + tl;
}

/* The three ways, but at a coarse stride: these inputs are long. */
static void check_long(const char *resp, size_t len, const struct expect *e)
{
    check_one("whole", resp, len, 0, 0, 0, QF_HTTP_BODY_MAX, e);
    check_one("bytes", resp, len, 0, 1, 0, QF_HTTP_BODY_MAX, e);
    for (size_t cut = 1; cut < len; cut += len / 13 + 1)
        check_one("split", resp, len, cut, 0, 0, QF_HTTP_BODY_MAX, e);
}

static void test_line_caps(void **state)
{
    static const char line[] = "response header line longer than 8 KiB";
    static const char chunk_line[] = "chunk line or trailer line longer than 8 KiB";
    struct expect ok = ok200("hi", 1), big = {QF_EHEADER, NA, NA, NA, NULL, 0, 0, line};
    struct expect proto = {
        QF_EPROTO, 200, NA, NA,
        NULL,      0,   0,  "malformed HTTP response: chunk size longer than 16 hex digits"};
    char *r;
    size_t n;
    (void)state;

    /* A field line: name and value together, exactly at the cap, then one byte over. */
    n = repeat("HTTP/1.1 200 OK\r\nX-Long: ", 'v', QF_HTTP_LINE_MAX - 6,
               "\r\nContent-Length: 2\r\n\r\nhi", &r);
    check_long(r, n, &ok);
    free(r);
    n = repeat("HTTP/1.1 200 OK\r\nX-Long: ", 'v', QF_HTTP_LINE_MAX - 5,
               "\r\nContent-Length: 2\r\n\r\nhi", &r);
    check_long(r, n, &big);
    free(r);
    n = repeat("HTTP/1.1 200 OK\r\nX-", 'n', QF_HTTP_LINE_MAX, ": v\r\n\r\n", &r);
    check_long(r, n, &big);
    free(r);
    /* A status reason; an open-ended one fails without waiting for its end. */
    n = repeat("HTTP/1.1 200 ", 'r', QF_HTTP_LINE_MAX, "\r\nContent-Length: 2\r\n\r\nhi", &r);
    check_long(r, n, &ok);
    free(r);
    n = repeat("HTTP/1.1 200 ", 'r', QF_HTTP_LINE_MAX + 1, "", &r);
    check_long(r, n, &big);
    free(r);
    /* An endless chunk size of zeros fails at the 17th digit. */
    n = repeat(CHUNKED_HEAD, '0', 100000, "", &r);
    check_long(r, n, &proto);
    free(r);
    /* A chunk line: the size and its extensions. */
    big.errmsg = chunk_line;
    n = repeat(CHUNKED_HEAD "2;x=", 'e', QF_HTTP_LINE_MAX - 4, "\r\nhi\r\n0\r\n\r\n", &r);
    check_long(r, n, &ok);
    free(r);
    n = repeat(CHUNKED_HEAD "2;x=", 'e', QF_HTTP_LINE_MAX - 3, "\r\nhi\r\n0\r\n\r\n", &r);
    check_long(r, n, &big);
    free(r);
    n = repeat(CHUNKED_HEAD "2;x=\"", ' ', 100000, "", &r);
    check_long(r, n, &big);
    free(r);
    /* A trailer line; its CRLF is not counted. */
    n = repeat(CHUNKED_HEAD "2\r\nhi\r\n0\r\nX:", 't', QF_HTTP_LINE_MAX - 2, "\r\n\r\n", &r);
    check_long(r, n, &ok);
    free(r);
    n = repeat(CHUNKED_HEAD "2\r\nhi\r\n0\r\nX:", 't', QF_HTTP_LINE_MAX - 1, "\r\n\r\n", &r);
    check_long(r, n, &big);
    free(r);
}

/* Lines under their cap still add up: extensions and trailers of one body share 64 KiB. */
static void test_framing_total_cap(void **state)
{
    char ext[4001];
    static const size_t one[] = {1};
    struct qf_test_chunking ck = {one, 1, ext, NULL};
    struct expect big = {QF_EHEADER, 200, NA, NA,
                         NULL,       0,   0,  "chunk extensions and trailers larger than 64 KiB"};
    struct expect ok = ok200(NULL, 1);
    char body[17], *resp;
    size_t n;
    (void)state;

    ext[0] = ';';
    memset(ext + 1, 'e', sizeof(ext) - 2);
    ext[sizeof(ext) - 1] = '\0';
    memset(body, 'b', sizeof(body));
    /* 16 chunks and the last: 17 extensions of 4000 bytes, over 65536 */
    n = qf_test_wrap("HTTP/1.1 200 OK\r\n", body, 16, QF_TEST_CHUNKED, &ck, &resp);
    check_long(resp, n, &big);
    free(resp);
    /* 15 chunks and the last: 16 of them, 64000 bytes, pass */
    ok.body = body, ok.body_len = 15;
    n = qf_test_wrap("HTTP/1.1 200 OK\r\n", body, 15, QF_TEST_CHUNKED, &ck, &resp);
    check_long(resp, n, &ok);
    free(resp);
}

/* Messages for the caps the engine reports as they are. */
static void test_cap_messages(void **state)
{
    struct expect e = {QF_EBODY, 200, NA, NA, NULL, 0, 0, "response body larger than 10 bytes"};
    char *resp;
    size_t n;
    (void)state;
    check_capped("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 10, &e);
    check_capped(CHUNKED_HEAD "b\r\n01234567890\r\n0\r\n\r\n", 10, &e);
    check_capped(CHUNKED_HEAD "a\r\n0123456789\r\n1\r\nX\r\n0\r\n\r\n", 10, &e);
    e.errmsg = "response body larger than 8 MiB";
    check_capped("HTTP/1.1 200 OK\r\nContent-Length: 8388609\r\n\r\n", QF_HTTP_BODY_MAX, &e);
    e.errmsg = "response body larger than 2 KiB";
    n = repeat("HTTP/1.1 200 OK\r\n\r\n", 'b', 2049, "", &resp);
    check_ways_max(resp, n, 1, 2048, &e);
    free(resp);
    e = (struct expect){QF_EHEADER, NA, NA, NA,
                        NULL,       0,  0,  "response header block larger than 64 KiB"};
    resp = malloc(QF_HTTP_HEADER_MAX + 64);
    n = make_header_block(resp, QF_HTTP_HEADER_MAX + 1, "");
    check_long(resp, n, &e);
    free(resp);
}

/* Feeds resp in pieces of `step` bytes with header capture on, growing both buffers the way
 * the engine does; returns the captured "name\0value\0" block through *hb. */
static int drive_capture(const char *resp, size_t len, size_t step, int head, struct qf_http *h,
                         char **hb, char **body)
{
    size_t hcap = 8, bcap = 0, off = 0;
    *hb = malloc(hcap);
    *body = NULL;
    qf_http_init(h, NULL, 0, QF_HTTP_BODY_MAX);
    h->no_body = head;
    qf_http_set_hbuf(h, *hb, hcap);
    while (off < len && !h->complete) {
        size_t n = len - off < step ? len - off : step;
        const char *piece = qf_test_guard_copy(resp + off, n);
        ssize_t r;
        while ((r = qf_http_feed(h, piece, n)) == QF_ENOSPC) {
            if (h->hcap - h->hlen < n + 2) {
                hcap = hcap * 2 + n + 2;
                *hb = realloc(*hb, hcap);
                qf_http_set_hbuf(h, *hb, hcap);
            } else {
                bcap = bcap * 2 + n;
                *body = realloc(*body, bcap);
                qf_http_set_body(h, *body, bcap);
            }
        }
        qf_test_guard_free(piece);
        if (r < 0)
            return (int)r;
        off += (size_t)r;
    }
    return 0;
}

static void test_header_capture(void **state)
{
    (void)state;
    static const char resp[] = "HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
                               "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "X-Empty:\r\nSet-Cookie: a=b; Path=/\r\nContent-Length: 5\r\n\r\n"
                               "hello";
    static const char want[] = "Content-Type\0application/json\0X-Empty\0\0"
                               "Set-Cookie\0a=b; Path=/\0Content-Length\0005\0";
    size_t steps[] = {1, 2, 3, 7, sizeof(resp) - 1};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct qf_http h;
        char *hb, *body;
        assert_int_equal(drive_capture(resp, sizeof(resp) - 1, steps[i], 0, &h, &hb, &body), 0);
        assert_true(h.complete);
        assert_int_equal(h.status, 200);
        assert_int_equal(h.nheaders, 4);
        assert_int_equal(h.hlen, sizeof(want) - 1);
        assert_memory_equal(h.hbuf, want, sizeof(want) - 1);
        assert_int_equal(h.body_len, 5);
        assert_memory_equal(h.body, "hello", 5);
        free(hb);
        free(body);
    }
}

/* A HEAD response announces a length but carries no body: the next response follows. */
static void test_head_no_body(void **state)
{
    (void)state;
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 200 OK";
    for (size_t step = 1; step <= sizeof(resp) - 1; step += 5) {
        struct qf_http h;
        char *hb, *body;
        assert_int_equal(drive_capture(resp, sizeof(resp) - 1, step, 1, &h, &hb, &body), 0);
        assert_true(h.complete);
        assert_true(h.keep_alive);
        assert_int_equal(h.body_len, 0);
        assert_int_equal(h.nheaders, 1);
        free(hb);
        free(body);
    }
}

/* Content-Encoding of the final response, fed in pieces of every size: its lines joined, an
 * interim response's left out, a value longer than the parser keeps marked too long. */
static void coding_case(const char *resp, const char *want)
{
    size_t len = strlen(resp);
    for (size_t step = 1; step <= len; step++) {
        struct qf_http h;
        char *hb, *body;
        assert_int_equal(drive_capture(resp, len, step, 0, &h, &hb, &body), 0);
        assert_true(h.complete);
        if (want == NULL) {
            if (h.coding_len <= sizeof(h.coding))
                fail_msg("step %zu: coding '%.*s' kept, want too long", step, (int)h.coding_len,
                         h.coding);
        } else if (h.coding_len != strlen(want) || memcmp(h.coding, want, h.coding_len) != 0) {
            fail_msg("step %zu: coding '%.*s' (%zu), want '%s'", step,
                     (int)(h.coding_len < sizeof(h.coding) ? h.coding_len : sizeof(h.coding)),
                     h.coding, h.coding_len, want);
        }
        free(hb);
        free(body);
    }
}

static void test_content_encoding(void **state)
{
    (void)state;
    coding_case("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", "");
    coding_case("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nhi",
                "gzip");
    coding_case("HTTP/1.1 200 OK\r\ncontent-encoding:   x-gzip  \r\n"
                "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
                "x-gzip  "); /* llhttp keeps trailing blanks; qf_inflate_coding() drops them */
    coding_case("HTTP/1.1 200 OK\r\nCONTENT-ENCODING: gzip\r\nX-Other: 1\r\n"
                "Content-Encoding: br\r\nContent-Length: 0\r\n\r\n",
                "gzip,br");
    coding_case("HTTP/1.1 103 Early Hints\r\nContent-Encoding: br\r\n\r\n"
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                "");
    coding_case("HTTP/1.1 200 OK\r\nContent-Encodings: gzip\r\nX-Content-Encoding: gzip\r\n"
                "Content-Length: 0\r\n\r\n",
                "");
    coding_case("HTTP/1.1 200 OK\r\nContent-Encoding: identity, identity, identity, gzip, "
                "identity\r\nContent-Length: 0\r\n\r\n",
                NULL);
    coding_case("HTTP/1.1 200 OK\r\nContent-Encoding: identity, identity, identity\r\n"
                "Content-Encoding: identity, identity, gzip\r\nContent-Length: 0\r\n\r\n",
                NULL);
}

/* zero_copy: a body that arrives whole in one feed is used where it is; one in pieces, or in
 * two chunks of one feed, goes to the buffer. Either way the bytes are the same. */
static void test_zero_copy(void **state)
{
    static const char body[] = "{\"chart\":{\"result\":null,\"error\":null}}";
    static const size_t ten[] = {10};
    struct qf_test_chunking two = {.sizes = ten, .nsizes = 1};
    struct {
        enum qf_test_framing fr;
        const struct qf_test_chunking *ck;
        size_t step;
        int viewed;
    } cases[] = {
        {QF_TEST_CL, NULL, 0, 1},      /* whole: in place */
        {QF_TEST_CL, NULL, 1, 0},      /* byte by byte: buffered */
        {QF_TEST_CHUNKED, NULL, 0, 1}, /* one chunk */
        {QF_TEST_CHUNKED, &two, 0, 0}, /* chunks of 10 in one feed */
        {QF_TEST_CL, NULL, 7, 0},
    };
    (void)state;
    qf_test_http_zero_copy = 1;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *resp;
        size_t n = qf_test_wrap("HTTP/1.1 200 OK\r\n", body, sizeof(body) - 1, cases[i].fr,
                                cases[i].ck, &resp);
        struct qf_test_http_run r;
        qf_test_http_drive(resp, n, 0, cases[i].step, 0, QF_HTTP_BODY_MAX, &r);
        assert_int_equal(r.rc, 0);
        assert_true(r.complete);
        assert_int_equal(r.body_len, sizeof(body) - 1);
        assert_memory_equal(r.body, body, sizeof(body) - 1);
        if (r.viewed != cases[i].viewed)
            fail_msg("case %zu: viewed %d, want %d", i, r.viewed, cases[i].viewed);
        qf_test_http_run_free(&r);
        free(resp);
    }
    qf_test_http_zero_copy = 0;
}

static int zero_copy_on(void **state)
{
    (void)state;
    qf_test_http_zero_copy = 1;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bodies_all_framings),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_interim_responses),
        cmocka_unit_test(test_bytes_after_response),
        cmocka_unit_test(test_reinit_for_next_response),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_finish_edges),
        cmocka_unit_test(test_header_cap),
        cmocka_unit_test(test_framing_cap),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_enospc_contract),
        cmocka_unit_test(test_enospc_growth_loop),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_chunk_framing_errors),
        cmocka_unit_test(test_chunk_extensions_accepted),
        cmocka_unit_test(test_strict_line_ends),
        cmocka_unit_test(test_transfer_codings_refused),
        cmocka_unit_test(test_transfer_encoding_accepted),
        cmocka_unit_test(test_tab_is_whitespace),
        cmocka_unit_test(test_line_caps),
        cmocka_unit_test(test_framing_total_cap),
        cmocka_unit_test(test_cap_messages),
        cmocka_unit_test(test_header_capture),
        cmocka_unit_test(test_head_no_body),
        cmocka_unit_test(test_zero_copy),
        cmocka_unit_test(test_content_encoding),
    };
    int failed = cmocka_run_group_tests_name("http", tests, NULL, NULL);
    /* Every case again with the engine's zero_copy on: nothing observable may change. */
    failed += cmocka_run_group_tests_name("http_zero_copy", tests, zero_copy_on, NULL);
    return failed != 0;
}
