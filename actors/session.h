/*
 * session.h - the inside of the actors module: the directory, one session
 * actor's state, and the functions the files of actors/ share. Private to
 * actors/.
 *
 * Threading:
 *  - struct actors (the directory) is read by network threads and written by
 *    session actors (new polls, new participants) and the lobby actor (new
 *    sessions), always under its rwlock.
 *  - struct session and everything it points to is touched only on its
 *    actor's thread (or by actors_load before any message is posted). No locks.
 *  - Store completions arrive on writer threads and are only posted back, as
 *    MSG_STORE_DONE, to the actor that submitted them.
 *
 * Invariants of one session:
 *  - poll->version == poll->total == number of committed votes of the poll.
 *  - Memory holds the votes committed since the load (and stored ones it
 *    was told about since); the load brought only counts. A participant who
 *    was loaded (participant->loaded) may have stored votes memory does not
 *    hold: before refusing such a participant's vote, the actor asks the
 *    store about its key. A vote is counted once: votes with an id up to
 *    actors->vote_id_max are in the loaded counts already.
 *  - A participant has at most one vote, committed or in flight, per poll, and
 *    an idempotency key names at most one of them.
 *  - At most one structural store operation (poll create/open/close, session
 *    close) is in flight: s->cur is the request it serves.
 *  - Live subscribers (session_live.c): live->subs[t] counts the accepted
 *    subscriptions on network thread t not yet unsubscribed; the actor ticks
 *    exactly while their sum, live->n_subs, is above zero. A poll is dirty
 *    only while it is open and someone subscribes.
 */
#ifndef TALLY_ACTORS_SESSION_H
#define TALLY_ACTORS_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actors/actors.h"
#include "actors/api.h"
#include "actors/stream.h"
#include "actors/token.h"
#include "core/buf.h"
#include "core/hmap.h"
#include "core/mbox.h"
#include "store/store.h"

/* Requests and completions waiting for one session: a stadium's vote burst
 * (100,000 votes in 2 s) arrives faster than the actor runs while the
 * network threads hold the cores, and a full mailbox refuses votes (503
 * busy). 1.5 MiB of mapped ring, resident only as far as a session's
 * traffic has reached (core/mbox.c). */
#define SESSION_MBOX_SLOTS 65535
#define SESSION_QUEUE_MAX 64    /* structural requests waiting behind the one in flight */
/* Tests build the actors with small limits to reach them. */
#ifndef SESSION_PARTICIPANTS_MAX
#define SESSION_PARTICIPANTS_MAX 1000000u
#endif
#ifndef SESSION_POLLS_MAX
#define SESSION_POLLS_MAX 1000u
#endif
#define SESSION_CODE_ATTEMPTS 8 /* new codes tried when one is taken */
#define LOBBY_MBOX_SLOTS 1024   /* session creations waiting */
#define VOTE_WAITERS_MAX 8      /* same-key retries parked on one vote in flight */
#define VOTE_RATE_PER_S 10      /* votes per second per participant ... */
#define VOTE_RATE_BURST 10      /* ... with this burst */
#define PROBE_MAX 64            /* probes before a keyed map is declared broken */
#define STORE_POST_RETRY_US 100 /* wait before re-posting a completion to a full mailbox */

/* Live sessions (session_live.c). */
#define SESSION_REPLAY_MAX 256      /* last sequenced messages kept per session for resumes */
#define SESSION_PENDING_SUBS_MAX 64 /* resumes of one session waiting for the store */
#define LIVE_RESULTS_MS 100         /* at most one results per poll this often */
#define LIVE_TICK_MS 20             /* the tick while shared with other instances */
#define LIVE_IDLE_TICK_MS 250       /* the tick with no results waiting: presence and spills */
#define LIVE_PRESENCE_MS 1000       /* presence at most this often */
/* event_log retention, and how often the lobby prunes it (tests shorten the periods). */
#define EVENTS_KEEP_S 86400
#ifndef EVENTS_PRUNE_EVERY_MS
#define EVENTS_PRUNE_EVERY_MS 3600000u
#endif
#ifndef EVENTS_PRUNE_FIRST_MS
#define EVENTS_PRUNE_FIRST_MS 60000u /* after start: restarts more often than hourly still prune */
#endif
#ifndef LOBBY_TICK_MS
#define LOBBY_TICK_MS 10000u
#endif
#define EVENTS_PRUNE_RETRY_MS 60000u /* after a failed prune */

