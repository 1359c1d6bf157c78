/* Engine tests against tests/server.py on 127.0.0.1: batches, keep-alive, embedding through
 * qf_client_fd/step, callbacks adding requests, allocation count in the steady state, the
 * timer heap and URL handling. Each test that runs a loop does so in a forked child under
 * alarm(), so a hung loop fails that test and not the suite. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/alloc.h"
#include "engine/client.h"
#include "engine/conn.h"
#include "engine/sched.h"
#include "engine/timer.h"
#include "engine/url.h"
#include "qfetch.h"

static pid_t server_pid = -1, plain_pid = -1;
static int server_port, plain_port;
static char certs[256];

/* Starts a Python test server (tests/server.py unless script says) with the test certificate
 * and extra args; waits (bounded) for its "PORT n" line. */
static int py_start(const char *script, const char *extra, pid_t *pidp, int *portp)
{
    int pfd[2];
    if (pipe(pfd) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        char cert[300], key[300];
        snprintf(cert, sizeof(cert), "%s/server.pem", certs);
        snprintf(key, sizeof(key), "%s/server.key", certs);
        dup2(pfd[1], 1);
        close(pfd[0]);
        const char *argv[] = {"/usr/bin/python3", script, "--cert", cert, "--key", key, extra,
                              NULL};
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    close(pfd[1]);
    *pidp = pid;
    char line[64] = "";
    size_t n = 0;
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    while (n + 1 < sizeof(line) && poll(&p, 1, 10000) == 1) {
        if (read(pfd[0], line + n, 1) != 1 || line[n] == '\n')
            break;
        n++;
    }
    close(pfd[0]);
    line[n] = '\0';
    if (sscanf(line, "PORT %d", portp) != 1)
        return -1;
    return 0;
}

static int server_start(const char *extra, pid_t *pidp, int *portp)
{
    return py_start("tests/server.py", extra, pidp, portp);
}

static int setup_server(void **state)
{
    (void)state;
    const char *b = getenv("QF_BUILD");
    snprintf(certs, sizeof(certs), "%s/test/certs", b ? b : "build");
    if (server_start(NULL, &server_pid, &server_port) < 0)
        return -1;
    return server_start("--plain", &plain_pid, &plain_port);
}

static int teardown_server(void **state)
{
    (void)state;
    pid_t *pids[] = {&server_pid, &plain_pid};
    for (int i = 0; i < 2; i++) {
        if (*pids[i] > 0) {
            kill(*pids[i], SIGTERM);
            waitpid(*pids[i], NULL, 0);
            *pids[i] = -1;
        }
    }
    return 0;
}

struct tally {
    int ok, failed, added_from_cb;
    qf_client *c;
    char last_err[200];
    char prices[256][16];
};

static void on_result(const struct qf_result *r, void *udata)
{
    struct tally *t = udata;
    if (r->err == 0) {
        t->ok++;
        if (r->index < 256)
            snprintf(t->prices[r->index], sizeof(t->prices[0]), "%s", r->price_text);
    } else {
        t->failed++;
        snprintf(t->last_err, sizeof(t->last_err), "%s: %s", r->symbol, r->errmsg);
    }
}

static int quiet_new; /* set while creation is expected to fail */

static qf_client *new_client(int conns, void *udata, qf_result_fn *cb)
{
    char url[128], ca[300], err[300];
    snprintf(url, sizeof(url), "https://localhost:%d/v8/finance/chart/{}", server_port);
    snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
    struct qf_options o = {.url_template = url, .cacert = ca, .connections = conns,
                           .timeout_ms = 5000};
    qf_client *c = qf_client_new(&o, cb, udata, err, sizeof(err));
    if (c == NULL)
        if (!quiet_new)
            fprintf(stderr, "qf_client_new: %s\n", err);
    return c;
}

/* Runs fn in a child with a hard alarm; the child's exit status carries the verdict. */
static void in_child(void (*fn)(void), unsigned seconds)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(seconds);
        fn();
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st))
        fprintf(stderr, "child killed by signal %d%s\n", WTERMSIG(st),
                WTERMSIG(st) == SIGALRM ? " (hung loop)" : "");
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

#define CHILD_CHECK(cond)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
            _exit(1);                                                                          \
        }                                                                                      \
    } while (0)

static void add_batch(qf_client *c, const char *prefix, int n)
{
    for (int i = 0; i < n; i++) {
        char sym[32];
        snprintf(sym, sizeof(sym), "%s%03d", prefix, i);
        CHILD_CHECK(qf_client_add(c, sym) >= 0);
    }
}

/* After the first batch has grown every buffer and made its request records, the second
 * allocates nothing: queued quotes are packed symbols, and finished records are reused. */
static void child_alloc_flat(void)
{
    struct tally t = {0};
    qf_client *c = new_client(4, &t, on_result);
    CHILD_CHECK(c != NULL);
    add_batch(c, "WARM", 100);
    CHILD_CHECK(qf_client_run(c) == 0);
    CHILD_CHECK(t.ok == 100);
    unsigned long before = qf_alloc_calls();
    add_batch(c, "FLAT", 100);
    CHILD_CHECK(qf_client_run(c) == 0);
    unsigned long delta = qf_alloc_calls() - before;
    if (delta != 0)
        fprintf(stderr, "second batch made %lu allocations, want 0\n", delta);
    CHILD_CHECK(delta == 0);
    CHILD_CHECK(t.ok == 200 && t.failed == 0);
    struct qf_stats st;
    qf_client_stats(c, &st);
    CHILD_CHECK(st.conns_opened <= 4);
    CHILD_CHECK(st.requests_sent == 200);
    CHILD_CHECK(st.reused >= 196);
    qf_client_free(c);
}

static void test_alloc_flat(void **state)
{
    (void)state;
    in_child(child_alloc_flat, 60);
}

/* Out of memory costs only what needed the memory: whichever engine allocation of a whole
 * client's life fails (creation, adding, connections, buffers, request records, timers), the
 * run ends, every quote added gets exactly one result, and every result is a right price or
 * names its error. Each allocation point of a reference run is failed in turn. */
struct nomem_tally {
    int ok, nomem, other, seen[20];
};

static void on_nomem_result(const struct qf_result *r, void *udata)
{
    struct nomem_tally *t = udata;
    if (r->index < 20)
        t->seen[r->index]++;
    if (r->err == 0)
        t->ok += r->price_text[0] != '\0';
    else if (r->err == QF_ENOMEM)
        t->nomem++;
    else
        t->other++;
}

static int nomem_run(unsigned long fail_after, struct nomem_tally *t, int *added)
{
    qf_alloc_fail_at(fail_after ? qf_alloc_calls() + fail_after : 0);
    quiet_new = 1;
    qf_client *c = new_client(4, t, on_nomem_result);
    quiet_new = 0;
    *added = 0;
    if (c == NULL) {
        qf_alloc_fail_at(0);
        return -1;
    }
    for (int i = 0; i < 20; i++) {
        char sym[32];
        snprintf(sym, sizeof(sym), "NOMEM%02d", i);
        int idx = qf_client_add(c, sym);
        CHILD_CHECK(idx >= 0 || idx == QF_ENOMEM);
        if (idx >= 0) {
            CHILD_CHECK(idx < 20);
            (*added)++;
        }
    }
    int rc = qf_client_run(c);
    qf_alloc_fail_at(0);
    qf_client_free(c);
    return rc;
}

