/* Shared unit-test helpers; see testutil.h. Allocation failures abort: this is test code. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qfetch.h"

#define DEFAULT_FIXTURES "../shared/fixtures/yahoo"

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Layout: [meta page: mapping size][rw pages][PROT_NONE page]. Returns the guard page start,
 * i.e. the end of the rw bytes. */
static char *guard_map(size_t rw_len)
{
    size_t ps = page_size();
    size_t rw = (rw_len + ps - 1) / ps * ps;
    size_t total = ps + rw + ps;
    char *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (base == MAP_FAILED)
        abort();
    memcpy(base, &total, sizeof(total));
    if (mprotect(base + ps + rw, ps, PROT_NONE) != 0)
        abort();
    return base + ps + rw;
}

static void guard_unmap(char *end, size_t rw_len)
{
    size_t ps = page_size();
    size_t rw = (rw_len + ps - 1) / ps * ps;
    munmap(end - rw - ps, ps + rw + ps);
}

const char *qf_test_guard_copy(const void *data, size_t len)
{
    char *end = guard_map(len);
    if (len > 0)
        memcpy(end - len, data, len);
    return end - len;
}

/* The copy is right-aligned in ceil(len / page) pages, so its first byte sits in the first rw
 * page and the meta page is the one before it. */
void qf_test_guard_free(const char *p)
{
    size_t ps = page_size(), total;
    char *meta;

    if (p == NULL)
        return;
    meta = (char *)((size_t)p / ps * ps) - ps;
    memcpy(&total, meta, sizeof(total));
    munmap(meta, total);
}

int qf_test_read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0, got;

    if (f == NULL)
        return -errno;
    do {
        if (cap - n < 65536)
            buf = xrealloc(buf, cap = cap * 2 + 65536);
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
    } while (got > 0);
    if (ferror(f)) {
        int e = errno ? errno : EIO;
        fclose(f);
        free(buf);
        return -e;
    }
    fclose(f);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

const char *qf_test_fixtures_dir(void)
{
    const char *dir = getenv("QF_FIXTURES");
    struct stat st;

    if (dir == NULL || dir[0] == '\0')
        dir = DEFAULT_FIXTURES;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return NULL;
    return dir;
}

int qf_test_read_fixture(const char *name, char **data, size_t *len)
{
    const char *dir = qf_test_fixtures_dir();
    char path[4096];

    if (dir == NULL)
        return -ENOENT;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return -ENAMETOOLONG;
    return qf_test_read_file(path, data, len);
}

static void put(char **buf, size_t *n, size_t *cap, const void *p, size_t len)
{
    if (*cap - *n < len + 1) {
        *cap = (*n + len + 1) * 2;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *n, p, len);
    *n += len;
    (*buf)[*n] = '\0';
}

static void puts_(char **buf, size_t *n, size_t *cap, const char *s)
{
    put(buf, n, cap, s, strlen(s));
}

static void put_chunks(char **buf, size_t *n, size_t *cap, const char *body, size_t len,
                       const struct qf_test_chunking *ck)
{
    static const size_t dflt = 4096;
    const size_t *sizes = ck && ck->nsizes ? ck->sizes : &dflt;
    size_t nsizes = ck && ck->nsizes ? ck->nsizes : 1, off = 0, k = 0;
    char line[64];

    while (off < len) {
        size_t c = sizes[k++ % nsizes];
        if (c == 0 || c > len - off)
            c = len - off;
        snprintf(line, sizeof(line), "%zx", c);
        puts_(buf, n, cap, line);
        puts_(buf, n, cap, ck && ck->ext ? ck->ext : "");
        puts_(buf, n, cap, "\r\n");
        put(buf, n, cap, body + off, c);
        puts_(buf, n, cap, "\r\n");
        off += c;
    }
    puts_(buf, n, cap, "0");
    puts_(buf, n, cap, ck && ck->ext ? ck->ext : "");
    puts_(buf, n, cap, "\r\n");
    puts_(buf, n, cap, ck && ck->trailers ? ck->trailers : "");
    puts_(buf, n, cap, "\r\n");
}

size_t qf_test_wrap(const char *head, const void *body, size_t len, enum qf_test_framing fr,
                    const struct qf_test_chunking *ck, char **out)
{
    char *buf = NULL, line[64];
    size_t n = 0, cap = 0;

    puts_(&buf, &n, &cap, head);
    switch (fr) {
    case QF_TEST_CL:
        snprintf(line, sizeof(line), "Content-Length: %zu\r\n\r\n", len);
        puts_(&buf, &n, &cap, line);
        put(&buf, &n, &cap, body, len);
        break;
    case QF_TEST_CHUNKED:
        puts_(&buf, &n, &cap, "Transfer-Encoding: chunked\r\n\r\n");
        put_chunks(&buf, &n, &cap, body, len, ck);
        break;
    case QF_TEST_EOF:
        puts_(&buf, &n, &cap, "\r\n");
        put(&buf, &n, &cap, body, len);
        break;
    }
    *out = buf;
    return n;
}

