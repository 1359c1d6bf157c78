/* Benchmark contender: the same GETs as qfetch through libcurl's multi_socket_action API on one
 * epoll set (socket callback -> epoll_ctl, timer callback -> epoll_wait's timeout), at most K
 * connections, and the same JSON work as qfetch: qf_json_extract() + qf_price_format().
 * Usage: curl_multi URL_TEMPLATE K [CAFILE] < symbols     ("{}" in the template is the symbol)
 * Prints "SYM,price" (or "SYM,error,reason") per symbol in input order; exit 0 when all succeed.
 * Transfers are recycled: K easy handles, each re-added with the next URL when it finishes. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "parser/json.h"
#include "parser/price.h"
#include "qfetch.h"

#define MAX_EVENTS 64
#define BODY_MAX (8 * 1024 * 1024)
#define RESULT_LEN 32
#define RUN_LIMIT_MS (10 * 60 * 1000) /* the whole run; the loop gives up after this */

struct xfer {
    CURL *easy;
    size_t idx;
    char *body;
    size_t len, cap;
    int too_big;
};

struct bench {
    CURLM *multi;
    CURLSH *share;
    int epfd;
    long long deadline_ms; /* libcurl's timer; -1 when unset */
    const char *tmpl;
    char **syms;
    size_t nsyms, next, done, failed;
    char (*out)[RESULT_LEN];
    jsmntok_t *toks;
    unsigned ntoks;
    long conns;
    char url[2048];
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct bench *b = userp;
    struct epoll_event ev = {0};

    (void)e;
    if (what == CURL_POLL_REMOVE) {
        /* libcurl may already have closed s: EBADF here is harmless. */
        if (socketp != NULL)
            epoll_ctl(b->epfd, EPOLL_CTL_DEL, s, NULL);
        curl_multi_assign(b->multi, s, NULL);
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    ev.data.fd = s;
    if (socketp == NULL) {
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, s, &ev) < 0)
            return -1;
        curl_multi_assign(b->multi, s, b);
    } else if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, s, &ev) < 0) {
        return -1;
    }
    return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
    struct bench *b = userp;

    (void)m;
    b->deadline_ms = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    return 0;
}

static size_t on_data(char *p, size_t size, size_t n, void *userp)
{
    struct xfer *x = userp;
    size_t len = size * n;

    if (len > BODY_MAX - x->len) {
        x->too_big = 1;
        return 0;
    }
    if (x->len + len > x->cap) {
        size_t cap = x->cap ? x->cap : 16384;
        char *nb;
        while (cap < x->len + len)
            cap *= 2;
        nb = realloc(x->body, cap);
        if (nb == NULL)
            return 0;
        x->body = nb, x->cap = cap;
    }
    memcpy(x->body + x->len, p, len);
    x->len += len;
    return len;
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Template with "{}" replaced by the percent-encoded symbol, as qfetch builds its URLs. */
static int build_url(struct bench *b, const char *sym)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *brace = strstr(b->tmpl, "{}");
    size_t pre = (size_t)(brace - b->tmpl), o = pre;
    const char *rest = brace + 2;

    if (pre >= sizeof(b->url))
        return -1;
    memcpy(b->url, b->tmpl, pre);
    for (const unsigned char *s = (const unsigned char *)sym; *s != '\0'; s++) {
        if (o + 4 >= sizeof(b->url))
            return -1;
        if (is_unreserved(*s)) {
            b->url[o++] = (char)*s;
        } else {
            b->url[o++] = '%';
            b->url[o++] = hex[*s >> 4];
            b->url[o++] = hex[*s & 15];
        }
    }
    if (o + strlen(rest) + 1 > sizeof(b->url))
        return -1;
    memcpy(b->url + o, rest, strlen(rest) + 1);
    return 0;
}

static int start(struct bench *b, struct xfer *x)
{
    x->idx = b->next++;
    x->len = 0;
    x->too_big = 0;
    if (build_url(b, b->syms[x->idx]) < 0)
        return -1;
    curl_easy_setopt(x->easy, CURLOPT_URL, b->url);
    return curl_multi_add_handle(b->multi, x->easy) == CURLM_OK ? 0 : -1;
}

static void set_error(struct bench *b, size_t idx, const char *what)
{
    snprintf(b->out[idx], RESULT_LEN, "error,%s", what);
    b->failed++;
}

