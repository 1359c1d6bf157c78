/* memprobe: what an idle keep-alive connection and a queued request cost in memory. Each
 * measurement runs in a forked child so heaps never mix, and compares two sizes of the same
 * workload, so fixed costs (OpenSSL, the client, the binary) cancel out.
 *
 *     memprobe conns N   N tickers fetched with -c 1, then with -c N: every connection of the
 *                        second run is parked idle when measured; the difference / (N - 1)
 *     memprobe queue N   1,000 tickers queued, then N, the client never stepped (no socket,
 *                        no TLS); the difference / (N - 1000)
 *     memprobe run CMD [ARG]...  CMD's peak RSS (wait4's ru_maxrss): from this small parent,
 *                        not polluted by a big one (the pages a child has before exec count)
 *
 * Figures: VmRSS from /proc/self/status (resident pages; kernel socket buffers are not in
 * it) and the malloc heap in use (mallinfo2: uordblks + hblkhd). Environment: QF_URL, QF_CACERT
 * as for quote. The last line is machine-readable: "memprobe: KEY=VALUE ...". */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mallinfo2 */
#endif
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <qfetch.h>

#define QUEUE_BASE 1000

struct mem {
    long rss_kib, hwm_kib, trimmed_kib;
    long long heap;
    long long conns, ok, failed;
};

static void read_status(long *rss_kib, long *hwm_kib)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");

    *rss_kib = *hwm_kib = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            *rss_kib = strtol(line + 6, NULL, 10);
        else if (strncmp(line, "VmHWM:", 6) == 0)
            *hwm_kib = strtol(line + 6, NULL, 10);
    }
    if (f != NULL)
        fclose(f);
}

/* RSS as the host sees it, then after malloc_trim(): glibc keeps freed chunks resident (for
 * instance OpenSSL's record buffers, released when a connection goes idle) until trimmed. */
static void measure(struct mem *m)
{
    long hwm;
    struct mallinfo2 mi = mallinfo2();

    m->heap = (long long)(mi.uordblks + mi.hblkhd);
    read_status(&m->rss_kib, &m->hwm_kib);
    malloc_trim(0);
    read_status(&m->trimmed_kib, &hwm);
}

static void on_result(const struct qf_result *r, void *udata)
{
    struct mem *m = udata;

    if (r->err == 0)
        m->ok++;
    else if (m->failed++ == 0)
        fprintf(stderr, "memprobe: %s: %s\n", r->symbol, r->errmsg);
}

/* Child: fetch n tickers over at most conns connections, measure with all of them parked. */
static int probe_conns(struct mem *m, int conns, int n)
{
    struct qf_options o = {
        .url_template = getenv("QF_URL"),
        .cacert = getenv("QF_CACERT"),
        .connections = conns,
        .connect_timeout_ms = 60000,
        .timeout_ms = 60000,
    };
    char err[256], sym[32];
    qf_client *c = qf_client_new(&o, on_result, m, err, sizeof(err));
    if (c == NULL) {
        fprintf(stderr, "memprobe: %s\n", err);
        return 2;
    }
    for (int i = 0; i < n; i++) {
        snprintf(sym, sizeof(sym), "MEMPROBE%05d", i);
        if (qf_client_add(c, sym) < 0)
            return 2;
    }
    if (qf_client_run(c) < 0)
        return 2;
    struct qf_stats st;
    qf_client_stats(c, &st);
    m->conns = (long long)st.conns_opened;
    measure(m);
    qf_client_free(c);
    return 0;
}

/* Child: queue n tickers on a client that is never stepped. */
static int probe_queue(struct mem *m, int n)
{
    char err[256], sym[32];
    struct qf_options o = {.url_template = getenv("QF_URL"), .cacert = getenv("QF_CACERT")};
    qf_client *c = qf_client_new(&o, on_result, m, err, sizeof(err));
    if (c == NULL) {
        fprintf(stderr, "memprobe: %s\n", err);
        return 2;
    }
    for (int i = 0; i < n; i++) {
        snprintf(sym, sizeof(sym), "QUEUED%07d", i);
        if (qf_client_add(c, sym) < 0)
            return 2;
    }
    measure(m);
    qf_client_free(c);
    return 0;
}

