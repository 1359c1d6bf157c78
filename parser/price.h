/* Price text: JSON number -> double -> cents, exactly as Python's
 * Decimal(float(x)).quantize(Decimal("0.01")) (round half even on the exact binary value). */
#ifndef QF_PARSER_PRICE_H
#define QF_PARSER_PRICE_H

#include <stddef.h>

/* Parses a JSON number token (strict JSON grammar, not NUL-terminated) into *out, correctly
 * rounded, independent of the locale. Returns 0, or QF_EJSON when s is not a JSON number
 * (or is longer than 400 characters), QF_ERANGE when not finite (underflow gives 0). */
int qf_price_parse(const char *s, size_t len, double *out);

/* Writes v rounded half-even to two decimals ("-0.00" for negative zero, as Decimal does).
 * Returns the length, QF_ERANGE when v is not finite or |v| >= 1e26 (Decimal's default
 * 28-digit context would raise), QF_ENOSPC when cap is too small (32 always suffices).
 * Computed from the exact bits: the FPU rounding mode and the locale do not matter. */
int qf_price_format(double v, char *out, size_t cap);

#endif
