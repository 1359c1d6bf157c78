/* engine/proxy.c: proxy URLs and their credentials, the environment's variables in curl's
 * order (HTTP_PROXY never), no-proxy lists, the CONNECT request and the proxy's answer, fed
 * whole and as every prefix (what a peek sees as it arrives), each ending at a guard page.
 * Expected base64 comes from Python's base64.b64encode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/proxy.h"
#include "qfetch.h"
#include "testutil.h"

#define NCASES(a) (sizeof(a) / sizeof((a)[0]))

/* ---- proxy URLs -------------------------------------------------------------------------- */

struct url_case {
    const char *url;
    const char *host, *port, *name;
    const char *b64; /* expected credentials, NULL: none */
};

static const struct url_case good_urls[] = {
    {"http://127.0.0.1:3128", "127.0.0.1", "3128", "127.0.0.1:3128", NULL},
    {"127.0.0.1:3128", "127.0.0.1", "3128", "127.0.0.1:3128", NULL},
    {"HTTP://proxy.example", "proxy.example", "1080", "proxy.example:1080", NULL},
    {"http://proxy.example:8080/", "proxy.example", "8080", "proxy.example:8080", NULL},
    {"http://proxy_1.example:08080", "proxy_1.example", "8080", "proxy_1.example:8080", NULL},
    {"http://[::1]:3128", "::1", "3128", "[::1]:3128", NULL},
    {"http://[2001:db8::7]", "2001:db8::7", "1080", "[2001:db8::7]:1080", NULL},
    {"http://user:pass@p:1", "p", "1", "p:1", "dXNlcjpwYXNz"},
    {"http://us%40er:p%3Ass@p:1", "p", "1", "p:1", "dXNAZXI6cDpzcw=="},
    {"http://user@p:1", "p", "1", "p:1", "dXNlcjo="},
    {"http://a:@p:1", "p", "1", "p:1", "YTo="},
    {"http://ab:@p:1", "p", "1", "p:1", "YWI6"},
    {"http://a:b@p:1", "p", "1", "p:1", "YTpi"},
    {"http://ab:c@p:1", "p", "1", "p:1", "YWI6Yw=="},
    {"http://a:b@c@p:1", "p", "1", "p:1", "YTpiQGM="}, /* the last '@' ends the user info */
    {"http://jos%C3%A9:p%c3%a4ss@[::1]:8", "::1", "8", "[::1]:8", "am9zw6k6cMOkc3M="},
};

static void test_parse_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES(good_urls); i++) {
        const struct url_case *k = &good_urls[i];
        struct qf_proxy p;
        char err[200] = "";
        int rc = qf_proxy_parse(&p, k->url, "proxy URL", err, sizeof(err));
        if (rc != 0)
            fail_msg("%s: %d %s", k->url, rc, err);
        assert_string_equal(p.host, k->host);
        assert_string_equal(p.port, k->port);
        assert_string_equal(p.name, k->name);
        if (k->b64 == NULL) {
            assert_null(p.auth);
        } else {
            char want[128];
            int n = snprintf(want, sizeof(want), "Proxy-Authorization: Basic %s\r\n", k->b64);
            assert_non_null(p.auth);
            assert_string_equal(p.auth, want);
            assert_int_equal(p.auth_len, n);
        }
        qf_proxy_clear(&p);
    }
}

struct bad_url {
    const char *url, *why;
};

static const struct bad_url bad_urls[] = {
    {"https://p:3128", "https:// proxies (TLS to the proxy) are not supported"},
    {"HTTPS://p:3128", "not supported"},
    {"socks5://p:1080", "socks proxies are not supported"},
    {"socks5h://user:pw@p", "socks"},
    {"socks4://p", "socks"},
    {"socks4a://p", "socks"},
    {"ftp://p", "unsupported proxy scheme 'ftp'"},
    {"http://p:0", "bad port"},
    {"http://p:65536", "bad port"},
    {"http://p:12a", "bad port"},
    {"http://p:", "bad port"},
    {"http://p:123456", "bad port"},
    {"http://", "bad host name"},
    {"", "bad host name"},
    {"http://:80", "bad host name"},
    {"http://user:pw@", "bad host name"},
    {"http://p/x", "path, query or fragment"},
    {"http://p?x=1", "path, query or fragment"},
    {"http://p#f", "path, query or fragment"},
    {"http://a%4@p", "percent-escape"},
    {"http://a%4g@p", "percent-escape"},
    {"http://a:b%00@p", "percent-escape"},
    {"http://[::1", "bad host name"},
    {"http://[]:1", "bad host name"},
    {"http://[zz]:1", "bad host name"},
    {"http://[::1]x", "bad host name"},
    {"http://p q:1", "spaces or control characters"},
    {"http://p:80\n", "spaces or control characters"},
    {"http://ex!ample:1", "bad host name"},
};

