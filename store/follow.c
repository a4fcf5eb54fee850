/*
 * follow.c - the follower thread (see follow.h).
 *
 * One loop: wait up to FOLLOW_POLL_MS on the connection's socket (a
 * notification ends the wait at once), then read which sessions another
 * instance appended events to in the last FOLLOW_WINDOW_S, and hand each
 * session's highest seq to on_event. The window is wide so that a busy
 * database or a slow turn misses nothing; the receiver ignores a seq it has.
 * The reads are cheap: event_log is indexed by created_at, and only a
 * session's structural changes write it, never votes.
 *
 * Liveness: every FOLLOW_HEARTBEAT_MS the row of this instance in
 * `instances` is refreshed and the others fresher than FOLLOW_PEER_TTL_S
 * counted. A connection that fails is dropped and opened again after a
 * second; on each new connection every session's seq is reported once,
 * since what was notified in between is gone.
 *
 * Presence: with each heartbeat while others are alive, the sessions whose
 * local count changed since the last write are upserted in one statement,
 * and the others' sums read back; only changes are reported. A new
 * connection first deletes this instance's rows (a previous run's may be
 * stale) and writes everything again.
 */
#include "store/follow.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/base.h"
#include "core/buf.h"
#include "core/hmap.h"
#include "core/log.h"

#define FOLLOW_RETRY_MS 1000 /* between two attempts to connect */
#define FOLLOW_APP "tallyd-follow"

struct follow {
    struct follow_config cfg;
    char *conninfo;
    char *instance_id;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    PGconn *conn;
    uint64_t beat_ms; /* when the row was last refreshed; 0: at once */
    bool announce;    /* tell the others we are here (first beat of a connection) */
    int peers;        /* last count reported; -1: none yet */
    /* Presence, follower thread only; values are count + 1 (0 is absent). */
    struct hmap *written; /* session -> this instance's count in `presence` */
    struct hmap *others;  /* session -> the others' sum last reported */
    bool presence_reset;  /* delete this instance's rows before writing */
};

/* One heartbeat's changed local counts, as two array literals. */
struct presence_batch {
    struct follow *f;
    struct buf ids, counts;
    unsigned n;
};

struct follow *follow_create(const struct follow_config *cfg)
{
    struct follow *f = xcalloc(1, sizeof(*f));

    TALLY_ASSERT(cfg->conninfo != NULL && cfg->instance_id != NULL);
    TALLY_ASSERT(cfg->on_event != NULL && cfg->on_peers != NULL);
    f->cfg = *cfg;
    f->conninfo = xstrdup(cfg->conninfo);
    f->instance_id = xstrdup(cfg->instance_id);
    f->peers = -1;
    f->written = hmap_create(64);
    f->others = hmap_create(64);
    atomic_init(&f->stop, false);
    return f;
}

/* Runs sql; the result when its status is want, else NULL (logged). */
static PGresult *follow_exec(struct follow *f, const char *sql, int n, const char *const *p,
                             ExecStatusType want)
{
    PGresult *res = PQexecParams(f->conn, sql, n, NULL, p, NULL, NULL, 0);

    if (PQresultStatus(res) == want)
        return res;
    log_warn("follow: %s", PQerrorMessage(f->conn));
    PQclear(res);
    return NULL;
}

/* Reports (session, seq) for each row of res. */
static void follow_report(struct follow *f, PGresult *res)
{
    for (int r = 0; r < PQntuples(res); r++)
        f->cfg.on_event(f->cfg.arg, strtoll(PQgetvalue(res, r, 0), NULL, 10),
                        strtoll(PQgetvalue(res, r, 1), NULL, 10));
    PQclear(res);
}

static bool follow_connect(struct follow *f)
{
    PGresult *res;

    f->conn = PQconnectdb(f->conninfo);
    if (PQstatus(f->conn) != CONNECTION_OK) {
        log_warn("follow: cannot connect: %s", PQerrorMessage(f->conn));
        goto err;
    }
    res = PQexec(f->conn, "SET application_name = '" FOLLOW_APP "'; LISTEN tally_events; LISTEN tally_peers");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        log_warn("follow: LISTEN failed: %s", PQerrorMessage(f->conn));
        PQclear(res);
        goto err;
    }
    PQclear(res);
    /* Whatever was notified while we were away: every session's seq. */
    res = follow_exec(f, "SELECT id, seq FROM sessions WHERE seq > 0", 0, NULL, PGRES_TUPLES_OK);
    if (res == NULL)
        goto err;
    follow_report(f, res);
    f->beat_ms = 0;
    f->announce = true;
    f->presence_reset = true;
    return true;
err:
    PQfinish(f->conn);
    f->conn = NULL;
    return false;
}

