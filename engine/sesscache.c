/* TLS session cache file: lets the next process resume instead of doing a full handshake.
 * One line per session: "host port expires base64-DER"; each session carries its binding to
 * the trust configuration and host name that verified it (tls/tls.h), so a run trusting
 * other certificates never resumes it. Read once at client creation, written at free through
 * a temporary file and rename, mode 0600. The directory must be the user's and writable by
 * nobody else, the file a regular file of the user's: else the run goes on without the cache,
 * with a warning. Nothing here ever blocks on what sits at the path (a FIFO, a device). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/alloc.h"
#include "engine/client.h"
#include "engine/host.h"

#define MAGIC "qfetch-session-cache 1\n"
#define LINE_MAX_LEN 24000
#define FILE_SESSIONS_MAX 64 /* per host and list (usable, waiting for their binding) */

static void warn(struct qf_client *cl, const char *what, const char *path, const char *why)
{
    char line[600];
    if (cl->warn == NULL)
        return;
    snprintf(line, sizeof(line), "%s session cache %s: %s", what, path, why);
    cl->warn(line, cl->log_udata);
}

/* The run goes on without a cache: nothing is read, and qf_client_free() writes nothing. */
static void give_up(struct qf_client *cl, const char *why)
{
    char line[300];
    snprintf(line, sizeof(line), "%s; continuing without it", why);
    warn(cl, "not using", cl->sess_path, line);
    qf_free(cl->sess_path);
    cl->sess_path = NULL;
}

/* Opens the directory of the cache path and checks it is the user's and writable by nobody
 * else: anyone who may write there can swap the file under us. Points *base at the file's
 * name. Returns the directory's fd, or -1 after writing the reason to why. */
static int open_dir(const char *path, const char **base, char *why, size_t whylen)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];

    *base = slash != NULL ? slash + 1 : path;
    if (**base == '\0') {
        snprintf(why, whylen, "names a directory, not a file");
        return -1;
    }
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else if ((size_t)(slash - path) < sizeof(dir))
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    else {
        snprintf(why, whylen, "path too long");
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(why, whylen, "directory %.200s: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (st.st_uid != geteuid())
        snprintf(why, whylen, "directory %.200s is owned by another user", dir);
    else if (st.st_mode & 022)
        snprintf(why, whylen, "directory %.200s is writable by others (want mode 0700)", dir);
    else
        return fd;
    close(fd);
    return -1;
}

/* Keeps the file's lines in memory: hosts created later take their session from here. */
void qf_sess_load(struct qf_client *cl)
{
    char why[300];
    const char *base;
    int dfd = open_dir(cl->sess_path, &base, why, sizeof(why));
    if (dfd < 0) {
        give_up(cl, why);
        return;
    }
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer forever. */
    int fd = openat(dfd, base, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(dfd);
    if (fd < 0) {
        if (e == ELOOP)
            give_up(cl, "is a symbolic link");
        else if (e != ENOENT)
            give_up(cl, strerror(e));
        return;
    }
    struct stat st;
    const char *bad = NULL, *skip = NULL; /* bad: not ours to touch; skip: ours, replaced */
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        bad = "not a regular file";
    else if (st.st_uid != geteuid())
        bad = "owned by another user";
    else if (st.st_mode & 077)
        skip = "readable or writable by others (want mode 0600)";
    else if (st.st_size > 4 * 1024 * 1024)
        skip = "too large";
    if (bad != NULL || skip != NULL) {
        close(fd);
        if (bad != NULL)
            give_up(cl, bad);
        else
            warn(cl, "ignoring", cl->sess_path, skip);
        return;
    }
    char *buf = qf_malloc((size_t)st.st_size + 1);
    ssize_t n = buf != NULL ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    if (n >= 0)
        buf[n] = '\0'; /* before the compare: a file shorter than MAGIC ends there */
    if (n != st.st_size || strncmp(buf, MAGIC, strlen(MAGIC)) != 0) {
        qf_free(buf);
        warn(cl, "ignoring", cl->sess_path, "not a qfetch session cache");
        return;
    }
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
    /* The directory is checked again: it is what makes the rename below safe. */
    char why[300];
    const char *base;
    int dfd = open_dir(cl->sess_path, &base, why, sizeof(why));
    if (dfd < 0) {
        warn(cl, "cannot write", cl->sess_path, why);
        return;
    }
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < 8; attempt++) {
        if (snprintf(tmp, sizeof(tmp), "%s.%ld.%lx", base, (long)getpid(),
                     (unsigned long)(qf_now_us() + attempt)) >= (int)sizeof(tmp))
            break;
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        warn(cl, "cannot write", cl->sess_path, strerror(errno));
        close(dfd);
        return;
    }
    int bad = fchmod(fd, 0600) < 0 || write_all(fd, MAGIC, strlen(MAGIC)) < 0;
    for (unsigned i = 0; i < cl->nhosts && !bad; i++) {
        struct qf_host *h = cl->hosts[i];
        long long exp;
        for (int k = 0; h->url.tls && k < h->cache.n + h->cache.npend && !bad; k++) {
            /* The newest of each list: the next run opens a few connections, not hundreds. */
            int skip = k < h->cache.n ? k < h->cache.n - FILE_SESSIONS_MAX
                                      : k - h->cache.n >= FILE_SESSIONS_MAX;
            if (skip || qf_tls_cache_export(&h->cache, k, b64, sizeof(b64), &exp) <= 0)
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
    if (close(fd) < 0 || bad || renameat(dfd, tmp, dfd, base) < 0) {
        warn(cl, "cannot write", cl->sess_path, strerror(errno));
        unlinkat(dfd, tmp, 0);
    }
    close(dfd);
}
