/* Fuzzing, replayed under `make test`: every seed in tests/fuzz/corpus/ goes through the same
 * invariant checks as the libFuzzer targets (tests/fuzz/check_*.c), the shared captures too
 * when they exist (read in place), and each input the fuzzers found a bug with is a test case
 * of its own, minimized, next to a hand-written reproducer of the same bug. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "parser/http.h"
#include "parser/inflate.h"
#include "parser/json.h"
#include "qfetch.h"
#include "testutil.h"
#include "tests/fuzz/check.h"
#include "tests/fuzz/oracle.h"

#define CORPUS_DIR "tests/fuzz/corpus" /* tests run from the repository root */

typedef int check_fn(const unsigned char *data, size_t len, char *why, size_t whylen);

/* Runs check over every file of dir; fails naming each input that broke an invariant. */
static void replay_dir(const char *dir, check_fn *check, size_t min_files)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t files = 0, bad = 0;
    char path[4096], why[512];

    if (d == NULL)
        fail_msg("cannot open %s: %s (tests run from the repository root)", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        char *data;
        size_t len;
        if (e->d_name[0] == '.')
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path))
            fail_msg("path too long under %s", dir);
        if (qf_test_read_file(path, &data, &len) != 0)
            fail_msg("cannot read %s", path);
        files++;
        if (check((const unsigned char *)data, len, why, sizeof(why)) != 0) {
            print_error("%s: %s\n", path, why);
            bad++;
        }
        free(data);
    }
    closedir(d);
    if (files < min_files)
        fail_msg("%s holds %zu inputs, expected at least %zu", dir, files, min_files);
    if (bad > 0)
        fail_msg("%zu of %zu inputs in %s broke an invariant", bad, files, dir);
}

static void test_corpus_response(void **state)
{
    (void)state;
    replay_dir(CORPUS_DIR "/response", qf_fuzz_check_response, 40);
}

static void test_corpus_args(void **state)
{
    (void)state;
    replay_dir(CORPUS_DIR "/args", qf_fuzz_check_args, 20);
}

/* Control bytes (check.h) prepended to a response: feed plan and flags. */
static size_t fuzz_input(const unsigned char *ctl, size_t nctl, const char *resp, size_t len,
                         unsigned char **out)
{
    *out = malloc(nctl + len);
    assert_non_null(*out);
    memcpy(*out, ctl, nctl);
    memcpy(*out + nctl, resp, len);
    return nctl + len;
}

static void check_response_ok(const unsigned char *in, size_t len, const char *what)
{
    char why[512];
    if (qf_fuzz_check_response(in, len, why, sizeof(why)) != 0)
        fail_msg("%s: %s", what, why);
}

/* The captured raw bodies (recordings are left to test_json.c), each framed three ways and fed
 * whole, in pieces, byte by byte, with header capture and exact growth. */
