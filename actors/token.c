/*
 * token.c - random bearer tokens and their SHA-256.
 */
#include "actors/token.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "core/base.h"

static const char TOKEN_B64URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static_assert(TOKEN_LEN == (TOKEN_RAW_BYTES * 8 + 5) / 6, "43 sextets cover 256 bits");
static_assert(TOKEN_HASH_BYTES == SHA256_DIGEST_LENGTH, "sha256 size");
static_assert(TOKEN_HASH_HEX == 2 * TOKEN_HASH_BYTES, "hex size");

/* base64url without padding; out holds (n * 4 + 2) / 3 characters and a NUL. */
static size_t token_b64url(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        out[o++] = TOKEN_B64URL[v >> 18 & 63];
        out[o++] = TOKEN_B64URL[v >> 12 & 63];
        out[o++] = TOKEN_B64URL[v >> 6 & 63];
        out[o++] = TOKEN_B64URL[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        out[o++] = TOKEN_B64URL[v >> 18 & 63];
        out[o++] = TOKEN_B64URL[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

        out[o++] = TOKEN_B64URL[v >> 18 & 63];
        out[o++] = TOKEN_B64URL[v >> 12 & 63];
        out[o++] = TOKEN_B64URL[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

int token_generate(char out[TOKEN_LEN + 1])
{
    uint8_t raw[TOKEN_RAW_BYTES];
    size_t n;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        out[0] = '\0';
        return -EIO;
    }
    n = token_b64url(raw, sizeof(raw), out);
    token_wipe(raw, sizeof(raw));
    TALLY_ASSERT(n == TOKEN_LEN);
    return 0;
}

void token_hash(const char *token, size_t len, uint8_t out[TOKEN_HASH_BYTES])
{
    SHA256((const unsigned char *)token, len, out);
}

void token_hash_hex(const uint8_t hash[TOKEN_HASH_BYTES], char out[TOKEN_HASH_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < TOKEN_HASH_BYTES; i++) {
        out[2 * i] = hex[hash[i] >> 4];
        out[2 * i + 1] = hex[hash[i] & 15];
    }
    out[TOKEN_HASH_HEX] = '\0';
}

static int token_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool token_hash_parse(const char *hex, uint8_t out[TOKEN_HASH_BYTES])
{
    if (hex == NULL)
        return false;
    for (size_t i = 0; i < TOKEN_HASH_BYTES; i++) {
        int hi = token_hex_digit(hex[2 * i]);
        int lo = hi < 0 ? -1 : token_hex_digit(hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[TOKEN_HASH_HEX] == '\0';
}

uint64_t token_hash_key(const uint8_t hash[TOKEN_HASH_BYTES])
{
    uint64_t key;

    /* The digest is uniform, so its first 8 bytes are already a good hash. */
    memcpy(&key, hash, sizeof(key));
    return key ? key : 1;
}

void token_wipe(void *p, size_t n)
{
    OPENSSL_cleanse(p, n);
}
