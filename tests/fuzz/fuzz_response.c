/* libFuzzer target for the response path (raw bytes -> qf_http -> body -> qf_json_extract ->
 * qf_price_format); the input layout and the invariants are in check.h and check_response.c.
 * A broken invariant aborts, so libFuzzer keeps the input as a crash artifact. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    char why[512];

    if (qf_fuzz_check_response(data, len, why, sizeof(why)) != 0) {
        fprintf(stderr, "fuzz_response: %s\n", why);
        abort();
    }
    return 0;
}
