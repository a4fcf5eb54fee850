/*
 * store.h - the storage actor: every change is committed to PostgreSQL before
 * anyone is told it happened.
 *
 * Callers submit operations; a pool of writer threads, one libpq connection
 * each, takes whatever is queued (up to STORE_BATCH_MAX) and commits it in one
 * transaction with synchronous commit, so batches grow by themselves under
 * load and a lone operation commits at once. After COMMIT returns, and only
 * then, each operation's on_done is called on the writer thread. If the
 * connection breaks during COMMIT, the writer finds out from the database
 * whether the transaction committed before completing anything (outcome.h);
 * if it cannot, or the database is gone, every operation of the batch
 * completes with STORE_UNAVAILABLE (and may be retried by its client with
 * the same key), never as committed on a guess.
 */
#ifndef TALLY_STORE_STORE_H
#define TALLY_STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "actors/api.h"

#define STORE_BATCH_MAX 1000
#define STORE_QUEUE_MAX 65536
#define STORE_TIME_MAX 40     /* "2026-11-22T07:31:23.123Z" plus room */
#define STORE_HASH_HEX 64      /* sha256 in hex */

enum store_status {
    STORE_OK = 0,
    STORE_DUPLICATE,   /* vote: this participant's key exists; out.vote is the original */
    STORE_CONFLICT,    /* vote: another vote of this participant on this poll; session: code taken */
    STORE_NOT_FOUND,   /* vote lookup: no such key */
    STORE_UNAVAILABLE, /* the transaction failed or the database is unreachable */
    STORE_CLOSED,      /* vote (vote_checked): its poll is no longer open in the database */
};

enum store_op_kind {
    STORE_SESSION_CREATE,     /* in: code, title, token_hash; out: id, created_at */
    STORE_PARTICIPANT_CREATE, /* in: session_id, name, token_hash; out: id */
    STORE_POLL_CREATE,        /* in: session_id, poll spec; out: id, seq (event poll.created) */
    STORE_POLL_OPEN,          /* in: session_id, poll_id; out: seq (event poll.opened) */
    STORE_POLL_CLOSE,         /* in: session_id, poll_id; out: seq (event poll.closed) */
    STORE_SESSION_CLOSE,      /* in: session_id; out: seq (event session.closed) */
    STORE_VOTE,               /* in: vote; out: vote (new or, with DUPLICATE, original) */
    STORE_VOTE_LOOKUP,        /* in: vote.participant_id, vote.idem_key; out: vote or NOT_FOUND */
    STORE_EVENTS_SINCE,       /* in: session_id, seq (after); out: events, n_events (ascending) */
    STORE_EVENTS_PRUNE,       /* in: id = keep seconds; deletes older event_log rows; out: n_events */
    STORE_POLL_COUNTS,        /* in: id = poll id; out: counts, total of every committed vote */
    STORE_PARTICIPANTS_COUNT, /* in: session_id; out: total = participants who joined, anywhere */
};

#define STORE_EVENTS_MAX 100000 /* rows one EVENTS_SINCE returns at most */

/* One event_log row. */
struct store_event {
    int64_t seq;
    char type[24];  /* "poll.created", ... */
    char *payload;  /* owned: the event's `data` object as JSON text */
    bool own;       /* written by this instance (its instance id) */
};

struct store_vote {
    int64_t id;
    int64_t session_id;
    int64_t poll_id;
    int64_t participant_id;
    uint8_t choices[API_CHOICES_MAX];
    uint32_t n_choices;
    char idem_key[API_IDEM_KEY_MAX + 1];
    char created_at[STORE_TIME_MAX];
};

struct store_op;

/**
 * Called on a writer thread inside the transaction, after the operation's own
 * statement ran (ids are known), to produce the event_log payload: the `data`
 * object of the event as JSON text, malloc'd. Must only read the op.
 */
typedef char *(*store_event_fn)(const struct store_op *op);

/*
 * POLL_COUNTS, in and out: what earlier reads of a poll settled, so that a
 * read counts only the votes after it (store.c, run_poll_counts). Zeroed,
 * the read counts every vote and starts settling.
 */
struct store_count_base {
    uint64_t counts[API_OPTIONS_MAX];
    uint64_t total;
    int64_t id;       /* every vote with an id up to this one is in counts and total */
    int64_t pend_id;  /* vote ids up to this one were handed out before pend_xid was */
    int64_t pend_xid; /* once no transaction below it runs, those votes are final; 0: none */
};

struct store_op {
    enum store_op_kind kind;
    enum store_status status; /* out */

    /* Completion: called once, on a writer thread, after commit or failure. */
    void (*on_done)(struct store_op *op);
    void *owner; /* the caller's; untouched by the store */
    uint64_t tag;

    /* Sequenced operations append to event_log in the same transaction. */
    store_event_fn event; /* NULL: no event */
    int64_t seq;          /* out: the event's per-session seq */