static void test_fixtures_response(void **state)
{
    static const char *subdirs[] = {"", "errors"};
    static const size_t sizes[] = {1000, 7};
    static const struct qf_test_chunking ck = {sizes, 2, ";ext=1", "X-Trailer: 1\r\n"};
    static const unsigned char plans[][4] = {
        {0x00, 0x01},             /* byte by byte, headers captured */
        {0x42, 0x00, 0x85, 0x10}, /* 1536 and 17 bytes, exact growth */
        {0x81, 0x01, 0x7f},       /* 128 bytes, one token to start, headers captured */
    };
    const char *dir = qf_test_fixtures_dir();
    size_t runs = 0;
    (void)state;

    if (dir == NULL)
        skip(); /* no shared fixtures on this machine */
    for (size_t s = 0; s < sizeof(subdirs) / sizeof(subdirs[0]); s++) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, subdirs[s]) >= sizeof(path))
            fail_msg("path too long: %s", dir);
        DIR *d = opendir(path);
        struct dirent *e;
        if (d == NULL)
            continue;
        while ((e = readdir(d)) != NULL) {
            size_t n = strlen(e->d_name), blen;
            char file[4096], *body, what[512];
            if (n < 5 || strstr(e->d_name, ".recording.") != NULL ||
                (strcmp(e->d_name + n - 5, ".json") != 0 && strcmp(e->d_name + n - 4, ".txt") != 0))
                continue;
            if ((size_t)snprintf(file, sizeof(file), "%s/%s", path, e->d_name) >= sizeof(file))
                fail_msg("path too long under %s", path);
            assert_int_equal(qf_test_read_file(file, &body, &blen), 0);
            for (int fr = QF_TEST_CL; fr <= QF_TEST_EOF; fr++) {
                char *resp;
                size_t rlen = qf_test_wrap("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",
                                           body, blen, (enum qf_test_framing)fr, &ck, &resp);
                for (size_t p = 0; p < sizeof(plans) / sizeof(plans[0]); p++) {
                    unsigned char *in, ctl[4];
                    size_t nctl = 2 + (plans[p][0] & 15u);
                    memcpy(ctl, plans[p], nctl);
                    if (fr == QF_TEST_EOF)
                        ctl[0] |= 0x10; /* the peer closes: the end of the body */
                    size_t ilen = fuzz_input(ctl, nctl, resp, rlen, &in);
                    if (snprintf(what, sizeof(what), "%s framing %d plan %zu", e->d_name, fr, p) <
                        0)
                        what[0] = '\0';
                    check_response_ok(in, ilen, what);
                    free(in);
                    runs++;
                }
                free(resp);
            }
            free(body);
        }
        closedir(d);
    }
    print_message("%zu fixture runs\n", runs);
    assert_true(runs > 0);
}

/* ---- Bug: a second ':' after a key was accepted (fuzz_response, json.c separator_valid) ---- */

static void test_json_double_colon(void **state)
{
    static const char *bodies[] = {
        "{\"a\"::1}",
        "{\"\"::2}",
        "[{\"a\" : : 1}]",
        "{\"chart\":{\"result\":[{\"meta\":{\"regularMarketPrice\"::5}}]}}",
    };
    struct qf_quote q;
    (void)state;

    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        int rc = qf_test_json_extract(bodies[i], strlen(bodies[i]), 4, &q, NULL);
        if (rc != QF_EJSON)
            fail_msg("'%s' gave %d (price %g), want QF_EJSON", bodies[i], rc, q.price);
    }
}

static void test_fuzz_double_colon(void **state)
{
    /* minimized fuzz_response input: close-delimited 200, body {""::2} */
    static const char in[] = "\x11\x00\x08"
                             "HTTP/1.1 200\n\n{\"\"::2}";
    (void)state;
    check_response_ok((const unsigned char *)in, sizeof(in) - 1, "double colon");
}

/* ---- Bug: "Name : value" kept the SP in the name (fuzz_response, http.c on_header_field) ---- */

/* llhttp 8.1 lets SP before the colon through in responses (not in requests), inside the
 * name span. Either refusal or the trimmed name is right; the SP kept in is not. */
static void test_http_space_before_colon(void **state)
{
    static const char resp[] = "HTTP/1.1 429 Too Many Requests\r\nRetry-After : 30\r\n"
                               "Content-Length: 0\r\n\r\n";
    struct qf_test_http_run r;
    struct qf_http h;
    char hbuf[256], body[16];
    (void)state;

    qf_test_http_drive(resp, sizeof(resp) - 1, 0, 0, 0, QF_HTTP_BODY_MAX, &r);
    qf_test_http_run_free(&r);
    if (r.rc != QF_EPROTO && !(r.rc == 0 && r.retry_after_s == 30))
        fail_msg("'Retry-After : 30' gave rc %d, Retry-After %d: want QF_EPROTO or 30", r.rc,
                 r.retry_after_s);

    qf_http_init(&h, body, sizeof(body), sizeof(body));
    qf_http_set_hbuf(&h, hbuf, sizeof(hbuf));
    ssize_t n = qf_http_feed(&h, resp, sizeof(resp) - 1);
    if (n == QF_EPROTO)
        return;
    assert_int_equal(n, (ssize_t)sizeof(resp) - 1);
    assert_true(h.complete);
    if (strcmp(hbuf, "Retry-After") != 0)
        fail_msg("captured header name '%s', want 'Retry-After'", hbuf);
}

