/*
 * joincode.h - the six-character join codes that name a session.
 *
 * The alphabet leaves out the look-alikes 0/O and 1/I/L so a code read off a
 * projector is typed right the first time. Codes are drawn from the operating
 * system's CSPRNG with rejection sampling, so every code is equally likely.
 * Matching is case-insensitive: joincode_normalize() upper-cases and
 * validates. Pure functions; any thread.
 */
#ifndef TALLY_ACTORS_JOINCODE_H
#define TALLY_ACTORS_JOINCODE_H

#include <stdbool.h>
#include <stdint.h>

#include "actors/api.h"

#define JOINCODE_ALPHABET "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
#define JOINCODE_ALPHABET_LEN 31u

/** Writes a new random code and its NUL into out. Returns 0 or -EIO (no randomness). */
int joincode_generate(char out[API_CODE_LEN + 1]);

/**
 * Upper-cases in into out when it is exactly API_CODE_LEN characters of the
 * alphabet (in any case). false, with out set to "", otherwise.
 */
bool joincode_normalize(const char *in, char out[API_CODE_LEN + 1]);

/**
 * A non-zero integer that names a normalised code one-to-one (base 31), for
 * hash maps. 0 when code is not a normalised code.
 */
uint64_t joincode_key(const char *code);

#endif