static void child_alloc_failures(void)
{
    struct nomem_tally ref = {0};
    int added = 0;
    unsigned long before = qf_alloc_calls();
    CHILD_CHECK(nomem_run(0, &ref, &added) == 0 && ref.ok == 20 && added == 20);
    unsigned long total = qf_alloc_calls() - before, failed_runs = 0;
    CHILD_CHECK(total > 10);
    for (unsigned long n = 1; n <= total + 5; n++) {
        struct nomem_tally t = {0};
        int rc = nomem_run(n, &t, &added);
        if (rc == -1)
            continue; /* qf_client_new refused: nothing was added */
        if (rc != 0 || t.ok + t.nomem + t.other != added || t.other != 0 || t.nomem > 1)
            fprintf(stderr, "allocation %lu failed: run %d, added %d, ok %d, nomem %d, other %d\n",
                    n, rc, added, t.ok, t.nomem, t.other);
        CHILD_CHECK(rc == 0);
        CHILD_CHECK(t.ok + t.nomem + t.other == added);
        for (int i = 0; i < added; i++)
            CHILD_CHECK(t.seen[i] == 1);
        CHILD_CHECK(t.other == 0 && t.nomem <= 1);
        failed_runs += t.nomem;
    }
    fprintf(stderr, "%lu allocation points, %lu runs lost one quote to QF_ENOMEM\n", total,
            failed_runs);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    in_child(child_alloc_failures, 120);
}

/* The host program owns the loop: poll() on qf_client_fd() with qf_client_timeout_ms(). */
static void child_embedded(void)
{
    struct tally t = {0};
    qf_client *c = new_client(2, &t, on_result);
    CHILD_CHECK(c != NULL);
    add_batch(c, "EMB", 10);
    CHILD_CHECK(qf_client_add(c, "SLOW_300_EMB") >= 0);
    int left = qf_client_step(c), turns = 0;
    while (left > 0 && turns++ < 100000) {
        struct pollfd p = {.fd = qf_client_fd(c), .events = POLLIN};
        int to = qf_client_timeout_ms(c);
        CHILD_CHECK(to >= -1);
        poll(&p, 1, to);
        left = qf_client_step(c);
        CHILD_CHECK(left >= 0);
    }
    CHILD_CHECK(left == 0);
    CHILD_CHECK(t.ok == 11 && t.failed == 0);
    qf_client_free(c);
}

static void test_embedded_loop(void **state)
{
    (void)state;
    in_child(child_embedded, 30);
}

static void on_result_chain(const struct qf_result *r, void *udata)
{
    struct tally *t = udata;
    on_result(r, udata);
    if (t->added_from_cb < 5) {
        char sym[32];
        snprintf(sym, sizeof(sym), "CHAIN%d", t->added_from_cb++);
        CHILD_CHECK(qf_client_add(t->c, sym) >= 0);
    }
}

static void child_add_from_callback(void)
{
    struct tally t = {0};
    qf_client *c = new_client(1, &t, on_result_chain);
    CHILD_CHECK(c != NULL);
    t.c = c;
    CHILD_CHECK(qf_client_add(c, "ROOT") == 0);
    CHILD_CHECK(qf_client_run(c) == 0);
    CHILD_CHECK(t.ok == 6 && t.failed == 0);
    qf_client_free(c);
}

static void test_add_from_callback(void **state)
{
    (void)state;
    in_child(child_add_from_callback, 30);
}

/* Mixed outcomes in one batch: errors stay per symbol, prices stay right, input order holds. */
static void child_mixed(void)
{
    struct tally t = {0};
    qf_client *c = new_client(3, &t, on_result);
    CHILD_CHECK(c != NULL);
    const char *syms[] = {"PRICE_2.675", "FB", "PRICE_0.125", "BADJSON_X", "PRICE_1.8984e2",
                          "ERR500_X", "PRICE_190"};
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++)
        CHILD_CHECK(qf_client_add(c, syms[i]) == (int)i);
    CHILD_CHECK(qf_client_run(c) == 0);
    CHILD_CHECK(t.ok == 4 && t.failed == 3);
    CHILD_CHECK(strcmp(t.prices[0], "2.67") == 0);
    CHILD_CHECK(strcmp(t.prices[2], "0.12") == 0);
    CHILD_CHECK(strcmp(t.prices[4], "189.84") == 0);
    CHILD_CHECK(strcmp(t.prices[6], "190.00") == 0);
    qf_client_free(c);
}

static void test_mixed_batch(void **state)
{
    (void)state;
    in_child(child_mixed, 30);
}

/* Freeing a client with requests in flight releases everything without callbacks. */
static void child_free_midflight(void)
{
    struct tally t = {0};
    qf_client *c = new_client(4, &t, on_result);
    CHILD_CHECK(c != NULL);
    add_batch(c, "MID", 20);
    CHILD_CHECK(qf_client_add(c, "SILENT_MID") >= 0);
    for (int i = 0; i < 50; i++) {
        struct pollfd p = {.fd = qf_client_fd(c), .events = POLLIN};
        poll(&p, 1, 5);
        qf_client_step(c);
    }
    qf_client_free(c);
}

static void test_free_midflight(void **state)
{
    (void)state;
    in_child(child_free_midflight, 30);
}

static void test_bad_options(void **state)
{
    (void)state;
    char err[300];
    struct qf_options o = {.url_template = "https://example.invalid/no-placeholder"};
    assert_null(qf_client_new(&o, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "{}"));
    o.url_template = "ftp://x/{}";
    assert_null(qf_client_new(&o, NULL, NULL, err, sizeof(err)));
    o.url_template = "https://localhost/{}";
    o.cacert = "tests/test_engine.c"; /* exists, not PEM */
    assert_null(qf_client_new(&o, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "CA file"));
    o.cacert = "/nonexistent/ca.pem";
    assert_null(qf_client_new(&o, NULL, NULL, err, sizeof(err)));
    o.cacert = NULL;
    o.user_agent = "evil\r\nX-Injected: 1";
    assert_null(qf_client_new(&o, NULL, NULL, err, sizeof(err)));
    o.user_agent = NULL;
    const char *res[] = {"localhost:443", NULL};
    o.resolve = res;
    assert_null(qf_client_new(&o, NULL, NULL, err, sizeof(err)));
}

