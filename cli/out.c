/* Output formats: table, json, csv and python (byte-identical to the seed's pprint.pprint of
 * [(ticker, Decimal('x.xx')), ...]). Rows arrive in input order. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* A row's words in the arena: its price (or error message), then its currency. */
#define WORD(t, r) ((t) + (r)->text)

static const char *currency(const char *t, const struct cli_row *r)
{
    const char *p = WORD(t, r);
    return p + strlen(p) + 1;
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
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void json(const struct cli_row *rows, size_t n, const char *t)
{
    fputs("[", stdout);
    for (size_t i = 0; i < n; i++) {
        const struct cli_row *r = &rows[i];
        fputs(i ? ",\n  {\"ticker\":" : "\n  {\"ticker\":", stdout);
        json_str(r->symbol);
        if (r->err == 0) {
            printf(",\"price\":%s,\"currency\":", WORD(t, r));
            if (currency(t, r)[0])
                json_str(currency(t, r));
            else
                fputs("null", stdout);
        } else {
            fputs(",\"error\":", stdout);
            json_str(WORD(t, r));
            printf(",\"status\":%d", r->status);
        }
        putchar('}');
    }
    fputs(n ? "\n]\n" : "]\n", stdout);
}

static void csv_field(const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static void csv(const struct cli_row *rows, size_t n, const char *t)
{
    fputs("ticker,price,currency,status,error\r\n", stdout);
    for (size_t i = 0; i < n; i++) {
        const struct cli_row *r = &rows[i];
        csv_field(r->symbol);
        printf(",%s,", r->err == 0 ? WORD(t, r) : "");
        csv_field(r->err == 0 ? currency(t, r) : "");
        printf(",%d,", r->status);
        csv_field(r->err == 0 ? "" : WORD(t, r));
        fputs("\r\n", stdout);
    }
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
 * "[" or " "; a tuple that does not fit its 78 columns breaks after the symbol. */
static void python(const struct cli_row *rows, size_t n, const char *t)
{
    char sym[3 * 64 + 8];
    size_t total = 2, count = 0;

    for (size_t i = 0; i < n; i++) {
        if (rows[i].err != 0)
            continue;
        total += py_repr(rows[i].symbol, sym, sizeof(sym)) + 14 + strlen(WORD(t, &rows[i]));
        total += count++ ? 2 : 0;
    }
    int one_line = total <= 80;
    size_t k = 0;
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        if (rows[i].err != 0)
            continue;
        size_t sl = py_repr(rows[i].symbol, sym, sizeof(sym));
        size_t tl = sl + 14 + strlen(WORD(t, &rows[i]));
        if (k > 0)
            fputs(one_line ? ", " : ",\n ", stdout);
        if (one_line || tl <= 78)
            printf("(%s, Decimal('%s'))", sym, WORD(t, &rows[i]));
        else
            printf("(%s,\n  Decimal('%s'))", sym, WORD(t, &rows[i]));
        k++;
    }
    fputs("]\n", stdout);
}

void cli_out_print(enum cli_format f, const struct cli_row *rows, size_t n, const char *text)
{
    switch (f) {
    case CLI_TABLE:
        table(rows, n, text);
        break;
    case CLI_JSON:
        json(rows, n, text);
        break;
    case CLI_CSV:
        csv(rows, n, text);
        break;
    case CLI_PYTHON:
        python(rows, n, text);
        for (size_t i = 0; i < n; i++) {
            if (rows[i].err != 0)
                fprintf(stderr, "qfetch: %s: %s\n", rows[i].symbol, WORD(text, &rows[i]));
        }
        break;
    }
}
