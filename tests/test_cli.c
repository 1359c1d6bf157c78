/* The command's --stats percentiles: cli_pct_order() selects instead of sorting, so every
 * rank it promises is checked against a sorted copy, over shapes that break careless
 * partitions (duplicates, runs, sorted and reversed input, one or two samples). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

/* ---- Output of hostile text ------------------------------------------------------------
 * Rows as a hostile server (or an older library) could fill them: the output must stay valid
 * UTF-8 without control or bidi characters, and a server's text must not start a CSV cell
 * with a formula character. */

#define FFFD "\xef\xbf\xbd"

static struct cli_text words;

static struct cli_row row(const char *sym, int err, int status, const char *a, const char *b)
{
    struct cli_row r = {.symbol = sym, .err = (int16_t)err, .status = (uint16_t)status};
    r.text = cli_text_add(&words, a, b);
    assert_true(r.text != 0);
    return r;
}

static char *print_rows(enum cli_format f, const struct cli_row *rows, size_t n)
{
    FILE *saved = stdout, *saved_err = stderr, *m;
    char *out = NULL;
    size_t len = 0;

    assert_non_null(m = open_memstream(&out, &len));
    stdout = m;
    stderr = m;
    cli_out_print(f, rows, n, words.b);
    stdout = saved;
    stderr = saved_err;
    fclose(m);
    return out;
}

static void test_hostile_output(void **state)
{
    struct cli_row rows[6];
    (void)state;
    rows[0] = row("AAA", 0, 200, "1.00", "\xc2\x9b" "2J\xe2\x80\xae");
    rows[1] = row("BBB", 0, 200, "-2.50", "=1+2");
    rows[2] = row("CCC", -9, 404, "HTTP 404: \x1b[2J\xff\t\"x\"", NULL);
    rows[3] = row("-DD", -9, 500, "-cmd", NULL);
    rows[4] = row("EE\xe2\x80\xae", 0, 200, "3.00", "@x");
    rows[5] = row("FFF", 0, 200, "4.00", "+1,2");

    char *js = print_rows(CLI_JSON, rows, 6);
    assert_string_equal(js, "[\n"
        "  {\"ticker\":\"AAA\",\"price\":1.00,\"currency\":\"\\u009b2J\\u202e\"},\n"
        "  {\"ticker\":\"BBB\",\"price\":-2.50,\"currency\":\"=1+2\"},\n"
        "  {\"ticker\":\"CCC\",\"error\":\"HTTP 404: \\u001b[2J" FFFD "\\u0009\\\"x\\\"\",\"status\":404},\n"
        "  {\"ticker\":\"-DD\",\"error\":\"-cmd\",\"status\":500},\n"
        "  {\"ticker\":\"EE\\u202e\",\"price\":3.00,\"currency\":\"@x\"},\n"
        "  {\"ticker\":\"FFF\",\"price\":4.00,\"currency\":\"+1,2\"}\n]\n");
    free(js);

    char *csv = print_rows(CLI_CSV, rows, 6);
    assert_string_equal(csv, "ticker,price,currency,status,error\r\n"
        "AAA,1.00," FFFD "2J" FFFD ",200,\r\n"
        "BBB,-2.50,\"'=1+2\",200,\r\n"           /* the price is ours: a number, left be */
        "CCC,,,404,\"HTTP 404:  [2J" FFFD " \"\"x\"\"\"\r\n"
        "-DD,,,500,\"'-cmd\"\r\n"                 /* the symbol is the user's: left be */
        "EE" FFFD ",3.00,\"'@x\",200,\r\n"
        "FFF,4.00,\"'+1,2\",200,\r\n");
    free(csv);

    char *tab = print_rows(CLI_TABLE, rows, 6);
    assert_string_equal(tab,
        "AAA             1.00  " FFFD "2J" FFFD "\n"
        "BBB            -2.50  =1+2\n"
        "CCC            error  HTTP 404:  [2J" FFFD " \"x\"\n"
        "-DD            error  -cmd\n"
        "EE" FFFD "             3.00  @x\n"
        "FFF             4.00  +1,2\n");
    free(tab);

    /* Python's repr() escapes what it cannot print: U+202E is \u202e there too. */
    char *py = print_rows(CLI_PYTHON, rows + 4, 1);
    assert_string_equal(py, "[('EE\\u202e', Decimal('3.00'))]\n");
    free(py);
    py = print_rows(CLI_PYTHON, rows + 2, 1); /* the failure goes to stderr, clean too */
    assert_string_equal(py, "[]\nqfetch: CCC: HTTP 404:  [2J" FFFD " \"x\"\n");
    free(py);
    free(words.b);
    memset(&words, 0, sizeof(words));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranks_match_a_sort),
        cmocka_unit_test(test_hostile_output),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
