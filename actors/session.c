/*
 * session.c - one session actor: message dispatch, authorisation, and the
 * routes that need no structural change (state, results, export, join).
 *
 * Everything here runs on the session's actor thread, except
 * session__on_store_done, which runs on a store writer thread and only posts.
 */
#include "actors/session.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/actor.h"
#include "core/base.h"
#include "core/hmap.h"
#include "core/log.h"

enum role { ROLE_NONE, ROLE_PRESENTER, ROLE_PARTICIPANT };

static_assert(sizeof(((struct api_req *)0)->token) >= TOKEN_LEN + 1,
              "a new token travels in req->token until its reply");

struct session *session__new(struct actors *as, int64_t id, const char *code, const char *title,
                             const char *created_at, const uint8_t presenter_hash[])
{
    struct session *s = xcalloc(1, sizeof(*s));

    TALLY_ASSERT(strlen(code) == API_CODE_LEN);
    TALLY_ASSERT(id > 0);
    s->as = as;
    s->id = id;
    memcpy(s->code, code, API_CODE_LEN + 1);
    s->title = xstrdup(title ? title : "");
    str_copy(s->created_at, sizeof(s->created_at), created_at ? created_at : "");
    memcpy(s->presenter_hash, presenter_hash, TOKEN_HASH_BYTES);
    s->poll_by_id = hmap_create(16);
    s->part_by_token = hmap_create(64);
    s->vote_by_key = hmap_create(64);
    s->vote_by_pp = hmap_create(64);
    s->flight_by_key = hmap_create(64);
    s->flight_by_pp = hmap_create(64);
    atomic_init(&s->unsub_spill, NULL);
    return s;
}

void session__drain(struct actor *a)
{
    struct mbox_msg m[64];
    unsigned n;

    /* A store op that completed after the runtime stopped (a request that
     * came in at the very end of a drain): its reply can go nowhere, but the
     * op and the requests still waiting are ours to free. Requests an op
     * names are freed with the session's own lists, not here. */
    while ((n = actor_drain(a, m, ARRAY_LEN(m))) > 0) {
        for (unsigned i = 0; i < n; i++) {
            if (m[i].type == MSG_STORE_DONE)
                store_op_free(m[i].ptr);
            else if (m[i].type == MSG_REQ || m[i].type == MSG_LOOKUP || m[i].type == MSG_KNOWN)
                api_req_free(m[i].ptr);
        }
    }
}

void session__free(struct session *s)
{
    if (s == NULL)
        return;
    session__vote_free_flights(s);
    session__follow_free(s);
    session__live_free(s);
    for (uint32_t i = 0; i < s->queue_len; i++)
        api_req_free(s->queue[(s->queue_head + i) % SESSION_QUEUE_MAX]);
    for (uint32_t i = 0; i < s->n_polls; i++) {
        struct poll *p = s->polls[i];

        free(p->question);
        free(p->count_base);
        for (uint32_t o = 0; o < p->n_options; o++)
            free(p->options[o]);
        free(p);
    }
    free(s->polls);
    free(s->parts);
    free(s->votes);
    buf_free(&s->strs);
    hmap_destroy(s->poll_by_id);
    hmap_destroy(s->part_by_token);
    hmap_destroy(s->vote_by_key);
    hmap_destroy(s->vote_by_pp);
    hmap_destroy(s->flight_by_key);
    hmap_destroy(s->flight_by_pp);
    free(s->title);
    free(s);
}

struct store_op *session__op_new(enum store_op_kind kind, struct actor *owner, uint64_t tag)
{
    struct store_op *op = xcalloc(1, sizeof(*op));

    TALLY_ASSERT(owner != NULL);
    op->kind = kind;
    op->on_done = session__on_store_done;
    op->owner = owner;
    op->tag = tag;
    return op;
}

void session__on_store_done(struct store_op *op)
{
    struct mbox_msg m = {.type = MSG_STORE_DONE, .ptr = op};
    struct actor *owner = op->owner;

    TALLY_ASSERT(owner != NULL);
    /*
     * A completion is never dropped: it may be a committed vote, and the
     * actor must count it and answer the client, or memory would disagree
     * with the database for good. A full mailbox only means the actor is
     * behind; it never waits on the store, so it drains and this retry ends.
     * Blocking this writer for that long also slows new submissions, which
     * is the backpressure we want.
     */
    while (!actor_post(owner, &m))
        usleep(STORE_POST_RETRY_US);
}

