/* qf_json_extract: Yahoo-shaped bodies of our own making (decoys, key orders, errors, escapes,
 * invalid and truncated JSON, a 100k-token body), then the real captured bodies under the
 * shared fixtures dir when it exists, read in place, also fed through qf_http in Content-Length
 * and chunked framing. Every body handed to the extractor ends at a guard page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "parser/http.h"
#include "parser/json.h"
#include "parser/price.h"
#include "qfetch.h"
#include "testutil.h"

/* ---- Body pieces ------------------------------------------------------------------------ */

#define META_HEAD                                                                                  \
    "\"currency\":\"USD\",\"symbol\":\"QFT\",\"exchangeName\":\"NMS\","                            \
    "\"fullExchangeName\":\"NasdaqGS\",\"instrumentType\":\"EQUITY\","                             \
    "\"firstTradeDate\":345479400,\"regularMarketTime\":1761768001,"                               \
    "\"hasPrePostMarketData\":true,\"gmtoffset\":-14400,\"timezone\":\"EDT\","                     \
    "\"exchangeTimezoneName\":\"America/New_York\""
#define META_TAIL                                                                                  \
    "\"fiftyTwoWeekHigh\":198.23,\"fiftyTwoWeekLow\":164.08,\"regularMarketDayHigh\":190.1,"       \
    "\"regularMarketDayLow\":187.5,\"regularMarketVolume\":43332154,"                              \
    "\"longName\":\"QFetch Test Corp.\",\"shortName\":\"QFetch Test\","                            \
    "\"chartPreviousClose\":187.44,\"priceHint\":2,"                                               \
    "\"currentTradingPeriod\":{\"pre\":{\"timezone\":\"EDT\",\"start\":1761724800,"                \
    "\"end\":1761744600,\"gmtoffset\":-14400},\"regular\":{\"timezone\":\"EDT\","                  \
    "\"start\":1761744600,\"end\":1761768000,\"gmtoffset\":-14400}},"                              \
    "\"dataGranularity\":\"1d\",\"range\":\"5d\","                                                 \
    "\"validRanges\":[\"1d\",\"5d\",\"1mo\",\"3mo\",\"6mo\",\"1y\",\"ytd\",\"max\"]"
#define BARS                                                                                       \
    "\"timestamp\":[1761312600,1761571800,1761658200],"                                            \
    "\"indicators\":{\"quote\":[{\"open\":[187.1,188.2,189.9],\"low\":[186.0,187.7,188.8],"        \
    "\"volume\":[41000000,39000000,43332154],\"close\":[187.9,189.3,189.84],"                      \
    "\"high\":[188.4,190.0,190.1]}],\"adjclose\":[{\"adjclose\":[187.9,189.3,189.84]}]}"
#define PRICE "\"regularMarketPrice\":189.84"
#define META(...) "\"meta\":{" __VA_ARGS__ "}"
#define CHART(result0) "{\"chart\":{\"result\":[{" result0 "}],\"error\":null}}"
#define STD_META META(META_HEAD "," PRICE "," META_TAIL)
#define NOT_FOUND_BODY                                                                             \
    "{\"chart\":{\"result\":null,\"error\":{\"code\":\"Not Found\","                               \
    "\"description\":\"No data found, symbol may be delisted\"}}}"

struct json_case {
    const char *name;
    const char *body;
    int rc;
    const char *price; /* expected qf_price_format() text when rc == 0 */
    const char *currency;
    const char *code;
    const char *desc;
};

/* Runs one body: guard copy, token array growing from 1, then checks every field of q. */
static void check_body(const struct json_case *c, const char *body, size_t len)
{
    const char *g = qf_test_guard_copy(body, len);
    struct qf_quote q;
    char text[32];
    int rc = qf_test_json_extract(g, len, 1, &q, NULL);

    if (rc != c->rc)
        fail_msg("%s: rc %d, want %d", c->name, rc, c->rc);
    if (rc == 0) {
        assert_true(qf_price_format(q.price, text, sizeof(text)) > 0);
        if (strcmp(text, c->price) != 0)
            fail_msg("%s: price %s, want %s", c->name, text, c->price);
    }
    if (c->currency && strcmp(q.currency, c->currency) != 0)
        fail_msg("%s: currency \"%s\", want \"%s\"", c->name, q.currency, c->currency);
    if (c->code && strcmp(q.err_code, c->code) != 0)
        fail_msg("%s: err_code \"%s\", want \"%s\"", c->name, q.err_code, c->code);
    if (c->desc && strcmp(q.err_desc, c->desc) != 0)
        fail_msg("%s: err_desc \"%s\", want \"%s\"", c->name, q.err_desc, c->desc);
    qf_test_guard_free(g);
}

static void run_cases(const struct json_case *cases, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        check_body(&cases[i], cases[i].body, strlen(cases[i].body));
}

#define NCASES(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Good bodies, key orders ----------------------------------------------------------- */