static void test_symbol_checks(void **state)
{
    (void)state;
    char url[] = "http://127.0.0.1:9/v8/finance/chart/{}";
    struct qf_options o = {.url_template = url};
    qf_client *c = qf_client_new(&o, NULL, NULL, NULL, 0);
    assert_non_null(c);
    char big[100];
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(qf_client_add(c, ""), QF_EINVAL);
    assert_int_equal(qf_client_add(c, big), QF_EINVAL);
    assert_int_equal(qf_client_add(c, "A B"), QF_EINVAL);
    assert_int_equal(qf_client_add(c, "A\nB"), QF_EINVAL);
    assert_int_equal(qf_client_add(c, "A\x7f"), QF_EINVAL);
    assert_int_equal(qf_client_add(c, "AAPL"), 0);
    assert_int_equal(qf_client_add(c, "\xc3\xa9"), 1); /* non-ASCII is percent-encoded */
    /* Dot-segments would leave the chart path; dots among other characters are fine. */
    assert_int_equal(qf_client_add(c, "."), QF_EINVAL);
    assert_int_equal(qf_client_add(c, ".."), QF_EINVAL);
    assert_int_equal(qf_client_add(c, "..."), QF_EINVAL);
    assert_int_equal(qf_client_add(c, ".A."), 2);
    qf_client_free(c);
}

static void test_symbol_encode(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(qf_symbol_encode("^GSPC", out, sizeof(out)), 7);
    assert_string_equal(out, "%5EGSPC");
    qf_symbol_encode("EURUSD=X", out, sizeof(out));
    assert_string_equal(out, "EURUSD%3DX");
    qf_symbol_encode("BRK-B", out, sizeof(out));
    assert_string_equal(out, "BRK-B");
    qf_symbol_encode("GS2C.DE", out, sizeof(out));
    assert_string_equal(out, "GS2C.DE");
    qf_symbol_encode("a/b?c#d%e", out, sizeof(out));
    assert_string_equal(out, "a%2Fb%3Fc%23d%25e");
    assert_int_equal(qf_symbol_encode("^^^", out, 9), QF_ENOSPC);
    assert_int_equal(qf_symbol_encode("^^^", out, 10), 9);
    assert_int_equal(qf_symbol_encode("..", out, sizeof(out)), QF_EINVAL);
    assert_int_equal(qf_symbol_encode(".", out, sizeof(out)), QF_EINVAL);
    assert_int_equal(qf_symbol_encode("..A", out, sizeof(out)), 3);
}

static void test_url_parse(void **state)
{
    (void)state;
    struct qf_url u;
    char err[200];
    assert_int_equal(qf_url_parse(&u, QF_DEFAULT_URL, err, sizeof(err)), 0);
    assert_true(u.tls);
    assert_string_equal(u.host, "query1.finance.yahoo.com");
    assert_string_equal(u.port, "443");
    assert_string_equal(u.prefix, "/v8/finance/chart/");
    assert_string_equal(u.suffix, "");
    qf_url_free(&u);
    assert_int_equal(qf_url_parse(&u, "http://[::1]:8080/q?s={}&i=1d", err, sizeof(err)), 0);
    assert_false(u.tls);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.port, "8080");
    assert_string_equal(u.prefix, "/q?s=");
    assert_string_equal(u.suffix, "&i=1d");
    qf_url_free(&u);
    assert_int_equal(qf_url_parse(&u, "https://h?s={}", err, sizeof(err)), 0);
    assert_string_equal(u.prefix, "/?s=");
    qf_url_free(&u);
    /* An absolute name keeps its dot here: DNS and Host use it, TLS drops it (tls_name). */
    assert_int_equal(qf_url_parse(&u, "https://h.example.:8443/{}", err, sizeof(err)), 0);
    assert_string_equal(u.host, "h.example.");
    qf_url_free(&u);
    const char *bad[] = {"https://{}/x", "https://h/{}/{}", "https://h/x", "https://h:0/{}",
                         "https://h:99999/{}", "https://h:x/{}", "https://h:+80/{}", "https:///{}", "https://u@h/{}",
                         "https://h/a b/{}", "https://h/#{}", "https://b\xc3\xb6rse.de/{}",
                         "https://h..com/{}", "https://.h/{}", "https://h../{}", "https://./{}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(qf_url_parse(&u, bad[i], err, sizeof(err)), QF_EINVAL);
}

/* The heap against a brute-force model under random arm, move and delete. */
static void no_result(const struct qf_result *r, void *udata)
{
    (void)r;
    (void)udata;
}

static void pending_add(qf_client *c, size_t *added)
{
    char sym[32];
    snprintf(sym, sizeof(sym), *added % 7 ? "S%zu" : "^S%zu.X", *added);
    assert_int_equal(qf_client_add(c, sym), (int)*added);
    ++*added;
}

static void pending_take(qf_client *c, size_t *taken)
{
    char sym[32], enc[100];
    struct qf_req *r = qf_sched_head(c, c->hosts[0]);
    assert_non_null(r);
    snprintf(sym, sizeof(sym), *taken % 7 ? "S%zu" : "^S%zu.X", *taken);
    assert_true(qf_symbol_encode(sym, enc, sizeof(enc)) > 0);
    assert_int_equal(r->index, *taken);
    assert_string_equal(r->symbol, sym);
    assert_string_equal(r->target, enc);
    assert_null(r->general);
    qf_sched_unlink(c->hosts[0], r);
    qf_req_release(c, r);
    ++*taken;
}

/* Queued quotes are packed symbols, taken in qf_client_add() order: each record made from one
 * carries its index, symbol and encoded target. With a standing backlog of 200 and as many
 * added as taken, the buffer slides instead of growing with all 20,000 symbols (150 KB);
 * one record serves every quote when each is released before the next is taken. */
static void test_pending_quotes(void **state)
{
    char err[256];
    struct qf_options o = {.url_template = "http://127.0.0.1:9/q/{}"};
    qf_client *c = qf_client_new(&o, no_result, NULL, err, sizeof(err));
    size_t added = 0, taken = 0;
    (void)state;
    assert_non_null(c);
    struct qf_host *h = c->hosts[0];
    while (added < 200)
        pending_add(c, &added);
    for (int round = 0; round < 6000; round++) {
        for (int k = 0; k < round % 5 + 1; k++)
            pending_add(c, &added);
        for (int k = 0; k < (round + 2) % 5 + 1; k++)
            pending_take(c, &taken);
        assert_int_equal(h->nqueued, added - taken);
        assert_true(added - taken >= 190 && added - taken <= 210);
    }
    assert_true(h->pend_cap <= 8192);
    while (taken < added)
        pending_take(c, &taken);
    assert_null(qf_sched_head(c, h));
    assert_int_equal(h->nqueued, 0);
    assert_int_equal(c->nrecords, 1);
    qf_client_free(c);
}

static void test_timer_heap(void **state)
{
    (void)state;
    enum { N = 200 };
    struct qf_timer t[N];
    struct qf_heap h = {0};
    assert_int_equal(qf_heap_reserve(&h, N), 0);
    for (int i = 0; i < N; i++)
        t[i].idx = -1;
    srand(7);
    for (int step = 0; step < 20000; step++) {
        int i = rand() % N;
        if (rand() % 3 == 0)
            qf_heap_del(&h, &t[i]);
        else
            qf_heap_set(&h, &t[i], rand() % 1000);
        int64_t min = INT64_MAX;
        int armed = 0;
        for (int k = 0; k < N; k++) {
            if (t[k].idx >= 0) {
                armed++;
                min = t[k].at_us < min ? t[k].at_us : min;
                assert_ptr_equal(h.v[t[k].idx], &t[k]);
            }
        }
        assert_int_equal(armed, h.n);
        if (armed)
            assert_int_equal(qf_heap_top(&h)->at_us, min);
        else
            assert_null(qf_heap_top(&h));
    }
    qf_heap_free(&h);
}

