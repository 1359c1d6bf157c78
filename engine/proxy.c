/* HTTP proxies, the logic only: proxy URLs (credentials percent-decoded into a Basic
 * Proxy-Authorization line), the environment's variables as curl reads them, no-proxy lists,
 * the CONNECT request and the proxy's answer. No sockets: conn.c drives the tunnel. Objects
 * here are allocated and freed here (qf_proxy_conf_free). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/alloc.h"
#include "engine/proxy.h"
#include "qfetch.h"

#define DEFAULT_PORT "1080" /* curl's, for a proxy URL without one */
#define USERINFO_MAX 1024

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)(ch | 0x20);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Percent-decodes s[0..n) into out (n bytes suffice). Returns the length, or -1 on a bad
 * escape or an escaped NUL. */
static int pct_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= n)
            return -1;
        int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -1;
        out[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    return (int)o;
}

static size_t base64(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* A host name as URLs and no-proxy lists write them: letters, digits, '-', '_' and '.'. */
static int name_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}

/* "1".."65535" in s[0..n): the number, else 0. */
static long port_of(const char *s, size_t n)
{
    long v = 0;

    if (n == 0 || n > 5)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    return v <= 65535 ? v : 0;
}

/* The Basic credentials of "user[:password]" (percent-encoded) as a header line. */
static int make_auth(struct qf_proxy *p, const char *ui, size_t n)
{
    char plain[USERINFO_MAX];
    const char *colon = memchr(ui, ':', n);
    size_t ul = colon ? (size_t)(colon - ui) : n;
    int u = pct_decode(ui, ul, plain);
    int w = u < 0 ? -1 : colon ? pct_decode(colon + 1, n - ul - 1, plain + u + 1) : 0;

    if (u < 0 || w < 0)
        return QF_EINVAL;
    plain[u] = ':'; /* no password: an empty one, as curl sends */
    size_t len = (size_t)u + 1 + (size_t)w;
    static const char pre[] = "Proxy-Authorization: Basic ";
    size_t cap = sizeof(pre) - 1 + (len + 2) / 3 * 4 + 3;
    if ((p->auth = qf_malloc(cap)) == NULL)
        return QF_ENOMEM;
    memcpy(p->auth, pre, sizeof(pre) - 1);
    size_t o = sizeof(pre) - 1;
    o += base64((const unsigned char *)plain, len, p->auth + o);
    memcpy(p->auth + o, "\r\n", 3);
    p->auth_len = o + 2;
    return 0;
}

int qf_proxy_parse(struct qf_proxy *p, const char *url, const char *what, char *err, size_t errlen)
{
    const char *s = url, *sep = strstr(url, "://");
    const char *why;

    memset(p, 0, sizeof(*p));
    for (const char *c = url; *c != '\0'; c++) {
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            why = "spaces or control characters";
            goto bad;
        }
    }
    if (sep != NULL && memchr(url, '/', (size_t)(sep - url)) == NULL) {
        size_t n = (size_t)(sep - url);
        if (n == 4 && strncasecmp(url, "http", 4) == 0) {
            s = sep + 3;
        } else if (n == 5 && strncasecmp(url, "https", 5) == 0) {
            why = "https:// proxies (TLS to the proxy) are not supported; use http://";
            goto bad;
        } else if (n >= 5 && strncasecmp(url, "socks", 5) == 0) {
            why = "socks proxies are not supported; use an http:// proxy";
            goto bad;
        } else {
            snprintf(err, errlen, "%s: unsupported proxy scheme '%.*s' (only http://)", what,
                     (int)(n < 20 ? n : 20), url);
            return QF_EINVAL;
        }
    }
    size_t alen = strcspn(s, "/?#");
    if (s[alen] != '\0' && strcmp(s + alen, "/") != 0) {
        why = "a path, query or fragment is not allowed";
        goto bad;
    }
    const char *at = NULL;
    for (const char *c = s; c < s + alen; c++) {
        if (*c == '@')
            at = c;
    }
    const char *h = at ? at + 1 : s, *end = s + alen, *hend, *port = NULL;
    if (*h == '[') {
        hend = memchr(h, ']', (size_t)(end - h));
        if (hend == NULL || hend == h + 1 || (hend + 1 < end && hend[1] != ':') ||
            (size_t)(hend - h - 1) >= sizeof(p->host))
            goto bad_host;
        memcpy(p->host, h + 1, (size_t)(hend - h - 1));
        unsigned char a[16];
        if (inet_pton(AF_INET6, p->host, a) != 1)
            goto bad_host;
        port = hend + 1 < end ? hend + 2 : NULL;
    } else {
        hend = memchr(h, ':', (size_t)(end - h));
        if (hend != NULL)
            port = hend + 1;
        else
            hend = end;
        if (!name_ok(h, (size_t)(hend - h)) || (size_t)(hend - h) >= sizeof(p->host))
            goto bad_host;
        memcpy(p->host, h, (size_t)(hend - h));
    }
    long pv = port != NULL ? port_of(port, (size_t)(end - port)) : atol(DEFAULT_PORT);
    if (pv == 0) {
        why = "bad port";
        goto bad;
    }
    snprintf(p->port, sizeof(p->port), "%ld", pv);
    int v6 = strchr(p->host, ':') != NULL;
    snprintf(p->name, sizeof(p->name), "%s%.64s%s:%s", v6 ? "[" : "", p->host, v6 ? "]" : "",
             p->port);
    if (at != NULL) {
        if ((size_t)(at - s) >= USERINFO_MAX) {
            why = "user name and password too long";
            goto bad;
        }
        int rc = make_auth(p, s, (size_t)(at - s));
        if (rc == QF_ENOMEM) {
            snprintf(err, errlen, "out of memory");
            return rc;
        }
        if (rc < 0) {
            why = "bad percent-escape in the user name or password";
            goto bad;
        }
    }
    return 0;