static void test_parse_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES(bad_urls); i++) {
        struct qf_proxy p;
        char err[200] = "";
        int rc = qf_proxy_parse(&p, bad_urls[i].url, "https_proxy", err, sizeof(err));
        if (rc != QF_EINVAL || strncmp(err, "https_proxy: ", 13) != 0 ||
            strstr(err, bad_urls[i].why) == NULL)
            fail_msg("'%s': rc %d, err '%s', want '%s'", bad_urls[i].url, rc, err, bad_urls[i].why);
        assert_null(p.auth);
    }
}

/* An error message may be shown anywhere: never the password. */
static void test_parse_error_hides_password(void **state)
{
    static const char *const urls[] = {"http://user:s3cret@p:99999", "https://u:s3cret@p",
                                       "socks5://u:s3cret@p", "http://u:s3cret@p/path",
                                       "http://u:s3cret%zz@p"};
    (void)state;
    for (size_t i = 0; i < NCASES(urls); i++) {
        struct qf_proxy p;
        char err[200] = "";
        assert_int_equal(qf_proxy_parse(&p, urls[i], "proxy URL", err, sizeof(err)), QF_EINVAL);
        assert_null(strstr(err, "s3cret"));
    }
}

/* ---- no-proxy lists ---------------------------------------------------------------------- */

struct bypass_case {
    const char *list, *host, *port;
    int want;
};

static const struct bypass_case bypass_cases[] = {
    {"*", "query1.finance.yahoo.com", "443", 1},
    {"*", "10.1.2.3", "80", 1},
    {"a.com,*", "b.com", "443", 1},
    {"example.com", "example.com", "443", 1},
    {"example.com", "www.example.com", "443", 1},
    {"example.com", "a.b.EXAMPLE.com", "443", 1},
    {"EXAMPLE.COM", "example.com", "443", 1},
    {"example.com", "example.com.", "443", 1},
    {"example.com.", "www.example.com", "443", 1},
    {"example.com", "notexample.com", "443", 0},
    {"example.com", "example.com.evil", "443", 0},
    {"example.com", "com", "443", 0},
    {".example.com", "example.com", "443", 1},
    {".example.com", "a.example.com", "443", 1},
    {".example.com", "aexample.com", "443", 0},
    {"*.example.com", "example.com", "443", 1},
    {"*.example.com", "x.example.com", "443", 1},
    {"localhost:8080", "localhost", "8080", 1},
    {"localhost:8080", "localhost", "443", 0},
    {"localhost", "localhost", "8080", 1},
    {"127.0.0.1", "127.0.0.1", "443", 1},
    {"127.0.0.1", "127.0.0.2", "443", 0},
    {"127.0.0.1", "localhost", "443", 0}, /* no lookups: a name is not an address */
    {"localhost", "127.0.0.1", "443", 0},
    {"0.1", "10.0.0.1", "443", 0}, /* a name entry never suffix-matches an IP */
    {"127.0.0.1:4433", "127.0.0.1", "4433", 1},
    {"127.0.0.1:4433", "127.0.0.1", "443", 0},
    {"10.0.0.0/8", "10.1.2.3", "443", 1},
    {"10.0.0.0/8", "11.0.0.1", "443", 0},
    {"192.168.1.0/25", "192.168.1.127", "80", 1},
    {"192.168.1.0/25", "192.168.1.128", "80", 0},
    {"0.0.0.0/0", "203.0.113.9", "80", 1},
    {"0.0.0.0/0", "example.com", "80", 0},
    {"::1", "::1", "443", 1},
    {"::1", "::2", "443", 0},
    {"[::1]:443", "::1", "443", 1},
    {"[::1]:443", "::1", "80", 0},
    {"[::1]", "::1", "80", 1},
    {"fd00::/8", "fd12:3456::1", "443", 1},
    {"fd00::/8", "fe80::1", "443", 0},
    {"[fd00::/8]:443", "fd12::1", "443", 1},
    {"::1", "127.0.0.1", "443", 0},
    {"a.com, b.com ,\tc.com", "c.com", "443", 1},
    {"a.com,,b.com", "b.com", "443", 1},
    {"a.com b.com", "b.com", "443", 1},
    {"", "example.com", "443", 0},
    {",, ,", "example.com", "443", 0},
    {"a/b,example.com", "example.com", "443", 1}, /* an unusable entry is skipped */
    {"exa*mple.com", "exa*mple.com", "443", 0},
};