static int in_child(struct mem *m, const char *mode, int a, int b)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        struct mem r = {0};
        close(p[0]);
        int rc = strcmp(mode, "conns") == 0 ? probe_conns(&r, a, b) : probe_queue(&r, a);
        if (rc == 0 && write(p[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
            rc = 2;
        _exit(rc);
    }
    close(p[1]);
    ssize_t got = read(p[0], m, sizeof(*m));
    close(p[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        got != (ssize_t)sizeof(*m))
        return -1;
    return 0;
}

static void show(const char *label, const struct mem *m)
{
    printf("  %-14s VmRSS %7ld KiB (trimmed %7ld)  VmHWM %7ld KiB  heap %10lld B", label,
           m->rss_kib, m->trimmed_kib, m->hwm_kib, m->heap);
    if (m->conns > 0)
        printf("  conns %lld  ok %lld", m->conns, m->ok);
    printf("\n");
}

static int peak_of(char **cmd)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        execvp(cmd[0], cmd);
        perror(cmd[0]);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0)
        return 1;
    printf("memprobe: peak_rss_kib=%ld exit=%d\n", ru.ru_maxrss,
           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct mem a, b;
    char label[64];
    int n = argc == 3 ? atoi(argv[2]) : 0;

    if (argc >= 3 && strcmp(argv[1], "run") == 0)
        return peak_of(argv + 2);
    if (argc != 3 || (strcmp(argv[1], "conns") != 0 && strcmp(argv[1], "queue") != 0) || n < 2 ||
        (strcmp(argv[1], "queue") == 0 && n <= QUEUE_BASE)) {
        fprintf(stderr,
                "usage: memprobe conns N (N >= 2) | memprobe queue N (N > %d) | "
                "memprobe run CMD [ARG]...\n",
                QUEUE_BASE);
        return 2;
    }
    /* N connections need N descriptors, plus epoll, timerfd and stdio. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max : (rlim_t)n + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (strcmp(argv[1], "conns") == 0) {
        printf("memprobe: %d tickers over 1 connection, then over %d idle keep-alive ones\n", n, n);
        if (in_child(&a, "conns", 1, n) < 0 || in_child(&b, "conns", n, n) < 0) {
            fprintf(stderr, "memprobe: a measurement failed\n");
            return 1;
        }
        show("-c 1", &a);
        snprintf(label, sizeof(label), "-c %d", n);
        show(label, &b);
        if (a.ok != n || b.ok != n || b.conns != n) {
            fprintf(stderr, "memprobe: expected %d prices and %d connections\n", n, n);
            return 1;
        }
        long long d = b.conns - a.conns;
        printf("memprobe: conns=%d per_conn_rss_bytes=%lld per_conn_trimmed_rss_bytes=%lld "
               "per_conn_heap_bytes=%lld\n",
               n, (b.rss_kib - a.rss_kib) * 1024 / d, (b.trimmed_kib - a.trimmed_kib) * 1024 / d,
               (b.heap - a.heap) / d);
    } else {
        printf("memprobe: %d tickers queued, then %d, never stepped\n", QUEUE_BASE, n);
        if (in_child(&a, "queue", QUEUE_BASE, 0) < 0 || in_child(&b, "queue", n, 0) < 0) {
            fprintf(stderr, "memprobe: a measurement failed\n");
            return 1;
        }
        snprintf(label, sizeof(label), "%d queued", QUEUE_BASE);
        show(label, &a);
        snprintf(label, sizeof(label), "%d queued", n);
        show(label, &b);
        long long d = n - QUEUE_BASE;
        printf("memprobe: queued=%d per_request_rss_bytes=%lld per_request_trimmed_rss_bytes=%lld "
               "per_request_heap_bytes=%lld\n",
               n, (b.rss_kib - a.rss_kib) * 1024 / d, (b.trimmed_kib - a.trimmed_kib) * 1024 / d,
               (b.heap - a.heap) / d);
    }
    return 0;
}