/* The same JSON work as qfetch: tokenize the whole body, walk to the price, format cents. */
static void extract(struct bench *b, struct xfer *x)
{
    struct qf_quote q;
    int rc;

    while ((rc = qf_json_extract(x->body, x->len, b->toks, b->ntoks, &q)) == QF_ENOSPC) {
        unsigned n = b->ntoks * 2;
        jsmntok_t *t = realloc(b->toks, n * sizeof(*t));
        if (t == NULL) {
            set_error(b, x->idx, "out of memory");
            return;
        }
        b->toks = t, b->ntoks = n;
    }
    if (rc != 0) {
        set_error(b, x->idx, rc == QF_ENOPRICE ? "no price" : "bad JSON");
        return;
    }
    if (qf_price_format(q.price, b->out[x->idx], RESULT_LEN) < 0)
        set_error(b, x->idx, "price out of range");
}

static void finish(struct bench *b, struct xfer *x, CURLcode res)
{
    long code = 0, nconn = 0;

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &nconn);
    b->conns += nconn;
    b->done++;
    if (x->too_big)
        set_error(b, x->idx, "body too large");
    else if (res != CURLE_OK)
        set_error(b, x->idx, curl_easy_strerror(res));
    else if (code != 200)
        set_error(b, x->idx, "HTTP status not 200");
    else
        extract(b, x);
}

static int drain_done(struct bench *b)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(b->multi, &left)) != NULL) {
        char *priv = NULL;
        struct xfer *x;
        CURL *e = msg->easy_handle;
        CURLcode res = msg->data.result;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        x = (struct xfer *)(void *)priv;
        finish(b, x, res);
        curl_multi_remove_handle(b->multi, e);
        if (b->next < b->nsyms && start(b, x) < 0)
            return -1;
    }
    return 0;
}