bad_host:
    why = "bad host name";
bad:
    snprintf(err, errlen, "%s: %s", what, why);
    return QF_EINVAL;
}

void qf_proxy_clear(struct qf_proxy *p)
{
    qf_free(p->auth);
    p->auth = NULL;
    p->auth_len = 0;
}

/* ---- no-proxy lists ---------------------------------------------------------------------- */

struct np_entry {
    int all;          /* "*" */
    long port;        /* 0: any */
    const char *name; /* a host name suffix, when not an address */
    size_t len;
    int family; /* AF_INET or AF_INET6 for an address or network, else 0 */
    unsigned char addr[16];
    int bits;
};

static int is_sep(char ch)
{
    return ch == ',' || ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Parses the address in s[0..n), optionally "/BITS". 0 or -1. */
static int entry_addr(const char *s, size_t n, struct np_entry *e)
{
    char buf[64];
    const char *slash = memchr(s, '/', n);
    size_t al = slash ? (size_t)(slash - s) : n;

    if (al == 0 || al >= sizeof(buf))
        return -1;
    memcpy(buf, s, al);
    buf[al] = '\0';
    if (inet_pton(AF_INET, buf, e->addr) == 1)
        e->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, e->addr) == 1)
        e->family = AF_INET6;
    else
        return -1;
    int max = e->family == AF_INET ? 32 : 128;
    e->bits = max;
    if (slash != NULL) {
        size_t bl = n - al - 1;
        if (bl == 0 || bl > 3 || strspn(slash + 1, "0123456789") < bl)
            return -1;
        e->bits = atoi(slash + 1);
        if (e->bits > max)
            return -1;
    }
    return 0;
}

/* One entry s[0..n) of a list. 0, or -1 when it is unusable. */
static int entry_parse(const char *s, size_t n, struct np_entry *e)
{
    memset(e, 0, sizeof(*e));
    if (n == 1 && s[0] == '*') {
        e->all = 1;
        return 0;
    }
    const char *colon = memchr(s, ':', n), *host = s;
    size_t hl = n;
    if (s[0] == '[') { /* [v6], [v6]:PORT, [v6/BITS] */
        const char *rb = memchr(s, ']', n);
        if (rb == NULL)
            return -1;
        host = s + 1;
        hl = (size_t)(rb - s - 1);
        if (rb + 1 < s + n && (rb[1] != ':' || (e->port = port_of(rb + 2, n - hl - 3)) == 0))
            return -1;
        return entry_addr(host, hl, e);
    }
    if (colon != NULL && memchr(colon + 1, ':', n - (size_t)(colon - s) - 1) != NULL)
        return entry_addr(s, n, e); /* a bare IPv6 address: it cannot carry a port */
    if (colon != NULL) {
        hl = (size_t)(colon - s);
        if ((e->port = port_of(colon + 1, n - hl - 1)) == 0)
            return -1;
    }
    if (memchr(host, '/', hl) != NULL)
        return entry_addr(host, hl, e);
    if (hl >= 2 && host[0] == '*' && host[1] == '.') {
        host += 2;
        hl -= 2;
    } else if (hl >= 1 && host[0] == '.') {
        host++;
        hl--;
    }
    if (hl > 0 && host[hl - 1] == '.')
        hl--;
    if (!name_ok(host, hl) || hl > 253)
        return -1;
    if (entry_addr(host, hl, e) == 0)
        return 0;
    e->name = host;
    e->len = hl;
    return 0;
}

