/* parser/inflate.c: Content-Encoding names, and the streaming inflater fed three ways (whole,
 * one byte at a time, split at every offset into two pieces) into output buffers of several
 * sizes, each input piece and each output buffer ending at a guard page. Every way must give
 * the same bytes, or the same error. Coded bodies are made here with zlib's deflate. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "parser/inflate.h"
#include "qfetch.h"
#include "testutil.h"

#define EVERY_OFFSET_MAX 600  /* coded bytes; above: cut at a stride plus the edges */
#define ONE_BYTE_OUT_MAX 2048 /* inflated bytes; above: no one-byte output buffer */

enum wrap { GZIP, ZLIB, RAW, GZIP2 /* two gzip members in a row */ };

/* Test code: allocation failures abort. */
static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

static size_t deflate_into(const unsigned char *in, size_t len, int wbits, unsigned char *out,
                           size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    zs.next_in = in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
        abort();
    size_t n = zs.total_out;
    deflateEnd(&zs);
    return n;
}

/* The coded form of body (malloc'd in *out). */
static size_t code(enum wrap w, const void *body, size_t len, unsigned char **out)
{
    size_t cap = 2 * (compressBound((uLong)len) + 64);
    unsigned char *b = xmalloc(cap);
    size_t n;
    if (w == GZIP2) {
        n = deflate_into(body, len / 2, 16 + 15, b, cap);
        n += deflate_into((const unsigned char *)body + len / 2, len - len / 2, 16 + 15, b + n,
                          cap - n);
    } else {
        n = deflate_into(body, len, w == GZIP ? 16 + 15 : w == ZLIB ? 15 : -15, b, cap);
    }
    *out = b;
    return n;
}

static enum qf_coding coding_of(enum wrap w)
{
    return w == ZLIB || w == RAW ? QF_CODING_DEFLATE : QF_CODING_GZIP;
}

struct run {
    int rc;    /* first error of feed or end, 0 when none */
    char *out; /* malloc'd inflated bytes */
    size_t len;
    char msg[112];
};

/* An output buffer of room bytes ending at a guard page (the mapping is writable). */
static char *guard_out(size_t room)
{
    static char zeros[1 << 20];
    assert_true(room <= sizeof(zeros));
    return (char *)qf_test_guard_copy(zeros, room);
}

/* Feeds coded[0..len) in a first piece of `first` bytes (0: none), then pieces of `step`
 * bytes (0: the rest at once), inflating into obuf[0..room) (from guard_out) that is emptied
 * whenever it fills (QF_ENOSPC), then ends the body. */
static void drive_into(struct qf_inflate *z, enum qf_coding coding, uint64_t out_max,
                       const unsigned char *coded, size_t len, size_t first, size_t step,
                       char *obuf, size_t room, struct run *r)
{
    size_t off = 0, total_cap = 4096;

    memset(r, 0, sizeof(*r));
    r->out = xmalloc(total_cap);
    assert_int_equal(qf_inflate_begin(z, coding, out_max), 0);
    while (r->rc == 0 && off < len) {
        size_t n = len - off;
        if (off == 0 && first > 0)
            n = first < n ? first : n;
        else if (step > 0)
            n = step < n ? step : n;
        const char *piece = qf_test_guard_copy(coded + off, n), *in = piece;
        size_t left = n;
        for (;;) {
            size_t made = 0;
            int rc = qf_inflate_feed(z, &in, &left, obuf, room, &made);
            assert_true(made <= room);
            if (r->len + made > total_cap) {
                while (r->len + made > total_cap)
                    total_cap *= 2;
                r->out = realloc(r->out, total_cap);
                assert_non_null(r->out);
            }
            memcpy(r->out + r->len, obuf, made);
            r->len += made;
            if (rc == QF_ENOSPC) {
                assert_int_equal(made, room); /* only a full buffer asks for room */
                continue;
            }
            if (rc == 0)
                assert_int_equal(left, 0); /* 0 means every byte was used */
            r->rc = rc;
            break;
        }
        qf_test_guard_free(piece);
        off += n;
    }
    if (r->rc == 0)
        r->rc = qf_inflate_end(z);
    snprintf(r->msg, sizeof(r->msg), "%s", z->msg);
}

static void drive(struct qf_inflate *z, enum qf_coding coding, uint64_t out_max,
                  const unsigned char *coded, size_t len, size_t first, size_t step, size_t room,
                  struct run *r)
{
    char *obuf = guard_out(room);
    drive_into(z, coding, out_max, coded, len, first, step, obuf, room, r);
    qf_test_guard_free(obuf);
}

