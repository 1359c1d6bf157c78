/* qfetch CLI: a thin client of include/qfetch.h, exactly like an outside user would be. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "qfetch.h"

/* Latency samples of one phase for percentiles, in whole microseconds (the engine measures
 * in us): 4 bytes a sample, exact. */
struct samples {
    uint32_t *v;
    size_t n, cap;
};

/* Duplicate symbols are fetched once: each row knows the first row holding its symbol. An
 * open-addressing table of rows + 1 (FNV-1a), kept at most half full, finds it as symbols
 * arrive, instead of a sort's n log n strcmp calls over a list known in advance. */
struct seen {
    uint32_t *slot;
    size_t cap, n;
};

struct run {
    struct cli_row *rows;
    uint32_t *first;  /* row -> first row holding the same symbol */
    uint32_t *row_of; /* client index -> row of the symbol's first occurrence */
    size_t nrows, cap, nuniq;
    struct seen seen;
    struct cli_text text; /* the rows' words (cli.h) */
    struct cli_out out;
    size_t ready;  /* rows [0, ready) are done */
    int stream;    /* print rows as they are done (not with --repeat: the last round's words) */
    int oom;
    size_t index_base; /* client indexes of this repetition start here */
    int failed;
    int latency; /* --stats: keep per-request latencies for the percentiles */
    struct samples total, dns, connect, tls, first_byte;
    /* progress line on a terminal */
    int progress;
    size_t done, errors, expected;
    double t0, last_draw;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int reserve(struct samples *s, size_t cap)
{
    uint32_t *nv = cap > s->cap ? realloc(s->v, cap * sizeof(*nv)) : s->v;
    if (nv == NULL)
        return -1;
    s->v = nv;
    s->cap = cap > s->cap ? cap : s->cap;
    return 0;
}

static void sample(struct samples *s, double ms)
{
    if (ms < 0 || (s->n == s->cap && reserve(s, s->cap ? s->cap * 2 : 256) < 0))
        return;
    double us = ms * 1000.0 + 0.5;
    s->v[s->n++] = us < UINT32_MAX ? (uint32_t)us : UINT32_MAX;
}

static void draw_progress(struct run *run, int final)
{
    double t = now_s(), el = t - run->t0;
    if (!final && t - run->last_draw < 0.1)
        return;
    run->last_draw = t;
    fprintf(stderr, "\r\033[Kqfetch: %zu/%zu done, %.0f req/s, %zu errors, %.1f s", run->done,
            run->expected, el > 0 ? (double)run->done / el : 0.0, run->errors, el);
    if (final)
        fputs("\r\033[K", stderr);
    fflush(stderr);
}

/* Gives row its words: "a\0b\0", or "a\0" when b is NULL. A repeated run overwrites the row's
 * old words when the new ones fit (prices keep their length), so --repeat does not grow it. */
static void put_words(struct run *run, struct cli_row *row, const char *a, const char *b)
{
    size_t la = strlen(a) + 1, lb = b != NULL ? strlen(b) + 1 : 0, old = 0;
    if (row->text != 0) {
        const char *p = run->text.b + row->text;
        old = strlen(p) + 1;
        if (row->err == 0)
            old += strlen(p + old) + 1;
    }
    if (la + lb > old) {
        uint32_t at = cli_text_add(&run->text, a, b);
        if (at == 0)
            run->oom = 1;
        else
            row->text = at;
        return;
    }
    memcpy(run->text.b + row->text, a, la);
    if (b != NULL)
        memcpy(run->text.b + row->text + la, b, lb);
}

static void on_result(const struct qf_result *r, void *udata)
{
    struct run *run = udata;
    struct cli_row *row = &run->rows[run->row_of[r->index - run->index_base]];

    if (r->err == 0) {
        put_words(run, row, r->price_text, r->currency);
    } else {
        put_words(run, row, r->errmsg[0] ? r->errmsg : qf_strerror(r->err), NULL);
        run->errors++;
    }
    row->err = (int16_t)r->err;
    row->status = (uint16_t)r->status;
    if (run->latency) { /* 16 bytes or more per ticker: kept only when --stats prints them */
        sample(&run->total, r->total_ms);
        sample(&run->dns, r->dns_ms);
        sample(&run->connect, r->connect_ms);
        sample(&run->tls, r->tls_ms);
        sample(&run->first_byte, r->first_byte_ms);
    }
    run->done++;
    if (run->progress && (run->expected > 200 || now_s() - run->t0 > 2))
        draw_progress(run, 0);
}

static void on_log(const char *line, void *udata)
{
    (void)udata;
    fprintf(stderr, "%s\n", line);
}

static void on_warn(const char *line, void *udata)
{
    (void)udata;
    fprintf(stderr, "qfetch: warning: %s\n", line);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037u;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return h;
}

/* The first row holding rows[row].symbol (row itself when it is the first), or -1 when out of
 * memory. */
static int64_t seen_first(struct seen *s, const struct cli_row *rows, uint32_t row)
{
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        uint32_t *slot = calloc(cap, sizeof(*slot));
        if (slot == NULL)
            return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (s->slot[i] == 0)
                continue;
            size_t k = (size_t)fnv1a(rows[s->slot[i] - 1].symbol) & (cap - 1);
            while (slot[k] != 0)
                k = (k + 1) & (cap - 1);
            slot[k] = s->slot[i];
        }
        free(s->slot);
        s->slot = slot;
        s->cap = cap;
    }
    const char *sym = rows[row].symbol;
    size_t k = (size_t)fnv1a(sym) & (s->cap - 1);
    while (s->slot[k] != 0 && strcmp(rows[s->slot[k] - 1].symbol, sym) != 0)
        k = (k + 1) & (s->cap - 1);
    if (s->slot[k] == 0) {
        s->slot[k] = row + 1;
        s->n++;
    }
    return s->slot[k] - 1;
}

