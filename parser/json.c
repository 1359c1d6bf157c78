/* Quote extraction: one validating scan over the whole body finds, by path, the values the
 * answer comes from (meta's regularMarketPrice and currency, or the error object); jsmn
 * tokenizes only those into the caller's token array, and the walk reads them. Never
 * allocates and never searches for key text, so decoys elsewhere in the document cannot be
 * picked. This file holds the only jsmn implementation in the program. Not JSMN_STRICT: the
 * scan has already checked the grammar, and strict mode rejects a primitive that ends its
 * input, which a lone value span (the price) always does. */
#define JSMN_PARENT_LINKS /* as parser/json.h */
#include <jsmn.h>

#include "parser/json.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "parser/price.h"
#include "parser/text.h"
#include "qfetch.h"

#define NOT_FOUND (-1)

struct doc {
    const char *js;
    size_t len;
    const jsmntok_t *t;
    int n;
};

static int tok_is(const struct doc *d, int i, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(d->t[i].end - d->t[i].start) == n && memcmp(d->js + d->t[i].start, lit, n) == 0;
}

/* Index after token i's subtree. jsmn has no parent links, but each token counts its direct
 * children (an object's keys, a key's one value), so a running count of pending tokens
 * finds the end. */
static int skip(const struct doc *d, int i)
{
    int pending = 1;
    while (pending > 0 && i < d->n) {
        pending += d->t[i].size - 1;
        i++;
    }
    return i;
}

/* ---- The scan: validates the whole body in one pass and finds the values we read -------
 * jsmn tokenizes only the values the answer comes from: tokenizing the bar arrays after meta
 * (most of a body) and the rest of meta (trading periods, valid ranges) was where the JSON
 * time went. The scan is the JSON grammar (RFC 8259, bytes >= 0x80
 * unchecked, as before), so a body jsmn never sees is still rejected exactly when it is not
 * JSON. */

/* Paths the scan follows; a key leads to a node only at its FIRST occurrence. */
enum node {
    N_NONE,
    N_ROOT,
    N_CHART,
    N_RESULT,
    N_RESULT0,
    N_META,
    N_CHART_ERR,
    N_FINANCE,
    N_FINANCE_ERR,
    N_PRICE,    /* meta.regularMarketPrice */
    N_CURRENCY, /* meta.currency */
    N_COUNT
};
/* scan_doc() tells a value it records with one comparison. */
_Static_assert(N_PRICE + 1 == N_CURRENCY && N_CURRENCY + 1 == N_COUNT, "recorded nodes last");

struct span {
    size_t at, len; /* a value's text; len 0: absent (the error nodes: or not an object) */
};

struct scan {
    const char *s;
    unsigned seen;              /* nodes entered, as bits */
    struct span found[N_COUNT]; /* N_CHART_ERR, N_FINANCE_ERR, N_PRICE, N_CURRENCY */
};

/* Byte classes. The scan works on local pointers, never on struct fields: a char access may
 * alias any object, so a position kept in memory would be reloaded after every byte. */
enum { C_WS = 1, C_STOP = 2, C_DIGIT = 4 }; /* C_STOP: a string scan stops ('"', '\\', < 0x20) */
/* clang-format off */
static const unsigned char cls[256] = {
    2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 2, 2, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    [' '] = C_WS, ['"'] = C_STOP, ['\\'] = C_STOP,
    ['0'] = C_DIGIT, C_DIGIT, C_DIGIT, C_DIGIT, C_DIGIT, C_DIGIT, C_DIGIT, C_DIGIT, C_DIGIT,
    C_DIGIT,
};
/* clang-format on */

typedef const unsigned char *pos_t;

static pos_t skip_ws(pos_t p, pos_t end)
{
    while (p < end && (cls[*p] & C_WS))
        p++;
    return p;
}

