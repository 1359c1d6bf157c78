/* Output formats: table, json, csv and python (byte-identical to the seed's pprint.pprint of
 * [(ticker, Decimal('x.xx')), ...]). Rows arrive in input order. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

uint32_t cli_text_add(struct cli_text *t, const char *a, const char *b)
{
    size_t la = strlen(a) + 1, lb = b != NULL ? strlen(b) + 1 : 0;
    size_t need = (t->len ? t->len : 1) + la + lb;
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < need)
            cap *= 2;
        char *nb = cap <= UINT32_MAX ? realloc(t->b, cap) : NULL;
        if (nb == NULL)
            return 0;
        t->b = nb;
        t->cap = cap;
    }
    if (t->len == 0)
        t->b[t->len++] = '\0';
    uint32_t at = (uint32_t)t->len;
    memcpy(t->b + at, a, la);
    if (b != NULL)
        memcpy(t->b + at + la, b, lb);
    t->len += la + lb;
    return at;
}

/* A row's words in the arena: its price (or error message), then its currency. */
#define WORD(t, r) ((t) + (r)->text)

static const char *currency(const char *t, const struct cli_row *r)
{
    const char *p = WORD(t, r);
    return p + strlen(p) + 1;
}

/* Decimal text of v in b[0..12), returned from its first digit (or sign). Rows go out through
 * fputs/putchar, CSV rows through a buffer: printf's format parsing was most of the cost of
 * printing a row. */
static const char *int_text(int v, char b[12])
{
    char *p = b + 11;
    unsigned u = v < 0 ? 0u - (unsigned)v : (unsigned)v;

    *p = '\0';
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--p = '-';
    return p;
}

static void put_int(int v)
{
    char b[12];
    fputs(int_text(v, b), stdout);
}

static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void table(const struct cli_row *rows, size_t n, const char *t)
{
    int w = 6;
    for (size_t i = 0; i < n; i++) {
        int l = (int)utf8_len(rows[i].symbol);
        w = l > w ? l : w;
    }
    for (size_t i = 0; i < n; i++) {
        const struct cli_row *r = &rows[i];
        int pad = w + (int)(strlen(r->symbol) - utf8_len(r->symbol));
        if (r->err == 0)
            printf("%-*s  %12s  %s\n", pad, r->symbol, WORD(t, r), currency(t, r));
        else
            printf("%-*s  %12s  %s\n", pad, r->symbol, "error", WORD(t, r));
    }
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            putchar('\\');
            putchar(ch);
        } else if (ch < 0x20 || ch == 0x7f)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* Rows [o->next, n); with end the list's close. */
static void json(const struct cli_out *o, const struct cli_row *rows, size_t n, int end,
                 const char *t)
{
    if (!o->opened)
        fputs("[", stdout);
    for (size_t i = o->next; i < n; i++) {
        const struct cli_row *r = &rows[i];
        fputs(i ? ",\n  {\"ticker\":" : "\n  {\"ticker\":", stdout);
        json_str(r->symbol);
        if (r->err == 0) {
            fputs(",\"price\":", stdout);
            fputs(WORD(t, r), stdout);
            fputs(",\"currency\":", stdout);
            if (currency(t, r)[0])
                json_str(currency(t, r));
            else
                fputs("null", stdout);
        } else {
            fputs(",\"error\":", stdout);
            json_str(WORD(t, r));
            fputs(",\"status\":", stdout);
            put_int(r->status);
        }
        putchar('}');
    }
    if (end)
        fputs(n ? "\n]\n" : "]\n", stdout);
}

/* CSV rows gather in one buffer written when full: a 10,000-row batch is a few dozen
 * fwrite()s, not several stdio calls a field. */
struct outbuf {
    size_t n;
    char b[8192];
};

static void out_flush(struct outbuf *o)
{
    fwrite(o->b, 1, o->n, stdout);
    o->n = 0;
}

static void out_put(struct outbuf *o, const char *s, size_t n)
{
    if (n > sizeof(o->b) - o->n) {
        out_flush(o);
        if (n > sizeof(o->b)) {
            fwrite(s, 1, n, stdout);
            return;
        }
    }
    memcpy(o->b + o->n, s, n);
    o->n += n;
}

static void out_int(struct outbuf *o, int v)
{
    char b[12];
    const char *p = int_text(v, b);
    out_put(o, p, (size_t)(b + 11 - p));
}

/* RFC 4180: quoted, inner quotes doubled, when the field holds a comma, quote or line break. */
static void csv_field(struct outbuf *o, const char *s)
{
    size_t n = 0;
    int quote = 0;

    for (; s[n] != '\0'; n++)
        quote |= s[n] == ',' || s[n] == '"' || s[n] == '\r' || s[n] == '\n';
    if (!quote) {
        out_put(o, s, n);
        return;
    }
    out_put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            out_put(o, "\"", 1);
        out_put(o, s + i, 1);
    }
    out_put(o, "\"", 1);
}

static void csv(const struct cli_out *co, const struct cli_row *rows, size_t n, const char *t)
{
    struct outbuf o; /* on the stack: flushed before returning */

    o.n = 0;
    if (!co->opened)
        out_put(&o, "ticker,price,currency,status,error\r\n", 36);
    for (size_t i = co->next; i < n; i++) {
        const struct cli_row *r = &rows[i];
        csv_field(&o, r->symbol);
        out_put(&o, ",", 1);
        if (r->err == 0) {
            csv_field(&o, WORD(t, r)); /* a price: digits, '-' and '.' */
            out_put(&o, ",", 1);
            csv_field(&o, currency(t, r));
            out_put(&o, ",", 1);
            out_int(&o, r->status);
            out_put(&o, ",\r\n", 3);
        } else {
            out_put(&o, ",,", 2);
            out_int(&o, r->status);
            out_put(&o, ",", 1);
            csv_field(&o, WORD(t, r));
            out_put(&o, "\r\n", 2);
        }
    }
    out_flush(&o);
}