static void test_fuzz_space_before_colon(void **state)
{
    /* minimized fuzz_response input: headers captured, HEAD; note llhttp 8.1 also takes a CR
     * followed by any byte as the end of the status line and of the header block */
    static const char in[] = "\x00\x43"
                             "HTTP/1.1 200\r}c :\r\n\r}";
    (void)state;
    check_response_ok((const unsigned char *)in, sizeof(in) - 1, "space before colon");
}

/* ---- Bug: a blank inside a header name was kept (fuzz_response, after the fix above) ---- */

/* llhttp 8.1 also takes "x n: 1" and "Content Length: 5" as response header names; checking
 * only the name's last byte misses them. */
static void test_http_space_inside_name(void **state)
{
    static const char *resps[] = {
        "HTTP/1.1 200 OK\r\nx n: 1\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent Length: 5\r\n\r\nabcde",
        "HTTP/1.1 429 Too Many Requests\r\nRetry After: 30\r\nContent-Length: 0\r\n\r\n",
    };
    (void)state;

    for (size_t i = 0; i < sizeof(resps) / sizeof(resps[0]); i++) {
        for (size_t step = 0; step < 2; step++) {
            struct qf_http h;
            char hbuf[256], body[16];
            const char *r = resps[i];
            size_t len = strlen(r), off = 0;
            ssize_t n = 0;
            memset(hbuf, 0, sizeof(hbuf)); /* a name or value still open ends anyway */
            qf_http_init(&h, body, sizeof(body), sizeof(body));
            qf_http_set_hbuf(&h, hbuf, sizeof(hbuf) - 1);
            while (off < len && !h.complete && n >= 0) {
                n = qf_http_feed(&h, r + off, step ? 1 : len - off);
                off += n > 0 ? (size_t)n : 0;
            }
            if (n == QF_EPROTO)
                continue;
            for (size_t k = 0; k < h.hlen; k += strlen(hbuf + k) + 1) { /* names only */
                if (strpbrk(hbuf + k, " \t") != NULL)
                    fail_msg("response %zu (step %zu): rc %zd, captured header name '%s'", i, step,
                             n, hbuf + k);
                k += strlen(hbuf + k) + 1;
            }
        }
    }
}

static void test_fuzz_space_inside_name(void **state)
{
    /* minimized fuzz_response input: byte by byte, headers captured, HEAD; name "x n" */
    static const char in[] = "\x00\xf7"
                             "HTTP/1.1 200\nx n:\r\n\rd";
    (void)state;
    check_response_ok((const unsigned char *)in, sizeof(in) - 1, "space inside a name");
}

/* ---- The reference reader the checks rely on ---------------------------------------------- */

