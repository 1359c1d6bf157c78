/* qfetch CLI: a thin client of include/qfetch.h, exactly like an outside user would be. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "qfetch.h"

struct run {
    struct cli_row *rows;
    int failed;
};

static void on_result(const struct qf_result *r, void *udata)
{
    struct run *run = udata;
    struct cli_row *row = &run->rows[r->index];

    row->done = 1;
    row->err = r->err;
    row->status = r->status;
    if (r->err == 0) {
        snprintf(row->price, sizeof(row->price), "%s", r->price_text);
        snprintf(row->currency, sizeof(row->currency), "%s", r->currency);
    } else {
        run->failed = 1;
        row->errmsg = strdup(r->errmsg[0] ? r->errmsg : qf_strerror(r->err));
    }
}

static void on_log(const char *line, void *udata)
{
    (void)udata;
    fprintf(stderr, "%s\n", line);
}

int main(int argc, char **argv)
{
    struct cli_args a;
    int rc = cli_args_parse(&a, argc, argv);
    if (rc != 0 || a.help) {
        if (a.help)
            cli_usage();
        cli_args_free(&a);
        return rc;
    }
    struct run run = {.rows = calloc(a.ntickers, sizeof(*run.rows))};
    struct qf_options o = {
        .url_template = a.url,
        .connections = a.connections,
        .cacert = a.cacert,
        .resolve = a.resolve,
        .timeout_ms = a.timeout_ms,
        .connect_timeout_ms = a.connect_timeout_ms,
        .retries = a.retries < 0 ? 0 : a.retries == 0 ? -1 : a.retries,
        .user_agent = a.user_agent,
        .log = a.verbose ? on_log : NULL,
    };
    char err[320];
    qf_client *c = run.rows != NULL ? qf_client_new(&o, on_result, &run, err, sizeof(err)) : NULL;
    if (c == NULL) {
        fprintf(stderr, "qfetch: %s\n", run.rows != NULL ? err : "out of memory");
        free(run.rows);
        cli_args_free(&a);
        return 2;
    }
    for (size_t i = 0; i < a.ntickers; i++) {
        run.rows[i].symbol = a.tickers[i];
        int idx = qf_client_add(c, a.tickers[i]);
        if (idx < 0) {
            fprintf(stderr, "qfetch: invalid symbol '%.40s%s': %s\n", a.tickers[i],
                    strlen(a.tickers[i]) > 40 ? "..." : "",
                    idx == QF_EINVAL ? "must be 1-64 bytes without spaces or control characters"
                                     : qf_strerror(idx));
            qf_client_free(c);
            free(run.rows);
            cli_args_free(&a);
            return 2;
        }
    }
    rc = qf_client_run(c);
    if (rc < 0)
        fprintf(stderr, "qfetch: event loop failed: %s\n", qf_strerror(rc));
    if (a.stats) {
        struct qf_stats st;
        qf_client_stats(c, &st);
        fprintf(stderr,
                "qfetch: stats: conns_opened=%llu requests_sent=%llu reused=%llu tls_full=%llu "
                "tls_resumed=%llu retries=%llu stale_resends=%llu bytes_read=%llu "
                "wall_ms=%.1f\n",
                (unsigned long long)st.conns_opened, (unsigned long long)st.requests_sent,
                (unsigned long long)st.reused, (unsigned long long)st.tls_full,
                (unsigned long long)st.tls_resumed, (unsigned long long)st.retries,
                (unsigned long long)st.stale_resends, (unsigned long long)st.bytes_read,
                st.wall_ms);
    }
    qf_client_free(c);
    for (size_t i = 0; i < a.ntickers; i++) {
        if (!run.rows[i].done) {
            run.rows[i].err = QF_ECANCELED;
            run.rows[i].errmsg = strdup("not completed");
            run.failed = 1;
        }
    }
    cli_out_print(a.format, run.rows, a.ntickers);
    for (size_t i = 0; i < a.ntickers; i++)
        free(run.rows[i].errmsg);
    free(run.rows);
    cli_args_free(&a);
    return rc < 0 ? 2 : run.failed ? 1 : 0;
}