/* Well-formed UTF-8 without control characters or spaces: what may be printed back in every
 * output format (the engine itself would percent-encode any byte). Not only dots: the engine
 * refuses those (qf_client_add). */
static int symbol_ok(const char *t)
{
    const unsigned char *p = (const unsigned char *)t;
    size_t n = strlen(t);

    if (n == 0 || n > QF_SYMBOL_MAX || strspn(t, ".") == n)
        return 0;
    while (*p) {
        unsigned c = *p, len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                                            : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || (len == 1 && (c <= ' ' || c == 0x7f)) || (len == 2 && c < 0xC2))
            return 0;
        unsigned cp = len == 1 ? c : c & (0x3F >> (len - 1));
        for (unsigned k = 1; k < len; k++) {
            if ((p[k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0x80 && cp < 0xA0))
            return 0;
        p += len;
    }
    return 1;
}

/* The first 40 bytes of a rejected symbol, control bytes and non-ASCII as \xNN: an error
 * line must stay one line and must not drive the terminal. */
static void print_escaped(FILE *f, const char *t)
{
    size_t i = 0;
    for (; t[i] && i < 40; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (ch < 0x20 || ch >= 0x7f || ch == '\\' || ch == '\'')
            fprintf(f, "\\x%02X", ch);
        else
            fputc(ch, f);
    }
    if (t[i])
        fputs("...", f);
}

/* $XDG_CACHE_HOME/qfetch/sessions, else ~/.cache/qfetch/sessions; the folder is made 0700. */
static char *default_session_cache(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[4096];
    if (xdg != NULL && xdg[0] == '/')
        snprintf(dir, sizeof(dir), "%s/qfetch", xdg);
    else if (home != NULL && home[0] == '/')
        snprintf(dir, sizeof(dir), "%s/.cache/qfetch", home);
    else
        return NULL;
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return NULL;
    *slash = '/';
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return NULL;
    size_t n = strlen(dir) + sizeof("/sessions");
    char *path = malloc(n);
    if (path != NULL)
        snprintf(path, n, "%s/sessions", dir);
    return path;
}

static double pct(const struct samples *s, double p)
{
    return s->n == 0 ? -1 : cli_pct(s->v, s->n, p) / 1000.0;
}

static void print_phase(const char *name, struct samples *s, int json, int comma)
{
    cli_pct_order(s->v, s->n);
    if (json)
        fprintf(stderr, "%s\"%s\":{\"n\":%zu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
                comma ? "," : "", name, s->n, pct(s, 50), pct(s, 90), pct(s, 99), pct(s, 100));
    else if (s->n > 0)
        fprintf(stderr, " %s p50=%.2f p90=%.2f p99=%.2f max=%.2f (n=%zu);", name, pct(s, 50),
                pct(s, 90), pct(s, 99), pct(s, 100), s->n);
}

static void print_stats(const qf_client *c, struct run *run, int json)
{
    struct qf_stats st;
    qf_client_stats(c, &st);
    const struct {
        const char *name;
        uint64_t v;
    } counters[] = {
        {"conns_opened", st.conns_opened},
        {"conns_unused", st.conns_unused},
        {"requests_sent", st.requests_sent},
        {"reused", st.reused},
        {"tls_full", st.tls_full},
        {"tls_resumed", st.tls_resumed},
        {"retries", st.retries},
        {"stale_resends", st.stale_resends},
        {"bytes_read", st.bytes_read},
        {"early_data", st.early_data},
        {"rate_limited", st.rate_limited},
        {"host_pauses", st.host_pauses},
        {"h2_conns", st.h2_conns},
        {"h2_streams", st.h2_streams},
        {"h2_streams_max", st.h2_streams_max},
    };
    fputs(json ? "{" : "qfetch: stats:", stderr);
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
        fprintf(stderr, json ? "\"%s\":%llu," : " %s=%llu", counters[i].name,
                (unsigned long long)counters[i].v);
    fprintf(stderr, json ? "\"wall_ms\":%.3f,\"latency_ms\":{" : " wall_ms=%.1f\nqfetch: latency ms:",
            st.wall_ms);
    print_phase("total", &run->total, json, 0);
    print_phase("dns", &run->dns, json, 1);
    print_phase("connect", &run->connect, json, 1);
    print_phase("tls", &run->tls, json, 1);
    print_phase("first_byte", &run->first_byte, json, 1);
    fputs(json ? "}}\n" : "\n", stderr);
}

/* Returns 2 after saying why t is no symbol. */
static int refuse(const char *t)
{
    fputs("qfetch: invalid symbol '", stderr);
    print_escaped(stderr, t);
    fputs("': must be 1-64 bytes of UTF-8 without spaces or control characters, "
          "not only dots\n", stderr);
    return 2;
}

/* One more row for symbol t (borrowed), fetched unless an earlier row holds the same symbol.
 * Returns 0, or 2 after printing why (the same words for every input path). */
static int add_symbol(struct run *run, qf_client *c, const char *t)
{
    if (run->nrows == run->cap) {
        size_t cap = run->cap ? run->cap * 2 : 64;
        struct cli_row *rows = cap < UINT32_MAX ? realloc(run->rows, cap * sizeof(*rows)) : NULL;
        if (rows != NULL)
            run->rows = rows;
        uint32_t *first = rows ? realloc(run->first, cap * sizeof(*first)) : NULL;
        if (first != NULL)
            run->first = first;
        uint32_t *row_of = first ? realloc(run->row_of, cap * sizeof(*row_of)) : NULL;
        if (row_of == NULL) {
            fputs("qfetch: out of memory\n", stderr);
            return 2;
        }
        run->row_of = row_of;
        run->cap = cap;
    }
    uint32_t i = (uint32_t)run->nrows;
    run->rows[i] = (struct cli_row){.symbol = t};
    int64_t first = seen_first(&run->seen, run->rows, i);
    if (first < 0) {
        fputs("qfetch: out of memory\n", stderr);
        return 2;
    }
    run->first[i] = (uint32_t)first;
    run->nrows++;
    if (first != i)
        return 0;
    if (!symbol_ok(t))
        return refuse(t);
    int idx = qf_client_add(c, t);
    if (idx < 0) {
        fprintf(stderr, "qfetch: cannot queue '%s': %s\n", t, qf_strerror(idx));
        return 2;
    }
    run->row_of[(size_t)idx - run->index_base] = i;
    run->nuniq++;
    run->expected++;
    return 0;
}

/* Prints the rows that are done and follow only done rows (end: all of them, and the
 * list's close). A repeated symbol's row is done with its first row, which comes before it. */
static void emit(struct run *run, int end)
{
    size_t i = run->ready;
    for (; i < run->nrows; i++) {
        struct cli_row *row = &run->rows[i];
        if (run->first[i] != i) {
            const struct cli_row *src = &run->rows[run->first[i]];
            row->text = src->text; /* the words are shared, not copied */
            row->err = src->err;
            row->status = src->status;
        }
        if (row->text == 0)
            break;
        run->failed |= row->err != 0;
    }
    run->ready = i;
    cli_out_rows(&run->out, run->rows, i, end, run->text.b);
}

/* The first round: adds the symbols in input order (argv's before '-t -', stdin's as they
 * arrive, argv's after) while stepping the client from a poll() loop, as docs/library.md's
 * embedding contract describes, until stdin has ended and every request is done. Rows are
 * printed as they are done when run->stream. Returns 0 or 2. */
static int run_streamed(struct run *run, qf_client *c, const struct cli_args *a,
                        struct cli_input *in)
{
    size_t before = a->from_stdin ? a->stdin_at : a->ntickers;
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < before; i++)
        rc = add_symbol(run, c, a->tickers[i]);
    struct pollfd p[2] = {
        {.fd = a->from_stdin ? STDIN_FILENO : -1, .events = POLLIN},
        {.fd = qf_client_fd(c), .events = POLLIN},
    };
    while (rc == 0 && (p[0].fd >= 0 || run->done < run->expected)) {
        /* Input complete and nothing to print before the end: the client's own loop saves
         * a poll() and a timerfd update per turn. */
        if (p[0].fd < 0 && (!run->stream || a->format == CLI_TABLE)) {
            if (qf_client_run(c) == 0)
                break;
            fprintf(stderr, "qfetch: event loop failed\n");
            return 2;
        }
        int timeout_ms = qf_client_timeout_ms(c);
        if (timeout_ms != 0)
            fflush(stdout); /* about to wait: what is printed reaches the reader now */
        int n = poll(p, 2, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "qfetch: event loop failed\n");
            return 2;
        }
        if (p[0].fd >= 0 && p[0].revents != 0) {
            /* A whole read is checked before the client is stepped: a bad symbol in the
             * input's first read stops the run before any request is sent. */
            int r = cli_input_read(in, STDIN_FILENO);
            if (r == 2)
                return 2;
            for (const char *w; rc == 0 && (w = cli_input_next(in)) != NULL;)
                rc = add_symbol(run, c, w);
            if (r == 0) {
                p[0].fd = -1; /* poll() skips negative fds */
                for (size_t i = before; rc == 0 && i < a->ntickers; i++)
                    rc = add_symbol(run, c, a->tickers[i]);
                if (rc == 0 && run->nrows == 0)
                    rc = cli_args_empty();
            }
            if (rc != 0)
                return rc;
        }
        /* The client's fd is readable for I/O and expired deadlines; a timeout of 0 means
         * queued work is ready, so a busy stdin cannot starve it. */
        if ((n == 0 || timeout_ms == 0 || p[1].revents != 0) && qf_client_step(c) < 0) {
            fprintf(stderr, "qfetch: event loop failed\n");
            return 2;
        }
        if (run->stream)
            emit(run, 0);
    }
    return rc;
}

