/* Reference JSON reader; see oracle.h. Recursion is bounded by depth_max on the first pass,
 * and lookups only run on text that pass accepted. */
#include "tests/fuzz/oracle.h"

#include <string.h>

struct reader {
    const char *s;
    size_t len, i;
    int depth, depth_max, utf8, too_deep;
};

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void blanks(struct reader *r)
{
    while (r->i < r->len && is_blank(r->s[r->i]))
        r->i++;
}

static int peek(const struct reader *r)
{
    return r->i < r->len ? (unsigned char)r->s[r->i] : -1;
}

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Length of the well-formed UTF-8 sequence at s[0..len), 0 when there is none. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned lo = 0x80, hi = 0xbf;
    size_t n, k;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, lo = s[0] == 0xe0 ? 0xa0 : 0x80, hi = s[0] == 0xed ? 0x9f : 0xbf;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, lo = s[0] == 0xf0 ? 0x90 : 0x80, hi = s[0] == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (k = 2; k < n; k++)
        if ((s[k] & 0xc0) != 0x80)
            return 0;
    return n;
}

int qf_oracle_utf8_valid(const char *s, size_t len)
{
    size_t i = 0, n;

    while (i < len) {
        n = utf8_seq((const unsigned char *)s + i, len - i);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

static int read_string(struct reader *r)
{
    r->i++; /* opening quote */
    while (r->i < r->len) {
        unsigned char c = (unsigned char)r->s[r->i];
        if (c == '"') {
            r->i++;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            int e = r->i + 1 < r->len ? (unsigned char)r->s[r->i + 1] : -1;
            if (e == 'u') {
                for (size_t k = 2; k < 6; k++)
                    if (r->i + k >= r->len || hex_digit((unsigned char)r->s[r->i + k]) < 0)
                        return 0;
                r->i += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                r->i += 2;
            } else {
                return 0;
            }
        } else if (c >= 0x80 && r->utf8) {
            size_t n = utf8_seq((const unsigned char *)r->s + r->i, r->len - r->i);
            if (n == 0)
                return 0;
            r->i += n;
        } else {
            r->i++;
        }
    }
    return 0;
}

static int digits(struct reader *r)
{
    size_t from = r->i;
    while (peek(r) >= '0' && peek(r) <= '9')
        r->i++;
    return r->i > from;
}

static int read_number(struct reader *r)
{
    if (peek(r) == '-')
        r->i++;
    if (peek(r) == '0')
        r->i++;
    else if (!digits(r))
        return 0;
    if (peek(r) == '.') {
        r->i++;
        if (!digits(r))
            return 0;
    }
    if (peek(r) == 'e' || peek(r) == 'E') {
        r->i++;
        if (peek(r) == '+' || peek(r) == '-')
            r->i++;
        if (!digits(r))
            return 0;
    }
    return 1;
}

static int read_literal(struct reader *r, const char *lit)
{
    size_t n = strlen(lit);
    if (r->len - r->i < n || memcmp(r->s + r->i, lit, n) != 0)
        return 0;
    r->i += n;
    return 1;
}

static int read_value(struct reader *r, struct qf_oracle_val *v);

/* Object or array; r->i is at the opening bracket. */
static int read_container(struct reader *r, int object)
{
    char close = object ? '}' : ']';
    struct qf_oracle_val v;

    if (++r->depth > r->depth_max) {
        r->too_deep = 1;
        return 0;
    }
    r->i++;
    blanks(r);
    if (peek(r) == close) {
        r->i++;
        r->depth--;
        return 1;
    }
    for (;;) {
        if (object) {
            blanks(r);
            if (peek(r) != '"' || !read_string(r))
                return 0;
            blanks(r);
            if (peek(r) != ':')
                return 0;
            r->i++;
        }
        if (!read_value(r, &v))
            return 0;
        blanks(r);
        if (peek(r) == ',') {
            r->i++;
            continue;
        }
        if (peek(r) != close)
            return 0;
        r->i++;
        r->depth--;
        return 1;
    }
}

static int read_value(struct reader *r, struct qf_oracle_val *v)
{
    int ok;

    blanks(r);
    v->at = r->i;
    switch (peek(r)) {
    case '{':
        v->type = QF_ORACLE_OBJECT;
        ok = read_container(r, 1);
        break;
    case '[':
        v->type = QF_ORACLE_ARRAY;
        ok = read_container(r, 0);
        break;
    case '"':
        v->type = QF_ORACLE_STRING;
        ok = read_string(r);
        break;
    case 't':
        v->type = QF_ORACLE_TRUE;
        ok = read_literal(r, "true");
        break;
    case 'f':
        v->type = QF_ORACLE_FALSE;
        ok = read_literal(r, "false");
        break;
    case 'n':
        v->type = QF_ORACLE_NULL;
        ok = read_literal(r, "null");
        break;
    default:
        v->type = QF_ORACLE_NUMBER;
        ok = read_number(r);
        break;
    }
    v->len = r->i - v->at;
    return ok;
}

int qf_oracle_json_parse(const char *s, size_t len, int depth_max, int utf8,
                         struct qf_oracle_val *root, size_t *err_at)
{
    struct reader r = {.s = s, .len = len, .depth_max = depth_max, .utf8 = utf8};
    int ok = read_value(&r, root);

    if (ok) {
        blanks(&r);
        ok = r.i == len;
    }
    if (err_at != NULL)
        *err_at = r.i;
    if (!ok)
        root->type = QF_ORACLE_NONE;
    return ok ? 1 : r.too_deep ? -1 : 0;
}

/* Walks a container accepted earlier: calls back per member with the key span (object) and
 * the value. Stops early when fn returns nonzero. */
static struct qf_oracle_val walk(const char *s, struct qf_oracle_val c, const char *key,
                                 size_t index)
{
    struct reader r = {.s = s, .len = c.at + c.len, .i = c.at, .depth_max = 1 << 20};
    struct qf_oracle_val none = {QF_ORACLE_NONE, 0, 0}, v;
    size_t n = 0, klen = key ? strlen(key) : 0;

    if (c.type != QF_ORACLE_OBJECT && c.type != QF_ORACLE_ARRAY)
        return none;
    r.i++;
    for (;;) {
        size_t kat = 0, kend = 0;
        blanks(&r);
        if (peek(&r) == '}' || peek(&r) == ']' || peek(&r) < 0)
            return none;
        if (c.type == QF_ORACLE_OBJECT) {
            kat = r.i + 1;
            read_string(&r);
            kend = r.i - 1;
            blanks(&r);
            r.i++; /* ':' */
        }
        if (!read_value(&r, &v))
            return none;
        if (key != NULL ? kend - kat == klen && memcmp(s + kat, key, klen) == 0 : n == index)
            return v;
        n++;
        blanks(&r);
        if (peek(&r) == ',')
            r.i++;
    }
}

struct qf_oracle_val qf_oracle_json_get(const char *s, struct qf_oracle_val obj, const char *key)
{
    struct qf_oracle_val none = {QF_ORACLE_NONE, 0, 0};
    return obj.type == QF_ORACLE_OBJECT ? walk(s, obj, key, 0) : none;
}

struct qf_oracle_val qf_oracle_json_index(const char *s, struct qf_oracle_val arr, size_t i)
{
    return walk(s, arr, NULL, i);
}

size_t qf_oracle_json_count(const char *s, struct qf_oracle_val v)
{
    size_t n = 0;
    while (walk(s, v, NULL, n).type != QF_ORACLE_NONE)
        n++;
    return n;
}

static size_t put_utf8(unsigned long cp, char *u)
{
    if (cp < 0x80) {
        u[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    u[0] = (char)(0xf0 | cp >> 18);
    u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    u[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static unsigned long hex4_at(const char *s)
{
    unsigned long v = 0;
    for (int k = 0; k < 4; k++)
        v = v * 16 + (unsigned long)hex_digit((unsigned char)s[k]);
    return v;
}

/* How many bytes at s[0..len) one U+FFFD replaces when no well-formed sequence starts there:
 * the longest prefix that some continuation would make well-formed, at least 1. A prefix is
 * tried by completing it with 0x80 bytes, which every position after the second accepts. */
static size_t bad_run(const unsigned char *s, size_t len)
{
    for (size_t k = len < 3 ? len : 3; k >= 2; k--) {
        unsigned char t[4] = {0x80, 0x80, 0x80, 0x80};
        memcpy(t, s, k);
        size_t n = utf8_seq(t, 4);
        if (n > k)
            return k;
    }
    return 1;
}

/* What clean text replaces (include/qfetch.h's list, written out again). */
static unsigned long cleaned(unsigned long cp)
{
    if (cp <= 0x1f || cp == 0x7f)
        return ' ';
    if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
        (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
        return 0xfffd;
    return cp;
}

/* The code point of the well-formed n-byte sequence at s. */
static unsigned long seq_value(const unsigned char *s, size_t n)
{
    static const unsigned char lead_mask[5] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    unsigned long cp = s[0] & lead_mask[n];
    for (size_t k = 1; k < n; k++)
        cp = cp << 6 | (s[k] & 0x3f);
    return cp;
}

size_t qf_oracle_text(const char *s, size_t len, char *out, int clean)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n = 0, k;
    unsigned long cp;

    while (i < len) {
        k = utf8_seq(p + i, len - i);
        if (k == 0) {
            cp = 0xfffd;
            k = bad_run(p + i, len - i);
        } else {
            cp = seq_value(p + i, k);
        }
        i += k;
        n += put_utf8(clean ? cleaned(cp) : cp, out + n);
    }
    out[n] = '\0';
    return n;
}

size_t qf_oracle_json_string(const char *s, struct qf_oracle_val v, char *out, size_t cap,
                             int clean)
{
    size_t i = v.at + 1, end = v.at + v.len - 1, n = 0, m;
    char u[4];

    while (i < end) {
        unsigned long cp;
        if (s[i] != '\\') {
            m = utf8_seq((const unsigned char *)s + i, end - i);
            if (m == 0) {
                cp = 0xfffd;
                i += bad_run((const unsigned char *)s + i, end - i);
            } else {
                cp = seq_value((const unsigned char *)s + i, m);
                i += m;
            }
            m = put_utf8(clean ? cleaned(cp) : cp, u);
        } else {
            char e = s[i + 1];
            i += 2;
            switch (e) {
            case 'b':
                cp = '\b';
                break;
            case 'f':
                cp = '\f';
                break;
            case 'n':
                cp = '\n';
                break;
            case 'r':
                cp = '\r';
                break;
            case 't':
                cp = '\t';
                break;
            case 'u':
                cp = hex4_at(s + i);
                i += 4;
                if (cp >= 0xd800 && cp <= 0xdbff && end - i >= 6 && s[i] == '\\' &&
                    s[i + 1] == 'u') {
                    unsigned long lo = hex4_at(s + i + 2);
                    if (lo >= 0xdc00 && lo <= 0xdfff) {
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        i += 6;
                    }
                }
                if (cp >= 0xd800 && cp <= 0xdfff)
                    cp = 0xfffd;
                break;
            default:
                cp = (unsigned char)e;
                break;
            }
            m = put_utf8(clean ? cleaned(cp) : cp, u);
        }
        for (size_t k = 0; k < m; k++, n++)
            if (n + 1 < cap)
                out[n] = u[k];
    }
    out[n + 1 < cap ? n : cap - 1] = '\0';
    return n;
}