static void test_shapes_and_orders(void **state)
{
    static const struct json_case cases[] = {
        {"standard", CHART(STD_META "," BARS), 0, "189.84", "USD", "", ""},
        {"bars first", CHART(BARS "," STD_META), 0, "189.84", "USD", "", ""},
        {"price first", CHART(META(PRICE "," META_HEAD "," META_TAIL) "," BARS), 0, "189.84", "USD",
         "", ""},
        {"price last", CHART(META(META_HEAD "," META_TAIL "," PRICE) "," BARS), 0, "189.84", "USD",
         "", ""},
        {"price only", CHART(META(PRICE)), 0, "189.84", "", "", ""},
        {"error before result", "{\"chart\":{\"error\":null,\"result\":[{" STD_META "}]}}", 0,
         "189.84", "USD", "", ""},
        {"chart not first",
         "{\"spark\":{\"result\":[]},\"quoteResponse\":null,\"chart\":{\"result\":[{" STD_META
         "}],\"error\":null},\"z\":[1,2,{\"a\":[]}]}",
         0, "189.84", "USD", "", ""},
        {"pretty",
         "\n{\n  \"chart\" : {\n    \"result\" : [ {\n      \"meta\" : {\n        \"currency\" : "
         "\"EUR\" ,\n        \"regularMarketPrice\" :\t19.948\r\n      }\n    } ],\n    "
         "\"error\" : null\n  }\n}\n\n",
         0, "19.95", "EUR", "", ""},
        {"exponent", CHART(META("\"regularMarketPrice\":1.8984E+2")), 0, "189.84", "", "", ""},
        {"integer", CHART(META("\"regularMarketPrice\":190")), 0, "190.00", "", "", ""},
        {"price last in meta", CHART(META(META_HEAD ",\"regularMarketPrice\":3")), 0, "3.00", "USD",
         "", ""},
        {"negative zero", CHART(META("\"regularMarketPrice\":-0.0")), 0, "-0.00", "", "", ""},
        {"half-even tie", CHART(META("\"regularMarketPrice\":0.125")), 0, "0.12", "", "", ""},
        {"binary below tie", CHART(META("\"regularMarketPrice\":2.675")), 0, "2.67", "", "", ""},
        {"two results",
         "{\"chart\":{\"result\":[{" STD_META "},{" META("\"regularMarketPrice\":1") "}]}}", 0,
         "189.84", "USD", "", ""},
        {"price with error object",
         "{\"chart\":{\"result\":[{" STD_META "}],\"error\":{\"code\":\"Partial\","
         "\"description\":\"some bars missing\"}}}",
         0, "189.84", "USD", "Partial", "some bars missing"},
    };
    (void)state;
    run_cases(cases, NCASES(cases));
}

/* ---- Decoys: the key text elsewhere must never be picked ------------------------------- */

static void test_decoys(void **state)
{
    static const struct json_case cases[] = {
        {"nested object before meta",
         CHART("\"indicators\":{\"regularMarketPrice\":1.11,\"quote\":[{}]}," STD_META), 0,
         "189.84", "USD", "", ""},
        {"nested object inside meta, before the key",
         CHART(META("\"currentTradingPeriod\":{\"regularMarketPrice\":2.22}," META_HEAD "," PRICE)),
         0, "189.84", "USD", "", ""},
        {"nested meta inside meta",
         CHART(META("\"meta\":{\"regularMarketPrice\":2.23,\"currency\":\"XXX\"}," META_HEAD
                    "," PRICE)),
         0, "189.84", "USD", "", ""},
        {"earlier top-level result array",
         "{\"spark\":{\"result\":[{\"meta\":{\"regularMarketPrice\":3.33}}]},"
         "\"chart\":{\"result\":[{" STD_META "}]}}",
         0, "189.84", "USD", "", ""},
        {"string values",
         CHART(META("\"note\":\"regularMarketPrice\",\"x\":"
                    "\"\\\"regularMarketPrice\\\":4.44\"," PRICE)),
         0, "189.84", "", "", ""},
        {"longer and shorter keys",
         CHART(META("\"regularMarketPriceX\":5.55,\"regularMarketPric\":5.56,"
                    "\"RegularMarketPrice\":5.57,\"regularMarketPrice \":5.58," PRICE)),
         0, "189.84", "", "", ""},
        {"key inside arrays",
         CHART(
             "\"events\":[[\"regularMarketPrice\",6.66],{\"regularMarketPrice\":6.67}]," STD_META),
         0, "189.84", "USD", "", ""},
        {"duplicate key: first wins", CHART(META(PRICE ",\"regularMarketPrice\":7.77")), 0,
         "189.84", "", "", ""},
        {"duplicate meta: first wins", CHART(STD_META ",\"meta\":{\"regularMarketPrice\":7.78}"), 0,
         "189.84", "USD", "", ""},
        {"duplicate chart: first wins",
         "{\"chart\":{\"result\":null},\"chart\":{\"result\":[{" STD_META "}]}}", QF_ENOPRICE, NULL,
         "", "", ""},
        {"only the decoys: not in result[0]",
         "{\"chart\":{\"result\":[{\"indicators\":{\"meta\":{\"regularMarketPrice\":8.88}}},"
         "{" STD_META "}]},\"regularMarketPrice\":8.89,"
         "\"meta\":{\"regularMarketPrice\":8.90}}",
         QF_ENOPRICE, NULL, "", "", ""},
        {"price at chart level",
         "{\"chart\":{\"regularMarketPrice\":9.99,\"result\":[{" META(
             "\"currency\":\"USD\"") "}]}}",
         QF_ENOPRICE, NULL, "USD", "", ""},
        {"escaped key spelling does not match", CHART(META("\"regularMarket\\u0050rice\":1.5")),
         QF_ENOPRICE, NULL, "", "", ""},
    };
    (void)state;
    run_cases(cases, NCASES(cases));
}