/* ---- general requests ---- */

struct gen {
    int n, err, status, saw_ctype, body_ok, heads, head_status, chunks_at_head, abort_head;
    size_t body_len, streamed;
    int chunks, abort_after;
    char path_seen[128];
};

static void on_gen(const struct qf_response *r)
{
    struct gen *g = r->udata;
    g->n++;
    g->err = r->err;
    g->status = r->status;
    g->body_len = r->body_len;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcasecmp(r->headers[i].name, "content-type") == 0 &&
            strstr(r->headers[i].value, "json") != NULL)
            g->saw_ctype = 1;
    }
    g->body_ok = r->body != NULL && r->body_len > 10 && memcmp(r->body, "{\"chart\"", 8) == 0;
}

static int on_gen_head(int status, const struct qf_header *h, size_t n, void *udata)
{
    struct gen *g = udata;
    g->heads++;
    g->head_status = status;
    g->chunks_at_head = g->chunks;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(h[i].name, "content-type") == 0 && strstr(h[i].value, "json") != NULL)
            g->saw_ctype = 1;
    }
    return g->abort_head;
}

static int on_gen_chunk(const char *data, size_t len, void *udata)
{
    struct gen *g = udata;
    (void)data;
    g->streamed += len;
    g->chunks++;
    return g->abort_after && g->chunks >= g->abort_after;
}

static void child_general(void)
{
    struct tally t = {0};
    qf_client *c = new_client(2, &t, on_result);
    CHILD_CHECK(c != NULL);
    char url[160], plain[160], headurl[160];
    snprintf(url, sizeof(url), "https://localhost:%d/v8/finance/chart/GENA", server_port);
    snprintf(plain, sizeof(plain), "http://127.0.0.1:%d/v8/finance/chart/BIG_GEN", plain_port);
    snprintf(headurl, sizeof(headurl), "https://localhost:%d/v8/finance/chart/GENH", server_port);
    const char *hdrs[] = {"X-Test: 1", "Accept: application/json", NULL};
    struct gen g1 = {0}, g2 = {0}, g3 = {0}, g4 = {0}, g5 = {0};
    struct qf_request rq = {.url = url, .headers = hdrs, .on_response = on_gen, .udata = &g1};
    CHILD_CHECK(qf_client_request(c, &rq) == 0);
    /* a second host, plain HTTP, body streamed in pieces */
    struct qf_request rs = {.url = plain, .on_response = on_gen, .on_chunk = on_gen_chunk,
                            .on_head = on_gen_head, .udata = &g2};
    CHILD_CHECK(qf_client_request(c, &rs) == 1);
    struct qf_request rh = {.url = headurl, .method = "HEAD", .on_response = on_gen, .udata = &g3};
    CHILD_CHECK(qf_client_request(c, &rh) == 2);
    /* an aborted stream and a cancelled queued request produce what they promise */
    struct qf_request ra = {.url = plain, .on_response = on_gen, .on_chunk = on_gen_chunk,
                            .udata = &g4};
    g4.abort_after = 1;
    CHILD_CHECK(qf_client_request(c, &ra) == 3);
    struct qf_request rc = {.url = url, .on_response = on_gen, .udata = &g5};
    int cid = qf_client_request(c, &rc);
    struct gen g6 = {.abort_head = 1};
    struct qf_request rb = {.url = url, .on_response = on_gen, .on_head = on_gen_head,
                            .udata = &g6};
    CHILD_CHECK(qf_client_cancel(c, cid) == 0);
    CHILD_CHECK(qf_client_cancel(c, cid) == QF_EINVAL);
    CHILD_CHECK(qf_client_request(c, &rb) == cid + 1);
    CHILD_CHECK(qf_client_add(c, "MIXED") == 0); /* quotes share the engine */
    CHILD_CHECK(qf_client_run(c) == 0);
    CHILD_CHECK(g1.n == 1 && g1.err == 0 && g1.status == 200 && g1.saw_ctype && g1.body_ok);
    CHILD_CHECK(g2.n == 1 && g2.err == 0 && g2.status == 200 && g2.body_len > 500000);
    CHILD_CHECK(g2.streamed == g2.body_len && g2.chunks > 1);
    CHILD_CHECK(g2.heads == 1 && g2.head_status == 200 && g2.chunks_at_head == 0);
    CHILD_CHECK(g6.heads == 1 && g6.n == 1 && g6.err == QF_ECANCELED && g6.status == 200);
    /* server.py answers HEAD with 405 and a Content-Length: no body may be read after it */
    CHILD_CHECK(g3.n == 1 && g3.err == 0 && (g3.status == 200 || g3.status == 405));
    CHILD_CHECK(g3.body_len == 0);
    CHILD_CHECK(g4.n == 1 && g4.err == QF_ECANCELED && g4.chunks == 1);
    CHILD_CHECK(g5.n == 0);
    CHILD_CHECK(t.ok == 1);
    qf_client_free(c);
}

static void test_general_requests(void **state)
{
    (void)state;
    in_child(child_general, 30);
}

/* qf_request.compressed: Accept-Encoding goes out and the body comes back inflated, buffered
 * or streamed; without it the body is handed on as sent. server.py codes ordinary answers only
 * when asked, and GZIP*_ and BADGZIP_ ones always. */
struct zgen {
    int n, err, coded, heads;
    char errmsg[160];
    char body[16384];
    size_t len, body_len, streamed;
};

static void on_zgen(const struct qf_response *r)
{
    struct zgen *z = r->udata;
    z->n++;
    z->err = r->err;
    snprintf(z->errmsg, sizeof(z->errmsg), "%s", r->errmsg);
    z->body_len = r->body_len;
    for (size_t i = 0; i < r->nheaders; i++)
        z->coded |= strcasecmp(r->headers[i].name, "content-encoding") == 0;
    if (r->body != NULL && r->body_len <= sizeof(z->body)) {
        memcpy(z->body, r->body, r->body_len);
        z->len = r->body_len;
    }
}

static int on_zgen_head(int status, const struct qf_header *h, size_t n, void *udata)
{
    struct zgen *z = udata;
    (void)status;
    z->heads++;
    for (size_t i = 0; i < n; i++)
        z->coded |= strcasecmp(h[i].name, "content-encoding") == 0;
    return 0;
}

static int on_zgen_chunk(const char *data, size_t len, void *udata)
{
    struct zgen *z = udata;
    if (z->len + len <= sizeof(z->body))
        memcpy(z->body + z->len, data, len);
    z->len += len;
    z->streamed += len;
    return 0;
}

