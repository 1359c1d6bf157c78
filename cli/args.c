/* Command-line parsing: every mistake is one line on stderr and exit status 2. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "qfetch.h"

void cli_usage(void)
{
    fputs("usage: qfetch -t SYMBOL... [options]\n"
          "Fetch stock prices concurrently from Yahoo Finance's chart API.\n\n"
          "  -t, --tickers SYM...      symbols to fetch; '-t -' reads them from stdin\n"
          "  -u, --url TEMPLATE        URL with {} for the symbol (default:\n"
          "                            https://query1.finance.yahoo.com/v8/finance/chart/{})\n"
          "  -c, --connections N       max connections per host (default 16), and requests in\n"
          "                            flight per host over HTTP/2 (default 100)\n"
          "      --cacert FILE         trust this PEM bundle instead of the system store\n"
          "      --resolve H:P:ADDR[,ADDR...]  use these addresses for host H port P, as curl does\n"
          "      --dns-servers LIST    ADDR[:PORT],... name servers instead of resolv.conf's\n"
          "  -x, --proxy URL           HTTP proxy http://[user:pass@]host[:port] (default port\n"
          "                            1080); \"\" for none. Default: $https_proxy and the like\n"
          "      --noproxy LIST        hosts, domains, IPs or networks to reach directly, or '*'\n"
          "      --timeout SEC         per-attempt timeout, decimals allowed (default 10)\n"
          "      --connect-timeout SEC name lookup + TCP + TLS handshake timeout (default 5)\n"
          "      --retries N           retries for 429/502/503/504, resets, timeouts (default 2)\n"
          "      --user-agent STR      User-Agent header (default: a current browser's)\n"
          "  -f, --format FMT          table, json, csv or python (default table)\n"
          "  -v, --verbose             per-ticker progress and timings on stderr\n"
          "      --stats[=json]        counters and latency percentiles on stderr\n"
          "      --repeat R            run the whole batch R times over the same connections\n"
          "      --pipeline D          up to D requests in flight per connection (HTTP/1.1)\n"
          "      --session-cache FILE  keep TLS sessions across runs in FILE (default:\n"
          "                            $XDG_CACHE_HOME/qfetch/sessions or ~/.cache/qfetch/sessions)\n"
          "      --no-session-cache    neither read nor write a session cache\n"
          "      --early-data          send requests as TLS 1.3 early data when resuming (0-RTT;\n"
          "                            a GET may then be replayed by an attacker)\n"
          "      --tcp-fastopen        use TCP Fast Open where the kernel allows it\n"
          "      --compressed          ask for gzip or deflate and inflate the answers (default)\n"
          "      --no-compressed       do not ask for compression (bytes_read shows the cost)\n"
          "      --http1.1             HTTP/1.1 only (default: HTTP/2 when the server offers it)\n"
          "      --no-progress         no progress line on a terminal\n"
          "  -h, --help                this help\n"
          "      --version             qfetch's version and the OpenSSL it runs on\n\n"
          "Exit status: 0 all prices fetched, 1 some failed, 2 usage or configuration error.\n",
          stdout);
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("qfetch: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see qfetch --help)\n", stderr);
    return 2;
}

static int add_ticker(struct cli_args *a, const char *t)
{
    if (a->ntickers == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 16;
        const char **v = realloc(a->tickers, ncap * sizeof(*v));
        if (v == NULL)
            return usage_error("%s", "out of memory");
        a->tickers = v;
        a->cap = ncap;
    }
    a->tickers[a->ntickers++] = t;
    return 0;
}

int cli_args_empty(void)
{
    return usage_error("%s", "the symbol list is empty");
}

/* Bytes a block holds: symbols are at most QF_SYMBOL_MAX, so a few hundred to a thousand per
 * block, and a block costs one malloc. */
#define BLOCK_LEN 65536
/* A read gets at least this much room; a new block starts when less is left. */
#define READ_MIN 4096

struct cli_block {
    struct cli_block *prev;
    char b[BLOCK_LEN];
};

