/* Reference JSON reader for the fuzz checks: a plain recursive-descent reader of RFC 8259,
 * written apart from parser/json.c (no jsmn) so that the two can be compared byte for byte.
 * Test code: no allocation, values are spans into the caller's text. */
#ifndef QF_TESTS_FUZZ_ORACLE_H
#define QF_TESTS_FUZZ_ORACLE_H

#include <stddef.h>

enum qf_oracle_type {
    QF_ORACLE_NONE, /* absent: a lookup found nothing */
    QF_ORACLE_OBJECT,
    QF_ORACLE_ARRAY,
    QF_ORACLE_STRING,
    QF_ORACLE_NUMBER,
    QF_ORACLE_TRUE,
    QF_ORACLE_FALSE,
    QF_ORACLE_NULL,
};

/* One value: its text is s[at..at+len), quotes included for strings. */
struct qf_oracle_val {
    enum qf_oracle_type type;
    size_t at, len;
};

/* Reads s[0..len) as one JSON text (blanks around it allowed). Returns 1 and fills *root when
 * valid; 0 when not (*err_at: the offset where reading stopped); -1 when containers nest deeper
 * than depth_max before any error (validity beyond that point unknown). With utf8 set,
 * strings must also be well-formed UTF-8 (no overlong forms, surrogates or values past
 * U+10FFFF); without it, any byte >= 0x20 other than '"' and '\\' may appear in a string. */
int qf_oracle_json_parse(const char *s, size_t len, int depth_max, int utf8,
                         struct qf_oracle_val *root, size_t *err_at);

/* The value of the FIRST member of object obj whose key, as written between the quotes
 * (escapes not decoded), equals key. Type QF_ORACLE_NONE when obj is not an object or lacks
 * the key. obj must come from a successful parse of s. */
struct qf_oracle_val qf_oracle_json_get(const char *s, struct qf_oracle_val obj, const char *key);

/* Element i of array arr (members, for an object: their values); QF_ORACLE_NONE past the end. */
struct qf_oracle_val qf_oracle_json_index(const char *s, struct qf_oracle_val arr, size_t i);

/* Number of elements or members of a container; 0 for anything else. */
size_t qf_oracle_json_count(const char *s, struct qf_oracle_val v);

/* Decodes string value v into out (at most cap - 1 bytes and a NUL; cap >= 1) and returns the
 * full decoded length, which may exceed what fit. \uXXXX pairs become UTF-8; a lone surrogate
 * and each malformed raw UTF-8 run (see qf_oracle_text) become U+FFFD. With clean, the text is
 * cleaned as qf_oracle_text() does. */
size_t qf_oracle_json_string(const char *s, struct qf_oracle_val v, char *out, size_t cap,
                             int clean);

/* s[0..len) with every malformed UTF-8 run replaced by U+FFFD (a run: the longest prefix some
 * continuation would make well-formed, at least one byte), into out (3 * len + 1 bytes).
 * With clean, also what include/qfetch.h's clean text replaces: code points below 0x20 and
 * 0x7f become ' ', C1 controls, bidi controls and U+2028/U+2029 become U+FFFD. Returns the
 * length written. */
size_t qf_oracle_text(const char *s, size_t len, char *out, int clean);

/* 1 when s[0..len) is well-formed UTF-8, else 0. */
int qf_oracle_utf8_valid(const char *s, size_t len);

#endif
