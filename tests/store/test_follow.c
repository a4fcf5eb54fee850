/*
 * test_follow.c - the follower against a private PostgreSQL cluster: two
 * followers see each other (and not a stale row), a stopped one removes its
 * row; events another instance commits are reported within a poll or a
 * notification, an instance's own are not; every session's seq is reported
 * once after each connection (a new follower, and one whose connection the
 * server ended); each instance's participants per session reach the other.
 *
 * The callbacks run on each follower's thread: what they report is kept
 * under a mutex and the tests poll it against a deadline. Exits 77 when no
 * PostgreSQL binaries are installed.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "core/base.h"
#include "store/follow.h"
#include "store/pgembed.h"
#include "pgtmp.h"
#include "store/store.h"

#define CONNINFO_MAX 1024
#define REPORTS_MAX 4096
#define WAIT_MS 30000 /* completions of store operations */

static char tmp_root[64];
static char data_dir[128];
static char conninfo[CONNINFO_MAX];
static struct pgembed *cluster;
static unsigned name_seq;

/* ---- what a follower reported (written on its thread) ------------------- */

struct report {
    int64_t session_id;
    int64_t seq;
};

#define PRESENCE_MAX 8

struct observer {
    pthread_mutex_t lock;
    int peers; /* last on_peers; -1 before the first */
    /* Presence: this instance's counts (local_presence reads them) and the
     * others' last reported (on_presence writes them), per session. */
    int64_t local_ids[PRESENCE_MAX];
    int64_t local_n[PRESENCE_MAX];
    int64_t other_ids[PRESENCE_MAX];
    int64_t other_n[PRESENCE_MAX]; /* -1: never reported */
    unsigned peers_calls;
    struct report reports[REPORTS_MAX];
    unsigned n_reports;
    bool overflow;
};

/* The end of a test: the instances it registered go, the observers (NULL: none) are freed. */
static void test_end(PGconn *c, struct observer *oa, struct observer *ob)
{
    struct observer *obs[2] = {oa, ob};

    PQclear(pgtmp_db_q(c, "DELETE FROM instances", 0, NULL));
    PQfinish(c);
    for (unsigned i = 0; i < 2; i++) {
        if (obs[i] == NULL)
            continue;
        pthread_mutex_destroy(&obs[i]->lock);
        free(obs[i]);
    }
}

static void observer_init(struct observer *o)
{
    memset(o, 0, sizeof(*o));
    pthread_mutex_init(&o->lock, NULL);
    o->peers = -1;
    for (unsigned i = 0; i < PRESENCE_MAX; i++)
        o->other_n[i] = -1;
}

static void observer_clear(struct observer *o)
{
    pthread_mutex_lock(&o->lock);
    o->n_reports = 0;
    o->overflow = false;
    pthread_mutex_unlock(&o->lock);
}

static void on_event(void *arg, int64_t session_id, int64_t seq)
{
    struct observer *o = arg;

    pthread_mutex_lock(&o->lock);
    if (o->n_reports < REPORTS_MAX)
        o->reports[o->n_reports++] = (struct report){session_id, seq};
    else
        o->overflow = true;
    pthread_mutex_unlock(&o->lock);
}

static void on_peers(void *arg, unsigned peers)
{
    struct observer *o = arg;

    pthread_mutex_lock(&o->lock);
    o->peers = (int)peers;
    o->peers_calls++;
    pthread_mutex_unlock(&o->lock);
}

static uint64_t now_ms(void);

static void local_presence(void *arg, void (*put)(void *, int64_t, uint32_t), void *put_arg)
{
    struct observer *o = arg;

    pthread_mutex_lock(&o->lock);
    for (unsigned i = 0; i < PRESENCE_MAX; i++)
        if (o->local_ids[i] > 0)
            put(put_arg, o->local_ids[i], (uint32_t)o->local_n[i]);
    pthread_mutex_unlock(&o->lock);
}

/* Sets session_id's value in one of the observer's tables (its slot, or
 * the first free one). */