int main(int argc, char **argv)
{
    struct cli_args a;
    int rc = cli_args_parse(&a, argc, argv);
    if (rc != 0 || a.help || a.version) {
        if (a.help)
            cli_usage();
        else if (a.version)
            printf("%s\n", qf_version());
        cli_args_free(&a);
        return rc;
    }
    struct run run = {.latency = a.stats, .out = {.format = a.format}, .stream = a.repeat == 1};
    struct cli_input in = {0};
    char *sess = NULL;
    if (!a.no_session_cache)
        sess = a.session_cache != NULL ? strdup(a.session_cache) : default_session_cache();
    struct qf_options o = {
        .url_template = a.url,
        .connections = a.connections,
        .cacert = a.cacert,
        .dns_servers = a.dns_servers,
        .resolve = a.resolve,
        .timeout_ms = a.timeout_ms,
        .connect_timeout_ms = a.connect_timeout_ms,
        .retries = a.retries < 0 ? 0 : a.retries == 0 ? -1 : a.retries,
        .user_agent = a.user_agent,
        .log = a.verbose ? on_log : NULL,
        .warn = on_warn,
        .session_cache = sess,
        .flags = (a.tcp_fastopen ? QF_OPT_TCP_FASTOPEN : 0u) |
                 (a.early_data ? QF_OPT_EARLY_DATA : 0u) |
                 (a.no_compressed ? QF_OPT_NO_COMPRESSED : 0u) | QF_OPT_NO_EXIT_CLEANUP |
                 (a.http1 ? QF_OPT_HTTP1 : 0u) |
                 QF_OPT_PROXY_ENV, /* as curl's command: the user's environment is ours */
        .proxy = a.proxy,
        .noproxy = a.noproxy,
        .pipeline = a.pipeline,
    };
    char err[320];
    qf_client *c = qf_client_new(&o, on_result, &run, err, sizeof(err));
    rc = c != NULL ? 0 : 2;
    if (c == NULL)
        fprintf(stderr, "qfetch: %s\n", err);
    /* Symbols given as arguments are all checked before anything is sent. */
    for (size_t i = 0; rc == 0 && i < a.ntickers; i++) {
        if (!symbol_ok(a.tickers[i]))
            rc = refuse(a.tickers[i]);
    }
    if (run.latency && !a.from_stdin) { /* one per request, not a doubling past that */
        reserve(&run.total, a.ntickers * (size_t)a.repeat);
        reserve(&run.first_byte, a.ntickers * (size_t)a.repeat);
    }
    /* On a terminal, rows printed as they come would run into the progress line. */
    run.progress = c != NULL && !a.no_progress && isatty(2) && !a.verbose &&
                   !(run.stream && a.format != CLI_TABLE && isatty(1));
    run.t0 = now_s();
    if (rc == 0)
        rc = run_streamed(&run, c, &a, &in);
    for (int rep = 1; rc == 0 && rep < a.repeat; rep++) {
        run.index_base = (size_t)rep * run.nuniq;
        run.expected += run.nuniq;
        for (size_t i = 0; i < run.nrows; i++) {
            if (run.first[i] != i)
                continue;
            int idx = qf_client_add(c, run.rows[i].symbol);
            if (idx < 0) {
                fprintf(stderr, "qfetch: cannot queue '%s': %s\n", run.rows[i].symbol,
                        qf_strerror(idx));
                rc = 2;
                break;
            }
            run.row_of[(size_t)idx - run.index_base] = (uint32_t)i;
        }
        if (rc == 0 && qf_client_run(c) < 0) {
            fprintf(stderr, "qfetch: event loop failed\n");
            rc = 2;
        }
    }
    if (run.progress)
        draw_progress(&run, 1);
    if (c != NULL && rc == 0 && a.stats)
        print_stats(c, &run, a.stats_json);
    for (size_t i = 0; rc == 0 && i < run.nrows; i++) {
        struct cli_row *row = &run.rows[i];
        if (run.first[i] == i && row->text == 0) {
            put_words(&run, row, "not completed", NULL);
            row->err = QF_ECANCELED;
        }
    }
    if (rc == 0 && run.oom) {
        fprintf(stderr, "qfetch: out of memory\n");
        rc = 2;
    }
    if (rc == 0)
        emit(&run, 1);
    /* Closed before qf_client_free(), which may wait a round trip for session tickets
     * (qfetch.h): a pipe reading the prices ends with them, not with that wait. A reader
     * that went away early (| head) is not an error; a full disk is. */
    if (fclose(stdout) != 0 && errno != EPIPE && rc == 0) {
        fprintf(stderr, "qfetch: cannot write the output: %s\n", strerror(errno));
        rc = 2;
    }
    qf_client_free(c); /* after the output: it may wait for session tickets (qfetch.h) */
    free(run.rows);
    free(run.first);
    free(run.row_of);
    free(run.seen.slot);
    free(run.text.b);
    cli_input_free(&in);
    free(sess);
    free(run.total.v);
    free(run.dns.v);
    free(run.connect.v);
    free(run.tls.v);
    free(run.first_byte.v);
    cli_args_free(&a);
    return rc != 0 ? rc : run.failed ? 1 : 0;
}
