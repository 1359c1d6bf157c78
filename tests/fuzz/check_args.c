/* Command-line invariants; input layout in check.h. cli/ prints usage errors to stderr and
 * tables to stdout: both are pointed at /dev/null (or a memory stream that is read back) for
 * the call only, so libFuzzer's and cmocka's own output is untouched. */
#include "tests/fuzz/check.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli/cli.h"
#include "engine/url.h"
#include "parser/price.h"
#include "qfetch.h"
#include "tests/fuzz/oracle.h"

#define ROWS_MAX 64 /* rows printed per input: enough for every layout, cheap per run */

static FILE *devnull(void)
{
    static FILE *f;
    if (f == NULL && (f = fopen("/dev/null", "w")) == NULL)
        abort();
    return f;
}

/* fd 0 becomes a memfd holding the given bytes; returns the saved fd to put back. stdio's
 * buffer and EOF flag are dropped so that every input starts clean. */
static int stdin_from(const unsigned char *p, size_t n)
{
    static int mfd = -1;
    int saved = dup(0);

    if (mfd < 0 && (mfd = memfd_create("qf-fuzz-stdin", MFD_CLOEXEC)) < 0)
        abort();
    if (ftruncate(mfd, 0) != 0 || (n > 0 && pwrite(mfd, p, n, 0) != (ssize_t)n) ||
        lseek(mfd, 0, SEEK_SET) != 0 || dup2(mfd, 0) != 0)
        abort();
    __fpurge(stdin);
    clearerr(stdin);
    return saved;
}

static void stdin_restore(int saved)
{
    __fpurge(stdin);
    clearerr(stdin);
    if (saved >= 0) {
        dup2(saved, 0);
        close(saved);
    } else {
        close(0);
    }
}

static int is_unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

