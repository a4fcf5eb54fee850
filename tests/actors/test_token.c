/*
 * test_token.c - bearer tokens: length, alphabet, randomness, and the hash
 * the server keeps instead of the token.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/evp.h>

#include "actors/token.h"

#define B64URL "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

static void test_shape(void **state)
{
    char t[TOKEN_LEN + 1];

    (void)state;
    for (int i = 0; i < 1000; i++) {
        memset(t, '=', sizeof(t));
        assert_int_equal(token_generate(t), 0);
        assert_int_equal(strlen(t), TOKEN_LEN);
        assert_int_equal(strspn(t, B64URL), TOKEN_LEN);
        /* 256 bits = 42 sextets and 4 bits: the last character carries two
         * zero bits of padding, so only every fourth letter can end a token. */
        assert_non_null(strchr("AEIMQUYcgkosw048", t[TOKEN_LEN - 1]));
    }
}

static void test_tokens_differ(void **state)
{
    char a[TOKEN_LEN + 1], b[TOKEN_LEN + 1];

    (void)state;
    assert_int_equal(token_generate(a), 0);
    assert_int_equal(token_generate(b), 0);
    assert_string_not_equal(a, b);
}

/* The hash compared with OpenSSL's EVP interface, computed independently. */
static void test_hash_is_sha256(void **state)
{
    char t[TOKEN_LEN + 1];
    uint8_t h[TOKEN_HASH_BYTES], ref[EVP_MAX_MD_SIZE];
    unsigned ref_len = 0;
    char hex[TOKEN_HASH_HEX + 1];

    (void)state;
    token_hash("abc", 3, h);
    token_hash_hex(h, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(token_generate(t), 0);
    token_hash(t, TOKEN_LEN, h);
    assert_int_equal(EVP_Digest(t, TOKEN_LEN, ref, &ref_len, EVP_sha256(), NULL), 1);
    assert_int_equal(ref_len, TOKEN_HASH_BYTES);
    assert_memory_equal(h, ref, TOKEN_HASH_BYTES);
    token_hash_hex(h, hex);
    assert_int_equal(strlen(hex), TOKEN_HASH_HEX);
    assert_int_equal(strspn(hex, "0123456789abcdef"), TOKEN_HASH_HEX);
}

static void test_hash_parse(void **state)
{
    uint8_t h[TOKEN_HASH_BYTES], back[TOKEN_HASH_BYTES];
    char hex[TOKEN_HASH_HEX + 2];

    (void)state;
    token_hash("x", 1, h);
    token_hash_hex(h, hex);
    assert_true(token_hash_parse(hex, back));
    assert_memory_equal(h, back, TOKEN_HASH_BYTES);
    for (char *p = hex; *p; p++) /* upper case is read too */
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_true(token_hash_parse(hex, back));
    assert_memory_equal(h, back, TOKEN_HASH_BYTES);
    hex[TOKEN_HASH_HEX - 1] = '\0'; /* 63 digits */
    assert_false(token_hash_parse(hex, back));
    token_hash_hex(h, hex);
    hex[TOKEN_HASH_HEX] = '0'; /* 65 digits */
    hex[TOKEN_HASH_HEX + 1] = '\0';
    assert_false(token_hash_parse(hex, back));
    token_hash_hex(h, hex);
    hex[10] = 'g';
    assert_false(token_hash_parse(hex, back));
    assert_false(token_hash_parse("", back));
    assert_false(token_hash_parse(NULL, back));
}

static void test_hash_key(void **state)
{
    uint8_t zero[TOKEN_HASH_BYTES] = {0};
    uint8_t h[TOKEN_HASH_BYTES];

    (void)state;
    assert_int_equal(token_hash_key(zero), 1); /* never 0: hmap reserves it */
    token_hash("a", 1, h);
    assert_int_not_equal(token_hash_key(h), 0);
    h[0] ^= 1;
    assert_int_not_equal(token_hash_key(h), 0);
}

static void test_wipe(void **state)
{
    char secret[TOKEN_LEN + 1];
    char zero[TOKEN_LEN + 1] = {0};

    (void)state;
    assert_int_equal(token_generate(secret), 0);
    token_wipe(secret, sizeof(secret));
    assert_memory_equal(secret, zero, sizeof(secret));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape),          cmocka_unit_test(test_tokens_differ),
        cmocka_unit_test(test_hash_is_sha256), cmocka_unit_test(test_hash_parse),
        cmocka_unit_test(test_hash_key),       cmocka_unit_test(test_wipe),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