/* ---- Valid JSON without a price -------------------------------------------------------- */

static void test_no_price(void **state)
{
    static const struct json_case cases[] = {
        {"null price", CHART(META(META_HEAD ",\"regularMarketPrice\":null")), QF_ENOPRICE, NULL,
         "USD", "", ""},
        {"missing price", CHART(META(META_HEAD "," META_TAIL) "," BARS), QF_ENOPRICE, NULL, "USD",
         "", ""},
        {"string price", CHART(META("\"regularMarketPrice\":\"189.84\"")), QF_ENOPRICE, NULL, "",
         "", ""},
        {"true price", CHART(META("\"regularMarketPrice\":true")), QF_ENOPRICE, NULL, "", "", ""},
        {"bare number", "189.84", QF_ENOPRICE, NULL, "", "", ""},
        {"bare literal", "true", QF_ENOPRICE, NULL, "", "", ""},
        {"bare string", "\"USD\"", QF_ENOPRICE, NULL, "", "", ""},
        {"false price", CHART(META("\"regularMarketPrice\":false")), QF_ENOPRICE, NULL, "", "", ""},
        {"object price", CHART(META("\"regularMarketPrice\":{\"raw\":189.84}")), QF_ENOPRICE, NULL,
         "", "", ""},
        {"array price", CHART(META("\"regularMarketPrice\":[189.84]")), QF_ENOPRICE, NULL, "", "",
         ""},
        {"meta not an object", CHART("\"meta\":[" PRICE "]"), QF_EJSON, NULL, "", "", ""},
        {"meta null", CHART("\"meta\":null"), QF_ENOPRICE, NULL, "", "", ""},
        {"result empty", "{\"chart\":{\"result\":[],\"error\":null}}", QF_ENOPRICE, NULL, "", "",
         ""},
        {"result object", "{\"chart\":{\"result\":{" STD_META "}}}", QF_ENOPRICE, NULL, "", "", ""},
        {"result[0] not an object", "{\"chart\":{\"result\":[[{" STD_META "}]]}}", QF_ENOPRICE,
         NULL, "", "", ""},
        {"404", NOT_FOUND_BODY, QF_ENOPRICE, NULL, "", "Not Found",
         "No data found, symbol may be delisted"},
        {"401 finance",
         "{\"finance\":{\"result\":null,\"error\":{\"code\":\"Unauthorized\","
         "\"description\":\"Invalid Crumb\"}}}",
         QF_ENOPRICE, NULL, "", "Unauthorized", "Invalid Crumb"},
        {"chart error wins over finance",
         "{\"finance\":{\"error\":{\"code\":\"F\",\"description\":\"f\"}},"
         "\"chart\":{\"result\":null,\"error\":{\"code\":\"C\",\"description\":\"c\"}}}",
         QF_ENOPRICE, NULL, "", "C", "c"},
        {"chart error null, finance error",
         "{\"chart\":{\"result\":null,\"error\":null},"
         "\"finance\":{\"error\":{\"code\":\"F\",\"description\":\"f\"}}}",
         QF_ENOPRICE, NULL, "", "F", "f"},
        {"error fields not strings",
         "{\"chart\":{\"result\":null,\"error\":{\"code\":404,\"description\":null}}}", QF_ENOPRICE,
         NULL, "", "", ""},
        {"error a string", "{\"chart\":{\"result\":null,\"error\":\"bad\"}}", QF_ENOPRICE, NULL, "",
         "", ""},
        {"empty object", "{}", QF_ENOPRICE, NULL, "", "", ""},
        {"root array", "[{\"chart\":{\"result\":[{" STD_META "}]}}]", QF_ENOPRICE, NULL, "", "",
         ""},
        {"root string", "\"chart\"", QF_ENOPRICE, NULL, "", "", ""},
        {"root literal", "null ", QF_ENOPRICE, NULL, "", "", ""},
        {"currency not a string", CHART(META("\"currency\":840," PRICE)), 0, "189.84", "", "", ""},
        {"price overflows", CHART(META("\"regularMarketPrice\":1e400")), QF_ERANGE, NULL, "", "",
         ""},
        {"price underflows", CHART(META("\"regularMarketPrice\":1e-400")), 0, "0.00", "", "", ""},
    };
    (void)state;
    run_cases(cases, NCASES(cases));
}

/* ---- Escapes --------------------------------------------------------------------------- */