static void child_general_compressed(void)
{
    struct tally t = {0};
    qf_client *c = new_client(2, &t, on_result);
    CHILD_CHECK(c != NULL);
    static const char *const syms[] = {"GZN", "GZN", "GZIP_GZ", "GZIPCHUNKED_GZ",
                                       "GZIPCHUNKED_GZ", "BADGZIP_GZ", "GZN"};
    enum { N = 7 };
    static const int compressed[N] = {1, 0, 0, 1, 1, 1, 1};
    const char *identity[] = {"Accept-Encoding: identity", NULL};
    struct zgen z[N];
    char u[N][160];
    memset(z, 0, sizeof(z));
    for (int i = 0; i < N; i++) {
        snprintf(u[i], sizeof(u[i]), "https://localhost:%d/v8/finance/chart/%s", server_port,
                 syms[i]);
        struct qf_request rq = {.url = u[i], .on_response = on_zgen, .udata = &z[i],
                                .compressed = compressed[i], .on_head = on_zgen_head,
                                .on_chunk = i == 3 ? on_zgen_chunk : NULL,
                                .headers = i == 6 ? identity : NULL};
        CHILD_CHECK(qf_client_request(c, &rq) == i);
    }
    CHILD_CHECK(qf_client_run(c) == 0);
    for (int i = 0; i < N; i++) {
        if (z[i].n != 1 || (i != 5 && z[i].err != 0))
            fprintf(stderr, "request %d: %d responses, err %d: %s\n", i, z[i].n, z[i].err,
                    z[i].errmsg);
        CHILD_CHECK(z[i].n == 1 && z[i].heads == 1);
    }
    /* asked: coded on the wire, inflated here; not asked: as sent, the same JSON */
    CHILD_CHECK(z[0].err == 0 && z[0].coded && z[0].len > 100 && z[0].body_len == z[0].len);
    CHILD_CHECK(z[1].err == 0 && !z[1].coded && z[1].len == z[0].len);
    CHILD_CHECK(memcmp(z[0].body, "{\"chart\"", 8) == 0);
    CHILD_CHECK(memcmp(z[0].body, z[1].body, z[0].len) == 0);
    /* not asked, coded anyway: the gzip bytes themselves */
    CHILD_CHECK(z[2].err == 0 && z[2].coded && z[2].len > 18 &&
                (unsigned char)z[2].body[0] == 0x1f && (unsigned char)z[2].body[1] == 0x8b);
    /* two gzip members in odd chunks: streamed and buffered give the same inflated bytes */
    CHILD_CHECK(z[3].err == 0 && z[4].err == 0 && z[3].streamed == z[3].body_len);
    CHILD_CHECK(z[3].len == z[4].len && z[4].len > 100);
    CHILD_CHECK(memcmp(z[3].body, z[4].body, z[4].len) == 0);
    CHILD_CHECK(memcmp(z[4].body, "{\"chart\"", 8) == 0);
    CHILD_CHECK(z[5].err == QF_EPROTO && strstr(z[5].errmsg, "corrupt gzip body") != NULL);
    /* the caller's Accept-Encoding replaces ours */
    CHILD_CHECK(z[6].err == 0 && !z[6].coded && z[6].len == z[0].len);
    qf_client_free(c);
}

static void test_general_compressed(void **state)
{
    (void)state;
    in_child(child_general_compressed, 30);
}

/* A hung request ends at its own timeout; cancelling a running one frees its connection. */
static void child_general_timeout_cancel(void)
{
    struct tally t = {0};
    qf_client *c = new_client(2, &t, on_result);
    CHILD_CHECK(c != NULL);
    char hang[160], silent[160];
    snprintf(hang, sizeof(hang), "https://localhost:%d/v8/finance/chart/HANG_G", server_port);
    snprintf(silent, sizeof(silent), "https://localhost:%d/v8/finance/chart/SILENT_G",
             server_port);
    struct gen g1 = {0}, g2 = {0};
    struct qf_request r1 = {.url = hang, .timeout_ms = 300, .retries = -1, .on_response = on_gen,
                            .udata = &g1};
    struct qf_request r2 = {.url = silent, .on_response = on_gen, .udata = &g2};
    CHILD_CHECK(qf_client_request(c, &r1) == 0);
    int id2 = qf_client_request(c, &r2);
    CHILD_CHECK(id2 == 1);
    int64_t t0 = qf_now_us();
    for (int i = 0; i < 20 && qf_client_step(c) > 0; i++) {
        struct pollfd p = {.fd = qf_client_fd(c), .events = POLLIN};
        poll(&p, 1, 10);
    }
    CHILD_CHECK(qf_client_cancel(c, id2) == 0);
    CHILD_CHECK(qf_client_run(c) == 0);
    int64_t took_ms = (qf_now_us() - t0) / 1000;
    CHILD_CHECK(g1.n == 1 && g1.err == QF_ETIMEOUT);
    CHILD_CHECK(g2.n == 0);
    CHILD_CHECK(took_ms < 3000);
    qf_client_free(c);
}

static void test_general_timeout_cancel(void **state)
{
    (void)state;
    in_child(child_general_timeout_cancel, 30);
}

/* ---- issue-15 regressions: outcomes carry their response, callbacks cannot re-enter ---- */

/* Pipelined general requests each get their own status, headers and body: the response is
 * passed up with the outcome, never inferred from the connection's state afterwards. */
static void child_pipelined_general(void)
{
    struct tally t = {0};
    char url[160], ca[300], err[300];
    snprintf(url, sizeof(url), "https://localhost:%d/v8/finance/chart/{}", server_port);
    snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
    struct qf_options o = {.url_template = url, .cacert = ca, .connections = 1,
                           .pipeline = 4, .timeout_ms = 5000};
    qf_client *c = qf_client_new(&o, on_result, &t, err, sizeof(err));
    CHILD_CHECK(c != NULL);
    enum { N = 8 };
    struct gen g[N];
    memset(g, 0, sizeof(g));
    char u[N][160];
    for (int i = 0; i < N; i++) {
        int stream = i == 5, head = i == 3;
        snprintf(u[i], sizeof(u[i]), "%s://%s:%d/v8/finance/chart/PIPE%d",
                 i % 2 ? "https" : "http", i % 2 ? "localhost" : "127.0.0.1",
                 i % 2 ? server_port : plain_port, i);
        struct qf_request rq = {.url = u[i], .on_response = on_gen, .udata = &g[i],
                                .method = head ? "HEAD" : NULL,
                                .on_chunk = stream ? on_gen_chunk : NULL,
                                .on_head = stream ? on_gen_head : NULL};
        CHILD_CHECK(qf_client_request(c, &rq) == i);
    }
    CHILD_CHECK(qf_client_run(c) == 0);
    for (int i = 0; i < N; i++) {
        if (g[i].n != 1 || g[i].err != 0)
            fprintf(stderr, "request %d: %d responses, err %d, status %d\n", i, g[i].n, g[i].err,
                    g[i].status);
        CHILD_CHECK(g[i].n == 1 && g[i].err == 0);
        if (i == 3) {
            CHILD_CHECK(g[i].body_len == 0 && (g[i].status == 200 || g[i].status == 405));
        } else if (i == 5) {
            CHILD_CHECK(g[i].status == 200 && g[i].streamed == g[i].body_len &&
                        g[i].body_len > 10 && g[i].heads == 1 && g[i].saw_ctype);
        } else {
            CHILD_CHECK(g[i].status == 200 && g[i].saw_ctype && g[i].body_ok);
        }
    }
    struct qf_stats st;
    qf_client_stats(c, &st);
    CHILD_CHECK(st.conns_opened == 2 && st.requests_sent == N); /* one pipelined per host */
    qf_client_free(c);
}

