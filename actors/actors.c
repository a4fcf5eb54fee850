/*
 * actors.c - the directory of sessions, request routing, and the lobby actor
 * that creates sessions.
 *
 * The directory maps a join code, a poll id, a token hash and a session id to
 * the session that owns it. Network threads read it on every request under
 * the read lock; it is written, under the write lock, when a session is
 * created or loaded, a poll is created, or a participant joins (so that a
 * token of another session is told apart from an unknown one: 403, not 401).
 * Sessions are never removed while the actors run, so a session pointer read
 * under the lock stays valid after it is released.
 *
 * A session is created by the lobby actor: the new code and presenter token
 * are committed first, and only then does the session get its actor and its
 * directory entries, so nothing routes to a session the database lacks.
 *
 * The lobby also keeps event_log to its retention: from its tick, first
 * EVENTS_PRUNE_FIRST_MS after start (so an instance restarted more often than
 * hourly still prunes), then every EVENTS_PRUNE_EVERY_MS, it submits one
 * STORE_EVENTS_PRUNE that deletes events older than EVENTS_KEEP_S. Every
 * instance does this; deleting what another already deleted is harmless.
 */
#include "actors/actors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "actors/joincode.h"
#include "actors/qr.h"
#include "actors/session.h"
#include "actors/stream.h"
#include "actors/token.h"
#include "core/actor.h"
#include "core/base.h"
#include "core/hmap.h"
#include "core/log.h"

#define ACTORS_SESSIONS_DEFAULT 10000
#define ACTORS_QR_HOST_DEFAULT "127.0.0.1:8080"

/* A session being created: the request and the codes tried so far. */
struct lobby_job {
    struct api_req *req;
    unsigned attempts;
};

static void lobby_on_msg(struct actor *a, void *ctx, const struct mbox_msg *msg);
static void lobby_on_tick(struct actor *a, void *ctx, uint64_t now_ms);

/*
 * Readers take the lock on every request, from every network thread; with
 * glibc's default (readers first) a join's write could wait as long as reads
 * keep overlapping. Writers first keeps a join's wait to one read section.
 */
