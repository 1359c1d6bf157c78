/* TLS over a non-blocking fd the caller owns: OpenSSL client context and per-connection
 * session. Knows nothing of HTTP or the engine. Sessions for resumption live in a
 * caller-owned qf_tls_cache slot (one per host); the context is shared by all connections. */
#ifndef QF_TLS_H
#define QF_TLS_H

#include <stddef.h>
#include <sys/types.h>

#define QF_WANT_READ (-100)  /* retry the same call when the fd is readable */
#define QF_WANT_WRITE (-101) /* retry the same call when the fd is writable */

struct ssl_ctx_st;
struct ssl_st;
struct ssl_session_st;

struct qf_tls_ctx {
    struct ssl_ctx_st *ctx;
    /* Names what verifies peers here: a digest of the CA file's bytes as loaded, or of the
     * system store's location and identity. Sessions are bound to it (qf_tls_open). */
    unsigned char trust[32];
    /* The trust goes into the store when a certificate is first to be verified, or earlier
     * through qf_tls_ctx_trust(): parsing a bundle of 150 roots takes tens of ms, which a
     * resumed run never needs and a full handshake can spend while its SYN travels. */
    int trust_state;  /* QF_TLS_TRUST_* */
    char *pem;        /* the CA file's bytes, as digested, until loaded */
    size_t pem_len;
    char trust_err[300]; /* why loading failed */
};

enum { QF_TLS_TRUST_LOADED, QF_TLS_TRUST_PEM, QF_TLS_TRUST_SYSTEM, QF_TLS_TRUST_FAILED };

/* Sessions kept per host: enough for a -c 128 batch against a server that closes every
 * connection after one answer, each connection resuming on a ticket of the ones before. */
#define QF_TLS_CACHE_MAX 256

/* One per host and context: the newest sessions the server sent, for the next connections.
 * TLS 1.3 tickets are used once each (RFC 8446 C.4); a TLS 1.2 session is shared.
 * A session carries its binding (OpenSSL's session id context): a digest of the context's
 * trust and the verified host name. Imported sessions wait in pend until a connection of this
 * context checks them: those bound like it move to sess, others stay unused in pend (and are
 * exported again, for the runs they were made for). */
struct qf_tls_cache {
    struct ssl_session_st *sess[QF_TLS_CACHE_MAX];
    int n;
    struct ssl_session_st *pend[QF_TLS_CACHE_MAX];
    int npend;
    unsigned char bind[32]; /* this cache's binding, once bound */
    int bound;
};

struct qf_tls {
    struct ssl_st *ssl;
    struct qf_tls_cache *cache; /* where its server's session tickets go, or NULL */
    unsigned tickets;           /* tickets (TLS 1.3 NewSessionTicket) received on it */
    int dead; /* a fatal error happened: no close_notify may be sent */
};

/* Initialises OpenSSL without its atexit cleanup (the process exits soon anyway). Only a
 * first initialisation can choose this; later calls change nothing. */
void qf_tls_init_no_exit_cleanup(void);
/* The OpenSSL in use, e.g. "OpenSSL 3.0.19 27 Jan 2026". */
const char *qf_tls_version(void);
/* cacert NULL: the system trust store. Returns 0, QF_ECONFIG (unreadable or not PEM) or
 * QF_ENOMEM, with the reason in err. TLS 1.2 minimum, peer verification always on. The
 * certificates are loaded later (qf_tls_ctx_trust()); t stays where it is while it lives. */
int qf_tls_ctx_init(struct qf_tls_ctx *t, const char *cacert, char *err, size_t errlen);
void qf_tls_ctx_free(struct qf_tls_ctx *t);
/* Puts the trust into the context's store now if it is not there yet; 0, or QF_ECONFIG with
 * the reason in t->trust_err (every later verification then fails with it). */
int qf_tls_ctx_trust(struct qf_tls_ctx *t);
void qf_tls_cache_free(struct qf_tls_cache *cache);

