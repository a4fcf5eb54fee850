/*
 * joincode.c - random join codes without modulo bias.
 */
#include "actors/joincode.h"

#include <errno.h>
#include <string.h>

#include <openssl/rand.h>

#include "core/base.h"

/* 248 = 8 * 31: bytes at or above it are thrown away, so that every letter
 * keeps exactly 8 of the 256 byte values. */
#define JOINCODE_ACCEPT_BELOW (256u - 256u % JOINCODE_ALPHABET_LEN)
/* Each draw is accepted with probability 248/256; this many rounds of a full
 * buffer failing is astronomically unlikely and means the CSPRNG is broken. */
#define JOINCODE_ROUNDS_MAX 64
#define JOINCODE_RAND_BYTES 16

static_assert(sizeof(JOINCODE_ALPHABET) - 1 == JOINCODE_ALPHABET_LEN, "alphabet length");
static_assert(JOINCODE_ACCEPT_BELOW == 248, "rejection bound");

/* Position of c in the alphabet, or -1. */
static int joincode_index(char c)
{
    const char *p;

    if (c == '\0')
        return -1;
    p = strchr(JOINCODE_ALPHABET, c);
    return p ? (int)(p - JOINCODE_ALPHABET) : -1;
}

int joincode_generate(char out[API_CODE_LEN + 1])
{
    unsigned char rnd[JOINCODE_RAND_BYTES];
    unsigned n = 0;

    for (int round = 0; round < JOINCODE_ROUNDS_MAX && n < API_CODE_LEN; round++) {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            out[0] = '\0';
            return -EIO;
        }
        for (size_t i = 0; i < sizeof(rnd) && n < API_CODE_LEN; i++) {
            if (rnd[i] >= JOINCODE_ACCEPT_BELOW)
                continue;
            out[n++] = JOINCODE_ALPHABET[rnd[i] % JOINCODE_ALPHABET_LEN];
        }
    }
    if (n < API_CODE_LEN) {
        out[0] = '\0';
        return -EIO;
    }
    out[API_CODE_LEN] = '\0';
    TALLY_ASSERT(joincode_key(out) != 0);
    return 0;
}

bool joincode_normalize(const char *in, char out[API_CODE_LEN + 1])
{
    size_t i;

    out[0] = '\0';
    if (in == NULL)
        return false;
    for (i = 0; i < API_CODE_LEN; i++) {
        char c = in[i];

        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (joincode_index(c) < 0) {
            out[0] = '\0';
            return false;
        }
        out[i] = c;
    }
    if (in[API_CODE_LEN] != '\0') {
        out[0] = '\0';
        return false;
    }
    out[API_CODE_LEN] = '\0';
    return true;
}

uint64_t joincode_key(const char *code)
{
    uint64_t key = 0;

    for (size_t i = 0; i < API_CODE_LEN; i++) {
        int d = joincode_index(code[i]);

        if (d < 0)
            return 0;
        key = key * JOINCODE_ALPHABET_LEN + (uint64_t)d;
    }
    if (code[API_CODE_LEN] != '\0')
        return 0;
    /* +1 keeps "AAAAAA" away from 0, which hmap reserves. */
    return key + 1;
}
