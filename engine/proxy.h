/* HTTP proxies, the logic only: proxy URLs, the environment's proxy variables, no-proxy lists,
 * the CONNECT request and the proxy's answer to it. No sockets and no client: conn.c drives the
 * tunnel, host.c decides a host's proxy, client.c reads the options. */
#ifndef QF_PROXY_H
#define QF_PROXY_H

#include <stddef.h>

/* An http:// proxy. name is "host:port" ("[v6]:port") for messages, never the credentials;
 * a host past 64 bytes is cut there, so that messages keep room for the reason. */
struct qf_proxy {
    char host[256];
    char port[8];
    char name[80];
    char *auth; /* "Proxy-Authorization: Basic ...\r\n", or NULL without user info */
    size_t auth_len;
};

/* A client's proxy settings, each scheme's resolved once. */
struct qf_proxy_conf {
    struct qf_proxy *http, *https; /* NULL: direct; one object for both when given once */
    char *noproxy;                 /* hosts that bypass the proxy (a list as --noproxy takes) */
    /* A scheme's environment variable holds a proxy we cannot use: requests of that scheme
     * fail with this message (requests of the other scheme are not held to it). */
    char bad[2][200];  /* [0] http, [1] https; "" when fine */
    char warning[200]; /* an unusable no_proxy entry was skipped; "" when none */
};

/* Parses "[http://][user[:password]@]host[:port][/]" (no scheme: http; no port: 1080, as curl).
 * User and password are percent-decoded. https:// and socks proxies are refused by name.
 * Returns 0, or QF_EINVAL / QF_ENOMEM with the reason, prefixed by what (e.g. "--proxy"), in
 * err. The URL itself is never copied into err: it may hold a password. */
int qf_proxy_parse(struct qf_proxy *p, const char *url, const char *what, char *err, size_t errlen);
void qf_proxy_clear(struct qf_proxy *p);

/* Fills pc. proxy: used for both schemes; "" means no proxy; NULL: the environment when env
 * is not NULL (https_proxy, HTTPS_PROXY, then all_proxy, ALL_PROXY for https; http_proxy, then
 * all_proxy, ALL_PROXY for http; never HTTP_PROXY, which a CGI request can set). noproxy: as
 * qf_proxy_bypass() reads it; NULL: no_proxy or NO_PROXY when env is not NULL. An explicit
 * proxy or noproxy that is unusable fails here: QF_EINVAL, or QF_ENOMEM, with err filled. */
int qf_proxy_conf_init(struct qf_proxy_conf *pc, const char *proxy, const char *noproxy,
                       char *(*env)(const char *), char *err, size_t errlen);
void qf_proxy_conf_free(struct qf_proxy_conf *pc);

/* The proxy for a tls or plain request to host:port, NULL to go direct. When the scheme's
 * proxy setting was unusable, returns NULL and points *bad at the reason. */
const struct qf_proxy *qf_proxy_for(const struct qf_proxy_conf *pc, int tls, const char *host,
                                    const char *port, const char **bad);

/* A no-proxy list: entries separated by commas or blanks. "*" matches every host; a name
 * matches itself and its subdomains (a leading "." or "*." changes nothing); an IP address
 * matches that address literally, ADDR/BITS a network; ":PORT" ("[v6]:PORT" for IPv6)
 * limits an entry to one port. Names are compared without case, host names as written in the
 * URL (no lookups). Returns 1 when host:port bypasses the proxy; unusable entries never
 * match. */
int qf_proxy_bypass(const char *list, const char *host, const char *port);
/* 0, or QF_EINVAL with the first unusable entry named in err. */
int qf_proxy_check_list(const char *list, char *err, size_t errlen);

/* "CONNECT host:port HTTP/1.1" with Host, User-Agent and p's credentials, in *out (qf_malloc,
 * the caller frees). Returns its length, or QF_ENOMEM. */
int qf_proxy_connect_request(const struct qf_proxy *p, const char *host, const char *port,
                             const char *user_agent, char **out);

/* A proxy's refusal with status (its answer to CONNECT, or a 407 to an absolute-form request):
 * the message naming the proxy into msg, and the error: QF_ECONNECT for 502-504, which say the
 * target could not be reached through it (a retry may cure that, as a failed direct connect),
 * QF_EPROXY for the others, which will not change. */
int qf_proxy_refusal(const struct qf_proxy *p, int status, char *msg, size_t len);

/* The proxy's answer to CONNECT, as read so far: its status line and headers up to the empty
 * line. Returns 1 when complete (*status and *head_len, the bytes to consume, set), 0 when
 * more is needed, QF_EPROTO as soon as the bytes cannot start an HTTP/1.x response, QF_EHEADER
 * when cap bytes hold no empty line. Bytes after the empty line belong to the tunnel. */
int qf_proxy_reply(const char *buf, size_t len, size_t cap, int *status, size_t *head_len);

#endif