void session__reply_503(struct api_req *req, const char *code, const char *msg)
{
    req->retry_after_s = 1;
    api_reply_error(req, 503, code, "%s", msg);
}

static void session_grow_parts(struct session *s)
{
    uint32_t cap;

    if (s->n_parts < s->cap_parts)
        return;
    cap = s->cap_parts ? s->cap_parts * 2 : 64;
    s->parts = xrealloc(s->parts, (size_t)cap * sizeof(*s->parts));
    s->cap_parts = cap;
}

/* The participant holding hash, or NULL. */
static struct participant *session_find_participant(const struct session *s,
                                                    const uint8_t hash[TOKEN_HASH_BYTES],
                                                    uint64_t *free_key)
{
    uint64_t k = token_hash_key(hash);

    for (unsigned i = 0; i < PROBE_MAX; i++, k = probe__next(k)) {
        uintptr_t v = (uintptr_t)hmap_get(s->part_by_token, k);
        struct participant *p;

        if (v == 0) {
            if (free_key)
                *free_key = k;
            return NULL;
        }
        TALLY_ASSERT(v <= s->n_parts);
        p = &s->parts[v - 1];
        if (memcmp(p->token_hash, hash, TOKEN_HASH_BYTES) == 0)
            return p;
    }
    /* 64 random 64-bit keys all taken by other tokens: the map is corrupt. */
    TALLY_ASSERT(!"participant probe chain too long");
    return NULL;
}

struct participant *session__add_participant(struct session *s, int64_t id,
                                             const uint8_t hash[TOKEN_HASH_BYTES])
{
    struct participant *p;
    uint64_t k = 0;

    TALLY_ASSERT(id > 0);
    p = session_find_participant(s, hash, &k);
    if (p != NULL) /* the same token twice: keep the first */
        return p;
    session_grow_parts(s);
    p = &s->parts[s->n_parts++];
    memset(p, 0, sizeof(*p));
    p->id = id;
    memcpy(p->token_hash, hash, TOKEN_HASH_BYTES);
    hmap_put(s->part_by_token, k, (void *)(uintptr_t)s->n_parts);
    return p;
}

/*
 * Decides who sent req. Replies 401 or 403 itself and returns ROLE_NONE when
 * the token does not belong to this session.
 */
static enum role session_auth(struct session *s, struct api_req *req, struct participant **out)
{
    uint8_t hash[TOKEN_HASH_BYTES];
    size_t len = strnlen(req->token, sizeof(req->token));
    struct participant *p;
    struct session *other;

    *out = NULL;
    if (len == 0) {
        api_reply_error(req, 401, "unauthorized", "a token is required");
        return ROLE_NONE;
    }
    token_hash(req->token, len, hash);
    if (memcmp(hash, s->presenter_hash, TOKEN_HASH_BYTES) == 0)
        return ROLE_PRESENTER;
    p = session_find_participant(s, hash, NULL);
    if (p != NULL) {
        *out = p;
        return ROLE_PARTICIPANT;
    }
    other = actors__session_of_token(s->as, hash);
    if (other != NULL && other != s) {
        api_reply_error(req, 403, "forbidden", "this token belongs to another session");
        return ROLE_NONE;
    }
    if (other == NULL && actors__lookup_token(s->as, s, req))
        return ROLE_NONE; /* joined on another instance? MSG_KNOWN or 401 follows */
    api_reply_error(req, 401, "unauthorized", "unknown token");
    return ROLE_NONE;
}

/*
 * Beyond the contract's fields, "you" names the caller's role and id (the
 * session id for the presenter), which a WebSocket or SSE hello needs.
 */