static void table_set(struct observer *o, int64_t ids[PRESENCE_MAX], int64_t vals[PRESENCE_MAX],
                      int64_t session_id, int64_t v)
{
    pthread_mutex_lock(&o->lock);
    for (unsigned i = 0; i < PRESENCE_MAX; i++) {
        if (ids[i] == session_id || ids[i] == 0) {
            ids[i] = session_id;
            vals[i] = v;
            break;
        }
    }
    pthread_mutex_unlock(&o->lock);
}

static void on_presence(void *arg, int64_t session_id, uint32_t others)
{
    struct observer *o = arg;

    table_set(o, o->other_ids, o->other_n, session_id, others);
}

static void set_local(struct observer *o, int64_t session_id, uint32_t n)
{
    table_set(o, o->local_ids, o->local_n, session_id, n);
}

/* The others' count last reported for session_id; -1: never. */
static int64_t others_of(struct observer *o, int64_t session_id)
{
    int64_t n = -1;

    pthread_mutex_lock(&o->lock);
    for (unsigned i = 0; i < PRESENCE_MAX; i++)
        if (o->other_ids[i] == session_id)
            n = o->other_n[i];
    pthread_mutex_unlock(&o->lock);
    return n;
}

static void wait_others(struct observer *o, int64_t session_id, int64_t want, unsigned timeout_ms)
{
    uint64_t t0 = now_ms();

    while (others_of(o, session_id) != want) {
        if (now_ms() - t0 > timeout_ms)
            fail_msg("session %" PRId64 ": others %" PRId64 ", want %" PRId64 " after %u ms", session_id,
                     others_of(o, session_id), want, timeout_ms);
        usleep(5 * 1000);
    }
}

static int peers_of(struct observer *o)
{
    int n;

    pthread_mutex_lock(&o->lock);
    n = o->peers;
    pthread_mutex_unlock(&o->lock);
    return n;
}

static unsigned peers_calls(struct observer *o)
{
    unsigned n;

    pthread_mutex_lock(&o->lock);
    n = o->peers_calls;
    pthread_mutex_unlock(&o->lock);
    return n;
}

