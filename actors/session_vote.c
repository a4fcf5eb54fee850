/*
 * session_vote.c - votes: the checks of CONTRACT section 3 guarantee 4 and
 * section 4, the store round trip, and the indexes that answer a retried
 * idempotency key with the original vote.
 *
 * Committed votes live in one growable array per session with their strings
 * in one growable buffer, indexed by (participant, key) and (participant,
 * poll) in maps of array indexes, so a vote costs no malloc of its own.
 * Votes stored before the process started are not in memory: the load
 * brought their counts only, and the database answers for each of them
 * (a repeated key comes back DUPLICATE from the store, a second vote
 * CONFLICT, and before refusing a loaded participant's vote the actor asks
 * the store whether its key names a stored vote). Nothing is ever removed from those maps, which lets a taken map key
 * simply move on to the next probe key. Votes in flight are few, come and go,
 * and are chained per map key instead.
 *
 * A vote is answered 201/200 only after the store says STORE_OK or
 * STORE_DUPLICATE, that is after its row is committed. Actor thread only.
 */
#include "actors/session.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base.h"
#include "core/hmap.h"
#include "core/log.h"

static_assert(API_CHOICES_MAX <= 32, "choices are checked for repeats with a 32-bit mask");
static_assert(API_OPTIONS_MAX <= UINT8_MAX, "an option index fits a choice byte");

static uint64_t vote_key_idem(int64_t participant_id, const char *key)
{
    return key__pair(participant_id, (int64_t)hmap_hash_bytes(key, strlen(key)));
}

static const char *vote_idem(const struct session *s, const struct vote *v)
{
    return s->strs.data + v->key_off;
}

static const char *vote_created_at(const struct session *s, const struct vote *v)
{
    const char *key = vote_idem(s, v);

    return key + strlen(key) + 1;
}

/* The committed vote of participant with key, or NULL and the map key a new one would take. */
static const struct vote *vote_find_key(const struct session *s, int64_t participant_id,
                                        const char *key, uint64_t *free_k)
{
    uint64_t k = vote_key_idem(participant_id, key);

    for (unsigned i = 0; i < PROBE_MAX; i++, k = probe__next(k)) {
        uintptr_t v = (uintptr_t)hmap_get(s->vote_by_key, k);
        const struct vote *vt;

        if (v == 0) {
            if (free_k)
                *free_k = k;
            return NULL;
        }
        TALLY_ASSERT(v <= s->n_votes);
        vt = &s->votes[v - 1];
        if (vt->participant_id == participant_id && strcmp(vote_idem(s, vt), key) == 0)
            return vt;
    }
    TALLY_ASSERT(!"vote key probe chain too long");
    return NULL;
}

/* The committed vote of participant on poll, or NULL and the map key a new one would take. */
static const struct vote *vote_find_pp(const struct session *s, int64_t participant_id,
                                       int64_t poll_id, uint64_t *free_k)
{
    uint64_t k = key__pair(participant_id, poll_id);

    for (unsigned i = 0; i < PROBE_MAX; i++, k = probe__next(k)) {
        uintptr_t v = (uintptr_t)hmap_get(s->vote_by_pp, k);
        const struct vote *vt;

        if (v == 0) {
            if (free_k)
                *free_k = k;
            return NULL;
        }
        TALLY_ASSERT(v <= s->n_votes);
        vt = &s->votes[v - 1];
        if (vt->participant_id == participant_id && vt->poll_id == poll_id)
            return vt;
    }
    TALLY_ASSERT(!"vote poll probe chain too long");
    return NULL;
}

static struct flight *flight_find_key(const struct session *s, int64_t participant_id,
                                      const char *key)
{
    struct flight *f = hmap_get(s->flight_by_key, vote_key_idem(participant_id, key));

    for (; f != NULL; f = f->next_key) {
        if (f->participant_id == participant_id && strcmp(f->idem_key, key) == 0)
            return f;
    }
    return NULL;
}

