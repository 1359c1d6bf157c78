/* Clean text (parser/text.c): the UTF-8 decoder's maximal-subpart rule, the set of code
 * points clean text never holds, and qf_text_clean's replacements and truncation. The JSON
 * decoder and the command's output both rest on these. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "parser/text.h"
#include "qfetch.h"
#include "testutil.h"

#define FFFD "\xef\xbf\xbd"

struct next_case {
    const char *in;
    size_t len;
    uint32_t cp;
    size_t used;
};

/* Decodes in[0..len) with the input copied to end at a guard page, so a read past len
 * crashes. */
static void check_next(const struct next_case *c)
{
    const char *g = qf_test_guard_copy(c->in, c->len);
    uint32_t cp = 0;
    size_t used = qf_text_next(g, c->len, &cp);
    if (cp != c->cp || used != c->used)
        fail_msg("next(%zu bytes from %02x): U+%04X/%zu, want U+%04X/%zu", c->len,
                 (unsigned char)c->in[0], (unsigned)cp, used, (unsigned)c->cp, c->used);
    qf_test_guard_free(g);
}

static void test_next(void **state)
{
    static const struct next_case cases[] = {
        {"A", 1, 'A', 1},
        {"\x7f", 1, 0x7f, 1},
        {"\xc2\x80", 2, 0x80, 2},
        {"\xc2\x9b", 2, 0x9b, 2}, /* C1 CSI decodes; cleaning replaces it */
        {"\xdf\xbf", 2, 0x7ff, 2},
        {"\xe0\xa0\x80", 3, 0x800, 3},
        {"\xe2\x80\xae", 3, 0x202e, 3},
        {"\xef\xbf\xbd", 3, 0xfffd, 3},
        {"\xf0\x90\x80\x80", 4, 0x10000, 4},
        {"\xf4\x8f\xbf\xbf", 4, 0x10ffff, 4},
        /* malformed: U+FFFD over the longest well-formed prefix, at least one byte */
        {"\x80", 1, 0xfffd, 1},           /* stray continuation */
        {"\xbf\x80", 2, 0xfffd, 1},
        {"\xc0\xaf", 2, 0xfffd, 1},       /* overlong '/' */
        {"\xc1\xbf", 2, 0xfffd, 1},
        {"\xe0\x80\xaf", 3, 0xfffd, 1},   /* overlong: E0 wants A0..BF next */
        {"\xed\xa0\x80", 3, 0xfffd, 1},   /* surrogate U+D800 */
        {"\xf0\x80\x80\xaf", 4, 0xfffd, 1},
        {"\xf4\x90\x80\x80", 4, 0xfffd, 1}, /* past U+10FFFF */
        {"\xf5\x80\x80\x80", 4, 0xfffd, 1},
        {"\xff", 1, 0xfffd, 1},
        {"\xc3", 1, 0xfffd, 1},           /* cut short by the end */
        {"\xc3" "A", 2, 0xfffd, 1},
        {"\xe2\x82", 2, 0xfffd, 2},       /* a maximal subpart of two bytes */
        {"\xe2\x82" "A", 3, 0xfffd, 2},
        {"\xf0\x9f\x98", 3, 0xfffd, 3},
        {"\xf0\x9f\x98" "A", 4, 0xfffd, 3},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_next(&cases[i]);
}

static void test_unsafe_set(void **state)
{
    static const uint32_t unsafe[] = {0,      0x1b,   0x1f,   0x7f,   0x80,   0x85,   0x9b,
                                      0x9f,   0x61c,  0x200e, 0x200f, 0x2028, 0x2029, 0x202a,
                                      0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068,
                                      0x2069};
    static const uint32_t safe[] = {' ',    '~',    0xa0,   0xe9,   0x61b,  0x61d,  0x200d,
                                    0x2010, 0x2027, 0x202f, 0x2065, 0x206a, 0x20ac, 0xfffd,
                                    0x1f600, 0x10ffff};
    (void)state;
    for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++)
        if (!qf_text_unsafe(unsafe[i]))
            fail_msg("U+%04X should be unsafe", (unsigned)unsafe[i]);
    for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
        if (qf_text_unsafe(safe[i]))
            fail_msg("U+%04X should be safe", (unsigned)safe[i]);
    assert_int_equal(qf_text_safe_cp('\n'), ' ');
    assert_int_equal(qf_text_safe_cp(0x7f), ' ');
    assert_int_equal(qf_text_safe_cp(0x9b), 0xfffd);
    assert_int_equal(qf_text_safe_cp(0x202e), 0xfffd);
    assert_int_equal(qf_text_safe_cp(0xe9), 0xe9);
}