/* How many times (session_id, seq) was reported; seq < 0: any seq. */
static unsigned reported(struct observer *o, int64_t session_id, int64_t seq)
{
    unsigned n = 0;

    pthread_mutex_lock(&o->lock);
    assert_false(o->overflow);
    for (unsigned i = 0; i < o->n_reports; i++)
        n += o->reports[i].session_id == session_id && (seq < 0 || o->reports[i].seq == seq);
    pthread_mutex_unlock(&o->lock);
    return n;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Polls until the peers reported equal want; the milliseconds it took, or fails. */
static uint64_t wait_peers(struct observer *o, int want, unsigned timeout_ms)
{
    uint64_t t0 = now_ms();

    while (peers_of(o) != want) {
        if (now_ms() - t0 > timeout_ms)
            fail_msg("peers %d, want %d after %u ms", peers_of(o), want, timeout_ms);
        usleep(5 * 1000);
    }
    return now_ms() - t0;
}

/* Polls until (session_id, seq) was reported; the milliseconds it took, or fails. */
static uint64_t wait_reported(struct observer *o, int64_t session_id, int64_t seq, unsigned timeout_ms)
{
    uint64_t t0 = now_ms();

    while (reported(o, session_id, seq) == 0) {
        if (now_ms() - t0 > timeout_ms)
            fail_msg("session %" PRId64 " seq %" PRId64 " not reported within %u ms", session_id, seq,
                     timeout_ms);
        usleep(2 * 1000);
    }
    return now_ms() - t0;
}

/* Waits for n more heartbeats (each on_peers call is one, FOLLOW_HEARTBEAT_MS apart). */
static void wait_beats(struct observer *o, unsigned n)
{
    unsigned start = peers_calls(o);
    uint64_t t0 = now_ms();

    while (peers_calls(o) < start + n) {
        if (now_ms() - t0 > (n + 2) * FOLLOW_HEARTBEAT_MS)
            fail_msg("no heartbeat for %u ms", (n + 2) * FOLLOW_HEARTBEAT_MS);
        usleep(5 * 1000);
    }
}

static struct follow *follower(const char *instance, struct observer *o)
{
    struct follow_config cfg = {
        .conninfo = conninfo,
        .instance_id = instance,
        .arg = o,
        .on_event = on_event,
        .on_peers = on_peers,
        .local_presence = local_presence,
        .on_presence = on_presence,
    };
    struct follow *f = follow_create(&cfg);

    assert_int_equal(follow_start(f), 0);
    return f;
}

/* ---- database helpers --------------------------------------------------- */

static int64_t instance_rows(PGconn *c, const char *instance)
{
    return pgtmp_db_i64(c, "SELECT count(*) FROM instances WHERE instance_id = $1", 1, (const char *[]){instance});
}

/* A session written directly, as another instance would; its id. */
static int64_t insert_session(PGconn *c)
{
    char code[16], hash[80];

    snprintf(code, sizeof(code), "F%05u", ++name_seq);
    snprintf(hash, sizeof(hash), "%064u", ++name_seq);
    return pgtmp_db_i64(c, "INSERT INTO sessions(code, title, presenter_token_hash) VALUES ($1, 't', $2) RETURNING id",
                  2, (const char *[]){code, hash});
}

/* Appends one event to sid as instance, the way the store does (seq taken
 * from the session row, NOTIFY in the same transaction); its seq. */
static int64_t append_event_as(PGconn *c, int64_t sid, const char *instance, bool notify)
{
    char sids[24];
    int64_t seq;

    snprintf(sids, sizeof(sids), "%" PRId64, sid);
    PQclear(pgtmp_db_q(c, "BEGIN", 0, NULL));
    seq = pgtmp_db_i64(c, "UPDATE sessions SET seq = seq + 1 WHERE id = $1 RETURNING seq", 1, (const char *[]){sids});
    PQclear(pgtmp_db_q(c,
                 "INSERT INTO event_log(session_id, seq, type, payload, instance_id) "
                 "SELECT id, seq, 'poll.created', '{}', $2 FROM sessions WHERE id = $1",
                 2, (const char *[]){sids, instance}));
    if (notify)
        PQclear(pgtmp_db_q(c, "NOTIFY tally_events", 0, NULL));
    PQclear(pgtmp_db_q(c, "COMMIT", 0, NULL));
    return seq;
}

/* ---- a store acting as another instance ---------------------------------- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned done;
} tracker = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void on_done(struct store_op *op)
{
    pthread_mutex_lock(&tracker.lock);
    op->tag++;
    tracker.done++;
    pthread_cond_broadcast(&tracker.cond);
    pthread_mutex_unlock(&tracker.lock);
}

static void submit_wait(struct store *s, struct store_op *op)
{
    struct timespec deadline;
    unsigned want;
    int rc = 0;

    pthread_mutex_lock(&tracker.lock);
    want = tracker.done + 1;
    pthread_mutex_unlock(&tracker.lock);
    op->on_done = on_done;
    op->status = STORE_UNAVAILABLE;
    assert_true(store_submit(s, op));
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&tracker.lock);
    while (tracker.done < want && rc == 0)
        rc = pthread_cond_timedwait(&tracker.cond, &tracker.lock, &deadline);
    pthread_mutex_unlock(&tracker.lock);
    assert_int_equal(rc, 0);
    assert_int_equal(op->status, STORE_OK);
}

static char *empty_payload(const struct store_op *op)
{
    (void)op;
    return xstrdup("{}");
}

static int64_t store_session(struct store *s)
{
    struct store_op *op = xcalloc(1, sizeof(*op));
    int64_t id;

    op->kind = STORE_SESSION_CREATE;
    snprintf(op->code, sizeof(op->code), "G%05u", ++name_seq);
    snprintf(op->token_hash, sizeof(op->token_hash), "%064u", ++name_seq);
    op->text = xstrdup("t");
    submit_wait(s, op);
    id = op->session_id;
    store_op_free(op);
    return id;
}

/* Creates a poll of sid with its poll.created event; the event's seq. */
static int64_t store_poll(struct store *s, int64_t sid)
{
    struct store_op *op = xcalloc(1, sizeof(*op));
    int64_t seq;

    op->kind = STORE_POLL_CREATE;
    op->session_id = sid;
    op->event = empty_payload;
    op->poll.question = xstrdup("q");
    op->poll.kind = POLL_SINGLE;
    op->poll.n_options = 2;
    op->poll.max_choices = 1;
    op->poll.options[0] = xstrdup("x");
    op->poll.options[1] = xstrdup("y");
    submit_wait(s, op);
    seq = op->seq;
    assert_true(seq > 0);
    store_op_free(op);
    return seq;
}

static struct store *store_as(const char *instance)
{
    struct store_config cfg = {.conninfo = conninfo, .pool = 1, .queue_max = 0, .instance_id = instance};
    struct store *s = store_create(&cfg);

    assert_int_equal(store_start(s), 0);
    return s;
}

/* ---- fixtures ----------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    if (pgtmp_dir(tmp_root, sizeof(tmp_root), "follow") < 0)
        return -1;
    snprintf(data_dir, sizeof(data_dir), "%s/data", tmp_root);
    cluster = pgembed_start(data_dir, conninfo, sizeof(conninfo));
    if (cluster == NULL)
        return -1;
    return store_migrate(conninfo) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    pgembed_stop(cluster);
    return pgtmp_remove(tmp_root);
}

/* ---- tests -------------------------------------------------------------- */

/* Two followers count each other, not a row gone stale; a stopped one
 * takes its row away, and the other counts it gone within a heartbeat. */
static void test_peers(void **state)
{
    struct observer *oa = xcalloc(1, sizeof(*oa)), *ob = xcalloc(1, sizeof(*ob));
    PGconn *c = pgtmp_db_open(conninfo);
    struct follow *fa, *fb;
    uint64_t ms;

    (void)state;
    observer_init(oa);
    observer_init(ob);
    /* An instance that died long ago without removing its row. */
    PQclear(pgtmp_db_q(c, "INSERT INTO instances(instance_id, seen_at) VALUES ('ghost', now() - interval '1 hour')", 0,
                 NULL));
    fa = follower("a", oa);
    wait_peers(oa, 0, 2000);
    /* Right after a heartbeat of a, so that its next is a second away. */
    wait_beats(oa, 1);
    fb = follower("b", ob);
    /* b announced itself: a counts it at once, not a heartbeat later. */
    ms = wait_peers(oa, 1, FOLLOW_HEARTBEAT_MS / 2);
    print_message("b announced -> a: %" PRIu64 " ms\n", ms);
    wait_peers(ob, 1, 2000);
    assert_int_equal(instance_rows(c, "a"), 1);
    assert_int_equal(instance_rows(c, "b"), 1);

    follow_stop(fb);
    assert_int_equal(instance_rows(c, "b"), 0);
    assert_int_equal(instance_rows(c, "a"), 1);
    wait_peers(oa, 0, FOLLOW_HEARTBEAT_MS + 1000);
    follow_stop(fa);
    assert_int_equal(instance_rows(c, "a"), 0);
    assert_int_equal(instance_rows(c, "ghost"), 1); /* not another's to remove */
    follow_stop(fa); /* twice is harmless */
    follow_destroy(fb);
    follow_destroy(fa);
    follow_destroy(NULL);
    test_end(c, oa, ob);
}

/* What another instance commits is reported within 500 ms (by NOTIFY or,
 * without one, by the poll); what this instance commits is not. */
static void test_on_event(void **state)
{
    struct observer *o = xcalloc(1, sizeof(*o));
    struct store *sb = store_as("b"), *sa = store_as("a");
    PGconn *c = pgtmp_db_open(conninfo);
    struct follow *fa;
    int64_t s1, s2, s3, s4, seq, seq_a;
    uint64_t ms, fastest;

    (void)state;
    observer_init(o);
    fa = follower("a", o);
    wait_beats(o, 1); /* connected: its catch-up is behind it */
    s1 = store_session(sb);
    s2 = store_session(sa);
    s3 = insert_session(c);
    s4 = insert_session(c);
    observer_clear(o);

    /* Through a store of instance b: its batch notifies, so a report comes
     * at once, not at the next poll. Each commit follows a report, which
     * follows a poll: without the wake-up each would wait FOLLOW_POLL_MS. */
    seq = store_poll(sb, s1);
    wait_reported(o, s1, seq, 500);
    fastest = UINT64_MAX;
    for (int i = 0; i < 3; i++) {
        seq = store_poll(sb, s1);
        ms = wait_reported(o, s1, seq, 500);
        fastest = ms < fastest ? ms : fastest;
    }
    print_message("store b -> a: %" PRIu64 " ms at best\n", fastest);
    assert_true(fastest < FOLLOW_POLL_MS / 2);

    /* Instance a's own events, through its store and directly. */
    seq_a = store_poll(sa, s2);
    append_event_as(c, s3, "a", true);
    /* Then b's, without a notification: the poll finds them. */
    seq = append_event_as(c, s4, "b", false);
    ms = wait_reported(o, s4, seq, 500);
    print_message("unnotified -> a: %" PRIu64 " ms\n", ms);
    /* The poll that found s4 read a's rows too, and skipped them. */
    assert_int_equal(reported(o, s2, -1), 0);
    assert_int_equal(reported(o, s3, -1), 0);
    wait_beats(o, 1);
    assert_int_equal(reported(o, s2, -1), 0);
    assert_int_equal(reported(o, s3, -1), 0);

    /* A session with both: b's highest seq is what a needs to read up to. */
    seq = append_event_as(c, s2, "b", true);
    assert_int_equal(seq, seq_a + 1);
    wait_reported(o, s2, seq, 500);
    append_event_as(c, s2, "a", true);
    seq = append_event_as(c, s4, "b", true);
    wait_reported(o, s4, seq, 500);
    assert_int_equal(reported(o, s2, seq_a + 2), 0);

    follow_destroy(fa);
    store_destroy(sa);
    store_destroy(sb);
    test_end(c, o, NULL);
}

/* After each connection every session with events is reported once with
 * its seq: notifications sent while away are lost. */
static void test_catch_up(void **state)
{
    struct observer *o = xcalloc(1, sizeof(*o));
    PGconn *c = pgtmp_db_open(conninfo);
    struct follow *f;
    PGresult *res;
    int64_t quiet = insert_session(c), old, fresh, mine, seq_old, seq_mine;
    int rows;

    (void)state;
    observer_init(o);
    old = insert_session(c);
    append_event_as(c, old, "b", true);
    seq_old = append_event_as(c, old, "b", true);
    fresh = insert_session(c);
    mine = insert_session(c);
    seq_mine = append_event_as(c, mine, "a", true);
    /* Out of the poll's window: only the catch-up reports these. */
    PQclear(pgtmp_db_q(c, "UPDATE event_log SET created_at = now() - interval '1 hour'", 0, NULL));

    f = follower("a", o);
    wait_reported(o, old, seq_old, 2000);
    wait_reported(o, mine, seq_mine, 2000); /* its own too: all it knew is gone */
    /* Every session with a seq, with that seq, once. */
    res = pgtmp_db_q(c, "SELECT id, seq FROM sessions WHERE seq > 0", 0, NULL);
    rows = PQntuples(res);
    assert_true(rows >= 2);
    wait_beats(o, 2); /* ten polls and more */
    for (int r = 0; r < rows; r++) {
        int64_t sid = strtoll(PQgetvalue(res, r, 0), NULL, 10), seq = strtoll(PQgetvalue(res, r, 1), NULL, 10);

        if (reported(o, sid, seq) != 1 || reported(o, sid, -1) != 1)
            fail_msg("session %" PRId64 " seq %" PRId64 " reported %u times (%u with any seq)", sid, seq,
                     reported(o, sid, seq), reported(o, sid, -1));
    }
    PQclear(res);
    assert_int_equal(reported(o, quiet, -1), 0); /* seq 0: nothing to read */

    /* Events while it runs are followed as usual. */
    wait_reported(o, fresh, append_event_as(c, fresh, "b", true), 500);

    /* The server ends its connection: it reconnects and catches up again. */
    observer_clear(o);
    PQclear(pgtmp_db_q(c, "UPDATE event_log SET created_at = now() - interval '1 hour'", 0, NULL));
    res = pgtmp_db_q(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tallyd-follow'",
               0, NULL);
    assert_true(PQntuples(res) >= 1); /* more only when an earlier test failed */
    PQclear(res);
    wait_reported(o, old, seq_old, 3000);
    wait_reported(o, mine, seq_mine, 3000);
    wait_reported(o, fresh, 1, 3000);
    wait_beats(o, 1);
    assert_int_equal(reported(o, old, -1), 1);
    assert_int_equal(reported(o, fresh, -1), 1);
    assert_int_equal(reported(o, quiet, -1), 0);
    assert_int_equal(instance_rows(c, "a"), 1); /* the heartbeat resumed */
    follow_destroy(f);
    assert_int_equal(instance_rows(c, "a"), 0);

    /* A new follower of the same instance: the same catch-up. */
    observer_clear(o);
    f = follower("a", o);
    wait_reported(o, old, seq_old, 2000);
    wait_reported(o, mine, seq_mine, 2000);
    wait_reported(o, fresh, 1, 2000);
    follow_destroy(f);
    test_end(c, o, NULL);
}

/* Each instance's participants per session reach the other within a few
 * heartbeats, changes too (down to 0); a stale instance's rows do not
 * count; a stopped instance's rows go with it, and alone an instance
 * forgets the others'. */
static void test_presence(void **state)
{
    struct observer *oa = xcalloc(1, sizeof(*oa)), *ob = xcalloc(1, sizeof(*ob));
    PGconn *c = pgtmp_db_open(conninfo);
    struct follow *fa, *fb;

    (void)state;
    observer_init(oa);
    observer_init(ob);
    PQclear(pgtmp_db_q(c, "INSERT INTO instances(instance_id, seen_at) VALUES ('ghost', now() - interval '1 hour')", 0,
                 NULL));
    PQclear(pgtmp_db_q(c, "INSERT INTO presence VALUES ('ghost', 101, 50), ('ghost', 103, 7)", 0, NULL));
    set_local(oa, 101, 3);
    set_local(oa, 102, 1);
    set_local(ob, 101, 2);
    fa = follower("a", oa);
    fb = follower("b", ob);
    wait_others(ob, 101, 3, 4 * FOLLOW_HEARTBEAT_MS);
    wait_others(ob, 102, 1, 4 * FOLLOW_HEARTBEAT_MS);
    wait_others(oa, 101, 2, 4 * FOLLOW_HEARTBEAT_MS);
    assert_int_equal(others_of(oa, 102), -1); /* b has nobody there */
    assert_int_equal(others_of(oa, 103), -1); /* the ghost does not count */
    assert_int_equal(others_of(ob, 103), -1);

    set_local(oa, 101, 0);
    set_local(oa, 102, 4);
    wait_others(ob, 101, 0, 4 * FOLLOW_HEARTBEAT_MS);
    wait_others(ob, 102, 4, 4 * FOLLOW_HEARTBEAT_MS);

    follow_destroy(fb);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM presence WHERE instance_id = 'b'", 0, NULL), 0);
    wait_peers(oa, 0, FOLLOW_HEARTBEAT_MS + 1000);
    assert_int_equal(others_of(oa, 101), 0); /* alone: the others' are forgotten */
    follow_destroy(fa);
    assert_int_equal(pgtmp_db_i64(c, "SELECT count(*) FROM presence WHERE instance_id = 'a'", 0, NULL), 0);
    test_end(c, oa, ob);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peers),
        cmocka_unit_test(test_on_event),
        cmocka_unit_test(test_catch_up),
        cmocka_unit_test(test_presence),
    };

    if (!pgtmp_have_postgres()) {
        fprintf(stderr, "no PostgreSQL binaries: skipped\n");
        return 77;
    }
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
