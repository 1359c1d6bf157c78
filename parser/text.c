/* Clean text: the one place that decides what server text may reach a terminal, a CSV file or
 * a JSON document. parser/json.c decodes strings through it, and the command's output (through
 * include/qfetch.h) cleans and escapes with the same rules. Pure functions, no allocation. */
#include "parser/text.h"

#include <stdint.h>
#include <string.h>

#include "qfetch.h"

#define REPLACEMENT 0xfffd

size_t qf_text_next(const char *s, size_t len, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[0], lo = 0x80, hi = 0xbf;
    size_t n;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    /* The second byte's range excludes overlong forms (E0, F0), surrogates (ED) and values
     * past U+10FFFF (F4); C0, C1 and F5-FF never start a sequence. */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, *cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, *cp = c & 0x0f;
        lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, *cp = c & 0x07;
        lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        *cp = REPLACEMENT;
        return 1;
    }
    for (size_t k = 1; k < n; k++) {
        if (k >= len || p[k] < lo || p[k] > hi) {
            *cp = REPLACEMENT; /* the well-formed prefix so far is one maximal subpart */
            return k;
        }
        *cp = *cp << 6 | (p[k] & 0x3f);
        lo = 0x80, hi = 0xbf;
    }
    return n;
}

int qf_text_unsafe(uint32_t cp)
{
    /* C0, DEL and C1 controls (U+009B is a CSI: it can erase a screen); ALM, LRM and RLM;
     * the line and paragraph separators and the bidi embeddings and overrides
     * (U+2028-U+202E); the bidi isolates (U+2066-U+2069). */
    return cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp == 0x61c || cp == 0x200e || cp == 0x200f ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

uint32_t qf_text_safe_cp(uint32_t cp)
{
    if (!qf_text_unsafe(cp))
        return cp;
    /* A tab or line break in an error description still separates its words. */
    return cp < 0x20 || cp == 0x7f ? ' ' : REPLACEMENT;
}

size_t qf_text_put(uint32_t cp, char *u)
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

size_t qf_text_clean(const char *s, size_t len, char *out, size_t cap)
{
    size_t k = 0, n = 0, m;
    char u[4];
    uint32_t cp;

    if (cap == 0)
        return 0;
    while (k < len) {
        unsigned char c = (unsigned char)s[k];
        if (c >= 0x20 && c < 0x7f) { /* printable ASCII, nearly all of it */
            if (n + 1 >= cap)
                break;
            out[n++] = (char)c;
            k++;
            continue;
        }
        k += qf_text_next(s + k, len - k, &cp);
        m = qf_text_put(qf_text_safe_cp(cp), u);
        if (m > cap - 1 - n)
            break;
        memcpy(out + n, u, m);
        n += m;
    }
    out[n] = '\0';
    return n;
}