static int actors_lock_init(pthread_rwlock_t *lock)
{
    pthread_rwlockattr_t attr;
    int rc;

    if (pthread_rwlockattr_init(&attr) != 0)
        return -ENOMEM;
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    rc = pthread_rwlock_init(lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return rc == 0 ? 0 : -rc;
}

struct actors *actors_create(const struct actors_config *cfg)
{
    struct actors *as = xcalloc(1, sizeof(*as));

    TALLY_ASSERT(cfg != NULL && cfg->rt != NULL);
    as->rt = cfg->rt;
    as->store = cfg->store;
    as->sessions_max = cfg->sessions_max ? cfg->sessions_max : ACTORS_SESSIONS_DEFAULT;
    if (actors_lock_init(&as->lock) != 0)
        goto err_free;
    as->by_code = hmap_create(1024);
    as->by_poll = hmap_create(1024);
    as->by_token = hmap_create(1024);
    as->by_id = hmap_create(1024);
    atomic_init(&as->reserved, 0);
    atomic_init(&as->participants, 0);
    /* The network side may fill in the sink's ctx and broadcast after this,
     * before traffic starts; its thread count is needed now. */
    TALLY_ASSERT(cfg->sink == NULL || cfg->sink->threads >= 1);
    as->sink = cfg->sink;
    as->prune_next_ms = clock_now_ms() + EVENTS_PRUNE_FIRST_MS;
    as->lobby = actor_create(as->rt, LOBBY_MBOX_SLOTS, lobby_on_msg, as);
    if (as->lobby == NULL)
        goto err_destroy_maps;
    actor_set_tick(as->lobby, LOBBY_TICK_MS, lobby_on_tick);
    return as;

err_destroy_maps:
    hmap_destroy(as->by_code);
    hmap_destroy(as->by_poll);
    hmap_destroy(as->by_token);
    hmap_destroy(as->by_id);
    pthread_rwlock_destroy(&as->lock);
err_free:
    free(as);
    return NULL;
}

void actors_destroy(struct actors *as)
{
    if (as == NULL)
        return;
    /* The runtime has stopped: what is left in the mailboxes is ours. */
    if (as->lobby != NULL)
        session__drain(as->lobby);
    for (uint32_t i = 0; i < as->n_sessions; i++) {
        if (as->sessions[i]->actor != NULL)
            session__drain(as->sessions[i]->actor);
        session__free(as->sessions[i]);
    }
    free(as->sessions);
    hmap_destroy(as->by_code);
    hmap_destroy(as->by_poll);
    hmap_destroy(as->by_token);
    hmap_destroy(as->by_id);
    pthread_rwlock_destroy(&as->lock);
    free(as);
}

uint64_t actors_participants(const struct actors *as)
{
    return atomic_load_explicit(&as->participants, memory_order_relaxed);
}

/* ---- the directory ---- */

static struct session *actors_get(struct actors *as, struct hmap *h, uint64_t key)
{
    struct session *s;

    if (key == 0)
        return NULL;
    pthread_rwlock_rdlock(&as->lock);
    s = hmap_get(h, key);
    pthread_rwlock_unlock(&as->lock);
    return s;
}

struct session *actors__session_of_token(struct actors *as, const uint8_t hash[TOKEN_HASH_BYTES])
{
    /* The key is 64 bits of the hash: two tokens sharing them could only
     * turn a 401 into a 403 or back, never let anyone in (the session
     * compares the whole hash). */
    return actors_get(as, as->by_token, token_hash_key(hash));
}

void actors__add_token(struct actors *as, struct session *s, const uint8_t hash[TOKEN_HASH_BYTES])
{
    pthread_rwlock_wrlock(&as->lock);
    hmap_put(as->by_token, token_hash_key(hash), s);
    pthread_rwlock_unlock(&as->lock);
}

void actors__add_poll(struct actors *as, struct session *s, int64_t poll_id)
{
    TALLY_ASSERT(poll_id > 0);
    pthread_rwlock_wrlock(&as->lock);
    hmap_put(as->by_poll, (uint64_t)poll_id, s);
    pthread_rwlock_unlock(&as->lock);
}

int actors__add_session(struct actors *as, struct session *s)
{
    uint64_t code_key = joincode_key(s->code);

    TALLY_ASSERT(code_key != 0);
    TALLY_ASSERT(s->actor == NULL);
    s->actor = actor_create(as->rt, SESSION_MBOX_SLOTS, session__on_msg, s);
    if (s->actor == NULL)
        return -ENOSPC;
    pthread_rwlock_wrlock(&as->lock);
    if (as->n_sessions == as->cap_sessions) {
        as->cap_sessions = as->cap_sessions ? as->cap_sessions * 2 : 64;
        as->sessions = xrealloc(as->sessions, as->cap_sessions * sizeof(*as->sessions));
    }
    as->sessions[as->n_sessions++] = s;
    hmap_put(as->by_code, code_key, s);
    hmap_put(as->by_id, (uint64_t)s->id, s);
    hmap_put(as->by_token, token_hash_key(s->presenter_hash), s);
    /* A session loaded whole (actors__load_one) is published at once. */
    for (uint32_t i = 0; i < s->n_polls; i++)
        hmap_put(as->by_poll, (uint64_t)s->polls[i]->id, s);
    for (uint32_t i = 0; i < s->n_parts; i++)
        hmap_put(as->by_token, token_hash_key(s->parts[i].token_hash), s);
    pthread_rwlock_unlock(&as->lock);
    return 0;
}

/* ---- routing ---- */

/* A Host header fit for a link: letters, digits, and . - : [ ] only. */
static bool actors_host_ok(const char *h)
{
    if (h[0] == '\0')
        return false;
    for (; *h; h++) {
        char c = *h;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':' || c == '[' || c == ']';

        if (!ok)
            return false;
    }
    return true;
}

/* The QR code of the join link needs no session state: served on the caller's thread. */
static void actors_qr(struct actors *as, struct api_req *req)
{
    char link[API_HOST_MAX + API_CODE_LEN + 16];
    const char *host = actors_host_ok(req->host) ? req->host : ACTORS_QR_HOST_DEFAULT;
    char *svg = NULL;
    size_t len = 0;

    if (actors_get(as, as->by_code, joincode_key(req->code)) == NULL) {
        api_reply_error(req, 404, "not_found", "no session with this code");
        return;
    }
    snprintf(link, sizeof(link), "http://%s/j/%s", host, req->code);
    if (qr_svg(link, &svg, &len) < 0) {
        api_reply_error(req, 500, "internal", "the QR code could not be made");
        return;
    }
    api_reply_raw(req, 200, "image/svg+xml", svg, len);
}

static bool actors_is_poll_route(enum api_op op)
{
    return op == API_POLL_OPEN || op == API_POLL_CLOSE || op == API_VOTE || op == API_RESULTS;
}

/*
 * What the directory lacks may have been created by another instance after
 * this one loaded: while another shares the database, the lobby looks it up
 * there (once per request) before anyone is told 404 or 401. true when req was handed over (or
 * answered 503 because the lobby is full).
 */
static bool actors_lookup(struct actors *as, struct api_req *req, uint32_t what, int64_t sid)
{
    struct mbox_msg m = {.type = MSG_LOOKUP, .u32 = what, .u64 = (uint64_t)sid, .ptr = req};

    /* Alone, this instance created everything the database holds and
     * loaded it all: nothing to look up (and no query per mistyped code). */
    if (as->store == NULL || !atomic_load_explicit(&as->shared, memory_order_relaxed))
        return false;
    if (!actor_post(as->lobby, &m))
        session__reply_503(req, "busy", "too many lookups waiting; try again");
    return true;
}

bool actors__lookup_token(struct actors *as, struct session *s, struct api_req *req)
{
    if (req->token_looked_up)
        return false;
    return actors_lookup(as, req, LOOKUP_TOKEN, s->id);
}

void actors_follow_event(struct actors *as, int64_t session_id, int64_t seq)
{
    struct session *s = session_id > 0 ? actors_get(as, as->by_id, (uint64_t)session_id) : NULL;
    struct mbox_msg m = {.type = MSG_FOLLOW, .u64 = (uint64_t)seq};

    /* A full mailbox drops the hint: the follower repeats it every poll. */
    if (s != NULL && seq > atomic_load_explicit(&s->seq_pub, memory_order_relaxed))
        (void)actor_post(s->actor, &m);
}

void actors_set_peers(struct actors *as, unsigned peers)
{
    /* Once shared, counts stay read from the database: an instance that
     * seems gone may still be committing what it took. */
    if (peers > 0 && !atomic_exchange(&as->shared, true))
        log_info("another instance shares the database: open polls' counts are read from it");
}

void actors_local_presence(struct actors *as, void (*put)(void *, int64_t, uint32_t), void *put_arg)
{
    pthread_rwlock_rdlock(&as->lock);
    for (uint32_t i = 0; i < as->n_sessions; i++) {
        const struct session *s = as->sessions[i];

        put(put_arg, s->id, atomic_load_explicit(&s->presence_local, memory_order_relaxed));
    }
    pthread_rwlock_unlock(&as->lock);
}

void actors_follow_presence(struct actors *as, int64_t session_id, uint32_t others)
{
    struct session *s = session_id > 0 ? actors_get(as, as->by_id, (uint64_t)session_id) : NULL;

    /* The session's tick reads it: presence goes out within a second. */
    if (s != NULL)
        atomic_store_explicit(&s->presence_others, others, memory_order_relaxed);
}

void actors_submit(struct actors *as, struct api_req *req)
{
    struct mbox_msg m = {.type = MSG_REQ, .ptr = req};
    struct session *s;
    char code[API_CODE_LEN + 1];

    TALLY_ASSERT(req != NULL && req->on_reply != NULL);
    TALLY_ASSERT(req->op < API_OP_COUNT);
    if (req->op == API_SESSION_CREATE) {
        if (!actor_post(as->lobby, &m))
            session__reply_503(req, "busy", "too many sessions being created; try again");
        return;
    }
    if (req->op == API_UNSUBSCRIBE && req->session_id > 0) {
        /* By id: the subscribe reply gave it, and the code may not be at hand. */
        s = actors_get(as, as->by_id, (uint64_t)req->session_id);
        if (s == NULL) {
            api_reply_error(req, 404, "not_found", "no session %lld", (long long)req->session_id);
            return;
        }
    } else if (actors_is_poll_route(req->op)) {
        s = req->poll_id > 0 ? actors_get(as, as->by_poll, (uint64_t)req->poll_id) : NULL;
        if (s == NULL && req->poll_id > 0 && !req->looked_up && actors_lookup(as, req, LOOKUP_SESSION, 0))
            return;
        if (s == NULL) {
            api_reply_error(req, 404, "not_found", "no poll %lld", (long long)req->poll_id);
            return;
        }
    } else {
        /* Codes match case-insensitively whatever the caller did to them. */
        if (!joincode_normalize(req->code, code)) {
            api_reply_error(req, 404, "not_found", "no session with this code");
            return;
        }
        memcpy(req->code, code, sizeof(code));
        s = actors_get(as, as->by_code, joincode_key(req->code));
        if (s == NULL && !req->looked_up && actors_lookup(as, req, LOOKUP_SESSION, 0))
            return;
        if (req->op == API_QR_SVG) {
            actors_qr(as, req);
            return;
        }
        if (s == NULL) {
            api_reply_error(req, 404, "not_found", "no session with this code");
            return;
        }
    }
    if (actor_post(s->actor, &m))
        return;
    if (req->op == API_UNSUBSCRIBE) /* never dropped: the counts would stay up for good */
        session__live_spill(s, req);
    else
        session__reply_503(req, "busy", "this session is busy; try again");
}

/* ---- the lobby: session creation ---- */

static void lobby_fail(struct actors *as, struct lobby_job *job, struct store_op *op, int status,
                       const char *code, const char *msg)
{
    struct api_req *req = job->req;

    atomic_fetch_sub(&as->reserved, 1);
    if (op != NULL)
        store_op_free(op);
    free(job);
    token_wipe(req->token, sizeof(req->token));
    if (status == 503)
        session__reply_503(req, code, msg);
    else
        api_reply_error(req, status, code, "%s", msg);
}

/* Picks a code no live session has and submits the op. */
static void lobby_try(struct actors *as, struct lobby_job *job, struct store_op *op)
{
    while (job->attempts < SESSION_CODE_ATTEMPTS) {
        job->attempts++;
        if (joincode_generate(op->code) < 0) {
            lobby_fail(as, job, op, 500, "internal", "no join code could be made");
            return;
        }
        if (actors_get(as, as->by_code, joincode_key(op->code)) != NULL)
            continue;
        op->status = STORE_OK;
        op->id = op->session_id = 0;
        if (!store_submit(as->store, op))
            lobby_fail(as, job, op, 503, "storage_unavailable",
                       "storage is unavailable; try again");
        return;
    }
    log_warn("no free join code after %d attempts", SESSION_CODE_ATTEMPTS);
    lobby_fail(as, job, op, 503, "busy", "no free join code; try again");
}

static void lobby_create(struct actors *as, struct api_req *req)
{
    char token[TOKEN_LEN + 1];
    uint8_t hash[TOKEN_HASH_BYTES];
    struct lobby_job *job;
    struct store_op *op;

    if (req->text != NULL && strlen(req->text) > API_TITLE_MAX) {
        api_reply_error(req, 400, "invalid_request", "title: at most %d bytes", API_TITLE_MAX);
        return;
    }
    if (atomic_fetch_add(&as->reserved, 1) >= as->sessions_max) {
        atomic_fetch_sub(&as->reserved, 1);
        session__reply_503(req, "busy", "this instance holds its maximum number of sessions");
        return;
    }
    job = xcalloc(1, sizeof(*job));
    job->req = req;
    if (token_generate(token) < 0) {
        lobby_fail(as, job, NULL, 500, "internal", "no token could be made");
        return;
    }
    op = session__op_new(STORE_SESSION_CREATE, as->lobby, (uintptr_t)job);
    op->text = req->text ? req->text : xstrdup("");
    req->text = NULL;
    token_hash(token, TOKEN_LEN, hash);
    token_hash_hex(hash, op->token_hash);
    /* The plaintext waits in the request for the reply, then is wiped. */
    memcpy(req->token, token, sizeof(token));
    token_wipe(token, sizeof(token));
    lobby_try(as, job, op);
}

static void lobby_done(struct actors *as, struct store_op *op)
{
    struct lobby_job *job = (struct lobby_job *)(uintptr_t)op->tag;
    struct api_req *req = job->req;
    int64_t id = op->id > 0 ? op->id : op->session_id;
    uint8_t hash[TOKEN_HASH_BYTES];
    struct session *s;
    json_t *j;

    if (op->status == STORE_CONFLICT) { /* the code is taken in the database */
        lobby_try(as, job, op);
        return;
    }
    if (op->status != STORE_OK || id <= 0 || !token_hash_parse(op->token_hash, hash)) {
        lobby_fail(as, job, op, 503, "storage_unavailable", "storage is unavailable; try again");
        return;
    }
    s = session__new(as, id, op->code, op->text, op->created_at, hash);
    if (actors__add_session(as, s) < 0) {
        log_error("session %lld is stored but no actor is free for it", (long long)id);
        session__free(s);
        lobby_fail(as, job, op, 503, "busy", "no room for another session; try again");
        return;
    }
    j = json_object();
    json_object_set_new(j, "session", session__json(s));
    json_object_set_new(j, "presenter_token", json_string(req->token));
    token_wipe(req->token, sizeof(req->token));
    store_op_free(op);
    free(job);
    api_reply_json(req, 201, j);
}

/* ---- the lobby: what another instance created ---- */

/* Hands a looked-up request to its session, as actors_submit would have. */
static void lobby_route(struct actors *as, struct session *s, struct api_req *req)
{
    struct mbox_msg m = {.type = MSG_REQ, .ptr = req};

    if (req->op == API_QR_SVG)
        actors_qr(as, req);
    else if (!actor_post(s->actor, &m))
        session__reply_503(req, "busy", "this session is busy; try again");
}

/* A code or poll id the directory lacks: find its session, load it if need be. */
static void lobby_lookup_session(struct actors *as, struct api_req *req)
{
    bool by_poll = actors_is_poll_route(req->op);
    struct store_find f = {.code = by_poll ? NULL : req->code, .poll_id = by_poll ? req->poll_id : 0};
    int64_t sid, pid;
    struct session *s;
    int rc;

    req->looked_up = true;
    rc = store_find_session(as->store, &f, &sid, &pid);
    if (rc == 1) {
        s = actors_get(as, as->by_id, (uint64_t)sid);
        rc = s != NULL ? 0 : actors__load_one(as, sid, &s);
        if (rc == 0) {
            lobby_route(as, s, req);
            return;
        }
    }
    if (rc == 0 || rc == -ENOENT) {
        if (by_poll)
            api_reply_error(req, 404, "not_found", "no poll %lld", (long long)req->poll_id);
        else
            api_reply_error(req, 404, "not_found", "no session with this code");
    } else if (rc == -ENOSPC) {
        session__reply_503(req, "busy", "this instance holds its maximum number of sessions");
    } else {
        session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
    }
}

/* A token session sid does not know: a participant who joined elsewhere? */
static void lobby_lookup_token(struct actors *as, struct api_req *req, int64_t sid)
{
    struct session *s = actors_get(as, as->by_id, (uint64_t)sid);
    uint8_t hash[TOKEN_HASH_BYTES];
    char hex[STORE_HASH_HEX + 1];
    struct store_find f = {.token_hash = hex};
    struct mbox_msg m = {.type = MSG_KNOWN, .ptr = req};
    int64_t found, pid;
    int rc;

    TALLY_ASSERT(s != NULL);
    req->token_looked_up = true;
    token_hash(req->token, strnlen(req->token, sizeof(req->token)), hash);
    token_hash_hex(hash, hex);
    rc = store_find_session(as->store, &f, &found, &pid);
    if (rc < 0) {
        session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
    } else if (rc == 0) {
        api_reply_error(req, 401, "unauthorized", "unknown token");
    } else if (found != sid) {
        api_reply_error(req, 403, "forbidden", "this token belongs to another session");
    } else {
        m.u64 = (uint64_t)pid;
        if (!actor_post(s->actor, &m))
            session__reply_503(req, "busy", "this session is busy; try again");
    }
}

/* ---- the lobby: event_log retention ---- */

static void lobby_on_tick(struct actor *a, void *ctx, uint64_t now_ms)
{
    struct actors *as = ctx;
    struct store_op *op;

    TALLY_ASSERT(as->lobby == a);
    if (as->prune_inflight || now_ms < as->prune_next_ms)
        return;
    op = session__op_new(STORE_EVENTS_PRUNE, as->lobby, 0);
    op->id = EVENTS_KEEP_S;
    if (!store_submit(as->store, op)) {
        store_op_free(op);
        log_warn("event_log pruning: storage is busy or unavailable; trying again later");
        as->prune_next_ms = now_ms + EVENTS_PRUNE_RETRY_MS;
        return;
    }
    as->prune_inflight = true;
}

static void lobby_prune_done(struct actors *as, struct store_op *op)
{
    uint64_t now_ms = clock_now_ms();

    TALLY_ASSERT(as->prune_inflight);
    as->prune_inflight = false;
    if (op->status == STORE_OK) {
        if (op->n_events > 0)
            log_info("event_log pruning: %u events older than %d s deleted", op->n_events,
                     EVENTS_KEEP_S);
        as->prune_next_ms = now_ms + EVENTS_PRUNE_EVERY_MS;
    } else {
        log_warn("event_log pruning failed; trying again later");
        as->prune_next_ms = now_ms + EVENTS_PRUNE_RETRY_MS;
    }
    store_op_free(op);
}

static void lobby_on_msg(struct actor *a, void *ctx, const struct mbox_msg *msg)
{
    struct actors *as = ctx;
    struct store_op *op;

    TALLY_ASSERT(as->lobby == a);
    if (msg->type == MSG_REQ) {
        lobby_create(as, msg->ptr);
        return;
    }
    if (msg->type == MSG_LOOKUP) {
        if (msg->u32 == LOOKUP_TOKEN)
            lobby_lookup_token(as, msg->ptr, (int64_t)msg->u64);
        else
            lobby_lookup_session(as, msg->ptr);
        return;
    }
    TALLY_ASSERT(msg->type == MSG_STORE_DONE);
    op = msg->ptr;
    if (op->kind == STORE_EVENTS_PRUNE)
        lobby_prune_done(as, op);
    else
        lobby_done(as, op);
}
