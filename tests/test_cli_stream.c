/* '-t -' streamed: the stdin reader (cli_input_*) split at every kind of read boundary must
 * give the words a whole-input split gives, at addresses that stay valid; and rows printed as
 * they complete (cli_out_rows) must come out early where the format allows and byte for byte
 * as one call with every row prints. */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/cli.h"
#include "qfetch.h"

static uint64_t rng = 0x2545f4914f6cdd1du;

static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static int blank(char ch)
{
    return strchr(" \t\r\n\v\f", ch) != NULL && ch != '\0';
}

/* The words of the whole input, each cut to QF_SYMBOL_MAX + 1 bytes as cli_input_next()
 * promises; malloc'd copies. */
static size_t reference(const char *in, size_t len, char ***out)
{
    size_t n = 0, i = 0;
    *out = NULL;
    while (i < len) {
        while (i < len && blank(in[i]))
            i++;
        size_t w = i;
        while (i < len && !blank(in[i]))
            i++;
        if (i == w)
            break;
        size_t wl = i - w > QF_SYMBOL_MAX + 1 ? QF_SYMBOL_MAX + 1 : i - w;
        *out = realloc(*out, (n + 1) * sizeof(**out));
        assert_non_null(*out);
        (*out)[n] = strndup(in + w, wl);
        assert_non_null((*out)[n]);
        n++;
    }
    return n;
}

/* Feeds in through a pipe, chunk bytes per write (at most the pipe's 64 KiB), reading and
 * taking the words whenever the pipe holds something, as cli/main.c does after poll(). */
static void split_through_pipe(const char *in, size_t len, size_t chunk)
{
    char **want;
    size_t nwant = reference(in, len, &want), ngot = 0;
    const char **got = calloc(nwant + 1, sizeof(*got));
    struct cli_input input = {0};
    int p[2];

    assert_non_null(got);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    for (size_t off = 0;; off += chunk) {
        size_t k = off >= len ? 0 : len - off < chunk ? len - off : chunk;
        if (k > 0)
            assert_int_equal(write(p[1], in + off, k), (ssize_t)k);
        else
            close(p[1]); /* the input ends */
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int r = 1;
        while (r == 1 && poll(&pf, 1, 0) == 1) {
            r = cli_input_read(&input, p[0]);
            assert_true(r == 0 || r == 1);
            for (const char *w; (w = cli_input_next(&input)) != NULL;) {
                assert_true(ngot < nwant);
                got[ngot++] = w;
            }
        }
        if (k == 0) {
            assert_int_equal(r, 0);
            break;
        }
    }
    close(p[0]);
    assert_int_equal(ngot, nwant);
    /* Compared at the end: every word is still where it was handed over. */
    for (size_t i = 0; i < nwant; i++) {
        if (strcmp(got[i], want[i]) != 0)
            fail_msg("chunk %zu, word %zu: got '%s', want '%s'", chunk, i, got[i], want[i]);
        free(want[i]);
    }
    free(want);
    free(got);
    cli_input_free(&input);
}

static char *random_words(size_t len)
{
    static const char blanks[] = " \t\r\n\v\f";
    char *s = malloc(len);
    assert_non_null(s);
    for (size_t i = 0; i < len;) {
        /* mostly symbol-sized words, some past the cut, runs of blanks between */
        size_t wl = 1 + next_u32() % (next_u32() % 8 == 0 ? 300 : 70);
        for (size_t k = 0; k < wl && i < len; k++)
            s[i++] = (char)('A' + next_u32() % 26);
        size_t bl = 1 + next_u32() % 3;
        for (size_t k = 0; k < bl && i < len; k++)
            s[i++] = blanks[next_u32() % 6];
    }
    return s;
}

static void test_input_matches_whole_split(void **state)
{
    (void)state;
    static const size_t chunks[] = {1, 2, 3, 7, 64, 65, 66, 4095, 4096, 65536};
    char w64[65], w65[66], w66[67];
    memset(w64, 'a', 64), w64[64] = '\0';
    memset(w65, 'b', 65), w65[65] = '\0';
    memset(w66, 'c', 66), w66[66] = '\0';
    char mixed[400];
    snprintf(mixed, sizeof(mixed), "%s %s\n%s\t%s%s X", w64, w65, w66, w66, w66);
    const char *small[] = {"", "\n\n", " ", "A", "A B\tC\r\nD\v\fE", "  lead", "trail  ",
                           "AAPL\nMSFT\nGOOG\n", mixed};
    for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++)
        for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++)
            split_through_pipe(small[i], strlen(small[i]), chunks[c]);
    /* Several 64 KiB blocks: words cross every read and block boundary. */
    size_t len = 300000;
    char *big = random_words(len);
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++)
        if (chunks[c] >= 64)
            split_through_pipe(big, len, chunks[c]);
    free(big);
}

