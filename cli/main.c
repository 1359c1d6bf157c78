/* qfetch CLI: a thin client of include/qfetch.h, exactly like an outside user would be. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "qfetch.h"

struct run {
    struct cli_row *rows;
    size_t *row_of; /* client index -> row of the symbol's first occurrence */
    int failed;
};

static const char *const *sort_base;

static int by_symbol(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(sort_base[i], sort_base[j]);
    return c != 0 ? c : (i > j) - (i < j);
}

/* Duplicate symbols are fetched once: first[i] is the first position holding tickers[i]. */
static size_t *first_positions(const char **tickers, size_t n)
{
    size_t *order = malloc(n * sizeof(*order)), *first = malloc(n * sizeof(*first));
    if (order == NULL || first == NULL) {
        free(order);
        free(first);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    sort_base = tickers;
    qsort(order, n, sizeof(*order), by_symbol);
    for (size_t k = 0; k < n; k++) {
        int same = k > 0 && strcmp(tickers[order[k]], tickers[order[k - 1]]) == 0;
        first[order[k]] = same ? first[order[k - 1]] : order[k];
    }
    free(order);
    return first;
}

static void on_result(const struct qf_result *r, void *udata)
{
    struct run *run = udata;
    struct cli_row *row = &run->rows[run->row_of[r->index]];

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
    struct run run = {.rows = calloc(a.ntickers, sizeof(*run.rows)),
                      .row_of = malloc(a.ntickers * sizeof(size_t))};
    size_t *first = first_positions(a.tickers, a.ntickers);
    if (first == NULL || run.row_of == NULL) {
        free(run.rows);
        run.rows = NULL;
    }
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
        free(run.row_of);
        free(first);
        cli_args_free(&a);
        return 2;
    }
    for (size_t i = 0; i < a.ntickers; i++) {
        run.rows[i].symbol = a.tickers[i];
        if (first[i] != i)
            continue;
        int idx = qf_client_add(c, a.tickers[i]);
        if (idx < 0) {
            fprintf(stderr, "qfetch: invalid symbol '%.40s%s': %s\n", a.tickers[i],
                    strlen(a.tickers[i]) > 40 ? "..." : "",
                    idx == QF_EINVAL ? "must be 1-64 bytes without spaces or control characters"
                                     : qf_strerror(idx));
            qf_client_free(c);
            free(run.rows);
            free(run.row_of);
            free(first);
            cli_args_free(&a);
            return 2;
        }
        run.row_of[idx] = i;
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
        struct cli_row *row = &run.rows[i], *src = &run.rows[first[i]];
        if (first[i] != i && src->done) {
            *row = *src;
            row->symbol = a.tickers[i];
            row->errmsg = src->errmsg != NULL ? strdup(src->errmsg) : NULL;
        }
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
    free(run.row_of);
    free(first);
    cli_args_free(&a);
    return rc < 0 ? 2 : run.failed ? 1 : 0;
}