static void test_escapes(void **state)
{
    static const struct json_case cases[] = {
        {"currency \\u", CHART(META("\"currency\":\"\\u0055S\\u0044\"," PRICE)), 0, "189.84", "USD",
         "", ""},
        {"currency utf-8", CHART(META("\"currency\":\"\\u20ac \\u00e9\"," PRICE)), 0, "189.84",
         "\xe2\x82\xac \xc3\xa9", "", ""},
        {"currency 15 bytes fits", CHART(META("\"currency\":\"ABCDEFGHIJKLMNO\"," PRICE)), 0,
         "189.84", "ABCDEFGHIJKLMNO", "", ""},
        {"currency 16 bytes dropped", CHART(META("\"currency\":\"ABCDEFGHIJKLMNOP\"," PRICE)), 0,
         "189.84", "", "", ""},
        {"currency escapes shrink to fit",
         CHART(META("\"currency\":\"\\u0041\\u0042\\u0043\\u0044\\u0045\\u0046\"," PRICE)), 0,
         "189.84", "ABCDEF", "", ""},
        {"description escapes",
         "{\"chart\":{\"result\":null,\"error\":{\"code\":\"E\\\"1\\\\\",\"description\":"
         "\"a\\/b\\tc\\nd\\re\\bf\\fg \\u00e9 \\ud83d\\ude00 \\ud800x \\udc00 \\u0001\\u001f"
         "\\u007f \\u0000.\"}}}",
         QF_ENOPRICE, NULL, "", "E\"1\\",
         "a/b c d e f g \xc3\xa9 \xf0\x9f\x98\x80 \xef\xbf\xbdx \xef\xbf\xbd      ."},
        {"raw utf-8 kept, raw control replaced",
         "{\"chart\":{\"error\":{\"code\":\"X\",\"description\":\"caf\xc3\xa9 \xe2\x82\xac\"}}}",
         QF_ENOPRICE, NULL, "", "X", "caf\xc3\xa9 \xe2\x82\xac"},
    };
    (void)state;
    run_cases(cases, NCASES(cases));
}

/* Server text comes out clean (parser/text.c): malformed UTF-8, C1 controls and bidi
 * controls, raw or escaped, become U+FFFD; C0 controls and DEL a space. */
#define FFFD "\xef\xbf\xbd"
static void test_hostile_strings(void **state)
{
    static const struct json_case cases[] = {
        {"currency raw C1 CSI", CHART(META("\"currency\":\"\xc2\x9b" "2J\"," PRICE)), 0,
         "189.84", FFFD "2J", "", ""},
        {"currency escaped C1 CSI", CHART(META("\"currency\":\"\\u009b2J\"," PRICE)), 0,
         "189.84", FFFD "2J", "", ""},
        {"currency raw bidi override",
         CHART(META("\"currency\":\"DSU\xe2\x80\xae\"," PRICE)), 0, "189.84", "DSU" FFFD, "",
         ""},
        {"currency escaped isolates",
         CHART(META("\"currency\":\"\\u2066U\\u2069\"," PRICE)), 0, "189.84",
         FFFD "U" FFFD, "", ""},
        {"currency invalid utf-8", CHART(META("\"currency\":\"U\xffS\xc3" "D\"," PRICE)), 0,
         "189.84", "U" FFFD "S" FFFD "D", "", ""},
        {"currency overlong and surrogate bytes",
         CHART(META("\"currency\":\"\xc0\xaf\xed\xa0\x80\"," PRICE)), 0, "189.84",
         FFFD FFFD FFFD FFFD FFFD, "", ""},
        {"currency cut utf-8 sequence", CHART(META("\"currency\":\"\xe2\x82" "A\"," PRICE)), 0,
         "189.84", FFFD "A", "", ""},
        {"currency growing past 15 bytes is dropped",
         CHART(META("\"currency\":\"\xff\xff\xff\xff\xff\xff\"," PRICE)), 0, "189.84", "",
         "", ""},
        {"description hostile",
         "{\"chart\":{\"error\":{\"code\":\"E\\u202e\\u0085\",\"description\":"
         "\"\\u001b[2J\xc2\x9b" "2J \xe2\x80\xae\xe2\x81\xa6" "evil\xff\xc3 \\u2066x\\u2069 =cmd"
         "\xe2\x80\xa8\"}}}",
         QF_ENOPRICE, NULL, "", "E" FFFD FFFD,
         " [2J" FFFD "2J " FFFD FFFD "evil" FFFD FFFD " " FFFD "x" FFFD " =cmd" FFFD},
    };
    (void)state;
    run_cases(cases, NCASES(cases));
}

/* Long descriptions are cut to 159 bytes, never inside a UTF-8 sequence. */
static void test_truncate_utf8(void **state)
{
    char body[1024], want[160];
    struct json_case c = {"long description", body, QF_ENOPRICE, NULL, "", "X", want};
    size_t n, i;
    (void)state;

    for (size_t shift = 0; shift < 3; shift++) {
        n = (size_t)snprintf(body, sizeof(body),
                             "{\"chart\":{\"error\":{\"code\":\"X\","
                             "\"description\":\"%.*s",
                             (int)shift, "ab");
        for (i = 0; i < 100; i++) {
            const char *ch = i % 2 ? "\\u00e9" : "\xe2\x82\xac";
            memcpy(body + n, ch, strlen(ch));
            n += strlen(ch);
        }
        memcpy(body + n, "\"}}}", 5);
        /* Expected: the prefix, then whole characters while they fit in 159 bytes. */
        n = shift;
        memcpy(want, "ab", shift);
        for (i = 0;; i++) {
            const char *ch = i % 2 ? "\xc3\xa9" : "\xe2\x82\xac";
            if (n + strlen(ch) > 159)
                break;
            memcpy(want + n, ch, strlen(ch));
            n += strlen(ch);
        }
        want[n] = '\0';
        check_body(&c, body, strlen(body));
    }
}

