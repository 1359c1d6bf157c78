/* qfetch: concurrent HTTPS quote fetcher; public API of libqfetch.a.
 * Includes libc headers only: no OpenSSL, llhttp or jsmn type appears here.
 * Single-threaded: one qf_client is driven by one thread. Everything a callback receives is
 * borrowed and valid only until the callback returns. */
#ifndef QFETCH_H
#define QFETCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QF_VERSION_MAJOR 0
#define QF_VERSION_MINOR 1
#define QF_VERSION_PATCH 0
#define QF_VERSION "0.1.0"

/* Error codes: 0 is success, failures are negative. qf_strerror() names them. */
enum qf_err {
    QF_OK = 0,
    QF_ENOMEM = -1,   /* allocation failed */
    QF_EINVAL = -2,   /* bad argument or option */
    QF_ERESOLVE = -3, /* host name did not resolve */
    QF_ECONNECT = -4, /* TCP connect failed on every address */
    QF_ETLS = -5,     /* TLS handshake or record failure */
    QF_ECERT = -6,    /* certificate or host name verification failed */
    QF_ETIMEOUT = -7, /* connect or request deadline passed */
    QF_ECLOSED = -8,  /* peer closed or reset before the response was complete */
    QF_EHTTP = -9,    /* HTTP status other than 2xx */
    QF_EPROTO = -10,  /* malformed HTTP response */
    QF_EBODY = -11,   /* body larger than the cap */
    QF_EHEADER = -12, /* header block larger than the cap */
    QF_EJSON = -13,   /* body is not valid JSON (or truncated) */
    QF_ENOPRICE = -14, /* valid JSON without a numeric price at chart.result[0].meta */
    QF_ENOSPC = -15,  /* internal: a buffer must grow; never reported in a result */
    QF_ECONFIG = -16, /* configuration unusable, e.g. --cacert not a readable PEM bundle */
    QF_ERANGE = -17,  /* price outside what two-decimal formatting can represent */
    QF_ECANCELED = -18, /* client freed or request cancelled before completion */
    QF_EPROXY = -19,  /* the proxy refused the request (CONNECT answered 403, 407...) */
};

const char *qf_strerror(int err);
/* "qfetch 0.1.0, OpenSSL 3.0.19 27 Jan 2026": this library and the OpenSSL it runs on (the
 * qfetch command links OpenSSL statically unless built with SSL_LINK=shared). */
const char *qf_version(void);

typedef struct qf_client qf_client;

/* Text that came from a server reaches callers cleaned (see qf_text_clean() below):
 * qf_result.currency and every errmsg the library hands over are valid UTF-8 without
 * control characters (C0, DEL, C1) and without bidirectional-text controls or line
 * separators, so they may be printed as they are. Header values and bodies of general
 * requests are passed on as received. */

/* Per-ticker outcome. Strings are borrowed: valid only during the callback. */
struct qf_result {
    size_t index;           /* 0-based order of qf_client_add() calls */
    const char *symbol;     /* as given to qf_client_add() */
    int err;                /* 0 on success, else QF_E* */
    int status;             /* last HTTP status, 0 when none arrived */
    double price;           /* meta.regularMarketPrice, valid when err == 0 */
    const char *price_text; /* price rounded half-even to cents, e.g. "269.70"; "" on error */
    const char *currency;   /* meta.currency, "" when absent */
    const char *errmsg;     /* one line naming the failure; "" on success */
    int attempts;           /* attempts made, 1 + retries used */
    int reused;             /* final attempt ran on a kept-alive connection */
    /* Timings of the final attempt in ms from its start, each phase's end counting the ones
     * before it (as curl's); -1 when the phase did not happen. */
    double connect_ms, tls_ms, first_byte_ms, total_ms;
    double dns_ms;          /* the name lookup the attempt waited for; 0: none (known, a
                               literal, --resolve); -1 on a reused connection */
};

typedef void qf_result_fn(const struct qf_result *r, void *udata);
typedef void qf_log_fn(const char *line, void *udata);