/* Calls fn on each entry of list until it returns non-zero; returns that, or 0. */
static int each_entry(const char *list, int (*fn)(const char *, size_t, void *), void *arg)
{
    for (const char *p = list; *p != '\0';) {
        while (is_sep(*p))
            p++;
        size_t n = 0;
        while (p[n] != '\0' && !is_sep(p[n]))
            n++;
        if (n > 0) {
            int rc = fn(p, n, arg);
            if (rc != 0)
                return rc;
        }
        p += n;
    }
    return 0;
}

struct np_target {
    const char *host;
    size_t len;
    long port;
    int family;
    unsigned char addr[16];
};

static int prefix_equal(const unsigned char *a, const unsigned char *b, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)whole) != 0)
        return 0;
    return rest == 0 || ((a[whole] ^ b[whole]) & (0xff << (8 - rest)) & 0xff) == 0;
}

static int entry_matches(const char *s, size_t n, void *arg)
{
    const struct np_target *t = arg;
    struct np_entry e;

    if (entry_parse(s, n, &e) < 0)
        return 0;
    if (e.all)
        return 1;
    if (e.port != 0 && e.port != t->port)
        return 0;
    if (e.family != 0)
        return e.family == t->family && prefix_equal(e.addr, t->addr, e.bits);
    if (t->family != 0 || t->len < e.len || strncasecmp(t->host + t->len - e.len, e.name, e.len))
        return 0;
    return t->len == e.len || t->host[t->len - e.len - 1] == '.';
}

int qf_proxy_bypass(const char *list, const char *host, const char *port)
{
    struct np_target t = {.host = host, .len = strlen(host), .port = atol(port)};

    if (list == NULL)
        return 0;
    if (t.len > 0 && host[t.len - 1] == '.')
        t.len--;
    if (inet_pton(AF_INET, host, t.addr) == 1)
        t.family = AF_INET;
    else if (inet_pton(AF_INET6, host, t.addr) == 1)
        t.family = AF_INET6;
    return each_entry(list, entry_matches, &t);
}

struct np_check {
    char *err;
    size_t errlen;
};

static int entry_check(const char *s, size_t n, void *arg)
{
    struct np_check *k = arg;
    struct np_entry e;

    if (entry_parse(s, n, &e) == 0)
        return 0;
    snprintf(k->err, k->errlen, "'%.*s' is not a host name, IP address or network",
             (int)(n < 80 ? n : 80), s);
    return -1;
}

int qf_proxy_check_list(const char *list, char *err, size_t errlen)
{
    struct np_check k = {err, errlen};
    return each_entry(list, entry_check, &k) < 0 ? QF_EINVAL : 0;
}

/* ---- a client's settings ----------------------------------------------------------------- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = qf_malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* The first of names set to a non-empty value; *name gets its name. */
static const char *env_first(char *(*env)(const char *), const char *const *names,
                             const char **name)
{
    for (; *names != NULL; names++) {
        const char *v = env(*names);
        if (v != NULL && *v != '\0') {
            *name = *names;
            return v;
        }
    }
    return NULL;
}

/* A proxy parsed from url, or NULL with the reason in err (bad stays 0 only on QF_ENOMEM). */
static struct qf_proxy *proxy_new(const char *url, const char *what, char *err, size_t errlen,
                                  int *rc)
{
    struct qf_proxy *p = qf_calloc(1, sizeof(*p));

    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        *rc = QF_ENOMEM;
        return NULL;
    }
    if ((*rc = qf_proxy_parse(p, url, what, err, errlen)) < 0) {
        qf_proxy_clear(p);
        qf_free(p);
        return NULL;
    }
    return p;
}

