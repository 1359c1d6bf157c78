/* qfetch command line: argument parsing and output formats. Uses include/qfetch.h only. */
#ifndef QF_CLI_H
#define QF_CLI_H

#include <stddef.h>
#include <stdint.h>

enum cli_format { CLI_TABLE, CLI_JSON, CLI_CSV, CLI_PYTHON };

struct cli_args {
    const char **tickers; /* borrowed from argv */
    size_t ntickers, cap;
    int from_stdin; /* '-t -': stdin's symbols come before tickers[stdin_at] */
    size_t stdin_at;
    const char *url, *cacert, *user_agent, *dns_servers;
    const char *proxy, *noproxy; /* NULL: not given (the environment's then) */
    const char **resolve; /* NULL-terminated */
    size_t nresolve;
    int connections, timeout_ms, connect_timeout_ms, retries; /* retries -1: not given */
    enum cli_format format;
    int verbose, stats, help, version;
    int stats_json, no_progress, tcp_fastopen, early_data, no_session_cache;
    int no_compressed; /* --no-compressed: no Accept-Encoding (the last of the pair wins) */
    int http1;         /* --http1.1 */
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

/* Returns 0, or 2 after printing one line naming the problem to stderr. Reads no input:
 * with '-t -' the command reads stdin while it fetches (struct cli_input). */
int cli_args_parse(struct cli_args *a, int argc, char **argv);
void cli_args_free(struct cli_args *a);
/* The usage error of an input without symbols (also '-t -' on an empty stdin): returns 2. */
int cli_args_empty(void);

/* '-t -': symbols read from a file descriptor as they arrive, so that fetching starts before
 * the input ends. Words are separated by ASCII whitespace and NUL-terminated in place, in
 * 64 KiB blocks that never move: a row may point at its symbol until cli_input_free().
 * Zeroed: ready to read. */
struct cli_block;
struct cli_input {
    struct cli_block *block; /* the newest; each links to the one before */
    size_t len;              /* bytes read into the newest block */
    size_t word, at;         /* the word being read starts at word; [at, len) is unscanned */
    int eof, skip;           /* skip: the rest of an overlong word */
};
/* One read(2) (poll() said it would not block); call cli_input_next() until NULL before the
 * next one. Returns 1 after reading (or being interrupted), 0 at the end of the input, 2
 * after printing a usage error: a read error, a NUL byte, out of memory. */
int cli_input_read(struct cli_input *in, int fd);
/* The next whole word read so far, NULL when there is none yet. A word longer than
 * QF_SYMBOL_MAX + 1 bytes comes out cut to that length as soon as they are in (no symbol is
 * that long, whatever follows) and the rest of it is skipped. */
const char *cli_input_next(struct cli_input *in);
void cli_input_free(struct cli_input *in);
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

/* Output printed as rows complete, in input order. Zeroed but for format: nothing printed. */
struct cli_out {
    enum cli_format format;
    size_t next; /* rows [0, next) are out */
    int opened;  /* the list's opening ("[", the CSV header) is out */
    /* python: one-line width of the successful rows among [0, py_seen), their count, and
     * how many of them are out */
    size_t py_width, py_seen, py_ok, py_printed;
};
/* Prints what rows [o->next, ready) allow, and with end (ready is then the row count) the
 * rest and the list's close. json and csv print every row at once; python once its layout is
 * known (the list goes on one line only when all of it fits in 80 columns); the table waits
 * for the end, its first column being as wide as the longest symbol. Output is byte for byte
 * what one call with every row prints. text: the rows' arena. Flushing is the caller's. */
void cli_out_rows(struct cli_out *o, const struct cli_row *rows, size_t ready, int end,
                  const char *text);
/* Every row at once: cli_out_rows() with end. */
void cli_out_print(enum cli_format f, const struct cli_row *rows, size_t n, const char *text);

#endif
