/*
 * uring.h - what the load generator's io_uring loops (engine.c, hvotes.c)
 * share: taking a submission entry when the queue may be full.
 */
#ifndef TALLY_STRESS_URING_H
#define TALLY_STRESS_URING_H

#include <liburing.h>

/** A free submission entry; submits what is queued first if there is none. */
static inline struct io_uring_sqe *uring_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    while (sqe == NULL) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

#endif