int qf_proxy_conf_init(struct qf_proxy_conf *pc, const char *proxy, const char *noproxy,
                       char *(*env)(const char *), char *err, size_t errlen)
{
    static const char *const https_vars[] = {"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                                             NULL};
    /* HTTP_PROXY is left out on purpose: a CGI program gets the request's "Proxy:" header
     * as HTTP_PROXY ("httpoxy"), so an attacker could pick our proxy. curl reads it neither. */
    static const char *const http_vars[] = {"http_proxy", "all_proxy", "ALL_PROXY", NULL};
    int rc = 0;

    memset(pc, 0, sizeof(*pc));
    if (proxy != NULL && *proxy != '\0') {
        if ((pc->http = pc->https = proxy_new(proxy, "proxy URL", err, errlen, &rc)) == NULL)
            goto fail;
    } else if (proxy == NULL && env != NULL) {
        for (int tls = 0; tls < 2; tls++) {
            const char *name, *v = env_first(env, tls ? https_vars : http_vars, &name);
            if (v == NULL)
                continue;
            struct qf_proxy *p = proxy_new(v, name, pc->bad[tls], sizeof(pc->bad[tls]), &rc);
            if (rc == QF_ENOMEM) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            *(tls ? &pc->https : &pc->http) = p;
        }
    }
    if (noproxy != NULL) {
        char why[160];
        if ((rc = qf_proxy_check_list(noproxy, why, sizeof(why))) < 0) {
            snprintf(err, errlen, "noproxy list: %s", why);
            goto fail;
        }
        if ((pc->noproxy = dup_str(noproxy)) == NULL)
            goto nomem;
    } else if (env != NULL) {
        static const char *const np_vars[] = {"no_proxy", "NO_PROXY", NULL};
        const char *name, *v = env_first(env, np_vars, &name);
        char why[160];
        if (v != NULL && qf_proxy_check_list(v, why, sizeof(why)) < 0)
            snprintf(pc->warning, sizeof(pc->warning), "%s: %s; ignored", name, why);
        if (v != NULL && (pc->noproxy = dup_str(v)) == NULL)
            goto nomem;
    }
    return 0;
nomem:
    rc = QF_ENOMEM;
    snprintf(err, errlen, "out of memory");
fail:
    qf_proxy_conf_free(pc);
    return rc;
}

void qf_proxy_conf_free(struct qf_proxy_conf *pc)
{
    if (pc->https != pc->http && pc->https != NULL) {
        qf_proxy_clear(pc->https);
        qf_free(pc->https);
    }
    if (pc->http != NULL) {
        qf_proxy_clear(pc->http);
        qf_free(pc->http);
    }
    qf_free(pc->noproxy);
    pc->http = pc->https = NULL;
    pc->noproxy = NULL;
}

const struct qf_proxy *qf_proxy_for(const struct qf_proxy_conf *pc, int tls, const char *host,
                                    const char *port, const char **bad)
{
    const struct qf_proxy *p = tls ? pc->https : pc->http;

    *bad = NULL;
    if (p == NULL && pc->bad[tls != 0][0] == '\0')
        return NULL;
    if (qf_proxy_bypass(pc->noproxy, host, port))
        return NULL;
    if (p == NULL)
        *bad = pc->bad[tls != 0];
    return p;
}

/* ---- the tunnel -------------------------------------------------------------------------- */

int qf_proxy_connect_request(const struct qf_proxy *p, const char *host, const char *port,
                             const char *user_agent, char **out)
{
#define CONNECT_FMT "CONNECT %s%s%s:%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: %s\r\n%s\r\n"
    int v6 = strchr(host, ':') != NULL;
    const char *lb = v6 ? "[" : "", *rb = v6 ? "]" : "", *auth = p->auth ? p->auth : "";
    int n =
        snprintf(NULL, 0, CONNECT_FMT, lb, host, rb, port, lb, host, rb, port, user_agent, auth);

    if ((*out = qf_malloc((size_t)n + 1)) == NULL)
        return QF_ENOMEM;
    snprintf(*out, (size_t)n + 1, CONNECT_FMT, lb, host, rb, port, lb, host, rb, port, user_agent,
             auth);
    return n;
#undef CONNECT_FMT
}

int qf_proxy_refusal(const struct qf_proxy *p, int status, char *msg, size_t len)
{
    if (status == 407)
        snprintf(msg, len, "proxy %s: 407 proxy authentication required%s", p->name,
                 p->auth ? " (credentials refused)" : "");
    else
        snprintf(msg, len, "proxy %s refused CONNECT: HTTP %d", p->name, status);
    return status >= 502 && status <= 504 ? QF_ECONNECT : QF_EPROXY;
}

int qf_proxy_reply(const char *buf, size_t len, size_t cap, int *status, size_t *head_len)
{
    /* "HTTP/1.x NNN": what the bytes must start with; '#' is a digit. */
    static const char shape[] = "HTTP/1.# ###";

    for (size_t i = 0; i < len && i < sizeof(shape) - 1; i++) {
        int ok = shape[i] == '#' ? buf[i] >= '0' && buf[i] <= '9' : buf[i] == shape[i];
        if (!ok)
            return QF_EPROTO;
    }
    if (len > sizeof(shape) - 1 && buf[12] != ' ' && buf[12] != '\r' && buf[12] != '\n')
        return QF_EPROTO;
    /* The head ends at the first empty line, CRLF or bare LF. */
    for (size_t i = sizeof(shape) - 1; i < len && i < cap; i++) {
        if (buf[i] == '\0')
            return QF_EPROTO;
        if (buf[i] != '\n')
            continue;
        size_t next = i + 1;
        if (next < len && buf[next] == '\r')
            next++;
        if (next < len && buf[next] == '\n' && next + 1 <= cap) {
            *status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
            *head_len = next + 1;
            return 1;
        }
    }
    return len >= cap ? QF_EHEADER : 0;
}
