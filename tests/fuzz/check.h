/* Invariant checks shared by the libFuzzer targets (tests/fuzz/fuzz_*.c) and the replay suite
 * (tests/test_fuzz_regress.c). Each runs one input through a path of qfetch and returns 0, or
 * 1 after writing the first broken invariant to why: the fuzzer aborts with it, the unit test
 * fails with it. Over-reads, leaks and undefined behaviour are left to the sanitizers: every
 * buffer handed to the code under test is allocated at its exact size. */
#ifndef QF_TESTS_FUZZ_CHECK_H
#define QF_TESTS_FUZZ_CHECK_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Scaffolding of the two check files: CHECK(cond, fmt, ...) returns 1 from the check function
 * after writing "file:line: message" to c->why. */
struct ctx {
    char *why;
    size_t whylen;
};

__attribute__((format(printf, 4, 5))) static inline int violation(struct ctx *c,
                                                                  const char *file, int line,
                                                                  const char *fmt, ...)
{
    va_list ap;
    const char *base = strrchr(file, '/');
    int n = snprintf(c->why, c->whylen, "%s:%d: ", base != NULL ? base + 1 : file, line);

    if (n >= 0 && (size_t)n < c->whylen) {
        va_start(ap, fmt);
        vsnprintf(c->why + n, c->whylen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return 1;
}

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond))                                                                           \
            return violation(c, __FILE__, __LINE__, __VA_ARGS__);                              \
    } while (0)

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

/* Response path: raw bytes -> qf_http (whole, and again in pieces) -> body -> qf_json_extract
 * (token array grown from small, and at the contract's bound) -> qf_price_format.
 * Input layout:
 *   byte 0, bits 0-3: K, the number of piece-size bytes after byte 1 (K = 0: one byte at a time)
 *           bit 4: the peer closes after the last byte (qf_http_finish)
 *           bit 5: body_max is QF_FUZZ_SMALL_BODY_MAX instead of QF_HTTP_BODY_MAX
 *           bit 6: the split feed grows buffers exactly to the contract's minimum, not doubling
 *           bit 7: the token array starts at 1 token instead of 16
 *   byte 1, bit 0: capture the headers (qf_http_set_hbuf, starting from an 8-byte buffer)
 *           bit 1: the request was HEAD (no_body)
 *           bit 2: the split feed runs with zero_copy (a body may stay in its feed)
 *           bit 3: a body coded gzip or deflate (its Content-Encoding) is inflated with
 *                  qf_inflate, whole and in the split's pieces, and the quote read from that
 *           bits 4-7: R, the split inflation's output buffer is 1 + 37 * R bytes
 *   bytes 2..K+1: piece sizes, used in turn: b < 128 gives b + 1 bytes, else (b - 127) * 256
 *   the rest: the response bytes as they come off the socket. */
#define QF_FUZZ_SMALL_BODY_MAX 1024
#define QF_FUZZ_INFLATE_MAX (1u << 20) /* inflated body cap for bit 3 */
int qf_fuzz_check_response(const unsigned char *data, size_t len, char *why, size_t whylen);

/* CLI path: argv -> cli_args_parse -> each ticker through qf_symbol_encode, the URL template
 * through the engine's template parser, and (when parsing succeeded) rows made from the
 * tickers through every output format, json and csv read back.
 * Input layout: bytes 0-1 (little endian) modulo (rest + 1) = S; the last S bytes are stdin
 * (for '-t -'), the bytes before them are argv[1..], separated by NUL bytes. */
int qf_fuzz_check_args(const unsigned char *data, size_t len, char *why, size_t whylen);

#endif