/* Feeds one piece the way engine/conn.c will: on QF_ENOSPC, grow (double, at least enough
 * for this piece, at most body_max), install, call again with the same bytes. */
static ssize_t feed_piece(struct qf_http *h, const char *p, size_t len, unsigned *grows)
{
    ssize_t r;

    while ((r = qf_http_feed(h, p, len)) == QF_ENOSPC) {
        size_t need = h->body_len + len, cap = h->body_cap ? h->body_cap * 2 : 64;
        if (cap < need)
            cap = need;
        if (cap > h->body_max)
            cap = h->body_max;
        if (cap <= h->body_cap)
            return -1000; /* no progress possible: a parser bug */
        qf_http_set_body(h, xrealloc(h->body, cap), cap);
        (*grows)++;
    }
    return r;
}

int qf_test_http_zero_copy;

/* One reusable guard slot: each piece is moved to end at the guard page before feeding. */
static void drive_pieces(struct qf_http *h, const char *resp, size_t len, size_t first, size_t step,
                         struct qf_test_http_run *out)
{
    size_t maxp = step == 0 ? len : first > step ? first : step, off = 0;
    char *end;

    if (maxp > len)
        maxp = len;
    end = guard_map(maxp);
    while (off < len && !h->complete) {
        size_t n = off == 0 && first > 0 ? first : step ? step : len - off;
        ssize_t r;
        if (n > len - off)
            n = len - off;
        memcpy(end - n, resp + off, n);
        r = feed_piece(h, end - n, n, &out->grows);
        if (r < 0) {
            out->rc = (int)r;
            break;
        }
        out->consumed += (size_t)r;
        off += (size_t)r;
        if ((size_t)r != n && !h->complete) {
            out->rc = -1001; /* short count without completion: contract violation */
            break;
        }
        if (h->view != NULL && !h->complete) {
            out->rc = -1003; /* a view that outlives its feed */
            break;
        }
    }
    /* Use a body left in the fed bytes before they go, as the engine does. */
    if (h->view != NULL && h->complete && out->rc == 0) {
        char *b = xrealloc(h->body, h->body_len ? h->body_len : 1);
        memcpy(b, h->view, h->body_len);
        h->body = b;
        h->body_cap = h->body_len;
        h->view = NULL;
        out->viewed = 1;
    }
    guard_unmap(end, maxp);
}

void qf_test_http_drive(const char *resp, size_t len, size_t first, size_t step, int eof,
                        size_t body_max, struct qf_test_http_run *out)
{
    struct qf_http h;

    memset(out, 0, sizeof(*out));
    qf_http_init(&h, NULL, 0, body_max);
    h.zero_copy = qf_test_http_zero_copy;
    drive_pieces(&h, resp, len, first, step, out);
    if (out->rc == 0 && !h.complete && eof)
        out->rc = qf_http_finish(&h);
    if (out->rc == 0 && h.complete && qf_http_feed(&h, "X", 1) != 0)
        out->rc = -1002; /* feeds after completion must consume nothing */
    out->complete = h.complete;
    out->status = h.status;
    out->keep_alive = h.keep_alive;
    out->retry_after_s = h.retry_after_s;
    snprintf(out->errmsg, sizeof(out->errmsg), "%s", qf_http_errmsg(&h));
    out->body = h.body;
    out->body_len = h.body_len;
}

void qf_test_http_run_free(struct qf_test_http_run *r)
{
    free(r->body);
    r->body = NULL;
}

int qf_test_json_extract(const char *body, size_t len, unsigned start, struct qf_quote *q,
                         unsigned *ntoks)
{
    unsigned n = start ? start : 1;
    jsmntok_t *toks = xrealloc(NULL, n * sizeof(*toks));
    int rc;

    while ((rc = qf_json_extract(body, len, toks, n, q)) == QF_ENOSPC) {
        if (n > len) {
            rc = -1000; /* more tokens than the contract's bound */
            break;
        }
        n *= 2;
        toks = xrealloc(toks, n * sizeof(*toks));
    }
    free(toks);
    if (ntoks)
        *ntoks = n;
    return rc;
}

size_t qf_test_json_compact(const char *s, size_t len, char *out)
{
    size_t i, n = 0;
    int in_str = 0, esc = 0;

    for (i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            in_str = esc || c != '"';
            esc = !esc && c == '\\';
        } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
            continue;
        } else {
            in_str = c == '"';
        }
        out[n++] = c;
    }
    return n;
}