/* Message types of the session and lobby actors. */
enum session_msg_type {
    MSG_REQ = 1,        /* ptr: struct api_req * from actors_submit */
    MSG_STORE_DONE = 2, /* ptr: struct store_op * back from a writer thread */
    MSG_FOLLOW = 3,     /* u64: another instance committed events of the session up to this seq */
    MSG_LOOKUP = 4,     /* lobby, ptr: a request naming what the directory lacks */
    MSG_KNOWN = 5,      /* session, ptr: a request the lobby looked up; u64: its participant id or 0 */
};

/* Several instances (session_follow.c). */
#define SESSION_FOLLOW_TAG 1      /* tag of the EVENTS_SINCE ops that follow other instances */
#define SESSION_WAITING_MAX 64    /* requests waiting for the session to catch up */
#define SESSION_FOLLOW_TRIES 20   /* reads of event_log before a missing event is given up on */
#define SHARED_COUNTS_MS 40       /* least pause between two reads of a poll's counts while shared */

enum poll_state { POLL_DRAFT = 0, POLL_OPEN = 1, POLL_CLOSED = 2 };

struct poll {
    int64_t id;
    char *question;
    enum poll_kind kind;
    char *options[API_OPTIONS_MAX];
    uint32_t n_options;
    uint32_t max_choices;
    enum poll_state state;
    bool closing;            /* close requested: no new votes, waiting for those in flight */
    uint32_t votes_inflight; /* votes submitted to the store and not completed */
    uint64_t counts[API_OPTIONS_MAX];
    uint64_t total;   /* participants who voted */
    uint64_t version; /* committed votes; only grows */
    bool dirty;       /* counts changed since the last results broadcast */
    uint64_t results_ms; /* when the last results of this poll was broadcast */
    bool count_inflight; /* a POLL_COUNTS op is at the store */
    uint64_t count_ms;   /* when the last one was sent, then when it completed */
    uint32_t count_gap_ms; /* from completion to the next one */
    struct store_count_base *count_base; /* what the reads settled so far; NULL before the first */
};

struct participant {
    int64_t id;
    uint8_t token_hash[TOKEN_HASH_BYTES];
    double bucket;      /* vote tokens left */
    uint64_t bucket_ms; /* when bucket was last refilled; 0 = never used */
    bool loaded;        /* may have stored votes memory does not hold: joined before the
                         * load, or a vote of theirs ended without a known outcome */
};

/* A committed vote. Strings live in session->strs so a vote costs no malloc. */
struct vote {
    int64_t id;
    int64_t poll_id;
    int64_t participant_id;
    size_t key_off; /* in strs: idem key, NUL, created_at, NUL */
    uint8_t choices[API_CHOICES_MAX];
    uint8_t n_choices;
};

/* A vote submitted to the store and not completed yet. */
struct flight {
    struct store_op *op; /* op->vote holds the vote; op->tag points back here */
    struct api_req *req;
    struct api_req *waiters[VOTE_WAITERS_MAX]; /* same key, answered with the outcome */
    uint32_t n_waiters;
    /* What identifies the vote; op->vote is the writer thread's while in flight. */
    int64_t participant_id;
    uint32_t part_idx; /* the participant's index in session->parts (the array only grows) */
    int64_t poll_id;
    char idem_key[API_IDEM_KEY_MAX + 1];
    uint64_t key_k, pp_k;              /* keys in flight_by_key / flight_by_pp */
    struct flight *next_key, *next_pp; /* chains of flights sharing a map key */
};

