/* The URL template split around "{}", and plain URLs of general requests. */
#ifndef QF_URL_H
#define QF_URL_H

#include <stddef.h>

struct qf_url {
    int tls;
    char host[256];
    char port[8];
    char *prefix; /* request target before the symbol, e.g. "/v8/finance/chart/" */
    char *suffix; /* after it, e.g. "?interval=1d" or "" */
};
int qf_url_parse(struct qf_url *u, const char *tmpl, char *err, size_t errlen);
/* A plain URL: fills tls/host/port (prefix, suffix NULL) and points *path at the rest. */
int qf_url_origin(struct qf_url *u, const char *url, const char **path, char *err,
                  size_t errlen);
void qf_url_free(struct qf_url *u);

#endif