static void test_input_nul_refused(void **state)
{
    (void)state;
    struct cli_input input = {0};
    FILE *saved = stderr;
    int p[2];

    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "A\nB\0C\n", 6), 6);
    stderr = fopen("/dev/null", "w");
    assert_non_null(stderr);
    int r = cli_input_read(&input, p[0]);
    fclose(stderr);
    stderr = saved;
    assert_int_equal(r, 2);
    assert_null(cli_input_next(&input)); /* nothing of that read is handed over */
    close(p[0]);
    close(p[1]);
    cli_input_free(&input);
}

/* Rows over the arena words; err on every third when errors. */
static struct cli_text words;

static void make_rows(struct cli_row *rows, size_t n, size_t symlen, int errors)
{
    words.len = 0;
    for (size_t i = 0; i < n; i++) {
        char *sym = malloc(symlen + 1);
        assert_non_null(sym);
        memset(sym, 'A' + (int)(i % 26), symlen);
        sym[symlen] = '\0';
        rows[i] = (struct cli_row){.symbol = sym, .status = 200};
        if (errors && i % 3 == 1) {
            rows[i].err = QF_EHTTP;
            rows[i].status = 404;
            rows[i].text = cli_text_add(&words, "HTTP 404: not, \"found\"", NULL);
        } else {
            rows[i].text = cli_text_add(&words, "123.45", "USD");
        }
        assert_int_not_equal(rows[i].text, 0);
    }
}

static void free_rows(struct cli_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((char *)rows[i].symbol);
}

/* What the rows print: all at once (early NULL), or one at a time with *early set to how
 * many bytes were out before the end. */
static char *capture(enum cli_format f, const struct cli_row *rows, size_t n, size_t *early)
{
    FILE *saved_out = stdout, *saved_err = stderr;
    char *buf = NULL;
    size_t len = 0;

    stdout = open_memstream(&buf, &len);
    stderr = fopen("/dev/null", "w");
    assert_non_null(stdout);
    assert_non_null(stderr);
    if (early == NULL) {
        cli_out_print(f, rows, n, words.b);
    } else {
        struct cli_out o = {.format = f};
        for (size_t i = 0; i < n; i++)
            cli_out_rows(&o, rows, i + 1, 0, words.b);
        fflush(stdout);
        *early = len;
        cli_out_rows(&o, rows, n, 1, words.b);
    }
    fclose(stdout);
    fclose(stderr);
    stdout = saved_out;
    stderr = saved_err;
    return buf;
}

static void check_format(enum cli_format f, size_t n, size_t symlen, int errors, int streams)
{
    struct cli_row rows[16];
    size_t early;

    assert_true(n <= 16);
    make_rows(rows, n, symlen, errors);
    char *a = capture(f, rows, n, &early), *b = capture(f, rows, n, NULL);
    assert_string_equal(a, b);
    if (streams)
        assert_true(early > 0);
    else
        assert_int_equal(early, 0);
    free(a);
    free(b);
    free_rows(rows, n);
}

static void test_out_streams_where_it_can(void **state)
{
    (void)state;
    for (int errors = 0; errors <= 1; errors++) {
        check_format(CLI_JSON, 5, 4, errors, 1);
        check_format(CLI_CSV, 5, 4, errors, 1);
        /* its column is as wide as the longest symbol: only at the end */
        check_format(CLI_TABLE, 5, 4, errors, 0);
        /* two short tuples fit on one line: pprint's layout is known only at the end */
        check_format(CLI_PYTHON, 2, 3, errors, 0);
        /* sixteen do not: the rows go out once the one-line form passes 80 columns */
        check_format(CLI_PYTHON, 16, 3, errors, 1);
        /* tuples wider than 78 columns break after the symbol */
        check_format(CLI_PYTHON, 4, 64, errors, 1);
    }
    free(words.b);
    words.b = NULL;
    words.cap = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_input_matches_whole_split),
        cmocka_unit_test(test_input_nul_refused),
        cmocka_unit_test(test_out_streams_where_it_can),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