static bool flight_has_pp(const struct session *s, int64_t participant_id, int64_t poll_id)
{
    struct flight *f = hmap_get(s->flight_by_pp, key__pair(participant_id, poll_id));

    for (; f != NULL; f = f->next_pp) {
        if (f->participant_id == participant_id && f->poll_id == poll_id)
            return true;
    }
    return false;
}

static void flight_link(struct session *s, struct flight *f)
{
    f->next_key = hmap_get(s->flight_by_key, f->key_k);
    hmap_put(s->flight_by_key, f->key_k, f);
    f->next_pp = hmap_get(s->flight_by_pp, f->pp_k);
    hmap_put(s->flight_by_pp, f->pp_k, f);
}

/* Removes f from the chain under k; by_key selects which map and link. */
static void flight_unlink_one(struct hmap *h, uint64_t k, struct flight *f, bool by_key)
{
    struct flight *head = hmap_get(h, k);
    struct flight *prev = NULL;
    struct flight *cur = head;

    while (cur != NULL && cur != f) {
        prev = cur;
        cur = by_key ? cur->next_key : cur->next_pp;
    }
    TALLY_ASSERT(cur == f);
    struct flight *next = by_key ? f->next_key : f->next_pp;

    if (prev == NULL) {
        if (next != NULL)
            hmap_put(h, k, next);
        else
            hmap_del(h, k);
    } else if (by_key) {
        prev->next_key = next;
    } else {
        prev->next_pp = next;
    }
}

static void flight_unlink(struct session *s, struct flight *f)
{
    flight_unlink_one(s->flight_by_key, f->key_k, f, true);
    flight_unlink_one(s->flight_by_pp, f->pp_k, f, false);
}

static void flight_free(struct flight *f)
{
    store_op_free(f->op);
    free(f);
}

void *session__vote_json(const struct session *s, const struct vote *v)
{
    json_t *choice = json_array();
    json_t *j = json_object();

    for (uint8_t i = 0; i < v->n_choices; i++)
        json_array_append_new(choice, json_integer(v->choices[i]));
    json_object_set_new(j, "id", json_integer(v->id));
    json_object_set_new(j, "poll_id", json_integer(v->poll_id));
    json_object_set_new(j, "participant_id", json_integer(v->participant_id));
    json_object_set_new(j, "choice", choice);
    json_object_set_new(j, "created_at", json__str(vote_created_at(s, v)));
    return j;
}

/*
 * {"vote":{...}} as session__vote_json would give it, written directly:
 * every acknowledged vote is answered this way, and building the JSON tree
 * to dump it cost the session actor more than the rest of the answer. The
 * network side relies on the exact framing (net/live.c, ws_ack).
 */
static void vote_reply(const struct session *s, struct api_req *req, int status,
                       const struct vote *v)
{
    struct buf b = BUF_INIT;
    const char *at = vote_created_at(s, v);
    size_t len;

    buf_reserve(&b, 160);
    buf_append_str(&b, "{\"vote\":{\"id\":");
    buf_append_i64(&b, v->id);
    buf_append_str(&b, ",\"poll_id\":");
    buf_append_i64(&b, v->poll_id);
    buf_append_str(&b, ",\"participant_id\":");
    buf_append_i64(&b, v->participant_id);
    buf_append_str(&b, ",\"choice\":[");
    for (uint8_t i = 0; i < v->n_choices; i++) {
        if (i > 0)
            buf_append(&b, ",", 1);
        buf_append_i64(&b, v->choices[i]);
    }
    buf_append_str(&b, "],\"created_at\":");
    buf_append_json_str(&b, at, strlen(at));
    buf_append_str(&b, "}}");
    char *body = buf_steal(&b, &len);
    api_reply_raw(req, status, NULL, body, len);
}