/* ---- Invalid JSON ---------------------------------------------------------------------- */

static void test_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "\n\t",
        "{",
        "}",
        "[",
        "]",
        "{]",
        "[}",
        "{\"chart\":}",
        "{\"chart\"}",
        "{\"chart\" 1}",
        "{\"a\":1,}",
        "{,\"a\":1}",
        "{\"a\":1,,\"b\":2}",
        "[1 2]",
        "[1,,2]",
        "[,1]",
        "[1,]",
        "[\"a\" \"b\"]",
        "[{} {}]",
        "{\"a\",\"b\":1}",
        "{\"a\":1,\"b\"}",
        "{\"a\":1:2}",
        "[\"a\":1]",
        "{1:2}",
        "{\"a\":{}:1}",
        "{\"a\":1}{}",
        "{\"a\":1} x",
        "{\"a\":1}]",
        "{\"a\":tru}",
        "{\"a\":nulll}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":-}",
        "{\"a\":+1}",
        "{\"a\":1e}",
        "{\"a\":0x10}",
        "{\"a\":NaN}",
        "{\"a\":Infinity}",
        "{\"a\":'x'}",
        "{'a':1}",
        "{\"a\":\"x\x01y\"}",
        "{\"a\":\"x\ty\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12G4\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"abc}",
        "\xef\xbb\xbf{}",
        "{\"a\":1} \x01",
        "{\"a\":\"\xff\xfe\"",
        "Edge: Too Many Requests",
        "<html><body>Too Many Requests</body></html>",
        CHART(META("\"regularMarketPrice\":189.84.1")),
        CHART(META("\"regularMarketPrice\":-")),
        CHART(META("\"regularMarketPrice\":1,,\"currency\":\"USD\"")),
        CHART(META("\"regularMarketPrice\" 1")),
        CHART(META("\"regularMarketPrice\":1 2")),
        CHART(META(PRICE) ",\"x\":[1 2]"),
    };
    size_t i;
    (void)state;
    for (i = 0; i < NCASES(bad); i++) {
        struct json_case c = {bad[i], bad[i], QF_EJSON, NULL, "", "", ""};
        check_body(&c, bad[i], strlen(bad[i]));
    }
    /* Embedded NUL bytes: jsmn stops at NUL, the length check must catch it. */
    {
        static const char nul1[] = "{\"a\":1}\0 ", nul2[] = "{\"a\":\"x\0y\"}";
        struct json_case c = {"embedded NUL", NULL, QF_EJSON, NULL, "", "", ""};
        check_body(&c, nul1, sizeof(nul1) - 1);
        check_body(&c, nul2, sizeof(nul2) - 1);
    }
}

/* Every prefix of a body: QF_EJSON, never a crash, never a price (the full body, plus any
 * trailing blanks, is the only success). */
static void test_every_prefix(void **state)
{
    static const char *const bodies[] = {
        CHART(STD_META "," BARS) " \n",
        NOT_FOUND_BODY "\n",
        ("{\"chart\":{\"result\":[{\"meta\":{\"currency\":\"EUR\",\"regularMarketPrice\":19.948,"
         "\"s\":\"\\u00e9\\\"\"}}],\"error\":null}}"),
    };
    size_t b, cut, full;
    (void)state;
    for (b = 0; b < NCASES(bodies); b++) {
        full = strlen(bodies[b]);
        while (full > 0 && (bodies[b][full - 1] == ' ' || bodies[b][full - 1] == '\n'))
            full--;
        for (cut = 0; cut <= strlen(bodies[b]); cut++) {
            struct json_case c = {"prefix", bodies[b], QF_EJSON, NULL, NULL, NULL, NULL};
            if (cut >= full) {
                c.rc = b == 1 ? QF_ENOPRICE : 0;
                c.price = b == 0 ? "189.84" : "19.95";
            }
            check_body(&c, bodies[b], cut);
        }
    }
}

/* Single-byte mutations at every offset: no crash and no over-read (guard page, ASan), and
 * any success still carries a finite price. */
static void test_mutations(void **state)
{
    static const char body[] = CHART(META("\"currency\":\"USD\",\"regularMarketPrice\":189.84,"
                                          "\"v\":[1,-2.5e3,true,null,{\"k\":\"\\u00e9\"}]"));
    static const char repl[] = "{}[]\",:0-9eE.+ntfu\\ \x01\x00\xff";
    char buf[sizeof(body)];
    size_t i, k;
    (void)state;
    for (i = 0; i < sizeof(body) - 1; i++) {
        for (k = 0; k < sizeof(repl) - 1; k++) {
            const char *g;
            struct qf_quote q;
            int rc;
            memcpy(buf, body, sizeof(body));
            buf[i] = repl[k];
            g = qf_test_guard_copy(buf, sizeof(body) - 1);
            rc = qf_test_json_extract(g, sizeof(body) - 1, 4, &q, NULL);
            assert_true(rc == 0 || rc == QF_EJSON || rc == QF_ENOPRICE || rc == QF_ERANGE);
            if (rc == 0)
                assert_true(q.price == q.price && q.price < 1e300 && q.price > -1e300);
            qf_test_guard_free(g);
        }
    }
}

