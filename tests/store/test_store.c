/*
 * test_store.c - the storage actor against a private PostgreSQL cluster:
 * migrations, every operation kind, per-session event sequencing (also from
 * two stores acting as two instances), event replay and its row limit,
 * event_log retention, votes with duplicates and conflicts (across batches
 * and inside one batch), batch and queue limits, draining on stop, loading,
 * the connection cut around COMMIT (the outcome found by checking, through a
 * hook of store.c), and the database going away and coming back.
 *
 * The store's .c is included to reach its counters (batches committed) and
 * its array-literal helpers. A "gate" operation whose on_done blocks the only
 * writer lets a test pile operations up and have them committed as exactly
 * one batch. Exits 77 when no PostgreSQL binaries are installed.
 */
#include "store/store.c"

#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/pgembed.h"
#include "pgtmp.h"

#define WAIT_S 30
#define CONNINFO_MAX 1024
#define VOTERS 500
#define VOTE_THREADS 4

static_assert(VOTERS % VOTE_THREADS == 0, "voters split evenly over threads");

static char tmp_root[64];
static char data_dir[128];
static char conninfo[CONNINFO_MAX];
static struct pgembed *cluster;
static unsigned name_seq;

/* ---- completion tracking ------------------------------------------------ */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned done;
} tracker = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

/* op->tag counts completions of that op: it must end at exactly 1. */
static void on_done(struct store_op *op)
{
    pthread_mutex_lock(&tracker.lock);
    op->tag++;
    tracker.done++;
    pthread_cond_broadcast(&tracker.cond);
    pthread_mutex_unlock(&tracker.lock);
}

static void tracker_reset(void)
{
    pthread_mutex_lock(&tracker.lock);
    tracker.done = 0;
    pthread_mutex_unlock(&tracker.lock);
}

static void wait_done(unsigned n)
{
    struct timespec deadline;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_S;
    pthread_mutex_lock(&tracker.lock);
    while (tracker.done < n && rc == 0)
        rc = pthread_cond_timedwait(&tracker.cond, &tracker.lock, &deadline);
    pthread_mutex_unlock(&tracker.lock);
    if (rc != 0)
        fail_msg("only %u of %u operations completed", tracker.done, n);
    assert_int_equal(tracker.done, n);
}

/* The gate: an operation whose on_done holds the writer until opened. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool entered, open;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};

static void on_done_gate(struct store_op *op)
{
    pthread_mutex_lock(&gate.lock);
    gate.entered = true;
    pthread_cond_broadcast(&gate.cond);
    while (!gate.open)
        pthread_cond_wait(&gate.cond, &gate.lock);
    pthread_mutex_unlock(&gate.lock);
    on_done(op);
}

static struct store_op *op_new(enum store_op_kind kind)
{
    struct store_op *op = xcalloc(1, sizeof(*op));

    op->kind = kind;
    op->on_done = on_done;
    op->status = STORE_UNAVAILABLE; /* proves the store sets it */
    return op;
}

/* Blocks the store's (single) writer; returns the gate op. */
static struct store_op *gate_close(struct store *s)
{
    struct store_op *op = op_new(STORE_VOTE_LOOKUP);

    op->on_done = on_done_gate;
    op->vote.participant_id = 1;
    strcpy(op->vote.idem_key, "gate");
    pthread_mutex_lock(&gate.lock);
    gate.entered = gate.open = false;
    pthread_mutex_unlock(&gate.lock);
    assert_true(store_submit(s, op));
    pthread_mutex_lock(&gate.lock);
    while (!gate.entered)
        pthread_cond_wait(&gate.cond, &gate.lock);
    pthread_mutex_unlock(&gate.lock);
    return op;
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.open = true;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
}

/* ---- database and store helpers ---------------------------------------- */

static void db_run(const char *ci, const char *sql)
{
    PGconn *c = pgtmp_db_open(ci);

    PQclear(pgtmp_db_q(c, sql, 0, NULL));
    PQfinish(c);
}

/* conninfo naming another database of the cluster (later keys win). */
static void conninfo_db(char *out, size_t n, const char *db)
{
    int len = snprintf(out, n, "%s dbname=%s", conninfo, db);

    assert_true(len > 0 && (size_t)len < n);
}

static struct store *store_up(const char *ci, unsigned pool, uint32_t queue_max, const char *instance)
{
    struct store_config cfg = {.conninfo = ci, .pool = pool, .queue_max = queue_max, .instance_id = instance};
    struct store *s = store_create(&cfg);

    assert_int_equal(store_start(s), 0);
    assert_true(store_available(s));
    return s;
}

static void submit_wait(struct store *s, struct store_op *op)
{
    tracker_reset();
    assert_true(store_submit(s, op));
    wait_done(1);
    assert_int_equal(op->tag, 1);
    op->tag = 0;
}

static void assert_time(const char *t)
{
    assert_int_equal(strlen(t), 24);
    assert_int_equal(t[4], '-');
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[19], '.');
    assert_int_equal(t[23], 'Z');
}

static char *event_payload(const struct store_op *op)
{
    char *p = NULL;

    assert_true(asprintf(&p, "{\"id\": %" PRId64 ", \"seq\": %" PRId64 "}", op->id, op->seq) > 0);
    return p;
}

static struct store_op *session_op(void)
{
    struct store_op *op = op_new(STORE_SESSION_CREATE);

    snprintf(op->code, sizeof(op->code), "S%05u", ++name_seq % 100000);
    snprintf(op->token_hash, sizeof(op->token_hash), "%064u", ++name_seq);
    op->text = xstrdup("A session");
    return op;
}

static int64_t make_session(struct store *s)
{
    struct store_op *op = session_op();
    int64_t id;

    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    id = op->session_id;
    assert_true(id > 0);
    store_op_free(op);
    return id;
}

static struct store_op *participant_op(int64_t sid, const char *name)
{
    struct store_op *op = op_new(STORE_PARTICIPANT_CREATE);

    op->session_id = sid;
    op->text = name ? xstrdup(name) : NULL;
    snprintf(op->token_hash, sizeof(op->token_hash), "%064u", ++name_seq);
    return op;
}

static int64_t make_participant(struct store *s, int64_t sid)
{
    struct store_op *op = participant_op(sid, "P");
    int64_t id;

    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    id = op->id;
    assert_true(id > 0);
    store_op_free(op);
    return id;
}

static struct store_op *poll_op(int64_t sid, enum poll_kind kind, uint32_t n_options, uint32_t max_choices)
{
    struct store_op *op = op_new(STORE_POLL_CREATE);

    op->session_id = sid;
    op->event = event_payload;
    op->poll.question = xstrdup("Which one?");
    op->poll.kind = kind;
    op->poll.n_options = n_options;
    op->poll.max_choices = max_choices;
    for (uint32_t i = 0; i < n_options; i++)
        assert_true(asprintf(&op->poll.options[i], "option %u", i) > 0);
    return op;
}

static int64_t make_poll(struct store *s, int64_t sid, int64_t *seq)
{
    struct store_op *op = poll_op(sid, POLL_SINGLE, 4, 1);
    int64_t id;

    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    id = op->id;
    if (seq)
        *seq = op->seq;
    store_op_free(op);
    return id;
}

/* POLL_OPEN, POLL_CLOSE (poll_id set) or SESSION_CLOSE; returns the op. */
static struct store_op *change_state(struct store *s, enum store_op_kind k, int64_t sid, int64_t poll_id)
{
    struct store_op *op = op_new(k);

    op->session_id = sid;
    op->id = poll_id;
    op->event = event_payload;
    submit_wait(s, op);
    return op;
}

static struct store_op *vote_op(int64_t sid, int64_t poll, int64_t part, const char *key, const uint8_t *choices,
                                uint32_t n)
{
    struct store_op *op = op_new(STORE_VOTE);

    op->session_id = sid;
    op->vote.poll_id = poll;
    op->vote.participant_id = part;
    str_copy(op->vote.idem_key, sizeof(op->vote.idem_key), key);
    memcpy(op->vote.choices, choices, n);
    op->vote.n_choices = n;
    return op;
}

/* ---- fixtures ----------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    if (pgtmp_dir(tmp_root, sizeof(tmp_root), "store") < 0)
        return -1;
    snprintf(data_dir, sizeof(data_dir), "%s/data", tmp_root);
    cluster = pgembed_start(data_dir, conninfo, sizeof(conninfo));
    return cluster ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    pgembed_stop(cluster);
    return pgtmp_remove(tmp_root);
}

/* ---- helpers of store.c ------------------------------------------------- */

static void test_parse_choices(void **state)
{
    uint8_t c[API_CHOICES_MAX];
    uint32_t n;
    char text[256];
    struct buf b = BUF_INIT;

    (void)state;
    assert_true(parse_choices("{0,2}", c, &n));
    assert_int_equal(n, 2);
    assert_int_equal(c[0], 0);
    assert_int_equal(c[1], 2);
    assert_true(parse_choices("{}", c, &n));
    assert_int_equal(n, 0);
    assert_true(parse_choices("{255}", c, &n));
    assert_int_equal(c[0], 255);
    const char *bad[] = {"", "{", "}", "0,2", "{1,2", "{1,,2}", "{1}x", "{256}", "{-1}", "{a}", "{1 }", "{,1}"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        if (parse_choices(bad[i], c, &n))
            fail_msg("accepted %s", bad[i]);
    }
    /* Exactly API_CHOICES_MAX elements fit; one more does not. */
    for (unsigned i = 0; i < API_CHOICES_MAX; i++)
        c[i] = (uint8_t)i;
    append_choices(&b, c, API_CHOICES_MAX);
    assert_true(parse_choices(b.data, c, &n));
    assert_int_equal(n, API_CHOICES_MAX);
    assert_int_equal(c[API_CHOICES_MAX - 1], API_CHOICES_MAX - 1);
    snprintf(text, sizeof(text), "%.*s,0}", (int)b.len - 1, b.data);
    assert_false(parse_choices(text, c, &n));
    buf_free(&b);
}

/* The text[] literals we build must come back from PostgreSQL unchanged. */
static void test_array_literals_roundtrip(void **state)
{
    char quotes[API_IDEM_KEY_MAX + 1], printable[API_IDEM_KEY_MAX + 1];
    const char *keys[] = {"plain", "a\"b", "back\\slash", "comma,brace{}", "NULL", " spaced ", "", "\\\"",
                          quotes, printable};
    struct buf b = BUF_INIT;
    const char *p[1];
    PGconn *c = pgtmp_db_open(conninfo);
    PGresult *res;

    (void)state;
    memset(quotes, '"', API_IDEM_KEY_MAX);
    quotes[API_IDEM_KEY_MAX] = '\0';
    for (int i = 0; i < API_IDEM_KEY_MAX; i++)
        printable[i] = (char)(0x20 + i % 95);
    printable[API_IDEM_KEY_MAX] = '\0';
    buf_append(&b, "{", 1);
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        if (i)
            buf_append(&b, ",", 1);
        append_text_elem(&b, keys[i]);
    }
    buf_append(&b, "}", 1);
    p[0] = b.data;
    res = pgtmp_db_q(c, "SELECT k FROM unnest($1::text[]) WITH ORDINALITY AS t(k, i) ORDER BY i", 1, p);
    assert_int_equal(PQntuples(res), ARRAY_LEN(keys));
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        assert_false(PQgetisnull(res, (int)i, 0));
        assert_string_equal(PQgetvalue(res, (int)i, 0), keys[i]);
    }
    PQclear(res);
    buf_free(&b);
    PQfinish(c);
}

static void test_create_limits(void **state)
{
    struct store_config cfg = {.conninfo = "dbname=x", .pool = STORE_POOL_MAX + 1, .queue_max = 0};
    struct store *s = store_create(&cfg);

    (void)state;
    assert_int_equal(s->pool, STORE_POOL_MAX);
    assert_int_equal(s->queue_max, STORE_QUEUE_MAX); /* 0 means the default */
    assert_true(IS_POW2(s->slots_n));
    assert_true(s->slots_n > s->queue_max); /* N slots hold N - 1 */
    assert_false(store_available(s));       /* not started */
    store_destroy(s);
    cfg.pool = 1;
    cfg.queue_max = 1;
    s = store_create(&cfg);
    assert_int_equal(s->pool, 1);
    assert_int_equal(s->slots_n, 2);
    store_destroy(s);
    store_op_free(NULL);
}

/* A failed operation hands out no events, whatever an attempt had read. */
static void test_op_fail_drops_events(void **state)
{
    struct store_op *op = op_new(STORE_EVENTS_SINCE);

    (void)state;
    op->status = STORE_OK;
    op->n_events = 2;
    op->events = xcalloc(2, sizeof(op->events[0]));
    op->events[0].payload = xstrdup("{}");
    op->events[1].payload = xstrdup("{\"id\": 1}");
    op_fail(op);
    assert_int_equal(op->status, STORE_UNAVAILABLE);
    assert_null(op->events);
    assert_int_equal(op->n_events, 0);
    op_fail(op); /* twice is harmless */
    assert_null(op->events);
    store_op_free(op);

    op = op_new(STORE_EVENTS_PRUNE);
    op->n_events = 7;
    op_fail(op);
    assert_int_equal(op->status, STORE_UNAVAILABLE);
    assert_int_equal(op->n_events, 0); /* no rows counted as deleted */
    store_op_free(op);

    /* An op that owns no events frees cleanly. */
    op = op_new(STORE_VOTE_LOOKUP);
    op_fail(op);
    assert_int_equal(op->status, STORE_UNAVAILABLE);
    store_op_free(op);
}

/* ---- migrations --------------------------------------------------------- */

static void assert_schema(const char *ci)
{
    PGconn *c = pgtmp_db_open(ci);

    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM schema_migrations", 0, NULL), migrations_count);
    assert_int_equal(pgtmp_db_i64(c, "SELECT max(version) FROM schema_migrations", 0, NULL),
                     migrations_src[migrations_count - 1].version);
    assert_int_equal(pgtmp_db_i64(c,
                            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
                            "AND table_name IN ('sessions','participants','polls','votes','event_log')",
                            0, NULL),
                     5);
    PQfinish(c);
}