struct want {
    int rc;
    const void *body; /* when rc == 0 */
    size_t len;
    const char *msg; /* when rc != 0: the message starts with it */
};

static void check(const char *what, size_t cut, size_t room, const struct run *r,
                  const struct want *w)
{
    if (r->rc != w->rc)
        fail_msg("%s (cut %zu, room %zu): rc %d (%s), want %d", what, cut, room, r->rc, r->msg,
                 w->rc);
    if (w->rc == 0 && (r->len != w->len || (w->len && memcmp(r->out, w->body, w->len) != 0)))
        fail_msg("%s (cut %zu, room %zu): %zu bytes out, want %zu", what, cut, room, r->len,
                 w->len);
    if (w->rc != 0 && strncmp(r->msg, w->msg, strlen(w->msg)) != 0)
        fail_msg("%s (cut %zu, room %zu): message '%s', want '%s...'", what, cut, room, r->msg,
                 w->msg);
}

static void one(struct qf_inflate *z, const char *what, enum qf_coding coding, uint64_t max,
                const unsigned char *coded, size_t len, size_t first, size_t step, char *obuf,
                size_t room, const struct want *w)
{
    struct run r;
    drive_into(z, coding, max, coded, len, first, step, obuf, room, &r);
    check(what, first, room, &r, w);
    free(r.out);
}

/* Whole, byte by byte and split at every offset, into each output size (one byte only for
 * small bodies: it costs a call per byte); one inflater serves every run, reset by
 * qf_inflate_begin as on a kept-alive connection. */
static void ways(enum qf_coding coding, uint64_t max, const unsigned char *coded, size_t len,
                 const struct want *w)
{
    static const size_t rooms[] = {1, 7, 4096};
    size_t stride = len <= EVERY_OFFSET_MAX ? 1 : len / 199 + 1;
    struct qf_inflate z;

    qf_inflate_init(&z, NULL, NULL, NULL);
    char *big = guard_out(1 << 20); /* everything out in one call */
    one(&z, "whole", coding, max, coded, len, 0, 0, big, 1 << 20, w);
    qf_test_guard_free(big);
    for (size_t k = 0; k < sizeof(rooms) / sizeof(rooms[0]); k++) {
        size_t room = rooms[k];
        if (room == 1 && w->rc == 0 && w->len > ONE_BYTE_OUT_MAX)
            continue;
        char *obuf = guard_out(room);
        one(&z, "whole", coding, max, coded, len, 0, 0, obuf, room, w);
        one(&z, "bytes", coding, max, coded, len, 0, 1, obuf, room, w);
        for (size_t cut = 1; cut < len; cut += stride)
            one(&z, "split", coding, max, coded, len, cut, 0, obuf, room, w);
        for (size_t cut = len > 8 ? len - 8 : 1; cut < len; cut++)
            one(&z, "split", coding, max, coded, len, cut, 0, obuf, room, w);
        qf_test_guard_free(obuf);
    }
    qf_inflate_free(&z);
}

static const char seed[] = "{\"chart\":{\"result\":[{\"meta\":{\"currency\":\"USD\","
                           "\"regularMarketPrice\":269.7}}],\"error\":null}}";

/* ---- Names ----------------------------------------------------------------------------- */

static void test_coding_names(void **state)
{
    static const struct {
        const char *v;
        enum qf_coding want;
    } cases[] = {
        {"", QF_CODING_IDENTITY},
        {"identity", QF_CODING_IDENTITY},
        {" IDENTITY ,, ", QF_CODING_IDENTITY},
        {"gzip", QF_CODING_GZIP},
        {"GZip", QF_CODING_GZIP},
        {" \tgzip\t ", QF_CODING_GZIP},
        {"x-gzip", QF_CODING_GZIP},
        {"X-GZIP", QF_CODING_GZIP},
        {"deflate", QF_CODING_DEFLATE},
        {"identity, deflate", QF_CODING_DEFLATE},
        {"gzip,identity", QF_CODING_GZIP},
        {",gzip,", QF_CODING_GZIP},
        {"gzip, gzip", QF_CODING_UNKNOWN},
        {"deflate, gzip", QF_CODING_UNKNOWN},
        {"br", QF_CODING_UNKNOWN},
        {"zstd", QF_CODING_UNKNOWN},
        {"compress", QF_CODING_UNKNOWN},
        {"gzip;q=1", QF_CODING_UNKNOWN},
        {"gzip deflate", QF_CODING_UNKNOWN},
        {"gzipx", QF_CODING_UNKNOWN},
        {"gzi", QF_CODING_UNKNOWN},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *v = qf_test_guard_copy(cases[i].v, strlen(cases[i].v));
        enum qf_coding got = qf_inflate_coding(v, strlen(cases[i].v));
        qf_test_guard_free(v);
        if (got != cases[i].want)
            fail_msg("'%s': coding %d, want %d", cases[i].v, got, cases[i].want);
    }
}