static void test_bypass(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES(bypass_cases); i++) {
        const struct bypass_case *k = &bypass_cases[i];
        int got = qf_proxy_bypass(k->list, k->host, k->port);
        if (got != k->want)
            fail_msg("list '%s', host %s port %s: got %d, want %d", k->list, k->host, k->port, got,
                     k->want);
    }
    assert_int_equal(qf_proxy_bypass(NULL, "example.com", "443"), 0);
}

static void test_check_list(void **state)
{
    static const char *const good[] = {
        "",
        "*",
        "localhost,127.0.0.1,::1,.internal,10.0.0.0/8,*.corp,host:8080,[::1]:443",
        "a.com b.com",
        "169.254.169.254",
        "fd00::/8",
        "EXAMPLE.COM.",
    };
    static const char *const bad[] = {
        "a/b",     "exa*mple.com", "host:0",      "host:99999", "host:",
        "[::1",    "[::1]x",       "10.0.0.0/33", "::1/129",    "10.0.0.0/",
        "foo@bar", "http://x",     ".",           "*.",         "[zz]",
    };
    (void)state;
    for (size_t i = 0; i < NCASES(good); i++) {
        char err[200] = "";
        if (qf_proxy_check_list(good[i], err, sizeof(err)) != 0)
            fail_msg("'%s' refused: %s", good[i], err);
    }
    for (size_t i = 0; i < NCASES(bad); i++) {
        char list[64], err[200] = "", want[80];
        snprintf(list, sizeof(list), "ok.com,%s", bad[i]);
        snprintf(want, sizeof(want), "'%s' is not", bad[i]);
        if (qf_proxy_check_list(list, err, sizeof(err)) != QF_EINVAL || strstr(err, want) == NULL)
            fail_msg("'%s' accepted or misnamed: '%s'", list, err);
    }
}

/* ---- the environment --------------------------------------------------------------------- */

static const char *const *fake_env; /* "NAME=value" entries, NULL-terminated */

static char *env_get(const char *name)
{
    size_t n = strlen(name);
    for (const char *const *e = fake_env; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return (char *)*e + n + 1;
    }
    return NULL;
}

struct env_case {
    const char *env[6];
    const char *proxy, *noproxy; /* the options */
    int use_env;
    const char *http, *https; /* the proxies' names, NULL: direct */
};

static const struct env_case env_cases[] = {
    {{"https_proxy=http://a:1", "HTTPS_PROXY=http://b:2"}, NULL, NULL, 1, NULL, "a:1"},
    {{"HTTPS_PROXY=http://b:2"}, NULL, NULL, 1, NULL, "b:2"},
    {{"HTTP_PROXY=http://h:1"}, NULL, NULL, 1, NULL, NULL}, /* httpoxy: never read */
    {{"HTTP_PROXY=http://h:1", "http_proxy=http://l:1"}, NULL, NULL, 1, "l:1", NULL},
    {{"all_proxy=http://all:1"}, NULL, NULL, 1, "all:1", "all:1"},
    {{"ALL_PROXY=http://up:1", "all_proxy=http://low:1"}, NULL, NULL, 1, "low:1", "low:1"},
    {{"ALL_PROXY=http://all:1", "https_proxy="}, NULL, NULL, 1, "all:1", "all:1"},
    {{"all_proxy=http://all:1", "http_proxy=http://h:2"}, NULL, NULL, 1, "h:2", "all:1"},
    {{"https_proxy=http://a:1", "http_proxy=http://b:1"}, "", NULL, 1, NULL, NULL},
    {{"https_proxy=http://a:1"}, "http://x:9", NULL, 1, "x:9", "x:9"},
    {{"https_proxy=http://a:1", "all_proxy=http://b:1"}, NULL, NULL, 0, NULL, NULL},
    {{"https_proxy=http://a:1"}, "http://x:9", NULL, 0, "x:9", "x:9"},
};