static void presence_put(void *arg, int64_t session_id, uint32_t n)
{
    struct presence_batch *b = arg;
    uintptr_t was = (uintptr_t)hmap_get(b->f->written, (uint64_t)session_id);

    if (session_id <= 0 || was == (uintptr_t)n + 1 || (was == 0 && n == 0))
        return;
    hmap_put(b->f->written, (uint64_t)session_id, (void *)((uintptr_t)n + 1));
    buf_printf(&b->ids, "%s%" PRId64, b->n ? "," : "{", session_id);
    buf_printf(&b->counts, "%s%" PRIu32, b->n ? "," : "{", n);
    b->n++;
}

/* Writes this instance's changed counts. */
static bool presence_write(struct follow *f)
{
    struct presence_batch b = {.f = f, .ids = BUF_INIT, .counts = BUF_INIT};
    const char *p[3] = {f->instance_id, NULL, NULL};
    PGresult *res = NULL;
    bool ok = true;

    if (f->presence_reset) {
        res = follow_exec(f, "DELETE FROM presence WHERE instance_id = $1", 1, p, PGRES_COMMAND_OK);
        if (res == NULL)
            return false;
        PQclear(res);
        hmap_destroy(f->written);
        f->written = hmap_create(64);
        f->presence_reset = false;
    }
    f->cfg.local_presence(f->cfg.arg, presence_put, &b);
    if (b.n > 0) {
        buf_append(&b.ids, "}", 2); /* with the NUL */
        buf_append(&b.counts, "}", 2);
        p[1] = b.ids.data;
        p[2] = b.counts.data;
        res = follow_exec(f,
                          "INSERT INTO presence(instance_id, session_id, participants) "
                          "SELECT $1, s, n FROM unnest($2::bigint[], $3::int[]) AS u(s, n) "
                          "ON CONFLICT (instance_id, session_id) "
                          "DO UPDATE SET participants = excluded.participants",
                          3, p, PGRES_COMMAND_OK);
        ok = res != NULL;
        PQclear(res);
        if (!ok)
            f->presence_reset = true; /* what was written is unknown: again */
    }
    buf_free(&b.ids);
    buf_free(&b.counts);
    return ok;
}

static void presence_forget(uint64_t key, void *val, void *arg)
{
    struct follow *f = arg;

    (void)val;
    f->cfg.on_presence(f->cfg.arg, (int64_t)key, 0);
}

/* A session reported before that the latest read lacks: its sum is now 0. */
struct presence_gone {
    struct follow *f;
    const struct hmap *now;
};

static void presence_gone_one(uint64_t key, void *val, void *arg)
{
    struct presence_gone *g = arg;

    (void)val;
    if (hmap_get(g->now, key) == NULL)
        g->f->cfg.on_presence(g->f->cfg.arg, (int64_t)key, 0);
}

