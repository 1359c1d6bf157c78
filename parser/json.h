/* Quote extraction from a Yahoo v8 chart body: one validating scan of the whole body finds
 * chart.result[0].meta.{regularMarketPrice,currency} and chart.error (or finance.error) by
 * path; jsmn tokenizes only those values, and {code,description} are read from the error
 * object's tokens.
 * Never allocates: the caller owns the token array and grows it on QF_ENOSPC. */
#ifndef QF_PARSER_JSON_H
#define QF_PARSER_JSON_H

#include <stddef.h>

#define QF_JSON_DEPTH_MAX 64 /* deeper bracket nesting is QF_EJSON (Yahoo nests about 7) */

/* Parent links make closing a container O(depth) instead of a scan back over its whole
 * subtree; they change jsmntok's layout, so every includer must see the same define. */
#ifndef JSMN_PARENT_LINKS
#define JSMN_PARENT_LINKS
#endif
#define JSMN_HEADER
#include <jsmn.h>
#undef JSMN_HEADER

/* The strings are decoded and clean (qf_text_clean() in include/qfetch.h): valid UTF-8 without
 * control or bidi characters, whatever the body held. */
struct qf_quote {
    double price;       /* valid when qf_json_extract() returned 0 */
    char currency[16];  /* meta.currency, "" when absent or not a short string */
    char err_code[64];  /* chart.error.code (or finance.error.code), "" when absent */
    char err_desc[160]; /* chart.error.description, "" when absent */
};

/* Validates body[0..len) and extracts the quote into q (always cleared first).
 * Returns 0 when a numeric price was found; QF_ENOPRICE for valid JSON without one (null,
 * missing, string, result null; err_* filled when the body carries an error object);
 * QF_EJSON for invalid or truncated JSON (also: nesting deeper than QF_JSON_DEPTH_MAX, or a
 * price number longer than 400 characters);
 * QF_ERANGE for a price that overflows a double (1e400); QF_ENOSPC when ntoks is too small
 * for the error object or a value read (a number or string takes one token; grow, retry;
 * never more than len + 1 tokens).
 * A duplicated key counts at its FIRST occurrence (Python's json keeps the last); keys match
 * byte for byte as written, so an escaped spelling of a key does not match.
 * err_code/err_desc come from chart.error, else from finance.error (Yahoo's 401 bodies). */
int qf_json_extract(const char *body, size_t len, jsmntok_t *toks, unsigned ntoks,
                    struct qf_quote *q);

#endif
