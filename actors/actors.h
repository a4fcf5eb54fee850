/*
 * actors.h - the session actors and their directory.
 *
 * One actor per live session owns its polls, participants, votes and counts,
 * and serialises everything that happens in the session. The directory maps a
 * join code and a poll id to the owning actor; it is read by network threads
 * and written when a session is created or loaded.
 */
#ifndef TALLY_ACTORS_ACTORS_H
#define TALLY_ACTORS_ACTORS_H

#include <stdbool.h>
#include <stdint.h>

#include "actors/api.h"

struct actor_rt;
struct store;
struct actors;

struct stream_sink;

struct actors_config {
    struct actor_rt *rt;  /* runs the session actors */
    struct store *store;  /* where every change is committed */
    uint32_t sessions_max;
    const struct stream_sink *sink; /* live subscribers' network side; NULL: none */
};

/** Creates the directory. */
struct actors *actors_create(const struct actors_config *cfg);
/**
 * Rebuilds every session from the store (sessions, polls, participants,
 * votes, counts). Before the network starts. Returns 0 or -errno.
 */
int actors_load(struct actors *as);
/**
 * Routes a request to the actor that owns it, or replies 404 / 503 at once.
 * Any thread. Ownership of req passes to the actors; the reply arrives through
 * req->on_reply.
 */
void actors_submit(struct actors *as, struct api_req *req);
/** Number of participants who joined, over all sessions (for /readyz and metrics). */
uint64_t actors_participants(const struct actors *as);
/**
 * Another instance committed events of a session up to seq: the session,
 * if this instance holds it, reads and delivers what it lacks. Any thread
 * (the store's follower).
 */
void actors_follow_event(struct actors *as, int64_t session_id, int64_t seq);
/**
 * How many other instances share the database. From the first one on,
 * open polls' counts are read from the database, where every instance's
 * votes are. Any thread.
 */
void actors_set_peers(struct actors *as, unsigned peers);
/**
 * Calls put(put_arg, session id, participants connected to this instance)
 * for every session. Any thread (the store's follower).
 */
void actors_local_presence(struct actors *as, void (*put)(void *, int64_t, uint32_t), void *put_arg);
/**
 * Participants of session_id connected to the other instances: `presence`
 * counts them with this instance's own. Any thread (the store's follower).
 */
void actors_follow_presence(struct actors *as, int64_t session_id, uint32_t others);
/** After the actor runtime has stopped. */
void actors_destroy(struct actors *as);

#endif
