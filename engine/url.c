/* URL template parsing and symbol percent-encoding. The template's host is fixed; "{}" must
 * appear exactly once, after the host, and is replaced per request by the encoded symbol. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/url.h"
#include "qfetch.h"

int qf_symbol_encode(const char *symbol, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    /* "." and ".." are dot-segments: servers resolve them (and, after decoding unreserved
     * characters, their %2E forms too), so the request would name another path. */
    if (symbol[0] != '\0' && symbol[strspn(symbol, ".")] == '\0')
        return QF_EINVAL;
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

/* Splits scheme://host[:port] off url into u (prefix and suffix untouched) and returns the
 * rest (path, query), or NULL after writing the reason to err. */
static const char *split_origin(struct qf_url *u, const char *url, char *err, size_t errlen)
{
    const char *p;

    if (strncmp(url, "https://", 8) == 0) {
        u->tls = 1;
        p = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        u->tls = 0;
        p = url + 7;
    } else {
        snprintf(err, errlen, "URL must start with http:// or https://: %.200s", url);
        return NULL;
    }
    for (const char *s = url; *s != '\0'; s++) {
        if ((unsigned char)*s <= ' ' || *s == 0x7f) {
            snprintf(err, errlen, "URL contains spaces or control characters");
            return NULL;
        }
    }
    size_t auth_len = strcspn(p, "/?#");
    if (strchr(p, '#') != NULL || memchr(p, '@', auth_len) != NULL) {
        snprintf(err, errlen, "URL: fragments and user info are not supported: %.200s", url);
        return NULL;
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
    if (hlen == 0 || hlen >= sizeof(u->host) || memchr(host, '{', hlen) != NULL)
        goto bad_host;
    for (size_t i = 0; i < hlen; i++) {
        if ((unsigned char)host[i] >= 0x80) {
            snprintf(err, errlen, "URL host name is not ASCII: write an internationalised "
                                  "name as its xn-- A-label");
            return NULL;
        }
    }
    /* One trailing dot makes an absolute name (TLS strips it for SNI and verification); an
     * empty label anywhere else is no host name. */
    if (*p != '[' && (host[0] == '.' || memmem(host, hlen, "..", 2) != NULL))
        goto bad_host;
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    if (port != NULL) {
        size_t plen = (size_t)(p + auth_len - port);
        char *end;
        long v = strtol(port, &end, 10);
        if (plen == 0 || plen > 5 || end != p + auth_len || v < 1 || v > 65535 ||
            strspn(port, "0123456789") != plen)
            goto bad_host;
        snprintf(u->port, sizeof(u->port), "%ld", v);
    } else {
        strcpy(u->port, u->tls ? "443" : "80");
    }
    return p + auth_len;
bad_host:
    snprintf(err, errlen, "URL has an invalid host or port: %.200s", url);
    return NULL;
}

int qf_url_origin(struct qf_url *u, const char *url, const char **path, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    *path = split_origin(u, url, err, errlen);
    return *path != NULL ? 0 : QF_EINVAL;
}

int qf_url_parse(struct qf_url *u, const char *tmpl, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    const char *ph = strstr(tmpl, "{}");
    if (ph == NULL || strstr(ph + 2, "{}") != NULL) {
        snprintf(err, errlen, "URL template must contain exactly one {}: %.200s", tmpl);
        return QF_EINVAL;
    }
    const char *path = split_origin(u, tmpl, err, errlen);
    if (path == NULL)
        return QF_EINVAL;
    if (ph < path) {
        snprintf(err, errlen, "URL template: {} must come after the host: %.200s", tmpl);
        return QF_EINVAL;
    }
    size_t n = (size_t)(ph - path);
    /* "https://host?q={}" has an empty path: the request target starts with "/" */
    int slash = *path != '/';
    u->prefix = qf_malloc(n + 1 + (size_t)slash);
    u->suffix = dup_range(ph + 2, strlen(ph + 2));
    if (u->prefix == NULL || u->suffix == NULL) {
        qf_url_free(u);
        snprintf(err, errlen, "out of memory");
        return QF_ENOMEM;
    }
    u->prefix[0] = '/';
    memcpy(u->prefix + slash, path, n);
    u->prefix[n + (size_t)slash] = '\0';
    return 0;
}

void qf_url_free(struct qf_url *u)
{
    qf_free(u->prefix);
    qf_free(u->suffix);
    u->prefix = u->suffix = NULL;
}
