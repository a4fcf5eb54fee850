/*
 * stream.h - what session actors push to the network threads for live
 * subscribers (WebSocket and Server-Sent Events).
 *
 * A session actor encodes each message once per wire format, already framed
 * (a WebSocket text frame of JSON, a binary frame of MessagePack, an SSE
 * event), and sends one stream_msg to each network thread that has
 * subscribers of the session. The network thread queues the same bytes on
 * every subscriber connection of that session. Subscriptions are registered
 * on the network thread when the API_SUBSCRIBE reply arrives, and that reply
 * travels through the same FIFO mailbox as the broadcasts that follow it, so
 * a subscriber sees the replayed events, then exactly the live ones after.
 */
#ifndef TALLY_ACTORS_STREAM_H
#define TALLY_ACTORS_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/rbuf.h"

enum stream_fmt { STREAM_WS_JSON, STREAM_WS_MSGPACK, STREAM_SSE, STREAM_FMT_COUNT };

enum stream_kind {
    STREAM_SEQUENCED, /* poll.created / opened / closed, session.closed: never dropped */
    STREAM_RESULTS,   /* may be replaced by a newer results of the same poll */
    STREAM_PRESENCE,  /* may be replaced by a newer presence */
};

struct stream_msg {
    atomic_uint _refs;
    enum stream_kind kind;
    int64_t session_id;
    int64_t seq;     /* > 0 for STREAM_SEQUENCED */
    int64_t poll_id; /* STREAM_RESULTS: the poll, for replacing older results */
    bool session_closed; /* the last message of the session: streams end after it */
    struct rbuf *bytes[STREAM_FMT_COUNT];
};

/** Allocates a message with one reference and no bytes. */
struct stream_msg *stream_msg_new(enum stream_kind kind, int64_t session_id);
/** Takes one more reference; any thread. */
struct stream_msg *stream_msg_ref(struct stream_msg *m);
/** Drops a reference; the last frees the message and unrefs its bytes. */
void stream_msg_unref(struct stream_msg *m);

/**
 * The network side, given to the actors at creation. broadcast() hands one
 * reference of m to network thread `thread`, which delivers it to that
 * thread's subscribers of m->session_id. Any thread; never blocks for long:
 * results and presence may be dropped under overload, sequenced events are
 * not (the network thread closes a subscriber it cannot keep up with).
 */
struct stream_sink {
    void *ctx;
    unsigned threads;
    void (*broadcast)(void *ctx, unsigned thread, struct stream_msg *m);
};

#endif