/* An unsubscription that found the session's mailbox full (see actors_submit). */
struct live_spill {
    struct api_req *req;
    struct live_spill *next;
};

struct live_pending;

/* The live side of a session; allocated the first time it is needed. */
struct session_live {
    uint32_t *subs;          /* accepted subscriptions per network thread */
    uint32_t n_subs;         /* their sum */
    struct hmap *part_conns; /* participant id -> its subscriptions now */
    uint32_t tick_ms;        /* the period the tick is armed with; 0: not ticking */

    /* Polls with dirty set, in no order, and the earliest time one of them
     * is due: a tick with nothing due returns at once, however many polls
     * the session has. */
    struct poll **dirty;
    uint32_t n_dirty, cap_dirty;
    uint64_t dirty_due_ms;
    uint32_t presence_sent;    /* the participants count last broadcast */
    bool presence_due;         /* someone subscribed since: send even if unchanged */
    uint64_t presence_ms;      /* when presence was last broadcast */

    /* The last sequenced messages, ring[seq % SESSION_REPLAY_MAX]: it holds
     * every seq from max(ring_lo, ring_hi - SESSION_REPLAY_MAX + 1) to
     * ring_hi (none when ring_hi < ring_lo). */
    struct stream_msg *ring[SESSION_REPLAY_MAX];
    int64_t ring_lo, ring_hi;

    struct live_pending *pending[SESSION_PENDING_SUBS_MAX]; /* resumes waiting for the store */
    uint32_t n_pending;
};

struct session {
    struct actors *as;
    struct actor *actor;

    int64_t id;
    char code[API_CODE_LEN + 1];
    char *title;
    char created_at[STORE_TIME_MAX];
    uint8_t presenter_hash[TOKEN_HASH_BYTES];
    bool closed;
    int64_t seq; /* last event seq of the session */
    _Atomic int64_t seq_pub; /* seq, as the follower's thread may read it */
    /* Presence across instances (store/follow.h): participants connected
     * here, written by the actor for the follower; and connected to the
     * other instances, written by the follower for the actor. */
    _Atomic uint32_t presence_local;
    _Atomic uint32_t presence_others;
    int64_t vote_id_max;     /* votes up to this id are in the loaded counts */

    struct poll **polls; /* creation order */
    uint32_t n_polls, cap_polls;
    struct hmap *poll_by_id;

    struct participant *parts;
    uint32_t n_parts, cap_parts;
    uint32_t joins_inflight;
    struct hmap *part_by_token; /* probed token_hash_key -> index + 1 */

    struct vote *votes;
    size_t n_votes, cap_votes;
    struct buf strs;
    struct hmap *vote_by_key;   /* probed (participant, idem key) -> index + 1 */
    struct hmap *vote_by_pp;    /* probed (participant, poll) -> index + 1 */
    struct hmap *flight_by_key; /* (participant, idem key) -> chain of flights */
    struct hmap *flight_by_pp;  /* (participant, poll) -> chain of flights */

    /* Structural operations, one at a time. */
    struct api_req *cur;   /* being served; NULL when idle */
    struct poll *draining; /* poll whose close waits for its votes in flight */
    struct api_req *queue[SESSION_QUEUE_MAX];
    uint32_t queue_head, queue_len;

    /* Following what other instances commit (session_follow.c). */
    bool struct_inflight;  /* the op of cur is at the store */
    bool follow_inflight;  /* an EVENTS_SINCE read of event_log is at the store */
    bool follow_want;      /* another read is wanted after it */
    unsigned follow_tries; /* reads that did not reach a parked op's seq */
    struct store_op *parked; /* our committed op, waiting for the events before its seq */
    struct api_req *waiting[SESSION_WAITING_MAX]; /* requests waiting for the next read */
    uint32_t n_waiting;
    uint64_t parts_stored; /* participants the database held at the last count */