/* Checks choices against the poll; writes why into msg when they do not fit. */
static bool vote_choices_valid(const struct poll *p, const struct api_req *req, char *msg,
                               size_t msg_len)
{
    uint32_t seen = 0;

    if (req->n_choices == 0 || req->n_choices > API_CHOICES_MAX) {
        snprintf(msg, msg_len, "choice: name 1 to %u options", p->max_choices);
        return false;
    }
    if (p->kind != POLL_MULTI && req->n_choices != 1) {
        snprintf(msg, msg_len, "choice: a %s poll takes exactly one option",
                 poll_kind_name(p->kind));
        return false;
    }
    if (req->n_choices > p->max_choices) {
        snprintf(msg, msg_len, "choice: at most %u options", p->max_choices);
        return false;
    }
    for (uint32_t i = 0; i < req->n_choices; i++) {
        uint8_t c = req->choices[i];

        if (c >= p->n_options) {
            snprintf(msg, msg_len, "choice: %u is out of range 0..%u", c, p->n_options - 1);
            return false;
        }
        if (seen & (UINT32_C(1) << c)) {
            snprintf(msg, msg_len, "choice: %u is repeated", c);
            return false;
        }
        seen |= UINT32_C(1) << c;
    }
    return true;
}

/* Sends the vote to the store; it is in flight from here until session__vote_done. */
static void vote_send(struct session *s, struct participant *pt, struct poll *p,
                      struct api_req *req)
{
    struct store_op *op = session__op_new(STORE_VOTE, s->actor, 0);
    struct flight *f = xcalloc(1, sizeof(*f));

    op->tag = (uintptr_t)f;
    op->session_id = s->id;
    op->vote.session_id = s->id;
    op->vote.poll_id = p->id;
    op->vote.participant_id = pt->id;
    memcpy(op->vote.choices, req->choices, req->n_choices);
    op->vote.n_choices = req->n_choices;
    str_copy(op->vote.idem_key, sizeof(op->vote.idem_key), req->idem_key);
    /* Memory holds every vote of a participant who joined since the load. */
    op->vote_fresh = !pt->loaded;
    op->vote_checked = session__shared(s); /* another instance may close the poll */
    /* The writer thread fills op->vote while the vote is in flight: the
     * flight keeps its own copy of what identifies it. */
    f->op = op;
    f->req = req;
    f->participant_id = pt->id;
    f->part_idx = (uint32_t)(pt - s->parts);
    f->poll_id = p->id;
    memcpy(f->idem_key, op->vote.idem_key, sizeof(f->idem_key));
    f->key_k = vote_key_idem(pt->id, f->idem_key);
    f->pp_k = key__pair(pt->id, p->id);
    if (!store_submit(s->as->store, op)) {
        flight_free(f);
        session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
        return;
    }
    flight_link(s, f);
    p->votes_inflight++;
}

/*
 * About to refuse req. If pt may have a stored vote with this key that
 * memory does not hold, asks the store first (the answer to a known key is
 * the original vote, whatever else is wrong with the request) and returns
 * true: session__vote_lookup_done finishes the request. Lookups count against
 * the participant's vote rate, which bounds what refusals can cost the store.
 */
static bool vote_check_key(struct session *s, struct participant *pt, struct api_req *req)
{
    struct store_op *op;

    if (!pt->loaded || req->key_checked)
        return false;
    req->key_checked = true;
    if (!session__rate_take(pt, clock_now_ms())) {
        req->retry_after_s = 1;
        api_reply_error(req, 429, "rate_limited", "at most %d votes per second", VOTE_RATE_PER_S);
        return true;
    }
    op = session__op_new(STORE_VOTE_LOOKUP, s->actor, (uintptr_t)req);
    op->session_id = s->id;
    op->id = pt - s->parts; /* the participant's index: the array only grows */
    op->vote.participant_id = pt->id;
    str_copy(op->vote.idem_key, sizeof(op->vote.idem_key), req->idem_key);
    if (!store_submit(s->as->store, op)) {
        store_op_free(op);
        session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
    }
    return true;
}