/* A zeroed struct means every default. */
struct qf_options {
    const char *url_template;   /* "{}" replaced by the percent-encoded symbol; NULL: Yahoo's chart URL */
    int connections;            /* max connections per host (HTTP/1.1), and max requests in
                                   flight per host (both protocols); 0: QF_DEFAULT_CONNECTIONS
                                   connections, QF_DEFAULT_STREAMS streams over HTTP/2 */
    const char *cacert;         /* PEM bundle to trust instead of the system store; NULL: system.
                                   Read and checked at qf_client_new(); its certificates (or a
                                   system store that is a bundle file) are parsed in the step
                                   that starts the first full handshake: tens of ms for a
                                   system-sized bundle, never in a run that resumes */
    const char *const *resolve; /* NULL-terminated "HOST:PORT:ADDR[,ADDR...]" entries, as
                                 * curl --resolve; addresses are raced (RFC 8305) in this order */
    int timeout_ms;             /* per attempt, request sent to body complete; 0: 10000 */
    int connect_timeout_ms;     /* name lookup + TCP connect + TLS handshake; 0: 5000 */
    int retries;                /* 0: default (2); < 0: no retries; > 0: that many */
    const char *user_agent;     /* NULL: a current browser's */
    qf_log_fn *log;             /* optional: verbose lines (request start/end, transitions) */
    void *log_udata;
    int max_total_connections;  /* all hosts together; 0: same as connections */
    qf_log_fn *warn;            /* optional: warnings that are not per-request errors (log_udata) */
    const char *session_cache;  /* optional file keeping TLS sessions across processes: read at
                                   qf_client_new(), written at qf_client_free() (mode 0600).
                                   A session resumes only under the trust (cacert's contents,
                                   or the system store) and for the host name that verified
                                   it. Unused, with a warning, unless it is a regular file of
                                   the user's in a directory of the user's that group and
                                   others cannot write; never blocks (a FIFO is refused). */
    unsigned flags;             /* QF_OPT_* below */
    int pipeline;               /* max requests in flight per connection; 0 or 1: no pipelining */
    const char *dns_servers;    /* "ADDR[:PORT][,...]" (IPv6 bracketed) instead of
                                   /etc/resolv.conf's; NULL: the system's (curl --dns-servers) */
    /* An HTTP proxy for every request, as curl's --proxy: "http://[user:pass@]host[:port]"
     * (port 1080 when absent; user and password percent-encoded, sent as Basic proxy
     * authentication). https:// targets go through a CONNECT tunnel, TLS running end to end
     * to the target as without a proxy; http:// targets are asked of the proxy in absolute
     * form. https:// and socks proxy URLs are refused (qf_client_new fails). "": no proxy,
     * whatever the environment says. NULL: none, or the environment's with QF_OPT_PROXY_ENV. */
    const char *proxy;
    /* Hosts reached directly, as curl's --noproxy: names (matching their subdomains too; a
     * leading "." changes nothing), IP addresses, ADDR/BITS networks, each with an optional
     * ":PORT", or "*" for all; separated by commas or blanks. Matched against the URL's host as
     * written, without lookups. An unusable entry fails qf_client_new. NULL: none, or the
     * environment's no_proxy/NO_PROXY with QF_OPT_PROXY_ENV. */
    const char *noproxy;
};

#define QF_OPT_TCP_FASTOPEN 1u /* TCP Fast Open where the kernel allows it */
#define QF_OPT_EARLY_DATA 2u   /* send the request as TLS 1.3 early data when resuming */
/* Leave OpenSSL's process-wide state for the OS to reclaim at exit instead of freeing it in
 * an atexit handler (its cost is in bench/RESULTS.md): for a program that exits when done.
 * Takes effect only if OpenSSL was not initialised before this client. */
#define QF_OPT_NO_EXIT_CLEANUP 4u
/* Take proxy settings the options leave NULL from the environment, as curl's command does: a
 * library honours the environment only when asked, since a server process's environment may
 * come from its clients. Read once, in qf_client_new(): https_proxy, then HTTPS_PROXY, then
 * all_proxy, ALL_PROXY for https:// URLs; http_proxy, then all_proxy, ALL_PROXY for http://
 * (upper-case HTTP_PROXY is ignored: CGI sets it from a request's "Proxy:" header); no_proxy,
 * then NO_PROXY. Empty values count as unset. An unusable proxy variable fails qf_client_new
 * when it applies to the URL template, and otherwise fails the requests it applies to
 * (QF_ECONFIG); an unusable no_proxy entry is skipped with a warning. */
#define QF_OPT_PROXY_ENV 8u
/* Quotes are requested with "Accept-Encoding: gzip, deflate" and their bodies inflated as they
 * arrive (stats.bytes_read counts the coded bytes). This flag leaves the header out; a quote
 * the server codes anyway is still inflated. An inflated body is capped at 8 MiB like any,
 * and one that inflates more than 100 times past its first 64 KiB is refused as a
 * decompression bomb (QF_EBODY); a corrupt stream, or a coding other than gzip, x-gzip or
 * deflate (zlib-wrapped or raw), fails that quote with QF_EPROTO. */
