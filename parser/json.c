/* Quote extraction over jsmn: tokenize the whole body into the caller's token array, check
 * what jsmn's strict mode leaves unchecked, then walk the tree by path. Never allocates and
 * never searches for key text, so decoys elsewhere in the document cannot be picked.
 * This file holds the only jsmn implementation in the program (JSMN_STRICT). */
#define JSMN_STRICT
#define JSMN_PARENT_LINKS /* as parser/json.h */
#include <jsmn.h>

#include "parser/json.h"

#include <limits.h>
#include <string.h>

#include "parser/price.h"
#include "qfetch.h"

#define NOT_FOUND (-1)

struct doc {
    const char *js;
    size_t len;
    const jsmntok_t *t;
    int n;
};

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* First byte of token i in the text: string tokens start after their opening quote. */
static int tok_open(const struct doc *d, int i)
{
    return d->t[i].type == JSMN_STRING ? d->t[i].start - 1 : d->t[i].start;
}

static int tok_close(const struct doc *d, int i)
{
    return d->t[i].type == JSMN_STRING ? d->t[i].end + 1 : d->t[i].end;
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

/* Last non-blank byte before position pos, or '\0' at the start of the text. */
static char prev_char(const struct doc *d, int pos, int *at)
{
    while (pos > 0 && is_ws(d->js[pos - 1]))
        pos--;
    *at = pos - 1;
    return pos > 0 ? d->js[pos - 1] : '\0';
}

static int tok_is(const struct doc *d, int i, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(d->t[i].end - d->t[i].start) == n && memcmp(d->js + d->t[i].start, lit, n) == 0;
}

/* jsmn's strict mode still accepts "tru", "1.2.3" and raw control bytes in strings. */
static int leaf_valid(const struct doc *d, int i)
{
    const jsmntok_t *t = &d->t[i];
    int k;

    switch (t->type) {
    case JSMN_OBJECT:
    case JSMN_ARRAY:
        return 1;
    case JSMN_PRIMITIVE:
        return t->size == 0 &&
               (tok_is(d, i, "true") || tok_is(d, i, "false") || tok_is(d, i, "null") ||
                qf_price_is_number(d->js + t->start, (size_t)(t->end - t->start)));
    case JSMN_STRING:
        for (k = t->start; k < t->end; k++)
            if ((unsigned char)d->js[k] < 0x20)
                return 0;
        return t->size <= 1;
    default:
        return 0;
    }
}

/* jsmn does not look at separators: "[1 2]", "[1,,2]" and "{"a","b":1}" tokenize fine.
 * Every non-root token must follow '{', '[', ',' or ':'; ':' only right after its key; a
 * ',' only after a value; '{' only before a key. */
static int separator_valid(const struct doc *d, int i)
{
    int at, at2;
    int is_key = d->t[i].type == JSMN_STRING && d->t[i].size == 1;
    char c = prev_char(d, tok_open(d, i), &at), c2;

    switch (c) {
    case ':':
        /* the ':' must follow the key's closing quote: jsmn lets "a"::1 through */
        return d->t[i - 1].type == JSMN_STRING && d->t[i - 1].size == 1 && !is_key &&
               prev_char(d, at, &at2) == '"' && at2 == d->t[i - 1].end;
    case '{':
        return is_key;
    case '[':
        return !is_key;
    case ',':
        c2 = prev_char(d, at, &at2);
        return c2 != ',' && c2 != ':' && c2 != '{' && c2 != '[' && c2 != '\0';
    default:
        return 0;
    }
}

/* A container must not end in ',' or ':' ("[1,]", "{"a":}"). */
static int close_valid(const struct doc *d, int i)
{
    int at;
    char c;
    if (d->t[i].type != JSMN_OBJECT && d->t[i].type != JSMN_ARRAY)
        return 1;
    c = prev_char(d, d->t[i].end - 1, &at);
    return c != ',' && c != ':';
}

/* Bracket nesting, tracked in the same token pass: tokens come in document order and each
 * counts its direct children, so a stack of pending child counts knows every token's depth.
 * A key is a level of that stack (its value is its child) but not a bracket level. */
struct nest {
    int pending[2 * QF_JSON_DEPTH_MAX + 2];
    int bracket[2 * QF_JSON_DEPTH_MAX + 2];
    int sp, depth;
};

static int nest_push(struct nest *s, const jsmntok_t *t)
{
    int is_container = t->type == JSMN_OBJECT || t->type == JSMN_ARRAY;

    if (s->sp > 0)
        s->pending[s->sp - 1]--;
    if (is_container && s->depth + 1 > QF_JSON_DEPTH_MAX)
        return 0;
    if (t->size > 0) {
        if (s->sp == (int)(sizeof(s->pending) / sizeof(s->pending[0])))
            return 0;
        s->pending[s->sp] = t->size;
        s->bracket[s->sp++] = is_container;
        s->depth += is_container;
    }
    while (s->sp > 0 && s->pending[s->sp - 1] == 0)
        s->depth -= s->bracket[--s->sp];
    return 1;
}

/* Root spans the body apart from blanks; each gap between tokens is blank or the right
 * separator; objects hold exactly as many keys as they have children; nesting stays within
 * QF_JSON_DEPTH_MAX. O(len) in total, so a 100k-token body costs one more linear pass and no
 * recursion. */
static int doc_valid(const struct doc *d)
{
    long keys = 0, children = 0;
    struct nest nest;
    int i, at;

    nest.sp = nest.depth = 0;
    if (prev_char(d, tok_open(d, 0), &at) != '\0')
        return 0;
    for (i = tok_close(d, 0); (size_t)i < d->len; i++)
        if (!is_ws(d->js[i]))
            return 0;
    for (i = 0; i < d->n; i++) {
        if (!leaf_valid(d, i) || !close_valid(d, i) || (i > 0 && !separator_valid(d, i)) ||
            !nest_push(&nest, &d->t[i]))
            return 0;
        if (d->t[i].type == JSMN_OBJECT)
            children += d->t[i].size;
        else if (d->t[i].type == JSMN_STRING && d->t[i].size == 1)
            keys++;
    }
    return keys == children;
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

static int arr_first(const struct doc *d, int arr)
{
    if (arr < 0 || arr >= d->n || d->t[arr].type != JSMN_ARRAY || d->t[arr].size < 1)
        return NOT_FOUND;
    return arr + 1 < d->n ? arr + 1 : NOT_FOUND;
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

static size_t utf8_put(long cp, char *u)
{
    if (cp < 0x80) {
        u[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    u[0] = (char)(0xf0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    u[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
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

/* Length of s[0..n) without a trailing UTF-8 sequence that was cut short. */
static size_t utf8_trim(const char *s, size_t n)
{
    size_t i = n, cont = 0, need;
    unsigned char lead;

    while (i > 0 && cont < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
        i--, cont++;
    if (i == 0)
        return n;
    lead = (unsigned char)s[i - 1];
    if (lead < 0xc0)
        return n;
    need = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : 1;
    return cont < need ? i - 1 : n;
}

/* Decodes JSON string token i into out (NUL-terminated, cap >= 1). Control characters,
 * raw or escaped, become spaces so the text is safe on one terminal line. Returns 1 when
 * everything fit, 0 when truncated (at a code point boundary). */
static int decode_string(const struct doc *d, int i, char *out, size_t cap)
{
    const char *s = d->js + d->t[i].start;
    size_t len = (size_t)(d->t[i].end - d->t[i].start), k = 0, n = 0, used, m;
    char u[4];
    long cp;

    while (k < len) {
        if (s[k] == '\\') {
            cp = decode_escape(s + k + 1, len - k - 1, &used);
            k += 1 + used;
            m = utf8_put(cp < 0x20 || cp == 0x7f ? ' ' : cp, u);
        } else {
            unsigned char c = (unsigned char)s[k++];
            u[0] = (char)(c < 0x20 || c == 0x7f ? ' ' : c);
            m = 1;
        }
        if (m > cap - 1 - n) {
            out[utf8_trim(out, n)] = '\0';
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
    int err = obj_get(d, obj_get(d, 0, "chart"), "error");

    if (err < 0 || d->t[err].type != JSMN_OBJECT)
        err = obj_get(d, obj_get(d, 0, "finance"), "error");
    copy_string(d, obj_get(d, err, "code"), q->err_code, sizeof(q->err_code), 0);
    copy_string(d, obj_get(d, err, "description"), q->err_desc, sizeof(q->err_desc), 0);
}

/* The price must be a number token: null, booleans and strings ("189.84") are no price. */
static int extract_price(const struct doc *d, int meta, double *price)
{
    int p = obj_get(d, meta, "regularMarketPrice");
    const jsmntok_t *t;

    if (p < 0 || d->t[p].type != JSMN_PRIMITIVE)
        return QF_ENOPRICE;
    t = &d->t[p];
    if (tok_is(d, p, "null") || tok_is(d, p, "true") || tok_is(d, p, "false"))
        return QF_ENOPRICE;
    return qf_price_parse(d->js + t->start, (size_t)(t->end - t->start), price);
}

static int tokenize(const char *body, size_t len, jsmntok_t *toks, unsigned ntoks)
{
    jsmn_parser p;
    int r;

    jsmn_init(&p);
    r = jsmn_parse(&p, body, len, toks, ntoks);
    if (r == JSMN_ERROR_NOMEM)
        return QF_ENOSPC;
    if (r <= 0)
        return QF_EJSON;
    return r;
}

int qf_json_extract(const char *body, size_t len, jsmntok_t *toks, unsigned ntoks,
                    struct qf_quote *q)
{
    struct doc d = {body, len, toks, 0};
    int meta;

    memset(q, 0, sizeof(*q));
    if (len > INT_MAX) /* jsmn's token offsets are int */
        return QF_EJSON;
    d.n = tokenize(body, len, toks, ntoks);
    if (d.n < 0)
        return d.n;
    if (!doc_valid(&d))
        return QF_EJSON;
    extract_error(&d, q);
    meta = obj_get(&d, arr_first(&d, obj_get(&d, obj_get(&d, 0, "chart"), "result")), "meta");
    copy_string(&d, obj_get(&d, meta, "currency"), q->currency, sizeof(q->currency), 1);
    return extract_price(&d, meta, &q->price);
}