static void test_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES(env_cases); i++) {
        const struct env_case *k = &env_cases[i];
        struct qf_proxy_conf pc;
        char err[200] = "";
        fake_env = k->env;
        int rc = qf_proxy_conf_init(&pc, k->proxy, k->noproxy, k->use_env ? env_get : NULL, err,
                                    sizeof(err));
        if (rc != 0)
            fail_msg("case %zu: %d %s", i, rc, err);
        const struct qf_proxy *got[2] = {pc.http, pc.https};
        const char *want[2] = {k->http, k->https};
        for (int t = 0; t < 2; t++) {
            if ((want[t] == NULL) != (got[t] == NULL) ||
                (want[t] != NULL && strcmp(want[t], got[t]->name) != 0))
                fail_msg("case %zu, %s: got %s, want %s", i, t ? "https" : "http",
                         got[t] ? got[t]->name : "direct", want[t] ? want[t] : "direct");
            const char *bad;
            const struct qf_proxy *p = qf_proxy_for(&pc, t, "example.com", "443", &bad);
            assert_ptr_equal(p, got[t]);
            assert_null(bad);
        }
        qf_proxy_conf_free(&pc);
    }
}

static void test_env_noproxy(void **state)
{
    struct qf_proxy_conf pc;
    const char *bad;
    char err[200] = "";
    (void)state;

    static const char *const e1[] = {"https_proxy=http://p:1", "no_proxy=.example.com",
                                     "NO_PROXY=other.com", NULL};
    fake_env = e1;
    assert_int_equal(qf_proxy_conf_init(&pc, NULL, NULL, env_get, err, sizeof(err)), 0);
    assert_null(qf_proxy_for(&pc, 1, "www.example.com", "443", &bad));
    assert_non_null(qf_proxy_for(&pc, 1, "other.com", "443", &bad)); /* lower case wins */
    assert_string_equal(pc.warning, "");
    qf_proxy_conf_free(&pc);

    static const char *const e2[] = {"https_proxy=http://p:1", "NO_PROXY=localhost", NULL};
    fake_env = e2;
    assert_int_equal(qf_proxy_conf_init(&pc, NULL, NULL, env_get, err, sizeof(err)), 0);
    assert_null(qf_proxy_for(&pc, 1, "localhost", "4433", &bad));
    qf_proxy_conf_free(&pc);

    /* --noproxy "" overrides the environment's list; the explicit proxy obeys no_proxy. */
    assert_int_equal(qf_proxy_conf_init(&pc, "http://x:2", "", env_get, err, sizeof(err)), 0);
    assert_non_null(qf_proxy_for(&pc, 1, "localhost", "4433", &bad));
    qf_proxy_conf_free(&pc);
    assert_int_equal(qf_proxy_conf_init(&pc, "http://x:2", NULL, env_get, err, sizeof(err)), 0);
    assert_null(qf_proxy_for(&pc, 1, "localhost", "4433", &bad));
    qf_proxy_conf_free(&pc);

    /* An unusable environment entry is a warning and is skipped; an explicit one fails. */
    static const char *const e3[] = {"https_proxy=http://p:1", "no_proxy=a/b,localhost", NULL};
    fake_env = e3;
    assert_int_equal(qf_proxy_conf_init(&pc, NULL, NULL, env_get, err, sizeof(err)), 0);
    assert_non_null(strstr(pc.warning, "no_proxy: 'a/b' is not"));
    assert_null(qf_proxy_for(&pc, 1, "localhost", "443", &bad));
    assert_non_null(qf_proxy_for(&pc, 1, "a", "443", &bad));
    qf_proxy_conf_free(&pc);
    assert_int_equal(qf_proxy_conf_init(&pc, NULL, "a/b", env_get, err, sizeof(err)), QF_EINVAL);
    assert_string_equal(err, "noproxy list: 'a/b' is not a host name, IP address or network");
    assert_null(pc.https);
}