#define QF_OPT_NO_COMPRESSED 16u
/* HTTP/1.1 only, as curl's --http1.1: TLS connections offer only "http/1.1" by ALPN. Without
 * it they offer "h2,http/1.1", and a host whose server picks h2 gets its requests multiplexed
 * over one connection (more only when its SETTINGS_MAX_CONCURRENT_STREAMS runs out), at most
 * `connections` requests in flight when that option is set, else QF_DEFAULT_STREAMS. Plain
 * http:// is always HTTP/1.1. */
#define QF_OPT_HTTP1 32u

#define QF_DEFAULT_CONNECTIONS 16
#define QF_DEFAULT_STREAMS 100
#define QF_DEFAULT_URL "https://query1.finance.yahoo.com/v8/finance/chart/{}"

struct qf_stats {
    uint64_t conns_opened;    /* TCP connections started */
    uint64_t requests_sent;   /* requests written, retries and re-sends included */
    uint64_t reused;          /* requests sent on an already used keep-alive connection */
    uint64_t tls_full;        /* full TLS handshakes */
    uint64_t tls_resumed;     /* abbreviated (resumed) TLS handshakes */
    uint64_t retries;         /* attempts beyond the first, stale re-sends excluded */
    uint64_t stale_resends;   /* requests re-sent after a kept-alive connection turned out closed */
    uint64_t bytes_read;      /* bytes received from sockets (TLS records included) */
    uint64_t early_data;      /* requests the server accepted as TLS 1.3 early data */
    uint64_t conns_unused;    /* connected, then closed before a handshake: the others sufficed */
    double wall_ms;           /* from the first step to the last completion */
    uint64_t rate_limited;    /* answers that were a host's rate limit: 429, 503 with Retry-After */
    uint64_t host_pauses;     /* times a host was paused for its rate limit */
    uint64_t h2_conns;        /* connections that spoke HTTP/2 */
    uint64_t h2_streams;      /* HTTP/2 streams opened (requests sent over HTTP/2) */
    uint64_t h2_streams_max;  /* most streams one HTTP/2 connection carried */
};

/* Creates a client. On failure returns NULL and, when errbuf is not NULL, writes the reason.
 * The options' strings are copied. */
qf_client *qf_client_new(const struct qf_options *o, qf_result_fn *cb, void *udata, char *errbuf,
                         size_t errlen);

/* The longest symbol qf_client_add() takes, in bytes. */
#define QF_SYMBOL_MAX 64

/* Queues one quote GET for symbol (copied) on the url_template's host. Returns its index
 * (>= 0; indexes count quote requests only) or QF_EINVAL for a symbol that cannot be sent:
 * empty, longer than QF_SYMBOL_MAX bytes, holding spaces or control characters, or made only
 * of dots ("." and ".." are path segments: a server resolves /chart/.. to the path above it,
 * and percent-encoding them as %2E does not help, since RFC 3986 lets servers decode an
 * unreserved character before resolving). QF_ENOMEM. May be called from any callback. */
int qf_client_add(qf_client *c, const char *symbol);

/* The epoll fd: readable when the client has I/O or a deadline to handle. */
int qf_client_fd(const qf_client *c);

/* Milliseconds until the next deadline, 0 when work is ready, -1 when nothing is pending. */
int qf_client_timeout_ms(const qf_client *c);

/* Handles whatever is ready, never blocks. Returns the number of unfinished requests, or < 0. */
int qf_client_step(qf_client *c);

/* Blocks, stepping until every queued request has produced its result. Returns 0 or < 0. */
int qf_client_run(qf_client *c);

void qf_client_stats(const qf_client *c, struct qf_stats *st);

/* Frees everything; pending requests are dropped without callbacks. Not from a callback.
 * Requests: qf_client_step()/qf_client_run() deliver results; "requests left" counts both
 * kinds. With a session cache and every request done, it first waits (blocking, at most one
 * handshake's round trip past the last answer, never over 1 s) for the session tickets still
 * due to connections that resumed (after early data they follow the answer by a round trip),
 * then writes the cache: a run leaves it no poorer than it found it. Print results first. */
void qf_client_free(qf_client *c);

/* ---- General HTTP/1.1 requests (the quote API above is built on these) ---------------- */

struct qf_header {
    const char *name, *value; /* NUL-terminated, as received (names keep their case) */
};