static void test_migrations_idempotent(void **state)
{
    char ci[CONNINFO_MAX];

    (void)state;
    assert_true(migrations_count >= 1);
    db_run(conninfo, "CREATE DATABASE mig_a");
    conninfo_db(ci, sizeof(ci), "mig_a");
    assert_int_equal(store_migrate(ci), 0);
    assert_schema(ci);
    assert_int_equal(store_migrate(ci), 0);
    assert_schema(ci);
}

static void *migrate_thread(void *arg)
{
    return (void *)(intptr_t)store_migrate(arg);
}

static void test_migrations_concurrent(void **state)
{
    char ci[CONNINFO_MAX];
    pthread_t t[4];
    void *rc;

    (void)state;
    db_run(conninfo, "CREATE DATABASE mig_b");
    conninfo_db(ci, sizeof(ci), "mig_b");
    for (size_t i = 0; i < ARRAY_LEN(t); i++)
        assert_int_equal(pthread_create(&t[i], NULL, migrate_thread, ci), 0);
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        pthread_join(t[i], &rc);
        assert_int_equal((intptr_t)rc, 0);
    }
    assert_schema(ci);
}

static void test_unreachable_database(void **state)
{
    const char *bad = "host=/nonexistent-tally-dir user=tally dbname=postgres connect_timeout=2";
    struct store_config cfg = {.conninfo = bad, .pool = 2, .queue_max = 16, .instance_id = "x"};
    struct store *s;
    struct store_op *op = op_new(STORE_VOTE_LOOKUP);

    (void)state;
    assert_int_equal(store_migrate(bad), -EIO);
    assert_int_equal(store_migrate("this is = not a conninfo"), -EIO);
    s = store_create(&cfg);
    assert_int_equal(store_start(s), -EIO);
    assert_false(store_available(s));
    assert_false(store_submit(s, op));
    assert_int_equal(op->tag, 0);
    store_destroy(s);
    store_op_free(op);
}

/* ---- sessions, participants, polls and events --------------------------- */

static void test_session_create_and_conflict(void **state)
{
    struct store *s = store_up(conninfo, 2, 0, "inst-a");
    struct store_op *a = session_op(), *b = session_op();
    PGconn *c = pgtmp_db_open(conninfo);
    const char *p[1] = {a->code};

    (void)state;
    submit_wait(s, a);
    assert_int_equal(a->status, STORE_OK);
    assert_true(a->session_id > 0);
    assert_int_equal(a->id, a->session_id);
    assert_time(a->created_at);
    memcpy(b->code, a->code, sizeof(b->code));
    submit_wait(s, b);
    assert_int_equal(b->status, STORE_CONFLICT);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM sessions WHERE code = $1", 1, p), 1);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM sessions WHERE code = $1 AND title = 'A session' "
                               "AND state = 'open' AND seq = 0",
                            1, p),
                     1);
    store_op_free(a);
    store_op_free(b);
    PQfinish(c);
    store_destroy(s);
}

static void test_session_conflict_in_one_batch(void **state)
{
    struct store *s = store_up(conninfo, 1, 0, "inst-a");
    struct store_op *g, *a = session_op(), *b = session_op(), *d = session_op();
    uint64_t batches;

    (void)state;
    memcpy(b->code, a->code, sizeof(b->code));
    tracker_reset();
    g = gate_close(s);
    batches = atomic_load(&s->n_batches);
    assert_true(store_submit(s, a));
    assert_true(store_submit(s, b));
    assert_true(store_submit(s, d));
    gate_open();
    wait_done(4);
    assert_int_equal(atomic_load(&s->n_batches) - batches, 1);
    assert_int_equal(a->status, STORE_OK);
    assert_int_equal(b->status, STORE_CONFLICT);
    assert_int_equal(d->status, STORE_OK); /* a conflict does not spoil the batch */
    assert_true(d->session_id > a->session_id);
    store_op_free(g);
    store_op_free(a);
    store_op_free(b);
    store_op_free(d);
    store_destroy(s);
}

static void test_participant_create(void **state)
{
    struct store *s = store_up(conninfo, 2, 0, "inst-a");
    int64_t sid = make_session(s);
    struct store_op *a = participant_op(sid, "Ann"), *anon = participant_op(sid, NULL);
    struct store_op *dup = participant_op(sid, "Bob");
    PGconn *c = pgtmp_db_open(conninfo);
    char id[STORE_I64_MAX];
    const char *p[1] = {id};

    (void)state;
    submit_wait(s, a);
    assert_int_equal(a->status, STORE_OK);
    assert_true(a->id > 0);
    submit_wait(s, anon);
    assert_int_equal(anon->status, STORE_OK);
    fmt_i64(id, anon->id);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM participants WHERE id = $1 AND name IS NULL", 1, p), 1);
    memcpy(dup->token_hash, a->token_hash, sizeof(dup->token_hash));
    submit_wait(s, dup);
    assert_int_equal(dup->status, STORE_CONFLICT);
    store_op_free(a);
    store_op_free(anon);
    store_op_free(dup);
    PQfinish(c);
    store_destroy(s);
}

static void assert_events(PGconn *c, int64_t sid, const char *const *types, const int64_t *ids, int n,
                          const char *instance)
{
    char sids[STORE_I64_MAX];
    const char *p[1] = {sids};
    PGresult *res;

    fmt_i64(sids, sid);
    res = pgtmp_db_q(c,
               "SELECT seq, type, payload->>'id', payload->>'seq', instance_id FROM event_log "
               "WHERE session_id = $1 ORDER BY seq",
               1, p);
    assert_int_equal(PQntuples(res), n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(strtoll(PQgetvalue(res, i, 0), NULL, 10), i + 1);
        assert_string_equal(PQgetvalue(res, i, 1), types[i]);
        assert_int_equal(strtoll(PQgetvalue(res, i, 2), NULL, 10), ids[i]);
        /* The payload was built after the seq was known. */
        assert_int_equal(strtoll(PQgetvalue(res, i, 3), NULL, 10), i + 1);
        assert_string_equal(PQgetvalue(res, i, 4), instance);
    }
    PQclear(res);
    assert_int_equal(pgtmp_db_i64(c, "SELECT seq FROM sessions WHERE id = $1", 1, p), n);
}

static void test_events_sequence(void **state)
{
    static const char *const types[] = {"poll.created", "poll.opened", "poll.closed", "session.closed"};
    struct store *s = store_up(conninfo, 2, 0, "inst-a");
    int64_t sid = make_session(s), seq = 0, poll = make_poll(s, sid, &seq);
    struct store_op *open, *close, *missing, *end, *quiet = poll_op(sid, POLL_MULTI, 3, 2);
    PGconn *c = pgtmp_db_open(conninfo);
    char pid[STORE_I64_MAX];
    const char *p[1] = {pid};

    (void)state;
    assert_int_equal(seq, 1);
    open = change_state(s, STORE_POLL_OPEN, sid, poll);
    assert_int_equal(open->status, STORE_OK);
    assert_int_equal(open->seq, 2);
    assert_time(open->created_at);
    /* A refused change adds no event and leaves no gap. */
    missing = change_state(s, STORE_POLL_OPEN, sid, poll + 1000000);
    assert_int_equal(missing->status, STORE_NOT_FOUND);
    assert_int_equal(missing->seq, 0);
    /* An operation without an event function is not sequenced. */
    quiet->event = NULL;
    submit_wait(s, quiet);
    assert_int_equal(quiet->status, STORE_OK);
    assert_int_equal(quiet->seq, 0);
    close = change_state(s, STORE_POLL_CLOSE, sid, poll);
    assert_int_equal(close->seq, 3);
    end = change_state(s, STORE_SESSION_CLOSE, sid, 0);
    assert_int_equal(end->status, STORE_OK);
    assert_int_equal(end->seq, 4);
    assert_events(c, sid, types, (int64_t[]){poll, poll, poll, 0}, 4, "inst-a");
    fmt_i64(pid, poll);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM polls WHERE id = $1 AND state = 'closed' "
                               "AND opened_at IS NOT NULL AND closed_at >= opened_at",
                            1, p),
                     1);
    fmt_i64(pid, sid);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM sessions WHERE id = $1 AND state = 'closed' "
                               "AND closed_at IS NOT NULL",
                            1, p),
                     1);
    store_op_free(open);
    store_op_free(close);
    store_op_free(missing);
    store_op_free(end);
    store_op_free(quiet);
    PQfinish(c);
    store_destroy(s);
}

/* Sequenced operations of one batch get consecutive seqs in submission order. */
static void test_events_in_one_batch(void **state)
{
    struct store *s = store_up(conninfo, 1, 0, "inst-a");
    int64_t sid = make_session(s), other = make_session(s);
    struct store_op *g, *ops[6];

    (void)state;
    tracker_reset();
    g = gate_close(s);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        ops[i] = poll_op(i % 3 == 2 ? other : sid, POLL_SINGLE, 2, 1);
        assert_true(store_submit(s, ops[i]));
    }
    gate_open();
    wait_done(1 + ARRAY_LEN(ops));
    /* sid: ops 0, 1, 3, 4; other: ops 2, 5. */
    assert_int_equal(ops[0]->seq, 1);
    assert_int_equal(ops[1]->seq, 2);
    assert_int_equal(ops[3]->seq, 3);
    assert_int_equal(ops[4]->seq, 4);
    assert_int_equal(ops[2]->seq, 1);
    assert_int_equal(ops[5]->seq, 2);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        assert_int_equal(ops[i]->status, STORE_OK);
        store_op_free(ops[i]);
    }
    store_op_free(g);
    store_destroy(s);
}

struct seq_job {
    struct store *s;
    int64_t sid;
    struct store_op *ops[25];
};

static void *seq_thread(void *arg)
{
    struct seq_job *j = arg;

    for (size_t i = 0; i < ARRAY_LEN(j->ops); i++) {
        while (!store_submit(j->s, j->ops[i]))
            sched_yield();
    }
    return NULL;
}

/* Two stores stand for two instances writing events of one session. */
static void test_events_two_instances(void **state)
{
    struct store *a = store_up(conninfo, 2, 0, "inst-a"), *b = store_up(conninfo, 2, 0, "inst-b");
    int64_t sid = make_session(a);
    struct seq_job jobs[4];
    pthread_t t[4];
    bool seen[4 * ARRAY_LEN(jobs[0].ops) + 1] = {false};
    PGconn *c = pgtmp_db_open(conninfo);
    char sids[STORE_I64_MAX];
    const char *p[1] = {sids};

    (void)state;
    tracker_reset();
    for (size_t i = 0; i < ARRAY_LEN(jobs); i++) {
        jobs[i].s = i % 2 ? b : a;
        jobs[i].sid = sid;
        for (size_t k = 0; k < ARRAY_LEN(jobs[i].ops); k++)
            jobs[i].ops[k] = poll_op(sid, POLL_SINGLE, 2, 1);
        assert_int_equal(pthread_create(&t[i], NULL, seq_thread, &jobs[i]), 0);
    }
    for (size_t i = 0; i < ARRAY_LEN(jobs); i++)
        pthread_join(t[i], NULL);
    wait_done(ARRAY_LEN(seen) - 1);
    for (size_t i = 0; i < ARRAY_LEN(jobs); i++) {
        for (size_t k = 0; k < ARRAY_LEN(jobs[i].ops); k++) {
            struct store_op *op = jobs[i].ops[k];

            assert_int_equal(op->status, STORE_OK);
            assert_int_equal(op->tag, 1);
            assert_in_range(op->seq, 1, ARRAY_LEN(seen) - 1);
            assert_false(seen[op->seq]);
            seen[op->seq] = true;
            store_op_free(op);
        }
    }
    fmt_i64(sids, sid);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM event_log WHERE session_id = $1", 1, p), ARRAY_LEN(seen) - 1);
    assert_int_equal(pgtmp_db_i64(c, "SELECT max(seq) FROM event_log WHERE session_id = $1", 1, p), ARRAY_LEN(seen) - 1);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(DISTINCT instance_id) FROM event_log WHERE session_id = $1", 1, p), 2);
    /* Each event row names the poll its operation created. */
    assert_int_equal(pgtmp_db_i64(c,
                            "SELECT count(*) FROM event_log e JOIN polls p ON p.id = (e.payload->>'id')::bigint "
                            "WHERE e.session_id = $1 AND p.session_id = $1",
                            1, p),
                     ARRAY_LEN(seen) - 1);
    PQfinish(c);
    store_destroy(a);
    store_destroy(b);
}

/* ---- event replay and retention ----------------------------------------- */

#define PAYLOAD_MAX 64

/* What event_payload wrote, as PostgreSQL's jsonb prints it back. */
struct written {
    int64_t seq;
    const char *type;
    char payload[PAYLOAD_MAX];
};

static void written_set(struct written *w, int64_t seq, const char *type, int64_t id)
{
    w->seq = seq;
    w->type = type;
    snprintf(w->payload, sizeof(w->payload), "{\"id\": %" PRId64 ", \"seq\": %" PRId64 "}", id,
             seq);
}

static struct store_op *since_op(int64_t sid, int64_t after)
{
    struct store_op *op = op_new(STORE_EVENTS_SINCE);

    op->session_id = sid;
    op->seq = after;
    op->n_events = 12345; /* proves the store sets it */
    return op;
}

static struct store_op *events_since(struct store *s, int64_t sid, int64_t after)
{
    struct store_op *op = since_op(sid, after);

    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    return op;
}

/* op returned exactly want[0..n). */
static void assert_replay(const struct store_op *op, const struct written *want, uint32_t n)
{
    assert_int_equal(op->n_events, n);
    if (n == 0) {
        assert_null(op->events);
        return;
    }
    assert_non_null(op->events);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(op->events[i].seq, want[i].seq);
        assert_string_equal(op->events[i].type, want[i].type);
        assert_string_equal(op->events[i].payload, want[i].payload);
    }
}

