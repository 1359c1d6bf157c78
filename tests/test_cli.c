/* The command's --stats percentiles: cli_pct_order() selects instead of sorting, so every
 * rank it promises is checked against a sorted copy, over shapes that break careless
 * partitions (duplicates, runs, sorted and reversed input, one or two samples). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli.h"

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

enum shape { RANDOM, FEW_VALUES, SORTED, REVERSED, ALL_EQUAL, SAWTOOTH, NSHAPES };

static void fill(uint32_t *v, size_t n, enum shape s)
{
    for (size_t i = 0; i < n; i++) {
        switch (s) {
        case RANDOM:
            v[i] = next_u32();
            break;
        case FEW_VALUES: /* whole microseconds of a fast loopback run repeat a lot */
            v[i] = 100 + next_u32() % 4;
            break;
        case SORTED:
            v[i] = (uint32_t)i;
            break;
        case REVERSED:
            v[i] = (uint32_t)(n - i);
            break;
        case ALL_EQUAL:
            v[i] = 7;
            break;
        default:
            v[i] = (uint32_t)(i % 17);
            break;
        }
    }
}

/* Nearest rank, the definition the command documents. */
static uint32_t want(const uint32_t *sorted, size_t n, double p)
{
    size_t k = (size_t)(p / 100.0 * (double)n);
    if ((double)k < p / 100.0 * (double)n)
        k++;
    return sorted[k > 0 ? k - 1 : 0];
}

static void test_ranks_match_a_sort(void **state)
{
    static const size_t sizes[] = {1, 2, 3, 4, 5, 9, 10, 11, 99, 100, 101, 1000, 1001, 10007};
    static const double ps[] = {50, 90, 99, 100};
    (void)state;
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        size_t n = sizes[si];
        uint32_t *v = malloc(n * sizeof(*v)), *sorted = malloc(n * sizeof(*v));
        assert_non_null(v);
        assert_non_null(sorted);
        for (int s = 0; s < NSHAPES; s++) {
            fill(v, n, (enum shape)s);
            memcpy(sorted, v, n * sizeof(*v));
            qsort(sorted, n, sizeof(*sorted), cmp_u32);
            cli_pct_order(v, n);
            for (size_t pi = 0; pi < sizeof(ps) / sizeof(ps[0]); pi++) {
                if (cli_pct(v, n, ps[pi]) != want(sorted, n, ps[pi]))
                    fail_msg("n=%zu shape=%d p%g: got %u, want %u", n, s, ps[pi],
                             cli_pct(v, n, ps[pi]), want(sorted, n, ps[pi]));
            }
            /* A selection only moves samples: the multiset is unchanged. */
            qsort(v, n, sizeof(*v), cmp_u32);
            assert_memory_equal(v, sorted, n * sizeof(*v));
        }
        free(v);
        free(sorted);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranks_match_a_sort),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
