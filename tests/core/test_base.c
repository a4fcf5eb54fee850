/*
 * test_base.c - the aborting allocator, TALLY_ASSERT's report and the
 * monotonic clock. Aborts are observed from a forked child.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/base.h"

/* Runs fn in a child with stderr captured; returns its stderr, checks it aborted. */
static char *run_aborting(void (*fn)(void))
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], STDERR_FILENO);
        close(p[0]);
        fn();
        _exit(0); /* not reached when fn aborts */
    }
    close(p[1]);
    static char out[8192];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(out) - 1 && (r = read(p[0], out + n, sizeof(out) - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    return out;
}

static void fail_assert(void)
{
    int x = 1;
    TALLY_ASSERT(x == 2);
}

static void huge_calloc(void)
{
    void *p = xcalloc(SIZE_MAX / 2, 3); /* n * size overflows */
    (void)p;
}

static void test_assert_reports_and_aborts(void **state)
{
    (void)state;
    char *out = run_aborting(fail_assert);
    assert_non_null(strstr(out, "assertion failed: x == 2 at "));
    assert_non_null(strstr(out, "test_base.c:"));
    assert_non_null(strstr(out, " ERROR "));
}

static void test_calloc_overflow_aborts(void **state)
{
    (void)state;
    char *out = run_aborting(huge_calloc);
    assert_non_null(strstr(out, "out of memory"));
}

/* str_copy: as snprintf "%s" would, cut to fit and always terminated. */
static void test_str_copy(void **state)
{
    (void)state;
    char small[4], big[16];
    memset(small, 'x', sizeof(small));
    str_copy(small, sizeof(small), "abcdef");
    assert_string_equal(small, "abc");
    str_copy(big, sizeof(big), "abcdef");
    assert_string_equal(big, "abcdef");
    str_copy(big, sizeof(big), NULL);
    assert_string_equal(big, "");
    str_copy(small, 1, "abc");
    assert_int_equal(small[0], '\0');
    str_copy(small, sizeof(small), "abc"); /* exactly fills it */
    assert_string_equal(small, "abc");
}

static void test_allocators(void **state)
{
    (void)state;
    void *p = xmalloc(0);
    assert_non_null(p);
    free(p);

    unsigned char *z = xcalloc(100, 3);
    for (int i = 0; i < 300; i++)
        assert_int_equal(z[i], 0);
    z = xrealloc(z, 5000);
    assert_int_equal(z[299], 0); /* old contents kept */
    z = xrealloc(z, 0);
    assert_non_null(z);
    free(z);

    char *s = xstrdup("poll");
    assert_string_equal(s, "poll");
    free(s);
    s = xstrndup("abcdef", 3);
    assert_string_equal(s, "abc");
    free(s);
    s = xstrndup(NULL, 0);
    assert_string_equal(s, "");
    free(s);

    for (size_t align = sizeof(void *); align <= 4096; align *= 2) {
        void *a = xaligned_alloc(align, 10);
        assert_int_equal((uintptr_t)a % align, 0);
        free(a);
    }
}

static void test_clock(void **state)
{
    (void)state;
    uint64_t ns0 = clock_now_ns(), ms0 = clock_now_ms();
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    uint64_t ns1 = clock_now_ns(), ms1 = clock_now_ms();
    assert_true(ns1 - ns0 >= 20 * 1000000ULL);
    assert_true(ms1 - ms0 >= 19);
    assert_true(ms1 - ms0 < 5000);
    /* Both read the same clock. */
    assert_true(ms1 >= ns0 / 1000000ULL);
    assert_true(ms0 <= ns1 / 1000000ULL);
}

static void test_pow2_macro(void **state)
{
    (void)state;
    assert_false(IS_POW2(0u));
    assert_true(IS_POW2(1u));
    assert_true(IS_POW2(1024u));
    assert_false(IS_POW2(1023u));
    int arr[7];
    assert_int_equal(ARRAY_LEN(arr), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assert_reports_and_aborts),
        cmocka_unit_test(test_calloc_overflow_aborts),
        cmocka_unit_test(test_allocators),
        cmocka_unit_test(test_str_copy),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_pow2_macro),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