/* Outcome of one request. Everything is borrowed: valid only during the callback. */
struct qf_response {
    int id;                          /* as returned by qf_client_request() */
    void *udata;                     /* the request's udata */
    int err;                         /* 0, or QF_E* when no complete response arrived */
    int status;                      /* HTTP status, 0 when none arrived */
    const char *errmsg;              /* "" on success */
    const struct qf_header *headers; /* final response's headers, in order */
    size_t nheaders;
    const char *body;                /* whole body; NULL when streamed through on_chunk */
    size_t body_len;                 /* bytes of body received in all */
    int attempts, reused;
    double connect_ms, tls_ms, first_byte_ms, total_ms;
    double dns_ms;                   /* as in struct qf_result */
};

typedef void qf_response_fn(const struct qf_response *r);
/* Body bytes as they arrive; return non-zero to abort the request (QF_ECANCELED). */
typedef int qf_chunk_fn(const char *data, size_t len, void *udata);
/* The final response's status and headers, before any body byte; non-zero aborts (as above).
 * Called once per attempt that gets that far: a retried 503 calls it again. */
typedef int qf_head_fn(int status, const struct qf_header *headers, size_t nheaders,
                       void *udata);

struct qf_request {
    const char *url;              /* http:// or https://, copied */
    const char *method;           /* "GET" (NULL) or "HEAD" */
    const char *const *headers;   /* NULL-terminated "Name: value" lines, copied; a User-Agent,
                                     Accept, Connection or Accept-Encoding given here replaces
                                     the default */
    int timeout_ms;               /* per attempt; 0: the client's */
    int retries;                  /* as qf_options.retries; 0: the client's */
    qf_response_fn *on_response;  /* required: once per request, unless cancelled */
    qf_chunk_fn *on_chunk;        /* optional: stream the body instead of buffering it */
    qf_head_fn *on_head;          /* optional: status and headers as soon as they are parsed */
    void *udata;
    /* Non-zero: send "Accept-Encoding: gzip, deflate" and inflate a gzip or deflate body before
     * it reaches on_response or on_chunk, with the caps and errors of QF_OPT_NO_COMPRESSED's
     * comment (a streamed body has no size cap, as without a coding). Headers stay as
     * received: Content-Encoding and Content-Length describe the coded body. 0: the body is
     * handed on exactly as the server sent it, coded or not. */
    int compressed;
};

/* Queues a request. Returns its id (>= 0), QF_EINVAL (bad URL, method or header line),
 * QF_ENOMEM. The first request to a new host starts its name lookup, which runs inside the
 * client's loop and never blocks a step. May be called from any callback. Bodies are buffered up to
 * 8 MiB (QF_EBODY past it) unless streamed. */
int qf_client_request(qf_client *c, const struct qf_request *rq);

/* Cancels a queued or running request: no callback follows. Returns 0, or QF_EINVAL when id
 * is unknown or already finished. May be called from any callback. */
int qf_client_cancel(qf_client *c, int id);

/* Percent-encodes a symbol for a URL path: unreserved characters (A-Z a-z 0-9 - . _ ~) stay,
 * everything else becomes %XX. Returns the length written (NUL excluded), QF_EINVAL for a
 * symbol made only of dots (see qf_client_add()) or QF_ENOSPC. */
int qf_symbol_encode(const char *symbol, char *out, size_t cap);

/* ---- Clean text ------------------------------------------------------------------------ */

/* Decodes the UTF-8 sequence at s[0..len) (len >= 1) into *cp and returns its length (1-4).
 * A malformed sequence (stray continuation byte, overlong form, surrogate, value past
 * U+10FFFF, sequence cut short) gives U+FFFD and the length of its longest well-formed
 * prefix, at least 1: Unicode's "maximal subpart" rule, as browsers decode. */
size_t qf_text_next(const char *s, size_t len, uint32_t *cp);

/* Non-zero for the code points clean text never holds: C0 controls (U+0000-U+001F), DEL and
 * the C1 controls (U+007F-U+009F), the bidirectional-text controls (U+061C, U+200E, U+200F,
 * U+202A-U+202E, U+2066-U+2069) and the line and paragraph separators (U+2028, U+2029). */
int qf_text_unsafe(uint32_t cp);

/* Copies s[0..len) into out as clean text: each malformed sequence becomes U+FFFD, a C0
 * control or DEL a space, any other unsafe code point U+FFFD. Stops before the first code
 * point that does not fit, so out always ends with a whole character and a NUL (cap >= 1;
 * 3 * len + 1 always suffices). Returns the length written, NUL excluded. */
size_t qf_text_clean(const char *s, size_t len, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