struct clean_case {
    const char *in;
    const char *want;
};

static void test_clean(void **state)
{
    static const struct clean_case cases[] = {
        {"USD", "USD"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"a\tb\nc\rd\x1b[2J\x7f", "a b c d [2J "},
        {"\xc2\x9b" "2J", FFFD "2J"},                          /* C1 CSI: erases a screen */
        {"\xc2\x85line", FFFD "line"},                         /* C1 NEL */
        {"abc\xe2\x80\xae" "fdp.exe", "abc" FFFD "fdp.exe"},   /* RIGHT-TO-LEFT OVERRIDE */
        {"\xe2\x81\xa6x\xe2\x81\xa9", FFFD "x" FFFD},         /* isolates */
        {"\xd8\x9c\xe2\x80\x8e\xe2\x80\x8f", FFFD FFFD FFFD}, /* ALM, LRM, RLM */
        {"a\xe2\x80\xa8" "b", "a" FFFD "b"},                   /* LINE SEPARATOR */
        {"U\xffS\xc3" "D", "U" FFFD "S" FFFD "D"},
        {"\xe2\x82" "A", FFFD "A"},
        {"\xed\xa0\x80", FFFD FFFD FFFD},
        {"\xc0\xaf", FFFD FFFD},
        {"\xef\xbf\xbd", FFFD},
    };
    char out[64];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = qf_text_clean(cases[i].in, strlen(cases[i].in), out, sizeof(out));
        if (n != strlen(cases[i].want) || strcmp(out, cases[i].want) != 0)
            fail_msg("case %zu: got \"%s\" (%zu bytes), want \"%s\"", i, out, n, cases[i].want);
    }
    /* An embedded NUL is a C0 control too. */
    assert_int_equal(qf_text_clean("a\0b", 3, out, sizeof(out)), 3);
    assert_string_equal(out, "a b");
}

/* Truncation keeps whole characters: every cap from 1 up gives a prefix of the full result
 * that ends on a character boundary, and a cap of 3 * len + 1 never truncates. */
static void test_clean_truncates(void **state)
{
    static const char in[] = "x\xff\xc3\xa9y\xe2\x80\xae\xf0\x9f\x98\x80z";
    char full[64], out[64];
    size_t len = sizeof(in) - 1, n = qf_text_clean(in, len, full, sizeof(full));
    (void)state;
    assert_true(n + 1 <= 3 * len + 1);
    assert_int_equal(qf_text_clean(in, len, out, 3 * len + 1), n);
    for (size_t cap = 1; cap <= n + 1; cap++) {
        size_t m = qf_text_clean(in, len, out, cap);
        assert_true(m < cap);
        assert_int_equal(out[m], '\0');
        assert_memory_equal(out, full, m);
        if (m == n)
            continue;
        /* the next byte of the full text starts a character: nothing was cut in two */
        assert_true(((unsigned char)full[m] & 0xc0) != 0x80);
        /* and that character did not fit */
        uint32_t cp;
        assert_true(m + qf_text_next(full + m, n - m, &cp) > cap - 1);
    }
    out[0] = 'q';
    assert_int_equal(qf_text_clean(in, len, out, 0), 0);
    assert_int_equal(out[0], 'q');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_unsafe_set),
        cmocka_unit_test(test_clean),
        cmocka_unit_test(test_clean_truncates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