/* Starts a client session on fd, verifying host (a DNS name or an IP literal) and sending SNI
 * for names; one trailing dot (an absolute name) is dropped for both, as RFC 6066 wants for
 * SNI and certificates never hold it. cache may be NULL; it serves one host name under one
 * context. Returns 0 or QF_ENOMEM. */
int qf_tls_open(struct qf_tls *s, struct qf_tls_ctx *t, int fd, const char *host,
                struct qf_tls_cache *cache);

/* Drives the handshake. Returns 0 once complete AND verified, QF_WANT_READ/QF_WANT_WRITE,
 * QF_ECERT (verification failed) or QF_ETLS/QF_ECLOSED, with the reason in err. */
int qf_tls_handshake(struct qf_tls *s, char *err, size_t errlen);

/* > 0 bytes; 0 on EOF (close_notify or TCP close); QF_WANT_READ/QF_WANT_WRITE; QF_ECLOSED
 * (reset) or QF_ETLS (alert, bad record) with the reason in err. */
ssize_t qf_tls_read(struct qf_tls *s, void *buf, size_t len, char *err, size_t errlen);

/* Writes all of buf or nothing visible: after QF_WANT_*, call again with the same buf, len. */
ssize_t qf_tls_write(struct qf_tls *s, const void *buf, size_t len, char *err, size_t errlen);

/* Offers only http/1.1 by ALPN (the default is "h2,http/1.1"). 0 or QF_ECONFIG. */
int qf_tls_ctx_http1(struct qf_tls_ctx *t);
/* The connection speaks HTTP/2: ALPN chose "h2" (before the handshake ends: the session
 * about to be resumed did, so early data goes out in HTTP/2). */
int qf_tls_h2(const struct qf_tls *s);
/* What the newest session of cache negotiated: 1 h2, 0 another protocol, -1 no session. A
 * hint for how many connections to open, never a trust decision. */
int qf_tls_cache_h2(const struct qf_tls_cache *cache);

int qf_tls_resumed(const struct qf_tls *s);
/* Session tickets this connection has received so far (the server sends them after the
 * handshake; with early data, about a round trip after the first answer). */
unsigned qf_tls_tickets(const struct qf_tls *s);

/* After the handshake: the protocol ("TLSv1.3") and the cipher suite's RFC name
 * ("TLS_AES_128_GCM_SHA256"). Static strings. */
const char *qf_tls_version_of(const struct qf_tls *s);
const char *qf_tls_suite(const struct qf_tls *s);

/* OpenSSL holds bytes read from the fd (records, processed or not) that no read returned. */
int qf_tls_pending(const struct qf_tls *s);

/* TLS 1.3 early data (0-RTT): how many bytes the session to be resumed allows (0: none).
 * qf_tls_write_early() works like qf_tls_write() before the handshake; after the handshake
 * qf_tls_early_accepted() says whether the server took them (else send them again). */
size_t qf_tls_early_capacity(const struct qf_tls *s);
ssize_t qf_tls_write_early(struct qf_tls *s, const void *buf, size_t len, char *err,
                           size_t errlen);
int qf_tls_early_accepted(const struct qf_tls *s);

/* Persisting a cache across processes. Export writes session i (0 <= i < n + npend) as
 * base64 DER text (NUL-terminated; the binding travels inside) and its expiry in Unix
 * seconds; returns the length, 0 when there is no such session or it has expired,
 * QF_ENOSPC. Import adds to pend an unexpired session that carries a binding and whose
 * verified peer certificate names host; returns 0 or QF_EINVAL. Only a connection under the
 * same trust, to the same host name, ever resumes it. */
int qf_tls_cache_export(const struct qf_tls_cache *cache, int i, char *out, size_t cap,
                        long long *expires);
int qf_tls_cache_import(struct qf_tls_cache *cache, const char *b64, const char *host);

/* The connection has nothing to do for now: its record buffers, a large share of an idle
 * connection's memory, are freed, and allocated again by the next read or write. */
void qf_tls_idle(struct qf_tls *s);

/* Frees the session; sends close_notify only if it can without blocking. fd stays open. */
void qf_tls_close(struct qf_tls *s);

#endif
