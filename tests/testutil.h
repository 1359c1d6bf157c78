/* Helpers shared by the unit tests: guard-page copies, fixture files, HTTP framing, and
 * drivers that push bytes through the parsers the way engine/ does (growing buffers on
 * QF_ENOSPC). Test code: allocates freely, aborts on allocation failure. */
#ifndef QF_TESTS_TESTUTIL_H
#define QF_TESTS_TESTUTIL_H

#include <stddef.h>

#include "parser/http.h"
#include "parser/json.h"

/* Copy of data[0..len) that ends exactly where a PROT_NONE page starts: reading one byte past
 * the end faults, with or without ASan. Free with qf_test_guard_free(). */
const char *qf_test_guard_copy(const void *data, size_t len);
void qf_test_guard_free(const char *p);

/* Reads a whole file into *data (malloc'd, NUL-terminated beyond *len). 0 or -errno. */
int qf_test_read_file(const char *path, char **data, size_t *len);

/* $QF_FIXTURES, else ../shared/fixtures/yahoo (relative to the repo root, where tests run);
 * NULL when that directory does not exist. */
const char *qf_test_fixtures_dir(void);

/* Reads <fixtures dir>/<name>. 0, -ENOENT without a fixtures dir, or -errno. */
int qf_test_read_fixture(const char *name, char **data, size_t *len);

/* How qf_test_wrap() frames a body. */
enum qf_test_framing {
    QF_TEST_CL,      /* Content-Length */
    QF_TEST_CHUNKED, /* Transfer-Encoding: chunked */
    QF_TEST_EOF,     /* no length: the body ends when the peer closes */
};

/* Chunked framing details; NULL means one chunk per 4096 bytes, no extensions, no trailers. */
struct qf_test_chunking {
    const size_t *sizes; /* chunk sizes, used in turn (cycled) */
    size_t nsizes;
    const char *ext;      /* appended after each chunk size, e.g. ";name=value", or NULL */
    const char *trailers; /* trailer lines, each ending in \r\n, or NULL */
};

/* Builds head + framing headers + "\r\n" + framed body into *out (malloc'd). head is the
 * status line and any headers, each line ending in \r\n. Returns the length. */
size_t qf_test_wrap(const char *head, const void *body, size_t len, enum qf_test_framing fr,
                    const struct qf_test_chunking *ck, char **out);

/* Everything observable after driving one response through qf_http. */
struct qf_test_http_run {
    int rc;       /* last error from feed/finish, 0 when none */
    int complete; /* h.complete at the end */
    int status;
    int keep_alive;
    int retry_after_s;
    size_t consumed; /* bytes qf_http_feed() consumed in total */
    char *body;      /* malloc'd copy of the body buffer (may be NULL) */
    size_t body_len;
    unsigned grows; /* QF_ENOSPC rounds */
    int viewed;     /* zero-copy: the body was used where it arrived (then copied into body) */
    char errmsg[sizeof(((struct qf_http *)0)->errmsg)]; /* qf_http_errmsg() at the end */
};

/* Non-zero: qf_test_http_drive() sets zero_copy on its parser. */
extern int qf_test_http_zero_copy;

/* Feeds resp[0..len) to a fresh qf_http: first a piece of `first` bytes (0: none), then pieces
 * of `step` bytes (0: the rest at once). Each piece is copied to end at a guard page. The body
 * buffer starts empty and grows on QF_ENOSPC as the engine does (doubling, capped at
 * body_max). Stops at completion or error; when eof is set and the response is still open,
 * calls qf_http_finish(). */
void qf_test_http_drive(const char *resp, size_t len, size_t first, size_t step, int eof,
                        size_t body_max, struct qf_test_http_run *out);
void qf_test_http_run_free(struct qf_test_http_run *r);

/* qf_json_extract() with a token array that starts at `start` tokens and doubles on
 * QF_ENOSPC, like the engine. *ntoks (optional) receives the final array size. */
int qf_test_json_extract(const char *body, size_t len, unsigned start, struct qf_quote *q,
                         unsigned *ntoks);

/* Removes JSON whitespace outside strings: out (>= len bytes) receives the compact form.
 * Returns its length. */
size_t qf_test_json_compact(const char *s, size_t len, char *out);

#endif