/* ---- Round trips ------------------------------------------------------------------------ */

static void round_trip(const void *body, size_t len)
{
    static const enum wrap wraps[] = {GZIP, ZLIB, RAW, GZIP2};
    struct want w = {0, body, len, NULL};

    for (size_t i = 0; i < sizeof(wraps) / sizeof(wraps[0]); i++) {
        unsigned char *coded;
        size_t n = code(wraps[i], body, len, &coded);
        ways(coding_of(wraps[i]), QF_HTTP_BODY_MAX, coded, n, &w);
        free(coded);
    }
}

static void test_round_trips(void **state)
{
    size_t big = 20000, noise = 700;
    char *rep = xmalloc(big);
    unsigned char *rnd = xmalloc(noise);
    uint32_t x = 2463534242u;
    (void)state;
    for (size_t i = 0; i < big; i++)
        rep[i] = seed[i % (sizeof(seed) - 1)];
    for (size_t i = 0; i < noise; i++) { /* xorshift: incompressible, so stored blocks */
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        rnd[i] = (unsigned char)x;
    }
    round_trip("", 0);
    round_trip("x", 1);
    /* Raw deflate ending in a long match: zlib takes the last input byte while output is still
     * waiting for room, and only another call with none delivers it and the end. */
    round_trip("abababababababababababab", 24);
    round_trip(seed, sizeof(seed) - 1);
    round_trip(rep, big);
    round_trip(rnd, noise);
    free(rep);
    free(rnd);
}

/* gzip may also carry a zlib-wrapped stream (curl accepts it too). */
static void test_gzip_label_on_zlib(void **state)
{
    unsigned char *coded;
    size_t n = code(ZLIB, seed, sizeof(seed) - 1, &coded);
    struct want w = {0, seed, sizeof(seed) - 1, NULL};
    (void)state;
    ways(QF_CODING_GZIP, QF_HTTP_BODY_MAX, coded, n, &w);
    free(coded);
}

/* ---- Broken streams ---------------------------------------------------------------------- */

/* Every byte of the deflate data flipped in turn: an error naming the coding, or (rarely) a
 * stream that still checks out; never a crash, never bytes past the guard. */
static void flip_every_byte(enum wrap wr)
{
    unsigned char *coded;
    size_t n = code(wr, seed, sizeof(seed) - 1, &coded);
    const char *label =
        coding_of(wr) == QF_CODING_GZIP ? "corrupt gzip body: " : "corrupt deflate body: ";
    struct qf_inflate z;

    qf_inflate_init(&z, NULL, NULL, NULL);
    for (size_t i = 0; i < n; i++) {
        struct run whole, bytes; /* "bytes": three at a time, into three */
        coded[i] ^= 0x5a;
        drive(&z, coding_of(wr), QF_HTTP_BODY_MAX, coded, n, 0, 0, 4096, &whole);
        drive(&z, coding_of(wr), QF_HTTP_BODY_MAX, coded, n, 0, 3, 3, &bytes);
        coded[i] ^= 0x5a;
        if (whole.rc != bytes.rc ||
            (whole.rc == 0 && (whole.len != bytes.len || memcmp(whole.out, bytes.out, whole.len))))
            fail_msg("flip at %zu: whole rc %d (%s), bytes rc %d (%s)", i, whole.rc, whole.msg,
                     bytes.rc, bytes.msg);
        if (whole.rc != 0 && whole.rc != QF_EBODY &&
            (whole.rc != QF_EPROTO || strncmp(whole.msg, label, strlen(label)) != 0))
            fail_msg("flip at %zu: rc %d, message '%s'", i, whole.rc, whole.msg);
        free(whole.out);
        free(bytes.out);
    }
    qf_inflate_free(&z);
    free(coded);
}

