/*
 * test_buf.c - the growable buffer: appends across growth, printf, JSON
 * string escaping (every control character, quotes, backslashes, UTF-8),
 * reset, steal and free.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#include "core/buf.h"

static void test_append_and_grow(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    buf_append(&b, "", 0);
    assert_non_null(b.data); /* NUL-terminated after any append */
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");

    char expect[10001];
    for (int i = 0; i < 10000; i++) {
        char c = (char)('a' + i % 26);
        buf_append(&b, &c, 1);
        expect[i] = c;
        assert_true(b.cap > b.len);
    }
    expect[10000] = '\0';
    assert_int_equal(b.len, 10000);
    assert_string_equal(b.data, expect);
    assert_int_equal(strlen(b.data), b.len);

    buf_append_str(&b, "!");
    assert_int_equal(b.len, 10001);
    assert_int_equal(b.data[10000], '!');
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_reserve(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    buf_reserve(&b, 1000);
    assert_true(b.cap >= 1001);
    char *before = b.data;
    for (int i = 0; i < 1000; i++)
        buf_append(&b, "x", 1);
    assert_ptr_equal(b.data, before); /* reserved room means no move */
    buf_free(&b);
}

static void test_printf(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    buf_printf(&b, "%d-%s", 42, "x");
    assert_string_equal(b.data, "42-x");
    char big[3000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_printf(&b, "[%s]", big); /* longer than the current capacity */
    assert_int_equal(b.len, 4 + 2 + 2999);
    assert_int_equal(b.data[5], 'z');
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    buf_printf(&b, "%s", "");
    assert_int_equal(b.len, 4 + 2 + 2999);
    buf_free(&b);
}

/* buf_append_i64 writes what printf's %lld does, at the edges too. */
static void test_append_i64(void **state)
{
    (void)state;
    static const long long vals[] = {0, 1, -1, 9, 10, 99, 100, 201, 4096, 1234567890123LL,
                                     -987654321LL, LLONG_MAX, LLONG_MIN};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        struct buf b = BUF_INIT;
        char want[32];
        buf_append_str(&b, "n=");
        buf_append_i64(&b, vals[i]);
        snprintf(want, sizeof(want), "n=%lld", vals[i]);
        assert_string_equal(b.data, want);
        assert_int_equal(b.len, strlen(want));
        buf_free(&b);
    }
}

static void check_json(const char *in, size_t n, const char *want)
{
    struct buf b = BUF_INIT;
    buf_append_str(&b, "x=");
    buf_append_json_str(&b, in, n);
    assert_int_equal(b.len, 2 + strlen(want));
    assert_memory_equal(b.data + 2, want, strlen(want));
    buf_free(&b);
}

static void test_json_escapes(void **state)
{
    (void)state;
    check_json("", 0, "\"\"");
    check_json(NULL, 0, "\"\"");
    check_json("plain", 5, "\"plain\"");
    check_json("a\"b\\c/d", 7, "\"a\\\"b\\\\c/d\"");
    check_json("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    check_json("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\"");
    check_json("h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89", 15,
               "\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89\"");
    /* Length-bounded: an embedded NUL is escaped, bytes after n are ignored. */
    check_json("a\0b", 3, "\"a\\u0000b\"");
    check_json("abcdef", 3, "\"abc\"");
}

static void test_json_every_control_char(void **state)
{
    (void)state;
    for (int c = 0; c < 0x20; c++) {
        char in = (char)c, want[16];
        switch (c) {
        case '\b': snprintf(want, sizeof(want), "\"\\b\""); break;
        case '\f': snprintf(want, sizeof(want), "\"\\f\""); break;
        case '\n': snprintf(want, sizeof(want), "\"\\n\""); break;
        case '\r': snprintf(want, sizeof(want), "\"\\r\""); break;
        case '\t': snprintf(want, sizeof(want), "\"\\t\""); break;
        default: snprintf(want, sizeof(want), "\"\\u%04x\"", c); break;
        }
        check_json(&in, 1, want);
    }
    char space = ' ';
    check_json(&space, 1, "\" \"");
}

static void test_reset_steal(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    size_t len = 99;
    char *p = buf_steal(&b, &len); /* never written: still a string to free */
    assert_non_null(p);
    assert_string_equal(p, "");
    assert_int_equal(len, 0);
    free(p);

    buf_append_str(&b, "hello");
    size_t cap = b.cap;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(b.cap, cap);
    buf_append_str(&b, "abc");
    p = buf_steal(&b, &len);
    assert_string_equal(p, "abc");
    assert_int_equal(len, 3);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(p);
    buf_append_str(&b, "again");
    assert_string_equal(b.data, "again");
    buf_free(&b);
    buf_free(&b); /* idempotent */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_grow),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_append_i64),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_json_every_control_char),
        cmocka_unit_test(test_reset_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
