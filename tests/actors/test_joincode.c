/*
 * test_joincode.c - join codes: alphabet, length, normalisation, keys and
 * the uniformity of the draw.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "actors/joincode.h"

#define SAMPLES 60000

static void test_generate_shape(void **state)
{
    char code[API_CODE_LEN + 1];

    (void)state;
    for (int i = 0; i < 1000; i++) {
        memset(code, 'x', sizeof(code));
        assert_int_equal(joincode_generate(code), 0);
        assert_int_equal(strlen(code), API_CODE_LEN);
        for (int c = 0; c < API_CODE_LEN; c++) {
            assert_non_null(strchr(JOINCODE_ALPHABET, code[c]));
            assert_null(strchr("0O1IL", code[c]));
        }
    }
}

static void test_alphabet(void **state)
{
    (void)state;
    assert_int_equal(strlen(JOINCODE_ALPHABET), JOINCODE_ALPHABET_LEN);
    assert_null(strpbrk(JOINCODE_ALPHABET, "0O1IL"));
    for (unsigned i = 0; i < JOINCODE_ALPHABET_LEN; i++)
        assert_ptr_equal(strchr(JOINCODE_ALPHABET, JOINCODE_ALPHABET[i]), &JOINCODE_ALPHABET[i]);
}

static void test_normalize(void **state)
{
    char out[API_CODE_LEN + 1];

    (void)state;
    assert_true(joincode_normalize("K7QX2M", out));
    assert_string_equal(out, "K7QX2M");
    assert_true(joincode_normalize("k7qx2m", out));
    assert_string_equal(out, "K7QX2M");
    assert_true(joincode_normalize("k7Qx2M", out));
    assert_string_equal(out, "K7QX2M");
    assert_true(joincode_normalize("ABCDEF", out));
    assert_true(joincode_normalize("999999", out));
}

static void test_normalize_rejects(void **state)
{
    static const char *const bad[] = {
        "",       "K7QX2",     "K7QX2MM", "K7QX20",  "K7QX2O",  "K7QX2o",
        "K7QX21", "K7QX2I",    "K7QX2i",  "K7QX2L",  "K7QX2l",  "K7QX2-",
        "K7 X2M", "K7QX2\xc3", "\0K7QX2", "K7QX2M ", " K7QX2M",
    };
    char out[API_CODE_LEN + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(out, 'x', sizeof(out));
        assert_false(joincode_normalize(bad[i], out));
        assert_string_equal(out, "");
    }
    assert_false(joincode_normalize(NULL, out));
}

static void test_key(void **state)
{
    char a[API_CODE_LEN + 1], b[API_CODE_LEN + 1];

    (void)state;
    assert_int_equal(joincode_key("AAAAAA"), 1);
    assert_int_equal(joincode_key("999999"), 887503681ull); /* 31^6 */
    assert_int_equal(joincode_key("AAAAAB"), 2);
    assert_int_equal(joincode_key("BAAAAA"), 28629151ull + 1); /* 31^5 + 1 */
    assert_int_equal(joincode_key("aaaaaa"), 0);
    assert_int_equal(joincode_key("AAAAA"), 0);
    assert_int_equal(joincode_key("AAAAAAA"), 0);
    assert_int_equal(joincode_key("AAAAA0"), 0);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(joincode_generate(a), 0);
        assert_int_equal(joincode_generate(b), 0);
        assert_int_not_equal(joincode_key(a), 0);
        if (strcmp(a, b) != 0)
            assert_int_not_equal(joincode_key(a), joincode_key(b));
        else
            assert_int_equal(joincode_key(a), joincode_key(b));
    }
}

/* Chi-square over the 31 letters of 60,000 codes (360,000 letters, 30
 * degrees of freedom): above 70 happens by chance far less than once in ten
 * thousand runs; a modulo bias (8 letters 9/256 instead of 8/256) gives
 * thousands. Also checks every position separately, more loosely. */
static void test_distribution(void **state)
{
    static unsigned counts[API_CODE_LEN][JOINCODE_ALPHABET_LEN];
    unsigned total[JOINCODE_ALPHABET_LEN] = {0};
    char code[API_CODE_LEN + 1];
    double chi = 0;
    double expected = (double)SAMPLES * API_CODE_LEN / JOINCODE_ALPHABET_LEN;

    (void)state;
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < SAMPLES; i++) {
        assert_int_equal(joincode_generate(code), 0);
        for (int c = 0; c < API_CODE_LEN; c++) {
            unsigned idx = (unsigned)(strchr(JOINCODE_ALPHABET, code[c]) - JOINCODE_ALPHABET);

            counts[c][idx]++;
            total[idx]++;
        }
    }
    for (unsigned k = 0; k < JOINCODE_ALPHABET_LEN; k++) {
        double d = total[k] - expected;

        chi += d * d / expected;
    }
    assert_true(chi < 70.0);
    for (int c = 0; c < API_CODE_LEN; c++) {
        double per = (double)SAMPLES / JOINCODE_ALPHABET_LEN; /* ~1935 */

        for (unsigned k = 0; k < JOINCODE_ALPHABET_LEN; k++) {
            /* 8 standard deviations (~43 each) either side. */
            assert_true(counts[c][k] > per - 350 && counts[c][k] < per + 350);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_shape),
        cmocka_unit_test(test_alphabet),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_normalize_rejects),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_distribution),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