/* ---- Size -------------------------------------------------------------------------------- */

static char *append(char *buf, size_t *n, size_t *cap, const char *s)
{
    size_t l = strlen(s);
    if (*n + l + 1 > *cap) {
        *cap = (*n + l + 1) * 2;
        buf = realloc(buf, *cap);
        assert_non_null(buf);
    }
    memcpy(buf + *n, s, l + 1);
    *n += l;
    return buf;
}

/* 120k numbers in bar arrays before meta, plus nesting close to the limit: the scan validates
 * them all, but only the price and currency values are tokenized, so one token is enough. */
static void test_large_body(void **state)
{
    char *b = NULL, num[32];
    size_t n = 0, cap = 0, i;
    unsigned ntoks = 0;
    struct qf_quote q;
    const char *g;
    int rc;
    (void)state;

    b = append(b, &n, &cap, "{\"deep\":");
    for (i = 0; i < QF_JSON_DEPTH_MAX - 1; i++)
        b = append(b, &n, &cap, "[");
    for (i = 0; i < QF_JSON_DEPTH_MAX - 1; i++)
        b = append(b, &n, &cap, "]");
    b = append(b, &n, &cap, ",\"chart\":{\"result\":[{\"indicators\":{\"quote\":[{\"close\":[");
    for (i = 0; i < 120000; i++) {
        snprintf(num, sizeof(num), "%s%zu.%02zu", i ? "," : "", 100 + i % 97, i % 100);
        b = append(b, &n, &cap, num);
    }
    b = append(b, &n, &cap, "]}]}," STD_META "}],\"error\":null}}");
    g = qf_test_guard_copy(b, n);
    rc = qf_test_json_extract(g, n, 1, &q, &ntoks);
    assert_int_equal(rc, 0);
    assert_int_equal(ntoks, 1);
    assert_true(q.price == 189.84);
    assert_string_equal(q.currency, "USD");
    qf_test_guard_free(g);
    free(b);
}

/* The scan reads digit runs and plain string bytes eight at a time: every length of run, and
 * every kind of stop byte at every offset, ends exactly where the byte-wise grammar says, and
 * nothing is read past the body (each body ends at a guard page). */
static void test_wide_scan_offsets(void **state)
{
    static const char *const stops[] = {"\"",   "\\n", "\\u00e9",   "\\\"", "\x01",
                                        "\x1f", "\x7f", "\xc3\xa9", "\xff"};
    static const int stop_ok[] = {1, 1, 1, 1, 0, 0, 1, 1, 1}; /* '"' ends the string early */
    char body[512], run[64];
    struct qf_quote q;
    (void)state;

    for (int n = 1; n < 40; n++) {
        /* a number of n digits (then a fraction of n digits) last in its array */
        memset(run, '7', (size_t)n);
        run[n] = '\0';
        int len = snprintf(body, sizeof(body),
                           "{\"chart\":{\"result\":[{\"meta\":{\"regularMarketPrice\":%s.%s},"
                           "\"close\":[%s]}]}}",
                           n < 12 ? run : "1", run, run);
        const char *g = qf_test_guard_copy(body, (size_t)len);
        assert_int_equal(qf_test_json_extract(g, (size_t)len, 1, &q, NULL), 0);
        qf_test_guard_free(g);
        /* a digit run cut by a byte that is no number at every length: invalid */
        len = snprintf(body, sizeof(body), "[%sx]", run);
        g = qf_test_guard_copy(body, (size_t)len);
        assert_int_equal(qf_test_json_extract(g, (size_t)len, 1, &q, NULL), QF_EJSON);
        qf_test_guard_free(g);
        /* the body ends inside the run: truncated */
        len = snprintf(body, sizeof(body), "[%s", run);
        g = qf_test_guard_copy(body, (size_t)len);
        assert_int_equal(qf_test_json_extract(g, (size_t)len, 1, &q, NULL), QF_EJSON);
        qf_test_guard_free(g);
        for (size_t k = 0; k < sizeof(stops) / sizeof(stops[0]); k++) {
            /* a currency string of n plain bytes, then the stop, then 9 more bytes */
            memset(run, 'a', (size_t)n);
            run[n] = '\0';
            len = snprintf(body, sizeof(body),
                           "{\"chart\":{\"result\":[{\"meta\":{\"currency\":\"%s%sbbbbbbbbb\","
                           "\"regularMarketPrice\":1}}]}}",
                           run, stops[k]);
            g = qf_test_guard_copy(body, (size_t)len);
            int want = !stop_ok[k] ? QF_EJSON : k == 0 ? QF_EJSON : 0;
            int rc = qf_test_json_extract(g, (size_t)len, 1, &q, NULL);
            if (rc != want)
                fail_msg("run %d, stop %zu: rc %d, want %d", n, k, rc, want);
            qf_test_guard_free(g);
            /* the body ends inside the string, right after the run */
            len = snprintf(body, sizeof(body), "[\"%s", run);
            g = qf_test_guard_copy(body, (size_t)len);
            assert_int_equal(qf_test_json_extract(g, (size_t)len, 1, &q, NULL), QF_EJSON);
            qf_test_guard_free(g);
        }
    }
}