static void session_get(struct session *s, struct api_req *req, enum role role,
                        const struct participant *p)
{
    json_t *j;

    /* Participants may have joined on another instance. */
    if (session__shared(s) && !req->counted) {
        struct store_op *op = session__op_new(STORE_PARTICIPANTS_COUNT, s->actor, (uintptr_t)req);

        req->counted = true;
        op->session_id = s->id;
        if (store_submit(s->as->store, op))
            return; /* session_counted() serves req again */
        store_op_free(op);
    }
    j = json_object();

    json_object_set_new(j, "session", session__json(s));
    json_object_set_new(j, "polls", session__polls_json(s));
    json_object_set_new(j, "seq", json_integer(s->seq));
    json_object_set_new(j, "participants",
                        json_integer(s->n_parts > s->parts_stored ? s->n_parts : s->parts_stored));
    json_object_set_new(j, "you",
                        json_pack("{s:s,s:I}", "role",
                                  role == ROLE_PRESENTER ? "presenter" : "participant", "id",
                                  (json_int_t)(role == ROLE_PRESENTER ? s->id : p->id)));
    api_reply_json(req, 200, j);
}

static void session_results(struct session *s, struct api_req *req)
{
    struct poll *p = session__poll(s, req->poll_id);

    if (p == NULL) {
        api_reply_error(req, 404, "not_found", "no poll %lld", (long long)req->poll_id);
        return;
    }
    /* Shared, memory may lag: an open poll's counts, or a poll whose
     * close another instance made and whose total is being read. */
    if (session__shared(s) && (p->state == POLL_OPEN || p->count_inflight)) {
        session__follow_results(s, req, p);
        return;
    }
    api_reply_json(req, 200, session__results_json(p));
}

static void session_export(struct session *s, struct api_req *req)
{
    size_t len = 0;
    char *csv = session__csv(s, &len);

    api_reply_raw(req, 200, "text/csv; charset=utf-8", csv, len);
}

static void session_join(struct session *s, struct api_req *req)
{
    char token[TOKEN_LEN + 1];
    uint8_t hash[TOKEN_HASH_BYTES];
    struct store_op *op;

    if (s->closed) {
        api_reply_error(req, 409, "session_closed", "session %s is closed", s->code);
        return;
    }
    if (s->n_parts + s->joins_inflight >= SESSION_PARTICIPANTS_MAX) {
        api_reply_error(req, 409, "limit_reached", "a session holds at most %u participants",
                        SESSION_PARTICIPANTS_MAX);
        return;
    }
    if (token_generate(token) < 0) {
        log_error("session %s: no randomness for a participant token", s->code);
        api_reply_error(req, 500, "internal", "no token could be made");
        return;
    }
    op = session__op_new(STORE_PARTICIPANT_CREATE, s->actor, (uintptr_t)req);
    op->session_id = s->id;
    op->text = req->text;
    req->text = NULL;
    token_hash(token, TOKEN_LEN, hash);
    token_hash_hex(hash, op->token_hash);
    /* The plaintext waits in the request for the reply, then is wiped. */
    memcpy(req->token, token, sizeof(token));
    token_wipe(token, sizeof(token));
    if (!store_submit(s->as->store, op)) {
        store_op_free(op);
        token_wipe(req->token, sizeof(req->token));
        session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
        return;
    }
    s->joins_inflight++;
}

/* A participant stored in the database enters the session and the directory. */
static struct participant *session_admit(struct session *s, int64_t id, const uint8_t hash[TOKEN_HASH_BYTES])
{
    uint32_t before = s->n_parts;
    struct participant *p = session__add_participant(s, id, hash);

    if (s->n_parts > before) { /* not the same token twice */
        actors__add_token(s->as, s, hash);
        atomic_fetch_add_explicit(&s->as->participants, 1, memory_order_relaxed);
    }
    return p;
}

static void session_join_done(struct session *s, struct store_op *op)
{
    struct api_req *req = (struct api_req *)(uintptr_t)op->tag;
    uint8_t hash[TOKEN_HASH_BYTES];
    json_t *j;

    TALLY_ASSERT(s->joins_inflight > 0);
    s->joins_inflight--;
    if (op->status != STORE_OK || op->id <= 0 || !token_hash_parse(op->token_hash, hash)) {
        store_op_free(op);
        token_wipe(req->token, sizeof(req->token));
        session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
        return;
    }
    session_admit(s, op->id, hash);
    j = json_object();
    json_object_set_new(j, "participant_id", json_integer(op->id));
    json_object_set_new(j, "participant_token", json_string(req->token));
    token_wipe(req->token, sizeof(req->token));
    store_op_free(op);
    api_reply_json(req, 201, j);
}

