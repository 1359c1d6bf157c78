/* OpenSSL client glue: context setup, non-blocking handshake/read/write, session resumption.
 * May not include HTTP, llhttp or engine headers. The SSL object is owned here; the fd is not. */
#include "tls/tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "qfetch.h"

static void set_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char reason[160] = "";

    if (err == NULL || errlen == 0)
        return;
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    if (reason[0] != '\0') {
        const char *r = ERR_reason_error_string(e);
        snprintf(err, errlen, "%s: %s", what, r != NULL ? r : reason);
    } else {
        snprintf(err, errlen, "%s", what);
    }
}

/* Appends sess to v[0..*n) of QF_TLS_CACHE_MAX (taking the reference), dropping the oldest
 * when full. */
static void push(SSL_SESSION **v, int *n, SSL_SESSION *sess)
{
    if (*n == QF_TLS_CACHE_MAX) {
        SSL_SESSION_free(v[0]);
        memmove(v, v + 1, (QF_TLS_CACHE_MAX - 1) * sizeof(v[0]));
        (*n)--;
    }
    v[(*n)++] = sess;
}

static void cache_push(struct qf_tls_cache *cache, SSL_SESSION *sess)
{
    push(cache->sess, &cache->n, sess);
}

/* OpenSSL hands us ownership when we return 1. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct qf_tls *s = SSL_get_app_data(ssl);

    s->tickets++;
    if (s->cache == NULL)
        return 0;
    cache_push(s->cache, sess);
    return 1;
}

/* ---- Trust identity and session binding ----------------------------------------------
 * A resumed session skips certificate verification: the handshake that made it did that
 * under some trust configuration, for some host name. So every session is bound to both (as
 * curl's session cache matches the SSL configuration), and only a connection with the same
 * binding may resume it; a session from a --cacert run never makes a run on the system store
 * trust that server, nor one from CA file A a run with CA file B. */

struct digest {
    EVP_MD_CTX *m;
    int ok;
};

static void digest_start(struct digest *d, const char *label)
{
    d->m = EVP_MD_CTX_new();
    d->ok = d->m != NULL && EVP_DigestInit_ex(d->m, EVP_sha256(), NULL) == 1;
    if (d->ok)
        d->ok = EVP_DigestUpdate(d->m, label, strlen(label) + 1) == 1;
}

/* Each piece goes in after its length, so no two lists of pieces digest alike. */
static void digest_add(struct digest *d, const void *p, size_t n)
{
    uint64_t len = n;
    if (d->ok)
        d->ok = EVP_DigestUpdate(d->m, &len, sizeof(len)) == 1 && EVP_DigestUpdate(d->m, p, n) == 1;
}

static int digest_end(struct digest *d, unsigned char out[32])
{
    unsigned int n = 0;
    int ok = d->ok && EVP_DigestFinal_ex(d->m, out, &n) == 1 && n == 32;
    EVP_MD_CTX_free(d->m);
    return ok ? 0 : QF_ENOMEM;
}

/* A path and what stat() says of it: update-ca-certificates rewrites the bundle and relinks
 * the hashed directory, so a changed system store is a different trust. */
static void digest_path(struct digest *d, const char *path)
{
    struct stat st;
    int64_t id[6] = {0};
    if (stat(path, &st) == 0) {
        id[0] = (int64_t)st.st_dev, id[1] = (int64_t)st.st_ino, id[2] = (int64_t)st.st_size;
        id[3] = (int64_t)st.st_mtim.tv_sec, id[4] = st.st_mtim.tv_nsec, id[5] = 1;
    }
    digest_add(d, path, strlen(path));
    digest_add(d, id, sizeof(id));
}

/* The system store as system_store() below finds it: its locations, as the environment may
 * move them, and their identity. */