static void test_pipelined_general(void **state)
{
    (void)state;
    in_child(child_pipelined_general, 30);
}

/* Every callback cancels the siblings still running, while one host's handshakes fail at
 * once (an https URL at a plain-HTTP port). Each request ends exactly once: delivered, or
 * cancelled without a callback; ASan watches the records. */
enum { SIBS = 12 };
struct sibs {
    qf_client *c;
    int n; /* requests made, when fewer than SIBS */
    int ids[SIBS], delivered[SIBS], cancelled[SIBS];
};
struct sib {
    struct sibs *s;
    int i;
};

static void on_sib(const struct qf_response *r)
{
    const struct sib *me = r->udata;
    struct sibs *s = me->s;
    s->delivered[me->i]++;
    for (int k = 1; k <= 2; k++) { /* the next two still running */
        int j = (me->i + k) % SIBS;
        if (!s->delivered[j] && !s->cancelled[j] && qf_client_cancel(s->c, s->ids[j]) == 0)
            s->cancelled[j] = 1;
    }
}

/* Request i of s, to url, answered to cb with me[i] as its udata. */
static void sib_request(struct sibs *s, struct sib *me, int i, const char *url,
                        qf_response_fn *cb)
{
    me[i] = (struct sib){s, i};
    struct qf_request rq = {.url = url, .on_response = cb, .udata = &me[i], .retries = -1};
    s->ids[i] = qf_client_request(s->c, &rq);
    CHILD_CHECK(s->ids[i] == i);
}

/* Runs s's n requests to the end: each must end exactly once, delivered or cancelled. */
static void sibs_run(struct sibs *s, int n)
{
    CHILD_CHECK(qf_client_run(s->c) == 0);
    for (int i = 0; i < n; i++)
        CHILD_CHECK(s->delivered[i] + s->cancelled[i] == 1);
    qf_client_free(s->c);
}

static void sibling_cancel_run(int pipeline, const char *prefix)
{
    char ca[300], err[300], url[SIBS][160];
    snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
    struct qf_options o = {.url_template = "https://127.0.0.1:9/{}", .cacert = ca,
                           .connections = 3, .pipeline = pipeline, .timeout_ms = 5000};
    struct sibs s = {0};
    struct sib me[SIBS];
    s.c = qf_client_new(&o, NULL, NULL, err, sizeof(err));
    CHILD_CHECK(s.c != NULL);
    for (int i = 0; i < SIBS; i++) {
        /* every third request goes to a port that answers a ClientHello with plain HTTP */
        snprintf(url[i], sizeof(url[i]), "https://localhost:%d/v8/finance/chart/%sSIB%d",
                 i % 3 == 1 ? plain_port : server_port, prefix, i);
        sib_request(&s, me, i, url[i], on_sib);
    }
    sibs_run(&s, SIBS);
}

static void child_sibling_cancel(void)
{
    sibling_cancel_run(1, "");       /* keep-alive */
    sibling_cancel_run(1, "CLOSE_"); /* Connection: close after each response */
    sibling_cancel_run(3, "");       /* pipelined: cancelled ones wait behind others */
    sibling_cancel_run(3, "CLOSE_");
}

static void test_sibling_cancel(void **state)
{
    (void)state;
    in_child(child_sibling_cancel, 60);
}

/* Issue 15.1 as reported: one connection's handshake fails at once just as another's answer
 * arrives, and every callback cancels every sibling still running. tests/reset_server.py
 * serves the first connection and resets the others right after its first answer. Before
 * the outcome split, that answer's completion stepped the held connections, whose failure
 * ran a callback that freed the request being completed (ASan: SEGV in SSL_has_pending);
 * on c05e886 8 rounds of 10 crashed. */
static void on_cancel_all(const struct qf_response *r)
{
    const struct sib *me = r->udata;
    struct sibs *s = me->s;
    s->delivered[me->i]++;
    for (int j = 0; j < s->n; j++) {
        if (j != me->i && !s->delivered[j] && !s->cancelled[j] &&
            qf_client_cancel(s->c, s->ids[j]) == 0)
            s->cancelled[j] = 1;
    }
}

static void child_cancel_on_reset(void)
{
    enum { N = 3 }; /* as many as connections: all start at once */
    char ca[300], err[300], url[N][160];
    snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
    for (int round = 0; round < 10; round++) {
        pid_t pid;
        int port;
        CHILD_CHECK(py_start("tests/reset_server.py", NULL, &pid, &port) == 0);
        struct qf_options o = {.url_template = "https://127.0.0.1:9/{}", .cacert = ca,
                               .connections = N, .timeout_ms = 5000, .flags = QF_OPT_HTTP1};
        struct sibs s = {.n = N};
        struct sib me[N];
        s.c = qf_client_new(&o, NULL, NULL, err, sizeof(err));
        CHILD_CHECK(s.c != NULL);
        for (int i = 0; i < N; i++) {
            snprintf(url[i], sizeof(url[i]), "https://localhost:%d/q/%d", port, i);
            sib_request(&s, me, i, url[i], on_cancel_all);
        }
        sibs_run(&s, N);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

static void test_cancel_on_reset(void **state)
{
    (void)state;
    in_child(child_cancel_on_reset, 60);
}

/* A server of our own that answers any request with head, then writes fill forever (until
 * the client goes or 20 s pass): faster than a client can parse. Returns its port. */
static int flood_start(const char *head, char fill, pid_t *pidp)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 8) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        static char buf[65536];
        alarm(20);
        signal(SIGPIPE, SIG_IGN);
        memset(buf, fill, sizeof(buf));
        for (;;) {
            int s = accept(ls, NULL, NULL);
            if (s < 0)
                _exit(0);
            if (fork() == 0) {
                char req[4096];
                int sndbuf = 8 << 20; /* megabytes wait for the client between its steps */
                setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
                if (read(s, req, sizeof(req)) <= 0 || write(s, head, strlen(head)) < 0)
                    _exit(0);
                while (write(s, buf, sizeof(buf)) > 0)
                    ;
                _exit(0);
            }
            close(s);
        }
    }
    close(ls);
    *pidp = pid;
    return ntohs(a.sin_port);
}

/* Drives c from a poll() loop until done or limit_ms, pausing 10 ms between steps so the
 * flood servers fill the socket buffers. Returns the longest step in us, and in *most the
 * most bytes one step read. */