static void test_corrupt(void **state)
{
    (void)state;
    flip_every_byte(GZIP);
    flip_every_byte(ZLIB);
    flip_every_byte(RAW);
    /* One known corruption, every way: the gzip CRC catches a flipped payload byte. */
    unsigned char *coded;
    size_t n = code(GZIP, seed, sizeof(seed) - 1, &coded);
    coded[n - 8] ^= 1; /* the CRC itself */
    struct want w = {QF_EPROTO, NULL, 0, "corrupt gzip body: incorrect data check"};
    ways(QF_CODING_GZIP, QF_HTTP_BODY_MAX, coded, n, &w);
    free(coded);
}

/* Every proper prefix of a stream is cut short: the feeds take it, the end refuses it. The
 * empty body is no stream at all, and fine. */
static void test_truncated(void **state)
{
    static const enum wrap wraps[] = {GZIP, ZLIB, RAW, GZIP2};
    struct qf_inflate z;
    (void)state;

    unsigned char *first;
    size_t member = code(GZIP, seed, (sizeof(seed) - 1) / 2, &first); /* GZIP2's first member */
    free(first);
    qf_inflate_init(&z, NULL, NULL, NULL);
    for (size_t k = 0; k < sizeof(wraps) / sizeof(wraps[0]); k++) {
        unsigned char *coded;
        size_t n = code(wraps[k], seed, sizeof(seed) - 1, &coded);
        const char *label = coding_of(wraps[k]) == QF_CODING_GZIP
                                ? "corrupt gzip body: the stream is cut short"
                                : "corrupt deflate body: the stream is cut short";
        for (size_t cut = 1; cut < n; cut++) {
            struct run r;
            drive(&z, coding_of(wraps[k]), QF_HTTP_BODY_MAX, coded, cut, 0, 0, 4096, &r);
            if (wraps[k] == GZIP2 && cut == member) { /* a whole gzip stream of one member */
                if (r.rc != 0 || r.len != (sizeof(seed) - 1) / 2)
                    fail_msg("first member alone: rc %d '%s', %zu bytes", r.rc, r.msg, r.len);
            } else if (r.rc != QF_EPROTO || strcmp(r.msg, label) != 0) {
                fail_msg("wrap %zu cut at %zu of %zu: rc %d '%s'", k, cut, n, r.rc, r.msg);
            }
            free(r.out);
        }
        struct run r;
        drive(&z, coding_of(wraps[k]), QF_HTTP_BODY_MAX, coded, 0, 0, 0, 4096, &r);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.len, 0);
        free(r.out);
        free(coded);
    }
    qf_inflate_free(&z);
}

/* After the end: more deflate data is refused, another gzip member is welcome, and anything
 * else after a gzip member is a bad header. */
static void test_after_end(void **state)
{
    unsigned char *coded;
    size_t n = code(RAW, seed, sizeof(seed) - 1, &coded);
    unsigned char *more = xmalloc(n + 3);
    (void)state;

    memcpy(more, coded, n);
    memcpy(more + n, "xyz", 3);
    struct want w = {QF_EPROTO, NULL, 0, "corrupt deflate body: data after the end of the stream"};
    ways(QF_CODING_DEFLATE, QF_HTTP_BODY_MAX, more, n + 3, &w);
    free(coded);
    n = code(GZIP, seed, sizeof(seed) - 1, &coded);
    more = realloc(more, n + 3);
    memcpy(more, coded, n);
    memcpy(more + n, "xyz", 3);
    w.msg = "corrupt gzip body: ";
    ways(QF_CODING_GZIP, QF_HTTP_BODY_MAX, more, n + 3, &w);
    free(more);
    free(coded);
}

/* ---- Caps --------------------------------------------------------------------------------- */

/* The body cap counts inflated bytes, exactly; the ratio cap refuses a bomb early, and leaves
 * a highly compressible body under its free allowance alone. */