/* A session with events 1..4 (created, opened, closed, created) and, around
 * it, another session with events of its own. */
static int64_t replay_fixture(struct store *s, struct written want[4], int64_t *other)
{
    int64_t sid = make_session(s), seq = 0, poll, second;
    struct store_op *op;

    *other = make_session(s);
    make_poll(s, *other, NULL);
    poll = make_poll(s, sid, &seq);
    written_set(&want[0], seq, "poll.created", poll);
    op = change_state(s, STORE_POLL_OPEN, sid, poll);
    written_set(&want[1], op->seq, "poll.opened", poll);
    store_op_free(op);
    op = change_state(s, STORE_POLL_CLOSE, sid, poll);
    written_set(&want[2], op->seq, "poll.closed", poll);
    store_op_free(op);
    second = make_poll(s, sid, &seq);
    written_set(&want[3], seq, "poll.created", second);
    make_poll(s, *other, NULL);
    for (int i = 0; i < 4; i++)
        assert_int_equal(want[i].seq, i + 1);
    return sid;
}

static void test_events_since(void **state)
{
    struct store *s = store_up(conninfo, 2, 0, "inst-a");
    struct written want[4];
    int64_t other, sid = replay_fixture(s, want, &other);
    struct store_op *op;

    (void)state;
    op = events_since(s, sid, 0);
    assert_replay(op, want, 4);
    store_op_free(op);
    op = events_since(s, sid, 2);
    assert_replay(op, want + 2, 2);
    store_op_free(op);
    op = events_since(s, sid, 3);
    assert_replay(op, want + 3, 1);
    store_op_free(op);
    /* After the last seq, far past it, or of an unknown session: nothing. */
    op = events_since(s, sid, 4);
    assert_replay(op, NULL, 0);
    store_op_free(op);
    op = events_since(s, sid, INT64_MAX);
    assert_replay(op, NULL, 0);
    store_op_free(op);
    op = events_since(s, sid + other + 1000000, 0);
    assert_replay(op, NULL, 0);
    store_op_free(op);
    /* A negative since (a client's number) replays everything. */
    op = events_since(s, sid, -5);
    assert_replay(op, want, 4);
    /* The same op submitted again: the first answer is released, not leaked. */
    op->seq = 1;
    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    assert_replay(op, want + 1, 3);
    store_op_free(op);
    /* The other session's events stay its own. */
    op = events_since(s, other, 0);
    assert_int_equal(op->n_events, 2);
    assert_int_equal(op->events[0].seq, 1);
    assert_int_equal(op->events[1].seq, 2);
    store_op_free(op);
    store_destroy(s);
}

/* A replay in the batch that wrote an event sees it: both commit together. */
static void test_events_since_in_batch(void **state)
{
    struct store *s = store_up(conninfo, 1, 0, "inst-a");
    struct written want[4];
    int64_t other, sid = replay_fixture(s, want, &other);
    struct store_op *g, *ops[4];
    uint64_t batches;

    (void)state;
    ops[0] = since_op(sid, 3);
    ops[1] = poll_op(sid, POLL_SINGLE, 2, 1);
    ops[2] = since_op(sid, 3);
    ops[3] = since_op(other, 1);
    tracker_reset();
    g = gate_close(s);
    batches = atomic_load(&s->n_batches);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        assert_true(store_submit(s, ops[i]));
    gate_open();
    wait_done(1 + ARRAY_LEN(ops));
    assert_int_equal(atomic_load(&s->n_batches) - batches, 1);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        assert_int_equal(ops[i]->status, STORE_OK);
    assert_int_equal(ops[1]->seq, 5);
    assert_replay(ops[0], want + 3, 1); /* ran before the poll was created */
    written_set(&want[0], 5, "poll.created", ops[1]->id);
    assert_replay(ops[2], (struct written[]){want[3], want[0]}, 2);
    assert_int_equal(ops[3]->n_events, 1);
    assert_int_equal(ops[3]->events[0].seq, 2);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        store_op_free(ops[i]);
    store_op_free(g);
    store_destroy(s);
}

/* A batch that fails after its replays ran: each op is retried alone, and
 * the replays answer from what committed, not from the rolled-back attempt. */
static void test_events_since_failed_batch(void **state)
{
    struct store *s = store_up(conninfo, 1, 0, "inst-a");
    struct written want[4];
    int64_t other, sid = replay_fixture(s, want, &other);
    int64_t u = make_participant(s, sid);
    struct store_op *g, *ops[5];
    uint64_t failed;

    (void)state;
    ops[0] = since_op(sid, 3);
    ops[1] = poll_op(sid, POLL_SINGLE, 2, 1);
    ops[2] = since_op(sid, 3);
    ops[3] = vote_op(sid, 1000000 + sid, u, "no such poll", (uint8_t[]){0}, 1);
    ops[4] = since_op(other, 0);
    tracker_reset();
    g = gate_close(s);
    failed = atomic_load(&s->n_failed_batches);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        assert_true(store_submit(s, ops[i]));
    gate_open();
    wait_done(1 + ARRAY_LEN(ops));
    assert_int_equal(atomic_load(&s->n_failed_batches) - failed, 1);
    assert_int_equal(ops[1]->status, STORE_OK);
    assert_int_equal(ops[1]->seq, 5); /* the rolled-back attempt's 5 was reused */
    written_set(&want[0], 5, "poll.created", ops[1]->id);
    /* Retried in submission order: 0 before the poll committed, 2 after. */
    assert_int_equal(ops[0]->status, STORE_OK);
    assert_replay(ops[0], want + 3, 1);
    assert_int_equal(ops[2]->status, STORE_OK);
    assert_replay(ops[2], (struct written[]){want[3], want[0]}, 2);
    assert_int_equal(ops[3]->status, STORE_UNAVAILABLE);
    assert_int_equal(ops[4]->status, STORE_OK);
    assert_int_equal(ops[4]->n_events, 2);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        store_op_free(ops[i]);
    store_op_free(g);
    store_destroy(s);
}

/* Exactly STORE_EVENTS_MAX rows come back; the caller asks again for more. */
static void test_events_since_limit(void **state)
{
    struct store *s = store_up(conninfo, 1, 0, "inst-a");
    int64_t sid = make_session(s);
    char sids[STORE_I64_MAX], total[STORE_I64_MAX];
    const char *p[2] = {sids, total};
    PGconn *c = pgtmp_db_open(conninfo);
    struct store_op *op;

    (void)state;
    fmt_i64(sids, sid);
    fmt_i64(total, STORE_EVENTS_MAX + 1);
    PQclear(pgtmp_db_q(c,
                 "INSERT INTO event_log(session_id, seq, type, payload, instance_id) "
                 "SELECT $1, g, 'poll.created', jsonb_build_object('seq', g), 'bulk' "
                 "FROM generate_series(1, $2::bigint) AS g",
                 2, p));
    op = events_since(s, sid, 0);
    assert_int_equal(op->n_events, STORE_EVENTS_MAX);
    for (uint32_t i = 0; i < op->n_events; i++)
        assert_int_equal(op->events[i].seq, i + 1);
    assert_string_equal(op->events[STORE_EVENTS_MAX - 1].payload, "{\"seq\": 100000}");
    store_op_free(op);
    op = events_since(s, sid, 1); /* exactly the limit remain */
    assert_int_equal(op->n_events, STORE_EVENTS_MAX);
    assert_int_equal(op->events[0].seq, 2);
    assert_int_equal(op->events[STORE_EVENTS_MAX - 1].seq, STORE_EVENTS_MAX + 1);
    store_op_free(op);
    op = events_since(s, sid, STORE_EVENTS_MAX);
    assert_int_equal(op->n_events, 1);
    assert_int_equal(op->events[0].seq, STORE_EVENTS_MAX + 1);
    assert_string_equal(op->events[0].type, "poll.created");
    store_op_free(op);
    PQfinish(c);
    store_destroy(s);
}

static struct store_op *prune(struct store *s, int64_t keep_s)
{
    struct store_op *op = op_new(STORE_EVENTS_PRUNE);

    op->id = keep_s;
    op->n_events = 12345; /* proves the store sets it */
    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    assert_null(op->events);
    return op;
}

static int64_t count_events(PGconn *c)
{
    return pgtmp_db_i64(c, "SELECT count(*) FROM event_log", 0, NULL);
}

static void test_events_prune(void **state)
{
    char ci[CONNINFO_MAX], sids[STORE_I64_MAX], others[STORE_I64_MAX];
    const char *p[1] = {sids}, *po[1] = {others};
    struct written want[4];
    struct store *s;
    struct store_op *op;
    int64_t other, sid;
    PGconn *c;

    (void)state;
    db_run(conninfo, "CREATE DATABASE prune_db");
    conninfo_db(ci, sizeof(ci), "prune_db");
    s = store_up(ci, 2, 0, "inst-a");
    c = pgtmp_db_open(ci);
    sid = replay_fixture(s, want, &other);
    assert_int_equal(count_events(c), 6);
    op = prune(s, 86400);
    assert_int_equal(op->n_events, 0);
    store_op_free(op);
    assert_int_equal(count_events(c), 6);

    /* Two rows past the retention, one just inside it. */
    fmt_i64(sids, sid);
    fmt_i64(others, other);
    PQclear(pgtmp_db_q(c,
                 "UPDATE event_log SET created_at = now() - interval '2 days' "
                 "WHERE session_id = $1 AND seq <= 2",
                 1, p));
    PQclear(pgtmp_db_q(c,
                 "UPDATE event_log SET created_at = now() - interval '86340 seconds' "
                 "WHERE session_id = $1 AND seq = 1",
                 1, po));
    op = prune(s, 86400);
    assert_int_equal(op->n_events, 2);
    store_op_free(op);
    assert_int_equal(count_events(c), 4);
    assert_int_equal(pgtmp_db_i64(c, "SELECT min(seq) FROM event_log WHERE session_id = $1", 1, p), 3);
    /* Replay after a prune starts past the gap; the caller sees seq 3 > 1. */
    op = events_since(s, sid, 0);
    assert_replay(op, want + 2, 2);
    store_op_free(op);
    op = prune(s, 86400); /* nothing left to prune */
    assert_int_equal(op->n_events, 0);
    store_op_free(op);
    /* Keep 0 s: everything written by earlier transactions goes. */
    op = prune(s, 0);
    assert_int_equal(op->n_events, 4);
    store_op_free(op);
    assert_int_equal(count_events(c), 0);
    /* Pruning never touches the sequence: the next event is 5. */
    op = change_state(s, STORE_SESSION_CLOSE, sid, 0);
    assert_int_equal(op->status, STORE_OK);
    assert_int_equal(op->seq, 5);
    store_op_free(op);
    PQfinish(c);
    store_destroy(s);
}

/* ---- votes -------------------------------------------------------------- */

struct vote_job {
    struct store *s;
    pthread_barrier_t *start;
    struct store_op **ops;
    unsigned n;
};

static void *vote_thread(void *arg)
{
    struct vote_job *j = arg;

    pthread_barrier_wait(j->start);
    for (unsigned i = 0; i < j->n; i++)
        assert_true(store_submit(j->s, j->ops[i]));
    return NULL;
}

static int cmp_op_participant(const void *a, const void *b)
{
    const struct store_op *x = *(struct store_op *const *)a, *y = *(struct store_op *const *)b;

    return cmp_i64(x->vote.participant_id, y->vote.participant_id);
}

/* The votes table holds exactly the acknowledged votes of this poll. */
static void assert_votes_table(int64_t poll, struct store_op **ops, unsigned n)
{
    PGconn *c = pgtmp_db_open(conninfo);
    char pid[STORE_I64_MAX];
    const char *p[1] = {pid};
    PGresult *res;

    fmt_i64(pid, poll);
    qsort(ops, n, sizeof(ops[0]), cmp_op_participant);
    res = pgtmp_db_q(c,
               "SELECT participant_id, id, idem_key, choices::text, session_id FROM votes "
               "WHERE poll_id = $1 ORDER BY participant_id",
               1, p);
    assert_int_equal(PQntuples(res), n);
    for (unsigned i = 0; i < n; i++) {
        struct buf want = BUF_INIT;

        append_choices(&want, ops[i]->vote.choices, ops[i]->vote.n_choices);
        assert_int_equal(strtoll(PQgetvalue(res, (int)i, 0), NULL, 10), ops[i]->vote.participant_id);
        assert_int_equal(strtoll(PQgetvalue(res, (int)i, 1), NULL, 10), ops[i]->vote.id);
        assert_string_equal(PQgetvalue(res, (int)i, 2), ops[i]->vote.idem_key);
        assert_string_equal(PQgetvalue(res, (int)i, 3), want.data);
        assert_int_equal(strtoll(PQgetvalue(res, (int)i, 4), NULL, 10), ops[i]->session_id);
        buf_free(&want);
    }
    PQclear(res);
    PQfinish(c);
}

