/*
 * buf.c - growable byte buffer.
 *
 * Invariant: cap is 0 (data NULL) or at least len + 1, and data[len] is NUL
 * whenever data is not NULL, so the contents can always be used as a string.
 */
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base.h"

#define BUF_CAP_MIN 64

void buf_reserve(struct buf *b, size_t extra)
{
    TALLY_ASSERT(b != NULL);
    TALLY_ASSERT(b->len <= b->cap);
    TALLY_ASSERT(extra < SIZE_MAX / 2 - b->len);
    size_t need = b->len + extra + 1; /* + NUL */
    if (need <= b->cap)
        return;
    size_t cap = b->cap < BUF_CAP_MIN ? BUF_CAP_MIN : b->cap;
    while (cap < need)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
    b->data[b->len] = '\0';
}

void buf_append(struct buf *b, const void *p, size_t n)
{
    TALLY_ASSERT(p != NULL || n == 0);
    buf_reserve(b, n);
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_append_str(struct buf *b, const char *s)
{
    TALLY_ASSERT(s != NULL);
    buf_append(b, s, strlen(s));
}

/* The hot replies (a vote, an HTTP head) are mostly integers; vfprintf's
 * set-up was 5% of the network and actor threads' time under HTTP votes. */
void buf_append_i64(struct buf *b, long long v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        tmp[--i] = '-';
    buf_append(b, tmp + i, sizeof(tmp) - i);
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    TALLY_ASSERT(n >= 0);

    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    int m = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    TALLY_ASSERT(m == n);
    b->len += (size_t)n;
}

/* Characters below 0x20 that JSON spells with a short escape. */
static char json_short_escape(unsigned char c)
{
    switch (c) {
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

void buf_append_json_str(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    TALLY_ASSERT(s != NULL || n == 0);

    buf_reserve(b, n + 2);
    buf_append(b, "\"", 1);
    size_t run = 0; /* bytes copied verbatim, flushed before each escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (i > run)
            buf_append(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t esc_len = 2;
        if (c < 0x20) {
            char short_form = json_short_escape(c);
            if (short_form != 0) {
                esc[1] = short_form;
            } else {
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 0xf];
                esc_len = 6;
            }
        }
        buf_append(b, esc, esc_len);
    }
    if (n > run)
        buf_append(b, s + run, n - run);
    buf_append(b, "\"", 1);
}

void buf_reset(struct buf *b)
{
    TALLY_ASSERT(b != NULL);
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

char *buf_steal(struct buf *b, size_t *len)
{
    TALLY_ASSERT(b != NULL);
    char *p = b->data;
    if (p == NULL)
        p = xstrdup(""); /* the caller can always use and free the result */
    if (len != NULL)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void buf_free(struct buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