static void test_caps(void **state)
{
    size_t len = sizeof(seed) - 1;
    unsigned char *coded;
    size_t n = code(GZIP, seed, len, &coded);
    struct want ok = {0, seed, len, NULL};
    struct want over = {QF_EBODY, NULL, 0, "response body larger than "};
    (void)state;

    ways(QF_CODING_GZIP, len, coded, n, &ok);
    ways(QF_CODING_GZIP, len - 1, coded, n, &over);
    free(coded);

    size_t zlen = 16 << 20;
    char *zeros = calloc(1, zlen);
    assert_non_null(zeros);
    n = code(GZIP, zeros, zlen, &coded);
    struct qf_inflate z;
    struct run r;
    qf_inflate_init(&z, NULL, NULL, NULL);
    drive(&z, QF_CODING_GZIP, UINT64_MAX, coded, n, 0, 0, 4096, &r);
    assert_int_equal(r.rc, QF_EBODY);
    assert_non_null(strstr(r.msg, "gzip body inflates more than 100:1"));
    assert_non_null(strstr(r.msg, "decompression bomb"));
    /* Refused within one output buffer past the allowance, not after 16 MiB. */
    assert_true(r.len > QF_INFLATE_RATIO_FREE && r.len <= QF_INFLATE_RATIO_FREE + 4096);
    free(r.out);
    free(coded);
    /* 60 KiB of zeros inflate about 600 times, under the allowance: fine. */
    n = code(GZIP, zeros, 60 * 1024, &coded);
    struct want small = {0, zeros, 60 * 1024, NULL};
    char *o1 = guard_out(1), *o4k = guard_out(4096);
    one(&z, "zeros", QF_CODING_GZIP, UINT64_MAX, coded, n, 0, 0, o4k, 4096, &small);
    one(&z, "zeros", QF_CODING_GZIP, UINT64_MAX, coded, n, 0, 1, o1, 1, &small);
    qf_test_guard_free(o1);
    qf_test_guard_free(o4k);
    qf_inflate_free(&z);
    free(coded);
    free(zeros);
}

/* ---- Allocation: once per inflater, through the caller's allocator -------------------------- */

static unsigned long nalloc, fail_alloc_at;

static voidpf count_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    if (++nalloc == fail_alloc_at)
        return NULL;
    return malloc((size_t)items * size);
}

static void count_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    free(p);
}

static void test_allocation(void **state)
{
    static const enum wrap wraps[] = {GZIP, RAW, ZLIB, GZIP2, GZIP};
    struct qf_inflate z;
    struct run r;
    unsigned char *coded;
    struct want w = {0, seed, sizeof(seed) - 1, NULL};
    (void)state;

    qf_inflate_init(&z, count_alloc, count_free, NULL);
    nalloc = 0, fail_alloc_at = 0;
    for (size_t k = 0; k < sizeof(wraps) / sizeof(wraps[0]); k++) {
        size_t n = code(wraps[k], seed, sizeof(seed) - 1, &coded);
        drive(&z, coding_of(wraps[k]), QF_HTTP_BODY_MAX, coded, n, 0, 3, 5, &r);
        check("alloc", 0, 5, &r, &w);
        free(r.out);
        free(coded);
        /* the state and the window, made by the first body; later ones reset them */
        if (nalloc != 2)
            fail_msg("after body %zu: %lu allocations, want 2", k, nalloc);
    }
    qf_inflate_free(&z);

    /* Out of memory for the state, then for the window: QF_ENOMEM, and the next try works. */
    size_t n = code(GZIP, seed, sizeof(seed) - 1, &coded);
    qf_inflate_init(&z, count_alloc, count_free, NULL);
    nalloc = 0, fail_alloc_at = 1;
    assert_int_equal(qf_inflate_begin(&z, QF_CODING_GZIP, QF_HTTP_BODY_MAX), QF_ENOMEM);
    nalloc = 0, fail_alloc_at = 2;
    assert_int_equal(qf_inflate_begin(&z, QF_CODING_GZIP, QF_HTTP_BODY_MAX), 0);
    const char *in = (const char *)coded;
    size_t left = n, made = 0;
    char out[4]; /* zlib makes its window when a call leaves the stream unfinished */
    assert_int_equal(qf_inflate_feed(&z, &in, &left, out, sizeof(out), &made), QF_ENOMEM);
    assert_non_null(strstr(z.msg, "out of memory"));
    fail_alloc_at = 0;
    drive(&z, QF_CODING_GZIP, QF_HTTP_BODY_MAX, coded, n, 0, 0, 64, &r);
    check("after ENOMEM", 0, 64, &r, &w);
    free(r.out);
    qf_inflate_free(&z);
    free(coded);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coding_names),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_gzip_label_on_zlib),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_after_end),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_allocation),
    };
    return cmocka_run_group_tests_name("inflate", tests, NULL, NULL) != 0;
}