static void test_votes_concurrent(void **state)
{
    struct store *s = store_up(conninfo, 2, 0, "inst-a");
    int64_t sid = make_session(s), poll = make_poll(s, sid, NULL);
    struct store_op *people[VOTERS], *votes[VOTERS];
    struct vote_job jobs[VOTE_THREADS];
    pthread_t t[VOTE_THREADS];
    pthread_barrier_t start;
    char key[API_IDEM_KEY_MAX + 1];

    (void)state;
    tracker_reset();
    for (unsigned i = 0; i < VOTERS; i++) {
        people[i] = participant_op(sid, NULL);
        assert_true(store_submit(s, people[i]));
    }
    wait_done(VOTERS);
    for (unsigned i = 0; i < VOTERS; i++) {
        uint8_t choices[2] = {(uint8_t)(i % 4), (uint8_t)((i + 1) % 4)};

        assert_int_equal(people[i]->status, STORE_OK);
        snprintf(key, sizeof(key), "key-%u", i);
        votes[i] = vote_op(sid, poll, people[i]->id, key, choices, 1 + i % 2);
        store_op_free(people[i]);
    }
    tracker_reset();
    pthread_barrier_init(&start, NULL, VOTE_THREADS);
    for (unsigned i = 0; i < VOTE_THREADS; i++) {
        jobs[i] = (struct vote_job){s, &start, votes + i * (VOTERS / VOTE_THREADS), VOTERS / VOTE_THREADS};
        assert_int_equal(pthread_create(&t[i], NULL, vote_thread, &jobs[i]), 0);
    }
    for (unsigned i = 0; i < VOTE_THREADS; i++)
        pthread_join(t[i], NULL);
    wait_done(VOTERS);
    pthread_barrier_destroy(&start);
    for (unsigned i = 0; i < VOTERS; i++) {
        assert_int_equal(votes[i]->tag, 1);
        assert_int_equal(votes[i]->status, STORE_OK);
        assert_true(votes[i]->vote.id > 0);
        assert_time(votes[i]->vote.created_at);
    }
    assert_votes_table(poll, votes, VOTERS);
    for (unsigned i = 0; i < VOTERS; i++)
        store_op_free(votes[i]);
    store_destroy(s);
}

static void assert_same_vote(const struct store_vote *got, const struct store_vote *want)
{
    assert_int_equal(got->id, want->id);
    assert_int_equal(got->poll_id, want->poll_id);
    assert_int_equal(got->participant_id, want->participant_id);
    assert_int_equal(got->session_id, want->session_id);
    assert_int_equal(got->n_choices, want->n_choices);
    assert_memory_equal(got->choices, want->choices, want->n_choices);
    assert_string_equal(got->idem_key, want->idem_key);
    assert_string_equal(got->created_at, want->created_at);
}

static void test_vote_duplicate_and_conflict(void **state)
{
    struct store *s = store_up(conninfo, 2, 0, "inst-a");
    int64_t sid = make_session(s), p1 = make_poll(s, sid, NULL), p2 = make_poll(s, sid, NULL);
    int64_t p3 = make_poll(s, sid, NULL), u = make_participant(s, sid);
    const char *key = "re\"try\\,{1} NULL";
    char long_key[API_IDEM_KEY_MAX + 1];
    struct store_op *ops[9];

    (void)state;
    memset(long_key, '\\', API_IDEM_KEY_MAX);
    long_key[API_IDEM_KEY_MAX] = '\0';
    ops[0] = vote_op(sid, p1, u, key, (uint8_t[]){1}, 1);
    ops[1] = vote_op(sid, p1, u, key, (uint8_t[]){0}, 1);     /* retry, other choice */
    ops[2] = vote_op(sid, p2, u, key, (uint8_t[]){2}, 1);     /* same key, other poll */
    ops[3] = vote_op(sid, p1, u, "new key", (uint8_t[]){3}, 1); /* second vote on p1 */
    ops[4] = vote_op(sid, p2, u, "new key", (uint8_t[]){3}, 1); /* first vote on p2 */
    ops[5] = vote_op(sid, p3, u, long_key, (uint8_t[]){0}, 1);
    ops[6] = vote_op(sid, p3, u, long_key, (uint8_t[]){1}, 1);
    ops[7] = op_new(STORE_VOTE_LOOKUP);
    ops[8] = op_new(STORE_VOTE_LOOKUP);
    ops[7]->vote = ops[0]->vote;
    ops[8]->vote = ops[0]->vote;
    strcpy(ops[8]->vote.idem_key, "never used");
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        submit_wait(s, ops[i]);
    assert_int_equal(ops[0]->status, STORE_OK);
    assert_int_equal(ops[1]->status, STORE_DUPLICATE);
    assert_same_vote(&ops[1]->vote, &ops[0]->vote);
    assert_int_equal(ops[2]->status, STORE_DUPLICATE);
    assert_same_vote(&ops[2]->vote, &ops[0]->vote); /* the original, on p1 */
    assert_int_equal(ops[3]->status, STORE_CONFLICT);
    assert_int_equal(ops[4]->status, STORE_OK);
    assert_int_equal(ops[5]->status, STORE_OK);
    assert_int_equal(ops[6]->status, STORE_DUPLICATE);
    assert_same_vote(&ops[6]->vote, &ops[5]->vote);
    assert_int_equal(ops[7]->status, STORE_OK);
    assert_same_vote(&ops[7]->vote, &ops[0]->vote);
    assert_int_equal(ops[8]->status, STORE_NOT_FOUND);
    assert_votes_table(p1, &ops[0], 1);
    assert_votes_table(p2, &ops[4], 1);
    assert_votes_table(p3, &ops[5], 1);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        store_op_free(ops[i]);
    store_destroy(s);
}

/* Duplicates and conflicts among the votes of one batch. */
static void test_vote_conflicts_in_one_batch(void **state)
{
    struct store *s = store_up(conninfo, 1, 0, "inst-a");
    int64_t sid = make_session(s), p1 = make_poll(s, sid, NULL), p2 = make_poll(s, sid, NULL);
    int64_t u1 = make_participant(s, sid), u2 = make_participant(s, sid);
    struct store_op *g, *ops[7];
    uint64_t batches;

    (void)state;
    ops[0] = vote_op(sid, p1, u1, "k1", (uint8_t[]){0}, 1); /* OK */
    ops[1] = vote_op(sid, p1, u1, "k1", (uint8_t[]){1}, 1); /* DUPLICATE of 0 */
    ops[2] = vote_op(sid, p1, u1, "k2", (uint8_t[]){2}, 1); /* CONFLICT with 0 */
    ops[3] = vote_op(sid, p2, u1, "k1", (uint8_t[]){3}, 1); /* DUPLICATE of 0 */
    ops[4] = vote_op(sid, p1, u2, "k1", (uint8_t[]){1}, 1); /* OK: keys are per participant */
    ops[5] = vote_op(sid, p2, u2, "k9", (uint8_t[]){0, 2}, 2); /* OK */
    ops[6] = session_op();                                    /* other kinds mix in */
    tracker_reset();
    g = gate_close(s);
    batches = atomic_load(&s->n_batches);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        assert_true(store_submit(s, ops[i]));
    gate_open();
    wait_done(1 + ARRAY_LEN(ops));
    assert_int_equal(atomic_load(&s->n_batches) - batches, 1);
    assert_int_equal(ops[0]->status, STORE_OK);
    assert_int_equal(ops[1]->status, STORE_DUPLICATE);
    assert_same_vote(&ops[1]->vote, &ops[0]->vote);
    assert_int_equal(ops[2]->status, STORE_CONFLICT);
    assert_int_equal(ops[3]->status, STORE_DUPLICATE);
    assert_same_vote(&ops[3]->vote, &ops[0]->vote);
    assert_int_equal(ops[4]->status, STORE_OK);
    assert_int_equal(ops[5]->status, STORE_OK);
    assert_int_equal(ops[6]->status, STORE_OK);
    assert_votes_table(p1, (struct store_op *[]){ops[0], ops[4]}, 2);
    assert_votes_table(p2, &ops[5], 1);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        store_op_free(ops[i]);
    store_op_free(g);
    store_destroy(s);
}

/* Fresh votes go in by a plain INSERT; one that conflicts all the same makes
 * the batch run again with ON CONFLICT, and every answer is as usual. */
static void test_fresh_votes(void **state)
{
    struct store *s = store_up(conninfo, 1, 0, "inst-a");
    int64_t sid = make_session(s), seq0, p1 = make_poll(s, sid, &seq0);
    int64_t u1 = make_participant(s, sid), u2 = make_participant(s, sid), u3 = make_participant(s, sid);
    struct store_op *first = vote_op(sid, p1, u1, "k1", (uint8_t[]){0}, 1), *g, *ops[5];
    PGconn *c = pgtmp_db_open(conninfo);
    char sq[STORE_I64_MAX];

    (void)state;
    submit_wait(s, first);
    assert_int_equal(first->status, STORE_OK);
    /* All fresh and new: one batch, the plain statement. */
    ops[0] = vote_op(sid, p1, u2, "k2", (uint8_t[]){1}, 1);
    ops[1] = vote_op(sid, p1, u3, "k3", (uint8_t[]){2}, 1);
    tracker_reset();
    g = gate_close(s);
    for (int i = 0; i < 2; i++) {
        ops[i]->vote_fresh = true;
        assert_true(store_submit(s, ops[i]));
    }
    gate_open();
    wait_done(3);
    store_op_free(g);
    assert_int_equal(ops[0]->status, STORE_OK);
    assert_int_equal(ops[1]->status, STORE_OK);
    assert_time(ops[0]->vote.created_at);
    /* Called fresh, yet a retry of k1 and a second vote of u2: resolved. */
    ops[2] = vote_op(sid, p1, u1, "k1", (uint8_t[]){3}, 1);
    ops[3] = vote_op(sid, p1, u2, "k2-new", (uint8_t[]){3}, 1);
    ops[4] = poll_op(sid, POLL_SINGLE, 2, 1); /* a batch-mate that must not be done twice */
    tracker_reset();
    g = gate_close(s);
    for (int i = 2; i < 5; i++) {
        ops[i]->vote_fresh = true;
        assert_true(store_submit(s, ops[i]));
    }
    gate_open();
    wait_done(4);
    store_op_free(g);
    assert_int_equal(ops[2]->status, STORE_DUPLICATE);
    assert_same_vote(&ops[2]->vote, &first->vote);
    assert_int_equal(ops[3]->status, STORE_CONFLICT);
    assert_int_equal(ops[4]->status, STORE_OK);
    assert_int_equal(ops[4]->seq, seq0 + 1);
    assert_int_equal(atomic_load(&s->n_failed_batches), 0);
    assert_votes_table(p1, (struct store_op *[]){first, ops[0], ops[1]}, 3);
    fmt_i64(sq, sid);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM event_log WHERE session_id = $1", 1,
                            (const char *[]){sq}), seq0 + 1);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM polls WHERE session_id = $1", 1, (const char *[]){sq}), 2);
    for (int i = 0; i < 5; i++)
        store_op_free(ops[i]);
    store_op_free(first);
    PQfinish(c);
    store_destroy(s);
}

/* A refused statement fails only its own operation, not its batch-mates. */
static void test_refused_op_isolated(void **state)
{
    struct store *s = store_up(conninfo, 1, 0, "inst-a");
    int64_t sid = make_session(s), poll = make_poll(s, sid, NULL);
    int64_t u1 = make_participant(s, sid), u2 = make_participant(s, sid);
    struct store_op *g, *ops[5];
    uint64_t failed;
    PGconn *c = pgtmp_db_open(conninfo);

    (void)state;
    ops[0] = vote_op(sid, poll, u1, "good", (uint8_t[]){0}, 1);
    ops[1] = vote_op(sid, poll + 1000000, u2, "no such poll", (uint8_t[]){0}, 1);
    ops[2] = vote_op(sid, poll, u2, "good too", (uint8_t[]){1}, 1);
    ops[3] = poll_op(sid + 1000000, POLL_SINGLE, 2, 1); /* no such session */
    ops[4] = session_op();
    tracker_reset();
    g = gate_close(s);
    failed = atomic_load(&s->n_failed_batches);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        assert_true(store_submit(s, ops[i]));
    gate_open();
    wait_done(1 + ARRAY_LEN(ops));
    assert_int_equal(atomic_load(&s->n_failed_batches) - failed, 1);
    assert_int_equal(ops[0]->status, STORE_OK);
    assert_int_equal(ops[1]->status, STORE_UNAVAILABLE);
    assert_int_equal(ops[2]->status, STORE_OK);
    assert_int_equal(ops[3]->status, STORE_UNAVAILABLE);
    assert_int_equal(ops[4]->status, STORE_OK);
    assert_true(store_available(s)); /* the connection survived */
    assert_votes_table(poll, (struct store_op *[]){ops[0], ops[2]}, 2);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM event_log WHERE session_id > 1000000", 0, NULL), 0);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        store_op_free(ops[i]);
    store_op_free(g);
    PQfinish(c);
    store_destroy(s);
}

/* ---- limits and stopping ------------------------------------------------ */

static void test_batch_limit(void **state)
{
    enum { N = STORE_BATCH_MAX + STORE_BATCH_MAX / 2 };
    struct store *s = store_up(conninfo, 1, N, "inst-a");
    struct store_op *g, **ops = xcalloc(N, sizeof(*ops));
    uint64_t batches;

    (void)state;
    tracker_reset();
    g = gate_close(s);
    batches = atomic_load(&s->n_batches);
    for (unsigned i = 0; i < N; i++) {
        ops[i] = op_new(STORE_VOTE_LOOKUP);
        ops[i]->vote.participant_id = 1;
        snprintf(ops[i]->vote.idem_key, sizeof(ops[i]->vote.idem_key), "absent-%u", i);
        assert_true(store_submit(s, ops[i]));
    }
    gate_open();
    wait_done(N + 1);
    /* 1500 queued operations: one full batch, then the rest. */
    assert_int_equal(atomic_load(&s->n_batches) - batches, 2);
    assert_int_equal(atomic_load(&s->batch_max_seen), STORE_BATCH_MAX);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(ops[i]->status, STORE_NOT_FOUND);
        assert_int_equal(ops[i]->tag, 1);
        store_op_free(ops[i]);
    }
    free(ops);
    store_op_free(g);
    store_destroy(s);
}

static unsigned tracker_count(void)
{
    unsigned n;

    pthread_mutex_lock(&tracker.lock);
    n = tracker.done;
    pthread_mutex_unlock(&tracker.lock);
    return n;
}

static struct store_op *lookup_op(unsigned i)
{
    struct store_op *op = op_new(STORE_VOTE_LOOKUP);

    op->vote.participant_id = 1;
    snprintf(op->vote.idem_key, sizeof(op->vote.idem_key), "join-%u", i);
    return op;
}