static void test_env_unusable(void **state)
{
    struct qf_proxy_conf pc;
    const char *bad;
    char err[200] = "";
    (void)state;

    /* A socks all_proxy fails the requests it would carry, named by its variable... */
    static const char *const e1[] = {"all_proxy=socks5h://p:1080", "no_proxy=direct.com", NULL};
    fake_env = e1;
    assert_int_equal(qf_proxy_conf_init(&pc, NULL, NULL, env_get, err, sizeof(err)), 0);
    assert_null(qf_proxy_for(&pc, 1, "example.com", "443", &bad));
    assert_non_null(bad);
    assert_string_equal(bad, "all_proxy: socks proxies are not supported; use an http:// proxy");
    assert_null(qf_proxy_for(&pc, 0, "example.com", "80", &bad));
    assert_non_null(bad);
    assert_null(qf_proxy_for(&pc, 1, "direct.com", "443", &bad)); /* ...not the bypassed */
    assert_null(bad);
    qf_proxy_conf_free(&pc);

    /* ...and only the scheme it is read for. */
    static const char *const e2[] = {"https_proxy=http://ok:1", "all_proxy=socks5://p", NULL};
    fake_env = e2;
    assert_int_equal(qf_proxy_conf_init(&pc, NULL, NULL, env_get, err, sizeof(err)), 0);
    assert_non_null(qf_proxy_for(&pc, 1, "example.com", "443", &bad));
    assert_null(bad);
    assert_null(qf_proxy_for(&pc, 0, "example.com", "80", &bad));
    assert_non_null(bad);
    qf_proxy_conf_free(&pc);

    /* An explicit proxy fails at once. */
    assert_int_equal(qf_proxy_conf_init(&pc, "https://p:1", NULL, NULL, err, sizeof(err)),
                     QF_EINVAL);
    assert_non_null(strstr(err, "proxy URL: https:// proxies"));
}

/* ---- the tunnel -------------------------------------------------------------------------- */

static void test_refusal(void **state)
{
    struct qf_proxy p;
    char err[200], msg[160];
    (void)state;

    assert_int_equal(qf_proxy_parse(&p, "http://127.0.0.1:3128", "proxy", err, sizeof(err)), 0);
    assert_int_equal(qf_proxy_refusal(&p, 403, msg, sizeof(msg)), QF_EPROXY);
    assert_string_equal(msg, "proxy 127.0.0.1:3128 refused CONNECT: HTTP 403");
    assert_int_equal(qf_proxy_refusal(&p, 407, msg, sizeof(msg)), QF_EPROXY);
    assert_string_equal(msg, "proxy 127.0.0.1:3128: 407 proxy authentication required");
    for (int s = 500; s <= 505; s++)
        assert_int_equal(qf_proxy_refusal(&p, s, msg, sizeof(msg)),
                         s >= 502 && s <= 504 ? QF_ECONNECT : QF_EPROXY);
    assert_int_equal(qf_proxy_parse(&p, "http://u:p@[::1]:8", "proxy", err, sizeof(err)), 0);
    qf_proxy_refusal(&p, 407, msg, sizeof(msg));
    assert_string_equal(msg, "proxy [::1]:8: 407 proxy authentication required "
                             "(credentials refused)");
    qf_proxy_clear(&p);
}

static void test_connect_request(void **state)
{
    struct qf_proxy p;
    char err[200], *req = NULL;
    (void)state;

    assert_int_equal(qf_proxy_parse(&p, "http://p:3128", "proxy", err, sizeof(err)), 0);
    int n = qf_proxy_connect_request(&p, "query1.finance.yahoo.com", "443", "UA/1", &req);
    static const char want1[] = "CONNECT query1.finance.yahoo.com:443 HTTP/1.1\r\n"
                                "Host: query1.finance.yahoo.com:443\r\n"
                                "User-Agent: UA/1\r\n\r\n";
    assert_int_equal(n, sizeof(want1) - 1);
    assert_string_equal(req, want1);
    free(req);
    qf_proxy_clear(&p);

    assert_int_equal(qf_proxy_parse(&p, "http://user:pass@p:3128", "proxy", err, sizeof(err)), 0);
    n = qf_proxy_connect_request(&p, "::1", "4433", "UA/1", &req);
    static const char want2[] = "CONNECT [::1]:4433 HTTP/1.1\r\nHost: [::1]:4433\r\n"
                                "User-Agent: UA/1\r\n"
                                "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n";
    assert_int_equal(n, sizeof(want2) - 1);
    assert_string_equal(req, want2);
    free(req);
    qf_proxy_clear(&p);
}

