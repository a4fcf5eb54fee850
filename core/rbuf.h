/*
 * rbuf.h - an immutable, reference-counted byte buffer.
 *
 * A broadcast is encoded once per wire format into an rbuf, and every
 * connection that sends it holds a reference until its send completes, so
 * 10,000 subscribers share one copy of the bytes. The bytes never change after
 * creation, so readers on any thread need no lock; only the count is atomic.
 */
#ifndef TALLY_CORE_RBUF_H
#define TALLY_CORE_RBUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct rbuf {
    atomic_uint _refs;
    uint32_t len;
    char data[]; /* len bytes, then a NUL for convenience */
};

/** Allocates an rbuf of len bytes (uninitialised contents, refs = 1). */
struct rbuf *rbuf_alloc(size_t len);
/** Allocates an rbuf holding a copy of p[0..len) (refs = 1). */
struct rbuf *rbuf_new(const void *p, size_t len);
/** Takes one more reference; any thread. Returns b. */
struct rbuf *rbuf_ref(struct rbuf *b);
/** Drops a reference; the last one frees. NULL is a no-op. Any thread. */
void rbuf_unref(struct rbuf *b);

#endif
