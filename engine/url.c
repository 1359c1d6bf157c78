/* URL template parsing and symbol percent-encoding. The template's host is fixed; "{}" must
 * appear exactly once, after the host, and is replaced per request by the encoded symbol. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

int qf_symbol_encode(const char *symbol, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)symbol; *p != '\0'; p++) {
        unsigned ch = *p;
        int keep = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~';
        if (o + (keep ? 1 : 3) >= cap)
            return QF_ENOSPC;
        if (keep) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    if (o >= cap)
        return QF_ENOSPC;
    out[o] = '\0';
    return (int)o;
}

static char *dup_range(const char *s, size_t n)
{
    char *d = qf_malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

int qf_url_parse(struct qf_url *u, const char *tmpl, char *err, size_t errlen)
{
    const char *p;

    memset(u, 0, sizeof(*u));
    if (strncmp(tmpl, "https://", 8) == 0) {
        u->tls = 1;
        p = tmpl + 8;
    } else if (strncmp(tmpl, "http://", 7) == 0) {
        p = tmpl + 7;
    } else {
        snprintf(err, errlen, "URL template must start with http:// or https://: %s", tmpl);
        return QF_EINVAL;
    }
    const char *ph = strstr(tmpl, "{}");
    if (ph == NULL || strstr(ph + 2, "{}") != NULL) {
        snprintf(err, errlen, "URL template must contain exactly one {}: %s", tmpl);
        return QF_EINVAL;
    }
    size_t auth_len = strcspn(p, "/?#");
    if (ph < p + auth_len) {
        snprintf(err, errlen, "URL template: {} must come after the host: %s", tmpl);
        return QF_EINVAL;
    }
    if (strchr(p, '#') != NULL || memchr(p, '@', auth_len) != NULL) {
        snprintf(err, errlen, "URL template: fragments and user info are not supported: %s",
                 tmpl);
        return QF_EINVAL;
    }
    const char *host = p, *hend, *port = NULL;
    if (*p == '[') {
        hend = memchr(p, ']', auth_len);
        if (hend == NULL)
            goto bad_host;
        host = p + 1;
        if (hend + 1 < p + auth_len) {
            if (hend[1] != ':')
                goto bad_host;
            port = hend + 2;
        }
    } else {
        hend = memchr(p, ':', auth_len);
        if (hend != NULL)
            port = hend + 1;
        else
            hend = p + auth_len;
    }
    size_t hlen = (size_t)(hend - host);
    if (hlen == 0 || hlen >= sizeof(u->host))
        goto bad_host;
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    if (port != NULL) {
        size_t plen = (size_t)(p + auth_len - port);
        char *end;
        long v = strtol(port, &end, 10);
        if (plen == 0 || plen > 5 || end != p + auth_len || v < 1 || v > 65535)
            goto bad_host;
        snprintf(u->port, sizeof(u->port), "%ld", v);
    } else {
        strcpy(u->port, u->tls ? "443" : "80");
    }
    const char *path = p + auth_len;
    if (*path == '/') {
        u->prefix = dup_range(path, (size_t)(ph - path));
    } else {
        /* "https://host?q={}" has an empty path: the request target starts with "/" */
        size_t n = (size_t)(ph - path);
        u->prefix = qf_malloc(n + 2);
        if (u->prefix != NULL) {
            u->prefix[0] = '/';
            memcpy(u->prefix + 1, path, n);
            u->prefix[n + 1] = '\0';
        }
    }
    u->suffix = dup_range(ph + 2, strlen(ph + 2));
    if (u->prefix == NULL || u->suffix == NULL) {
        qf_url_free(u);
        snprintf(err, errlen, "out of memory");
        return QF_ENOMEM;
    }
    for (const char *s = tmpl; *s != '\0'; s++) {
        if ((unsigned char)*s <= ' ' || *s == 0x7f) {
            qf_url_free(u);
            snprintf(err, errlen, "URL template contains spaces or control characters");
            return QF_EINVAL;
        }
    }
    return 0;
bad_host:
    snprintf(err, errlen, "URL template has an invalid host or port: %s", tmpl);
    return QF_EINVAL;
}

void qf_url_free(struct qf_url *u)
{
    qf_free(u->prefix);
    qf_free(u->suffix);
    u->prefix = u->suffix = NULL;
}