static int run(struct bench *b)
{
    struct epoll_event evs[MAX_EVENTS];
    long long give_up = now_ms() + RUN_LIMIT_MS;
    int running = 0;

    while (b->done < b->nsyms) {
        int wait_ms = -1, n;
        long long now = now_ms();
        if (now > give_up) {
            fprintf(stderr, "curl_multi: gave up after %d ms\n", RUN_LIMIT_MS);
            return -1;
        }
        if (b->deadline_ms >= 0)
            wait_ms = b->deadline_ms <= now ? 0 : (int)(b->deadline_ms - now);
        if (wait_ms < 0 || wait_ms > 1000)
            wait_ms = 1000;
        n = epoll_wait(b->epfd, evs, MAX_EVENTS, wait_ms);
        if (n < 0 && errno != EINTR) {
            perror("curl_multi: epoll_wait");
            return -1;
        }
        for (int i = 0; i < n; i++) {
            int mask = 0;
            if (evs[i].events & EPOLLIN)
                mask |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT)
                mask |= CURL_CSELECT_OUT;
            if (evs[i].events & (EPOLLERR | EPOLLHUP))
                mask |= CURL_CSELECT_ERR;
            curl_multi_socket_action(b->multi, evs[i].data.fd, mask, &running);
        }
        if (b->deadline_ms >= 0 && now_ms() >= b->deadline_ms) {
            /* Cleared first: the action may arm a new timer through on_timer(). */
            b->deadline_ms = -1;
            curl_multi_socket_action(b->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        if (drain_done(b) < 0)
            return -1;
    }
    return 0;
}

/* Whitespace-separated symbols from stdin; the returned buffer holds them in place. */
static char *read_symbols(struct bench *b)
{
    size_t cap = 65536, len = 0, n = 0, scap = 1024;
    char *buf = malloc(cap + 1);
    char *save = NULL;

    b->syms = malloc(scap * sizeof(*b->syms));
    if (buf == NULL || b->syms == NULL)
        goto fail;
    for (;;) {
        size_t got;
        if (len == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (nb == NULL)
                goto fail;
            buf = nb, cap *= 2;
        }
        got = fread(buf + len, 1, cap - len, stdin);
        if (got == 0)
            break;
        len += got;
    }
    buf[len] = '\0';
    for (char *t = strtok_r(buf, " \t\r\n", &save); t != NULL;
         t = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == scap) {
            char **ns = realloc(b->syms, scap * 2 * sizeof(*ns));
            if (ns == NULL)
                goto fail;
            b->syms = ns, scap *= 2;
        }
        b->syms[n++] = t;
    }
    b->nsyms = n;
    return buf;
fail:
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    struct bench b = {.epfd = -1, .deadline_ms = -1};
    struct xfer *xs = NULL;
    char *symbuf = NULL;
    const char *cafile = argc > 3 && argv[3][0] ? argv[3] : NULL;
    struct curl_slist *hdrs = NULL;
    long k = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
    size_t nx = 0;
    int status = 2;

    if (argc < 3 || k < 1 || k > 10000 || strstr(argv[1], "{}") == NULL) {
        fprintf(stderr,
                "usage: curl_multi URL_TEMPLATE K [CAFILE [HEADER...]] < symbols\n"
                "  (CAFILE \"\": the default trust store; HEADER: \"Name: value\", replacing\n"
                "  libcurl's own header of that name)\n");
        return 2;
    }
    b.tmpl = argv[1];
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 2;
    symbuf = read_symbols(&b);
    b.ntoks = 256;
    b.toks = malloc(b.ntoks * sizeof(*b.toks));
    b.out = calloc(b.nsyms ? b.nsyms : 1, sizeof(*b.out));
    b.epfd = epoll_create1(EPOLL_CLOEXEC);
    b.multi = curl_multi_init();
    b.share = curl_share_init();
    if (symbuf == NULL || b.toks == NULL || b.out == NULL || b.epfd < 0 || b.multi == NULL ||
        b.share == NULL)
        goto done;
    /* TLS sessions are per easy handle unless shared: share them, as qfetch keeps one per host. */
    curl_share_setopt(b.share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(b.share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_multi_setopt(b.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(b.multi, CURLMOPT_SOCKETDATA, &b);
    curl_multi_setopt(b.multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(b.multi, CURLMOPT_TIMERDATA, &b);
    curl_multi_setopt(b.multi, CURLMOPT_MAX_HOST_CONNECTIONS, k);
    curl_multi_setopt(b.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, k);
    curl_multi_setopt(b.multi, CURLMOPT_MAXCONNECTS, k);
    curl_multi_setopt(b.multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);

    /* The bench sends every contender's requests with qfetch's header lines. */
    for (int i = 4; i < argc; i++) {
        struct curl_slist *l = curl_slist_append(hdrs, argv[i]);
        if (l == NULL)
            goto done;
        hdrs = l;
    }

    nx = b.nsyms < (size_t)k ? b.nsyms : (size_t)k;
    xs = calloc(nx ? nx : 1, sizeof(*xs));
    if (xs == NULL)
        goto done;
    for (size_t i = 0; i < nx; i++) {
        CURL *e = curl_easy_init();
        if (e == NULL)
            goto done;
        xs[i].easy = e;
        curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)&xs[i]);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &xs[i]);
        curl_easy_setopt(e, CURLOPT_SHARE, b.share);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 60000L);
        if (hdrs != NULL)
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
        if (cafile != NULL) {
            curl_easy_setopt(e, CURLOPT_CAINFO, cafile);
            curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
        }
    }
    for (size_t i = 0; i < nx; i++)
        if (start(&b, &xs[i]) < 0)
            goto done;
    if (run(&b) < 0)
        goto done;

    for (size_t i = 0; i < b.nsyms; i++)
        printf("%s,%s\n", b.syms[i], b.out[i]);
    fprintf(stderr, "curl_multi: transfers=%zu failed=%zu conns_opened=%ld\n", b.done, b.failed,
            b.conns);
    status = b.failed == 0 ? 0 : 1;
done:
    if (status == 2)
        fprintf(stderr, "curl_multi: setup or loop failure\n");
    for (size_t i = 0; i < nx; i++) {
        if (xs[i].easy != NULL) {
            curl_multi_remove_handle(b.multi, xs[i].easy);
            curl_easy_cleanup(xs[i].easy);
        }
        free(xs[i].body);
    }
    free(xs);
    curl_slist_free_all(hdrs);
    if (b.multi != NULL)
        curl_multi_cleanup(b.multi);
    if (b.share != NULL)
        curl_share_cleanup(b.share);
    if (b.epfd >= 0)
        close(b.epfd);
    free(b.out);
    free(b.toks);
    free(b.syms);
    free(symbuf);
    curl_global_cleanup();
    return status;
}