/*
 * While one writer commits, a few waiting operations are left for its next
 * batch (one transaction instead of several small ones); once
 * STORE_JOIN_MIN wait, an idle writer takes them at once beside it.
 */
static void test_join_policy(void **state)
{
    enum { FEW = 10, N = STORE_JOIN_MIN + FEW };
    struct store *s = store_up(conninfo, 2, 0, "inst-a");
    struct store_op *g, *ops[N];
    uint64_t batches;

    (void)state;
    tracker_reset();
    g = gate_close(s); /* one writer busy, the other idle */
    batches = atomic_load(&s->n_batches);
    for (unsigned i = 0; i < FEW; i++) {
        ops[i] = lookup_op(i);
        assert_true(store_submit(s, ops[i]));
    }
    usleep(300 * 1000);
    assert_int_equal(tracker_count(), 0); /* the idle writer left them waiting */
    for (unsigned i = FEW; i < N; i++) {
        ops[i] = lookup_op(i);
        assert_true(store_submit(s, ops[i]));
    }
    /* The gate is still closed: the idle writer took what was queued once
     * STORE_JOIN_MIN waited, in one batch. Ops that arrived after it took
     * them (fewer than STORE_JOIN_MIN) wait for a writer to be free again,
     * as below the threshold they must. */
    for (unsigned ms = 0; tracker_count() < STORE_JOIN_MIN && ms < 10000; ms += 10)
        usleep(10 * 1000);
    assert_in_range(tracker_count(), STORE_JOIN_MIN, N);
    assert_in_range(atomic_load(&s->n_batches) - batches, 1, 2);
    gate_open();
    wait_done(N + 1);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(ops[i]->status, STORE_NOT_FOUND);
        store_op_free(ops[i]);
    }
    store_op_free(g);

    /* With nobody busy, a lone operation commits at once. */
    ops[0] = lookup_op(0);
    submit_wait(s, ops[0]);
    assert_int_equal(ops[0]->status, STORE_NOT_FOUND);
    store_op_free(ops[0]);
    store_destroy(s);
}

static void check_queue_limit(uint32_t queue_max)
{
    struct store *s = store_up(conninfo, 1, queue_max, "inst-a");
    struct store_op *g, **ops = xcalloc(queue_max + 1, sizeof(*ops));

    tracker_reset();
    g = gate_close(s);
    for (uint32_t i = 0; i <= queue_max; i++) {
        ops[i] = op_new(STORE_VOTE_LOOKUP);
        ops[i]->vote.participant_id = 1;
        strcpy(ops[i]->vote.idem_key, "absent");
        /* Exactly queue_max fit while the writer is busy. */
        assert_int_equal(store_submit(s, ops[i]), i < queue_max);
    }
    gate_open();
    wait_done(queue_max + 1);
    assert_int_equal(ops[queue_max]->tag, 0); /* refused: still the caller's */
    submit_wait(s, ops[queue_max]);
    assert_int_equal(ops[queue_max]->status, STORE_NOT_FOUND);
    for (uint32_t i = 0; i <= queue_max; i++)
        store_op_free(ops[i]);
    free(ops);
    store_op_free(g);
    store_destroy(s);
}

static void test_queue_limit(void **state)
{
    (void)state;
    check_queue_limit(1);
    check_queue_limit(7);
    check_queue_limit(8);
}

static void test_stop_commits_queued(void **state)
{
    enum { N = 300 };
    struct store *s = store_up(conninfo, 2, 0, "inst-a");
    int64_t sid = make_session(s);
    struct store_op *ops[N], *late = participant_op(sid, NULL);
    PGconn *c = pgtmp_db_open(conninfo);
    char sids[STORE_I64_MAX];
    const char *p[1] = {sids};

    (void)state;
    tracker_reset();
    for (unsigned i = 0; i < N; i++) {
        ops[i] = participant_op(sid, NULL);
        assert_true(store_submit(s, ops[i]));
    }
    store_stop(s);
    assert_int_equal(tracker.done, N);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(ops[i]->tag, 1);
        assert_int_equal(ops[i]->status, STORE_OK);
        store_op_free(ops[i]);
    }
    fmt_i64(sids, sid);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM participants WHERE session_id = $1", 1, p), N);
    assert_false(store_submit(s, late));
    assert_false(store_available(s));
    store_stop(s); /* twice is harmless */
    store_op_free(late);
    PQfinish(c);
    store_destroy(s);
}

/* ---- loading ------------------------------------------------------------ */

struct collected {
    char order[64]; /* one letter per row: s, p, u, v */
    unsigned n;
    struct store_session_row sessions[4];
    char titles[4][64];
    struct store_poll_row polls[4];
    char options[4][4][64];
    int64_t parts[4][2];
    char part_hash[4][STORE_HASH_HEX + 1];
    struct store_vote_count counts[8];
    unsigned n_sessions, n_polls, n_parts, n_counts;
};

static void note(struct collected *c, char kind)
{
    assert_true(c->n + 1 < sizeof(c->order));
    c->order[c->n++] = kind;
}

static void on_session_row(void *arg, const struct store_session_row *row)
{
    struct collected *c = arg;

    note(c, 's');
    assert_true(c->n_sessions < ARRAY_LEN(c->sessions));
    c->sessions[c->n_sessions] = *row;
    str_copy(c->titles[c->n_sessions], sizeof(c->titles[0]), row->title);
    assert_time(row->created_at);
    assert_int_equal(strlen(row->token_hash), STORE_HASH_HEX);
    c->n_sessions++;
}

static void on_poll_row(void *arg, const struct store_poll_row *row)
{
    struct collected *c = arg;

    note(c, 'p');
    assert_true(c->n_polls < ARRAY_LEN(c->polls));
    c->polls[c->n_polls] = *row;
    for (uint32_t i = 0; i < row->n_options && i < 4; i++)
        str_copy(c->options[c->n_polls][i], sizeof(c->options[0][0]), row->options[i]);
    c->n_polls++;
}

static void on_participant_row(void *arg, int64_t session_id, int64_t id, const char *token_hash)
{
    struct collected *c = arg;

    note(c, 'u');
    assert_true(c->n_parts < ARRAY_LEN(c->parts));
    c->parts[c->n_parts][0] = session_id;
    c->parts[c->n_parts][1] = id;
    str_copy(c->part_hash[c->n_parts], sizeof(c->part_hash[0]), token_hash);
    c->n_parts++;
}

static void on_vote_count_row(void *arg, const struct store_vote_count *row)
{
    struct collected *c = arg;

    note(c, 'v');
    assert_true(c->n_counts < ARRAY_LEN(c->counts));
    c->counts[c->n_counts++] = *row;
}

#define FIXTURE_VOTES 5

struct load_fixture {
    struct store_op *s1, *s2, *p[3], *u[3], *v[FIXTURE_VOTES];
};

static void load_fixture_build(struct store *s, struct load_fixture *f)
{
    struct store_op *op;

    f->s1 = session_op();
    free(f->s1->text);
    f->s1->text = xstrdup("Quiz \"one\" ünï");
    f->s2 = session_op();
    submit_wait(s, f->s1);
    submit_wait(s, f->s2);
    f->p[0] = poll_op(f->s1->id, POLL_SINGLE, 3, 1);
    free(f->p[0]->poll.options[1]);
    f->p[0]->poll.options[1] = xstrdup("No, \"really\" \\ ünï");
    f->p[1] = poll_op(f->s1->id, POLL_MULTI, 3, 2);
    f->p[2] = poll_op(f->s2->id, POLL_RATING, 4, 1);
    f->u[0] = participant_op(f->s1->id, "Ann");
    f->u[1] = participant_op(f->s1->id, NULL);
    f->u[2] = participant_op(f->s2->id, "Cy");
    for (int i = 0; i < 3; i++) {
        submit_wait(s, f->p[i]);
        submit_wait(s, f->u[i]);
    }
    store_op_free(change_state(s, STORE_POLL_OPEN, f->s1->id, f->p[1]->id));
    store_op_free(change_state(s, STORE_POLL_OPEN, f->s2->id, f->p[2]->id));
    store_op_free(change_state(s, STORE_POLL_CLOSE, f->s2->id, f->p[2]->id));
    op = change_state(s, STORE_SESSION_CLOSE, f->s2->id, 0);
    store_op_free(op);
    f->v[0] = vote_op(f->s1->id, f->p[1]->id, f->u[0]->id, "a", (uint8_t[]){0, 2}, 2);
    f->v[1] = vote_op(f->s1->id, f->p[1]->id, f->u[1]->id, "b\"", (uint8_t[]){1}, 1);
    f->v[2] = vote_op(f->s1->id, f->p[0]->id, f->u[0]->id, "c", (uint8_t[]){2}, 1);
    f->v[3] = vote_op(f->s2->id, f->p[2]->id, f->u[2]->id, "d", (uint8_t[]){3}, 1);
    f->v[4] = vote_op(f->s1->id, f->p[0]->id, f->u[1]->id, "e", (uint8_t[]){2}, 1); /* as v[2] */
    for (int i = 0; i < FIXTURE_VOTES; i++) {
        submit_wait(s, f->v[i]);
        assert_int_equal(f->v[i]->status, STORE_OK);
    }
}

static void load_fixture_free(struct load_fixture *f)
{
    store_op_free(f->s1);
    store_op_free(f->s2);
    for (int i = 0; i < 3; i++) {
        store_op_free(f->p[i]);
        store_op_free(f->u[i]);
    }
    for (int i = 0; i < FIXTURE_VOTES; i++)
        store_op_free(f->v[i]);
}

/* The count row of poll with exactly these choices, or NULL. */
static const struct store_vote_count *count_of(const struct collected *c, const struct store_vote *v)
{
    for (unsigned i = 0; i < c->n_counts; i++) {
        const struct store_vote_count *r = &c->counts[i];

        if (r->poll_id == v->poll_id && r->n_choices == v->n_choices &&
            memcmp(r->choices, v->choices, v->n_choices) == 0)
            return r;
    }
    return NULL;
}

/* Votes come as counts per (poll, choices), in no particular order. */
static void assert_vote_counts(const struct collected *c, const struct load_fixture *f, int64_t id_max)
{
    uint64_t sum = 0;
    int64_t want_max = 0;

    for (int i = 0; i < FIXTURE_VOTES; i++) {
        const struct store_vote_count *r = count_of(c, &f->v[i]->vote);
        uint64_t same = 0;

        assert_non_null(r);
        assert_int_equal(r->session_id, f->v[i]->session_id);
        for (int k = 0; k < FIXTURE_VOTES; k++)
            same += count_of(c, &f->v[k]->vote) == r;
        assert_int_equal(r->votes, same);
        if (f->v[i]->vote.id > want_max)
            want_max = f->v[i]->vote.id;
    }
    for (unsigned i = 0; i < c->n_counts; i++)
        sum += c->counts[i].votes;
    assert_int_equal(sum, FIXTURE_VOTES);
    assert_int_equal(c->n_counts, FIXTURE_VOTES - 1); /* v[2] and v[4] share a row */
    assert_int_equal(id_max, want_max);
}

static void assert_loaded(struct collected *c, const struct load_fixture *f, int64_t id_max)
{
    assert_string_equal(c->order, "sspppuuuvvvv"); /* five votes, four (poll, choices) */
    assert_int_equal(c->sessions[0].id, f->s1->id);
    assert_string_equal(c->titles[0], "Quiz \"one\" ünï");
    assert_false(c->sessions[0].closed);
    assert_int_equal(c->sessions[0].seq, 3); /* two polls created, one opened */
    assert_int_equal(c->sessions[1].id, f->s2->id);
    assert_true(c->sessions[1].closed);
    assert_int_equal(c->sessions[1].seq, 4);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c->polls[i].id, f->p[i]->id);
        assert_int_equal(c->polls[i].kind, f->p[i]->poll.kind);
        assert_int_equal(c->polls[i].n_options, f->p[i]->poll.n_options);
        assert_int_equal(c->polls[i].max_choices, f->p[i]->poll.max_choices);
        for (uint32_t k = 0; k < c->polls[i].n_options && k < 4; k++)
            assert_string_equal(c->options[i][k], f->p[i]->poll.options[k]);
        assert_int_equal(c->parts[i][0], f->u[i]->session_id);
        assert_int_equal(c->parts[i][1], f->u[i]->id);
        assert_string_equal(c->part_hash[i], f->u[i]->token_hash);
    }
    assert_int_equal(c->polls[0].state, 0);
    assert_int_equal(c->polls[1].state, 1);
    assert_int_equal(c->polls[2].state, 2);
    assert_vote_counts(c, f, id_max);
}

static void test_load(void **state)
{
    char ci[CONNINFO_MAX];
    struct store *s;
    struct load_fixture f;
    struct collected *c = xcalloc(1, sizeof(*c));
    struct store_loader l = {c, on_session_row, on_poll_row, on_participant_row, on_vote_count_row, -1};
    struct store_loader votes_only = {c, NULL, NULL, NULL, on_vote_count_row, -1};

    (void)state;
    db_run(conninfo, "CREATE DATABASE load_db");
    conninfo_db(ci, sizeof(ci), "load_db");
    s = store_up(ci, 2, 0, "inst-a");
    load_fixture_build(s, &f);
    assert_int_equal(store_load(s, &l), 0);
    assert_loaded(c, &f, l.vote_id_max);
    memset(c, 0, sizeof(*c));
    assert_int_equal(store_load(s, &votes_only), 0);
    assert_string_equal(c->order, "vvvv");
    assert_vote_counts(c, &f, votes_only.vote_id_max);

    /* Rows the store cannot have written are refused, not half-loaded. */
    db_run(ci, "UPDATE polls SET options = '[\"a\", 5]' WHERE id = (SELECT min(id) FROM polls)");
    memset(c, 0, sizeof(*c));
    assert_int_equal(store_load(s, &l), -EIO);
    db_run(ci, "UPDATE polls SET options = '[\"a\", \"b\"]'");
    db_run(ci, "UPDATE votes SET choices = '{300}' WHERE id = (SELECT min(id) FROM votes)");
    memset(c, 0, sizeof(*c));
    assert_int_equal(store_load(s, &l), -EIO);
    db_run(ci, "UPDATE votes SET choices = '{0}'");
    memset(c, 0, sizeof(*c));
    assert_int_equal(store_load(s, &l), 0);
    load_fixture_free(&f);
    free(c);
    store_destroy(s);
}