void session__vote(struct session *s, struct participant *pt, struct api_req *req)
{
    char msg[128];
    const struct vote *v;
    struct flight *f;
    struct poll *p;

    if (req->idem_key[0] == '\0') {
        api_reply_error(req, 400, "invalid_request", "Idempotency-Key: required");
        return;
    }
    v = vote_find_key(s, pt->id, req->idem_key, NULL);
    if (v != NULL) { /* a retry: the original, whatever the poll's state now */
        vote_reply(s, req, 200, v);
        return;
    }
    f = flight_find_key(s, pt->id, req->idem_key);
    if (f != NULL) { /* a retry of a vote still in flight: answer with its outcome */
        if (f->n_waiters == VOTE_WAITERS_MAX) {
            session__reply_503(req, "busy", "this vote is still being stored");
            return;
        }
        f->waiters[f->n_waiters++] = req;
        return;
    }
    p = session__poll(s, req->poll_id);
    if (p == NULL) {
        if (!vote_check_key(s, pt, req))
            api_reply_error(req, 404, "not_found", "no poll %lld", (long long)req->poll_id);
        return;
    }
    if (p->state != POLL_OPEN || p->closing) {
        if (!vote_check_key(s, pt, req))
            api_reply_error(req, 409, "poll_not_open", "poll %lld is %s", (long long)p->id,
                            p->state == POLL_DRAFT ? "not open yet" : "closed");
        return;
    }
    if (!vote_choices_valid(p, req, msg, sizeof(msg))) {
        if (!vote_check_key(s, pt, req))
            api_reply_error(req, 400, "invalid_request", "%s", msg);
        return;
    }
    if (vote_find_pp(s, pt->id, p->id, NULL) != NULL || flight_has_pp(s, pt->id, p->id)) {
        if (!vote_check_key(s, pt, req))
            api_reply_error(req, 409, "already_voted", "participant %lld already voted on poll %lld",
                            (long long)pt->id, (long long)p->id);
        return;
    }
    if (!session__rate_take(pt, clock_now_ms())) {
        req->retry_after_s = 1;
        api_reply_error(req, 429, "rate_limited", "at most %d votes per second", VOTE_RATE_PER_S);
        return;
    }
    vote_send(s, pt, p, req);
}

static bool vote_row_valid(const struct poll *p, const struct store_vote *v)
{
    if (v->id <= 0 || v->participant_id <= 0)
        return false;
    if (v->n_choices == 0 || v->n_choices > API_CHOICES_MAX || v->n_choices > p->n_options)
        return false;
    for (uint32_t i = 0; i < v->n_choices; i++) {
        if (v->choices[i] >= p->n_options)
            return false;
    }
    return true;
}

/* Appends key, NUL, created_at, NUL to the session's strings; returns the offset. */
static size_t vote_strs_add(struct session *s, const char *key, const char *created_at)
{
    size_t off = s->strs.len;
    size_t klen = strnlen(key, API_IDEM_KEY_MAX);
    size_t tlen = strnlen(created_at, STORE_TIME_MAX - 1);

    buf_reserve(&s->strs, klen + tlen + 2);
    buf_append(&s->strs, key, klen);
    buf_append(&s->strs, "", 1);
    buf_append(&s->strs, created_at, tlen);
    buf_append(&s->strs, "", 1);
    return off;
}

/* Appends a valid row to the votes array, not yet indexed nor counted; returns it. */
static struct vote *vote_append(struct session *s, const struct store_vote *sv)
{
    struct vote *v;

    if (s->n_votes == s->cap_votes) {
        s->cap_votes = s->cap_votes ? s->cap_votes * 2 : 256;
        s->votes = xrealloc(s->votes, s->cap_votes * sizeof(*s->votes));
    }
    v = &s->votes[s->n_votes++];
    v->id = sv->id;
    v->poll_id = sv->poll_id;
    v->participant_id = sv->participant_id;
    v->key_off = vote_strs_add(s, sv->idem_key, sv->created_at);
    memcpy(v->choices, sv->choices, sv->n_choices);
    v->n_choices = (uint8_t)sv->n_choices;
    return v;
}

