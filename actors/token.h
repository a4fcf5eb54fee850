/*
 * token.h - bearer tokens for presenters and participants.
 *
 * A token is 32 bytes from the CSPRNG written as base64url without padding
 * (43 characters). It is handed to its owner once; the server keeps only its
 * SHA-256, in lowercase hex for the store and as raw bytes in memory, so a
 * leaked database or heap dump does not hand out sessions. Pure functions;
 * any thread. Never log a token.
 */
#ifndef TALLY_ACTORS_TOKEN_H
#define TALLY_ACTORS_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKEN_RAW_BYTES 32
#define TOKEN_LEN 43 /* base64url of 32 bytes, no padding */
#define TOKEN_HASH_BYTES 32
#define TOKEN_HASH_HEX 64

/** Writes a new token and its NUL into out. Returns 0 or -EIO (no randomness). */
int token_generate(char out[TOKEN_LEN + 1]);
/** SHA-256 of the len bytes of token. */
void token_hash(const char *token, size_t len, uint8_t out[TOKEN_HASH_BYTES]);
/** Lowercase hex of a hash, with its NUL. */
void token_hash_hex(const uint8_t hash[TOKEN_HASH_BYTES], char out[TOKEN_HASH_HEX + 1]);
/** Parses 64 hex digits (either case); false when hex is anything else. */
bool token_hash_parse(const char *hex, uint8_t out[TOKEN_HASH_BYTES]);
/** A non-zero 64-bit key taken from the hash, for hash maps (not one-to-one). */
uint64_t token_hash_key(const uint8_t hash[TOKEN_HASH_BYTES]);
/** Overwrites a secret so the compiler cannot drop the write. */
void token_wipe(void *p, size_t n);

#endif
