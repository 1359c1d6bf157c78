/* Clean text (parser/text.c): the parser's side of what include/qfetch.h promises about server
 * text. qf_text_next(), qf_text_unsafe() and qf_text_clean() are public (qfetch.h); these two
 * serve decoders that produce code points of their own (JSON escapes). */
#ifndef QF_PARSER_TEXT_H
#define QF_PARSER_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* What clean text holds for cp: cp itself, ' ' for C0 controls and DEL, U+FFFD for the other
 * code points qf_text_unsafe() names. */
uint32_t qf_text_safe_cp(uint32_t cp);

/* Writes cp (<= U+10FFFF, not a surrogate) as UTF-8 into u[0..4); returns its length. */
size_t qf_text_put(uint32_t cp, char *u);

#endif