/*
 * Indexes votes[idx] and, when count, counts it in its poll. false when the
 * participant already has a vote with that key or on that poll (the vote is
 * not counted).
 */
static bool vote_index(struct session *s, size_t idx, bool count)
{
    const struct vote *v = &s->votes[idx];
    struct poll *p = session__poll(s, v->poll_id);
    uint64_t key_k = 0;
    uint64_t pp_k = 0;

    TALLY_ASSERT(p != NULL);
    if (vote_find_key(s, v->participant_id, vote_idem(s, v), &key_k) != NULL)
        return false;
    if (vote_find_pp(s, v->participant_id, v->poll_id, &pp_k) != NULL) {
        log_warn("session %s: second vote %lld of participant %lld on poll %lld ignored", s->code,
                 (long long)v->id, (long long)v->participant_id, (long long)v->poll_id);
        return false;
    }
    hmap_put(s->vote_by_key, key_k, (void *)(uintptr_t)(idx + 1));
    hmap_put(s->vote_by_pp, pp_k, (void *)(uintptr_t)(idx + 1));
    if (!count)
        return true;
    for (uint8_t i = 0; i < v->n_choices; i++)
        p->counts[v->choices[i]]++;
    p->total++;
    p->version++;
    return true;
}

static bool vote_row_fits(struct session *s, const struct store_vote *sv)
{
    struct poll *p = session__poll(s, sv->poll_id);

    if (p == NULL || !vote_row_valid(p, sv)) {
        log_warn("session %s: vote %lld does not fit poll %lld; not counted", s->code,
                 (long long)sv->id, (long long)sv->poll_id);
        return false;
    }
    return true;
}

bool session__vote_commit(struct session *s, const struct store_vote *sv)
{
    if (!vote_row_fits(s, sv))
        return false;
    if (vote_find_key(s, sv->participant_id, sv->idem_key, NULL) != NULL)
        return true; /* known already */
    vote_append(s, sv);
    /* A stored vote the load counted is only remembered, not counted again. */
    /* While shared, counts come from the database (session_follow.c). */
    if (!vote_index(s, s->n_votes - 1, sv->id > s->vote_id_max && !session__shared(s))) {
        s->n_votes--; /* its strings stay behind in strs: rare and harmless */
        return false;
    }
    return true;
}

bool session__vote_count_load(struct session *s, const struct store_vote_count *c)
{
    struct poll *p = session__poll(s, c->poll_id);
    struct store_vote v = {.id = 1, .participant_id = 1, .n_choices = c->n_choices};

    memcpy(v.choices, c->choices, sizeof(v.choices));
    /* The same checks as a single vote's row, on what the group shares. */
    if (p == NULL || !vote_row_valid(p, &v)) {
        log_warn("session %s: %llu votes do not fit poll %lld; not counted", s->code,
                 (unsigned long long)c->votes, (long long)c->poll_id);
        return false;
    }
    for (uint32_t i = 0; i < c->n_choices; i++)
        p->counts[c->choices[i]] += c->votes;
    p->total += c->votes;
    p->version += c->votes;
    return true;
}

void session__vote_lookup_done(struct session *s, struct store_op *op)
{
    struct api_req *req = (struct api_req *)(uintptr_t)op->tag;
    const struct vote *v = NULL;

    TALLY_ASSERT(req != NULL && req->key_checked);
    TALLY_ASSERT(op->id >= 0 && (uint64_t)op->id < s->n_parts);
    if (op->status == STORE_OK) {
        /* The key names a stored vote: it is the answer, whatever the
         * request asked for (CONTRACT section 3, guarantee 4). */
        session__vote_commit(s, &op->vote);
        v = vote_find_key(s, op->vote.participant_id, req->idem_key, NULL);
        if (v != NULL)
            vote_reply(s, req, 200, v);
        else
            session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
    } else if (op->status == STORE_NOT_FOUND) {
        session__vote(s, &s->parts[op->id], req); /* key_checked: refused as it stands */
    } else {
        session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
    }
    store_op_free(op);
}

