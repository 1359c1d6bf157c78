/* Price parsing and cent formatting. The table below was generated with Python 3.11:
 *   str(Decimal(float(lit)).quantize(Decimal("0.01")))   (ROUND_HALF_EVEN, 28 digits)
 * and pasted here as data; qf_price_* must reproduce it byte for byte. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "parser/price.h"
#include "qfetch.h"
#include "testutil.h"

struct price_case {
    const char *lit;
    const char *text;
};

static const struct price_case cases[] = {
    {"0", "0.00"},
    {"-0", "-0.00"},
    {"0.0", "0.00"},
    {"-0.0", "-0.00"},
    {"1", "1.00"},
    {"190", "190.00"},
    {"1.8984e2", "189.84"},
    {"189.84", "189.84"},
    {"269.7", "269.70"},
    {"636.38", "636.38"},
    {"19.948", "19.95"},
    {"1.0436", "1.04"},
    {"337.8", "337.80"},
    {"4.275", "4.28"},
    {"132.54", "132.54"},
    {"0.125", "0.12"},
    {"0.375", "0.38"},
    {"0.625", "0.62"},
    {"0.875", "0.88"},
    {"2.5e-1", "0.25"},
    {"-0.125", "-0.12"},
    {"-0.375", "-0.38"},
    {"1.125", "1.12"},
    {"1.375", "1.38"},
    {"100.125", "100.12"},
    {"12345.625", "12345.62"},
    {"0.5", "0.50"},
    {"0.005", "0.01"},
    {"0.015", "0.01"},
    {"0.025", "0.03"},
    {"0.035", "0.04"},
    {"0.045", "0.04"},
    {"2.675", "2.67"},
    {"1.005", "1.00"},
    {"1.015", "1.01"},
    {"1.025", "1.02"},
    {"1.115", "1.11"},
    {"1.125", "1.12"},
    {"8.345", "8.35"},
    {"0.285", "0.28"},
    {"1.455", "1.46"},
    {"2.345", "2.35"},
    {"4.005", "4.00"},
    {"9.995", "9.99"},
    {"99.995", "100.00"},
    {"999.995", "1000.00"},
    {"-2.675", "-2.67"},
    {"-1.005", "-1.00"},
    {"5E-3", "0.01"},
    {"5e-3", "0.01"},
    {"1e-2", "0.01"},
    {"1E+2", "100.00"},
    {"1e25", "10000000000000000905969664.00"},
    {"9.99999999999999e25", "99999999999999901685514240.00"},
    {"1e21", "1000000000000000000000.00"},
    {"1.5e10", "15000000000.00"},
    {"123456789012345678901234", "123456789012345685803008.00"},
    {"-1e25", "-10000000000000000905969664.00"},
    {"-0.001", "-0.00"},
    {"-0.004999", "-0.00"},
    {"-0.005", "-0.01"},
    {"-0.0050000000000001", "-0.01"},
    {"-0.006", "-0.01"},
    {"0.004999999999999999", "0.00"},
    {"1e-300", "0.00"},
    {"5e-324", "0.00"},
    {"2.2250738585072014e-308", "0.00"},
    {"0.30000000000000004", "0.30"},
    {"0.1", "0.10"},
    {"0.7", "0.70"},
    {"1.7976931348623157e-300", "0.00"},
    {"189.8400000000000034106051316484808921813964843750", "189.84"},
    {"12345678901234567.89", "12345678901234568.00"},
    {"0.12345678901234567890123", "0.12"},
    {"3.14159265358979323846264338327950288", "3.14"},
    {"2.6749999999999998", "2.67"},
    {"2.67500000000000004", "2.67"},
    {"1e0", "1.00"},
    {"0e0", "0.00"},
    {"0E-5", "0.00"},
    {"-0e+3", "-0.00"},
    {"100e-2", "1.00"},
    {"1234.5678e-1", "123.46"},
    {"99999999999999991433150464", "99999999999999987584860160.00"},
};

/* Each literal ends exactly at a guard page: qf_price_parse must not look past len. */
static void check_case(const struct price_case *c)
{
    const char *lit = qf_test_guard_copy(c->lit, strlen(c->lit));
    char out[32];
    double v = 12345;
    int rc = qf_price_parse(lit, strlen(c->lit), &v), n;

    if (rc != 0)
        fail_msg("parse \"%s\" -> %d", c->lit, rc);
    n = qf_price_format(v, out, sizeof(out));
    if (n < 0 || strcmp(out, c->text) != 0 || (size_t)n != strlen(c->text))
        fail_msg("\"%s\": got \"%s\" (%d), want \"%s\"", c->lit, n < 0 ? "" : out, n, c->text);
    assert_true(v == strtod(c->lit, NULL));
    qf_test_guard_free(lit);
}