static void test_oracle(void **state)
{
    static const struct {
        const char *js;
        int valid;
    } cases[] = {
        {"{}", 1},
        {" [1, -0.5e+3, 0, \"\\u00e9\\ud83d\\ude00\", true, false, null] ", 1},
        {"{\"a\":{\"b\":[[]]},\"c\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}", 1},
        {"\"top\"", 1},
        {"{\"a\"::1}", 0},
        {"[1,]", 0},
        {"[,1]", 0},
        {"{\"a\":1,}", 0},
        {"{\"a\" 1}", 0},
        {"{1:2}", 0},
        {"01", 0},
        {"1.", 0},
        {"-", 0},
        {"1e", 0},
        {"tru", 0},
        {"\"\x01\"", 0},
        {"\"\\x\"", 0},
        {"\"\\u12g4\"", 0},
        {"[1] [2]", 0},
        {"", 0},
    };
    struct qf_oracle_val root, v;
    char out[16];
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = qf_oracle_json_parse(cases[i].js, strlen(cases[i].js), 64, 0, &root, NULL);
        if (got != cases[i].valid)
            fail_msg("oracle says %d for '%s'", got, cases[i].js);
    }
    assert_int_equal(qf_oracle_json_parse("[[[]]]", 6, 2, 0, &root, NULL), -1);
    assert_int_equal(qf_oracle_json_parse("[[]]", 4, 2, 0, &root, NULL), 1);
    assert_int_equal(qf_oracle_json_parse("[\"\xc3\xa9\"]", 6, 4, 1, &root, NULL), 1);
    assert_int_equal(qf_oracle_json_parse("[\"\xc3\"]", 5, 4, 1, &root, NULL), 0);
    assert_int_equal(qf_oracle_json_parse("[\"\xed\xa0\x80\"]", 7, 4, 1, &root, NULL), 0);

    static const char js[] = "{\"k\":1,\"k\":2,\"s\":\"a\\u0001\\ud800b\",\"l\":[7,8]}";
    assert_int_equal(qf_oracle_json_parse(js, sizeof(js) - 1, 4, 0, &root, NULL), 1);
    v = qf_oracle_json_get(js, root, "k"); /* the first occurrence */
    assert_int_equal(v.type, QF_ORACLE_NUMBER);
    assert_memory_equal(js + v.at, "1", 1);
    v = qf_oracle_json_get(js, root, "s");
    assert_int_equal(qf_oracle_json_string(js, v, out, sizeof(out), 1), 6);
    assert_string_equal(out, "a \xef\xbf\xbd"
                             "b");
    v = qf_oracle_json_get(js, root, "l");
    assert_int_equal(qf_oracle_json_count(js, v), 2);
    v = qf_oracle_json_index(js, v, 1);
    assert_memory_equal(js + v.at, "8", 1);
    assert_int_equal(qf_oracle_json_get(js, root, "missing").type, QF_ORACLE_NONE);

    /* Malformed runs and clean text, as qf_text_next() and qf_text_clean() define them. */
    char t[64];
    assert_int_equal(qf_oracle_text("a\xe2\x82" "b\xc0\xaf\xf0\x9f\x98", 9, t, 0), 14);
    assert_string_equal(t, "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_int_equal(qf_oracle_text("\t\xc2\x9b\xe2\x80\xae\xc3\xa9", 8, t, 1), 9);
    assert_string_equal(t, " \xef\xbf\xbd\xef\xbf\xbd\xc3\xa9");
    assert_int_equal(qf_oracle_text("\t\xc2\x9b", 3, t, 0), 3);
}

/* ---- Bug: output into no room computed NULL + 0 (fuzz_response: the check's own copy of
 * the output, then the same hazard in inflate.c's next_out) ---- */

/* Nothing may be written, and asking for room is the answer, whether or not there is a
 * buffer behind the zero. */
static void test_inflate_no_room(void **state)
{
    static const char deflated[] = "KLJ\xc4\x0a\x01"; /* raw deflate */
    struct qf_inflate z;
    (void)state;

    qf_inflate_init(&z, NULL, NULL, NULL);
    assert_int_equal(qf_inflate_begin(&z, QF_CODING_DEFLATE, QF_HTTP_BODY_MAX), 0);
    const char *in = deflated;
    size_t left = sizeof(deflated) - 1, made = 0;
    int rc = qf_inflate_feed(&z, &in, &left, NULL, 0, &made);
    assert_int_equal(made, 0);
    if (rc != QF_ENOSPC && rc != QF_EPROTO)
        fail_msg("no room gave %d (%s), want QF_ENOSPC or a corrupt stream", rc, z.msg);
    qf_inflate_free(&z);
}

static void test_fuzz_inflate_no_room(void **state)
{
    /* minimized fuzz_response input: a deflate body that inflates to nothing usable */
    static const char in[] = "\x00\x08"
                             "HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n"
                             "Content-Length: 6\r\n\r\nKLJ\xc4\x0a\x01";
    (void)state;
    check_response_ok((const unsigned char *)in, sizeof(in) - 1, "inflate into no room");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle),
        cmocka_unit_test(test_corpus_response),
        cmocka_unit_test(test_corpus_args),
        cmocka_unit_test(test_fixtures_response),
        cmocka_unit_test(test_json_double_colon),
        cmocka_unit_test(test_fuzz_double_colon),
        cmocka_unit_test(test_http_space_before_colon),
        cmocka_unit_test(test_fuzz_space_before_colon),
        cmocka_unit_test(test_http_space_inside_name),
        cmocka_unit_test(test_fuzz_space_inside_name),
        cmocka_unit_test(test_inflate_no_room),
        cmocka_unit_test(test_fuzz_inflate_no_room),
    };
    return cmocka_run_group_tests_name("fuzz_regress", tests, NULL, NULL);
}