/* Reads the other live instances' sums and reports what changed. */
static bool presence_read(struct follow *f)
{
    char ttl[16];
    const char *p[2] = {f->instance_id, ttl};
    struct hmap *now;
    struct presence_gone g = {.f = f};
    PGresult *res;

    snprintf(ttl, sizeof(ttl), "%d", FOLLOW_PEER_TTL_S);
    res = follow_exec(f,
                      "SELECT p.session_id, sum(p.participants) FROM presence p "
                      "JOIN instances i USING (instance_id) "
                      "WHERE p.instance_id <> $1 AND i.seen_at > now() - make_interval(secs => $2) "
                      "GROUP BY p.session_id HAVING sum(p.participants) > 0",
                      2, p, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    now = hmap_create((size_t)PQntuples(res));
    for (int r = 0; r < PQntuples(res); r++) {
        int64_t sid = strtoll(PQgetvalue(res, r, 0), NULL, 10);
        uint32_t n = (uint32_t)strtoul(PQgetvalue(res, r, 1), NULL, 10);

        if (sid <= 0)
            continue;
        hmap_put(now, (uint64_t)sid, (void *)((uintptr_t)n + 1));
        if ((uintptr_t)hmap_get(f->others, (uint64_t)sid) != (uintptr_t)n + 1)
            f->cfg.on_presence(f->cfg.arg, sid, n);
    }
    PQclear(res);
    g.now = now;
    hmap_each(f->others, presence_gone_one, &g);
    hmap_destroy(f->others);
    f->others = now;
    return true;
}

/* Shares presence while others are alive; alone, forgets theirs. */
static bool follow_presence(struct follow *f, int peers)
{
    if (f->cfg.local_presence == NULL || f->cfg.on_presence == NULL)
        return true;
    if (peers == 0) {
        hmap_each(f->others, presence_forget, f);
        hmap_destroy(f->others);
        f->others = hmap_create(64);
        return true;
    }
    return presence_write(f) && presence_read(f);
}

static bool follow_heartbeat(struct follow *f, uint64_t now_ms)
{
    const char *p[2] = {f->instance_id, NULL};
    char ttl[16];
    PGresult *res;
    int peers;

    if (f->beat_ms != 0 && now_ms - f->beat_ms < FOLLOW_HEARTBEAT_MS)
        return true;
    f->beat_ms = now_ms;
    res = follow_exec(f,
                      "INSERT INTO instances(instance_id) VALUES ($1) "
                      "ON CONFLICT (instance_id) DO UPDATE SET seen_at = now()",
                      1, p, PGRES_COMMAND_OK);
    if (res == NULL)
        return false;
    PQclear(res);
    if (f->announce) {
        res = follow_exec(f, "NOTIFY tally_peers", 0, NULL, PGRES_COMMAND_OK);
        if (res == NULL)
            return false;
        PQclear(res);
        f->announce = false;
    }
    snprintf(ttl, sizeof(ttl), "%d", FOLLOW_PEER_TTL_S);
    p[1] = ttl;
    res = follow_exec(f,
                      "SELECT count(*) FROM instances WHERE instance_id <> $1 "
                      "AND seen_at > now() - make_interval(secs => $2)",
                      2, p, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    peers = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (peers != f->peers)
        log_info("follow: %d other instance%s share the database", peers, peers == 1 ? "" : "s");
    f->peers = peers;
    f->cfg.on_peers(f->cfg.arg, (unsigned)peers);
    return follow_presence(f, peers);
}

/* The sessions another instance appended events to lately, with their last seq. */
static bool follow_poll(struct follow *f)
{
    char win[16];
    const char *p[2] = {f->instance_id, win};
    PGresult *res;

    snprintf(win, sizeof(win), "%d", FOLLOW_WINDOW_S);
    res = follow_exec(f,
                      "SELECT session_id, max(seq) FROM event_log "
                      "WHERE created_at > now() - make_interval(secs => $2) AND instance_id <> $1 "
                      "GROUP BY session_id",
                      2, p, PGRES_TUPLES_OK);
    if (res == NULL)
        return false;
    follow_report(f, res);
    return true;
}

/* Waits for a notification or FOLLOW_POLL_MS; false when the connection broke. */
static bool follow_wait(struct follow *f)
{
    struct pollfd pfd = {.fd = PQsocket(f->conn), .events = POLLIN};
    PGnotify *n;

    if (pfd.fd < 0)
        return false;
    if (poll(&pfd, 1, FOLLOW_POLL_MS) < 0 && errno != EINTR)
        return false;
    if (!PQconsumeInput(f->conn))
        return false;
    while ((n = PQnotifies(f->conn)) != NULL) {
        /* A new instance announced itself: count the others now, not
         * up to FOLLOW_HEARTBEAT_MS later, so that counts are read from
         * the database before its first vote could be missed. */
        if (strcmp(n->relname, "tally_peers") == 0 && n->be_pid != PQbackendPID(f->conn))
            f->beat_ms = 0;
        PQfreemem(n);
    }
    return true;
}

static void follow_sleep(struct follow *f, unsigned ms)
{
    for (unsigned t = 0; t < ms && !atomic_load(&f->stop); t += FOLLOW_POLL_MS)
        poll(NULL, 0, FOLLOW_POLL_MS);
}

static void *follow_main(void *arg)
{
    struct follow *f = arg;

    pthread_setname_np(pthread_self(), "tally-follow");
    while (!atomic_load(&f->stop)) {
        if (f->conn == NULL && !follow_connect(f)) {
            follow_sleep(f, FOLLOW_RETRY_MS);
            continue;
        }
        if (follow_heartbeat(f, clock_now_ms()) && follow_poll(f) && follow_wait(f))
            continue;
        log_warn("follow: connection lost; reconnecting");
        PQfinish(f->conn);
        f->conn = NULL;
    }
    return NULL;
}

int follow_start(struct follow *f)
{
    int rc;

    /* The first count of the others before the caller serves anything: a
     * request for what another instance created is then looked up. */
    if (follow_connect(f) && !follow_heartbeat(f, clock_now_ms())) {
        PQfinish(f->conn);
        f->conn = NULL;
    }
    rc = pthread_create(&f->thread, NULL, follow_main, f);

    if (rc != 0)
        return -rc;
    f->started = true;
    return 0;
}

void follow_stop(struct follow *f)
{
    const char *p[1];
    PGresult *res;

    if (f == NULL || !f->started)
        return;
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    f->started = false;
    if (f->conn == NULL)
        return;
    /* Gone at once rather than after FOLLOW_PEER_TTL_S. */
    p[0] = f->instance_id;
    res = follow_exec(f, "DELETE FROM instances WHERE instance_id = $1", 1, p, PGRES_COMMAND_OK);
    PQclear(res);
}

void follow_destroy(struct follow *f)
{
    if (f == NULL)
        return;
    follow_stop(f);
    PQfinish(f->conn);
    hmap_destroy(f->written);
    hmap_destroy(f->others);
    free(f->conninfo);
    free(f->instance_id);
    free(f);
}