    struct session_live *live;               /* NULL until needed; always NULL without a sink */
    _Atomic(struct live_spill *) unsub_spill; /* pushed by any thread, drained by the actor */
};

struct actors {
    struct actor_rt *rt;
    struct store *store;
    uint32_t sessions_max;

    pthread_rwlock_t lock; /* guards the four maps and the session list */
    struct hmap *by_code;  /* joincode_key -> struct session * */
    struct hmap *by_poll;  /* poll id -> struct session * */
    struct hmap *by_token; /* token_hash_key of any token -> struct session * */
    struct hmap *by_id;    /* session id -> struct session * */
    struct session **sessions;
    uint32_t n_sessions, cap_sessions;

    struct actor *lobby;           /* creates sessions, prunes event_log */
    atomic_uint_fast32_t reserved; /* sessions live or being created */
    atomic_uint_fast64_t participants;

    const struct stream_sink *sink; /* NULL: no live subscribers */
    int64_t vote_id_max;            /* votes up to this id are in the loaded counts; set before traffic */
    atomic_bool shared;             /* another instance shares the database: counts come from it */
    bool prune_inflight;            /* lobby thread only */
    uint64_t prune_next_ms;         /* lobby thread only */
};

/* ---- session.c: the actor ---- */

/** Allocates an empty session (not registered, no actor). */
struct session *session__new(struct actors *as, int64_t id, const char *code, const char *title,
                             const char *created_at, const uint8_t presenter_hash[]);
/** Frees a session and every request it still holds. */
void session__free(struct session *s);
/** After the runtime stopped: frees the ops and requests still in a's mailbox. */
void session__drain(struct actor *a);
/** Serves one request (authenticates, then dispatches). */
void session__on_req(struct session *s, struct api_req *req);
/** The session actor's on_msg. */
void session__on_msg(struct actor *a, void *ctx, const struct mbox_msg *msg);
/** Store on_done for every op a session or the lobby submits: posts op to op->owner's actor. */
void session__on_store_done(struct store_op *op);
/** Allocates a zeroed store op of kind that reports to actor. */
struct store_op *session__op_new(enum store_op_kind kind, struct actor *owner, uint64_t tag);
/** Replies 503 {"code":code} with Retry-After: 1. */
void session__reply_503(struct api_req *req, const char *code, const char *msg);
/** Adds a participant (joined or loaded); returns it. */
struct participant *session__add_participant(struct session *s, int64_t id,
                                             const uint8_t hash[TOKEN_HASH_BYTES]);

/** The poll of the session with this id, or NULL. */
static inline struct poll *session__poll(const struct session *s, int64_t id)
{
    return id > 0 ? hmap_get(s->poll_by_id, (uint64_t)id) : NULL;
}

/* ---- session_struct.c: structural operations ---- */

/** Serves or queues a presenter's poll create/open/close or session close. */
void session__struct_submit(struct session *s, struct api_req *req);
/** A structural op completed. */
void session__struct_done(struct session *s, struct store_op *op);
/** Called when a poll's last vote in flight completes. */
void session__struct_drained(struct session *s, struct poll *p);
/** Adds a poll (created or loaded) to the session and the directory. */
struct poll *session__add_poll(struct session *s, int64_t id, struct api_poll_spec *spec,
                               enum poll_state state);

/* ---- session_vote.c: votes ---- */

/** Serves API_VOTE for an authenticated participant. */
void session__vote(struct session *s, struct participant *p, struct api_req *req);
/** A vote op completed. */
void session__vote_done(struct session *s, struct store_op *op);
/** A STORE_VOTE_LOOKUP asked before refusing a vote completed. */
void session__vote_lookup_done(struct session *s, struct store_op *op);
/**
 * Records a committed vote and counts it in its poll, unless the loaded
 * counts hold it already (id <= vote_id_max). false (logged) when the row
 * does not fit the session's polls; true when recorded or already known.
 */