struct reply_case {
    const char *text;
    size_t len;      /* 0: strlen(text) */
    size_t cap;      /* 0: 16384 */
    int rc, status;  /* for the whole text */
    size_t head_len; /* rc 1: the head; rc < 0: the length of the prefix that already fails */
};

static const struct reply_case replies[] = {
    {"HTTP/1.1 200 Connection established\r\n\r\n", 0, 0, 1, 200, 39},
    {"HTTP/1.0 200 OK\r\nProxy-agent: test/1\r\n\r\n", 0, 0, 1, 200, 40},
    {"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03\x00\x7a", 24, 0, 1, 200, 19}, /* TLS follows */
    {"HTTP/1.1 200 OK\n\n", 0, 0, 1, 200, 17},
    {"HTTP/1.1 200 OK\r\nA: b\n\r\n", 0, 0, 1, 200, 24},
    {"HTTP/1.1 200\r\n\r\n", 0, 0, 1, 200, 16},
    {"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"q\"\r\n"
     "Content-Length: 0\r\n\r\n",
     0, 0, 1, 407, 102},
    {"HTTP/1.1 403 Forbidden\r\n\r\n<html>", 0, 0, 1, 403, 26},
    {"SSH-2.0-OpenSSH_9.2\r\n", 0, 0, QF_EPROTO, 0, 1},
    {"\x05\x00\x00\x01", 4, 0, QF_EPROTO, 0, 1}, /* a socks server's answer */
    {"HTTP/2 200\r\n\r\n", 0, 0, QF_EPROTO, 0, 6},
    {"HTTP/1.1 20x OK\r\n\r\n", 0, 0, QF_EPROTO, 0, 12},
    {"HTTP/1.1 2000 OK\r\n\r\n", 0, 0, QF_EPROTO, 0, 13},
    {"HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n", 27, 0, QF_EPROTO, 0, 22},
    {"HTTP/1.1 200 OK\r\nX: aaaaaaaaaaaaaaaa\r\n\r\n", 0, 32, QF_EHEADER, 0, 32},
    {"HTTP/1.1 200 OK\r\nX: aaaaaaaaaa\r\n\r\n", 0, 34, 1, 200, 34}, /* exactly cap */
    {"HTTP/1.1 200 OK\r\nX: aaaaaaaaaa\r\n\r\n", 0, 33, QF_EHEADER, 0, 33},
};

/* One call on a guard-page copy of text[0..len). */
static int reply_of(const char *text, size_t len, size_t cap, int *status, size_t *head_len)
{
    const char *g = qf_test_guard_copy(text, len);
    int rc = qf_proxy_reply(g, len, cap, status, head_len);
    qf_test_guard_free(g);
    return rc;
}

static void test_reply(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES(replies); i++) {
        const struct reply_case *k = &replies[i];
        size_t len = k->len ? k->len : strlen(k->text), cap = k->cap ? k->cap : 16384;
        int status = -1;
        size_t head_len = 0;
        int rc = reply_of(k->text, len, cap, &status, &head_len);
        if (rc != k->rc || (rc == 1 && (status != k->status || head_len != k->head_len)))
            fail_msg("case %zu: rc %d status %d head %zu; want %d %d %zu", i, rc, status, head_len,
                     k->rc, k->status, k->head_len);
        /* The answer arrives in pieces: every prefix says "more" until it is complete, or
         * fails as soon as the failing byte is there. */
        size_t done_at = k->head_len;
        for (size_t n = 0; n < len; n++) {
            int want = n < done_at ? 0 : k->rc;
            int got = reply_of(k->text, n, cap, &status, &head_len);
            if (got != want || (got == 1 && head_len != k->head_len))
                fail_msg("case %zu, first %zu bytes: rc %d, want %d", i, n, got, want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_error_hides_password),
        cmocka_unit_test(test_bypass),
        cmocka_unit_test(test_check_list),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_env_noproxy),
        cmocka_unit_test(test_env_unusable),
        cmocka_unit_test(test_refusal),
        cmocka_unit_test(test_connect_request),
        cmocka_unit_test(test_reply),
    };
    return cmocka_run_group_tests_name("proxy", tests, NULL, NULL);
}
