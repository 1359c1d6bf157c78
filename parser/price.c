/* Price text: strict JSON number -> double -> cents, matching Python's
 * Decimal(float(x)).quantize(Decimal("0.01")). Pure computation: no locale, no rounding mode,
 * no libm, no allocation. Works on the exact binary value, so it needs 128-bit integers. */
#include "parser/price.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qfetch.h"

#ifndef __SIZEOF_INT128__
#error "parser/price.c needs unsigned __int128 (gcc or clang on a 64-bit target)"
#endif

typedef unsigned __int128 u128;

/* Longest number text accepted: far more digits than a double can use (17), short enough to
 * copy to the stack. */
#define PRICE_TEXT_MAX 400
/* Beyond this the exponent alone makes the value 0 or inf, whatever the <= 400 digits say. */
#define PRICE_EXP_CLAMP 100000L

struct numparts {
    size_t int_at, int_len;   /* digits before '.' */
    size_t frac_at, frac_len; /* digits after '.', 0 when absent */
    long exp;                 /* value of the exponent part, clamped */
    int neg;
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static size_t scan_digits(const char *s, size_t len, size_t i)
{
    while (i < len && is_digit(s[i]))
        i++;
    return i;
}

/* Exponent digits saturate: the caller clamps anyway, and 10^-100000 and 10^100000 are
 * already 0 and inf. */
static size_t scan_exponent(const char *s, size_t len, size_t i, long *exp)
{
    int neg = 0;
    long e = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    if (i >= len || !is_digit(s[i]))
        return 0;
    for (; i < len && is_digit(s[i]); i++)
        if (e < PRICE_EXP_CLAMP)
            e = e * 10 + (s[i] - '0');
    *exp = neg ? -e : e;
    return i;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?  Returns 1 and fills *p when s matches. */
static int split_number(const char *s, size_t len, struct numparts *p)
{
    size_t i = 0;
    memset(p, 0, sizeof(*p));
    if (i < len && s[i] == '-')
        p->neg = 1, i++;
    if (i >= len || !is_digit(s[i]))
        return 0;
    p->int_at = i;
    i = s[i] == '0' ? i + 1 : scan_digits(s, len, i);
    p->int_len = i - p->int_at;
    if (i < len && s[i] == '.') {
        p->frac_at = ++i;
        i = scan_digits(s, len, i);
        p->frac_len = i - p->frac_at;
        if (p->frac_len == 0)
            return 0;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i = scan_exponent(s, len, i + 1, &p->exp);
        if (i == 0)
            return 0;
    }
    return i == len;
}

/* Powers of ten a double holds exactly. */
static const double exact_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Clinger's fast path: with at most 15 significant digits w < 2^53 and |e| <= 22, both w and
 * 10^|e| are exact doubles, so one IEEE multiplication or division rounds w * 10^e correctly,
 * as strtod would. A regularMarketPrice such as 189.45 qualifies; a 16-digit one such as
 * 189.4499969482422 goes to strtod. Returns 0 when it does not apply. */
static int parse_fast(const char *s, const struct numparts *p, double *out)
{
    uint64_t w = 0;
    size_t nd = 0;
    long e = p->exp - (long)p->frac_len;
    const char *d = s + p->int_at, *f = s + p->frac_at;

    for (size_t i = 0; i < p->int_len; i++) {
        if (w == 0 && d[i] == '0')
            continue; /* a lone "0" integer part */
        w = w * 10 + (uint64_t)(d[i] - '0');
        nd++;
    }
    for (size_t i = 0; i < p->frac_len; i++) {
        if (w == 0 && f[i] == '0')
            continue; /* leading zeros of 0.000123 */
        w = w * 10 + (uint64_t)(f[i] - '0');
        if (++nd > 15)
            return 0;
    }
    if (nd > 15 || e < -22 || e > 22)
        return 0;
    double v = (double)w;
    v = e < 0 ? v / exact_pow10[-e] : v * exact_pow10[e];
    *out = p->neg ? -v : v;
    return 1;
}

/* Rewrites the number as "[-]DIGITSeN" without a decimal point: strtod's radix character
 * follows LC_NUMERIC, which a program embedding libqfetch may have set to ','. */
int qf_price_parse(const char *s, size_t len, double *out)
{
    char buf[PRICE_TEXT_MAX + 32];
    struct numparts p;
    size_t n = 0;
    long e;
    double v;

    if (len > PRICE_TEXT_MAX || !split_number(s, len, &p))
        return QF_EJSON;
    if (parse_fast(s, &p, out))
        return 0;
    if (p.neg)
        buf[n++] = '-';
    memcpy(buf + n, s + p.int_at, p.int_len);
    n += p.int_len;
    memcpy(buf + n, s + p.frac_at, p.frac_len);
    n += p.frac_len;
    e = p.exp - (long)p.frac_len;
    snprintf(buf + n, sizeof(buf) - n, "e%ld", e);
    v = strtod(buf, NULL);
    if (!isfinite(v))
        return QF_ERANGE;
    *out = v;
    return 0;
}

/* |v| * 100 rounded half-even to an integer, from the exact bits of v (|v| < 1e26, so the
 * result is below 2^94). Independent of the FPU rounding mode. */
static u128 cents_half_even(double v)
{
    uint64_t bits, mant;
    int exp2;
    u128 q, rem, half, r;
    unsigned k;

    memcpy(&bits, &v, sizeof(bits));
    mant = bits & ((UINT64_C(1) << 52) - 1);
    exp2 = (int)((bits >> 52) & 0x7ff);
    if (exp2 == 0)
        exp2 = 1; /* subnormal: no implicit bit */
    else
        mant |= UINT64_C(1) << 52;
    exp2 -= 1075; /* v = mant * 2^exp2 */
    q = (u128)mant * 100;
    if (exp2 >= 0)
        return q << exp2;
    k = (unsigned)-exp2;
    if (k > 120)
        return 0; /* q < 2^60: far below one half */
    r = q >> k;
    rem = q - (r << k);
    half = (u128)1 << (k - 1);
    if (rem > half || (rem == half && (r & 1)))
        r++;
    return r;
}

/* Decimal keeps the sign of zero and of values that round to zero ("-0.00"). */
int qf_price_format(double v, char *out, size_t cap)
{
    char digits[40];
    size_t nd = 0, n = 0, i;
    u128 c;

    if (!isfinite(v) || v >= 1e26 || v <= -1e26)
        return QF_ERANGE;
    c = cents_half_even(v);
    if (c <= UINT64_MAX) { /* every real price: 128-bit division is a libgcc call a digit */
        uint64_t c64 = (uint64_t)c;
        do {
            digits[nd++] = (char)('0' + (int)(c64 % 10));
            c64 /= 10;
        } while (c64 != 0 || nd < 3);
    } else {
        do {
            digits[nd++] = (char)('0' + (int)(c % 10));
            c /= 10;
        } while (c != 0 || nd < 3);
    }
    if (nd + 2 + (signbit(v) != 0) > cap) /* '.', NUL, sign */
        return QF_ENOSPC;
    if (signbit(v))
        out[n++] = '-';
    for (i = nd; i-- > 0;) {
        out[n++] = digits[i];
        if (i == 2)
            out[n++] = '.';
    }
    out[n] = '\0';
    return (int)n;
}