/* ---- state changes, counts, instances and finding sessions -------------- */

/* The session's seq and its event_log rows (count). */
static void assert_session_events(PGconn *c, int64_t sid, int64_t seq, int64_t rows)
{
    char sids[STORE_I64_MAX];
    const char *p[1] = {sids};

    fmt_i64(sids, sid);
    assert_int_equal(pgtmp_db_i64(c, "SELECT seq FROM sessions WHERE id = $1", 1, p), seq);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM event_log WHERE session_id = $1", 1, p), rows);
}

static const char *poll_state_of(PGconn *c, int64_t poll, char out[16])
{
    char pid[STORE_I64_MAX];
    const char *p[1] = {pid};
    PGresult *res;

    fmt_i64(pid, poll);
    res = pgtmp_db_q(c, "SELECT state FROM polls WHERE id = $1", 1, p);
    assert_int_equal(PQntuples(res), 1);
    str_copy(out, 16, PQgetvalue(res, 0, 0));
    PQclear(res);
    return out;
}

/* A change from a state the row is no longer in is refused: CONFLICT when
 * the row exists, NOT_FOUND when it does not; either way no event. */
static void test_state_change_conflict(void **state)
{
    struct store *s = store_up(conninfo, 1, 0, "inst-a");
    int64_t sid = make_session(s), other = make_session(s), seq = 0;
    int64_t poll = make_poll(s, sid, &seq), draft, foreign;
    struct store_op *op;
    PGconn *c = pgtmp_db_open(conninfo);
    char st[16];

    (void)state;
    assert_int_equal(seq, 1);
    foreign = make_poll(s, other, NULL);
    op = change_state(s, STORE_POLL_OPEN, sid, poll);
    assert_int_equal(op->status, STORE_OK);
    assert_int_equal(op->seq, 2);
    store_op_free(op);
    assert_session_events(c, sid, 2, 2);

    /* Opened twice: the second is refused and appends nothing. */
    op = change_state(s, STORE_POLL_OPEN, sid, poll);
    assert_int_equal(op->status, STORE_CONFLICT);
    assert_int_equal(op->seq, 0);
    store_op_free(op);
    assert_session_events(c, sid, 2, 2);
    assert_string_equal(poll_state_of(c, poll, st), "open");

    /* A draft poll cannot be closed. */
    draft = make_poll(s, sid, &seq);
    assert_int_equal(seq, 3);
    op = change_state(s, STORE_POLL_CLOSE, sid, draft);
    assert_int_equal(op->status, STORE_CONFLICT);
    assert_int_equal(op->seq, 0);
    assert_false(op->counted);
    store_op_free(op);
    assert_session_events(c, sid, 3, 3);
    assert_string_equal(poll_state_of(c, draft, st), "draft");

    /* No such poll, or a poll of another session: NOT_FOUND. */
    op = change_state(s, STORE_POLL_CLOSE, sid, foreign + poll + 1000000);
    assert_int_equal(op->status, STORE_NOT_FOUND);
    assert_int_equal(op->seq, 0);
    store_op_free(op);
    op = change_state(s, STORE_POLL_CLOSE, sid, foreign);
    assert_int_equal(op->status, STORE_NOT_FOUND);
    store_op_free(op);
    op = change_state(s, STORE_POLL_OPEN, sid, foreign);
    assert_int_equal(op->status, STORE_NOT_FOUND);
    store_op_free(op);
    assert_string_equal(poll_state_of(c, foreign, st), "draft");
    assert_session_events(c, sid, 3, 3);
    assert_session_events(c, other, 1, 1);

    /* Closed, then closed or opened again: refused. */
    op = change_state(s, STORE_POLL_CLOSE, sid, poll);
    assert_int_equal(op->status, STORE_OK);
    assert_int_equal(op->seq, 4);
    store_op_free(op);
    op = change_state(s, STORE_POLL_CLOSE, sid, poll);
    assert_int_equal(op->status, STORE_CONFLICT);
    store_op_free(op);
    op = change_state(s, STORE_POLL_OPEN, sid, poll);
    assert_int_equal(op->status, STORE_CONFLICT);
    store_op_free(op);
    assert_string_equal(poll_state_of(c, poll, st), "closed");
    assert_session_events(c, sid, 4, 4);

    /* The session closed twice: the second is refused; an unknown one is not found. */
    op = change_state(s, STORE_SESSION_CLOSE, sid, 0);
    assert_int_equal(op->status, STORE_OK);
    assert_int_equal(op->seq, 5);
    store_op_free(op);
    op = change_state(s, STORE_SESSION_CLOSE, sid, 0);
    assert_int_equal(op->status, STORE_CONFLICT);
    assert_int_equal(op->seq, 0);
    store_op_free(op);
    op = change_state(s, STORE_SESSION_CLOSE, sid + other + 1000000, 0);
    assert_int_equal(op->status, STORE_NOT_FOUND);
    store_op_free(op);
    assert_session_events(c, sid, 5, 5);
    {
        char sids[STORE_I64_MAX];

        fmt_i64(sids, sid);
        assert_int_equal(pgtmp_db_i64(c,
                                "SELECT count(*) FROM event_log WHERE session_id = $1 "
                                "AND type IN ('poll.opened', 'poll.closed', 'session.closed')",
                                1, (const char *[]){sids}),
                         3);
    }
    PQfinish(c);
    store_destroy(s);
}

/* What the close's event callback saw and returned (it runs on a writer). */
struct close_seen {
    pthread_mutex_t lock;
    uint32_t n_options;
    unsigned calls;
    bool counted;
    char payload[512];
};

/* As the session actor does: the close event carries the counts the
 * database returned, read from the op inside the transaction. */
static char *close_counts_payload(const struct store_op *op)
{
    struct close_seen *seen = op->owner;
    struct buf b = BUF_INIT;
    char *out;

    pthread_mutex_lock(&seen->lock);
    buf_printf(&b, "{\"id\": %" PRId64 ", \"seq\": %" PRId64 ", \"counted\": %s, \"total\": %" PRIu64
                   ", \"counts\": [",
               op->id, op->seq, op->counted ? "true" : "false", op->total);
    for (uint32_t i = 0; i < seen->n_options; i++)
        buf_printf(&b, i ? ", %" PRIu64 : "%" PRIu64, op->counts[i]);
    buf_append(&b, "]}", 3);
    out = xstrdup(b.data);
    buf_free(&b);
    seen->calls++;
    seen->counted = op->counted;
    str_copy(seen->payload, sizeof(seen->payload), out);
    pthread_mutex_unlock(&seen->lock);
    return out;
}

static void test_close_counts(void **state)
{
    struct store *s = store_up(conninfo, 1, 0, "inst-a");
    int64_t sid = make_session(s), other = make_session(s), u[3], w;
    struct store_op *p = poll_op(sid, POLL_MULTI, 3, 2), *q = poll_op(other, POLL_MULTI, 3, 2), *op;
    static const uint8_t choices[3][2] = {{0, 1}, {1}, {2}};
    static const uint32_t n_choices[3] = {2, 1, 1};
    struct close_seen seen = {PTHREAD_MUTEX_INITIALIZER, 3, 0, false, ""};
    PGconn *c = pgtmp_db_open(conninfo);
    char sids[STORE_I64_MAX], seqs[STORE_I64_MAX], want[512];
    PGresult *res;

    (void)state;
    submit_wait(s, p);
    submit_wait(s, q);
    assert_int_equal(p->status, STORE_OK);
    assert_int_equal(q->status, STORE_OK);
    store_op_free(change_state(s, STORE_POLL_OPEN, sid, p->id));
    for (int i = 0; i < 3; i++) {
        char key[16];

        u[i] = make_participant(s, sid);
        snprintf(key, sizeof(key), "close-%d", i);
        op = vote_op(sid, p->id, u[i], key, choices[i], n_choices[i]);
        submit_wait(s, op);
        assert_int_equal(op->status, STORE_OK);
        store_op_free(op);
    }
    /* A vote on another poll is not counted. */
    w = make_participant(s, other);
    op = vote_op(other, q->id, w, "elsewhere", (uint8_t[]){0, 2}, 2);
    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    store_op_free(op);

    op = op_new(STORE_POLL_CLOSE);
    op->session_id = sid;
    op->id = p->id;
    op->event = close_counts_payload;
    op->owner = &seen;
    op->total = 77; /* proves the store sets them */
    op->counts[0] = 77;
    op->counts[5] = 77;
    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    assert_int_equal(op->seq, 3);
    assert_true(op->counted);
    assert_int_equal(op->total, 3);
    assert_int_equal(op->counts[0], 1);
    assert_int_equal(op->counts[1], 2);
    assert_int_equal(op->counts[2], 1);
    for (uint32_t i = 3; i < API_OPTIONS_MAX; i++)
        assert_int_equal(op->counts[i], 0);

    /* The event written is the callback's, built from the counts. */
    pthread_mutex_lock(&seen.lock);
    assert_int_equal(seen.calls, 1);
    assert_true(seen.counted);
    snprintf(want, sizeof(want),
             "{\"id\": %" PRId64 ", \"seq\": 3, \"counted\": true, \"total\": 3, \"counts\": [1, 2, 1]}", p->id);
    assert_string_equal(seen.payload, want);
    pthread_mutex_unlock(&seen.lock);
    fmt_i64(sids, sid);
    fmt_i64(seqs, op->seq);
    res = pgtmp_db_q(c,
               "SELECT type, payload = $3::jsonb, payload->>'counts', instance_id FROM event_log "
               "WHERE session_id = $1 AND seq = $2",
               3, (const char *[]){sids, seqs, want});
    assert_int_equal(PQntuples(res), 1);
    assert_string_equal(PQgetvalue(res, 0, 0), "poll.closed");
    assert_string_equal(PQgetvalue(res, 0, 1), "t");
    assert_string_equal(PQgetvalue(res, 0, 2), "[1, 2, 1]");
    assert_string_equal(PQgetvalue(res, 0, 3), "inst-a");
    PQclear(res);
    store_op_free(op);

    /* The other poll: a vote still being inserted by another instance when
     * the close arrives is waited for and counted. */
    seen.calls = 0;
    store_op_free(change_state(s, STORE_POLL_OPEN, other, q->id));
    {
        PGconn *side = pgtmp_db_open(conninfo);
        char qid[STORE_I64_MAX], oid[STORE_I64_MAX], wid[STORE_I64_MAX];
        int64_t waiting = 0;

        fmt_i64(qid, q->id);
        fmt_i64(oid, other);
        fmt_i64(wid, make_participant(s, other));
        PQclear(pgtmp_db_q(side, "BEGIN", 0, NULL));
        PQclear(pgtmp_db_q(side,
                     "INSERT INTO votes(session_id, poll_id, participant_id, choices, idem_key) "
                     "VALUES ($1, $2, $3, '{1,2}', 'in flight')",
                     3, (const char *[]){oid, qid, wid}));
        op = op_new(STORE_POLL_CLOSE);
        op->session_id = other;
        op->id = q->id;
        op->event = close_counts_payload;
        op->owner = &seen;
        tracker_reset();
        assert_true(store_submit(s, op));
        /* The writer waits on the poll row the vote's foreign key holds. */
        for (unsigned ms = 0; waiting == 0 && ms < 10000; ms += 10) {
            waiting = pgtmp_db_i64(c,
                             "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                             "'tallyd-writer inst-a' AND wait_event_type = 'Lock'",
                             0, NULL);
            if (waiting == 0)
                usleep(10 * 1000);
        }
        assert_int_equal(waiting, 1);
        assert_int_equal(tracker_count(), 0);
        PQclear(pgtmp_db_q(side, "COMMIT", 0, NULL));
        PQfinish(side);
        wait_done(1);
    }
    assert_int_equal(op->status, STORE_OK);
    assert_true(op->counted);
    assert_int_equal(op->total, 2);
    assert_int_equal(op->counts[0], 1);
    assert_int_equal(op->counts[1], 1);
    assert_int_equal(op->counts[2], 2);
    pthread_mutex_lock(&seen.lock);
    assert_int_equal(seen.calls, 1);
    assert_non_null(strstr(seen.payload, "\"total\": 2, \"counts\": [1, 1, 2]"));
    pthread_mutex_unlock(&seen.lock);
    store_op_free(op);

    store_op_free(p);
    store_op_free(q);
    PQfinish(c);
    store_destroy(s);
}

static struct store_op *counts_op(struct store *s, enum store_op_kind kind, int64_t sid, int64_t poll)
{
    struct store_op *op = op_new(kind);

    op->session_id = sid;
    op->id = poll;
    op->total = 12345; /* proves the store sets them */
    for (uint32_t i = 0; i < API_OPTIONS_MAX; i++)
        op->counts[i] = 12345;
    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    assert_true(op->counted);
    return op;
}

/* Counts come from the database: votes and participants taken by every
 * instance sharing it. */