static int system_trust(unsigned char out[32])
{
    const char *dir = getenv(X509_get_default_cert_dir_env());
    const char *file = getenv(X509_get_default_cert_file_env());
    struct digest d;

    digest_start(&d, "qfetch trust 1: system store");
    digest_path(&d, dir != NULL ? dir : X509_get_default_cert_dir());
    digest_path(&d, file != NULL ? file : X509_get_default_cert_file());
    return digest_end(&d, out);
}

/* The binding of host's sessions under trust: the host name as verified (no trailing dot, in
 * lower case), after the trust digest. */
static int session_binding(const unsigned char trust[32], const char *host, unsigned char out[32])
{
    char name[256];
    size_t n = 0;
    struct digest d;

    for (; host[n] != '\0' && n < sizeof(name); n++)
        name[n] = (char)tolower((unsigned char)host[n]);
    digest_start(&d, "qfetch session binding 1");
    digest_add(&d, trust, 32);
    digest_add(&d, name, n);
    return digest_end(&d, out);
}

/* Reads the whole CA file, which may be a pipe (--cacert <(...)), into a malloc'd buffer.
 * NULL with errno set on failure. */
static char *read_all(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    size_t n = 0, cap = 0;
    char *buf = NULL;

    if (fd < 0)
        return NULL;
    int e = fstat(fd, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (e != 0) {
        close(fd);
        errno = e;
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            char *nb = cap < (64u << 20) ? realloc(buf, cap ? 2 * cap : 65536) : NULL;
            if (nb == NULL) {
                free(buf);
                close(fd);
                errno = cap < (64u << 20) ? ENOMEM : EFBIG;
                return NULL;
            }
            buf = nb;
            cap = cap ? 2 * cap : 65536;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = errno;
            free(buf);
            close(fd);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *len = n;
    return buf;
}

/* Adds the certificates and CRLs of a PEM bundle to the context's store, as
 * SSL_CTX_load_verify_locations() would from the file; 1 when at least one was found. Loading
 * the very bytes that were digested leaves no window for the file to change in between. */
static int load_pem(SSL_CTX *ctx, const char *buf, size_t len)
{
    BIO *b = len <= INT32_MAX ? BIO_new_mem_buf(buf, (int)len) : NULL;
    STACK_OF(X509_INFO) *v = b != NULL ? PEM_X509_INFO_read_bio(b, NULL, NULL, NULL) : NULL;
    X509_STORE *st = SSL_CTX_get_cert_store(ctx);
    int found = 0, ok = v != NULL;

    for (int i = 0; ok && i < sk_X509_INFO_num(v); i++) {
        X509_INFO *x = sk_X509_INFO_value(v, i);
        if (x->x509 != NULL)
            ok = X509_STORE_add_cert(st, x->x509) == 1, found++;
        if (ok && x->crl != NULL)
            ok = X509_STORE_add_crl(st, x->crl) == 1, found++;
    }
    sk_X509_INFO_pop_free(v, X509_INFO_free);
    BIO_free(b);
    return ok && found > 0;
}

/* Whether a PEM bundle holds at least one certificate or CRL and every block decodes: what
 * loading it would find, short of parsing the certificates, which is most of its cost. */
static int pem_has_trust(const char *buf, size_t len)
{
    BIO *b = len <= INT32_MAX ? BIO_new_mem_buf(buf, (int)len) : NULL;
    int found = 0;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long n = 0;

    ERR_clear_error();
    while (b != NULL && PEM_read_bio(b, &name, &header, &data, &n) == 1) {
        found += strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0 ||
                 strcmp(name, PEM_STRING_X509_TRUSTED) == 0 ||
                 strcmp(name, PEM_STRING_X509_CRL) == 0;
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
    }
    /* The loop ends at the last block (no start line after it) or at a damaged one. */
    int clean = ERR_GET_REASON(ERR_peek_last_error()) == PEM_R_NO_START_LINE;
    ERR_clear_error();
    BIO_free(b);
    return b != NULL && clean && found > 0;
}

/* OpenSSL's chain verification, after the trust is loaded if it was not yet. */
static int verify_chain(X509_STORE_CTX *x, void *arg)
{
    if (qf_tls_ctx_trust(arg) < 0) {
        X509_STORE_CTX_set_error(x, X509_V_ERR_UNSPECIFIED);
        return 0;
    }
    return X509_verify_cert(x);
}

/* A hashed certificate directory is looked up lazily, one file per issuer actually needed;
 * parsing the whole bundle up front would be most of a short run's time. The bundle is the
 * fallback when there is no such directory or SSL_CERT_FILE asks for a file. */
static int system_store(SSL_CTX *ctx)
{
    const char *dir = getenv(X509_get_default_cert_dir_env());
    if (dir == NULL)
        dir = X509_get_default_cert_dir();
    if (getenv(X509_get_default_cert_file_env()) == NULL && strchr(dir, ':') == NULL) {
        DIR *d = opendir(dir);
        int hashed = 0;
        for (struct dirent *e; d != NULL && !hashed && (e = readdir(d)) != NULL;) {
            size_t n = strlen(e->d_name);
            hashed = n == 10 && e->d_name[8] == '.' && e->d_name[9] >= '0' && e->d_name[9] <= '9';
        }
        if (d != NULL)
            closedir(d);
        if (hashed)
            return SSL_CTX_load_verify_dir(ctx, dir);
    }
    return SSL_CTX_set_default_verify_paths(ctx);
}

/* The ClientHello is shaped like a current Chrome's (131) as far as OpenSSL 3.0 allows; what
 * still differs, and why, is in docs/design.md, and tests/tls_hello.py checks both. Sites that
 * fingerprint TLS clients answer non-browser handshakes with 429s.
 * Chrome's suites in its order (IANA names): TLS 1.3's with AES-128-GCM first, then TLS 1.2's,
 * ECDHE before plain RSA key exchange and AEADs before CBC. AES-128-GCM first also makes every
 * request cheaper than OpenSSL's own AES-256-GCM first: 10 AES rounds instead of 14, and the
 * X25519 or P-256 key exchange gives 128-bit security either way. */
static const char *const chrome_suites[] = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
};

/* Chrome offers X25519MLKEM768 first, which OpenSSL 3.0 does not have. */
static const char chrome_groups[] = "X25519:P-256:P-384";

static const char chrome_sigalgs[] = "ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256:rsa_pkcs1_sha256:"
                                     "ecdsa_secp384r1_sha384:rsa_pss_rsae_sha384:rsa_pkcs1_sha384:"
                                     "rsa_pss_rsae_sha512:rsa_pkcs1_sha512";

/* ALPN, most preferred first, as Chrome offers it. */
static const char *const alpn_protocols[] = {
    "h2",
    "http/1.1",
};

static const SSL_CIPHER *find_suite(STACK_OF(SSL_CIPHER) *have, const char *iana)
{
    for (int i = 0; have != NULL && i < sk_SSL_CIPHER_num(have); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(have, i);
        const char *name = SSL_CIPHER_standard_name(c);
        if (name != NULL && strcmp(name, iana) == 0)
            return c;
    }
    return NULL;
}

static int list_add(char *list, size_t cap, const char *name)
{
    size_t n = strlen(list);
    int w = snprintf(list + n, cap - n, "%s%s", n > 0 ? ":" : "", name);
    return w > 0 && (size_t)w < cap - n;
}

/* Keeps Chrome's suites in Chrome's order, out of those the context already has: a suite that
 * this OpenSSL or the system's policy (OPENSSL_CONF) removed stays removed, and the security
 * level still filters what is sent. When none of Chrome's is left for a version, the policy's
 * own list for it stays as it is. */
static int order_suites(SSL_CTX *ctx)
{
    STACK_OF(SSL_CIPHER) *have = SSL_CTX_get_ciphers(ctx);
    char tls13[256] = "", tls12[512] = "";

    for (size_t i = 0; i < sizeof(chrome_suites) / sizeof(chrome_suites[0]); i++) {
        const SSL_CIPHER *c = find_suite(have, chrome_suites[i]);
        if (c == NULL)
            continue;
        /* TLS 1.3's list takes IANA names; TLS 1.2's cipher string OpenSSL's own. */
        int ok = strcmp(SSL_CIPHER_get_version(c), "TLSv1.3") == 0
                     ? list_add(tls13, sizeof(tls13), chrome_suites[i])
                     : list_add(tls12, sizeof(tls12), SSL_CIPHER_get_name(c));
        if (!ok)
            return 0;
    }
    if (tls13[0] != '\0' && SSL_CTX_set_ciphersuites(ctx, tls13) != 1)
        return 0;
    if (tls12[0] != '\0' && SSL_CTX_set_cipher_list(ctx, tls12) != 1)
        return 0;
    return 1;
}

static int set_alpn(SSL_CTX *ctx, size_t first)
{
    unsigned char wire[64];
    size_t n = 0;

    for (size_t i = first; i < sizeof(alpn_protocols) / sizeof(alpn_protocols[0]); i++) {
        size_t len = strlen(alpn_protocols[i]);
        if (len == 0 || len > 255 || n + 1 + len > sizeof(wire))
            return 0;
        wire[n++] = (unsigned char)len;
        memcpy(wire + n, alpn_protocols[i], len);
        n += len;
    }
    return SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)n) == 0; /* 0 is success here */
}

