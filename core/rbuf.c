/*
 * rbuf.c - see rbuf.h. The count uses relaxed increments and an acq_rel
 * decrement: the thread that frees must see every other holder's reads done.
 */
#include "core/rbuf.h"

#include <stdlib.h>
#include <string.h>

#include "core/base.h"

#define RBUF_LEN_MAX (64u << 20) /* a broadcast is a few KiB; this catches misuse */

struct rbuf *rbuf_alloc(size_t len)
{
    TALLY_ASSERT(len <= RBUF_LEN_MAX);
    struct rbuf *b = xmalloc(sizeof(*b) + len + 1);
    atomic_init(&b->_refs, 1);
    b->len = (uint32_t)len;
    b->data[len] = '\0';
    return b;
}

struct rbuf *rbuf_new(const void *p, size_t len)
{
    TALLY_ASSERT(p != NULL || len == 0);
    struct rbuf *b = rbuf_alloc(len);
    if (len)
        memcpy(b->data, p, len);
    return b;
}

struct rbuf *rbuf_ref(struct rbuf *b)
{
    TALLY_ASSERT(b != NULL);
    unsigned old = atomic_fetch_add_explicit(&b->_refs, 1, memory_order_relaxed);
    TALLY_ASSERT(old > 0);
    return b;
}

void rbuf_unref(struct rbuf *b)
{
    if (b == NULL)
        return;
    unsigned old = atomic_fetch_sub_explicit(&b->_refs, 1, memory_order_acq_rel);
    TALLY_ASSERT(old > 0);
    if (old == 1)
        free(b);
}