/* Answers the vote's request and its waiters with one outcome. */
static void vote_answer(struct session *s, struct flight *f, enum store_status st)
{
    const struct vote *v = NULL;

    if (st == STORE_OK || st == STORE_DUPLICATE) {
        v = vote_find_key(s, f->participant_id, f->idem_key, NULL);
        if (v == NULL) { /* the store's row did not fit: never ack what we did not count */
            log_error("session %s: committed vote of participant %lld not recorded", s->code,
                      (long long)f->participant_id);
            st = STORE_UNAVAILABLE;
        }
    }
    for (uint32_t i = 0; i <= f->n_waiters; i++) {
        struct api_req *req = i == 0 ? f->req : f->waiters[i - 1];

        if (v != NULL) {
            vote_reply(s, req, i == 0 && st == STORE_OK ? 201 : 200, v);
        } else if (st == STORE_CLOSED) {
            api_reply_error(req, 409, "poll_not_open", "poll %lld is closed",
                            (long long)f->poll_id);
        } else if (st == STORE_CONFLICT) {
            api_reply_error(req, 409, "already_voted",
                            "participant %lld already voted on poll %lld",
                            (long long)f->participant_id, (long long)f->poll_id);
        } else {
            session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
        }
    }
}

void session__vote_done(struct session *s, struct store_op *op)
{
    struct flight *f = (struct flight *)(uintptr_t)op->tag;
    struct poll *p = session__poll(s, f->poll_id);

    TALLY_ASSERT(f->op == op);
    TALLY_ASSERT(p != NULL && p->votes_inflight > 0);
    flight_unlink(s, f);
    p->votes_inflight--;
    if (op->status == STORE_OK || op->status == STORE_DUPLICATE) {
        /* With DUPLICATE, op->vote is the original (maybe of another poll):
         * the database holds it, so memory counts it too if it did not know
         * it yet. */
        struct poll *vp = session__poll(s, op->vote.poll_id);
        uint64_t version = vp ? vp->version : 0;

        session__vote_commit(s, &op->vote);
        if (vp != NULL && vp->version != version)
            session__live_dirty(s, vp);
    }
    /* A vote that failed may have committed all the same (its answer was
     * lost and could not be checked): from now on memory may not hold every
     * stored vote of this participant, so its refusals ask the store first. */
    if (op->status == STORE_UNAVAILABLE) {
        TALLY_ASSERT(f->part_idx < s->n_parts);
        s->parts[f->part_idx].loaded = true;
    }
    vote_answer(s, f, op->status);
    if (p->votes_inflight == 0 && p->closing)
        session__struct_drained(s, p);
    flight_free(f);
}

static void vote_free_flight_cb(uint64_t key, void *val, void *arg)
{
    struct flight ***out = arg;

    (void)key;
    for (struct flight *f = val; f != NULL; f = f->next_key)
        *(*out)++ = f;
}

void session__vote_free_flights(struct session *s)
{
    size_t n = hmap_count(s->flight_by_key);
    struct flight **all;
    struct flight **end;

    if (n == 0)
        return;
    /* Chains may hold more flights than map keys; count them first. */
    n = 0;
    for (uint32_t i = 0; i < s->n_polls; i++)
        n += s->polls[i]->votes_inflight;
    all = xcalloc(n + 1, sizeof(*all));
    end = all;
    hmap_each(s->flight_by_key, vote_free_flight_cb, &end);
    TALLY_ASSERT((size_t)(end - all) <= n);
    for (struct flight **f = all; f < end; f++) {
        api_req_free((*f)->req);
        for (uint32_t i = 0; i < (*f)->n_waiters; i++)
            api_req_free((*f)->waiters[i]);
        /* The op may still be inside the store or a mailbox at shutdown;
         * only the request side is ours to free. */
        free(*f);
    }
    free(all);
}