/* Everything of the ClientHello that OpenSSL 3.0 lets a client choose, set as Chrome has it.
 * Returns 1, or 0 with the reason in err. */
static int shape_hello(SSL_CTX *ctx, char *err, size_t errlen)
{
    if (order_suites(ctx) != 1) {
        set_err(err, errlen, "cannot order the TLS cipher suites");
        return 0;
    }
    if (set_alpn(ctx, 0) != 1) {
        set_err(err, errlen, "cannot set the ALPN protocols");
        return 0;
    }
    /* When this OpenSSL refuses Chrome's groups or signature algorithms (a provider without
     * X25519, say), its own defaults stay: a handshake unlike Chrome's beats none. */
    if (SSL_CTX_set1_groups_list(ctx, chrome_groups) != 1)
        ERR_clear_error();
    if (SSL_CTX_set1_sigalgs_list(ctx, chrome_sigalgs) != 1)
        ERR_clear_error();
    /* status_request and signed_certificate_timestamp, as Chrome sends them. Neither refuses
     * a server for what it staples or leaves out: the OCSP response is not evaluated (qfetch
     * never checked revocation), and permissive CT validation, which runs only once the chain
     * has verified, accepts a certificate without timestamps. */
    if (SSL_CTX_set_tlsext_status_type(ctx, TLSEXT_STATUSTYPE_ocsp) != 1 ||
        SSL_CTX_enable_ct(ctx, SSL_CT_VALIDATION_PERMISSIVE) != 1) {
        set_err(err, errlen, "cannot request OCSP stapling and certificate timestamps");
        return 0;
    }
    /* BoringSSL has no encrypt_then_mac, so Chrome never sends it; it only matters for the
     * CBC suites, the last resort of both lists. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_ENCRYPT_THEN_MAC);
    return 1;
}

/* SSL_get_error() needs an empty error queue, but ERR_clear_error() walks all its slots on
 * every call, twice a request, while the queue is nearly always empty. */
static void err_reset(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

void qf_tls_init_no_exit_cleanup(void)
{
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
}

const char *qf_tls_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

int qf_tls_ctx_init(struct qf_tls_ctx *t, const char *cacert, char *err, size_t errlen)
{
    t->pem = NULL;
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (t->ctx == NULL) {
        set_err(err, errlen, "cannot create TLS context");
        return QF_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(t->ctx, verify_chain, t);
    SSL_CTX_set_app_data(t->ctx, t);
    /* A TCP close without close_notify reads as EOF; the HTTP layer decides if that truncated
     * the response (close-delimited bodies end exactly that way). */
    SSL_CTX_set_options(t->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    /* SSL_write is retried with the same buffer after WANT_*. Record buffers stay while a
     * connection is busy (SSL_MODE_RELEASE_BUFFERS would free and allocate them for every
     * request); idle ones give them back through qf_tls_idle(). */
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Without read-ahead every record costs two read()s (header, then body); reads drain
     * until WANT_READ anyway, so buffered records are never stranded. */
    SSL_CTX_set_read_ahead(t->ctx, 1);
    if (shape_hello(t->ctx, err, errlen) != 1)
        goto fail;
    SSL_CTX_set_session_cache_mode(t->ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(t->ctx, on_new_session);

    if (cacert != NULL) {
        size_t len = 0;
        char *pem = read_all(cacert, &len);
        if (pem == NULL) {
            if (err != NULL)
                snprintf(err, errlen, "cannot read CA file %s: %s", cacert, strerror(errno));
            goto fail;
        }
        /* These very bytes are digested, checked and later loaded: no window for the file
         * to change in between. */
        t->pem = pem;
        t->pem_len = len;
        t->trust_state = QF_TLS_TRUST_PEM;
        snprintf(t->trust_err, sizeof(t->trust_err), "cannot load CA file %s (not a PEM bundle?)",
                 cacert);
        struct digest d;
        digest_start(&d, "qfetch trust 1: CA file");
        digest_add(&d, pem, len);
        if (digest_end(&d, t->trust) < 0) {
            set_err(err, errlen, "cannot digest the CA file");
            goto fail;
        }
        if (!pem_has_trust(pem, len)) {
            set_err(err, errlen, t->trust_err);
            goto fail;
        }
    } else if (system_trust(t->trust) < 0) {
        set_err(err, errlen, "cannot digest the system trust store's identity");
        goto fail;
    } else {
        t->trust_state = QF_TLS_TRUST_SYSTEM;
        snprintf(t->trust_err, sizeof(t->trust_err), "cannot load the system trust store");
    }
    return 0;
fail:
    qf_tls_ctx_free(t);
    return QF_ECONFIG;
}

void qf_tls_ctx_free(struct qf_tls_ctx *t)
{
    SSL_CTX_free(t->ctx);
    t->ctx = NULL;
    free(t->pem);
    t->pem = NULL;
}

int qf_tls_ctx_trust(struct qf_tls_ctx *t)
{
    if (t->trust_state == QF_TLS_TRUST_PEM || t->trust_state == QF_TLS_TRUST_SYSTEM) {
        ERR_set_mark(); /* the handshake's own errors stay as they are */
        int ok = t->trust_state == QF_TLS_TRUST_PEM ? load_pem(t->ctx, t->pem, t->pem_len)
                                                    : system_store(t->ctx) == 1;
        ERR_pop_to_mark();
        t->trust_state = ok ? QF_TLS_TRUST_LOADED : QF_TLS_TRUST_FAILED;
        free(t->pem);
        t->pem = NULL;
    }
    return t->trust_state == QF_TLS_TRUST_FAILED ? QF_ECONFIG : 0;
}

void qf_tls_cache_free(struct qf_tls_cache *cache)
{
    for (int i = 0; i < cache->n; i++)
        SSL_SESSION_free(cache->sess[i]);
    for (int i = 0; i < cache->npend; i++)
        SSL_SESSION_free(cache->pend[i]);
    cache->n = cache->npend = 0;
    cache->bound = 0;
}

/* The name TLS sees: host without one trailing dot ("example.com." is the absolute form of
 * "example.com"; RFC 6066 forbids the dot in SNI and certificates never hold it). 0 or
 * QF_EINVAL when it does not fit. */
static int tls_name(const char *host, char name[256])
{
    size_t n = strlen(host);
    if (n > 1 && host[n - 1] == '.')
        n--;
    if (n == 0 || n >= 256)
        return QF_EINVAL;
    memcpy(name, host, n);
    name[n] = '\0';
    return 0;
}

static int is_ip_literal(const char *name)
{
    unsigned char ip[16];
    return inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
}

/* Moves the imported sessions bound like this cache into it, oldest first; the others stay. */
static void adopt_pending(struct qf_tls_cache *cache)
{
    int keep = 0;
    for (int i = 0; i < cache->npend; i++) {
        unsigned int len = 0;
        const unsigned char *id = SSL_SESSION_get0_id_context(cache->pend[i], &len);
        if (len == sizeof(cache->bind) && memcmp(id, cache->bind, len) == 0)
            cache_push(cache, cache->pend[i]);
        else
            cache->pend[keep++] = cache->pend[i];
    }
    cache->npend = keep;
}

int qf_tls_open(struct qf_tls *s, struct qf_tls_ctx *t, int fd, const char *host,
                struct qf_tls_cache *cache)
{
    char name[256];

    s->dead = 0;
    s->ssl = NULL;
    if (tls_name(host, name) < 0)
        return QF_ENOMEM;
    s->ssl = SSL_new(t->ctx);
    if (s->ssl == NULL)
        return QF_ENOMEM;
    if (SSL_set_fd(s->ssl, fd) != 1)
        goto fail;
    SSL_set_connect_state(s->ssl);
    s->cache = cache;
    s->tickets = 0;
    SSL_set_app_data(s->ssl, s); /* s stays where it is while the SSL object lives */
    if (is_ip_literal(name)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), name) != 1)
            goto fail;
    } else {
        if (SSL_set_tlsext_host_name(s->ssl, name) != 1 || SSL_set1_host(s->ssl, name) != 1)
            goto fail;
    }
    if (cache != NULL) {
        /* OpenSSL copies the id context into each session this SSL makes, and itself refuses
         * to resume a TLS 1.2 session under another: the binding travels with the session. */
        if (!cache->bound && session_binding(t->trust, name, cache->bind) < 0)
            goto fail;
        cache->bound = 1;
        if (SSL_set_session_id_context(s->ssl, cache->bind, sizeof(cache->bind)) != 1)
            goto fail;
        if (cache->npend > 0)
            adopt_pending(cache);
    }
    if (cache != NULL && cache->n > 0) {
        SSL_SESSION *sess = cache->sess[cache->n - 1];
        SSL_set_session(s->ssl, sess);
        if (SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION) {
            cache->n--; /* single use; the SSL object holds its own reference */
            SSL_SESSION_free(sess);
        }
    }
    return 0;
fail:
    qf_tls_close(s);
    return QF_ENOMEM;
}

/* Maps the result of an SSL_* I/O call: the direction matters, a read may need writability. */
static int io_result(struct qf_tls *s, int rc, char *err, size_t errlen, const char *what)
{
    int saved = errno;

    switch (SSL_get_error(s->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return QF_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return QF_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        s->dead = 1;
        if (err != NULL)
            snprintf(err, errlen, "connection closed (%s: %s)", what,
                     saved != 0 ? strerror(saved) : "unexpected EOF");
        return QF_ECLOSED;
    default:
        s->dead = 1;
        set_err(err, errlen, what);
        return QF_ETLS;
    }
}

int qf_tls_handshake(struct qf_tls *s, char *err, size_t errlen)
{
    err_reset();
    errno = 0;
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1) {
        /* SSL_VERIFY_PEER already aborts on failure; checking again costs nothing and keeps
         * a verified handshake the only way to 0. */
        long v = SSL_get_verify_result(s->ssl);
        if (v != X509_V_OK || SSL_get0_peer_certificate(s->ssl) == NULL) {
            if (err != NULL)
                snprintf(err, errlen, "certificate verification failed: %s",
                         X509_verify_cert_error_string(v));
            return QF_ECERT;
        }
        return 0;
    }
    int r = io_result(s, rc, err, errlen, "TLS handshake failed");
    if (r == QF_WANT_READ || r == QF_WANT_WRITE)
        return r;
    long v = SSL_get_verify_result(s->ssl);
    const struct qf_tls_ctx *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(s->ssl));
    if (v != X509_V_OK && t != NULL && t->trust_state == QF_TLS_TRUST_FAILED) {
        set_err(err, errlen, t->trust_err);
        return QF_ECONFIG;
    }
    if (v != X509_V_OK) {
        if (err != NULL)
            snprintf(err, errlen, "certificate verification failed: %s",
                     X509_verify_cert_error_string(v));
        return QF_ECERT;
    }
    if (r == 0) {
        if (err != NULL)
            snprintf(err, errlen, "TLS handshake failed: connection closed by peer");
        return QF_ECLOSED;
    }
    return r;
}

ssize_t qf_tls_read(struct qf_tls *s, void *buf, size_t len, char *err, size_t errlen)
{
    size_t n = 0;

    err_reset();
    errno = 0;
    int rc = SSL_read_ex(s->ssl, buf, len, &n);
    if (rc == 1)
        return (ssize_t)n;
    return io_result(s, rc, err, errlen, "TLS read failed");
}

ssize_t qf_tls_write(struct qf_tls *s, const void *buf, size_t len, char *err, size_t errlen)
{
    size_t n = 0;

    err_reset();
    errno = 0;
    int rc = SSL_write_ex(s->ssl, buf, len, &n);
    if (rc == 1)
        return (ssize_t)n;
    int r = io_result(s, rc, err, errlen, "TLS write failed");
    return r == 0 ? QF_ECLOSED : r;
}

size_t qf_tls_early_capacity(const struct qf_tls *s)
{
    SSL_SESSION *sess = SSL_get_session(s->ssl);
    return sess != NULL && SSL_SESSION_is_resumable(sess) ? SSL_SESSION_get_max_early_data(sess)
                                                          : 0;
}

ssize_t qf_tls_write_early(struct qf_tls *s, const void *buf, size_t len, char *err,
                           size_t errlen)
{
    size_t n = 0;

    err_reset();
    errno = 0;
    if (SSL_write_early_data(s->ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    int r = io_result(s, 0, err, errlen, "TLS early data failed");
    return r == 0 ? QF_ECLOSED : r;
}

int qf_tls_early_accepted(const struct qf_tls *s)
{
    return SSL_get_early_data_status(s->ssl) == SSL_EARLY_DATA_ACCEPTED;
}

int qf_tls_pending(const struct qf_tls *s)
{
    return SSL_has_pending(s->ssl);
}

void qf_tls_idle(struct qf_tls *s)
{
    if (s->ssl != NULL && !SSL_has_pending(s->ssl)) {
        int freed = SSL_free_buffers(s->ssl); /* 0 while a record is half-read: keep them */
        (void)freed;
    }
}

const char *qf_tls_version_of(const struct qf_tls *s)
{
    return SSL_get_version(s->ssl);
}

const char *qf_tls_suite(const struct qf_tls *s)
{
    const char *n = SSL_CIPHER_standard_name(SSL_get_current_cipher(s->ssl));
    return n != NULL ? n : "(none)";
}

unsigned qf_tls_tickets(const struct qf_tls *s)
{
    return s->tickets;
}

int qf_tls_ctx_http1(struct qf_tls_ctx *t)
{
    return set_alpn(t->ctx, 1) == 1 ? 0 : QF_ECONFIG;
}

/* ALPN's answer is "h2": of the handshake once it is done, before it of the session about to
 * be resumed (early data is sent in that session's protocol: the server refuses it under any
 * other). */
int qf_tls_h2(const struct qf_tls *s)
{
    const unsigned char *p = NULL;
    unsigned len = 0;

    if (s->ssl == NULL)
        return 0;
    if (SSL_is_init_finished(s->ssl)) {
        SSL_get0_alpn_selected(s->ssl, &p, &len);
    } else {
        const SSL_SESSION *sess = SSL_get_session(s->ssl);
        size_t n = 0;
        if (sess != NULL)
            SSL_SESSION_get0_alpn_selected(sess, &p, &n);
        len = (unsigned)n;
    }
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

int qf_tls_cache_h2(const struct qf_tls_cache *cache)
{
    const SSL_SESSION *sess = cache->n > 0 ? cache->sess[cache->n - 1]
                              : cache->npend > 0 ? cache->pend[cache->npend - 1]
                                                 : NULL;
    const unsigned char *p = NULL;
    size_t len = 0;

    if (sess == NULL)
        return -1;
    SSL_SESSION_get0_alpn_selected(sess, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

int qf_tls_resumed(const struct qf_tls *s)
{
    return s->ssl != NULL && SSL_session_reused(s->ssl);
}

static long long session_expiry(const SSL_SESSION *sess)
{
    long long t = (long long)SSL_SESSION_get_time(sess), life = SSL_SESSION_get_timeout(sess);
    unsigned long hint = SSL_SESSION_get_ticket_lifetime_hint(sess);
    if (hint > 0 && (long long)hint < life)
        life = (long long)hint;
    return t + life;
}

int qf_tls_cache_export(const struct qf_tls_cache *cache, int i, char *out, size_t cap,
                        long long *expires)
{
    if (i < 0 || i >= cache->n + cache->npend)
        return 0;
    SSL_SESSION *sess = i < cache->n ? cache->sess[i] : cache->pend[i - cache->n];
    if (!SSL_SESSION_is_resumable(sess))
        return 0;
    *expires = session_expiry(sess);
    if (*expires <= (long long)time(NULL))
        return 0;
    int n = i2d_SSL_SESSION(sess, NULL);
    if (n <= 0 || n > 16384)
        return 0;
    if ((size_t)(4 * ((n + 2) / 3)) + 1 > cap)
        return QF_ENOSPC;
    unsigned char der[16384], *p = der;
    i2d_SSL_SESSION(sess, &p);
    return EVP_EncodeBlock((unsigned char *)out, der, n);
}

int qf_tls_cache_import(struct qf_tls_cache *cache, const char *b64, const char *host)
{
    unsigned char der[16384];
    size_t len = strlen(b64);

    if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(der))
        return QF_EINVAL;
    int n = EVP_DecodeBlock(der, (const unsigned char *)b64, (int)len);
    if (n <= 0)
        return QF_EINVAL;
    n -= (b64[len - 1] == '=') + (b64[len - 2] == '='); /* DecodeBlock counts padding */
    const unsigned char *p = der;
    SSL_SESSION *sess = d2i_SSL_SESSION(NULL, &p, n);
    ERR_clear_error();
    if (sess == NULL)
        return QF_EINVAL;
    /* The session keeps the certificate verified when it was made: it must name this host.
     * Its binding decides at qf_tls_open() whether this run's trust is the one that
     * verified it; a session without one (an older qfetch's) is never used. */
    X509 *peer = SSL_SESSION_get0_peer(sess);
    char name[256];
    unsigned int idlen = 0;
    SSL_SESSION_get0_id_context(sess, &idlen);
    int ok = tls_name(host, name) == 0 && SSL_SESSION_is_resumable(sess) &&
             session_expiry(sess) > (long long)time(NULL) && peer != NULL &&
             idlen == sizeof(cache->bind) &&
             (is_ip_literal(name) ? X509_check_ip_asc(peer, name, 0) == 1
                                  : X509_check_host(peer, name, strlen(name), 0, NULL) == 1);
    if (!ok) {
        SSL_SESSION_free(sess);
        return QF_EINVAL;
    }
    push(cache->pend, &cache->npend, sess);
    return 0;
}

void qf_tls_close(struct qf_tls *s)
{
    if (s->ssl == NULL)
        return;
    /* Best effort and non-blocking: a peer that misses close_notify loses nothing. */
    if (!s->dead && SSL_is_init_finished(s->ssl)) {
        ERR_clear_error();
        SSL_shutdown(s->ssl);
    }
    ERR_clear_error();
    SSL_free(s->ssl);
    s->ssl = NULL;
}