static int is_hex(unsigned char c)
{
    return (cls[c] & C_DIGIT) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

#define ONES 0x0101010101010101u
#define HIGHS 0x8080808080808080u

/* The first byte at or after p that ends a run of plain string bytes ('"', '\\' or a control
 * byte), or end. Sixteen bytes at a time with SSE2, then eight: each SWAR test flags exactly
 * its first matching byte (borrows only spoil the bytes after it), so the lowest flag of the
 * three is exact. (The same SSE2 scan for digit runs cut instructions but took longer a
 * body; the digits keep their SWAR loop.) */
static pos_t skip_plain(pos_t p, pos_t end)
{
#if defined(__SSE2__)
    /* x86-64 always has SSE2; most keys and values fit one load. */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1f);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i stop = _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash));
        stop = _mm_or_si128(stop, _mm_cmpeq_epi8(_mm_max_epu8(x, ctl), ctl)); /* x <= 0x1f */
        unsigned bits = (unsigned)_mm_movemask_epi8(stop);
        if (bits != 0)
            return p + __builtin_ctz(bits);
        p += 16;
    }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - p >= 8) {
        uint64_t x, q, b, m;
        memcpy(&x, p, 8);
        q = x ^ (ONES * '"');
        b = x ^ (ONES * '\\');
        m = ((q - ONES) & ~q) | ((b - ONES) & ~b) | ((x - ONES * 0x20) & ~x);
        if ((m &= HIGHS) != 0)
            return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
#endif
    while (p < end && !(cls[*p] & C_STOP))
        p++;
    return p;
}

/* A string starting at its opening quote p: returns the byte after the closing quote, or
 * NULL when it is not a valid string. */
static pos_t scan_string(pos_t p, pos_t end)
{
    for (p++;; p++) {
        p = skip_plain(p, end);
        if (p >= end || *p < 0x20)
            return NULL;
        if (*p == '"')
            return p + 1;
        if (++p >= end) /* after a backslash */
            return NULL;
        if (*p == 'u') {
            if (end - p < 5 || !is_hex(p[1]) || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]))
                return NULL;
            p += 4;
        } else if (memchr("\"\\/bfnrt", *p, 8) == NULL) {
            return NULL;
        }
    }
}