/* Nesting is capped (jsmn's cost is tokens x depth); brackets inside strings do not count. */
static void test_depth_limit(void **state)
{
    static const char inner[] = "\"[[[[{{{{\\\"\"";
    char body[4 * QF_JSON_DEPTH_MAX + 64];
    struct qf_quote q;
    size_t n, i;
    (void)state;

    for (int depth = QF_JSON_DEPTH_MAX - 1; depth <= QF_JSON_DEPTH_MAX + 1; depth++) {
        n = 0;
        for (i = 0; i < (size_t)depth; i++)
            body[n++] = '[';
        memcpy(body + n, inner, strlen(inner));
        n += strlen(inner);
        for (i = 0; i < (size_t)depth; i++)
            body[n++] = ']';
        assert_int_equal(qf_test_json_extract(body, n, 1, &q, NULL),
                         depth <= QF_JSON_DEPTH_MAX ? QF_ENOPRICE : QF_EJSON);
    }
}

/* QF_ENOSPC is returned for too few tokens, and the same array then works once big enough:
 * a price or currency needs one token, an error object one per key and value plus itself. */
static void test_enospc(void **state)
{
    static const char body[] = CHART(STD_META "," BARS);
    static const char err[] = "{\"chart\":{\"result\":null,\"error\":{\"code\":\"Not Found\","
                              "\"description\":\"No data found\"}}}";
    jsmntok_t toks[8];
    struct qf_quote q;
    unsigned n;
    (void)state;
    assert_int_equal(qf_json_extract(body, sizeof(body) - 1, toks, 0, &q), QF_ENOSPC);
    assert_int_equal(qf_json_extract(body, sizeof(body) - 1, toks, 1, &q), 0);
    assert_true(q.price == 189.84);
    assert_string_equal(q.currency, "USD");
    for (n = 0; n < 5; n++)
        assert_int_equal(qf_json_extract(err, sizeof(err) - 1, toks, n, &q), QF_ENOSPC);
    assert_int_equal(qf_json_extract(err, sizeof(err) - 1, toks, 5, &q), QF_ENOPRICE);
    assert_string_equal(q.err_code, "Not Found");
    assert_string_equal(q.err_desc, "No data found");
}

/* ---- Through qf_http ------------------------------------------------------------------- */

/* Wraps body in Content-Length and in chunked framing (odd sizes, extensions, trailers), feeds
 * each one byte at a time through qf_http, then extracts from the reassembled body. */
static void check_through_http(const struct json_case *c, const char *body, size_t len, int status)
{
    static const size_t odd[] = {1, 7, 0x1f, 0x3ff};
    const struct qf_test_chunking ck = {odd, 4, ";x=1", "X-Trailer: t\r\n"};
    enum qf_test_framing fr;
    char head[128];

    snprintf(head, sizeof(head),
             "HTTP/1.1 %d X\r\nContent-Type: application/json;charset=utf-8\r\n"
             "Cache-Control: public, max-age=10, stale-while-revalidate=20\r\n",
             status);
    for (fr = QF_TEST_CL; fr <= QF_TEST_CHUNKED; fr++) {
        struct qf_test_http_run r;
        char *resp;
        size_t n = qf_test_wrap(head, body, len, fr, &ck, &resp);
        qf_test_http_drive(resp, n, 0, 1, 0, QF_HTTP_BODY_MAX, &r);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.status, status);
        assert_int_equal(r.consumed, n);
        assert_int_equal(r.body_len, len);
        assert_memory_equal(r.body, body, len);
        check_body(c, r.body, r.body_len);
        qf_test_http_run_free(&r);
        free(resp);
    }
}

static void test_through_http(void **state)
{
    static const struct json_case c = {"http", CHART(STD_META "," BARS), 0, "189.84", "USD", "",
                                       ""};
    static const struct json_case nf = {"http 404",
                                        NOT_FOUND_BODY,
                                        QF_ENOPRICE,
                                        NULL,
                                        "",
                                        "Not Found",
                                        "No data found, symbol may be delisted"};
    (void)state;
    check_through_http(&c, c.body, strlen(c.body), 200);
    check_through_http(&nf, nf.body, strlen(nf.body), 404);
}

/* ---- Real captured bodies (shared fixtures) ----------------------------------------------- */

struct fixture {
    const char *file;
    int recording;      /* body is response.bodyJson inside a fetch-mock-cache recording */
    size_t compact_len; /* recordings: length of the compact body, 0 when not checked */
    int status;
    struct json_case want;
};

