/* TLS session cache file: lets the next process resume instead of doing a full handshake.
 * One line per session: "host port expires base64-DER"; each session carries its binding to
 * the trust configuration and host name that verified it (tls/tls.h), so a run trusting
 * other certificates never resumes it. Read once at client creation, written
 * at free through a temporary file and rename, mode 0600. A file that is not ours (owner,
 * permissions, format) is ignored with a warning: a session is a secret and is trusted for
 * nothing but resumption. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"

#define MAGIC "qfetch-session-cache 1\n"
#define LINE_MAX_LEN 24000

static void warn(struct qf_client *cl, const char *what, const char *path, const char *why)
{
    char line[600];
    if (cl->warn == NULL)
        return;
    snprintf(line, sizeof(line), "%s session cache %s: %s", what, path, why);
    cl->warn(line, cl->log_udata);
}

/* Keeps the file's lines in memory: hosts created later take their session from here. */
void qf_sess_load(struct qf_client *cl)
{
    int fd = open(cl->sess_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            warn(cl, "ignoring", cl->sess_path, strerror(errno));
        return;
    }
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (st.st_uid != geteuid())
        why = "owned by another user";
    else if (st.st_mode & 077)
        why = "readable or writable by others (want mode 0600)";
    else if (st.st_size > 4 * 1024 * 1024)
        why = "too large";
    if (why != NULL) {
        close(fd);
        warn(cl, "ignoring", cl->sess_path, why);
        return;
    }
    char *buf = qf_malloc((size_t)st.st_size + 1);
    ssize_t n = buf != NULL ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    if (n != st.st_size || strncmp(buf, MAGIC, strlen(MAGIC)) != 0) {
        qf_free(buf);
        warn(cl, "ignoring", cl->sess_path, "not a qfetch session cache");
        return;
    }
    buf[n] = '\0';
    cl->sess_text = buf;
}

/* Imports every usable "host port ..." line of the loaded text, oldest first. */
void qf_sess_apply(struct qf_client *cl, struct qf_host *h)
{
    if (cl->sess_text == NULL)
        return;
    size_t hl = strlen(h->url.host), pl = strlen(h->url.port);
    for (char *line = cl->sess_text + strlen(MAGIC); *line != '\0';) {
        char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        char host[256], port[8], b64[LINE_MAX_LEN];
        long long exp;
        if (len < LINE_MAX_LEN && len > hl + pl + 2 && strncasecmp(line, h->url.host, hl) == 0 &&
            line[hl] == ' ' && strncmp(line + hl + 1, h->url.port, pl) == 0 &&
            line[hl + 1 + pl] == ' ') {
            char tmp[LINE_MAX_LEN];
            memcpy(tmp, line, len);
            tmp[len] = '\0';
            if (sscanf(tmp, "%255s %7s %lld %23999s", host, port, &exp, b64) == 4 &&
                exp > (long long)time(NULL))
                qf_tls_cache_import(&h->cache, b64, h->url.host);
        }
        line += len + (end != NULL);
    }
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes this run's sessions, plus unexpired lines for hosts this run did not touch. */
void qf_sess_save(struct qf_client *cl)
{
    char tmp[4200], b64[LINE_MAX_LEN], line[LINE_MAX_LEN + 300];
    int any = 0;

    for (unsigned i = 0; i < cl->nhosts; i++)
        any |= cl->hosts[i]->url.tls && cl->hosts[i]->cache.n + cl->hosts[i]->cache.npend > 0;
    if (!any)
        return;
    if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", cl->sess_path) >= (int)sizeof(tmp))
        return;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        warn(cl, "cannot write", cl->sess_path, strerror(errno));
        return;
    }
    int bad = fchmod(fd, 0600) < 0 || write_all(fd, MAGIC, strlen(MAGIC)) < 0;
    for (unsigned i = 0; i < cl->nhosts && !bad; i++) {
        struct qf_host *h = cl->hosts[i];
        long long exp;
        for (int k = 0; h->url.tls && k < h->cache.n + h->cache.npend && !bad; k++) {
            if (qf_tls_cache_export(&h->cache, k, b64, sizeof(b64), &exp) <= 0)
                continue;
            int n = snprintf(line, sizeof(line), "%s %s %lld %s\n", h->url.host, h->url.port,
                             exp, b64);
            bad = write_all(fd, line, (size_t)n) < 0;
        }
    }
    /* Lines for other hosts survive until they expire. */
    for (char *l = cl->sess_text ? cl->sess_text + strlen(MAGIC) : NULL; l && *l && !bad;) {
        char *end = strchr(l, '\n');
        size_t len = end != NULL ? (size_t)(end - l) : strlen(l);
        char host[256], port[8];
        long long exp = 0;
        int mine = 0;
        if (len < sizeof(line) - 1) {
            memcpy(line, l, len);
            line[len] = '\n';
            line[len + 1] = '\0';
            if (sscanf(line, "%255s %7s %lld", host, port, &exp) == 3) {
                for (unsigned i = 0; i < cl->nhosts; i++)
                    mine |= strcasecmp(cl->hosts[i]->url.host, host) == 0 &&
                            strcmp(cl->hosts[i]->url.port, port) == 0;
                if (!mine && exp > (long long)time(NULL))
                    bad = write_all(fd, line, len + 1) < 0;
            }
        }
        l += len + (end != NULL);
    }
    if (close(fd) < 0 || bad || rename(tmp, cl->sess_path) < 0) {
        warn(cl, "cannot write", cl->sess_path, strerror(errno));
        unlink(tmp);
    }
}