int cli_input_read(struct cli_input *in, int fd)
{
    assert(in->at == in->len || in->eof); /* the caller took every word */
    if (in->block == NULL || BLOCK_LEN - 1 - in->len < READ_MIN) {
        struct cli_block *nb = malloc(sizeof(*nb));
        if (nb == NULL)
            return usage_error("%s", "out of memory reading stdin");
        /* The word being read moves along: at most QF_SYMBOL_MAX + 1 bytes (see skip). */
        size_t keep = in->len - in->word;
        if (keep > 0)
            memcpy(nb->b, in->block->b + in->word, keep);
        nb->prev = in->block;
        in->block = nb;
        in->len = in->at = keep;
        in->word = 0;
    }
    /* One byte stays free for the NUL after a last word that no newline ends. */
    ssize_t n = read(fd, in->block->b + in->len, BLOCK_LEN - 1 - in->len);
    if (n < 0) {
        int e = errno;
        if (e == EINTR || e == EAGAIN)
            return 1;
        return usage_error("cannot read symbols from stdin: %s", strerror(e));
    }
    if (n == 0) {
        in->eof = 1;
        return 0;
    }
    if (memchr(in->block->b + in->len, '\0', (size_t)n) != NULL)
        return usage_error("%s", "stdin holds a NUL byte: symbols must be text");
    in->len += (size_t)n;
    return 1;
}

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

const char *cli_input_next(struct cli_input *in)
{
    char *b = in->block != NULL ? in->block->b : NULL;

    while (in->at < in->len) {
        size_t i = in->at++, w = in->word;
        if (is_blank(b[i])) {
            in->word = in->at;
            if (in->skip || i == w) {
                in->skip = 0;
                continue;
            }
            b[i] = '\0';
            return b + w;
        }
        if (in->skip) {
            in->word = in->at; /* nothing of an overlong word is kept */
        } else if (i - w == QF_SYMBOL_MAX + 1) {
            /* Refused whatever follows: hand it over now rather than hold all of it. */
            b[i] = '\0';
            in->skip = 1;
            in->word = in->at;
            return b + w;
        }
    }
    if (in->eof && !in->skip && in->len > in->word) {
        size_t w = in->word;
        b[in->len] = '\0';
        in->word = in->len;
        return b + w;
    }
    return NULL;
}

void cli_input_free(struct cli_input *in)
{
    while (in->block != NULL) {
        struct cli_block *prev = in->block->prev;
        free(in->block);
        in->block = prev;
    }
}

size_t cli_ceil(double x)
{
    size_t k = (size_t)x;
    return (double)k < x ? k + 1 : k;
}

/* Seconds with decimals, as curl's --max-time: positive and at most a day. */
static int parse_seconds(const char *s, const char *opt, int *out_ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v <= 0 || v > 86400) {
        fprintf(stderr, "qfetch: %s wants seconds between 0 and 86400, got '%s'\n", opt, s);
        return 2;
    }
    *out_ms = (int)cli_ceil(v * 1000);
    return 0;
}

static int parse_int(const char *s, const char *opt, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "qfetch: %s wants an integer from %ld to %ld, got '%s'\n", opt, lo, hi,
                s);
        return 2;
    }
    *out = (int)v;
    return 0;
}

/* Matches "-x", "--long" or "--long=value"; *val gets the inline value if any. */
static int is_opt(const char *arg, const char *s, const char *l, const char **val)
{
    size_t n = strlen(l);
    *val = NULL;
    if (s != NULL && strcmp(arg, s) == 0)
        return 1;
    if (strncmp(arg, l, n) == 0 && (arg[n] == '\0' || arg[n] == '=')) {
        if (arg[n] == '=')
            *val = arg + n + 1;
        return 1;
    }
    return 0;
}

int cli_args_parse(struct cli_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof(*a));
    a->retries = -1;
    a->repeat = 1;
    a->resolve = calloc((size_t)argc + 1, sizeof(*a->resolve));
    if (a->resolve == NULL)
        return usage_error("%s", "out of memory");
    int saw_t = 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *v;
        int rc = 0;
