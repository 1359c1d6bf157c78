/* h2_general: the general request API against tests/h2server.py, for tests/http2.py (issue 17).
 * Uses include/qfetch.h only, as any program would. One client, two rounds:
 *   round 1, all at once: a GET with a header of ours, a HEAD, a BIG* body streamed through
 *   on_chunk, a RST* request the server resets, a HANG* request the server never answers,
 *   cancelled from a SLOW* request's on_response, and a BIG* body aborted from its own on_chunk;
 *   round 2, after round 1 ended: one more GET on the same client.
 * Prints one line per event, `name key=value ...` (err: the QF_E* number); http2.py reads
 * them. Exit status 0 when the client ran to its end (the checks are http2.py's), 2 for a setup
 * failure.
 *
 *     h2_general ORIGIN CACERT        ORIGIN: https://localhost:PORT */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qfetch.h>

#define PATH "/v8/finance/chart/"

struct job {
    const char *name; /* the line's first word */
    size_t chunks, streamed;
    size_t abort_after; /* on_chunk: abort once this many bytes came (0: never) */
};

static qf_client *client;
static int hang_id = -1;

static int on_chunk(const char *data, size_t len, void *udata)
{
    struct job *j = udata;

    (void)data;
    j->chunks++;
    j->streamed += len;
    return j->abort_after > 0 && j->streamed >= j->abort_after;
}

static void on_response(const struct qf_response *r)
{
    struct job *j = r->udata;

    printf("%s err=%d status=%d body_len=%zu body_null=%d chunks=%zu streamed=%zu reused=%d\n",
           j->name, r->err, r->status, r->body_len, r->body == NULL, j->chunks, j->streamed,
           r->reused);
    if (r->err != 0)
        printf("%s errmsg %s\n", j->name, r->errmsg);
    for (size_t i = 0; i < r->nheaders; i++)
        printf("%s header %s: %s\n", j->name, r->headers[i].name, r->headers[i].value);
    /* The SLOW answer comes while the HANG request is open: cancel it from here. */
    if (strcmp(j->name, "slow") == 0 && hang_id >= 0)
        printf("cancel rc=%d\n", qf_client_cancel(client, hang_id));
    fflush(stdout);
}

static int add(const char *origin, const char *sym, const char *method, struct job *j,
               int stream)
{
    static const char *const headers[] = {"X-Test: h2-general", NULL};
    char url[512];

    snprintf(url, sizeof(url), "%s%s%s", origin, PATH, sym);
    struct qf_request rq = {
        .url = url,
        .method = method,
        .headers = headers,
        .on_response = on_response,
        .on_chunk = stream ? on_chunk : NULL,
        .udata = j,
    };
    int id = qf_client_request(client, &rq);
    if (id < 0)
        fprintf(stderr, "h2_general: %s: %s\n", url, qf_strerror(id));
    return id;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fputs("usage: h2_general ORIGIN CACERT\n", stderr);
        return 2;
    }
    const char *origin = argv[1];
    struct qf_options o = {.cacert = argv[2], .timeout_ms = 5000, .retries = -1};
    char err[256];

    client = qf_client_new(&o, NULL, NULL, err, sizeof(err));
    if (client == NULL) {
        fprintf(stderr, "h2_general: %s\n", err);
        return 2;
    }
    struct job get = {.name = "get"}, head = {.name = "head"}, big = {.name = "stream"},
               rst = {.name = "rst"}, hang = {.name = "hang"}, slow = {.name = "slow"},
               abort_job = {.name = "abort", .abort_after = 1}, again = {.name = "again"};
    hang_id = add(origin, "HANGG1", NULL, &hang, 0);
    if (hang_id < 0 || add(origin, "GENG1", NULL, &get, 0) < 0 ||
        add(origin, "GENH1", "HEAD", &head, 0) < 0 || add(origin, "BIGG1", NULL, &big, 1) < 0 ||
        add(origin, "RSTG1", NULL, &rst, 0) < 0 || add(origin, "SLOWG1", NULL, &slow, 0) < 0 ||
        add(origin, "BIGG2", NULL, &abort_job, 1) < 0) {
        qf_client_free(client);
        return 2;
    }
    int rc = qf_client_run(client);
    printf("round1 rc=%d\n", rc);
    if (add(origin, "GENG2", NULL, &again, 0) < 0) {
        qf_client_free(client);
        return 2;
    }
    rc = qf_client_run(client);
    struct qf_stats st;
    qf_client_stats(client, &st);
    printf("round2 rc=%d conns_opened=%llu requests_sent=%llu\n", rc,
           (unsigned long long)st.conns_opened, (unsigned long long)st.requests_sent);
    qf_client_free(client);
    puts("done");
    return 0;
}