static void test_table(void **state)
{
    size_t i;
    (void)state;
    assert_true(sizeof(cases) / sizeof(cases[0]) >= 60);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i]);
}

static void test_parse_range(void **state)
{
    static const char *const lits[] = {"1e400", "-1e400", "1e99999999999999999999", "2e308"};
    size_t i;
    double v;
    (void)state;
    for (i = 0; i < sizeof(lits) / sizeof(lits[0]); i++)
        assert_int_equal(qf_price_parse(lits[i], strlen(lits[i]), &v), QF_ERANGE);
    /* Underflow is not an error: Python's float() gives 0.0 too. */
    assert_int_equal(qf_price_parse("1e-99999999999999999999", 23, &v), 0);
    assert_true(v == 0);
    assert_int_equal(qf_price_parse("-1e-400", 7, &v), 0);
    assert_true(v == 0 && signbit(v));
}

static void test_format_range(void **state)
{
    static const char *const lits[] = {"1e26", "-1e26", "9.9999999999999999e25", "1e300",
                                       "1.7976931348623157e308"};
    size_t i;
    double v;
    char out[32];
    (void)state;
    for (i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
        assert_int_equal(qf_price_parse(lits[i], strlen(lits[i]), &v), 0);
        assert_int_equal(qf_price_format(v, out, sizeof(out)), QF_ERANGE);
    }
    assert_int_equal(qf_price_format(strtod("inf", NULL), out, sizeof(out)), QF_ERANGE);
    assert_int_equal(qf_price_format(-strtod("inf", NULL), out, sizeof(out)), QF_ERANGE);
    assert_int_equal(qf_price_format(strtod("nan", NULL), out, sizeof(out)), QF_ERANGE);
}

static void test_not_numbers(void **state)
{
    static const char *const lits[] = {
        "01",        "1.",  ".5",   "+1",   "1e",   "0x10",  "NaN",   "",      "-",  "Infinity",
        "-Infinity", "1e+", "1E-",  "--1",  "-.5",  "1.5.2", "1e5e5", " 1",    "1 ", "1,",
        "00",        "-01", "1.e5", "0.5e", "null", "true",  "\"1\"", "1_000", "１"};
    size_t i;
    double v = 7;
    (void)state;
    for (i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
        const char *g = qf_test_guard_copy(lits[i], strlen(lits[i]));
        if (qf_price_parse(g, strlen(lits[i]), &v) != QF_EJSON)
            fail_msg("\"%s\" accepted", lits[i]);
        qf_test_guard_free(g);
    }
    assert_true(v == 7);
}

/* A prefix of a valid number must be judged on its own bytes only. */
static void test_length_bounds(void **state)
{
    double v;
    (void)state;
    assert_int_equal(qf_price_parse("1234", 2, &v), 0);
    assert_true(v == 12);
    assert_int_equal(qf_price_parse("1.5", 2, &v), QF_EJSON);
    assert_int_equal(qf_price_parse("1e5", 2, &v), QF_EJSON);
}

/* Long mantissas are fine up to 400 characters (still correctly rounded); longer ones are
 * refused rather than truncated. */
static void test_long_numbers(void **state)
{
    char buf[512], out[32];
    double v;
    (void)state;
    memset(buf, '0', sizeof(buf));
    memcpy(buf, "2.67", 4);
    buf[399] = '1'; /* 2.6700...01 (400 chars) */
    assert_int_equal(qf_price_parse(buf, 400, &v), 0);
    assert_int_equal(qf_price_format(v, out, sizeof(out)), 4);
    assert_string_equal(out, "2.67");
    assert_int_equal(qf_price_parse(buf, 401, &v), QF_EJSON);
    /* 2.675000...0001: above the tie in decimal, but the double nearest is still 2.67499.. */
    memset(buf, '0', sizeof(buf));
    memcpy(buf, "2.675", 5);
    buf[300] = '1';
    assert_int_equal(qf_price_parse(buf, 301, &v), 0);
    assert_true(v == 2.675);
    assert_int_equal(qf_price_format(v, out, sizeof(out)), 4);
    assert_string_equal(out, "2.67");
}

