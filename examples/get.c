/* get: GET or HEAD of one or more URLs, fetched concurrently with qfetch's general request API.
 * Prints each response's status, the headers asked for and the body size; -s streams bodies
 * through on_chunk instead of buffering them. Uses include/qfetch.h only.
 *
 *     get [-I] [-s] [-m BYTES] [-o FILE] [-H 'Name: value']... [-p NAME]... [-t MS] URL...
 *
 *   -I          HEAD instead of GET
 *   -s          stream the body through on_chunk (counted, or written to -o as it arrives)
 *   -m BYTES    with -s: abort a body once it passes BYTES (on_chunk returns non-zero)
 *   -o FILE     write the body to FILE ("-": stdout); one URL only
 *   -H LINE     extra request header, repeatable
 *   -p NAME     print this response header (repeatable; "*" prints all);
 *               default: Content-Type and Content-Length
 *   -t MS       per-attempt timeout
 *
 * Environment: QF_CACERT (PEM bundle to trust instead of the system store), QF_RESOLVE
 * ("HOST:PORT:ADDR", as curl --resolve); https_proxy, http_proxy, all_proxy and no_proxy, as
 * curl reads them (QF_OPT_PROXY_ENV). Exit status 0 when every response arrived with a
 * status below 400, 1 otherwise, 2 for a usage or configuration error. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <qfetch.h>

#define MAX_LIST 32

struct job {
    const char *url; /* argv: outlives the client */
    FILE *out;       /* body destination, or NULL */
    size_t chunks, streamed, max_bytes;
};

static const char *show[MAX_LIST + 1];
static size_t nshow;
static int failed;
static FILE *info; /* the report: stdout, or stderr when the body goes to stdout */

static int wanted(const char *name)
{
    for (size_t i = 0; i < nshow; i++) {
        if (strcmp(show[i], "*") == 0 || strcasecmp(show[i], name) == 0)
            return 1;
    }
    return 0;
}

/* Body bytes as they arrive: data is borrowed and reused for the next read. */
static int on_chunk(const char *data, size_t len, void *udata)
{
    struct job *j = udata;

    j->chunks++;
    j->streamed += len;
    if (j->out != NULL && fwrite(data, 1, len, j->out) != len)
        return 1;
    return j->max_bytes > 0 && j->streamed > j->max_bytes;
}

static void on_response(const struct qf_response *r)
{
    struct job *j = r->udata;

    fprintf(info, "%s\n", j->url);
    if (r->err != 0) {
        fprintf(info, "  error: %s\n", r->errmsg[0] ? r->errmsg : qf_strerror(r->err));
        failed = 1;
        return;
    }
    fprintf(info, "  status %d (%d attempt%s, %s connection, %.1f ms)\n", r->status, r->attempts,
            r->attempts == 1 ? "" : "s", r->reused ? "reused" : "new", r->total_ms);
    for (size_t i = 0; i < r->nheaders; i++) {
        if (wanted(r->headers[i].name))
            fprintf(info, "  %s: %s\n", r->headers[i].name, r->headers[i].value);
    }
    if (r->body == NULL)
        fprintf(info, "  body %zu bytes, streamed in %zu chunks\n", r->body_len, j->chunks);
    else
        fprintf(info, "  body %zu bytes\n", r->body_len);
    /* A buffered body is borrowed too: write it out before returning. */
    if (r->body != NULL && j->out != NULL && fwrite(r->body, 1, r->body_len, j->out) != r->body_len)
        failed = 1;
    if (r->status >= 400)
        failed = 1;
}

static int usage(void)
{
    fputs("usage: get [-I] [-s] [-m BYTES] [-o FILE] [-H 'Name: value']... [-p NAME]... "
          "[-t MS] URL...\n",
          stderr);
    return 2;
}

int main(int argc, char **argv)
{
    const char *headers[MAX_LIST + 1] = {NULL};
    size_t nheaders = 0, max_bytes = 0;
    const char *method = "GET", *outname = NULL;
    int stream = 0, timeout_ms = 0, opt;

    while ((opt = getopt(argc, argv, "Ism:o:H:p:t:")) != -1) {
        switch (opt) {
        case 'I':
            method = "HEAD";
            break;
        case 's':
            stream = 1;
            break;
        case 'm':
            max_bytes = strtoul(optarg, NULL, 10);
            break;
        case 'o':
            outname = optarg;
            break;
        case 'H':
            if (nheaders == MAX_LIST)
                return usage();
            headers[nheaders++] = optarg;
            break;
        case 'p':
            if (nshow == MAX_LIST)
                return usage();
            show[nshow++] = optarg;
            break;
        case 't':
            timeout_ms = atoi(optarg);
            break;
        default:
            return usage();
        }
    }
    int nurls = argc - optind;
    if (nurls < 1 || (outname != NULL && nurls != 1) || timeout_ms < 0)
        return usage();
    if (nshow == 0) {
        show[nshow++] = "Content-Type";
        show[nshow++] = "Content-Length";
    }
    FILE *out = NULL;
    info = stdout;
    if (outname != NULL) {
        out = strcmp(outname, "-") == 0 ? stdout : fopen(outname, "wb");
        if (out == NULL) {
            perror(outname);
            return 2;
        }
        if (out == stdout)
            info = stderr;
    }

    const char *resolve[] = {getenv("QF_RESOLVE"), NULL};
    struct qf_options o = {.cacert = getenv("QF_CACERT"), .resolve = resolve,
                           .flags = QF_OPT_PROXY_ENV};
    char err[256];
    qf_client *c = qf_client_new(&o, NULL, NULL, err, sizeof(err));
    struct job *jobs = calloc((size_t)nurls, sizeof(*jobs));
    if (c == NULL || jobs == NULL) {
        fprintf(stderr, "get: %s\n", c == NULL ? err : "out of memory");
        qf_client_free(c);
        return 2;
    }
    for (int i = 0; i < nurls; i++) {
        jobs[i] = (struct job){.url = argv[optind + i], .out = out, .max_bytes = max_bytes};
        struct qf_request rq = {
            .url = jobs[i].url,
            .method = method,
            .headers = headers,
            .timeout_ms = timeout_ms,
            .on_response = on_response,
            .on_chunk = stream ? on_chunk : NULL,
            .udata = &jobs[i],
        };
        int id = qf_client_request(c, &rq);
        if (id < 0) {
            fprintf(stderr, "get: %s: %s\n", jobs[i].url, qf_strerror(id));
            qf_client_free(c);
            free(jobs);
            return 2;
        }
    }
    int rc = qf_client_run(c);
    qf_client_free(c);
    free(jobs);
    if (out != NULL && out != stdout && fclose(out) != 0)
        failed = 1;
    if (rc < 0) {
        fprintf(stderr, "get: %s\n", qf_strerror(rc));
        return 2;
    }
    return failed;
}
