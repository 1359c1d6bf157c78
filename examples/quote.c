/* quote: the smallest useful qfetch program. Prints the price of every ticker on the command
 * line, fetched concurrently over kept-alive connections. Uses include/qfetch.h only.
 *
 *     quote AAPL MSFT ^GSPC
 *     QF_URL='https://127.0.0.1:8443/v8/finance/chart/{}' QF_CACERT=ca.pem quote AAPL
 *
 * Environment: QF_URL (URL template, "{}" is the symbol), QF_CACERT (PEM bundle to trust
 * instead of the system store). Exit status 0 when every price arrived, 1 otherwise, 2 for
 * a usage or configuration error. */
#include <stdio.h>
#include <stdlib.h>

#include <qfetch.h>

static void on_result(const struct qf_result *r, void *udata)
{
    int *failed = udata;

    /* r and its strings are borrowed: print or copy them here, never keep the pointers. */
    if (r->err == 0) {
        printf("%-10s %12s %s\n", r->symbol, r->price_text, r->currency);
    } else {
        printf("%-10s error: %s\n", r->symbol, r->errmsg[0] ? r->errmsg : qf_strerror(r->err));
        *failed = 1;
    }
}

int main(int argc, char **argv)
{
    struct qf_options o = {.url_template = getenv("QF_URL"), .cacert = getenv("QF_CACERT")};
    char err[256];
    int failed = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s TICKER...\n", argv[0]);
        return 2;
    }
    qf_client *c = qf_client_new(&o, on_result, &failed, err, sizeof(err));
    if (c == NULL) {
        fprintf(stderr, "quote: %s\n", err);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        int rc = qf_client_add(c, argv[i]);
        if (rc < 0) {
            fprintf(stderr, "quote: %s: %s\n", argv[i], qf_strerror(rc));
            qf_client_free(c);
            return 2;
        }
    }
    /* Results arrive in completion order; r->index would give the input order. */
    int rc = qf_client_run(c);
    qf_client_free(c);
    if (rc < 0) {
        fprintf(stderr, "quote: %s\n", qf_strerror(rc));
        return 2;
    }
    return failed;
}