/* Python's repr() of a str: single quotes unless the text has ' and no ". Symbols never hold
 * control characters (the engine refuses them), so only quotes and backslashes need care. */
static size_t py_repr(const char *s, char *out, size_t cap)
{
    char q = strchr(s, '\'') != NULL && strchr(s, '"') == NULL ? '"' : '\'';
    size_t o = 0, chars = 2;

    out[o++] = q;
    for (; *s && o + 3 < cap; s++) {
        if (*s == q || *s == '\\') {
            out[o++] = '\\';
            chars++;
        }
        out[o++] = *s;
        chars += ((unsigned char)*s & 0xC0) != 0x80;
    }
    out[o++] = q;
    out[o] = '\0';
    return chars;
}

/* pprint (width 80): the whole list on one line when it fits, else one tuple per line after
 * "[" or " "; a tuple that does not fit its 78 columns breaks after the symbol. Prints rows
 * [o->next, n) once the layout is known, that is at the end or as soon as the one-line form
 * has outgrown 80 columns; returns 0 while it waits. */
static int python(struct cli_out *o, const struct cli_row *rows, size_t n, int end,
                  const char *t)
{
    char sym[3 * 64 + 8];

    for (; o->py_seen < n; o->py_seen++) {
        if (rows[o->py_seen].err != 0)
            continue;
        o->py_width += py_repr(rows[o->py_seen].symbol, sym, sizeof(sym)) + 14 +
                       strlen(WORD(t, &rows[o->py_seen]));
        o->py_width += o->py_ok++ ? 2 : 0;
    }
    int one_line = 2 + o->py_width <= 80;
    if (one_line && !end)
        return 0;
    if (!o->opened)
        putchar('[');
    for (size_t i = o->next; i < n; i++) {
        if (rows[i].err != 0)
            continue;
        size_t sl = py_repr(rows[i].symbol, sym, sizeof(sym));
        size_t tl = sl + 14 + strlen(WORD(t, &rows[i]));
        if (o->py_printed > 0)
            fputs(one_line ? ", " : ",\n ", stdout);
        putchar('(');
        fputs(sym, stdout);
        fputs(one_line || tl <= 78 ? ", Decimal('" : ",\n  Decimal('", stdout);
        fputs(WORD(t, &rows[i]), stdout);
        fputs("'))", stdout);
        o->py_printed++;
    }
    if (end)
        fputs("]\n", stdout);
    return 1;
}

void cli_out_rows(struct cli_out *o, const struct cli_row *rows, size_t ready, int end,
                  const char *text)
{
    if (ready == o->next && !end)
        return; /* nothing new: not even the list's opening before its first row */
    switch (o->format) {
    case CLI_TABLE:
        if (!end)
            return;
        table(rows, ready, text);
        break;
    case CLI_JSON:
        json(o, rows, ready, end, text);
        break;
    case CLI_CSV:
        csv(o, rows, ready, text);
        break;
    case CLI_PYTHON:
        if (!python(o, rows, ready, end, text))
            return;
        if (end)
            fflush(stdout); /* the list, then what failed, also where both streams merge */
        for (size_t i = 0; end && i < ready; i++) {
            if (rows[i].err != 0)
                fprintf(stderr, "qfetch: %s: %s\n", rows[i].symbol, WORD(text, &rows[i]));
        }
        break;
    }
    o->opened = 1;
    o->next = ready;
}

void cli_out_print(enum cli_format f, const struct cli_row *rows, size_t n, const char *text)
{
    struct cli_out o = {.format = f};
    cli_out_rows(&o, rows, n, 1, text);
}

/* ---- --stats percentiles ---- */

/* Puts the k-th smallest of v[lo..hi] at v[k], smaller ones before it, larger after
 * (Hoare's selection, median-of-three pivot): the percentiles need three ranks, not a sort,
 * and sorting was a visible part of a 10,000-ticker run. */
static void select_k(uint32_t *v, size_t lo, size_t hi, size_t k)
{
#define SWAP(a, b) (t = v[a], v[a] = v[b], v[b] = t)
    uint32_t t;
    while (hi > lo) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < v[lo])
            SWAP(mid, lo);
        if (v[hi] < v[lo])
            SWAP(hi, lo);
        if (v[hi] < v[mid])
            SWAP(hi, mid);
        uint32_t pivot = v[mid];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                SWAP(i, j);
                i++;
                if (j == 0) /* v[0] is the pivot's value and nothing lies below it */
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
#undef SWAP
}

/* Nearest-rank rank (1-based) of percentile p over n samples. */
static size_t rank_of(size_t n, double p)
{
    size_t k = cli_ceil(p / 100.0 * (double)n);
    return k > 0 ? k : 1;
}

void cli_pct_order(uint32_t *v, size_t n)
{
    static const double ps[] = {100, 99, 90, 50};
    size_t hi = n;
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]) && n > 1; i++) {
        size_t k = rank_of(n, ps[i]) - 1;
        select_k(v, 0, hi - 1, k);
        hi = k + 1; /* the next, lower rank lies at or below this one */
    }
}

uint32_t cli_pct(const uint32_t *v, size_t n, double p)
{
    return v[rank_of(n, p) - 1];
}