    /* Inputs and outputs; which ones matter depends on kind. */
    int64_t session_id; /* in (out for SESSION_CREATE) */
    int64_t id;         /* out: new session, participant or poll id; in: poll id for OPEN/CLOSE */
    char code[API_CODE_LEN + 1];
    char token_hash[STORE_HASH_HEX + 1];
    char *text;                /* owned: title or participant name, may be NULL */
    struct api_poll_spec poll; /* owned strings; POLL_CREATE */
    struct store_vote vote;    /* VOTE, VOTE_LOOKUP */
    /* VOTE, in: the caller checked the vote against every vote of its
     * participant (key and poll), so it is not expected to conflict and may
     * go in by the faster plain INSERT; a conflict all the same is still
     * caught and resolved as DUPLICATE or CONFLICT. */
    bool vote_fresh;
    /* VOTE, in: another instance may close the poll, so the vote goes in
     * only while the database has the poll open, holding the poll row's
     * KEY SHARE lock, which a close's FOR UPDATE waits for (and the other
     * way round); refused, it completes as STORE_CLOSED. */
    bool vote_checked;
    char created_at[STORE_TIME_MAX]; /* out */
    struct store_event *events;      /* out (EVENTS_SINCE): owned array, freed by store_op_free */
    uint32_t n_events;
    /* out (POLL_COUNTS, POLL_CLOSE): the poll's committed votes as the
     * database holds them, whichever instance took them. */
    uint64_t counts[API_OPTIONS_MAX]; /* votes per option */
    uint64_t total;                   /* votes (one per participant) */
    bool counted;                     /* counts and total are filled in */
    /* POLL_COUNTS, in: count from base (and advance it) rather than from
     * scratch; out: base as this read left it. */
    bool count_from_base;
    struct store_count_base base;
};

struct store_config {
    const char *conninfo;    /* libpq connection string */
    unsigned pool;           /* writer connections, >= 1 */
    uint32_t queue_max;      /* queued operations at most */
    const char *instance_id; /* written to event_log.instance_id */
};

/* Rows handed to a loader; strings are valid only during the callback. */
struct store_session_row {
    int64_t id;
    const char *code;
    const char *title;
    bool closed;
    const char *token_hash;
    int64_t seq;
    const char *created_at;
};

struct store_poll_row {
    int64_t id;
    int64_t session_id;
    const char *question;
    enum poll_kind kind;
    const char *options[API_OPTIONS_MAX];
    uint32_t n_options;
    uint32_t max_choices;
    int state; /* 0 draft, 1 open, 2 closed */
};

/* How many stored votes of a poll chose exactly these options. */
struct store_vote_count {
    int64_t session_id;
    int64_t poll_id;
    uint8_t choices[API_CHOICES_MAX];
    uint32_t n_choices;
    uint64_t votes;
};

/*
 * Votes are not loaded one by one: a load hands over their counts (one row
 * per poll and set of choices) and the highest vote id they cover. Anything
 * about a single stored vote (its key, who voted where) stays in the
 * database, which answers for it on demand (STORE_VOTE, STORE_VOTE_LOOKUP).
 */
struct store_loader {
    void *arg;
    void (*on_session)(void *arg, const struct store_session_row *row);
    void (*on_poll)(void *arg, const struct store_poll_row *row);
    void (*on_participant)(void *arg, int64_t session_id, int64_t id, const char *token_hash);
    void (*on_vote_count)(void *arg, const struct store_vote_count *row);
    int64_t vote_id_max; /* out: every vote counted has an id at or below it; 0 without votes */
};

struct store;

/** Creates the store; nothing connects yet. */
struct store *store_create(const struct store_config *cfg);
/**
 * Connects the pool, applies pending migrations and starts the writers.
 * Returns 0, or -errno with the reason logged.
 */
int store_start(struct store *s);
/**
 * Streams every stored session, poll and participant, then the vote counts,
 * to the loader, in that order, all from one snapshot. Before traffic
 * starts; any thread. Returns 0 or -EIO.
 */
int store_load(struct store *s, struct store_loader *l);
/* What names the session store_load_session looks for: one of them. */
struct store_find {
    const char *code;       /* join code, normalised */
    int64_t poll_id;        /* a poll of the session */
    const char *token_hash; /* hex hash of the presenter's or a participant's token */
};

/**
 * The session find names: *sid, and for a token the participant's id in
 * *pid (0 for the presenter's). For an instance that meets what another
 * instance created after it started. Blocking, on a connection of its own
 * (one caller at a time). Returns 1 found, 0 not found, -EIO.
 */
int store_find_session(struct store *s, const struct store_find *find, int64_t *sid, int64_t *pid);
/**
 * Streams one session to the loader exactly as store_load does for all of
 * them, from one snapshot. Blocking, like store_find_session.
 * l->vote_id_max is set as store_load sets it. Returns 0,
 * -ENOENT when the session is not stored, or -EIO.
 */
int store_load_session(struct store *s, int64_t sid, struct store_loader *l);

/**
 * Queues op. Any thread. false when the queue is full or the store is stopping:
 * the caller keeps op and answers 503 storage_unavailable.
 */
bool store_submit(struct store *s, struct store_op *op);
/** true while the writers reach the database. */
bool store_available(const struct store *s);
/** Commits what is queued, then stops and joins the writers. */
void store_stop(struct store *s);
void store_destroy(struct store *s);

/**
 * Connects once to conninfo and applies pending schema migrations (for
 * tallyctl migrate). Returns 0 or -errno with the reason logged.
 */
int store_migrate(const char *conninfo);

/** The event type a sequenced kind appends ("poll.created", ...), or NULL. */
static inline const char *store_event_type(enum store_op_kind k)
{
    switch (k) {
    case STORE_POLL_CREATE:
        return "poll.created";
    case STORE_POLL_OPEN:
        return "poll.opened";
    case STORE_POLL_CLOSE:
        return "poll.closed";
    case STORE_SESSION_CLOSE:
        return "session.closed";
    default:
        return NULL;
    }
}

/** Frees an op and what it owns. */
void store_op_free(struct store_op *op);

#endif
