/*
 * follow.h - following what other instances commit to the shared database.
 *
 * Several tallyd processes may share one database (CONTRACT section 5). Each
 * runs one follower: a thread with a connection of its own that
 *  - LISTENs on tally_events (every batch that appends to event_log sends one
 *    NOTIFY in its transaction, so the wake-up comes with the commit), and
 *    polls event_log every FOLLOW_POLL_MS in any case, so a lost notification
 *    (a dropped connection, say) delays an event by that much at most;
 *  - reports, for each session whose event_log another instance appended to
 *    recently, the highest seq there (on_event): the session's owner reads
 *    the events it lacks and delivers them;
 *  - keeps this instance's row in `instances` fresh and reports how many
 *    other instances are alive (on_peers): while there are any, votes of a
 *    session may be committed elsewhere, and counts must be read from the
 *    database rather than kept in memory;
 *  - while there are others, writes this instance's connected participants
 *    per session to `presence` (from local_presence) and reports the sum of
 *    the others' per session when it changes (on_presence), so that
 *    `presence` counts the participants of every instance.
 * After every (re)connection it reports every session's seq once, since
 * notifications sent while it was away are lost.
 */
#ifndef TALLY_STORE_FOLLOW_H
#define TALLY_STORE_FOLLOW_H

#include <stdint.h>

#define FOLLOW_POLL_MS 100       /* the polling fallback: at most this late */
#define FOLLOW_HEARTBEAT_MS 1000 /* how often this instance's row is refreshed */
#define FOLLOW_PEER_TTL_S 5      /* a row older than this is an instance gone */
#define FOLLOW_WINDOW_S 30       /* how far back each poll of event_log looks */

struct follow_config {
    const char *conninfo;
    const char *instance_id;
    void *arg;
    /** Another instance committed events of session_id up to seq. Follower thread. */
    void (*on_event)(void *arg, int64_t session_id, int64_t seq);
    /** How many other instances are alive now. Follower thread. */
    void (*on_peers)(void *arg, unsigned peers);
    /**
     * This instance's participants connected per session, for the sessions
     * that have or had any: calls put(put_arg, session_id, n) for each.
     * Follower thread; may be NULL (presence is then not shared).
     */
    void (*local_presence)(void *arg, void (*put)(void *put_arg, int64_t session_id, uint32_t n),
                           void *put_arg);
    /** The other instances' participants connected to session_id changed. Follower thread. */
    void (*on_presence)(void *arg, int64_t session_id, uint32_t others);
};

struct follow;

/** Creates a follower; nothing connects yet. */
struct follow *follow_create(const struct follow_config *cfg);
/**
 * Connects, reports the sessions and the other instances once (on the
 * caller's thread, so the caller knows whether it is alone before it
 * serves), then starts the thread. 0 or -errno.
 */
int follow_start(struct follow *f);
/** Stops and joins the thread, removing this instance's row when it can. */
void follow_stop(struct follow *f);
void follow_destroy(struct follow *f);

#endif