static int64_t drive(qf_client *c, int64_t limit_ms, uint64_t *most)
{
    int64_t worst = 0, end = qf_now_us() + limit_ms * 1000;
    int left = 1;
    struct qf_stats st;
    *most = 0;
    while (left > 0 && qf_now_us() < end) {
        qf_client_stats(c, &st);
        uint64_t before = st.bytes_read;
        int64_t t0 = qf_now_us();
        left = qf_client_step(c);
        int64_t d = qf_now_us() - t0;
        qf_client_stats(c, &st);
        worst = d > worst ? d : worst;
        *most = st.bytes_read - before > *most ? st.bytes_read - before : *most;
        struct pollfd p = {.fd = qf_client_fd(c), .events = POLLIN};
        int to = qf_client_timeout_ms(c);
        poll(&p, 1, to < 0 || to > 100 ? 100 : to);
        usleep(10000);
    }
    CHILD_CHECK(left == 0);
    return worst;
}

/* A server streaming faster than qfetch parses cannot hold qf_client_step(): each step reads
 * a bounded amount (each connection at most twice its budget: once for its event, once from
 * the ready list), deadlines are checked every turn, and a healthy host's request completes
 * meanwhile. Before the read budget, one step read all the megabytes the servers had queued
 * and went on for as long as they kept up. The wall-time bound is only a backstop. */
static void child_flood(void)
{
    pid_t fp = -1, zp = -1;
    int fport = flood_start("HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n", 'x', &fp);
    int zport = flood_start("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", '0', &zp);
    CHILD_CHECK(fport > 0 && zport > 0);
    char zurl[128], furl[128], okurl[160], err[300];
    snprintf(zurl, sizeof(zurl), "http://127.0.0.1:%d/v8/finance/chart/{}", zport);
    snprintf(furl, sizeof(furl), "http://127.0.0.1:%d/flood", fport);
    snprintf(okurl, sizeof(okurl), "http://127.0.0.1:%d/v8/finance/chart/HEALTHY", plain_port);
    struct tally t = {0};
    struct qf_options o = {.url_template = zurl, .timeout_ms = 1000, .retries = -1};
    qf_client *c = qf_client_new(&o, on_result, &t, err, sizeof(err));
    CHILD_CHECK(c != NULL);
    struct gen gf = {0}, gok = {0};
    struct qf_request rf = {.url = furl, .on_response = on_gen, .on_chunk = on_gen_chunk,
                            .udata = &gf, .timeout_ms = 1000, .retries = -1};
    struct qf_request rok = {.url = okurl, .on_response = on_gen, .udata = &gok};
    CHILD_CHECK(qf_client_add(c, "ZEROS") == 0);
    CHILD_CHECK(qf_client_request(c, &rf) == 0);
    CHILD_CHECK(qf_client_request(c, &rok) == 1);
    uint64_t most = 0;
    int64_t worst_us = drive(c, 8000, &most);
    if (most > 3 * 2 * QF_READ_BUDGET + QF_RBUF_SIZE)
        fprintf(stderr, "one step read %llu bytes\n", (unsigned long long)most);
    CHILD_CHECK(most <= 3 * 2 * QF_READ_BUDGET + QF_RBUF_SIZE);
    /* the endless chunk-size line: a timeout, or a parse error where the parser caps it */
    CHILD_CHECK(t.failed == 1 && t.ok == 0);
    CHILD_CHECK(gf.n == 1 && gf.err == QF_ETIMEOUT && gf.streamed > 0);
    CHILD_CHECK(gok.n == 1 && gok.err == 0 && gok.status == 200);
    if (worst_us >= 1000000)
        fprintf(stderr, "longest step %lld us\n", (long long)worst_us);
    CHILD_CHECK(worst_us < 1000000);
    qf_client_free(c);
    kill(fp, SIGKILL);
    kill(zp, SIGKILL);
}

static void test_flood_bounded(void **state)
{
    (void)state;
    in_child(child_flood, 30);
}

/* The client-wide cap on buffered body bytes: two large bodies at once do not both fit in
 * 1.5 MiB, so exactly one fails with a clear error and the other completes. */