static void test_poll_counts(void **state)
{
    struct store *a = store_up(conninfo, 2, 0, "inst-a"), *b = store_up(conninfo, 2, 0, "inst-b");
    int64_t sid = make_session(a), other = make_session(b), empty = make_session(a);
    struct store_op *p = poll_op(sid, POLL_MULTI, 4, 3), *op;
    int64_t bare = make_poll(b, sid, NULL), u[4];
    static const uint8_t choices[4][3] = {{0, 1}, {3}, {1, 2, 3}, {1}};
    static const uint32_t n_choices[4] = {2, 1, 3, 1};
    static const uint64_t want[4] = {1, 3, 1, 2};

    (void)state;
    submit_wait(a, p);
    assert_int_equal(p->status, STORE_OK);
    for (int i = 0; i < 4; i++) {
        struct store *via = i % 2 ? b : a;
        char key[16];

        u[i] = make_participant(via, sid);
        snprintf(key, sizeof(key), "count-%d", i);
        op = vote_op(sid, p->id, u[i], key, choices[i], n_choices[i]);
        submit_wait(via, op);
        assert_int_equal(op->status, STORE_OK);
        store_op_free(op);
    }
    make_participant(b, other);
    /* Asked of either instance, the same answer: every vote, whoever took it. */
    for (int k = 0; k < 2; k++) {
        op = counts_op(k ? b : a, STORE_POLL_COUNTS, 0, p->id);
        assert_int_equal(op->total, 4);
        for (uint32_t i = 0; i < 4; i++)
            assert_int_equal(op->counts[i], want[i]);
        for (uint32_t i = 4; i < API_OPTIONS_MAX; i++)
            assert_int_equal(op->counts[i], 0);
        store_op_free(op);
    }
    /* A poll without votes. */
    op = counts_op(a, STORE_POLL_COUNTS, 0, bare);
    assert_int_equal(op->total, 0);
    for (uint32_t i = 0; i < API_OPTIONS_MAX; i++)
        assert_int_equal(op->counts[i], 0);
    store_op_free(op);
    /* Participants of the session, joined through either store. */
    for (int k = 0; k < 2; k++) {
        op = counts_op(k ? b : a, STORE_PARTICIPANTS_COUNT, sid, 0);
        assert_int_equal(op->total, 4);
        store_op_free(op);
    }
    op = counts_op(a, STORE_PARTICIPANTS_COUNT, other, 0);
    assert_int_equal(op->total, 1);
    store_op_free(op);
    op = counts_op(b, STORE_PARTICIPANTS_COUNT, empty, 0);
    assert_int_equal(op->total, 0);
    store_op_free(op);
    store_op_free(p);
    store_destroy(a);
    store_destroy(b);
}

static void assert_own(const struct store_op *op, const bool *own, uint32_t n, int64_t first_seq)
{
    assert_int_equal(op->n_events, n);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(op->events[i].seq, first_seq + i);
        if (op->events[i].own != own[i])
            fail_msg("event %" PRId64 ": own is %d, want %d", op->events[i].seq, op->events[i].own, own[i]);
    }
}

/* A read from a base (store_count_base); the base as it left it in *b. */
static void counts_from(struct store *s, int64_t poll, struct store_count_base *b, uint64_t want_total,
                        const uint64_t want[4])
{
    struct store_op *op = op_new(STORE_POLL_COUNTS);

    op->id = poll;
    op->count_from_base = true;
    op->base = *b;
    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    assert_true(op->counted);
    assert_int_equal(op->total, want_total);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(op->counts[i], want[i]);
    assert_true(op->base.id >= b->id);
    *b = op->base;
    store_op_free(op);
}

/* Reads from a base count every committed vote, including one whose id is
 * smaller than votes read before it but whose transaction commits later;
 * once nothing is in flight the base catches up with the last vote, so a
 * read scans only what came after. */
static void test_poll_counts_from_base(void **state)
{
    struct store *s = store_up(conninfo, 2, 0, "inst-a");
    int64_t sid = make_session(s), poll = make_poll(s, sid, NULL), u[6], late_id;
    struct store_count_base b = {0};
    PGconn *side = pgtmp_db_open(conninfo);
    char sq[STORE_I64_MAX], pq[STORE_I64_MAX], uq[STORE_I64_MAX];
    struct store_op *op;

    (void)state;
    for (int i = 0; i < 6; i++)
        u[i] = make_participant(s, sid);
    counts_from(s, poll, &b, 0, (const uint64_t[4]){0, 0, 0, 0});
    for (int i = 0; i < 2; i++) {
        op = vote_op(sid, poll, u[i], i ? "b1" : "b0", (const uint8_t[]){(uint8_t)i}, 1);
        submit_wait(s, op);
        assert_int_equal(op->status, STORE_OK);
        store_op_free(op);
    }
    counts_from(s, poll, &b, 2, (const uint64_t[4]){1, 1, 0, 0});

    /* Another writer takes its transaction id, then a vote id, and holds
     * its transaction open while later votes commit and are read. */
    fmt_i64(sq, sid);
    fmt_i64(pq, poll);
    fmt_i64(uq, u[2]);
    PQclear(pgtmp_db_q(side, "BEGIN", 0, NULL));
    PQclear(pgtmp_db_q(side, "SELECT txid_current()", 0, NULL));
    late_id = pgtmp_db_i64(side,
                     "INSERT INTO votes(session_id, poll_id, participant_id, choices, idem_key) "
                     "VALUES ($1, $2, $3, '{2}', 'late') RETURNING id",
                     3, (const char *[]){sq, pq, uq});
    for (int i = 3; i < 5; i++) {
        op = vote_op(sid, poll, u[i], i == 3 ? "b3" : "b4", (const uint8_t[]){3}, 1);
        submit_wait(s, op);
        assert_int_equal(op->status, STORE_OK);
        assert_true(op->vote.id > late_id);
        store_op_free(op);
    }
    for (int k = 0; k < 4; k++) {
        counts_from(s, poll, &b, 4, (const uint64_t[4]){1, 1, 0, 2});
        assert_true(b.id < late_id); /* not settled past what is in flight */
    }
    PQclear(pgtmp_db_q(side, "COMMIT", 0, NULL));
    counts_from(s, poll, &b, 5, (const uint64_t[4]){1, 1, 1, 2});

    /* Nothing in flight: two reads later the base holds every vote. */
    op = vote_op(sid, poll, u[5], "b5", (const uint8_t[]){0}, 1);
    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    for (int k = 0; k < 3; k++)
        counts_from(s, poll, &b, 6, (const uint64_t[4]){2, 1, 1, 2});
    assert_int_equal(b.id, op->vote.id);
    assert_int_equal(b.total, 6);
    assert_int_equal(b.pend_xid, 0); /* nothing handed out since: nothing pending */
    store_op_free(op);
    /* The same as a count from scratch. */
    op = counts_op(s, STORE_POLL_COUNTS, sid, poll);
    assert_int_equal(op->total, 6);
    assert_int_equal(op->counts[0], 2);
    assert_int_equal(op->counts[3], 2);
    store_op_free(op);
    PQfinish(side);
    store_destroy(s);
}

/* A replay marks the rows this instance wrote as its own. */
static void test_events_since_own(void **state)
{
    struct store *a = store_up(conninfo, 1, 0, "inst-a"), *b = store_up(conninfo, 1, 0, "inst-b");
    int64_t sid = make_session(a), seq = 0, p1, p2;
    static const bool own_a[5] = {true, false, false, true, false};
    bool own_b[5];
    struct store_op *op;

    (void)state;
    p1 = make_poll(a, sid, &seq);
    assert_int_equal(seq, 1);
    p2 = make_poll(b, sid, &seq);
    assert_int_equal(seq, 2);
    store_op_free(change_state(b, STORE_POLL_OPEN, sid, p1));
    store_op_free(change_state(a, STORE_POLL_OPEN, sid, p2));
    op = change_state(b, STORE_SESSION_CLOSE, sid, 0);
    assert_int_equal(op->seq, 5);
    store_op_free(op);
    for (int i = 0; i < 5; i++)
        own_b[i] = !own_a[i];
    op = events_since(a, sid, 0);
    assert_own(op, own_a, 5, 1);
    store_op_free(op);
    op = events_since(b, sid, 0);
    assert_own(op, own_b, 5, 1);
    store_op_free(op);
    op = events_since(a, sid, 3);
    assert_own(op, own_a + 3, 2, 4);
    store_op_free(op);
    store_destroy(a);
    store_destroy(b);
}

/* The fixture of test_find_and_load_session: two sessions, the first
 * (x) with two polls, two participants and three votes, taken last. */
struct find_fixture {
    struct store_op *x, *y, *px[2], *py, *ux[2], *uy, *v[4];
};

static void find_fixture_build(struct store *s, struct find_fixture *f)
{
    f->x = session_op();
    f->y = session_op();
    submit_wait(s, f->x);
    submit_wait(s, f->y);
    assert_int_equal(f->x->status, STORE_OK);
    assert_int_equal(f->y->status, STORE_OK);
    f->px[0] = poll_op(f->x->id, POLL_SINGLE, 3, 1);
    f->px[1] = poll_op(f->x->id, POLL_MULTI, 3, 2);
    f->py = poll_op(f->y->id, POLL_SINGLE, 2, 1);
    f->ux[0] = participant_op(f->x->id, "Ann");
    f->ux[1] = participant_op(f->x->id, NULL);
    f->uy = participant_op(f->y->id, "Cy");
    struct store_op *all[] = {f->px[0], f->py, f->ux[0], f->uy, f->px[1], f->ux[1]};
    for (size_t i = 0; i < ARRAY_LEN(all); i++) {
        submit_wait(s, all[i]);
        assert_int_equal(all[i]->status, STORE_OK);
    }
    store_op_free(change_state(s, STORE_POLL_OPEN, f->x->id, f->px[1]->id));
    /* y's vote first, so that x holds the highest vote id. */
    f->v[0] = vote_op(f->y->id, f->py->id, f->uy->id, "y", (uint8_t[]){0}, 1);
    f->v[1] = vote_op(f->x->id, f->px[0]->id, f->ux[0]->id, "x1", (uint8_t[]){2}, 1);
    f->v[2] = vote_op(f->x->id, f->px[0]->id, f->ux[1]->id, "x2", (uint8_t[]){2}, 1);
    f->v[3] = vote_op(f->x->id, f->px[1]->id, f->ux[0]->id, "x3", (uint8_t[]){0, 1}, 2);
    for (int i = 0; i < 4; i++) {
        submit_wait(s, f->v[i]);
        assert_int_equal(f->v[i]->status, STORE_OK);
    }
}

static void find_fixture_free(struct find_fixture *f)
{
    store_op_free(f->x);
    store_op_free(f->y);
    store_op_free(f->px[0]);
    store_op_free(f->px[1]);
    store_op_free(f->py);
    store_op_free(f->ux[0]);
    store_op_free(f->ux[1]);
    store_op_free(f->uy);
    for (int i = 0; i < 4; i++)
        store_op_free(f->v[i]);
}

static void assert_found(struct store *s, const struct store_find *find, int64_t sid, int64_t pid)
{
    int64_t got_sid = -7, got_pid = -7;

    assert_int_equal(store_find_session(s, find, &got_sid, &got_pid), sid > 0 ? 1 : 0);
    assert_int_equal(got_sid, sid);
    assert_int_equal(got_pid, pid);
}

static void test_find_and_load_session(void **state)
{
    char ci[CONNINFO_MAX];
    struct store *s;
    struct find_fixture f;
    struct collected *c = xcalloc(1, sizeof(*c));
    struct store_loader l = {c, on_session_row, on_poll_row, on_participant_row, on_vote_count_row, -1};
    char absent[STORE_HASH_HEX + 1];
    const struct store_vote_count *r;
    int rc;

    (void)state;
    db_run(conninfo, "CREATE DATABASE find_db");
    conninfo_db(ci, sizeof(ci), "find_db");
    s = store_up(ci, 1, 0, "inst-a");
    find_fixture_build(s, &f);

    /* By code, poll, participant's token and presenter's token. */
    assert_found(s, &(struct store_find){.code = f.x->code}, f.x->id, 0);
    assert_found(s, &(struct store_find){.code = f.y->code}, f.y->id, 0);
    assert_found(s, &(struct store_find){.poll_id = f.px[1]->id}, f.x->id, 0);
    assert_found(s, &(struct store_find){.poll_id = f.py->id}, f.y->id, 0);
    assert_found(s, &(struct store_find){.token_hash = f.ux[1]->token_hash}, f.x->id, f.ux[1]->id);
    assert_found(s, &(struct store_find){.token_hash = f.uy->token_hash}, f.y->id, f.uy->id);
    assert_found(s, &(struct store_find){.token_hash = f.x->token_hash}, f.x->id, 0);
    assert_found(s, &(struct store_find){.token_hash = f.y->token_hash}, f.y->id, 0);
    /* Unknown: 0, and nothing named. */
    memset(absent, 'f', STORE_HASH_HEX);
    absent[STORE_HASH_HEX] = '\0';
    assert_found(s, &(struct store_find){.code = "ZZZZZZ"}, 0, 0);
    assert_found(s, &(struct store_find){.poll_id = f.px[0]->id + f.py->id + 1000000}, 0, 0);
    assert_found(s, &(struct store_find){.token_hash = absent}, 0, 0);

    /* x, and only x: its session row, polls, participants and vote counts. */
    assert_int_equal(store_load_session(s, f.x->id, &l), 0);
    assert_string_equal(c->order, "sppuuvv");
    assert_int_equal(c->n_sessions, 1);
    assert_int_equal(c->sessions[0].id, f.x->id);
    assert_string_equal(c->titles[0], "A session");
    assert_false(c->sessions[0].closed);
    assert_int_equal(c->sessions[0].seq, 3); /* two polls created, one opened */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c->polls[i].id, f.px[i]->id);
        assert_int_equal(c->polls[i].session_id, f.x->id);
        assert_int_equal(c->polls[i].kind, f.px[i]->poll.kind);
        assert_int_equal(c->polls[i].n_options, 3);
        assert_int_equal(c->polls[i].state, i);
        assert_int_equal(c->parts[i][0], f.x->id);
        assert_int_equal(c->parts[i][1], f.ux[i]->id);
        assert_string_equal(c->part_hash[i], f.ux[i]->token_hash);
    }
    r = count_of(c, &f.v[1]->vote);
    assert_non_null(r);
    assert_int_equal(r->session_id, f.x->id);
    assert_int_equal(r->votes, 2); /* v[1] and v[2] */
    r = count_of(c, &f.v[3]->vote);
    assert_non_null(r);
    assert_int_equal(r->votes, 1);
    assert_null(count_of(c, &f.v[0]->vote));
    assert_int_equal(l.vote_id_max, f.v[3]->vote.id);

    /* y alone. */
    memset(c, 0, sizeof(*c));
    l.vote_id_max = -1;
    assert_int_equal(store_load_session(s, f.y->id, &l), 0);
    assert_string_equal(c->order, "spuv");
    assert_int_equal(c->sessions[0].id, f.y->id);
    assert_int_equal(c->polls[0].id, f.py->id);
    assert_int_equal(c->parts[0][1], f.uy->id);
    assert_int_equal(c->counts[0].poll_id, f.py->id);
    assert_int_equal(c->counts[0].votes, 1);
    assert_true(l.vote_id_max >= f.v[0]->vote.id); /* the snapshot's highest */

    /* A session that is not stored: nothing streamed, -ENOENT (store.h). */
    memset(c, 0, sizeof(*c));
    rc = store_load_session(s, f.x->id + f.y->id + 1000000, &l);
    assert_int_equal(c->n_sessions, 0);
    assert_string_equal(c->order, "");
    assert_int_equal(rc, -ENOENT);

    find_fixture_free(&f);
    free(c);
    store_destroy(s);
}