/* An option's value: inline after '=' or the next argument. */
#define VALUE()                                                                                \
    do {                                                                                       \
        if (v == NULL) {                                                                       \
            if (i + 1 >= argc)                                                                 \
                return usage_error("option %s needs a value", arg);                            \
            v = argv[++i];                                                                     \
        }                                                                                      \
    } while (0)
        if (is_opt(arg, "-t", "--tickers", &v)) {
            saw_t = 1;
            if (v != NULL && (rc = add_ticker(a, v)) != 0)
                return rc;
            while (i + 1 < argc && (argv[i + 1][0] != '-' || strcmp(argv[i + 1], "-") == 0)) {
                const char *t = argv[++i];
                if (strcmp(t, "-") == 0 && a->from_stdin)
                    return usage_error("%s", "-t - given twice");
                if (strcmp(t, "-") == 0) {
                    a->from_stdin = 1;
                    a->stdin_at = a->ntickers;
                } else if ((rc = add_ticker(a, t)) != 0) {
                    return rc;
                }
            }
        } else if (is_opt(arg, "-u", "--url", &v)) {
            VALUE();
            a->url = v;
        } else if (is_opt(arg, "-c", "--connections", &v)) {
            VALUE();
            rc = parse_int(v, "--connections", 1, 10000, &a->connections);
        } else if (is_opt(arg, NULL, "--cacert", &v)) {
            VALUE();
            a->cacert = v;
        } else if (is_opt(arg, NULL, "--dns-servers", &v)) {
            VALUE();
            a->dns_servers = v;
        } else if (is_opt(arg, "-x", "--proxy", &v)) {
            VALUE();
            a->proxy = v;
        } else if (is_opt(arg, NULL, "--noproxy", &v)) {
            VALUE();
            a->noproxy = v;
        } else if (is_opt(arg, NULL, "--resolve", &v)) {
            VALUE();
            a->resolve[a->nresolve++] = v;
        } else if (is_opt(arg, NULL, "--timeout", &v)) {
            VALUE();
            rc = parse_seconds(v, "--timeout", &a->timeout_ms);
        } else if (is_opt(arg, NULL, "--connect-timeout", &v)) {
            VALUE();
            rc = parse_seconds(v, "--connect-timeout", &a->connect_timeout_ms);
        } else if (is_opt(arg, NULL, "--retries", &v)) {
            VALUE();
            rc = parse_int(v, "--retries", 0, 100, &a->retries);
        } else if (is_opt(arg, NULL, "--user-agent", &v)) {
            VALUE();
            a->user_agent = v;
        } else if (is_opt(arg, "-f", "--format", &v)) {
            VALUE();
            if (strcmp(v, "table") == 0)
                a->format = CLI_TABLE;
            else if (strcmp(v, "json") == 0)
                a->format = CLI_JSON;
            else if (strcmp(v, "csv") == 0)
                a->format = CLI_CSV;
            else if (strcmp(v, "python") == 0)
                a->format = CLI_PYTHON;
            else
                return usage_error("unknown format '%s' (table, json, csv, python)", v);
        } else if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
            a->verbose = 1;
        } else if (strcmp(arg, "--stats") == 0) {
            a->stats = 1;
        } else if (strcmp(arg, "--stats=json") == 0) {
            a->stats = a->stats_json = 1;
        } else if (strcmp(arg, "--no-progress") == 0) {
            a->no_progress = 1;
        } else if (strcmp(arg, "--tcp-fastopen") == 0) {
            a->tcp_fastopen = 1;
        } else if (strcmp(arg, "--early-data") == 0) {
            a->early_data = 1;
        } else if (strcmp(arg, "--compressed") == 0) {
            a->no_compressed = 0;
        } else if (strcmp(arg, "--no-compressed") == 0) {
            a->no_compressed = 1;
        } else if (strcmp(arg, "--http1.1") == 0) {
            a->http1 = 1;
        } else if (strcmp(arg, "--no-session-cache") == 0) {
            a->no_session_cache = 1;
        } else if (is_opt(arg, NULL, "--session-cache", &v)) {
            VALUE();
            if (v[0] == '\0')
                return usage_error("%s", "--session-cache wants a file name");
            a->session_cache = v;
        } else if (is_opt(arg, NULL, "--pipeline", &v)) {
            VALUE();
            rc = parse_int(v, "--pipeline", 1, 1000, &a->pipeline);
        } else if (is_opt(arg, NULL, "--repeat", &v)) {
            VALUE();
            rc = parse_int(v, "--repeat", 1, 1000000, &a->repeat);
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            a->help = 1;
            return 0;
        } else if (strcmp(arg, "--version") == 0) {
            a->version = 1;
            return 0;
        } else if (arg[0] == '-') {
            return usage_error("unknown option '%s'", arg);
        } else {
            return usage_error("unexpected argument '%s' (symbols go after -t)", arg);
        }
#undef VALUE
        if (rc != 0)
            return rc;
    }
    if (!saw_t)
        return usage_error("%s", "no symbols: give them with -t SYM... or -t -");
    if (a->ntickers == 0 && !a->from_stdin)
        return cli_args_empty();
    return 0;
}

void cli_args_free(struct cli_args *a)
{
    free(a->tickers);
    free(a->resolve);
}