bool session__vote_commit(struct session *s, const struct store_vote *v);
/**
 * Load only: adds `votes` stored votes with these choices to a poll's
 * counts. false (logged) when they do not fit the poll.
 */
bool session__vote_count_load(struct session *s, const struct store_vote_count *c);
/** Frees the flights still in the session (shutdown). */
void session__vote_free_flights(struct session *s);
/** The vote JSON of a committed vote. */
void *session__vote_json(const struct session *s, const struct vote *v);

/**
 * Token bucket: true and one token spent when the participant may vote at
 * now_ms, false when it is over VOTE_RATE_PER_S.
 */
static inline bool session__rate_take(struct participant *p, uint64_t now_ms)
{
    if (p->bucket_ms == 0) {
        p->bucket = VOTE_RATE_BURST;
    } else if (now_ms > p->bucket_ms) {
        p->bucket += (double)(now_ms - p->bucket_ms) * VOTE_RATE_PER_S / 1000.0;
        if (p->bucket > VOTE_RATE_BURST)
            p->bucket = VOTE_RATE_BURST;
    }
    if (now_ms > p->bucket_ms)
        p->bucket_ms = now_ms;
    if (p->bucket < 1.0)
        return false;
    p->bucket -= 1.0;
    return true;
}

/* ---- session_live.c: live subscribers ---- */

/** Serves API_SUBSCRIBE for an authenticated caller (p NULL for the presenter). */
void session__live_subscribe(struct session *s, struct api_req *req, const struct participant *p);
/** Serves API_UNSUBSCRIBE (no token needed: it only undoes a subscription). */
void session__live_unsubscribe(struct session *s, struct api_req *req);
/** A STORE_EVENTS_SINCE op of a pending resume completed. */
void session__live_since_done(struct session *s, struct store_op *op);
/**
 * The data of the event a committed structural op carries (the event_log
 * payload). NULL without a sink. Returns a json_t *.
 */
void *session__live_event_data(const struct session *s, const struct store_op *op);
/**
 * A structural op committed (s->seq already counts it): encodes its event
 * once (data, from session__live_event_data, is stolen), keeps it for
 * resumes and broadcasts it. Called before the op is applied and answered.
 */
void session__live_sequenced(struct session *s, const struct store_op *op, void *data);
/** The same for an event another instance committed: kind, its poll (or 0), seq. */
void session__live_event(struct session *s, enum store_op_kind kind, int64_t poll_id, int64_t seq,
                         void *data);
/** A vote of p committed and changed its counts. */
void session__live_dirty(struct session *s, struct poll *p);
/** Processes the unsubscriptions that found the mailbox full. */
void session__live_drain_spill(struct session *s);
/** Pushes an unsubscription for the actor to process. Any thread. */
void session__live_spill(struct session *s, struct api_req *req);
/** Frees the live state (shutdown). */
void session__live_free(struct session *s);

/* ---- session_follow.c: other instances ---- */

/** s->seq = seq, published for the follower's thread. */
static inline void session__seq_set(struct session *s, int64_t seq)
{
    s->seq = seq;
    atomic_store_explicit(&s->seq_pub, seq, memory_order_relaxed);
}

/** true while another instance shares the database. */
static inline bool session__shared(const struct session *s)
{
    return atomic_load_explicit(&s->as->shared, memory_order_relaxed);
}

/** Another instance committed events up to seq: read what we lack. */
void session__follow_hint(struct session *s, int64_t seq);
/** A following EVENTS_SINCE op completed. */
void session__follow_done(struct session *s, struct store_op *op);
/**
 * Our structural op committed with a seq past events not seen yet: keeps it
 * until they are delivered, then completes it. true when parked.
 */
bool session__follow_park(struct session *s, struct store_op *op);
/**
 * A request that names a poll the session does not know, though the
 * database says it is this session's: it waits for the next read of
 * event_log. true when it waits (or was answered 503).
 */