void session__on_req(struct session *s, struct api_req *req)
{
    struct participant *p = NULL;
    enum role role;

    /* The database says the poll is ours, but its poll.created has not
     * been read here yet. */
    if (req->poll_id > 0 && req->looked_up && !req->caught_up && session__poll(s, req->poll_id) == NULL &&
        session__follow_wait(s, req))
        return;
    if (req->op == API_JOIN) {
        session_join(s, req);
        return;
    }
    if (req->op == API_UNSUBSCRIBE) {
        session__live_unsubscribe(s, req);
        return;
    }
    role = session_auth(s, req, &p);
    if (role == ROLE_NONE)
        return;
    switch (req->op) {
    case API_SESSION_GET:
        session_get(s, req, role, p);
        return;
    case API_RESULTS:
        session_results(s, req);
        return;
    case API_SUBSCRIBE:
        session__live_subscribe(s, req, role == ROLE_PRESENTER ? NULL : p);
        return;
    case API_VOTE:
        if (role != ROLE_PARTICIPANT) {
            api_reply_error(req, 403, "forbidden", "only participants vote");
            return;
        }
        session__vote(s, p, req);
        return;
    case API_POLL_CREATE:
    case API_POLL_OPEN:
    case API_POLL_CLOSE:
    case API_SESSION_CLOSE:
    case API_EXPORT_CSV:
        if (role != ROLE_PRESENTER) {
            api_reply_error(req, 403, "forbidden", "only the presenter may do this");
            return;
        }
        if (req->op == API_EXPORT_CSV)
            session_export(s, req);
        else
            session__struct_submit(s, req);
        return;
    default:
        TALLY_ASSERT(!"request routed to a session actor by mistake");
    }
}

static void session_counted(struct session *s, struct store_op *op)
{
    struct api_req *req = (struct api_req *)(uintptr_t)op->tag;

    if (op->status == STORE_OK && op->total > s->parts_stored)
        s->parts_stored = op->total;
    store_op_free(op);
    session__on_req(s, req);
}

/* The lobby found req's token in the database: a participant (pid) who
 * joined on another instance, or the presenter (0). */
static void session_known(struct session *s, struct api_req *req, int64_t pid)
{
    uint8_t hash[TOKEN_HASH_BYTES];

    if (pid > 0 && s->n_parts < SESSION_PARTICIPANTS_MAX) {
        token_hash(req->token, strnlen(req->token, sizeof(req->token)), hash);
        session_admit(s, pid, hash)->loaded = true;
    }
    session__on_req(s, req);
}

void session__on_msg(struct actor *a, void *ctx, const struct mbox_msg *msg)
{
    struct session *s = ctx;
    struct store_op *op;

    TALLY_ASSERT(s->actor == a);
    session__live_drain_spill(s);
    if (msg->type == MSG_REQ) {
        session__on_req(s, msg->ptr);
        return;
    }
    if (msg->type == MSG_FOLLOW) {
        session__follow_hint(s, (int64_t)msg->u64);
        return;
    }
    if (msg->type == MSG_KNOWN) {
        session_known(s, msg->ptr, (int64_t)msg->u64);
        return;
    }
    TALLY_ASSERT(msg->type == MSG_STORE_DONE);
    op = msg->ptr;
    switch (op->kind) {
    case STORE_PARTICIPANT_CREATE:
        session_join_done(s, op);
        return;
    case STORE_VOTE:
        session__vote_done(s, op);
        return;
    case STORE_VOTE_LOOKUP:
        session__vote_lookup_done(s, op);
        return;
    case STORE_POLL_CREATE:
    case STORE_POLL_OPEN:
    case STORE_POLL_CLOSE:
    case STORE_SESSION_CLOSE:
        session__struct_done(s, op);
        return;
    case STORE_EVENTS_SINCE:
        if (op->tag == SESSION_FOLLOW_TAG)
            session__follow_done(s, op);
        else
            session__live_since_done(s, op);
        return;
    case STORE_POLL_COUNTS:
        session__counts_done(s, op);
        return;
    case STORE_PARTICIPANTS_COUNT:
        session_counted(s, op);
        return;
    default:
        TALLY_ASSERT(!"unexpected store completion in a session");
    }
}
