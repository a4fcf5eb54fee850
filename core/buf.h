/*
 * buf.h - a growable byte buffer with printf and JSON-string helpers.
 * Owned by one thread at a time; the bytes move with buf_steal().
 */
#ifndef TALLY_CORE_BUF_H
#define TALLY_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* NUL-terminated when len > 0 or after any append */
    size_t len;
    size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

/** Makes room for extra more bytes (plus the NUL) without another allocation. */
void buf_reserve(struct buf *b, size_t extra);
/** Appends n bytes; the buffer grows as needed (aborts only when out of memory). */
void buf_append(struct buf *b, const void *p, size_t n);
/** Appends a NUL-terminated string without its NUL. */
void buf_append_str(struct buf *b, const char *s);
/** Appends an integer in decimal (what "%lld" writes, without printf's cost). */
void buf_append_i64(struct buf *b, long long v);
/** Appends printf-formatted text. */
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/**
 * Appends s (n bytes) as a JSON string literal with quotes, escaping per RFC
 * 8259: \" \\ and \b \f \n \r \t, other bytes below 0x20 as \u00xx; every
 * other byte, UTF-8 included, is copied as is (the caller validates UTF-8).
 */
void buf_append_json_str(struct buf *b, const char *s, size_t n);
/** Drops the contents, keeps the memory. */
void buf_reset(struct buf *b);
/** Returns the bytes (caller frees) and leaves b empty. */
char *buf_steal(struct buf *b, size_t *len);
/** Frees the memory and leaves b as BUF_INIT. */
void buf_free(struct buf *b);

#endif
