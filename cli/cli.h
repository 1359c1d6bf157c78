/* qfetch command line: argument parsing and output formats. Uses include/qfetch.h only. */
#ifndef QF_CLI_H
#define QF_CLI_H

#include <stddef.h>
#include <stdint.h>

enum cli_format { CLI_TABLE, CLI_JSON, CLI_CSV, CLI_PYTHON };

struct cli_args {
    const char **tickers; /* borrowed from argv or stdin_buf */
    size_t ntickers, cap;
    char *stdin_buf;
    const char *url, *cacert, *user_agent, *dns_servers;
    const char *proxy, *noproxy; /* NULL: not given (the environment's then) */
    const char **resolve; /* NULL-terminated */
    size_t nresolve;
    int connections, timeout_ms, connect_timeout_ms, retries; /* retries -1: not given */
    enum cli_format format;
    int verbose, stats, help, version;
    int stats_json, no_progress, tcp_fastopen, early_data, no_session_cache;
    int no_compressed; /* --no-compressed: no Accept-Encoding (the last of the pair wins) */
    int pipeline, repeat;
    const char *session_cache;
};

/* One input symbol's outcome in 16 bytes (10,000 symbols: 160 KB). Its words live in one
 * text arena shared by all rows: "PRICE\0CURRENCY\0" on success, "MESSAGE\0" on error. */
struct cli_row {
    const char *symbol;
    uint32_t text; /* offset in the arena; 0: no result yet */
    int16_t err;
    uint16_t status;
};

/* Returns 0, or 2 after printing one line naming the problem to stderr. */
int cli_args_parse(struct cli_args *a, int argc, char **argv);
void cli_args_free(struct cli_args *a);
void cli_usage(void);
/* ceil() for 0 <= x < 2^53, so the command needs no libm (one shared library less to load). */
size_t cli_ceil(double x);

/* --stats percentiles, nearest rank. cli_pct_order() arranges v so that the ranks of p50, p90,
 * p99 and the maximum hold their values (a selection, not a sort); cli_pct() then reads the
 * one for p in {50, 90, 99, 100}. n > 0. */
void cli_pct_order(uint32_t *v, size_t n);
uint32_t cli_pct(const uint32_t *v, size_t n, double p);

/* The rows' text arena: offset 0 holds a NUL meaning "no words yet". cli_text_add() appends
 * "a\0b\0" ("a\0" when b is NULL) and returns its offset, 0 when out of memory. */
struct cli_text {
    char *b;
    size_t len, cap;
};
uint32_t cli_text_add(struct cli_text *t, const char *a, const char *b);

/* text: the rows' arena. */
void cli_out_print(enum cli_format f, const struct cli_row *rows, size_t n, const char *text);

#endif