static const struct fixture fixtures[] = {
    {"AAPL-1d-6mo.json", 0, 0, 200, {"AAPL", NULL, 0, "269.70", "USD", "", ""}},
    {"VFINX-3mo-max.json", 0, 0, 200, {"VFINX", NULL, 0, "636.38", "USD", "", ""}},
    {"GS2C.DE-1d-5d.json", 0, 0, 200, {"GS2C.DE", NULL, 0, "19.95", "EUR", "", ""}},
    {"EURUSD=X-1d.recording.json", 1, 1363, 200, {"EURUSD=X", NULL, 0, "1.04", "USD", "", ""}},
    {"TSLA-1d-max.recording.json", 1, 370220, 200, {"TSLA", NULL, 0, "337.80", "USD", "", ""}},
    {"^TNX-5m-1d.json", 0, 0, 200, {"^TNX", NULL, 0, "4.28", "USD", "", ""}},
    {"errors/200-AAPL-1h-no-bars.json", 0, 0, 200, {"no bars", NULL, 0, "132.54", "USD", "", ""}},
    {"errors/404-not-found.json",
     0,
     0,
     404,
     {"404", NULL, QF_ENOPRICE, NULL, "", "Not Found", "No data found, symbol may be delisted"}},
    {"errors/401-invalid-crumb.json",
     0,
     0,
     401,
     {"401 crumb", NULL, QF_ENOPRICE, NULL, "", "Unauthorized", "Invalid Crumb"}},
    {"errors/401-unable-to-access.json",
     0,
     0,
     401,
     {"401 access", NULL, QF_ENOPRICE, NULL, "", "Unauthorized",
      "User is unable to access this feature - https://bit.ly/yahoo-finance-api-feedback"}},
    {"errors/429-edge-too-many-requests.txt",
     0,
     0,
     429,
     {"429 text", NULL, QF_EJSON, NULL, "", "", ""}},
    {"errors/429-too-many-requests-legacy.txt",
     0,
     0,
     429,
     {"429 legacy", NULL, QF_EJSON, NULL, "", "", ""}},
};

struct loaded {
    const struct fixture *fx;
    char *data;
    size_t len;
};

static int fixture_setup(void **state)
{
    const struct fixture *fx = *state;
    struct loaded *l = calloc(1, sizeof(*l));

    if (l == NULL)
        return -1;
    l->fx = fx;
    if (qf_test_fixtures_dir() != NULL && qf_test_read_fixture(fx->file, &l->data, &l->len) != 0)
        return -1; /* the dir exists but a listed file does not: fail loudly */
    *state = l;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct loaded *l = *state;
    free(l->data);
    free(l);
    return 0;
}

/* Test-side walk of a recording to find response.bodyJson: tokens carry child counts only,
 * so skipping a subtree counts pending children. */
static int tok_skip(const jsmntok_t *t, int n, int i)
{
    int pending = 1;
    for (; pending > 0 && i < n; i++)
        pending += t[i].size - 1;
    return i;
}

static int tok_get(const char *js, const jsmntok_t *t, int n, int obj, const char *key)
{
    int i = obj + 1, k;
    if (obj < 0 || t[obj].type != JSMN_OBJECT)
        return -1;
    for (k = 0; k < t[obj].size; k++) {
        if ((size_t)(t[i].end - t[i].start) == strlen(key) &&
            memcmp(js + t[i].start, key, strlen(key)) == 0)
            return i + 1;
        i = tok_skip(t, n, i);
    }
    return -1;
}

static void recording_body(const char *js, size_t len, size_t *at, size_t *blen)
{
    unsigned ntoks = 1u << 18;
    jsmntok_t *t = malloc(ntoks * sizeof(*t));
    jsmn_parser p;
    int n, b;

    assert_non_null(t);
    jsmn_init(&p);
    n = jsmn_parse(&p, js, len, t, ntoks);
    assert_true(n > 0);
    b = tok_get(js, t, n, tok_get(js, t, n, 0, "response"), "bodyJson");
    assert_true(b > 0 && t[b].type == JSMN_OBJECT);
    *at = (size_t)t[b].start;
    *blen = (size_t)(t[b].end - t[b].start);
    free(t);
}

static void test_fixture(void **state)
{
    const struct loaded *l = *state;
    const struct fixture *fx = l->fx;
    size_t at = 0, len = l->len;

    if (l->data == NULL)
        skip(); /* no shared fixtures on this machine */
    if (fx->recording) {
        char *compact = malloc(len);
        size_t n;
        recording_body(l->data, l->len, &at, &len);
        check_body(&fx->want, l->data + at, len); /* pretty-printed, as stored */
        n = qf_test_json_compact(l->data + at, len, compact);
        if (fx->compact_len)
            assert_int_equal(n, fx->compact_len); /* == the recorded wire length */
        check_body(&fx->want, compact, n);
        check_through_http(&fx->want, compact, n, fx->status);
        free(compact);
        return;
    }
    check_body(&fx->want, l->data, len);
    check_through_http(&fx->want, l->data, len, fx->status);
}

/* One cmocka entry per fixture, named after its file. */
#define FIXTURE(i)                                                                                 \
    {                                                                                              \
        fixtures[i].file, test_fixture, fixture_setup, fixture_teardown, (void *)&fixtures[i]      \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes_and_orders),
        cmocka_unit_test(test_decoys),
        cmocka_unit_test(test_no_price),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_hostile_strings),
        cmocka_unit_test(test_truncate_utf8),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_large_body),
        cmocka_unit_test(test_wide_scan_offsets),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_enospc),
        cmocka_unit_test(test_through_http),
        FIXTURE(0),
        FIXTURE(1),
        FIXTURE(2),
        FIXTURE(3),
        FIXTURE(4),
        FIXTURE(5),
        FIXTURE(6),
        FIXTURE(7),
        FIXTURE(8),
        FIXTURE(9),
        FIXTURE(10),
        FIXTURE(11),
    };
    _Static_assert(NCASES(fixtures) == 12, "one FIXTURE() entry per fixture");
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