bool session__follow_wait(struct session *s, struct api_req *req);
/** Shared counts: reads open polls' counts every SHARED_COUNTS_MS. From the tick. */
void session__follow_tick(struct session *s, uint64_t now_ms);
/** Serves API_RESULTS while shared: reads the counts first. */
void session__follow_results(struct session *s, struct api_req *req, struct poll *p);
/** A POLL_COUNTS op completed. */
void session__counts_done(struct session *s, struct store_op *op);
/** Sets a poll's counts from the database (op counted); true when they changed. */
bool session__counts_apply(struct poll *p, const struct store_op *op);
/** Frees what following holds (shutdown). */
void session__follow_free(struct session *s);

/* ---- session_json.c: what the session says ---- */

/** A JSON string of s, or "" when s is NULL or not UTF-8. */
void *json__str(const char *s);
/** {"id","code","title","state","created_at"} of the session. */
void *session__json(const struct session *s);
/** The session JSON with state "closed" (for the session.closed event). */
void *session__json_closed(const struct session *s);
/** The poll JSON; state and counts as given (counts NULL = zeros). */
void *poll__json(int64_t id, const struct api_poll_spec *spec, enum poll_state state,
                 const uint64_t *counts);
/** The poll JSON of a live poll. */
void *session__poll_json(const struct poll *p);
/**
 * The poll.closed JSON of a committed POLL_CLOSE op: the poll as op->text
 * holds it, with the counts the database gave at the close (op->counted).
 */
void *session__close_json(const struct store_op *op);
/** The array of every poll's JSON, in creation order. */
void *session__polls_json(const struct session *s);
/** {"poll_id","counts","total","version"} of a live poll. */
void *session__results_json(const struct poll *p);
/** Compact JSON text of j (stolen), malloc'd. */
char *json__text(void *j);
/** The CSV export of every poll. */
char *session__csv(const struct session *s, size_t *len);

/* ---- actors.c: the directory ---- */

/** The session that holds a token (of any role), or NULL. Any thread. */
struct session *actors__session_of_token(struct actors *as, const uint8_t hash[TOKEN_HASH_BYTES]);
enum { LOOKUP_SESSION = 1, LOOKUP_TOKEN = 2 }; /* u32 of MSG_LOOKUP */
/**
 * A token s does not know: the lobby asks the database, once per request,
 * and answers 401/403 or hands req back as MSG_KNOWN. true when handed over.
 */
bool actors__lookup_token(struct actors *as, struct session *s, struct api_req *req);
/** Registers a token of s in the directory. Any thread. */
void actors__add_token(struct actors *as, struct session *s, const uint8_t hash[TOKEN_HASH_BYTES]);
/** Registers a poll of s in the directory. Any thread. */
void actors__add_poll(struct actors *as, struct session *s, int64_t poll_id);
/**
 * Loads session sid from the database (actors_load.c) and registers it.
 * Lobby thread. 0, -ENOENT, -ENOSPC or -EIO.
 */
int actors__load_one(struct actors *as, int64_t sid, struct session **out);
/**
 * Registers a session (code, id, presenter token, and the polls and
 * participants it holds already) and creates its actor. 0 or -ENOSPC.
 */
int actors__add_session(struct actors *as, struct session *s);

/* ---- keyed maps without deletion (participants, committed votes) ---- */

/** The next key to try after k when k is taken by another item. Never 0. */
static inline uint64_t probe__next(uint64_t k)
{
    k = k * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    return k ? k : 1;
}

/** Mixes two ids into a non-zero key. */
static inline uint64_t key__pair(int64_t a, int64_t b)
{
    uint64_t x = (uint64_t)a * 0xD6E8FEB86659FD93ull ^ (uint64_t)b;

    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ull;
    x ^= x >> 32;
    return x ? x : 1;
}

#endif
