/*
 * store.c - the storage actor: a bounded queue of operations and a pool of
 * writer threads that commit them to PostgreSQL in batches.
 *
 * Queue: a ck_ring (MPMC) of struct store_op pointers. Producers enqueue
 * without a lock; a writer with nothing to do announces itself in `sleepers`
 * and waits on `work`, and a producer takes the mutex to signal only when it
 * sees a sleeper, so a busy store costs no lock per operation.
 *
 * Batches: a writer takes whatever is queued, up to STORE_BATCH_MAX, and runs
 * it as ONE transaction: the non-vote operations in submission order (each
 * sequenced one followed by its event_log row), then all votes in a single
 * INSERT ... SELECT FROM unnest(...), then one NOTIFY, then COMMIT. Reads
 * (vote lookups, event replay) and the event_log prune ride along in the
 * same transaction; events read by a failed batch are dropped, never handed
 * out. No timer anywhere: a lone operation commits at once, and under load
 * batches grow by themselves because operations pile up while the previous
 * commit is flushed.
 * on_done runs on the writer thread after COMMIT returned (synchronous
 * commit, so the data is on disk) or after the transaction failed. When the
 * connection broke before COMMIT was sent, the batch runs again on a new
 * connection; when it broke after, the writer asks the database what became
 * of the transaction (resolve_broken, outcome.c) and completes the batch as
 * committed, runs it again, or fails it, never guessing. When a statement
 * was refused on a live connection, each operation is retried in a
 * transaction of its own so that only the offending one fails.
 *
 * Ordering: operations taken by different writers commit in any order. A
 * caller that needs B to commit after A submits B from A's on_done.
 *
 * Availability: `connected` counts writers holding a working connection. A
 * writer whose connection breaks reconnects with backoff; while no writer is
 * connected store_submit refuses at once and anything still queued completes
 * as STORE_UNAVAILABLE, so no caller waits on a database that is gone.
 *
 * Threads: store_submit and store_available from any thread; the rest from
 * the thread that owns the store.
 */
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ck_ring.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "core/base.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "store/migrate.h"
#include "store/outcome.h"

#define STORE_POOL_MAX 128
#define STORE_RING_SLOTS_MAX (1u << 24)
#define STORE_BACKOFF_MIN_MS 50
#define STORE_BACKOFF_MAX_MS 2000
#define STORE_I64_MAX 24 /* "-9223372036854775808" and NUL */
#define STORE_ERR_MAX 512
#define STORE_IDLE_READS_MAX 8 /* reads to drain an idle connection before a batch */
#define STORE_RESOLVE_MS_MAX 5000 /* how long a batch whose COMMIT went unanswered may wait for its answer */
#define STORE_RECHECK_MS_MAX 500  /* longest pause between two checks of that answer */
#define STORE_APP "tallyd"
#define STORE_APP_WRITER "tallyd-writer " /* followed by the instance id */
#define STORE_APP_MAX 63                  /* PostgreSQL keeps application_name to 63 bytes */
#define STORE_PREVIOUS_WAIT_MS 5000       /* for the writers of a previous run to be gone */
#define STORE_LOAD_WORK_MEM "64MB"        /* for the load's aggregate over every vote */
/* While one writer commits, another starts a transaction beside it only for
 * this many queued operations: below it the waiting operations ride in the
 * busy writer's next batch, which costs PostgreSQL one transaction instead
 * of several small ones (each has a fixed cost: BEGIN, plan, WAL flush). */
#define STORE_JOIN_MIN 64

/* to_char pattern for UTC RFC 3339 with milliseconds. */
#define SQL_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static_assert(STORE_BATCH_MAX <= INT32_MAX, "row numbers of a batch fit libpq's int");
static_assert(STORE_QUEUE_MAX < STORE_RING_SLOTS_MAX, "the default queue fits the ring");
static_assert(API_CHOICES_MAX <= UINT8_MAX + 1, "choices are option indexes stored in uint8_t");
static_assert(STORE_TIME_MAX > sizeof("2026-11-22T07:31:23.123Z"), "room for a timestamp");

/* A vote row returned by the batch INSERT. */
struct vote_row {
    int64_t id;
    int64_t poll_id;
    int64_t participant_id;
    const char *key;
    const char *created_at;
    bool used;
};

/* A vote of the batch, with its position to keep the sort stable. */
struct vote_ref {
    struct store_op *op;
    uint32_t idx;
};

struct store_writer {
    struct store *store;
    pthread_t thread;
    PGconn *conn; /* owned by the writer thread once it runs; NULL while disconnected */
    unsigned index;
    struct store_op *batch[STORE_BATCH_MAX];
    struct store_op *retry[STORE_BATCH_MAX]; /* the batch, while its ops are retried one by one */
    struct vote_ref votes[STORE_BATCH_MAX];
    struct vote_row rows[STORE_BATCH_MAX];
    struct buf arr[5]; /* array literals for the vote INSERT, reused batch after batch */
    /* The run of the batch in progress, for finding out what became of it
     * when the connection breaks. */
    int64_t xid;      /* txid_current() of a writing batch; 0: read-only */
    int64_t seq_last; /* the last vote id handed out, read before the run's BEGIN; -1: not read */
    char now[STORE_TIME_MAX]; /* its start time: the created_at of the votes it inserts */
    int backend_pid;  /* the server process that ran it */
    bool commit_sent; /* COMMIT may have reached the server */
    bool prepared;      /* the vote INSERTs are prepared on this connection */
    bool votes_safe;    /* insert this batch's votes with ON CONFLICT, fresh or not */
    bool vote_conflict; /* the plain INSERT of the run met a unique constraint */
};

struct store {
    char *conninfo;
    char *instance_id;
    char app_writer[STORE_APP_MAX + 1]; /* application_name of the writers: names this instance */
    unsigned pool;

    struct ck_ring ring;
    struct ck_ring_buffer *slots;
    uint32_t slots_n;   /* a power of two above queue_max: the ring never fills first */
    uint32_t queue_max; /* the limit callers see */
    atomic_uint queued; /* admitted and not yet taken by a writer */

    pthread_mutex_t lock;
    pthread_cond_t work;  /* connected writers with an empty queue wait here */
    pthread_cond_t retry; /* disconnected writers wait here between attempts */
    bool closing;         /* under lock: writers exit once the queue is empty */
    bool running;

    atomic_uint sleepers;   /* writers waiting on `work` */
    atomic_uint busy;       /* writers holding a batch, from taking it to its completion */
    atomic_uint resolving;  /* of those, writers finding out what became of a broken batch */
    atomic_bool waking;     /* a writer was signalled and has not woken yet */
    atomic_uint connected;  /* writers holding a working connection */
    atomic_uint submitting; /* store_submit calls between their check and enqueue */
    atomic_bool stopping;   /* refuse new operations */

    /* Counters for metrics and tests. */
    atomic_uint_fast64_t n_batches;
    atomic_uint_fast64_t n_ops;
    atomic_uint_fast64_t n_failed_batches;
    atomic_uint_fast64_t batch_max_seen;
    /* Batches whose answer to COMMIT was lost, by what the check found. */
    atomic_uint_fast64_t n_resolved_committed;
    atomic_uint_fast64_t n_resolved_aborted;
    atomic_uint_fast64_t n_resolved_failed;
    atomic_uint_fast64_t n_rechecks; /* checks repeated because the answer was not known yet */

    struct store_writer *writers;

    pthread_mutex_t reader_lock; /* store_load_session: one caller at a time */
    PGconn *reader;              /* its connection, opened on first use */
};

/* ---- small helpers ---------------------------------------------------- */

static void fmt_i64(char out[STORE_I64_MAX], int64_t v)
{
    snprintf(out, STORE_I64_MAX, "%" PRId64, v);
}

static int64_t parse_i64(const char *s)
{
    return strtoll(s, NULL, 10);
}

static void sleep_until(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* The server's message without its trailing newline. */
static const char *pq_msg(PGconn *c, const PGresult *res, char buf[STORE_ERR_MAX])
{
    const char *m = res ? PQresultErrorMessage(res) : "";
    size_t n;

    if (m[0] == '\0')
        m = PQerrorMessage(c);
    n = strlen(m);
    while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    snprintf(buf, STORE_ERR_MAX, "%.*s", (int)n, m);
    /* libpq's messages span lines; a log entry is one line. */
    for (char *p = buf; *p; p++) {
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    }
    return buf;
}

/* Parses a smallint[] in text form, "{0,2}", into option indexes. */
static bool parse_choices(const char *s, uint8_t out[API_CHOICES_MAX], uint32_t *n)
{
    *n = 0;
    if (*s++ != '{')
        return false;
    if (*s == '}')
        return s[1] == '\0';
    for (;;) {
        char *end;
        long v = strtol(s, &end, 10);

        if (end == s || v < 0 || v > UINT8_MAX || *n >= API_CHOICES_MAX)
            return false;
        out[(*n)++] = (uint8_t)v;
        s = end;
        if (*s == '}')
            return s[1] == '\0';
        if (*s++ != ',')
            return false;
    }
}

/* Appends one quoted element of a text[] literal: "a\"b". Quoting every
 * element makes commas, braces, spaces and the word NULL plain text. */
static void append_text_elem(struct buf *b, const char *s)
{
    buf_append(b, "\"", 1);
    for (const char *p = s; *p;) {
        size_t run = strcspn(p, "\"\\");
        buf_append(b, p, run);
        p += run;
        if (*p) { /* a quote or a backslash, escaped */
            buf_append(b, "\\", 1);
            buf_append(b, p++, 1);
        }
    }
    buf_append(b, "\"", 1);
}

/* Appends a smallint[] literal, {0,2}. */
static void append_choices(struct buf *b, const uint8_t *choices, uint32_t n)
{
    TALLY_ASSERT(n <= API_CHOICES_MAX);
    buf_append(b, "{", 1);
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0)
            buf_append(b, ",", 1);
        buf_append_i64(b, choices[i]);
    }
    buf_append(b, "}", 1);
}

/* Runs sql with text parameters. Returns the result when its status is want,
 * else NULL, with the failure logged. */
static PGresult *db_exec(PGconn *c, const char *what, const char *sql, int n, const char *const *params,
                         ExecStatusType want)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    char err[STORE_ERR_MAX];

    if (PQresultStatus(res) == want)
        return res;
    log_warn("store: %s failed: %s", what, pq_msg(c, res, err));
    PQclear(res);
    return NULL;
}

static bool db_command(PGconn *c, const char *what, const char *sql)
{
    PGresult *res = db_exec(c, what, sql, 0, NULL, PGRES_COMMAND_OK);

    PQclear(res);
    return res != NULL;
}

/* Server notices (a WARNING on a redundant ROLLBACK, say) go to our log at
 * debug level rather than raw to stderr. */
static void on_notice(void *arg, const char *message)
{
    char buf[STORE_ERR_MAX];
    size_t n = strlen(message);

    (void)arg;
    while (n > 0 && message[n - 1] == '\n')
        n--;
    snprintf(buf, sizeof(buf), "%.*s", (int)n, message);
    log_debug("store: server notice: %s", buf);
}

/* app names the connection in pg_stat_activity ("tallyd-writer" for the
 * writers, which operators and the crash trials look for). */
static PGconn *db_connect(const char *conninfo, bool quiet, const char *app)
{
    PGconn *c = PQconnectdb(conninfo);
    char err[STORE_ERR_MAX], sql[STORE_APP_MAX + 96];
    char *lit;
    PGresult *res;

    if (PQstatus(c) != CONNECTION_OK) {
        if (!quiet)
            log_error("store: cannot connect to the database: %s", pq_msg(c, NULL, err));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, on_notice, NULL);
    /* We acknowledge only what is on disk, whatever the server's default.
     * Both settings in one round trip. */
    lit = PQescapeLiteral(c, app, strnlen(app, STORE_APP_MAX));
    TALLY_ASSERT(lit != NULL);
    snprintf(sql, sizeof(sql), "SET synchronous_commit = on; SET application_name = %s", lit);
    PQfreemem(lit);
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        log_warn("store: session settings failed: %s", pq_msg(c, res, err));
        PQclear(res);
        PQfinish(c);
        return NULL;
    }
    PQclear(res);
    return c;
}

/* ---- operations ------------------------------------------------------- */

