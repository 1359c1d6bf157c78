/* poll_host: qfetch driven by a host program's own poll() loop, with no threads. The loop
 * watches stdin and qf_client_fd(), sleeps no longer than qf_client_timeout_ms(), and calls
 * qf_client_step() when the client's fd is readable or its deadline has come. Every stdin line
 * is submitted while the loop runs: a ticker goes to the quote API, a URL ("://" in it) is a
 * general GET. Uses include/qfetch.h only.
 *
 *     (echo AAPL; sleep 1; echo https://example.com/; echo MSFT) | poll_host
 *
 * Environment: QF_URL (quote URL template), QF_CACERT (PEM bundle to trust), QF_TIMEOUT_MS
 * (per-attempt timeout). Output, one line
 * per result in completion order: "SYMBOL PRICE CURRENCY", "URL STATUS BYTES bytes", or
 * "WHAT error: REASON". Exit status 0 when everything succeeded (HTTP status below 400), 1
 * otherwise, 2 for a configuration error. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qfetch.h>

#define LINE_MAX_LEN 2048

struct host {
    qf_client *c;
    unsigned long submitted, finished, failed, wakeups, steps;
    char line[LINE_MAX_LEN + 1];
    size_t len;
    int overlong; /* discarding the rest of a line that did not fit */
};

struct get {
    struct host *h;
    char url[]; /* our copy: qf_client_request() copies it too, but we print it at the end */
};

static void on_quote(const struct qf_result *r, void *udata)
{
    struct host *h = udata;

    h->finished++;
    if (r->err == 0) {
        printf("%s %s %s\n", r->symbol, r->price_text, r->currency);
    } else {
        printf("%s error: %s\n", r->symbol, r->errmsg[0] ? r->errmsg : qf_strerror(r->err));
        h->failed++;
    }
}

static void on_response(const struct qf_response *r)
{
    struct get *g = r->udata;

    g->h->finished++;
    if (r->err == 0) {
        printf("%s %d %zu bytes\n", g->url, r->status, r->body_len);
        if (r->status >= 400)
            g->h->failed++;
    } else {
        printf("%s error: %s\n", g->url, r->errmsg[0] ? r->errmsg : qf_strerror(r->err));
        g->h->failed++;
    }
    free(g); /* the callback runs exactly once per request that was not cancelled */
}

/* One stdin line: blank lines and "#" comments are skipped. */
static void submit(struct host *h, char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    if (n == 0 || s[0] == '#')
        return;
    int rc;
    if (strstr(s, "://") != NULL) {
        struct get *g = malloc(sizeof(*g) + n + 1);
        if (g == NULL) {
            rc = QF_ENOMEM;
        } else {
            g->h = h;
            memcpy(g->url, s, n + 1);
            struct qf_request rq = {.url = g->url, .on_response = on_response, .udata = g};
            rc = qf_client_request(h->c, &rq);
            if (rc < 0)
                free(g);
        }
    } else {
        rc = qf_client_add(h->c, s);
    }
    if (rc < 0) {
        printf("%s error: %s\n", s, qf_strerror(rc));
        h->failed++;
        return;
    }
    h->submitted++;
}

/* Reads what stdin has (poll said it would not block). Returns 0 at EOF, 1 otherwise. */
static int read_stdin(struct host *h)
{
    char buf[4096];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (n == 0) {
        if (h->len > 0 && !h->overlong) {
            h->line[h->len] = '\0';
            submit(h, h->line);
        }
        h->len = 0;
        return 0;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            h->line[h->len] = '\0';
            if (h->overlong) {
                printf("%.40s... error: line longer than %d bytes\n", h->line, LINE_MAX_LEN);
                h->failed++;
            } else {
                submit(h, h->line);
            }
            h->len = 0;
            h->overlong = 0;
        } else if (h->len < LINE_MAX_LEN) {
            h->line[h->len++] = buf[i];
        } else {
            h->overlong = 1;
        }
    }
    return 1;
}

int main(void)
{
    const char *t = getenv("QF_TIMEOUT_MS");
    struct qf_options o = {
        .url_template = getenv("QF_URL"),
        .cacert = getenv("QF_CACERT"),
        .timeout_ms = t != NULL ? atoi(t) : 0,
    };
    struct host h = {0};
    char err[256];

    /* Results should show up as they complete even when stdout is a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    h.c = qf_client_new(&o, on_quote, &h, err, sizeof(err));
    if (h.c == NULL) {
        fprintf(stderr, "poll_host: %s\n", err);
        return 2;
    }
    struct pollfd pfd[2] = {
        {.fd = STDIN_FILENO, .events = POLLIN},
        {.fd = qf_client_fd(h.c), .events = POLLIN},
    };
    int rc = 0;
    while (pfd[0].fd >= 0 || h.finished < h.submitted) {
        /* -1: the client has nothing due, so only stdin or I/O can wake us. */
        int timeout_ms = qf_client_timeout_ms(h.c);
        int n = poll(pfd, 2, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("poll_host: poll");
            rc = 2;
            break;
        }
        h.wakeups++;
        if (pfd[0].revents != 0 && !read_stdin(&h))
            pfd[0].fd = -1; /* poll() skips negative fds */
        /* The client's fd is readable for I/O and for expired deadlines (a timerfd sits in
         * it); a timeout of 0 means queued work is ready, so a busy stdin cannot starve it. */
        if (n == 0 || timeout_ms == 0 || pfd[1].revents != 0) {
            h.steps++;
            int left = qf_client_step(h.c);
            if (left < 0) {
                fprintf(stderr, "poll_host: %s\n", qf_strerror(left));
                rc = 2;
                break;
            }
        }
    }
    fprintf(stderr, "poll_host: %lu requests, %lu failed, %lu wakeups, %lu steps\n", h.submitted,
            h.failed, h.wakeups, h.steps);
    qf_client_free(h.c);
    return rc ? rc : h.failed ? 1 : 0;
}
