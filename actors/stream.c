/*
 * stream.c - see stream.h. The count works as rbuf's does: relaxed
 * increments, an acq_rel decrement, so the thread that frees sees every other
 * holder done with the message.
 */
#include "actors/stream.h"

#include <stdlib.h>

#include "core/base.h"

struct stream_msg *stream_msg_new(enum stream_kind kind, int64_t session_id)
{
    struct stream_msg *m = xcalloc(1, sizeof(*m));

    TALLY_ASSERT(kind == STREAM_SEQUENCED || kind == STREAM_RESULTS || kind == STREAM_PRESENCE);
    TALLY_ASSERT(session_id > 0);
    atomic_init(&m->_refs, 1);
    m->kind = kind;
    m->session_id = session_id;
    return m;
}

struct stream_msg *stream_msg_ref(struct stream_msg *m)
{
    unsigned old;

    TALLY_ASSERT(m != NULL);
    old = atomic_fetch_add_explicit(&m->_refs, 1, memory_order_relaxed);
    TALLY_ASSERT(old > 0);
    return m;
}

void stream_msg_unref(struct stream_msg *m)
{
    unsigned old;

    if (m == NULL)
        return;
    old = atomic_fetch_sub_explicit(&m->_refs, 1, memory_order_acq_rel);
    TALLY_ASSERT(old > 0);
    if (old != 1)
        return;
    for (unsigned f = 0; f < STREAM_FMT_COUNT; f++)
        rbuf_unref(m->bytes[f]);
    free(m);
}