static int hexv(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* Encoded text: only unreserved characters and %XX (upper-case hex), decoding back to t; a
 * buffer one byte short of the result must give QF_ENOSPC. A symbol made only of dots is
 * refused whatever the buffer. */
static int check_symbol(struct ctx *c, const char *t)
{
    size_t n = strlen(t), cap = 3 * n + 1, i, k = 0;
    char *out = xmalloc(cap), *tight;
    int r = qf_symbol_encode(t, out, cap), bad = 0, r2;

    if (n > 0 && strspn(t, ".") == n) {
        free(out);
        CHECK(r == QF_EINVAL, "qf_symbol_encode('%s') returned %d, want QF_EINVAL", t, r);
        return 0;
    }
    if (r < 0 || (size_t)r >= cap || strlen(out) != (size_t)r) {
        free(out);
        CHECK(0, "qf_symbol_encode('%s') returned %d for cap %zu", t, r, cap);
    }
    for (i = 0; i < (size_t)r && !bad; k++) {
        unsigned char ch = (unsigned char)out[i];
        if (is_unreserved(ch)) {
            bad = (unsigned char)t[k] != ch;
            i++;
        } else {
            bad = ch != '%' || i + 2 >= (size_t)r || hexv(out[i + 1]) < 0 || hexv(out[i + 2]) < 0 ||
                  (unsigned char)t[k] != hexv(out[i + 1]) * 16 + hexv(out[i + 2]) ||
                  is_unreserved((unsigned char)t[k]);
            i += 3;
        }
    }
    bad = bad || k != n;
    tight = xmalloc((size_t)r);
    r2 = qf_symbol_encode(t, tight, (size_t)r);
    free(tight);
    if (bad)
        violation(c, __FILE__, __LINE__, "qf_symbol_encode('%s') = '%s' is not its unreserved/%%XX form", t,
                  out);
    free(out);
    if (bad)
        return 1;
    CHECK(r2 == QF_ENOSPC, "qf_symbol_encode with cap %d returned %d, want QF_ENOSPC", r, r2);
    return 0;
}

/* The engine's template parser on whatever -u gave: a clean refusal, or a host taken from
 * the authority and a prefix/suffix that rebuild the path around the one "{}". */
static int check_url(struct ctx *c, const char *tmpl)
{
    struct qf_url u;
    char err[256];
    int r = qf_url_parse(&u, tmpl, err, sizeof(err)), bad;

    CHECK(r == 0 || r == QF_EINVAL, "qf_url_parse returned %d", r);
    if (r != 0) {
        CHECK(u.prefix == NULL && u.suffix == NULL, "qf_url_parse failed but kept allocations");
        CHECK(err[0] != '\0', "qf_url_parse failed without a message");
        return 0;
    }
    const char *auth = tmpl + (u.tls ? 8 : 7), *path = auth + strcspn(auth, "/?#");
    const char *ph = strstr(tmpl, "{}");
    size_t hl = strlen(u.host), pl = strlen(u.prefix), lead = path[0] != '/';
    long port = strtol(u.port, NULL, 10);
    bad = strncmp(tmpl, u.tls ? "https://" : "http://", u.tls ? 8 : 7) != 0 || ph == NULL ||
          ph < path || hl == 0 || memmem(auth, (size_t)(path - auth), u.host, hl) == NULL ||
          port < 1 || port > 65535 || strcmp(u.suffix, ph + 2) != 0 || u.prefix[0] != '/' ||
          pl != lead + (size_t)(ph - path) || memcmp(u.prefix + lead, path, pl - lead) != 0;
    if (bad)
        violation(c, __FILE__, __LINE__,
                  "qf_url_parse('%s') gave host '%s' port '%s' prefix '%s' suffix '%s'", tmpl,
                  u.host, u.port, u.prefix, u.suffix);
    qf_url_free(&u);
    return bad;
}

static uint64_t fnv(const char *s, size_t salt)
{
    uint64_t h = 1469598103934665603ull ^ salt;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* A symbol the engine takes (qf_client_add): 1-64 bytes, no blanks or control characters,
 * not only dots. */
static int engine_takes(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > QF_SYMBOL_MAX || strspn(t, ".") == n)
        return 0;
    for (; *t; t++)
        if ((unsigned char)*t <= ' ' || *t == 0x7f)
            return 0;
    return 1;
}

/* Any magnitude from 2^-60 to 2^100 (the formatter refuses >= 1e26 and NaN), either sign. */
static double made_up_price(uint64_t h)
{
    uint64_t bits = (h & 0x800fffffffffffffull) | (uint64_t)(1023 - 60 + (h >> 52) % 160) << 52;
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

/* The text arena of the rows being checked (cli.h), filled as cli/main.c fills it. */
static struct cli_text words;

static uint32_t put_words(const char *a, const char *b)
{
    uint32_t at = cli_text_add(&words, a, b);
    if (at == 0)
        abort();
    return at;
}

static const char *word(const struct cli_row *r)
{
    return words.b + r->text;
}

static const char *currency(const struct cli_row *r)
{
    return word(r) + strlen(word(r)) + 1;
}

/* Runs cli_out_print with stdout captured; *out is malloc'd and NUL-terminated. */
static size_t capture(enum cli_format f, const struct cli_row *rows, size_t n, char **out)
{
    FILE *saved_out = stdout, *saved_err = stderr, *m;
    size_t len = 0;

    *out = NULL;
    if ((m = open_memstream(out, &len)) == NULL)
        abort();
    stdout = m;
    stderr = devnull();
    cli_out_print(f, rows, n, words.b);
    stdout = saved_out;
    stderr = saved_err;
    fclose(m);
    return len;
}

/* String value v reads back as raw, its malformed UTF-8 replaced by U+FFFD: the JSON output
 * escapes controls and bidi characters, so a reader gets them back unchanged. */
static int str_is(const char *js, struct qf_oracle_val v, const char *raw)
{
    char *want = xmalloc(3 * strlen(raw) + 1), *got = xmalloc(v.len + 1);
    size_t n = qf_oracle_text(raw, strlen(raw), want, 0);
    int ok = v.type == QF_ORACLE_STRING && qf_oracle_json_string(js, v, got, v.len + 1, 0) == n &&
             memcmp(got, want, n) == 0;
    free(got);
    free(want);
    return ok;
}

/* What a CSV cell holds for raw: clean text, and a server's text that would start a formula
 * behind a '. Malloc'd. */
static char *csv_want(const char *raw, int server)
{
    char *w = xmalloc(3 * strlen(raw) + 2);
    size_t n = qf_oracle_text(raw, strlen(raw), w + 1, 1);
    if (server && n > 0 && strchr("=+-@", w[1]) != NULL) {
        w[0] = '\'';
        return w;
    }
    memmove(w, w + 1, n + 1);
    return w;
}

static int text_is(const char *js, struct qf_oracle_val v, enum qf_oracle_type type,
                   const char *want)
{
    return v.type == type && v.len == strlen(want) && memcmp(js + v.at, want, v.len) == 0;
}

/* The JSON output is valid UTF-8 whatever the rows hold. */
static int check_json_out(struct ctx *c, const struct cli_row *rows, size_t n)
{
    char *js, num[32];
    size_t len = capture(CLI_JSON, rows, n, &js), at = 0;
    struct qf_oracle_val root, e;
    int v = qf_oracle_json_parse(js, len, 8, 1, &root, &at), bad = 0;
    size_t i;

    bad = v != 1 || root.type != QF_ORACLE_ARRAY || qf_oracle_json_count(js, root) != n;
    for (i = 0; i < n && !bad; i++) {
        const struct cli_row *r = &rows[i];
        e = qf_oracle_json_index(js, root, i);
        bad = !str_is(js, qf_oracle_json_get(js, e, "ticker"), r->symbol);
        if (!bad && r->err == 0) {
            struct qf_oracle_val cur = qf_oracle_json_get(js, e, "currency");
            bad = !text_is(js, qf_oracle_json_get(js, e, "price"), QF_ORACLE_NUMBER, word(r)) ||
                  (currency(r)[0] ? !str_is(js, cur, currency(r))
                                  : !text_is(js, cur, QF_ORACLE_NULL, "null"));
        } else if (!bad) {
            snprintf(num, sizeof(num), "%d", r->status);
            bad = !str_is(js, qf_oracle_json_get(js, e, "error"), word(r)) ||
                  !text_is(js, qf_oracle_json_get(js, e, "status"), QF_ORACLE_NUMBER, num);
        }
    }
    if (bad)
        violation(c, __FILE__, __LINE__, "json output %s at row %zu (reader at %zu): %.200s",
                  v == 1 ? "does not match the rows" : "is not valid JSON", i, at, js);
    free(js);
    return bad;
}

/* One RFC 4180 field at *p (quoted or not); returns it malloc'd, advances past it. */
static char *csv_read_field(const char **p, const char *end)
{
    const char *s = *p;
    char *f = xmalloc((size_t)(end - s) + 1);
    size_t n = 0;

    if (s < end && *s == '"') {
        for (s++; s < end; s++) {
            if (*s == '"' && (s + 1 >= end || s[1] != '"'))
                break;
            if (*s == '"')
                s++;
            f[n++] = *s;
        }
        if (s < end)
            s++;
    } else {
        while (s < end && *s != ',' && *s != '\r' && *s != '\n' && *s != '"')
            f[n++] = *s++;
    }
    f[n] = '\0';
    *p = s;
    return f;
}

/* Reads one record of 5 fields ending in \r\n; 0 on a malformed record. */
static int csv_record(const char **p, const char *end, char *fields[5])
{
    int k;
    for (k = 0; k < 5; k++)
        fields[k] = NULL;
    for (k = 0; k < 5; k++) {
        fields[k] = csv_read_field(p, end);
        if (k < 4) {
            if (*p >= end || **p != ',')
                return 0;
            (*p)++;
        }
    }
    if (end - *p < 2 || (*p)[0] != '\r' || (*p)[1] != '\n')
        return 0;
    *p += 2;
    return 1;
}

static int check_csv_out(struct ctx *c, const struct cli_row *rows, size_t n)
{
    char *out, *f[5], num[32];
    size_t len = capture(CLI_CSV, rows, n, &out), i;
    const char *p = out, *end = out + len;
    int bad = !csv_record(&p, end, f) || strcmp(f[0], "ticker") || strcmp(f[1], "price") ||
              strcmp(f[2], "currency") || strcmp(f[3], "status") || strcmp(f[4], "error");

    for (int k = 0; k < 5; k++)
        free(f[k]);
    for (i = 0; i < n && !bad; i++) {
        const struct cli_row *r = &rows[i];
        char *sym = csv_want(r->symbol, 0), *cur = csv_want(r->err == 0 ? currency(r) : "", 1);
        char *msg = csv_want(r->err == 0 ? "" : word(r), 1);
        snprintf(num, sizeof(num), "%d", r->status);
        bad = !csv_record(&p, end, f) || strcmp(f[0], sym) ||
              strcmp(f[1], r->err == 0 ? word(r) : "") || strcmp(f[2], cur) ||
              strcmp(f[3], num) || strcmp(f[4], msg);
        for (int k = 0; k < 5; k++)
            free(f[k]);
        free(sym);
        free(cur);
        free(msg);
    }
    bad = bad || p != end;
    if (bad)
        violation(c, __FILE__, __LINE__, "csv output does not read back at row %zu: %.200s", i, out);
    free(out);
    return bad;
}

static int check_other_out(struct ctx *c, const struct cli_row *rows, size_t n)
{
    char *out, *again;
    size_t len = capture(CLI_TABLE, rows, n, &out);
    /* The table is clean text line by line: cleaning it again changes nothing. */
    again = xmalloc(3 * len + 1);
    int same = 1;
    for (char *line = out, *nl; same && line < out + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(out + len - line));
        size_t l = nl != NULL ? (size_t)(nl - line) : (size_t)(out + len - line);
        same = qf_oracle_text(line, l, again, 1) == l && memcmp(again, line, l) == 0;
        if (nl == NULL)
            break;
    }
    free(again);
    free(out);
    CHECK(same, "table output holds a control, bidi or malformed character");
    len = capture(CLI_PYTHON, rows, n, &out);
    int ok = len >= 3 && out[0] == '[' && memcmp(out + len - 2, "]\n", 2) == 0;
    free(out);
    CHECK(ok, "python output is not one bracketed list");
    return 0;
}

/* Rows handed over as they complete, one at a time, then the end (cli/main.c with '-t -')
 * must print the bytes one call with every row prints, in every format. */
static int check_stream_out(struct ctx *c, const struct cli_row *rows, size_t n)
{
    for (int f = CLI_TABLE; f <= CLI_PYTHON; f++) {
        FILE *saved_out = stdout, *saved_err = stderr, *m;
        char *whole, *parts = NULL;
        size_t wlen = capture((enum cli_format)f, rows, n, &whole), plen = 0;
        struct cli_out o = {.format = (enum cli_format)f};

        if ((m = open_memstream(&parts, &plen)) == NULL)
            abort();
        stdout = m;
        stderr = devnull();
        for (size_t i = 0; i <= n; i++)
            cli_out_rows(&o, rows, i, i == n, words.b);
        stdout = saved_out;
        stderr = saved_err;
        fclose(m);
        int same = plen == wlen && memcmp(parts, whole, wlen) == 0;
        free(whole);
        free(parts);
        CHECK(same, "format %d printed row by row differs from all rows at once", f);
    }
    return 0;
}

/* Rows as cli/main.c builds them for symbols the engine took; prices and errors made up from
 * the tickers so that every field sees fuzzed bytes. */
static int check_output(struct ctx *c, const struct cli_args *a)
{
    struct cli_row rows[ROWS_MAX];
    size_t n = 0, i;
    int bad;

    memset(rows, 0, sizeof(rows));
    for (i = 0; i < a->ntickers && n < ROWS_MAX; i++) {
        const char *t = a->tickers[i], *other = a->tickers[(i + 1) % a->ntickers];
        uint64_t h = fnv(t, i);
        struct cli_row *r = &rows[n];
        if (!engine_takes(t))
            continue;
        r->symbol = t;
        r->err = (h & 3) == 0 ? QF_EHTTP : 0;
        r->status = r->err ? (uint16_t)((h >> 8) % 600) : 200;
        /* No longer than the engine hands them over (json.h's currency[16], the engine's
         * 160-byte messages): cli/out.c cleans into buffers sized for those. */
        char cur[16], msg[160];
        snprintf(cur, sizeof(cur), "%s", other);
        snprintf(msg, sizeof(msg), "%s", a->tickers[(i + 2) % a->ntickers]);
        if (r->err == 0) {
            char price[32];
            if (qf_price_format(made_up_price(h), price, sizeof(price)) < 0)
                snprintf(price, sizeof(price), "0.00");
            r->text = put_words(price, cur);
        } else {
            r->text = put_words(msg, NULL);
        }
        n++;
    }
    bad = check_json_out(c, rows, n) || check_csv_out(c, rows, n) ||
          check_other_out(c, rows, n) || check_stream_out(c, rows, n);
    words.len = 0;
    return bad;
}

/* a->tickers[s0, s1) came from stdin. */
static int check_parsed(struct ctx *c, const struct cli_args *a, int argc, size_t s0, size_t s1)
{
    CHECK(a->ntickers > 0 && a->tickers != NULL, "accepted with no tickers");
    CHECK(a->resolve != NULL && a->nresolve < (size_t)argc && a->resolve[a->nresolve] == NULL,
          "resolve list not NULL-terminated (%zu entries)", a->nresolve);
    CHECK(a->connections >= 0 && a->connections <= 10000, "connections %d", a->connections);
    CHECK(a->timeout_ms >= 0 && a->timeout_ms <= 86400000, "timeout_ms %d", a->timeout_ms);
    CHECK(a->connect_timeout_ms >= 0 && a->connect_timeout_ms <= 86400000, "connect_timeout_ms %d",
          a->connect_timeout_ms);
    CHECK(a->retries >= -1 && a->retries <= 100, "retries %d", a->retries);
    CHECK(a->format <= CLI_PYTHON, "format %d", (int)a->format);
    CHECK(a->pipeline >= 0 && a->pipeline <= 1000, "pipeline %d", a->pipeline);
    CHECK(a->repeat >= 1 && a->repeat <= 1000000, "repeat %d", a->repeat);
    CHECK(a->session_cache == NULL || a->session_cache[0] != '\0', "empty --session-cache");
    CHECK(!a->stats_json || a->stats, "--stats=json without stats");
    for (size_t i = 0; i < a->ntickers; i++) {
        const char *t = a->tickers[i];
        CHECK(t != NULL, "ticker %zu is NULL", i);
        if (i >= s0 && i < s1)
            CHECK(t[0] != '\0' && strpbrk(t, " \t\r\n\v\f") == NULL &&
                      strlen(t) <= QF_SYMBOL_MAX + 1,
                  "stdin ticker %zu '%s' is empty, holds a blank or is not cut", i, t);
        if (check_symbol(c, t))
            return 1;
    }
    if (a->url != NULL && check_url(c, a->url))
        return 1;
    return check_output(c, a);
}

/* '-t -' as the command reads it (cli/main.c): stdin's words between the arguments before
 * and after the '-'. a->tickers becomes *all, the words are all[*s0, *s1). Returns 0 or 2. */
static int read_stdin(struct cli_input *in, struct cli_args *a, const char ***all, size_t *s0,
                      size_t *s1)
{
    size_t n = a->stdin_at, cap = a->ntickers + 16;
    const char *w;
    int r;

    *all = xmalloc(cap * sizeof(**all));
    if (a->stdin_at > 0) /* a->tickers is NULL without arguments */
        memcpy(*all, a->tickers, a->stdin_at * sizeof(**all));
    *s0 = n;
    do {
        r = cli_input_read(in, 0);
        while (r != 2 && (w = cli_input_next(in)) != NULL) {
            if (n + (a->ntickers - a->stdin_at) == cap) {
                cap *= 2;
                const char **v = realloc(*all, cap * sizeof(**all));
                if (v == NULL)
                    abort();
                *all = v;
            }
            (*all)[n++] = w;
        }
    } while (r == 1);
    *s1 = n;
    if (a->ntickers > a->stdin_at)
        memcpy(*all + n, a->tickers + a->stdin_at, (a->ntickers - a->stdin_at) * sizeof(**all));
    a->tickers = *all;
    a->ntickers = n + a->ntickers - a->stdin_at;
    if (r == 2)
        return 2;
    return a->ntickers == 0 ? cli_args_empty() : 0;
}

int qf_fuzz_check_args(const unsigned char *data, size_t len, char *why, size_t whylen)
{
    struct ctx cx = {why, whylen}, *c = &cx;
    struct cli_args a;
    size_t rest, in_len, alen, i, k;
    int argc = 1, rc, bad = 0, saved;

    why[0] = '\0';
    if (len < 2)
        return 0;
    rest = len - 2;
    in_len = ((size_t)data[0] | (size_t)data[1] << 8) % (rest + 1);
    alen = rest - in_len;
    const char *args = (const char *)data + 2;
    if (alen > 0) {
        argc = 2;
        for (i = 0; i < alen; i++)
            argc += args[i] == '\0';
    }
    /* Each argument in its own exact-size allocation: reading past its NUL is caught. */
    char **argv = xmalloc(((size_t)argc + 1) * sizeof(*argv));
    argv[0] = strdup("qfetch");
    for (i = 0, k = 1; alen > 0 && k < (size_t)argc; k++) {
        size_t n = strnlen(args + i, alen - i);
        argv[k] = xmalloc(n + 1);
        memcpy(argv[k], args + i, n);
        argv[k][n] = '\0';
        i += n + 1;
    }
    argv[argc] = NULL;

    FILE *saved_out = stdout, *saved_err = stderr;
    saved = stdin_from(data + 2 + alen, in_len);
    stdout = devnull();
    stderr = devnull();
    rc = cli_args_parse(&a, argc, argv);
    struct cli_input in = {0};
    const char **argv_tickers = a.tickers, **all = NULL;
    size_t s0 = 0, s1 = 0, nargv = a.ntickers;
    if (rc == 0 && !a.help && !a.version && a.from_stdin)
        rc = read_stdin(&in, &a, &all, &s0, &s1);
    stdout = saved_out;
    stderr = saved_err;
    stdin_restore(saved);

    if (rc != 0 && rc != 2)
        bad = violation(c, __FILE__, __LINE__, "cli_args_parse returned %d", rc);
    else if (rc == 0 && !a.help && !a.version)
        bad = check_parsed(c, &a, argc, s0, s1);
    a.tickers = argv_tickers;
    a.ntickers = nargv;
    free(all);
    cli_input_free(&in);
    cli_args_free(&a);
    for (k = 0; k < (size_t)argc; k++)
        free(argv[k]);
    free(argv);
    return bad;
}
