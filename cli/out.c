/* Output formats: table, json, csv and python (byte-identical to the seed's pprint.pprint of
 * [(ticker, Decimal('x.xx')), ...]). Rows arrive in input order. The library hands over server
 * text clean already (qfetch.h); every string is cleaned again here with the same rules, so no
 * format carries a control or bidi character whatever a symbol or a future message holds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "qfetch.h"

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

/* Strings reaching the output are short: symbols 64 bytes, currencies 15, the library's
 * messages under 160 (3 bytes a byte at most once cleaned); longer ones would be cut. */
#define CLEAN_MAX 2048

/* s as clean text (qf_text_clean): s itself when it is printable ASCII, else a copy in buf. */
static const char *clean(const char *s, char buf[CLEAN_MAX])
{
    const char *p = s;
    while ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f)
        p++;
    if (*p == '\0')
        return s;
    qf_text_clean(s, strlen(s), buf, CLEAN_MAX);
    return buf;
}

static void table(const struct cli_row *rows, size_t n, const char *t)
{
    char sb[CLEAN_MAX], wb[CLEAN_MAX], cb[CLEAN_MAX];
    int w = 6;
    for (size_t i = 0; i < n; i++) {
        int l = (int)utf8_len(clean(rows[i].symbol, sb));
        w = l > w ? l : w;
    }
    for (size_t i = 0; i < n; i++) {
        const struct cli_row *r = &rows[i];
        const char *sym = clean(r->symbol, sb), *word = clean(WORD(t, r), wb);
        int pad = w + (int)(strlen(sym) - utf8_len(sym));
        if (r->err == 0)
            printf("%-*s  %12s  %s\n", pad, sym, word, clean(currency(t, r), cb));
        else
            printf("%-*s  %12s  %s\n", pad, sym, "error", word);
    }
}

/* A JSON string that is valid UTF-8 whatever s holds: malformed sequences become U+FFFD, and
 * the characters clean text never holds are escaped, so the reader gets them back. */
static void json_str(const char *s)
{
    size_t n = strlen(s), k;
    uint32_t cp;

    putchar('"');
    for (; n > 0; s += k, n -= k) {
        k = qf_text_next(s, n, &cp);
        if (cp == '"' || cp == '\\') {
            putchar('\\');
            putchar((int)cp);
        } else if (qf_text_unsafe(cp)) {
            printf("\\u%04x", (unsigned)cp);
        } else if (cp == 0xfffd) {
            fputs("\xef\xbf\xbd", stdout); /* also what a malformed sequence turns into */
        } else {
            fwrite(s, 1, k, stdout);
        }
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

/* RFC 4180: quoted, inner quotes doubled, when the field holds a comma, quote or line break.
 * Text from the server (server != 0) that starts with = + - or @ would run as a formula in a
 * spreadsheet: it gets a leading ' inside quotes, as OWASP's CSV injection rule says. Clean
 * text has no tab or carriage return to start with, the rule's other two characters. */
static void csv_field(struct outbuf *o, const char *raw, int server)
{
    char buf[CLEAN_MAX];
    const char *s = clean(raw, buf);
    size_t n = 0;
    int neuter = server && s[0] != '\0' && strchr("=+-@", s[0]) != NULL, quote = neuter;

    for (; s[n] != '\0'; n++)
        quote |= s[n] == ',' || s[n] == '"' || s[n] == '\r' || s[n] == '\n';
    if (!quote) {
        out_put(o, s, n);
        return;
    }
    out_put(o, neuter ? "\"'" : "\"", neuter ? 2 : 1);
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
        csv_field(&o, r->symbol, 0);
        out_put(&o, ",", 1);
        if (r->err == 0) {
            csv_field(&o, WORD(t, r), 0); /* a price we formatted: digits, '-' and '.' */
            out_put(&o, ",", 1);
            csv_field(&o, currency(t, r), 1);
            out_put(&o, ",", 1);
            out_int(&o, r->status);
            out_put(&o, ",\r\n", 3);
        } else {
            out_put(&o, ",,", 2);
            out_int(&o, r->status);
            out_put(&o, ",", 1);
            csv_field(&o, WORD(t, r), 1);
            out_put(&o, "\r\n", 2);
        }
    }
    out_flush(&o);
}

/* Python's repr() of a str: single quotes unless the text has ' and no ". Symbols never hold
 * C0 controls (the engine refuses them); the other code points clean text never holds are
 * not printable to Python either, and it writes them as \xNN or \uNNNN, as here. */
static size_t py_repr(const char *s, char *out, size_t cap)
{
    char q = strchr(s, '\'') != NULL && strchr(s, '"') == NULL ? '"' : '\'';
    size_t o = 0, chars = 2, n = strlen(s), k;
    uint32_t cp;

    out[o++] = q;
    for (; n > 0 && o + 8 < cap; s += k, n -= k) {
        k = qf_text_next(s, n, &cp);
        if (cp == (uint32_t)q || cp == '\\') {
            out[o++] = '\\';
            out[o++] = (char)cp;
            chars += 2;
        } else if (qf_text_unsafe(cp)) {
            int w = snprintf(out + o, cap - o, cp < 0x100 ? "\\x%02x" : "\\u%04x", (unsigned)cp);
            o += (size_t)w;
            chars += (size_t)w;
        } else {
            memcpy(out + o, cp == 0xfffd ? "\xef\xbf\xbd" : s, cp == 0xfffd ? 3 : k);
            o += cp == 0xfffd ? 3 : k;
            chars++;
        }
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
    char sym[6 * QF_SYMBOL_MAX + 8];

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
            char sb[CLEAN_MAX], wb[CLEAN_MAX];
            if (rows[i].err != 0)
                fprintf(stderr, "qfetch: %s: %s\n", clean(rows[i].symbol, sb),
                        clean(WORD(text, &rows[i]), wb));
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