/* A start ends the connections a previous run of the same instance left
 * behind (as after SIGKILL), and only those. */
static void test_start_ends_previous_writers(void **state)
{
    struct store *old = store_up(conninfo, 2, 0, "inst-prev");
    struct store *other = store_up(conninfo, 1, 0, "inst-other");
    struct store *fresh;
    char pid[2][STORE_I64_MAX], opid[STORE_I64_MAX];
    PGconn *c = pgtmp_db_open(conninfo);

    (void)state;
    /* The writers idle: their connections are not touched while we read. */
    for (unsigned i = 0; i < 2; i++)
        fmt_i64(pid[i], PQbackendPID(old->writers[i].conn));
    fmt_i64(opid, PQbackendPID(other->writers[0].conn));
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                               "'tallyd-writer inst-prev'", 0, NULL), 2);
    fresh = store_up(conninfo, 1, 0, "inst-prev");
    for (unsigned i = 0; i < 2; i++)
        assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", 1,
                                (const char *[]){pid[i]}), 0);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", 1,
                            (const char *[]){opid}), 1);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                               "'tallyd-writer inst-prev'", 0, NULL), 1);
    PQfinish(c);
    store_destroy(fresh);
    store_destroy(other);
    store_destroy(old); /* its writers reconnect or fail: either way it stops */
}

/* ---- the connection breaks around COMMIT -------------------------------- */

/* How the commit hook cuts the writer's connection (one batch, then off). */
enum cut_mode {
    CUT_NONE,
    CUT_AFTER_COMMIT,  /* COMMIT sent and committed; its answer is lost */
    CUT_BACKEND_KILLED, /* the server ends the backend just before COMMIT */
    CUT_SILENT,        /* the client side goes dead; the server's backend lives on */
    CUT_REUSED_XID,    /* as after a crash: the batch's xid names another, committed transaction */
};

static struct {
    enum cut_mode mode;
    int kept_fd;      /* CUT_SILENT: the real socket, kept open so the server notices nothing */
    unsigned fired;
} cut = {CUT_NONE, -1, 0};

/* Replaces the connection's socket by one whose peer is gone: libpq reads
 * end of file and its writes fail, as after a network cut. */
static void cut_socket(PGconn *c)
{
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_true(dup2(sv[0], PQsocket(c)) >= 0);
    close(sv[0]);
    close(sv[1]);
}

static void wait_xid_committed(int64_t xid)
{
    char x[STORE_I64_MAX];
    const char *p[1] = {x};
    PGconn *side = pgtmp_db_open(conninfo);
    bool done = false;

    fmt_i64(x, xid);
    for (unsigned i = 0; i < 1000 && !done; i++) {
        PGresult *res = pgtmp_db_q(side, "SELECT txid_status($1::bigint) = 'committed'", 1, p);

        done = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (!done)
            usleep(10 * 1000);
    }
    PQfinish(side);
    assert_true(done);
}

static void kill_backend(int pid)
{
    char s[STORE_I64_MAX];
    const char *p[1] = {s};
    PGconn *side = pgtmp_db_open(conninfo);
    int64_t left = 1;

    fmt_i64(s, pid);
    PQclear(pgtmp_db_q(side, "SELECT pg_terminate_backend($1::int)", 1, p));
    for (unsigned i = 0; i < 1000 && left > 0; i++) {
        left = pgtmp_db_i64(side, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", 1, p);
        if (left > 0)
            usleep(10 * 1000);
    }
    PQfinish(side);
    assert_int_equal(left, 0);
}

/* Commits a transaction of its own and returns its id. */
static int64_t other_committed_xid(void)
{
    PGconn *side = pgtmp_db_open(conninfo);
    int64_t xid;

    PQclear(pgtmp_db_q(side, "BEGIN", 0, NULL));
    xid = pgtmp_db_i64(side, "SELECT txid_current()", 0, NULL);
    PQclear(pgtmp_db_q(side, "COMMIT", 0, NULL));
    PQfinish(side);
    return xid;
}

static void cut_hook(struct store_writer *w, bool after)
{
    PGconn *c = w->conn;

    if (cut.mode == CUT_NONE || w->xid == 0)
        return;
    if (cut.mode == CUT_AFTER_COMMIT && after) {
        wait_xid_committed(w->xid);
        cut_socket(c);
    } else if (cut.mode == CUT_BACKEND_KILLED && !after) {
        kill_backend(PQbackendPID(c));
    } else if (cut.mode == CUT_REUSED_XID && !after) {
        kill_backend(PQbackendPID(c));
        w->xid = other_committed_xid();
    } else if (cut.mode == CUT_SILENT && !after) {
        cut.kept_fd = dup(PQsocket(c));
        assert_true(cut.kept_fd >= 0);
        cut_socket(c);
    } else {
        return;
    }
    cut.fired++;
    cut.mode = CUT_NONE;
}

/* Submits a vote and a sequenced poll creation as one batch, with the
 * connection cut as mode says, and checks each is answered as committed,
 * exactly once in the database. */
static void check_cut(enum cut_mode mode, bool committed, bool rechecked)
{
    struct store *s = store_up(conninfo, 1, 0, "inst-a");
    int64_t sid = make_session(s), seq0, poll = make_poll(s, sid, &seq0), u = make_participant(s, sid);
    struct store_op *g, *ops[2];
    PGconn *c = pgtmp_db_open(conninfo);
    char sq[STORE_I64_MAX];
    const char *p[1] = {sq};

    ops[0] = vote_op(sid, poll, u, "cut", (uint8_t[]){2}, 1);
    ops[1] = poll_op(sid, POLL_SINGLE, 2, 1);
    tracker_reset();
    g = gate_close(s);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        assert_true(store_submit(s, ops[i]));
    cut = (typeof(cut)){mode, -1, 0};
    store__commit_hook = cut_hook;
    gate_open();
    wait_done(1 + ARRAY_LEN(ops));
    store__commit_hook = NULL;
    assert_int_equal(cut.fired, 1);
    /* A fresh store: its counters tell how the lost answer was resolved. */
    assert_int_equal(atomic_load(&s->n_resolved_committed), committed ? 1 : 0);
    assert_int_equal(atomic_load(&s->n_resolved_aborted), committed ? 0 : 1);
    assert_int_equal(atomic_load(&s->n_resolved_failed), 0);
    assert_int_equal(atomic_load(&s->n_rechecks) > 0, rechecked);
    assert_int_equal(atomic_load(&s->n_failed_batches), 0);
    assert_int_equal(ops[0]->status, STORE_OK);
    assert_int_equal(ops[0]->tag, 1);
    assert_true(ops[0]->vote.id > 0);
    assert_votes_table(poll, &ops[0], 1);
    assert_int_equal(ops[1]->status, STORE_OK);
    assert_int_equal(ops[1]->seq, seq0 + 1);
    fmt_i64(sq, sid);
    /* One event each, no gap, no repeat: the retried run reused the seq. */
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM event_log WHERE session_id = $1", 1, p), seq0 + 1);
    assert_int_equal(pgtmp_db_i64(c, "SELECT max(seq) FROM event_log WHERE session_id = $1", 1, p), seq0 + 1);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM polls WHERE session_id = $1", 1, p), 2);
    assert_true(store_available(s));
    if (cut.kept_fd >= 0)
        close(cut.kept_fd);
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        store_op_free(ops[i]);
    store_op_free(g);
    PQfinish(c);
    store_destroy(s);
}

/* COMMIT reached the server and committed; its answer did not come back.
 * txid_status says committed: the operations are answered as committed,
 * not failed and not run again. */
static void test_commit_answer_lost(void **state)
{
    (void)state;
    check_cut(CUT_AFTER_COMMIT, true, false);
}

/* The server ended the backend before COMMIT: txid_status says aborted, the
 * batch runs again on a new connection and commits once. */
static void test_commit_backend_killed(void **state)
{
    (void)state;
    check_cut(CUT_BACKEND_KILLED, false, false);
}

/* The client side died while the server's backend still holds the open
 * transaction ('in progress'): the writer ends that backend, finds the
 * transaction aborted and runs the batch again. */
static void test_commit_backend_lingers(void **state)
{
    (void)state;
    check_cut(CUT_SILENT, false, true);
}

/* ---- the database goes away and comes back ------------------------------ */

static void test_unavailable_then_recovers(void **state)
{
    struct store *s = store_up(conninfo, 2, 0, "inst-a");
    int64_t sid = make_session(s), poll = make_poll(s, sid, NULL), u = make_participant(s, sid);
    struct store_op *op = NULL;
    unsigned refused = 0, failed = 0;

    (void)state;
    pgembed_stop(cluster);
    cluster = NULL;
    /* Every op submitted now fails; after each writer noticed, submit refuses. */
    for (unsigned i = 0; i < 100 && refused == 0; i++) {
        op = vote_op(sid, poll, u, "while-down", (uint8_t[]){0}, 1);
        tracker_reset();
        if (store_submit(s, op)) {
            wait_done(1);
            assert_int_equal(op->status, STORE_UNAVAILABLE);
            failed++;
        } else {
            refused++;
        }
        store_op_free(op);
    }
    assert_int_equal(refused, 1);
    assert_in_range(failed, 1, 2); /* one per writer, then the store knows */
    assert_false(store_available(s));

    cluster = pgembed_start(data_dir, conninfo, sizeof(conninfo));
    assert_non_null(cluster);
    for (unsigned i = 0; i < 200 && !store_available(s); i++)
        usleep(50 * 1000);
    assert_true(store_available(s));
    /* The key of the failed attempts was never stored: the retry is new. */
    op = vote_op(sid, poll, u, "while-down", (uint8_t[]){0}, 1);
    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    assert_votes_table(poll, &op, 1);
    store_op_free(op);

    /* A restart while the writers idle: the next operation finds its
     * connection closed, reconnects at once and commits. */
    pgembed_stop(cluster);
    cluster = pgembed_start(data_dir, conninfo, sizeof(conninfo));
    assert_non_null(cluster);
    op = session_op();
    submit_wait(s, op);
    assert_int_equal(op->status, STORE_OK);
    store_op_free(op);
    store_destroy(s);
}

/* After a crash an id is handed out again: txid_status says committed, but
 * about another transaction. No row of ours carries the id, so the batch
 * did not commit and runs again. */
static void test_commit_xid_reused(void **state)
{
    (void)state;
    check_cut(CUT_REUSED_XID, false, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_choices),
        cmocka_unit_test(test_array_literals_roundtrip),
        cmocka_unit_test(test_create_limits),
        cmocka_unit_test(test_op_fail_drops_events),
        cmocka_unit_test(test_migrations_idempotent),
        cmocka_unit_test(test_migrations_concurrent),
        cmocka_unit_test(test_unreachable_database),
        cmocka_unit_test(test_session_create_and_conflict),
        cmocka_unit_test(test_session_conflict_in_one_batch),
        cmocka_unit_test(test_participant_create),
        cmocka_unit_test(test_events_sequence),
        cmocka_unit_test(test_events_in_one_batch),
        cmocka_unit_test(test_events_two_instances),
        cmocka_unit_test(test_events_since),
        cmocka_unit_test(test_events_since_in_batch),
        cmocka_unit_test(test_events_since_failed_batch),
        cmocka_unit_test(test_events_since_limit),
        cmocka_unit_test(test_events_prune),
        cmocka_unit_test(test_votes_concurrent),
        cmocka_unit_test(test_vote_duplicate_and_conflict),
        cmocka_unit_test(test_vote_conflicts_in_one_batch),
        cmocka_unit_test(test_refused_op_isolated),
        cmocka_unit_test(test_fresh_votes),
        cmocka_unit_test(test_batch_limit),
        cmocka_unit_test(test_join_policy),
        cmocka_unit_test(test_queue_limit),
        cmocka_unit_test(test_stop_commits_queued),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_state_change_conflict),
        cmocka_unit_test(test_close_counts),
        cmocka_unit_test(test_poll_counts),
        cmocka_unit_test(test_poll_counts_from_base),
        cmocka_unit_test(test_events_since_own),
        cmocka_unit_test(test_find_and_load_session),
        cmocka_unit_test(test_start_ends_previous_writers),
        cmocka_unit_test(test_commit_answer_lost),
        cmocka_unit_test(test_commit_backend_killed),
        cmocka_unit_test(test_commit_backend_lingers),
        cmocka_unit_test(test_commit_xid_reused),
        /* Last: it restarts the cluster. */
        cmocka_unit_test(test_unavailable_then_recovers),
    };

    if (!pgtmp_have_postgres()) {
        fprintf(stderr, "no PostgreSQL binaries: skipped\n");
        return 77;
    }
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