/* Inlined by force (GCC kept both out of line): the calls were a sixth of a body's scan. */
static inline __attribute__((always_inline)) pos_t scan_digits(pos_t p, pos_t end)
{
    pos_t d = p;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Eight bytes at a time: the bar arrays are mostly 16-digit fractions. A byte is a digit
     * when its high nibble is 3 and stays 3 after adding 6; a carry out of a byte >= 0xfa
     * can only spoil the bytes after the first non-digit, which is the one counted. */
    while (end - p >= 8) {
        uint64_t x, nd;
        memcpy(&x, p, 8);
        nd = ((x & ONES * 0xf0) ^ ONES * 0x30) | (((x + ONES * 6) & ONES * 0xf0) ^ ONES * 0x30);
        if (nd != 0) {
            p += __builtin_ctzll(nd) >> 3;
            return p > d ? p : NULL;
        }
        p += 8;
    }
#endif
    while (p < end && (cls[*p] & C_DIGIT))
        p++;
    return p > d ? p : NULL;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? ; what may follow is the caller's check. */
static inline __attribute__((always_inline)) pos_t scan_number(pos_t p, pos_t end)
{
    if (*p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if ((p = scan_digits(p, end)) == NULL)
        return NULL;
    if (p < end && *p == '.' && (p = scan_digits(p + 1, end)) == NULL)
        return NULL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        return scan_digits(p, end);
    }
    return p;
}

static pos_t scan_literal(pos_t p, pos_t end)
{
    static const char *const lit[] = {"true", "false", "null"};
    const char *l = lit[*p == 't' ? 0 : *p == 'f' ? 1 : 2];
    size_t n = strlen(l);

    return (size_t)(end - p) >= n && memcmp(p, l, n) == 0 ? p + n : NULL;
}

/* The node a member of `parent` leads to, given its key k[0..n) without the quotes. */
static enum node member_node(struct scan *sc, enum node parent, pos_t k, size_t n)
{
    enum node to = N_NONE;

    if (parent == N_NONE) /* most keys: in objects off every path (bars, trading periods) */
        return N_NONE;
#define KEY(lit) (n == sizeof(lit) - 1 && memcmp(k, lit, n) == 0)
    if (parent == N_ROOT)
        to = KEY("chart") ? N_CHART : KEY("finance") ? N_FINANCE : N_NONE;
    else if (parent == N_CHART)
        to = KEY("result") ? N_RESULT : KEY("error") ? N_CHART_ERR : N_NONE;
    else if (parent == N_RESULT0)
        to = KEY("meta") ? N_META : N_NONE;
    else if (parent == N_FINANCE)
        to = KEY("error") ? N_FINANCE_ERR : N_NONE;
    else if (parent == N_META)
        to = KEY("regularMarketPrice") ? N_PRICE : KEY("currency") ? N_CURRENCY : N_NONE;
#undef KEY
    if (to == N_NONE || (sc->seen & (1u << to)))
        return N_NONE;
    sc->seen |= 1u << to;
    return to;
}

static void found(struct scan *sc, unsigned char node, ptrdiff_t at, ptrdiff_t len)
{
    sc->found[node].at = (size_t)at;
    sc->found[node].len = (size_t)len;
}

/* One iterative pass over the grammar with an explicit stack of open containers, so depth
 * costs no recursion and is capped at QF_JSON_DEPTH_MAX. Returns 1 for one valid JSON text
 * with nothing but blanks around it. Bodies are compact, so blanks are looked for only where
 * the expected byte is not there: a skip_ws() before every token was a tenth of the scan. */
static int scan_doc(struct scan *sc, size_t len)
{
    struct {
        unsigned char is_obj, node;
        pos_t at;
    } st[QF_JSON_DEPTH_MAX];
    int sp = 0, in_obj = 0;
    enum node node = N_ROOT; /* of the value about to be read */
    pos_t base = (pos_t)sc->s, p = base, end = base + len, k, v;
    unsigned char c;

value:
    if (p >= end)
        return 0;
    v = p;
    c = *p;
    if (c == '"') {
        p = scan_string(p, end);
    } else if (cls[c] & C_DIGIT || c == '-') {
        p = scan_number(p, end);
        /* The bar arrays are most of a body: while a ',' and another number follow in an
         * array, stay here. Their elements are never recorded values. */
        if (sp > 0 && !in_obj)
            while (p != NULL && end - p >= 2 && p[0] == ',' && (cls[p[1]] & C_DIGIT || p[1] == '-'))
                p = scan_number(p + 1, end);
    } else if (c == '{' || c == '[') {
        if (sp == QF_JSON_DEPTH_MAX)
            return 0;
        in_obj = c == '{';
        st[sp].is_obj = (unsigned char)in_obj;
        st[sp].node = (unsigned char)node;
        st[sp++].at = p;
        if (++p < end && (cls[*p] & C_WS))
            p = skip_ws(p, end);
        if (p < end && *p == c + 2) { /* '}' or ']' */
            p++;
            goto close;
        }
        if (in_obj)
            goto key;
        node = node == N_RESULT ? N_RESULT0 : N_NONE; /* element 0 */
        goto value;
    } else if (c == 't' || c == 'f' || c == 'n') {
        p = scan_literal(p, end);
    } else if (cls[c] & C_WS) {
        p = skip_ws(p, end);
        goto value;
    } else {
        return 0;
    }
    if (p == NULL)
        return 0;
    if (node >= N_PRICE) /* N_PRICE or N_CURRENCY */
        found(sc, node, v - base, p - v);
next: /* after a value: ',' or the end of its container */
    if (sp == 0) {
        p = skip_ws(p, end);
        return p == end;
    }
    if (p >= end)
        return 0;
    c = *p++;
    if (c == ',') {
        node = N_NONE;
        if (in_obj)
            goto key;
        goto value;
    }
    if (c != (in_obj ? '}' : ']')) {
        if (!(cls[c] & C_WS))
            return 0;
        p = skip_ws(p, end);
        goto next;
    }
close: /* the container on top ended just before p */
    sp--;
    if ((st[sp].is_obj && (st[sp].node == N_CHART_ERR || st[sp].node == N_FINANCE_ERR)) ||
        st[sp].node == N_PRICE || st[sp].node == N_CURRENCY)
        found(sc, st[sp].node, st[sp].at - base, p - st[sp].at);
    in_obj = sp > 0 && st[sp - 1].is_obj;
    goto next;
key:
    if (p < end && *p != '"' && (cls[*p] & C_WS))
        p = skip_ws(p, end);
    if (p >= end || *p != '"' || (k = scan_string(p, end)) == NULL)
        return 0;
    node = member_node(sc, (enum node)st[sp - 1].node, p + 1, (size_t)(k - p - 2));
    if (k < end && *k != ':' && (cls[*k] & C_WS))
        k = skip_ws(k, end);
    if (k >= end || *k != ':')
        return 0;
    p = k + 1;
    goto value;
}

static int key_eq(const struct doc *d, int i, const char *name)
{
    return d->t[i].type == JSMN_STRING && tok_is(d, i, name);
}

/* Index of the value of key `name` in object obj: the FIRST occurrence wins when a key is
 * duplicated. Keys compare byte for byte as written (an escaped spelling does not match).
 * NOT_FOUND when obj is not an object or lacks the key. */
static int obj_get(const struct doc *d, int obj, const char *name)
{
    int i, k;

    if (obj < 0 || obj >= d->n || d->t[obj].type != JSMN_OBJECT)
        return NOT_FOUND;
    for (i = obj + 1, k = 0; k < d->t[obj].size && i < d->n; k++) {
        if (key_eq(d, i, name))
            return i + 1 < d->n ? i + 1 : NOT_FOUND;
        i = skip(d, i);
    }
    return NOT_FOUND;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at s[0..4) (jsmn checked them; this re-checks within len). */
static long hex4(const char *s, size_t len)
{
    long v = 0;
    size_t k;
    if (len < 4)
        return -1;
    for (k = 0; k < 4; k++) {
        int h = hexval(s[k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Decodes \uXXXX (and a following low surrogate) at s (pointing at 'u'). Returns the
 * code point, U+FFFD for an unpaired surrogate, and advances *used past the escape. */
static long decode_u(const char *s, size_t len, size_t *used)
{
    long cp = hex4(s + 1, len - 1), lo;
    *used = 5;
    if (cp < 0)
        return 0xfffd;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return 0xfffd;
    if (cp < 0xd800 || cp > 0xdbff)
        return cp;
    if (len < 11 || s[5] != '\\' || s[6] != 'u')
        return 0xfffd;
    lo = hex4(s + 7, len - 7);
    if (lo < 0xdc00 || lo > 0xdfff)
        return 0xfffd;
    *used = 11;
    return 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
}

static long decode_escape(const char *s, size_t len, size_t *used)
{
    *used = 1;
    switch (len > 0 ? s[0] : '\0') {
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'u':
        return decode_u(s, len, used);
    default:
        return len > 0 ? (unsigned char)s[0] : ' '; /* '"', '\\', '/': jsmn checked */
    }
}

/* Decodes JSON string token i into out (NUL-terminated, cap >= 1) as clean text
 * (parser/text.c): malformed UTF-8 becomes U+FFFD, control characters raw or escaped become
 * spaces (C0, DEL) or U+FFFD (C1, bidi controls), so the text is safe on one terminal line.
 * Returns 1 when everything fit, 0 when truncated (at a code point boundary). */
static int decode_string(const struct doc *d, int i, char *out, size_t cap)
{
    const char *s = d->js + d->t[i].start;
    size_t len = (size_t)(d->t[i].end - d->t[i].start), k = 0, n = 0, used, m;
    char u[4];
    uint32_t cp;

    while (k < len) {
        if (s[k] == '\\') {
            cp = (uint32_t)decode_escape(s + k + 1, len - k - 1, &used);
            k += 1 + used;
        } else {
            k += qf_text_next(s + k, len - k, &cp);
        }
        m = qf_text_put(qf_text_safe_cp(cp), u);
        if (m > cap - 1 - n) {
            out[n] = '\0';
            return 0;
        }
        memcpy(out + n, u, m);
        n += m;
    }
    out[n] = '\0';
    return 1;
}

static void copy_string(const struct doc *d, int i, char *out, size_t cap, int whole_only)
{
    out[0] = '\0';
    if (i < 0 || d->t[i].type != JSMN_STRING)
        return;
    if (!decode_string(d, i, out, cap) && whole_only)
        out[0] = '\0';
}

static void extract_error(const struct doc *d, struct qf_quote *q)
{
    copy_string(d, obj_get(d, 0, "code"), q->err_code, sizeof(q->err_code), 0);
    copy_string(d, obj_get(d, 0, "description"), q->err_desc, sizeof(q->err_desc), 0);
}

/* The price must be a number token: null, booleans and strings ("189.84") are no price. */
static int extract_price(const struct doc *d, double *price)
{
    const jsmntok_t *t = &d->t[0];

    if (t->type != JSMN_PRIMITIVE || tok_is(d, 0, "null") || tok_is(d, 0, "true") ||
        tok_is(d, 0, "false"))
        return QF_ENOPRICE;
    return qf_price_parse(d->js + t->start, (size_t)(t->end - t->start), price);
}

/* Tokenizes one value the scan found (already valid JSON) into d; token 0 is the value. */
static int tokenize(struct doc *d, const char *body, struct span sp, jsmntok_t *toks,
                    unsigned ntoks)
{
    jsmn_parser p;
    int r;

    d->js = body + sp.at, d->len = sp.len, d->t = toks;
    jsmn_init(&p);
    r = jsmn_parse(&p, d->js, d->len, toks, ntoks);
    if (r == JSMN_ERROR_NOMEM)
        return QF_ENOSPC;
    if (r <= 0)
        return QF_EJSON; /* cannot happen after the scan */
    d->n = r;
    return 0;
}

int qf_json_extract(const char *body, size_t len, jsmntok_t *toks, unsigned ntoks,
                    struct qf_quote *q)
{
    struct scan sc;
    struct span err;
    struct doc d;
    int rc;

    memset(q, 0, sizeof(*q));
    if (len > INT_MAX) /* jsmn's token offsets are int */
        return QF_EJSON;
    memset(&sc, 0, sizeof(sc));
    sc.s = body;
    if (!scan_doc(&sc, len))
        return QF_EJSON;
    err = sc.found[N_CHART_ERR].len ? sc.found[N_CHART_ERR] : sc.found[N_FINANCE_ERR];
    if (err.len) {
        if ((rc = tokenize(&d, body, err, toks, ntoks)) < 0)
            return rc;
        extract_error(&d, q);
    }
    if (sc.found[N_CURRENCY].len) {
        if ((rc = tokenize(&d, body, sc.found[N_CURRENCY], toks, ntoks)) < 0)
            return rc;
        copy_string(&d, 0, q->currency, sizeof(q->currency), 1);
    }
    if (!sc.found[N_PRICE].len)
        return QF_ENOPRICE;
    if ((rc = tokenize(&d, body, sc.found[N_PRICE], toks, ntoks)) < 0)
        return rc;
    return extract_price(&d, &q->price);
}
