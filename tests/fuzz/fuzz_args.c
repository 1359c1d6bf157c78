/* libFuzzer target for the command line (argv and '-t -' stdin -> cli_args_parse ->
 * qf_symbol_encode, the URL template parser, cli_out_print); the input layout and the
 * invariants are in check.h and check_args.c. A broken invariant aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    char why[512];

    if (qf_fuzz_check_args(data, len, why, sizeof(why)) != 0) {
        fprintf(stderr, "fuzz_args: %s\n", why);
        abort();
    }
    return 0;
}