static bool run_session_create(PGconn *c, struct store_op *op)
{
    const char *p[3] = {op->code, op->text ? op->text : "", op->token_hash};
    PGresult *res = db_exec(c, "session create",
                            "INSERT INTO sessions(code, title, presenter_token_hash) VALUES ($1, $2, $3) "
                            "ON CONFLICT (code) DO NOTHING RETURNING id, " SQL_TIME("created_at"),
                            3, p, PGRES_TUPLES_OK);

    if (res == NULL)
        return false;
    if (PQntuples(res) == 0) {
        op->status = STORE_CONFLICT;
    } else {
        op->id = op->session_id = parse_i64(PQgetvalue(res, 0, 0));
        str_copy(op->created_at, sizeof(op->created_at), PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return true;
}

static bool run_participant_create(PGconn *c, struct store_op *op)
{
    char sid[STORE_I64_MAX];
    const char *p[3] = {sid, op->text, op->token_hash}; /* a NULL name is SQL NULL */
    PGresult *res;

    fmt_i64(sid, op->session_id);
    res = db_exec(c, "participant create",
                  "INSERT INTO participants(session_id, name, token_hash) VALUES ($1, $2, $3) "
                  "ON CONFLICT (token_hash) DO NOTHING RETURNING id, " SQL_TIME("created_at"),
                  3, p, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    if (PQntuples(res) == 0) {
        op->status = STORE_CONFLICT;
    } else {
        op->id = parse_i64(PQgetvalue(res, 0, 0));
        str_copy(op->created_at, sizeof(op->created_at), PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return true;
}

/* The options as a compact JSON array of strings, malloc'd. */
static char *options_json(const struct api_poll_spec *spec)
{
    json_t *arr = json_array();
    char *out;

    TALLY_ASSERT(arr != NULL);
    for (uint32_t i = 0; i < spec->n_options; i++) {
        json_t *str = json_string(spec->options[i]);

        /* The strings came out of the JSON parser, so they are valid UTF-8. */
        TALLY_ASSERT(str != NULL);
        json_array_append_new(arr, str);
    }
    out = json_dumps(arr, JSON_COMPACT);
    TALLY_ASSERT(out != NULL);
    json_decref(arr);
    return out;
}

static bool run_poll_create(PGconn *c, struct store_op *op)
{
    char sid[STORE_I64_MAX], maxc[STORE_I64_MAX];
    char *options = options_json(&op->poll);
    const char *p[5] = {sid, op->poll.question, poll_kind_name(op->poll.kind), options, maxc};
    PGresult *res;

    fmt_i64(sid, op->session_id);
    fmt_i64(maxc, op->poll.max_choices);
    res = db_exec(c, "poll create",
                  "INSERT INTO polls(session_id, question, kind, options, max_choices) "
                  "VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id, " SQL_TIME("created_at"),
                  5, p, PGRES_TUPLES_OK);
    free(options);
    if (res == NULL)
        return false;
    TALLY_ASSERT(PQntuples(res) == 1);
    op->id = parse_i64(PQgetvalue(res, 0, 0));
    str_copy(op->created_at, sizeof(op->created_at), PQgetvalue(res, 0, 1));
    PQclear(res);
    return true;
}

/* Adds row r of a (choices, votes) result to counts and total. false: malformed. */
static bool add_count_row(const PGresult *res, int r, uint64_t counts[API_OPTIONS_MAX], uint64_t *total,
                          int64_t poll_id)
{
    uint8_t ch[API_CHOICES_MAX];
    uint32_t n = 0;
    uint64_t votes = strtoull(PQgetvalue(res, r, 1), NULL, 10);

    if (!parse_choices(PQgetvalue(res, r, 0), ch, &n)) {
        log_error("store: votes of poll %" PRId64 " have malformed choices", poll_id);
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (ch[i] < API_OPTIONS_MAX)
            counts[ch[i]] += votes;
    }
    *total += votes;
    return true;
}

/*
 * The poll's committed votes, counted by the database: op->counts per
 * option, op->total votes. Whichever instance took them, they are all here.
 */
static bool run_poll_counts(PGconn *c, struct store_op *op)
{
    char pid[STORE_I64_MAX];
    const char *p[1] = {pid};
    PGresult *res;
    bool ok = true;

    fmt_i64(pid, op->id);
    res = db_exec(c, "poll counts",
                  "SELECT choices::text, count(*) FROM votes WHERE poll_id = $1 GROUP BY choices", 1, p,
                  PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    memset(op->counts, 0, sizeof(op->counts));
    op->total = 0;
    for (int r = 0; r < PQntuples(res) && ok; r++)
        ok = add_count_row(res, r, op->counts, &op->total, op->id);
    op->counted = ok;
    PQclear(res);
    return ok;
}

/* One int64 from a one-row answer; false (logged) otherwise. */
static bool db_i64_of(PGconn *c, const char *what, const char *sql, int n, const char *const *p, int64_t *out)
{
    PGresult *res = db_exec(c, what, sql, n, p, PGRES_TUPLES_OK);
    bool ok = res != NULL && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);

    if (ok)
        *out = parse_i64(PQgetvalue(res, 0, 0));
    PQclear(res);
    return ok;
}

/*
 * The same count, read from a base that earlier reads settled (op->base):
 * only the votes with an id past base.id are scanned, through the primary
 * key, so a read of a poll with 100,000 votes costs what the last few
 * hundred cost. The database holds every committed vote, but not in id
 * order: a vote with a small id may commit after one with a larger id was
 * read. So a read settles ids in two steps:
 *  - it notes pend_id, the last vote id handed out (seq_last, read before
 *    the batch began), and pend_xid, a transaction id given out after that
 *    (the batch's own, or one taken now). Every writer takes its
 *    transaction id before its INSERT takes vote ids (batch_begin), so any
 *    transaction holding an id up to pend_id has a smaller transaction id;
 *  - a later read whose snapshot shows no transaction below pend_xid still
 *    running (taken before its count, so whatever those transactions
 *    committed is in the count) knows that the votes up to pend_id are all
 *    there for good: their counts join the base and base.id moves to
 *    pend_id.
 * This relies on votes_id_seq handing ids out one at a time (CACHE 1, the
 * default of bigserial) and on votes never being deleted or changed.
 */
static bool run_poll_counts_from(struct store_writer *w, struct store_op *op)
{
    struct store_count_base *b = &op->base;
    char pid[STORE_I64_MAX], from[STORE_I64_MAX], split[STORE_I64_MAX], px[STORE_I64_MAX];
    const char *p[3] = {pid, from, split};
    uint64_t settled[API_OPTIONS_MAX] = {0}, settled_total = 0;
    int64_t xid = w->xid, ok_settled = 0;
    PGresult *res;
    bool ok = true;

    if (w->seq_last < 0)
        return run_poll_counts(w->conn, op);
    memcpy(op->counts, b->counts, sizeof(op->counts));
    op->total = b->total;
    if (b->id == w->seq_last && b->pend_xid == 0) {
        /* Settled up to the last id handed out: no vote can have come
         * since, so the base is the count (an idle poll costs nothing). */
        op->counted = true;
        return true;
    }
    if (xid == 0 && !db_i64_of(w->conn, "count horizon", "SELECT pg_current_xact_id()::text::bigint", 0,
                               NULL, &xid))
        return false;
    if (b->pend_xid > 0) {
        fmt_i64(px, b->pend_xid);
        if (!db_i64_of(w->conn, "count horizon",
                       "SELECT (pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8)::int", 1,
                       (const char *[]){px}, &ok_settled))
            return false;
    }
    fmt_i64(pid, op->id);
    fmt_i64(from, b->id);
    fmt_i64(split, ok_settled ? b->pend_id : b->id);
    res = db_exec(w->conn, "poll counts",
                  "SELECT choices::text, count(*), id <= $3 FROM votes WHERE poll_id = $1 AND id > $2 "
                  "GROUP BY 1, 3",
                  3, p, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    for (int r = 0; r < PQntuples(res) && ok; r++) {
        if (PQgetvalue(res, r, 2)[0] == 't')
            ok = add_count_row(res, r, settled, &settled_total, op->id);
        else
            ok = add_count_row(res, r, op->counts, &op->total, op->id);
    }
    PQclear(res);
    if (!ok)
        return false;
    for (unsigned i = 0; i < API_OPTIONS_MAX; i++) {
        op->counts[i] += settled[i];
        b->counts[i] += settled[i]; /* all 0 unless ok_settled */
    }
    op->total += settled_total;
    if (ok_settled) {
        b->total += settled_total;
        b->id = b->pend_id;
        b->pend_xid = 0;
    }
    if (b->pend_xid == 0 && w->seq_last > b->id) {
        b->pend_id = w->seq_last;
        b->pend_xid = xid;
    }
    op->counted = true;
    return true;
}

/* Participants of the session, whichever instance they joined on. */
static bool run_participants_count(PGconn *c, struct store_op *op)
{
    char sid[STORE_I64_MAX];
    const char *p[1] = {sid};
    PGresult *res;

    fmt_i64(sid, op->session_id);
    res = db_exec(c, "participants count", "SELECT count(*) FROM participants WHERE session_id = $1", 1, p,
                  PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    op->total = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    op->counted = true;
    PQclear(res);
    return true;
}

/* A state change that changed no row: was the row there at all? */
static bool state_refused(PGconn *c, struct store_op *op)
{
    char sid[STORE_I64_MAX], pid[STORE_I64_MAX];
    const char *p[2] = {sid, pid};
    PGresult *res;

    fmt_i64(sid, op->session_id);
    fmt_i64(pid, op->id);
    res = op->kind == STORE_SESSION_CLOSE
              ? db_exec(c, "state check", "SELECT 1 FROM sessions WHERE id = $1", 1, p, PGRES_TUPLES_OK)
              : db_exec(c, "state check", "SELECT 1 FROM polls WHERE session_id = $1 AND id = $2", 2, p,
                        PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    op->status = PQntuples(res) > 0 ? STORE_CONFLICT : STORE_NOT_FOUND;
    PQclear(res);
    return true;
}

/*
 * Closing a poll takes its row FOR UPDATE first, which waits for every
 * transaction still inserting votes of the poll (their foreign key holds a
 * KEY SHARE lock on it until they end), so the counts read next hold every
 * vote taken before the close, on any instance.
 */
static bool lock_poll(PGconn *c, const struct store_op *op)
{
    char pid[STORE_I64_MAX];
    const char *p[1] = {pid};
    PGresult *res;

    fmt_i64(pid, op->id);
    res = db_exec(c, "poll lock", "SELECT 1 FROM polls WHERE id = $1 FOR UPDATE", 1, p, PGRES_TUPLES_OK);
    PQclear(res);
    return res != NULL;
}

/*
 * POLL_OPEN, POLL_CLOSE and SESSION_CLOSE: a state change stamped with its
 * time, which comes back in created_at. Each applies only from the state the
 * caller saw (another instance may have changed it since): no row changed
 * is STORE_CONFLICT when the row exists, STORE_NOT_FOUND when it does not.
 * A poll's close also counts its votes (run_poll_counts).
 */
static bool run_state_change(PGconn *c, struct store_op *op)
{
    char sid[STORE_I64_MAX], pid[STORE_I64_MAX];
    const char *p[2] = {sid, pid};
    const char *sql;
    int n = 2;
    PGresult *res;

    fmt_i64(sid, op->session_id);
    fmt_i64(pid, op->id);
    if (op->kind == STORE_POLL_OPEN) {
        sql = "UPDATE polls SET state = 'open', opened_at = now() "
              "WHERE session_id = $1 AND id = $2 AND state = 'draft' RETURNING " SQL_TIME("opened_at");
    } else if (op->kind == STORE_POLL_CLOSE) {
        if (!lock_poll(c, op))
            return false;
        sql = "UPDATE polls SET state = 'closed', closed_at = now() "
              "WHERE session_id = $1 AND id = $2 AND state = 'open' RETURNING " SQL_TIME("closed_at");
    } else {
        TALLY_ASSERT(op->kind == STORE_SESSION_CLOSE);
        sql = "UPDATE sessions SET state = 'closed', closed_at = now() "
              "WHERE id = $1 AND state = 'open' RETURNING " SQL_TIME("closed_at");
        n = 1;
    }
    res = db_exec(c, "state change", sql, n, p, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return state_refused(c, op);
    }
    str_copy(op->created_at, sizeof(op->created_at), PQgetvalue(res, 0, 0));
    PQclear(res);
    return op->kind != STORE_POLL_CLOSE || run_poll_counts(c, op);
}

/* Fills v from a row of (id, session_id, poll_id, choices, created_at). */
static bool vote_from_row(const PGresult *res, int row, struct store_vote *v)
{
    v->id = parse_i64(PQgetvalue(res, row, 0));
    v->session_id = parse_i64(PQgetvalue(res, row, 1));
    v->poll_id = parse_i64(PQgetvalue(res, row, 2));
    str_copy(v->created_at, sizeof(v->created_at), PQgetvalue(res, row, 4));
    if (!parse_choices(PQgetvalue(res, row, 3), v->choices, &v->n_choices)) {
        log_error("store: vote %" PRId64 " has malformed choices %s", v->id, PQgetvalue(res, row, 3));
        return false;
    }
    return true;
}

/*
 * Finds the vote of v->participant_id with v->idem_key (by_key) or the vote
 * of v->participant_id on v->poll_id; when found, overwrites v with it.
 * Returns 1 found, 0 not found, -1 failure.
 */
static int vote_find(PGconn *c, struct store_vote *v, bool by_key)
{
    char part[STORE_I64_MAX], poll[STORE_I64_MAX];
    const char *p[2] = {part, by_key ? v->idem_key : poll};
    PGresult *res;
    int found;

    fmt_i64(part, v->participant_id);
    fmt_i64(poll, v->poll_id);
    res = db_exec(c, "vote lookup",
                  by_key ? "SELECT id, session_id, poll_id, choices::text, " SQL_TIME("created_at") ", idem_key "
                           "FROM votes WHERE participant_id = $1 AND idem_key = $2"
                         : "SELECT id, session_id, poll_id, choices::text, " SQL_TIME("created_at") ", idem_key "
                           "FROM votes WHERE participant_id = $1 AND poll_id = $2",
                  2, p, PGRES_TUPLES_OK);
    if (res == NULL)
        return -1;
    found = PQntuples(res) > 0;
    if (found) {
        if (!vote_from_row(res, 0, v))
            found = -1;
        str_copy(v->idem_key, sizeof(v->idem_key), PQgetvalue(res, 0, 5));
    }
    PQclear(res);
    return found;
}

static bool run_vote_lookup(PGconn *c, struct store_op *op)
{
    int found = vote_find(c, &op->vote, true);

    if (found < 0)
        return false;
    if (found == 0)
        op->status = STORE_NOT_FOUND;
    return true;
}

/* Releases what a read returned, so a failed or repeated attempt leaves
 * neither stale rows nor a leak. */
static void events_clear(struct store_op *op)
{
    for (uint32_t i = 0; i < op->n_events && op->events != NULL; i++)
        free(op->events[i].payload);
    free(op->events);
    op->events = NULL;
    op->n_events = 0;
}

/* Marks op failed. A failed transaction may have read rows it wrote itself
 * and then rolled back, so nothing it read is handed out. */
static void op_fail(struct store_op *op)
{
    op->status = STORE_UNAVAILABLE;
    if (op->kind == STORE_EVENTS_SINCE || op->kind == STORE_EVENTS_PRUNE)
        events_clear(op);
}

/*
 * The session's events after op->seq, ascending, at most STORE_EVENTS_MAX.
 * At READ COMMITTED the statement sees what committed before it began, and
 * since a session's events commit in seq order (see append_event) the rows
 * form a gap-free run: nothing with a smaller seq can still appear later.
 */
static bool run_events_since(PGconn *c, const char *instance_id, struct store_op *op)
{
    char sid[STORE_I64_MAX], after[STORE_I64_MAX], limit[STORE_I64_MAX];
    const char *p[4] = {sid, after, limit, instance_id};
    PGresult *res;
    int rows;

    events_clear(op);
    fmt_i64(sid, op->session_id);
    fmt_i64(after, op->seq);
    fmt_i64(limit, STORE_EVENTS_MAX);
    res = db_exec(c, "events since",
                  "SELECT seq, type, payload::text, instance_id = $4 FROM event_log "
                  "WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                  4, p, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    rows = PQntuples(res);
    TALLY_ASSERT(rows >= 0);
    TALLY_ASSERT(rows <= STORE_EVENTS_MAX);
    if (rows > 0)
        op->events = xcalloc((size_t)rows, sizeof(op->events[0]));
    for (int r = 0; r < rows; r++) {
        struct store_event *e = &op->events[r];

        e->seq = parse_i64(PQgetvalue(res, r, 0));
        str_copy(e->type, sizeof(e->type), PQgetvalue(res, r, 1));
        e->payload = xstrndup(PQgetvalue(res, r, 2), (size_t)PQgetlength(res, r, 2));
        e->own = PQgetvalue(res, r, 3)[0] == 't';
        TALLY_ASSERT(r == 0 || e->seq > op->events[r - 1].seq);
    }
    op->n_events = (uint32_t)rows;
    PQclear(res);
    return true;
}

/* Deletes event_log rows older than op->id seconds; n_events = rows gone.
 * Old rows are only ever deleted, never updated, so the DELETE waits on
 * nothing but another prune of the same rows running at the same moment. */
static bool run_events_prune(PGconn *c, struct store_op *op)
{
    char keep[STORE_I64_MAX];
    const char *p[1] = {keep};
    PGresult *res;
    unsigned long long n;

    fmt_i64(keep, op->id);
    res = db_exec(c, "events prune",
                  "DELETE FROM event_log "
                  "WHERE created_at < now() - make_interval(secs => $1)",
                  1, p, PGRES_COMMAND_OK);
    if (res == NULL)
        return false;
    n = strtoull(PQcmdTuples(res), NULL, 10);
    op->n_events = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    PQclear(res);
    return true;
}

/* ---- events ----------------------------------------------------------- */

/*
 * Gives op the next seq of its session and writes its event_log row.
 *
 * The UPDATE takes the session row's lock and holds it until COMMIT. Another
 * transaction (another writer here, or another instance) that sequences an
 * event of the same session blocks on that lock and, once we commit, reads
 * our new seq and adds one; if we roll back, it reads the old value. So seqs
 * of a session are gap-free and unique, and event_log rows of a session
 * become visible in seq order. The primary key (session_id, seq) would turn
 * any violation of this into an error instead of a silent duplicate.
 */
static bool append_event(struct store *s, PGconn *c, struct store_op *op)
{
    char sid[STORE_I64_MAX], seq[STORE_I64_MAX];
    const char *p[5] = {sid, seq, store_event_type(op->kind), NULL, s->instance_id};
    PGresult *res;

    fmt_i64(sid, op->session_id);
    res = db_exec(c, "seq", "UPDATE sessions SET seq = seq + 1 WHERE id = $1 RETURNING seq", 1, p,
                  PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    if (PQntuples(res) != 1) {
        log_warn("store: sequencing an event of unknown session %" PRId64, op->session_id);
        PQclear(res);
        return false;
    }
    op->seq = parse_i64(PQgetvalue(res, 0, 0));
    PQclear(res);
    fmt_i64(seq, op->seq);
    p[3] = op->event(op);
    TALLY_ASSERT(p[3] != NULL);
    res = db_exec(c, "event_log insert",
                  "INSERT INTO event_log(session_id, seq, type, payload, instance_id) "
                  "VALUES ($1, $2, $3, $4::jsonb, $5)",
                  5, p, PGRES_COMMAND_OK);
    free((char *)p[3]);
    PQclear(res);
    return res != NULL;
}

static bool locks_session(const struct store_op *op)
{
    return op->kind == STORE_POLL_CREATE || op->kind == STORE_POLL_OPEN || op->kind == STORE_POLL_CLOSE ||
           op->kind == STORE_SESSION_CLOSE;
}

/*
 * Locks, in ascending id order, every session row the batch will change.
 * Without it two batches could take the same rows in opposite orders (poll
 * rows, then the session row for seq) and deadlock; with it every batch
 * waits for the others in one global order. FOR NO KEY UPDATE is what the
 * seq UPDATE takes anyway and, unlike FOR UPDATE, does not block inserts of
 * participants, polls or events that merely reference the session.
 */
static bool lock_sessions(struct store_writer *w, unsigned n)
{
    struct buf *b = &w->arr[0];
    const char *p[1];
    PGresult *res;
    bool any = false;

    buf_reset(b);
    buf_append(b, "{", 1);
    for (unsigned i = 0; i < n; i++) {
        if (!locks_session(w->batch[i]))
            continue;
        buf_printf(b, any ? ",%" PRId64 : "%" PRId64, w->batch[i]->session_id);
        any = true;
    }
    buf_append(b, "}", 1);
    if (!any)
        return true;
    p[0] = b->data;
    res = db_exec(w->conn, "session lock",
                  "SELECT id FROM sessions WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE", 1, p,
                  PGRES_TUPLES_OK);
    PQclear(res);
    return res != NULL;
}

/* ---- votes ------------------------------------------------------------ */

static int cmp_i64(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

/* By participant, then poll, then arrival: every batch inserts one
 * participant's rows in the same order, so two batches holding conflicting
 * votes wait for each other in one direction only. */
static int cmp_vote_ref(const void *pa, const void *pb)
{
    const struct vote_ref *a = pa, *b = pb;
    int c = cmp_i64(a->op->vote.participant_id, b->op->vote.participant_id);

    if (c == 0)
        c = cmp_i64(a->op->vote.poll_id, b->op->vote.poll_id);
    return c ? c : cmp_i64(a->idx, b->idx);
}

static int cmp_vote_row(const void *pa, const void *pb)
{
    const struct vote_row *a = pa, *b = pb;
    int c = cmp_i64(a->participant_id, b->participant_id);

    return c ? c : cmp_i64(a->poll_id, b->poll_id);
}

static void build_vote_arrays(struct store_writer *w, unsigned n)
{
    for (unsigned a = 0; a < ARRAY_LEN(w->arr); a++) {
        buf_reset(&w->arr[a]);
        buf_append(&w->arr[a], "{", 1);
    }
    for (unsigned i = 0; i < n; i++) {
        const struct store_vote *v = &w->votes[i].op->vote;
        const char *sep = i ? "," : "";

        buf_append_str(&w->arr[0], sep);
        buf_append_i64(&w->arr[0], v->session_id);
        buf_append_str(&w->arr[1], sep);
        buf_append_i64(&w->arr[1], v->poll_id);
        buf_append_str(&w->arr[2], sep);
        buf_append_i64(&w->arr[2], v->participant_id);
        buf_append_str(&w->arr[3], sep);
        buf_append(&w->arr[3], "\"", 1);
        append_choices(&w->arr[3], v->choices, v->n_choices);
        buf_append(&w->arr[3], "\"", 1);
        buf_append_str(&w->arr[4], sep);
        append_text_elem(&w->arr[4], v->idem_key);
    }
    for (unsigned a = 0; a < ARRAY_LEN(w->arr); a++)
        buf_append(&w->arr[a], "}", 1);
}

/* Marks the votes whose rows came back as STORE_OK; returns how many did. */
static unsigned match_inserted(struct store_writer *w, unsigned n, const PGresult *res)
{
    unsigned rows = (unsigned)PQntuples(res), r = 0, matched = 0;

    TALLY_ASSERT(rows <= n);
    for (unsigned i = 0; i < rows; i++) {
        w->rows[i] = (struct vote_row){
            .id = parse_i64(PQgetvalue(res, (int)i, 0)),
            .poll_id = parse_i64(PQgetvalue(res, (int)i, 1)),
            .participant_id = parse_i64(PQgetvalue(res, (int)i, 2)),
            .key = PQgetvalue(res, (int)i, 3),
            .created_at = w->now,
        };
    }
    qsort(w->rows, rows, sizeof(w->rows[0]), cmp_vote_row);
    /* Both lists are sorted by (participant, poll); a row is unique per pair. */
    for (unsigned i = 0; i < n; i++) {
        struct store_op *op = w->votes[i].op;
        struct vote_row *row;

        while (r < rows && (w->rows[r].participant_id < op->vote.participant_id ||
                            (w->rows[r].participant_id == op->vote.participant_id &&
                             w->rows[r].poll_id < op->vote.poll_id)))
            r++;
        row = r < rows ? &w->rows[r] : NULL;
        op->status = STORE_UNAVAILABLE; /* not inserted: resolved by the caller */
        if (row && !row->used && row->participant_id == op->vote.participant_id &&
            row->poll_id == op->vote.poll_id && strcmp(row->key, op->vote.idem_key) == 0) {
            row->used = true;
            op->status = STORE_OK;
            op->vote.id = row->id;
            op->id = row->id;
            str_copy(op->vote.created_at, sizeof(op->vote.created_at), row->created_at);
            str_copy(op->created_at, sizeof(op->created_at), row->created_at);
            matched++;
        }
    }
    TALLY_ASSERT(matched == rows);
    return matched;
}

/* A checked vote that is neither stored nor conflicting: its poll was not open. */
static bool resolve_closed(PGconn *c, struct store_op *op)
{
    char pid[STORE_I64_MAX];
    const char *p[1] = {pid};
    PGresult *res;
    bool open;

    fmt_i64(pid, op->vote.poll_id);
    res = db_exec(c, "poll state", "SELECT state = 'open' FROM polls WHERE id = $1", 1, p, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    open = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (open)
        return false;
    op->status = STORE_CLOSED;
    return true;
}

/* A vote that was not inserted repeats a key (DUPLICATE, with the original)
 * or is a second vote on the poll (CONFLICT), or, checked, met its poll
 * closed (CLOSED). */
static bool resolve_not_inserted(PGconn *c, struct store_op *op)
{
    struct store_vote v = op->vote;
    int found = vote_find(c, &v, true);

    if (found > 0) {
        op->vote = v;
        op->status = STORE_DUPLICATE;
        return true;
    }
    if (found == 0)
        found = vote_find(c, &v, false);
    if (found > 0) {
        op->status = STORE_CONFLICT;
        return true;
    }
    if (found == 0 && op->vote_checked && resolve_closed(c, op))
        return true;
    if (found == 0)
        log_error("store: vote of participant %" PRId64 " on poll %" PRId64 " neither stored nor conflicting",
                  op->vote.participant_id, op->vote.poll_id);
    return false;
}

/* Whether every vote of the batch was checked by its caller against all
 * the participant's votes (store_op.vote_fresh): then none can conflict. */
static bool votes_fresh(const struct store_writer *w, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (!w->votes[i].op->vote_fresh)
            return false;
    }
    return true;
}

#define SQL_VOTE_INSERT                                                                            \
    "INSERT INTO votes(session_id, poll_id, participant_id, choices, idem_key) "                   \
    "SELECT s, p, pa, c::smallint[], k "                                                           \
    "FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) "               \
    "AS t(s, p, pa, c, k) "
#define SQL_VOTE_RETURNING "RETURNING id, poll_id, participant_id, idem_key"

/* Only into an open poll, whose row it locks like the foreign key does,
 * but in the statement's own read: a close that committed meanwhile is
 * seen (the lock waits for it, then the row is read again). In the
 * batch's order, so that batches still wait for each other one way. */
#define SQL_VOTE_CHECKED                                                                           \
    "INSERT INTO votes(session_id, poll_id, participant_id, choices, idem_key) "                   \
    "SELECT t.s, t.p, t.pa, t.c::smallint[], t.k "                                                 \
    "FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) "               \
    "WITH ORDINALITY AS t(s, p, pa, c, k, o) "                                                     \
    "JOIN polls ON polls.id = t.p AND polls.state = 'open' "                                       \
    "ORDER BY t.o FOR KEY SHARE OF polls ON CONFLICT DO NOTHING "

#define STMT_VOTE_PLAIN "tally_vote_plain"
#define STMT_VOTE_SAFE "tally_vote_safe"
#define STMT_VOTE_CHECKED "tally_vote_checked"

/* Prepares the vote INSERTs once per connection: PostgreSQL then skips
 * parsing and planning them batch after batch. */
static bool writer_prepare(struct store_writer *w)
{
    static const char *const names[3] = {STMT_VOTE_PLAIN, STMT_VOTE_SAFE, STMT_VOTE_CHECKED};
    static const char *const sql[3] = {SQL_VOTE_INSERT SQL_VOTE_RETURNING,
                                       SQL_VOTE_INSERT "ON CONFLICT DO NOTHING " SQL_VOTE_RETURNING,
                                       SQL_VOTE_CHECKED SQL_VOTE_RETURNING};
    char err[STORE_ERR_MAX];

    for (unsigned i = 0; i < ARRAY_LEN(names) && !w->prepared; i++) {
        PGresult *res = PQprepare(w->conn, names[i], sql[i], 5, NULL);
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        /* 42P05: prepared by an earlier call that failed on the second. */
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || (state && strcmp(state, "42P05") == 0);

        if (!ok)
            log_warn("store: preparing the vote INSERT failed: %s", pq_msg(w->conn, res, err));
        PQclear(res);
        if (!ok)
            return false;
    }
    w->prepared = true;
    return true;
}

/*
 * A batch's votes go in one statement. When every vote is fresh, a plain
 * INSERT: PostgreSQL takes it at about twice the rate of INSERT ... ON
 * CONFLICT here (speculative insertion checks each unique index twice).
 * Should one conflict all the same (another instance, a vote whose commit
 * answer was lost), the unique constraints refuse the statement:
 * w->vote_conflict tells the caller to roll back and run the batch again with
 * ON CONFLICT DO NOTHING, which sorts duplicates from conflicts row by row.
 *
 * votes_build sorts the batch's votes and builds the INSERT's arrays, and
 * returns whether the plain INSERT may be used.
 */
static bool votes_build(struct store_writer *w, unsigned n)
{
    qsort(w->votes, n, sizeof(w->votes[0]), cmp_vote_ref);
    build_vote_arrays(w, n);
    return !w->votes_safe && votes_fresh(w, n);
}

/* The statement for the batch's votes: checked when any of them must be. */
static const char *votes_stmt(const struct store_writer *w, unsigned n, bool plain)
{
    for (unsigned i = 0; i < n; i++) {
        if (w->votes[i].op->vote_checked)
            return STMT_VOTE_CHECKED;
    }
    return plain ? STMT_VOTE_PLAIN : STMT_VOTE_SAFE;
}

/*
 * Takes the INSERT's answer: the rows that came back are the votes stored;
 * each one that did not is a duplicate or a conflict, found out here. false:
 * the statement failed (w->vote_conflict when a plain INSERT met a unique
 * constraint) or a lookup did.
 */
static bool votes_inserted(struct store_writer *w, unsigned n, const PGresult *res, bool plain)
{
    char err[STORE_ERR_MAX];
    const char *state;
    unsigned inserted;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        w->vote_conflict = plain && state != NULL && strcmp(state, "23505") == 0;
        if (w->vote_conflict)
            log_debug("store: a fresh vote conflicts; the batch runs again with ON CONFLICT");
        else
            log_warn("store: vote insert failed: %s", pq_msg(w->conn, res, err));
        return false;
    }
    inserted = match_inserted(w, n, res);
    for (unsigned i = 0; inserted < n && i < n; i++) {
        if (w->votes[i].op->status == STORE_UNAVAILABLE && !resolve_not_inserted(w->conn, w->votes[i].op))
            return false;
    }
    return true;
}

/* The votes of a batch that also holds other operations, in one statement. */
static bool insert_votes(struct store_writer *w, unsigned n)
{
    const char *p[5];
    PGresult *res;
    bool plain = votes_build(w, n), ok;

    if (!writer_prepare(w))
        return false;
    for (unsigned a = 0; a < ARRAY_LEN(p); a++)
        p[a] = w->arr[a].data;
    res = PQexecPrepared(w->conn, votes_stmt(w, n, plain), 5, p, NULL, NULL, 0);
    ok = votes_inserted(w, n, res, plain);
    PQclear(res);
    return ok;
}

/* ---- batches ---------------------------------------------------------- */

static bool run_op(struct store_writer *w, struct store_op *op)
{
    switch (op->kind) {
    case STORE_SESSION_CREATE:
        return run_session_create(w->conn, op);
    case STORE_PARTICIPANT_CREATE:
        return run_participant_create(w->conn, op);
    case STORE_POLL_CREATE:
        return run_poll_create(w->conn, op);
    case STORE_POLL_OPEN:
    case STORE_POLL_CLOSE:
    case STORE_SESSION_CLOSE:
        return run_state_change(w->conn, op);
    case STORE_VOTE_LOOKUP:
        return run_vote_lookup(w->conn, op);
    case STORE_EVENTS_SINCE:
        return run_events_since(w->conn, w->store->instance_id, op);
    case STORE_POLL_COUNTS:
        return op->count_from_base ? run_poll_counts_from(w, op) : run_poll_counts(w->conn, op);
    case STORE_PARTICIPANTS_COUNT:
        return run_participants_count(w->conn, op);
    case STORE_EVENTS_PRUNE:
        return run_events_prune(w->conn, op);
    case STORE_VOTE:
        break;
    }
    TALLY_ASSERT(!"run_op: votes are inserted together");
    return false;
}

/* A batch writes when any of its operations changes a row; only then has its
 * transaction an id whose fate can be asked about. */
static bool batch_writes(const struct store_writer *w, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        enum store_op_kind k = w->batch[i]->kind;

        if (k != STORE_VOTE_LOOKUP && k != STORE_EVENTS_SINCE && k != STORE_POLL_COUNTS &&
            k != STORE_PARTICIPANTS_COUNT)
            return true;
    }
    return false;
}

/*
 * BEGIN, and for a writing batch the transaction's id in the same round trip:
 * if the answer to COMMIT is lost, that id is how the writer finds out what
 * happened (txid_status). READ COMMITTED whatever the server's default: a seq
 * UPDATE that waited on another transaction must re-read the row it waited
 * for, not fail.
 */
static bool batch_begin(struct store_writer *w, unsigned n)
{
    char err[STORE_ERR_MAX];
    PGresult *res;
    bool ok;

    w->xid = 0;
    w->commit_sent = false;
    w->vote_conflict = false;
    w->backend_pid = PQbackendPID(w->conn);
    if (!batch_writes(w, n))
        return db_command(w->conn, "BEGIN", "BEGIN ISOLATION LEVEL READ COMMITTED");
    /* now() is the transaction's start, the default of every created_at it
     * writes: formatted once here rather than once per returned row. */
    res = PQexec(w->conn, "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT txid_current(), " SQL_TIME("now()"));
    ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok) {
        w->xid = parse_i64(PQgetvalue(res, 0, 0));
        str_copy(w->now, sizeof(w->now), PQgetvalue(res, 0, 1));
    }
    else
        log_warn("store: BEGIN failed: %s", pq_msg(w->conn, res, err));
    PQclear(res);
    TALLY_ASSERT(!ok || w->xid > 0);
    return ok;
}

/* How one run of a batch ended. */
enum batch_end {
    BATCH_COMMITTED,
    BATCH_REFUSED, /* a statement or COMMIT was refused on a live connection: nothing committed */
    BATCH_BROKEN,  /* the connection broke; w->commit_sent says whether COMMIT may have landed */
    BATCH_CONFLICT, /* a plain vote INSERT met a unique constraint: run again with ON CONFLICT */
};

static enum batch_end batch_failed(const struct store_writer *w)
{
    return PQstatus(w->conn) == CONNECTION_BAD ? BATCH_BROKEN : BATCH_REFUSED;
}

/*
 * Tests set this to cut the connection around COMMIT: called with after false
 * just before COMMIT is sent, and with after true once it is sent and before
 * its answer is read. NULL in the server.
 */
static void (*store__commit_hook)(struct store_writer *w, bool after);

/* Sends COMMIT and reads its answer. From the moment it is sent, a broken
 * connection leaves the outcome unknown: commit_sent records that. */
static enum batch_end batch_commit(struct store_writer *w)
{
    PGresult *res, *first = NULL;
    char err[STORE_ERR_MAX];
    bool ok;

    if (store__commit_hook != NULL)
        store__commit_hook(w, false);
    /* Even a failed send may have put the whole message on the wire. */
    w->commit_sent = true;
    if (PQsendQuery(w->conn, "COMMIT") && store__commit_hook != NULL)
        store__commit_hook(w, true);
    while ((res = PQgetResult(w->conn)) != NULL) {
        if (first == NULL)
            first = res;
        else
            PQclear(res);
    }
    /* An aborted transaction answers COMMIT with "ROLLBACK". */
    ok = PQresultStatus(first) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(first), "COMMIT") == 0;
    if (!ok)
        log_warn("store: COMMIT failed: %s", pq_msg(w->conn, first, err));
    PQclear(first);
    if (ok)
        return BATCH_COMMITTED;
    return batch_failed(w);
}

/* Whether every operation of the batch is a vote. */
static bool batch_votes_only(const struct store_writer *w, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (w->batch[i]->kind != STORE_VOTE)
            return false;
    }
    return true;
}

/*
 * Reads a pipeline's answers up to its sync, keeping the first result of
 * each of its nq statements in out[] (the caller clears them). false: the
 * connection broke or the answers did not come as sent.
 */
static bool pipeline_read(PGconn *c, PGresult **out, unsigned nq)
{
    unsigned q = 0;

    for (;;) {
        PGresult *res = PQgetResult(c);

        if (res == NULL) {
            /* A NULL ends one statement's results. */
            if (PQstatus(c) == CONNECTION_BAD || ++q > nq)
                return false;
            continue;
        }
        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            return q == nq;
        }
        if (q < nq && out[q] == NULL)
            out[q] = res;
        else
            PQclear(res);
    }
}

/* Sends BEGIN, the transaction's id and the vote INSERT as one pipeline and
 * reads their answers into r[]. false: the pipeline itself failed. */
static bool vote_pipeline(struct store_writer *w, unsigned n, bool plain, PGresult *r[3])
{
    const char *p[5];
    PGconn *c = w->conn;
    bool ok;

    for (unsigned a = 0; a < ARRAY_LEN(p); a++)
        p[a] = w->arr[a].data;
    ok = PQenterPipelineMode(c) &&
         PQsendQueryParams(c, "BEGIN ISOLATION LEVEL READ COMMITTED", 0, NULL, NULL, NULL, NULL, 0) &&
         PQsendQueryParams(c, "SELECT txid_current(), " SQL_TIME("now()"), 0, NULL, NULL, NULL, NULL, 0) &&
         PQsendQueryPrepared(c, votes_stmt(w, n, plain), 5, p, NULL, NULL, 0) &&
         PQpipelineSync(c) && pipeline_read(c, r, 3);
    /* Leaving pipeline mode fails unless every answer was read. */
    return PQexitPipelineMode(c) == 1 && ok;
}

/*
 * A batch of votes only, the common case under load, in two round trips
 * instead of three: BEGIN, the transaction's id and the INSERT go out
 * together, then COMMIT once their answers are in. The id is known before
 * COMMIT is sent, so a lost answer to COMMIT is resolved as for any batch.
 */
static enum batch_end run_vote_batch(struct store_writer *w, unsigned n)
{
    char err[STORE_ERR_MAX];
    PGresult *r[3] = {NULL, NULL, NULL};
    bool plain, piped, begun, stored = false;

    w->xid = 0;
    w->commit_sent = false;
    w->vote_conflict = false;
    w->backend_pid = PQbackendPID(w->conn);
    if (!writer_prepare(w))
        return batch_failed(w);
    plain = votes_build(w, n);
    piped = vote_pipeline(w, n, plain, r);
    begun = piped && PQresultStatus(r[0]) == PGRES_COMMAND_OK && PQresultStatus(r[1]) == PGRES_TUPLES_OK &&
            PQntuples(r[1]) == 1;
    if (begun) {
        w->xid = parse_i64(PQgetvalue(r[1], 0, 0));
        str_copy(w->now, sizeof(w->now), PQgetvalue(r[1], 0, 1));
        stored = votes_inserted(w, n, r[2], plain);
    } else if (piped) {
        log_warn("store: BEGIN failed: %s",
                 pq_msg(w->conn, PQresultStatus(r[0]) == PGRES_COMMAND_OK ? r[1] : r[0], err));
    }
    for (unsigned i = 0; i < 3; i++)
        PQclear(r[i]);
    if (!piped)
        return BATCH_BROKEN; /* the writer drops the connection; COMMIT was not sent */
    if (!stored)
        return w->vote_conflict ? BATCH_CONFLICT : batch_failed(w);
    return batch_commit(w);
}

/* For counts read from a base (run_poll_counts_from): the last vote id
 * handed out, read before the batch's transaction takes its id. */
static bool read_seq_last(struct store_writer *w, unsigned n)
{
    w->seq_last = -1;
    for (unsigned i = 0; i < n; i++) {
        if (w->batch[i]->kind == STORE_POLL_COUNTS && w->batch[i]->count_from_base)
            return db_i64_of(w->conn, "vote id horizon",
                             "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END "
                             "FROM votes_id_seq",
                             0, NULL, &w->seq_last);
    }
    return true;
}

/* One run of the batch as one transaction. */
static enum batch_end run_batch(struct store_writer *w, unsigned n)
{
    unsigned n_votes = 0, n_events = 0;
    bool votes_only = batch_votes_only(w, n);

    if (!votes_only && (!read_seq_last(w, n) || !batch_begin(w, n) || !lock_sessions(w, n)))
        return batch_failed(w);
    for (unsigned i = 0; i < n; i++) {
        struct store_op *op = w->batch[i];

        op->status = STORE_OK;
        if (op->kind == STORE_VOTE) {
            /* Callers may fill either session id; both name the same session. */
            if (op->vote.session_id == 0)
                op->vote.session_id = op->session_id;
            op->session_id = op->vote.session_id;
            w->votes[n_votes] = (struct vote_ref){op, n_votes};
            n_votes++;
            continue;
        }
        if (!run_op(w, op))
            return batch_failed(w);
        if (op->event != NULL && op->status == STORE_OK) {
            if (!append_event(w->store, w->conn, op))
                return batch_failed(w);
            n_events++;
        }
    }
    if (votes_only)
        return run_vote_batch(w, n_votes);
    if (n_votes > 0 && !insert_votes(w, n_votes))
        return w->vote_conflict ? BATCH_CONFLICT : batch_failed(w);
    /* One NOTIFY per batch: it serialises commits cluster-wide, per row it
     * would halve throughput. Listeners read event_log, not the payload. */
    if (n_events > 0 && !db_command(w->conn, "NOTIFY", "NOTIFY tally_events"))
        return batch_failed(w);
    return batch_commit(w);
}

static void writer_disconnect(struct store_writer *w)
{
    TALLY_ASSERT(w->conn != NULL);
    PQfinish(w->conn);
    w->conn = NULL;
    w->prepared = false;
    atomic_fetch_sub(&w->store->connected, 1);
    log_warn("store: writer %u lost its database connection", w->index);
}

/* One attempt to connect a writer that has no connection. */
static bool writer_connect(struct store_writer *w)
{
    TALLY_ASSERT(w->conn == NULL);
    w->conn = db_connect(w->store->conninfo, true, w->store->app_writer);
    w->prepared = false;
    if (w->conn == NULL)
        return false;
    atomic_fetch_add(&w->store->connected, 1);
    log_info("store: writer %u reconnected to the database", w->index);
    return true;
}

/* Ends a failed transaction. false: the connection is gone (dropped). */
static bool writer_rollback(struct store_writer *w)
{
    if (PQstatus(w->conn) != CONNECTION_BAD && db_command(w->conn, "ROLLBACK", "ROLLBACK") &&
        PQstatus(w->conn) != CONNECTION_BAD)
        return true;
    writer_disconnect(w);
    return false;
}

static void fail_batch(struct store_writer *w, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        op_fail(w->batch[i]);
}

/* The 32-bit xid the server stores in xmin, as text: the 64-bit id without its epoch. */
static void fmt_xid32(char out[STORE_I64_MAX], int64_t xid)
{
    fmt_i64(out, xid % (INT64_C(1) << 32));
}

/*
 * Looks for a row the batch wrote, in a table whose rows are never updated
 * (votes, participants, event_log; a new session's row is not touched before
 * it is announced), with the batch's xid as xmin. Identified by what only this
 * batch could have written: a vote's id and key, a token hash, an event of
 * ours at its seq.
 */
static enum outcome_witness witness_check(struct store_writer *w, unsigned n)
{
    char a[STORE_I64_MAX], b[STORE_I64_MAX], x[STORE_I64_MAX];
    const char *p[4] = {a, b, NULL, x};
    const char *sql = NULL;
    PGresult *res;
    enum outcome_witness found;

    fmt_xid32(x, w->xid);
    for (unsigned i = 0; i < n && sql == NULL; i++) {
        const struct store_op *op = w->batch[i];

        if (op->status != STORE_OK)
            continue;
        if (op->kind == STORE_VOTE) {
            fmt_i64(a, op->vote.id);
            fmt_i64(b, op->vote.participant_id);
            p[2] = op->vote.idem_key;
            sql = "SELECT count(*) FROM votes WHERE id = $1 AND participant_id = $2 AND idem_key = $3 "
                  "AND xmin = $4::text::xid";
        } else if (op->event != NULL) {
            fmt_i64(a, op->session_id);
            fmt_i64(b, op->seq);
            p[2] = w->store->instance_id;
            sql = "SELECT count(*) FROM event_log WHERE session_id = $1 AND seq = $2 AND instance_id = $3 "
                  "AND xmin = $4::text::xid";
        } else if (op->kind == STORE_PARTICIPANT_CREATE || op->kind == STORE_SESSION_CREATE) {
            /* The id twice: each statement names four parameters. */
            fmt_i64(a, op->kind == STORE_SESSION_CREATE ? op->session_id : op->id);
            fmt_i64(b, op->kind == STORE_SESSION_CREATE ? op->session_id : op->id);
            p[2] = op->token_hash;
            sql = op->kind == STORE_SESSION_CREATE
                      ? "SELECT count(*) FROM sessions WHERE id = $1 AND id = $2 AND presenter_token_hash = $3 "
                        "AND xmin = $4::text::xid"
                      : "SELECT count(*) FROM participants WHERE id = $1 AND id = $2 AND token_hash = $3 "
                        "AND xmin = $4::text::xid";
        }
    }
    if (sql == NULL)
        return OUTCOME_WITNESS_NONE;
    res = db_exec(w->conn, "witness", sql, 4, p, PGRES_TUPLES_OK);
    if (res == NULL)
        return OUTCOME_WITNESS_NONE;
    found = parse_i64(PQgetvalue(res, 0, 0)) > 0 ? OUTCOME_WITNESS_FOUND : OUTCOME_WITNESS_ABSENT;
    PQclear(res);
    return found;
}

/*
 * Asks the server what became of the batch's transaction. Needs a connection;
 * a check that fails drops a broken connection and answers UNREACHABLE.
 * txid_status refuses an id at or past the next one the server will hand out
 * (invalid_parameter_value): the server as it is now never handed it out,
 * which after a crash means every WAL record of the transaction was lost, so
 * it did not commit. "committed" must be confirmed by a witness row, since an
 * id lost that way is handed out again (outcome.h).
 */
static enum outcome_check check_xid(struct store_writer *w, unsigned n)
{
    char xid[STORE_I64_MAX], err[STORE_ERR_MAX];
    const char *p[1] = {xid};
    const char *state;
    PGresult *res;
    enum outcome_check c = OUTCOME_UNREACHABLE;

    TALLY_ASSERT(w->conn != NULL && w->xid > 0);
    fmt_i64(xid, w->xid);
    res = PQexecParams(w->conn, "SELECT txid_status($1::bigint)", 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        c = outcome_parse(PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0));
    } else {
        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state != NULL && strcmp(state, "22023") == 0)
            c = OUTCOME_ABORTED;
        log_warn("store: txid_status(%s): %s", xid, pq_msg(w->conn, res, err));
    }
    PQclear(res);
    if (c == OUTCOME_UNREACHABLE && PQstatus(w->conn) == CONNECTION_BAD)
        writer_disconnect(w);
    if (c == OUTCOME_COMMITTED)
        c = outcome_refine(c, witness_check(w, n));
    return c;
}

/*
 * The transaction is still running on the old backend: the server has not
 * noticed the connection is gone (a network cut, say). End that backend, if
 * it is still the one holding our transaction, so the outcome settles
 * instead of waiting for TCP keepalives. A transaction already inside its
 * commit finishes it either way; the next check reads what happened.
 */
static void end_old_backend(struct store_writer *w)
{
    char pid[STORE_I64_MAX], xid[STORE_I64_MAX];
    const char *p[2] = {pid, xid};
    PGresult *res;

    fmt_i64(pid, w->backend_pid);
    fmt_xid32(xid, w->xid); /* backend_xid is the 32-bit xid */
    res = db_exec(w->conn, "end old backend",
                  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE pid = $1::int AND backend_xid = $2::text::xid",
                  2, p, PGRES_TUPLES_OK);
    PQclear(res);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/*
 * The connection broke during run `attempt` of the batch. Finds out, never
 * guesses, whether the transaction committed: on a fresh connection, asks
 * txid_status about the id taken at BEGIN, rechecking while the answer is
 * not known yet, until deadline_ms. Returns ACK, RETRY (w->conn is up) or
 * FAIL; outcome.c holds the decision table.
 */
static bool worth_taking(struct store *s);
static void wake_writers(struct store *s);

/*
 * A writer that finds out what became of a broken batch still holds it, for
 * up to STORE_RESOLVE_MS_MAX, but is not committing: worth_taking does not
 * count it as busy, so what is queued behind it goes to an idle writer
 * meanwhile (one woken here) instead of waiting for the resolution.
 */
static void writer_resolving(struct store_writer *w, bool on)
{
    struct store *s = w->store;

    if (!on) {
        atomic_fetch_sub(&s->resolving, 1);
        return;
    }
    atomic_fetch_add(&s->resolving, 1);
    atomic_thread_fence(memory_order_seq_cst);
    wake_writers(s);
}

static enum outcome_action resolve_broken(struct store_writer *w, unsigned n, unsigned attempt,
                                          uint64_t deadline_ms)
{
    struct store *s = w->store;
    struct outcome_input in = {.commit_sent = w->commit_sent, .wrote = w->xid > 0, .attempts = attempt};
    unsigned pause_ms = STORE_BACKOFF_MIN_MS;
    enum outcome_action act;

    TALLY_ASSERT(w->conn == NULL);
    for (;;) {
        in.reachable = w->conn != NULL || writer_connect(w);
        in.check = OUTCOME_CHECK_NONE;
        if (in.commit_sent && in.wrote)
            in.check = in.reachable ? check_xid(w, n) : OUTCOME_UNREACHABLE;
        in.reachable = w->conn != NULL;
        in.time_left = clock_now_ms() < deadline_ms;
        act = outcome_decide(&in);
        if (act != OUTCOME_RECHECK)
            break;
        if (in.check == OUTCOME_IN_PROGRESS)
            end_old_backend(w);
        atomic_fetch_add(&s->n_rechecks, 1);
        sleep_ms(pause_ms);
        pause_ms = pause_ms * 2 > STORE_RECHECK_MS_MAX ? STORE_RECHECK_MS_MAX : pause_ms * 2;
    }
    if (in.commit_sent && in.wrote) {
        atomic_fetch_add(act == OUTCOME_ACK     ? &s->n_resolved_committed
                         : act == OUTCOME_RETRY ? &s->n_resolved_aborted
                                                : &s->n_resolved_failed,
                         1);
        log_warn("store: writer %u: the answer to COMMIT of transaction %" PRId64 " was lost; "
                 "the database says %s, so the batch is %s",
                 w->index, w->xid, outcome_check_name(in.check),
                 act == OUTCOME_ACK ? "acknowledged" : act == OUTCOME_RETRY ? "run again" : "failed");
    }
    return act;
}

static bool commit_batch(struct store_writer *w, unsigned n);

/*
 * The batch failed on a live connection: a statement was refused (a vote
 * whose poll is gone, bytes the server rejects, a deadlock). One such
 * operation must not fail its batch-mates, again and again as clients retry,
 * so each operation is run again in a transaction of its own.
 */
static void retry_singly(struct store_writer *w, unsigned n)
{
    memcpy(w->retry, w->batch, n * sizeof(w->batch[0]));
    for (unsigned i = 0; i < n; i++) {
        w->batch[0] = w->retry[i];
        commit_batch(w, 1);
    }
    memcpy(w->batch, w->retry, n * sizeof(w->batch[0]));
}

/*
 * A connection idle since the last batch may have been closed by the server
 * (a restart, an administrator) without us noticing. Read what arrived; if
 * it is dead, reconnect once at once rather than fail a batch on it.
 * false: no connection (the writer goes on to back off).
 */
static bool writer_ensure_conn(struct store_writer *w)
{
    struct pollfd pfd;
    bool alive;
    PGconn *fresh;

    if (w->conn == NULL)
        return writer_connect(w);
    pfd = (struct pollfd){.fd = PQsocket(w->conn), .events = POLLIN};
    alive = PQstatus(w->conn) == CONNECTION_OK;
    /* An idle connection receives nothing, unless the server is ending it
     * (an error, then end of file) or reports a setting change. */
    for (unsigned i = 0; alive && i < STORE_IDLE_READS_MAX && poll(&pfd, 1, 0) == 1; i++)
        alive = PQconsumeInput(w->conn) && PQstatus(w->conn) == CONNECTION_OK;
    if (alive)
        return true;
    fresh = db_connect(w->store->conninfo, true, w->store->app_writer);
    if (fresh == NULL) {
        writer_disconnect(w);
        return false;
    }
    PQfinish(w->conn);
    w->conn = fresh;
    w->prepared = false;
    log_info("store: writer %u replaced a connection the server had closed", w->index);
    return true;
}

/*
 * Runs the batch until it commits, or until each operation has its final
 * status. true: the batch committed as one transaction (directly, or as
 * found out after its connection broke during COMMIT).
 */
static bool commit_batch(struct store_writer *w, unsigned n)
{
    uint64_t deadline_ms = clock_now_ms() + STORE_RESOLVE_MS_MAX;

    TALLY_ASSERT(n >= 1 && n <= STORE_BATCH_MAX);
    w->votes_safe = false;
    for (unsigned attempt = 1;; attempt++) {
        enum outcome_action act;

        if (!writer_ensure_conn(w))
            break;
        switch (run_batch(w, n)) {
        case BATCH_COMMITTED:
            return true;
        case BATCH_CONFLICT:
            TALLY_ASSERT(!w->votes_safe);
            w->votes_safe = true;
            attempt--; /* not a failure: the same run, with the careful statement */
            if (writer_rollback(w))
                continue;
            fail_batch(w, n); /* the connection broke on ROLLBACK: nothing was committed */
            return false;
        case BATCH_REFUSED:
            if (writer_rollback(w) && n > 1)
                retry_singly(w, n);
            else
                fail_batch(w, n);
            return false;
        case BATCH_BROKEN:
            break;
        }
        writer_disconnect(w);
        writer_resolving(w, true);
        act = resolve_broken(w, n, attempt, deadline_ms);
        writer_resolving(w, false);
        if (act == OUTCOME_ACK)
            return true;
        if (act != OUTCOME_RETRY)
            break;
        TALLY_ASSERT(w->conn != NULL);
    }
    fail_batch(w, n);
    return false;
}

/* Process-wide storage metrics, registered once however many stores exist. */
static struct {
    struct metric *batches, *ops, *failed, *votes, *batch_size, *commit_us;
} store_m;
static pthread_once_t store_m_once = PTHREAD_ONCE_INIT;

static void store_metrics_register(void)
{
    static const double sizes[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
    static const double us[] = {250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 250000};

    store_m.batches = metrics_counter("tally_store_batches_total", "Storage transactions run.");
    store_m.ops = metrics_counter("tally_store_ops_total", "Operations committed or failed.");
    store_m.failed = metrics_counter("tally_store_failed_batches_total",
                                     "Transactions that did not commit.");
    store_m.votes = metrics_counter("tally_votes_committed_total",
                                    "Votes durably committed (new, not duplicates).");
    store_m.batch_size = metrics_histogram("tally_store_batch_size", "Operations per transaction.",
                                           sizes, ARRAY_LEN(sizes), 1.0);
    store_m.commit_us = metrics_histogram("tally_store_transaction_seconds",
                                          "Time from BEGIN to COMMIT returning.", us,
                                          ARRAY_LEN(us), 1e6);
}

static void store_metrics_batch(struct store_writer *w, unsigned n, bool failed, uint64_t ns)
{
    int64_t votes = 0;

    for (unsigned i = 0; i < n; i++)
        votes += w->batch[i]->kind == STORE_VOTE && w->batch[i]->status == STORE_OK;
    metric_add(store_m.batches, 1);
    metric_add(store_m.ops, n);
    metric_add(store_m.votes, votes);
    if (failed)
        metric_add(store_m.failed, 1);
    metric_observe(store_m.batch_size, n);
    metric_observe(store_m.commit_us, (double)ns / 1000.0);
}

static void complete_batch(struct store_writer *w, unsigned n)
{
    struct store *s = w->store;
    uint64_t t0 = clock_now_ns();
    bool failed = !commit_batch(w, n);

    if (failed)
        atomic_fetch_add(&s->n_failed_batches, 1);
    store_metrics_batch(w, n, failed, clock_now_ns() - t0);
    atomic_fetch_add(&s->n_batches, 1);
    atomic_fetch_add(&s->n_ops, n);
    if (n > atomic_load(&s->batch_max_seen))
        atomic_store(&s->batch_max_seen, n); /* only writers race here; a lost max is harmless */
    /* on_done may free the op: nothing touches it afterwards. */
    for (unsigned i = 0; i < n; i++)
        w->batch[i]->on_done(w->batch[i]);
}

/* ---- queue and writer threads ----------------------------------------- */

static unsigned dequeue_batch(struct store *s, struct store_op **batch)
{
    unsigned n = 0;

    while (n < STORE_BATCH_MAX && ck_ring_dequeue_mpmc(&s->ring, s->slots, &batch[n]))
        n++;
    if (n > 0)
        atomic_fetch_sub(&s->queued, n);
    return n;
}

static bool queue_empty(struct store *s)
{
    return ck_ring_size(&s->ring) == 0;
}

/* Completes everything queued as STORE_UNAVAILABLE (no writer is connected). */
static void fail_queued(struct store_writer *w)
{
    unsigned n;

    while ((n = dequeue_batch(w->store, w->batch)) > 0) {
        for (unsigned i = 0; i < n; i++) {
            op_fail(w->batch[i]);
            w->batch[i]->on_done(w->batch[i]);
        }
    }
}

/*
 * Wakes one sleeping writer for what is queued, unless one is already on its
 * way: it will take everything queued by the time it runs, so a burst of
 * submissions costs one wake-up, not one each. Caller holds s->lock.
 */
static void wake_one_locked(struct store *s)
{
    if (atomic_load(&s->sleepers) > 0 && !atomic_exchange(&s->waking, true))
        pthread_cond_signal(&s->work);
}

/*
 * Whether an idle writer should take the queue now: at once when no writer
 * is committing (a lone vote commits alone, without waiting), beside a busy
 * one only when STORE_JOIN_MIN operations wait. Otherwise the busy writer
 * takes them when its commit returns: the last writer to finish always finds
 * busy at 0, so nothing is left waiting. Callers fence before reading.
 */
static bool worth_taking(struct store *s)
{
    unsigned queued = atomic_load(&s->queued);
    /* Signed: the two counters are read one after the other. */
    long committing = (long)atomic_load(&s->busy) - (long)atomic_load(&s->resolving);

    return queued > 0 && (committing <= 0 || queued >= STORE_JOIN_MIN);
}

/* Takes a batch when worth_taking (or everything while closing); counts the writer busy. */
static unsigned take_batch(struct store_writer *w, bool closing)
{
    struct store *s = w->store;
    unsigned n;

    if (!closing && !worth_taking(s))
        return 0;
    n = dequeue_batch(s, w->batch);
    if (n > 0)
        atomic_fetch_add(&s->busy, 1);
    return n;
}

/* Waits for work; returns the batch size, 0 when the store is closing and
 * the queue is drained. The writer counts as busy until writer_done(). */
static unsigned writer_take(struct store_writer *w)
{
    struct store *s = w->store;
    unsigned n = take_batch(w, false);

    pthread_mutex_lock(&s->lock);
    while (n == 0 && !s->closing) {
        atomic_fetch_add(&s->sleepers, 1);
        /* Pairs with the fence in store_submit: either the producer sees us
         * in sleepers and signals under the lock, or we see its op here. */
        atomic_thread_fence(memory_order_seq_cst);
        if (!worth_taking(s))
            pthread_cond_wait(&s->work, &s->lock);
        /* Whoever was woken is awake. Cleared even when we did not wait: a
         * signal sent while we were about to may have reached nobody, and a
         * flag left set would keep every later producer from signalling. */
        atomic_store(&s->waking, false);
        atomic_fetch_sub(&s->sleepers, 1);
        n = take_batch(w, s->closing);
    }
    if (n == 0 && s->closing)
        n = take_batch(w, true);
    /* More than this batch is queued (it arrived while we woke, or passed
     * STORE_BATCH_MAX): another writer, if one idles, commits it alongside. */
    atomic_thread_fence(memory_order_seq_cst);
    if (n > 0 && worth_taking(s))
        wake_one_locked(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}

/*
 * The writer's batch is complete: it no longer counts as busy. An op queued
 * meanwhile, whose producer saw us busy and woke nobody, is ours to take
 * (pairs with the fence in store_submit). A writer left without a connection
 * will not take it, so it hands it to a sleeping one.
 */
static void writer_done(struct store_writer *w)
{
    struct store *s = w->store;

    atomic_fetch_sub(&s->busy, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (w->conn == NULL)
        wake_writers(s);
}

/*
 * Sleeps out the backoff (failing queued operations meanwhile if nobody can
 * commit them), then tries once to connect. false: the store is closing.
 */
static bool writer_reconnect(struct store_writer *w, unsigned *backoff_ms)
{
    struct store *s = w->store;
    struct timespec deadline;
    bool closing;

    sleep_until(&deadline, *backoff_ms);
    pthread_mutex_lock(&s->lock);
    while (!s->closing) {
        if (atomic_load(&s->connected) == 0 && !queue_empty(s)) {
            pthread_mutex_unlock(&s->lock);
            fail_queued(w);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        if (pthread_cond_timedwait(&s->retry, &s->lock, &deadline) == ETIMEDOUT)
            break;
    }
    closing = s->closing;
    pthread_mutex_unlock(&s->lock);
    if (closing) {
        if (atomic_load(&s->connected) == 0)
            fail_queued(w);
        return false;
    }
    if (!writer_connect(w)) {
        *backoff_ms = *backoff_ms * 2 > STORE_BACKOFF_MAX_MS ? STORE_BACKOFF_MAX_MS : *backoff_ms * 2;
        return true;
    }
    *backoff_ms = STORE_BACKOFF_MIN_MS;
    return true;
}

static void *writer_main(void *arg)
{
    struct store_writer *w = arg;
    unsigned backoff_ms = STORE_BACKOFF_MIN_MS;
    char name[16];

    snprintf(name, sizeof(name), "tally-store%u", w->index % 100);
    pthread_setname_np(pthread_self(), name);

    for (;;) {
        unsigned n;

        if (w->conn == NULL) {
            if (!writer_reconnect(w, &backoff_ms))
                break;
            continue;
        }
        n = writer_take(w);
        if (n == 0)
            break;
        complete_batch(w, n);
        writer_done(w);
    }
    return NULL;
}

/* Signals a writer when one sleeps; the lock orders the signal after its wait. */
static void wake_writers(struct store *s)
{
    if (atomic_load(&s->sleepers) > 0 && !atomic_load(&s->waking) && worth_taking(s)) {
        pthread_mutex_lock(&s->lock);
        wake_one_locked(s);
        pthread_mutex_unlock(&s->lock);
    }
    if (atomic_load(&s->connected) == 0) {
        pthread_mutex_lock(&s->lock);
        pthread_cond_broadcast(&s->retry);
        pthread_mutex_unlock(&s->lock);
    }
}

/* ---- public API ------------------------------------------------------- */

struct store *store_create(const struct store_config *cfg)
{
    struct store *s;
    uint32_t want;

    TALLY_ASSERT(cfg != NULL && cfg->conninfo != NULL);
    pthread_once(&store_m_once, store_metrics_register);
    TALLY_ASSERT(cfg->pool >= 1);
    want = cfg->queue_max ? cfg->queue_max : STORE_QUEUE_MAX;
    TALLY_ASSERT(want < STORE_RING_SLOTS_MAX);
    s = xcalloc(1, sizeof(*s));
    s->conninfo = xstrdup(cfg->conninfo);
    s->instance_id = xstrdup(cfg->instance_id ? cfg->instance_id : "");
    snprintf(s->app_writer, sizeof(s->app_writer), "%s%s", STORE_APP_WRITER, s->instance_id);
    s->pool = cfg->pool;
    if (s->pool > STORE_POOL_MAX) {
        /* Past a few connections per core commits only contend for the
         * WAL flush; cap rather than refuse. */
        log_warn("store: %u writer connections requested, using %u", s->pool, STORE_POOL_MAX);
        s->pool = STORE_POOL_MAX;
    }
    s->queue_max = want;
    /* A ck_ring of N slots holds N - 1 entries. */
    s->slots_n = 2;
    while (s->slots_n < want + 1)
        s->slots_n *= 2;
    TALLY_ASSERT(IS_POW2(s->slots_n));
    s->slots = xcalloc(s->slots_n, sizeof(*s->slots));
    ck_ring_init(&s->ring, s->slots_n);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->reader_lock, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->retry, NULL);
    s->writers = xcalloc(s->pool, sizeof(*s->writers));
    for (unsigned i = 0; i < s->pool; i++) {
        s->writers[i].store = s;
        s->writers[i].index = i;
    }
    return s;
}

static int migrate_once(const char *conninfo)
{
    PGconn *c = db_connect(conninfo, false, STORE_APP);
    int rc;

    if (c == NULL)
        return -EIO;
    rc = migrate_apply(c);
    PQfinish(c);
    return rc;
}

int store_migrate(const char *conninfo)
{
    TALLY_ASSERT(conninfo != NULL);
    return migrate_once(conninfo);
}

/* Closes the queue to writers and joins the first n of them. */
static void join_writers(struct store *s, unsigned n)
{
    pthread_mutex_lock(&s->lock);
    s->closing = true;
    pthread_cond_broadcast(&s->work);
    pthread_cond_broadcast(&s->retry);
    pthread_mutex_unlock(&s->lock);
    for (unsigned i = 0; i < n; i++)
        pthread_join(s->writers[i].thread, NULL);
    for (unsigned i = 0; i < s->pool; i++) {
        PQfinish(s->writers[i].conn);
        s->writers[i].conn = NULL;
    }
    atomic_store(&s->connected, 0);
}

/*
 * Ends the storage connections a previous run of this instance left behind
 * (after a SIGKILL the server notices a dead client only when it next reads
 * from it) and waits until they are gone. A transaction of theirs still
 * committing then either commits or aborts before the load takes its
 * snapshot, so the vote counts loaded cover every vote with an id up to the
 * highest loaded (see store_load). Instances are told apart by instance id.
 */
static int end_previous_writers(struct store *s)
{
    const char *p[1] = {s->app_writer};
    PGconn *c = db_connect(s->conninfo, false, STORE_APP);
    PGresult *res;
    int64_t ended = 0, left = 1;
    uint64_t deadline_ms = clock_now_ms() + STORE_PREVIOUS_WAIT_MS;

    if (c == NULL)
        return -EIO;
    res = db_exec(c, "end previous writers",
                  "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                  "WHERE application_name = $1 AND pid <> pg_backend_pid()",
                  1, p, PGRES_TUPLES_OK);
    if (res != NULL)
        ended = parse_i64(PQgetvalue(res, 0, 0));
    PQclear(res);
    while (res != NULL && left > 0 && clock_now_ms() < deadline_ms) {
        res = db_exec(c, "previous writers",
                      "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", 1, p,
                      PGRES_TUPLES_OK);
        left = res != NULL ? parse_i64(PQgetvalue(res, 0, 0)) : 1;
        PQclear(res);
        if (left > 0)
            sleep_ms(10);
    }
    PQfinish(c);
    if (ended > 0)
        log_info("store: ended %" PRId64 " database connection(s) left by a previous run", ended);
    if (left > 0) /* not fatal: at worst a vote of theirs committing late is counted late */
        log_warn("store: connections of a previous run of instance %s are still there", s->instance_id);
    return res != NULL ? 0 : -EIO;
}

int store_start(struct store *s)
{
    unsigned up = 0;
    int rc;

    TALLY_ASSERT(!s->running && !s->closing);
    if (migrate_once(s->conninfo) < 0 || end_previous_writers(s) < 0) {
        log_error("store: the database is unreachable or its schema cannot be migrated");
        return -EIO;
    }
    for (unsigned i = 0; i < s->pool; i++) {
        s->writers[i].conn = db_connect(s->conninfo, false, s->app_writer);
        up += s->writers[i].conn != NULL;
    }
    if (up == 0) {
        log_error("store: no writer could connect to the database");
        return -EIO;
    }
    atomic_store(&s->connected, up);
    for (unsigned i = 0; i < s->pool; i++) {
        rc = pthread_create(&s->writers[i].thread, NULL, writer_main, &s->writers[i]);
        if (rc != 0) {
            log_error("store: cannot start writer thread: %s", strerror(rc));
            join_writers(s, i);
            return -rc;
        }
    }
    s->running = true;
    log_info("store: %u of %u writers connected", up, s->pool);
    return 0;
}

bool store_submit(struct store *s, struct store_op *op)
{
    bool ok = false;

    TALLY_ASSERT(op != NULL && op->on_done != NULL);
    TALLY_ASSERT(op->event == NULL || store_event_type(op->kind) != NULL);
    if (op->kind == STORE_VOTE) {
        TALLY_ASSERT(op->vote.n_choices <= API_CHOICES_MAX);
        TALLY_ASSERT(strnlen(op->vote.idem_key, sizeof(op->vote.idem_key)) <= API_IDEM_KEY_MAX);
    } else if (op->kind == STORE_POLL_CREATE) {
        TALLY_ASSERT(op->poll.question != NULL);
        TALLY_ASSERT(op->poll.n_options <= API_OPTIONS_MAX);
    } else if (op->kind == STORE_EVENTS_PRUNE) {
        /* A negative keep would delete events written a moment ago. */
        TALLY_ASSERT(op->id >= 0);
    }
    atomic_fetch_add(&s->submitting, 1);
    /* Pairs with store_stop: it sets stopping, then waits for submitting to
     * reach zero, so no op slips in after the writers were told to drain. */
    if (!atomic_load(&s->stopping) && atomic_load(&s->connected) > 0) {
        /* Admission is counted apart from the ring so the limit is exactly
         * queue_max, not the ring's power of two. */
        if (atomic_fetch_add(&s->queued, 1) < s->queue_max)
            ok = ck_ring_enqueue_mpmc(&s->ring, s->slots, op);
        if (!ok)
            atomic_fetch_sub(&s->queued, 1);
    }
    if (ok) {
        /* Pairs with the fence in writer_take (see there). */
        atomic_thread_fence(memory_order_seq_cst);
        wake_writers(s);
    }
    atomic_fetch_sub(&s->submitting, 1);
    return ok;
}

bool store_available(const struct store *s)
{
    return atomic_load(&s->connected) > 0;
}

/* ---- loading ---------------------------------------------------------- */

typedef int (*load_row_fn)(const struct store_loader *l, const PGresult *res, int r);

static int load_session(const struct store_loader *l, const PGresult *res, int r)
{
    struct store_session_row row = {
        .id = parse_i64(PQgetvalue(res, r, 0)),
        .code = PQgetvalue(res, r, 1),
        .title = PQgetvalue(res, r, 2),
        .closed = strcmp(PQgetvalue(res, r, 3), "closed") == 0,
        .token_hash = PQgetvalue(res, r, 4),
        .seq = parse_i64(PQgetvalue(res, r, 5)),
        .created_at = PQgetvalue(res, r, 6),
    };

    l->on_session(l->arg, &row);
    return 0;
}

static bool poll_state_parse(const char *s, int *out)
{
    static const char *const names[] = {"draft", "open", "closed"};

    for (int i = 0; i < (int)ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    return false;
}

static int load_poll(const struct store_loader *l, const PGresult *res, int r)
{
    struct store_poll_row row = {
        .id = parse_i64(PQgetvalue(res, r, 0)),
        .session_id = parse_i64(PQgetvalue(res, r, 1)),
        .question = PQgetvalue(res, r, 2),
        .max_choices = (uint32_t)strtoul(PQgetvalue(res, r, 5), NULL, 10),
    };
    json_t *opts = json_loads(PQgetvalue(res, r, 4), 0, NULL);
    int rc = -EIO;

    if (!poll_kind_parse(PQgetvalue(res, r, 3), &row.kind) || !poll_state_parse(PQgetvalue(res, r, 6), &row.state))
        goto out_free;
    if (!json_is_array(opts) || json_array_size(opts) > API_OPTIONS_MAX)
        goto out_free;
    for (size_t i = 0; i < json_array_size(opts); i++) {
        const char *o = json_string_value(json_array_get(opts, i));

        if (o == NULL)
            goto out_free;
        row.options[row.n_options++] = o;
    }
    l->on_poll(l->arg, &row);
    rc = 0;
out_free:
    if (rc < 0)
        log_error("store: poll %" PRId64 " has a malformed kind, state or options", row.id);
    json_decref(opts);
    return rc;
}

static int load_participant(const struct store_loader *l, const PGresult *res, int r)
{
    l->on_participant(l->arg, parse_i64(PQgetvalue(res, r, 0)), parse_i64(PQgetvalue(res, r, 1)),
                      PQgetvalue(res, r, 2));
    return 0;
}

/* Runs sql in single-row mode, so millions of votes never sit in memory at
 * once, and hands each row to fn. Stops calling fn after its first error
 * but always drains the results, leaving the connection usable. */
static int load_stream(PGconn *c, const char *sql, load_row_fn fn, const struct store_loader *l)
{
    char err[STORE_ERR_MAX];
    PGresult *res;
    int rc = 0;

    if (!PQsendQuery(c, sql)) {
        log_error("store: load failed: %s", pq_msg(c, NULL, err));
        return -EIO;
    }
    PQsetSingleRowMode(c); /* when refused, rows simply arrive all at once */
    while ((res = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(res);

        if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
            for (int r = 0; rc == 0 && r < PQntuples(res); r++)
                rc = fn(l, res, r);
        } else {
            log_error("store: load failed: %s", pq_msg(c, res, err));
            rc = -EIO;
        }
        PQclear(res);
    }
    return rc;
}

/*
 * load_stream for a query that may be limited to one session: where is ""
 * (every row) or the session id, which replaces "$S" in sql; "$W" in sql
 * becomes "WHERE <col> = id" with col given after it as "$W(col)".
 */
static int load_stream_where(PGconn *c, const char *sql, const char *where, load_row_fn fn,
                             const struct store_loader *l)
{
    struct buf b = {0};
    int rc;

    for (const char *p = sql; *p; p++) {
        if (p[0] == '$' && p[1] == 'S') {
            buf_append_str(&b, where);
            p++;
        } else if (p[0] == '$' && p[1] == 'W' && p[2] == '(') {
            const char *end = strchr(p, ')');

            TALLY_ASSERT(end != NULL);
            if (where[0])
                buf_printf(&b, "WHERE %.*s = %s", (int)(end - p - 3), p + 3, where);
            p = end;
        } else {
            buf_append(&b, p, 1);
        }
    }
    buf_append(&b, "", 1);
    rc = load_stream(c, b.data, fn, l);
    buf_free(&b);
    return rc;
}

static int load_vote_count(const struct store_loader *l, const PGresult *res, int r)
{
    struct store_vote_count row = {
        .session_id = parse_i64(PQgetvalue(res, r, 0)),
        .poll_id = parse_i64(PQgetvalue(res, r, 1)),
        .votes = strtoull(PQgetvalue(res, r, 3), NULL, 10),
    };

    if (!parse_choices(PQgetvalue(res, r, 2), row.choices, &row.n_choices)) {
        log_error("store: votes of poll %" PRId64 " have malformed choices %s", row.poll_id,
                  PQgetvalue(res, r, 2));
        return -EIO;
    }
    l->on_vote_count(l->arg, &row);
    return 0;
}

/*
 * Votes by aggregate: one row per (poll, choices), so a load costs the
 * same for a thousand votes as for a million, bar the server's scan. The
 * highest id comes from the primary key in the same snapshot.
 */
static int load_votes(PGconn *c, struct store_loader *l, const char *where)
{
    char sql[512];
    PGresult *res;
    int rc;

    /* The planner, without statistics on a table just filled, expects many
     * groups and would sort a million rows to disk; there are a few per
     * poll, which a hash table holds in far less than this. */
    if (!db_command(c, "load work_mem", "SET LOCAL work_mem = '" STORE_LOAD_WORK_MEM "'"))
        return -EIO;
    snprintf(sql, sizeof(sql),
             "SELECT p.session_id, v.poll_id, v.choices::text, v.n "
             "FROM (SELECT poll_id, choices, count(*) AS n FROM votes %s GROUP BY poll_id, choices) v "
             "JOIN polls p ON p.id = v.poll_id",
             where[0] ? "WHERE poll_id IN (SELECT id FROM polls WHERE session_id = $S)" : "");
    rc = load_stream_where(c, sql, where, load_vote_count, l);
    if (rc < 0)
        return rc;
    res = db_exec(c, "vote id max", "SELECT coalesce(max(id), 0) FROM votes", 0, NULL, PGRES_TUPLES_OK);
    if (res == NULL)
        return -EIO;
    l->vote_id_max = parse_i64(PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

/* Every session (sid 0) or one. */
static int load_all(PGconn *c, struct store_loader *l, int64_t sid)
{
    char where[STORE_I64_MAX] = "";
    int rc = 0;

    if (sid > 0)
        fmt_i64(where, sid);
    if (l->on_session)
        rc = load_stream_where(c,
                               "SELECT id, code, title, state, presenter_token_hash, seq, " SQL_TIME("created_at")
                               " FROM sessions $W(id) ORDER BY id",
                               where, load_session, l);
    if (rc == 0 && l->on_poll)
        rc = load_stream_where(c,
                               "SELECT id, session_id, question, kind, options::text, max_choices, state "
                               "FROM polls $W(session_id) ORDER BY id",
                               where, load_poll, l);
    if (rc == 0 && l->on_participant)
        rc = load_stream_where(c, "SELECT session_id, id, token_hash FROM participants $W(session_id) ORDER BY id",
                               where, load_participant, l);
    if (rc == 0 && l->on_vote_count)
        rc = load_votes(c, l, where);
    return rc;
}

int store_load(struct store *s, struct store_loader *l)
{
    PGconn *c;
    int rc;

    TALLY_ASSERT(s != NULL && l != NULL);
    c = db_connect(s->conninfo, false, STORE_APP);
    if (c == NULL)
        return -EIO;
    /* One snapshot for all four tables: another instance may be writing, and
     * a vote must never arrive without its poll and participant. */
    if (!db_command(c, "load snapshot", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")) {
        PQfinish(c);
        return -EIO;
    }
    rc = load_all(c, l, 0);
    if (rc == 0 && !db_command(c, "load commit", "COMMIT"))
        rc = -EIO;
    PQfinish(c);
    return rc;
}

/* The reader connection, opened when needed; NULL when it cannot be. Under reader_lock. */
static PGconn *reader_conn(struct store *s)
{
    if (s->reader != NULL && PQstatus(s->reader) != CONNECTION_OK) {
        PQfinish(s->reader);
        s->reader = NULL;
    }
    if (s->reader == NULL)
        s->reader = db_connect(s->conninfo, false, STORE_APP);
    return s->reader;
}

/* A connection left in an unknown state is not reused. Under reader_lock. */
static void reader_drop(struct store *s)
{
    PQfinish(s->reader);
    s->reader = NULL;
}

int store_find_session(struct store *s, const struct store_find *find, int64_t *sid, int64_t *pid)
{
    char id[STORE_I64_MAX];
    const char *p[1];
    const char *sql;
    PGresult *res = NULL;
    PGconn *c;
    int rc = -EIO;

    *sid = *pid = 0;
    if (find->code != NULL) {
        p[0] = find->code;
        sql = "SELECT id, 0 FROM sessions WHERE code = $1";
    } else if (find->poll_id > 0) {
        fmt_i64(id, find->poll_id);
        p[0] = id;
        sql = "SELECT session_id, 0 FROM polls WHERE id = $1";
    } else {
        TALLY_ASSERT(find->token_hash != NULL);
        p[0] = find->token_hash;
        sql = "SELECT session_id, id FROM participants WHERE token_hash = $1 "
              "UNION ALL SELECT id, 0 FROM sessions WHERE presenter_token_hash = $1 LIMIT 1";
    }
    pthread_mutex_lock(&s->reader_lock);
    c = reader_conn(s);
    if (c != NULL)
        res = db_exec(c, "session find", sql, 1, p, PGRES_TUPLES_OK);
    if (res != NULL) {
        rc = PQntuples(res) > 0;
        if (rc) {
            *sid = parse_i64(PQgetvalue(res, 0, 0));
            *pid = parse_i64(PQgetvalue(res, 0, 1));
        }
        PQclear(res);
    } else if (c != NULL) {
        reader_drop(s);
    }
    pthread_mutex_unlock(&s->reader_lock);
    return rc;
}

int store_load_session(struct store *s, int64_t sid, struct store_loader *l)
{
    char id[STORE_I64_MAX];
    const char *p[1] = {id};
    PGresult *res;
    PGconn *c;
    int rc = -EIO;

    TALLY_ASSERT(s != NULL && sid > 0 && l != NULL);
    pthread_mutex_lock(&s->reader_lock);
    c = reader_conn(s);
    if (c == NULL)
        goto out;
    if (!db_command(c, "load snapshot", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        goto out_drop;
    /* Whether the session is there in the snapshot; load_all's vote load
     * sets the highest vote id. */
    fmt_i64(id, sid);
    res = db_exec(c, "session load", "SELECT 1 FROM sessions WHERE id = $1", 1, p, PGRES_TUPLES_OK);
    if (res == NULL) {
        rc = -EIO;
    } else {
        rc = PQntuples(res) == 1 ? load_all(c, l, sid) : -ENOENT;
        PQclear(res);
    }
    if (!db_command(c, "load end", rc == -EIO ? "ROLLBACK" : "COMMIT"))
        goto out_drop;
    goto out;
out_drop:
    reader_drop(s);
    rc = -EIO;
out:
    pthread_mutex_unlock(&s->reader_lock);
    return rc;
}

void store_stop(struct store *s)
{
    if (s == NULL || !s->running)
        return;
    atomic_store(&s->stopping, true);
    while (atomic_load(&s->submitting) > 0)
        sched_yield();
    join_writers(s, s->pool);
    TALLY_ASSERT(queue_empty(s));
    s->running = false;
    log_info("store: stopped after %" PRIuFAST64 " operations in %" PRIuFAST64 " batches",
             (uint_fast64_t)atomic_load(&s->n_ops), (uint_fast64_t)atomic_load(&s->n_batches));
}

void store_destroy(struct store *s)
{
    if (s == NULL)
        return;
    store_stop(s);
    for (unsigned i = 0; i < s->pool; i++) {
        PQfinish(s->writers[i].conn);
        for (unsigned a = 0; a < ARRAY_LEN(s->writers[i].arr); a++)
            buf_free(&s->writers[i].arr[a]);
    }
    PQfinish(s->reader);
    pthread_mutex_destroy(&s->reader_lock);
    pthread_cond_destroy(&s->retry);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->lock);
    free(s->writers);
    free(s->slots);
    free(s->instance_id);
    free(s->conninfo);
    free(s);
}

void store_op_free(struct store_op *op)
{
    if (op == NULL)
        return;
    events_clear(op);
    free(op->text);
    free(op->poll.question);
    for (uint32_t i = 0; i < API_OPTIONS_MAX; i++)
        free(op->poll.options[i]);
    free(op);
}