static void test_format_space(void **state)
{
    char out[32];
    (void)state;
    assert_int_equal(qf_price_format(1.5, out, 5), 4);
    assert_string_equal(out, "1.50");
    assert_int_equal(qf_price_format(1.5, out, 4), QF_ENOSPC);
    assert_int_equal(qf_price_format(-1.5, out, 5), QF_ENOSPC);
    assert_int_equal(qf_price_format(-1.5, out, 6), 5);
    assert_int_equal(qf_price_format(-9.9999999999999991e25, out, 32), 30);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return *s = x;
}

/* glibc's printf("%.2f") rounds the exact binary value half-even in the default rounding mode
 * (tests never change it). Cross-check qf_price_format against it on many doubles: random
 * bit patterns, exact ties k/8, and values a few ulps around decimal ties. */
static void check_against_printf(double v)
{
    char want[512], got[32];
    if (!(v < 1e26 && v > -1e26))
        return;
    snprintf(want, sizeof(want), "%.2f", v);
    assert_int_equal(qf_price_format(v, got, sizeof(got)), (int)strlen(want));
    if (strcmp(want, got) != 0)
        fail_msg("%.17g: got %s, printf %s", v, got, want);
}

/* k ulps away from v (toward larger magnitude for k > 0); no libm needed. */
static double ulps(double v, int k)
{
    int64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    bits += k;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

static void test_against_printf(void **state)
{
    uint64_t s = 0x9e3779b97f4a7c15u;
    int i, k;
    (void)state;
    for (i = 0; i < 100000; i++) {
        uint64_t bits = rng_next(&s);
        double v;
        memcpy(&v, &bits, sizeof(v));
        check_against_printf(v);
        check_against_printf((double)(int64_t)(bits % 2000000001) / 8.0 - 125000000.0);
    }
    for (i = -30000; i <= 30000; i++) {
        double tie = (i + 0.5) / 100.0; /* nearest double to a decimal tie */
        check_against_printf(tie);
        for (k = 1; k <= 3; k++) {
            check_against_printf(ulps(tie, k));
            check_against_printf(ulps(tie, -k));
        }
    }
}

/* qf_price_parse against strtod on the same text, bit for bit: numbers of 1-18 significant
 * digits with the point anywhere and exponents around +-22, so both Clinger's exact fast path
 * (<= 15 digits, |e| <= 22) and the strtod path run, and their boundary is crossed. */
static void test_parse_against_strtod(void **state)
{
    uint64_t s = 0x243f6a8885a308d3u;
    char text[64];
    (void)state;
    for (int i = 0; i < 200000; i++) {
        uint64_t r = rng_next(&s);
        int nd = 1 + (int)(r % 18), point = (int)((r >> 8) % (uint64_t)(nd + 1));
        int lead0 = (r >> 16) % 4 == 0, neg = (r >> 20) & 1, has_exp = (r >> 21) % 3 == 0;
        int ex = (int)((r >> 24) % 61) - 30;
        size_t n = 0;
        if (neg)
            text[n++] = '-';
        if (lead0) { /* 0.000ddd */
            text[n++] = '0';
            text[n++] = '.';
            for (int z = (int)((r >> 32) % 4); z > 0; z--)
                text[n++] = '0';
            point = -1;
        }
        for (int d = 0; d < nd; d++) {
            if (d == point && d > 0)
                text[n++] = '.';
            uint64_t x = rng_next(&s);
            text[n++] = (char)('0' + (d == 0 && !lead0 ? 1 + x % 9 : x % 10));
        }
        if (has_exp)
            n += (size_t)snprintf(text + n, sizeof(text) - n, "e%d", ex);
        text[n] = '\0';
        double got = 0, want = strtod(text, NULL);
        assert_int_equal(qf_price_parse(text, n, &got), 0);
        if (memcmp(&got, &want, sizeof(got)) != 0)
            fail_msg("%s: got %.17g, strtod %.17g", text, got, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_parse_range),
        cmocka_unit_test(test_format_range),
        cmocka_unit_test(test_not_numbers),
        cmocka_unit_test(test_length_bounds),
        cmocka_unit_test(test_long_numbers),
        cmocka_unit_test(test_format_space),
        cmocka_unit_test(test_against_printf),
        cmocka_unit_test(test_parse_against_strtod),
    };
    return cmocka_run_group_tests_name("price", tests, NULL, NULL);
}