static void child_body_budget(void)
{
    char tmpl[160], url[160], err[300];
    snprintf(tmpl, sizeof(tmpl), "http://127.0.0.1:%d/v8/finance/chart/{}", plain_port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v8/finance/chart/BIG_BUDGET", plain_port);
    struct qf_options o = {.url_template = tmpl, .connections = 2};
    qf_client *c = qf_client_new(&o, NULL, NULL, err, sizeof(err));
    CHILD_CHECK(c != NULL);
    c->body_max_total = 3 * 512 * 1024;
    struct gen g[2];
    memset(g, 0, sizeof(g));
    for (int i = 0; i < 2; i++) {
        struct qf_request rq = {.url = url, .on_response = on_gen, .udata = &g[i],
                                .retries = -1};
        CHILD_CHECK(qf_client_request(c, &rq) == i);
    }
    CHILD_CHECK(qf_client_run(c) == 0);
    int ok = (g[0].err == 0) + (g[1].err == 0), capped = (g[0].err == QF_EBODY) +
                                                         (g[1].err == QF_EBODY);
    CHILD_CHECK(g[0].n == 1 && g[1].n == 1 && ok == 1 && capped == 1);
    CHILD_CHECK(c->body_total <= c->body_max_total);
    qf_client_free(c);
}

static void test_body_budget(void **state)
{
    (void)state;
    in_child(child_body_budget, 30);
}

/* A resolver that never answers (a UDP socket nobody reads) cannot hold the loop: a host
 * program polling qf_client_fd() keeps getting its steps back at once, a request to a host
 * that needs no lookup completes meanwhile, and the quote fails with "could not resolve" at
 * its connect timeout. The bound on a step is generous for a loaded machine (a blocking
 * lookup held one step for 6 s); nearly every step also stays under 5 ms. */
static double t_general_done, t_quote_done;

static void on_dns_result(const struct qf_result *r, void *udata)
{
    t_quote_done = (double)qf_now_us();
    on_result(r, udata);
}

static void on_dns_general(const struct qf_response *r)
{
    t_general_done = (double)qf_now_us();
    on_gen(r);
}

static void child_dead_resolver(void)
{
    int us = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    CHILD_CHECK(us >= 0 && bind(us, (struct sockaddr *)&a, sizeof(a)) == 0 &&
                getsockname(us, (struct sockaddr *)&a, &al) == 0);
    char servers[64], okurl[160], err[300];
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", ntohs(a.sin_port));
    snprintf(okurl, sizeof(okurl), "http://127.0.0.1:%d/v8/finance/chart/NODNS", plain_port);
    struct tally t = {0};
    struct qf_options o = {.url_template = "http://quotes.invalid/v8/finance/chart/{}",
                           .dns_servers = servers, .connect_timeout_ms = 1000, .retries = -1};
    qf_client *c = qf_client_new(&o, on_dns_result, &t, err, sizeof(err));
    CHILD_CHECK(c != NULL);
    struct gen g = {0};
    struct qf_request rq = {.url = okurl, .on_response = on_dns_general, .udata = &g};
    CHILD_CHECK(qf_client_add(c, "DNSQ") == 0);
    CHILD_CHECK(qf_client_request(c, &rq) == 0);
    int64_t end = qf_now_us() + 8000000, worst = 0;
    int left = 1, steps = 0, slow = 0;
    while (left > 0 && qf_now_us() < end) {
        int64_t t0 = qf_now_us();
        left = qf_client_step(c);
        int64_t d = qf_now_us() - t0;
        worst = d > worst ? d : worst;
        steps++;
        slow += d > 5000;
        struct pollfd p = {.fd = qf_client_fd(c), .events = POLLIN};
        int to = qf_client_timeout_ms(c);
        poll(&p, 1, to < 0 || to > 100 ? 100 : to);
    }
    CHILD_CHECK(left == 0);
    CHILD_CHECK(g.n == 1 && g.err == 0 && g.status == 200);
    CHILD_CHECK(t.failed == 1 && strstr(t.last_err, "could not resolve host quotes.invalid"));
    CHILD_CHECK(t_general_done < t_quote_done);
    if (worst >= 250000 || slow * 20 > steps)
        fprintf(stderr, "%d of %d steps over 5 ms, longest %lld us\n", slow, steps,
                (long long)worst);
    CHILD_CHECK(worst < 250000 && slow * 20 <= steps);
    qf_client_free(c);
    close(us);
}

static void test_dead_resolver(void **state)
{
    (void)state;
    in_child(child_dead_resolver, 30);
}

/* The CA file goes into the store only when a certificate is to be verified: a full
 * handshake loads it, a run that resumes every connection never does, and a file that reads
 * as PEM but will not load fails each request with a message naming it, the batch whole. */
static qf_client *trust_client(const char *ca, const char *cache, struct tally *t)
{
    char url[128], err[300];
    snprintf(url, sizeof(url), "https://localhost:%d/v8/finance/chart/{}", server_port);
    struct qf_options o = {.url_template = url, .cacert = ca, .connections = 1,
                           .timeout_ms = 5000, .session_cache = cache, .retries = -1};
    qf_client *c = qf_client_new(&o, on_result, t, err, sizeof(err));
    if (c == NULL)
        fprintf(stderr, "qf_client_new: %s\n", err);
    return c;
}

static void child_trust_lazy(void)
{
    char dir[] = "/tmp/qfetch-trust-XXXXXX", ca[300], cache[300], bad[300];
    CHILD_CHECK(mkdtemp(dir) != NULL);
    snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
    snprintf(cache, sizeof(cache), "%s/sessions", dir);
    snprintf(bad, sizeof(bad), "%s/bad.pem", dir);

    struct tally t = {0};
    qf_client *c = trust_client(ca, cache, &t);
    CHILD_CHECK(c != NULL && c->tls.trust_state == QF_TLS_TRUST_PEM);
    add_batch(c, "FULL", 3);
    CHILD_CHECK(qf_client_run(c) == 0 && t.ok == 3);
    CHILD_CHECK(c->tls.trust_state == QF_TLS_TRUST_LOADED);
    qf_client_free(c); /* writes the sessions */

    memset(&t, 0, sizeof(t));
    c = trust_client(ca, cache, &t);
    CHILD_CHECK(c != NULL);
    add_batch(c, "RESUME", 3);
    CHILD_CHECK(qf_client_run(c) == 0 && t.ok == 3);
    struct qf_stats st;
    qf_client_stats(c, &st);
    CHILD_CHECK(st.conns_opened == 1 && st.tls_resumed == 1);
    CHILD_CHECK(c->tls.trust_state == QF_TLS_TRUST_PEM);
    qf_client_free(c);

    /* Base64 that decodes, inside a certificate's PEM lines, to no certificate. */
    FILE *f = fopen(bad, "w");
    CHILD_CHECK(f != NULL);
    fputs("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n", f);
    CHILD_CHECK(fclose(f) == 0);
    memset(&t, 0, sizeof(t));
    c = trust_client(bad, NULL, &t);
    CHILD_CHECK(c != NULL);
    add_batch(c, "BADCA", 3);
    CHILD_CHECK(qf_client_run(c) == 0);
    if (t.failed != 3 || strstr(t.last_err, "cannot load CA file") == NULL)
        fprintf(stderr, "ok %d failed %d, last error: %s\n", t.ok, t.failed, t.last_err);
    CHILD_CHECK(t.ok == 0 && t.failed == 3 && strstr(t.last_err, bad) != NULL &&
                strstr(t.last_err, "cannot load CA file") != NULL);
    CHILD_CHECK(c->tls.trust_state == QF_TLS_TRUST_FAILED);
    qf_client_stats(c, &st);
    CHILD_CHECK(st.conns_opened == 1); /* the host failed as a whole, as for a bad certificate */
    qf_client_free(c);
    unlink(cache);
    unlink(bad);
    rmdir(dir);
}

static void test_trust_lazy(void **state)
{
    (void)state;
    in_child(child_trust_lazy, 30);
}

static void test_request_checks(void **state)
{
    (void)state;
    struct qf_options o = {.url_template = "http://127.0.0.1:9/{}"};
    qf_client *c = qf_client_new(&o, NULL, NULL, NULL, 0);
    assert_non_null(c);
    struct gen g = {0};
    const char *bad_hdr[] = {"No colon", NULL};
    const char *inj[] = {"X: a\r\nY: b", NULL};
    const char *host[] = {"Host: evil", NULL};
    struct qf_request rq = {.url = "ftp://x/", .on_response = on_gen, .udata = &g};
    assert_int_equal(qf_client_request(c, &rq), QF_EINVAL);
    rq.url = "http://127.0.0.1:9/x";
    rq.method = "POST";
    assert_int_equal(qf_client_request(c, &rq), QF_EINVAL);
    rq.method = NULL;
    rq.headers = bad_hdr;
    assert_int_equal(qf_client_request(c, &rq), QF_EINVAL);
    rq.headers = inj;
    assert_int_equal(qf_client_request(c, &rq), QF_EINVAL);
    rq.headers = host;
    assert_int_equal(qf_client_request(c, &rq), QF_EINVAL);
    rq.headers = NULL;
    rq.on_response = NULL;
    assert_int_equal(qf_client_request(c, &rq), QF_EINVAL);
    assert_int_equal(qf_client_cancel(c, 0), QF_EINVAL);
    assert_int_equal(qf_client_cancel(c, -1), QF_EINVAL);
    qf_client_free(c);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_bad_options),   cmocka_unit_test(test_symbol_checks),
        cmocka_unit_test(test_symbol_encode), cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_timer_heap),    cmocka_unit_test(test_request_checks),
        cmocka_unit_test(test_pending_quotes),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test(test_alloc_flat),
        cmocka_unit_test(test_embedded_loop),
        cmocka_unit_test(test_add_from_callback),
        cmocka_unit_test(test_mixed_batch),
        cmocka_unit_test(test_free_midflight),
        cmocka_unit_test(test_general_requests),
        cmocka_unit_test(test_general_timeout_cancel),
        cmocka_unit_test(test_general_compressed),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_pipelined_general),
        cmocka_unit_test(test_sibling_cancel),
        cmocka_unit_test(test_cancel_on_reset),
        cmocka_unit_test(test_flood_bounded),
        cmocka_unit_test(test_body_budget),
        cmocka_unit_test(test_dead_resolver),
        cmocka_unit_test(test_trust_lazy),
    };
    int failed = cmocka_run_group_tests_name("engine", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("engine_live", live, setup_server, teardown_server);
    return failed != 0;
}
