/*
 * test_session.c - the session actors end to end: requests go through
 * actors_submit on a real actor runtime, the store is tests/actors/
 * fake_store.c, and replies are read back as the network would.
 *
 * Built with SESSION_PARTICIPANTS_MAX=8 and SESSION_POLLS_MAX=16 so the
 * limits can be reached.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "actors/actors.h"
#include "actors/api.h"
#include "actors/joincode.h"
#include "actors/qr.h"
#include "actors/session.h"
#include "core/actor.h"
#include "fake_store.h"

_Static_assert(SESSION_PARTICIPANTS_MAX == 8, "built with small limits");
_Static_assert(SESSION_POLLS_MAX == 16, "built with small limits");

/* ---- the world: runtime, fake store, actors ---- */

struct world {
    struct actor_rt *rt;
    struct store *st;
    struct actors *as;
};

static struct world W;

static void world_open(struct world *w, struct store *st)
{
    struct actors_config cfg;

    w->rt = actor_rt_create(2, 256);
    assert_non_null(w->rt);
    assert_int_equal(actor_rt_start(w->rt), 0);
    w->st = st;
    cfg = (struct actors_config){.rt = w->rt, .store = st, .sessions_max = 64};
    w->as = actors_create(&cfg);
    assert_non_null(w->as);
}

static void world_close(struct world *w)
{
    /* A test that failed while holding the store must not hang the teardown. */
    fake_store_hold(w->st, false);
    fake_store_wait_idle(w->st);
    actor_rt_stop(w->rt);
    actors_destroy(w->as);
    actor_rt_destroy(w->rt);
}

static int setup(void **state)
{
    (void)state;
    world_open(&W, fake_store_create());
    return 0;
}

static int teardown(void **state)
{
    struct store *st = W.st;

    (void)state;
    world_close(&W);
    fake_store_destroy(st);
    return 0;
}

/* ---- calls: one request and its reply ---- */

struct call {
    sem_t done;
    int status;
    char *body;
    size_t len;
    const char *ctype;
    uint32_t retry;
    json_t *json;
};

static void on_reply(struct api_req *req)
{
    struct call *c = req->net_ctx;

    c->status = req->status;
    c->body = req->body;
    c->len = req->body_len;
    c->ctype = req->content_type;
    c->retry = req->retry_after_s;
    req->body = NULL;
    api_req_free(req);
    sem_post(&c->done);
}

static struct api_req *req_new(enum api_op op, const char *code, int64_t poll_id, const char *token)
{
    struct api_req *req = api_req_new(op);

    if (code)
        snprintf(req->code, sizeof(req->code), "%s", code);
    req->poll_id = poll_id;
    if (token)
        snprintf(req->token, sizeof(req->token), "%s", token);
    req->on_reply = on_reply;
    return req;
}

static struct call *call_start_as(struct actors *as, struct api_req *req)
{
    struct call *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    sem_init(&c->done, 0, 0);
    req->net_ctx = c;
    actors_submit(as, req);
    return c;
}

static struct call *call_start(struct api_req *req)
{
    return call_start_as(W.as, req);
}

static struct call *call_wait(struct call *c)
{
    while (sem_wait(&c->done) != 0)
        ;
    if (c->body && (c->ctype == NULL))
        c->json = json_loadb(c->body, c->len, 0, NULL);
    if (c->ctype == NULL)
        assert_non_null(c->json); /* every JSON reply parses */
    return c;
}

/* true when c has replied already. */
static bool call_done(struct call *c)
{
    int v = 0;

    sem_getvalue(&c->done, &v);
    return v > 0;
}

static struct call *call_as(struct actors *as, struct api_req *req)
{
    return call_wait(call_start_as(as, req));
}

static struct call *call(struct api_req *req)
{
    return call_as(W.as, req);
}

static void call_free(struct call *c)
{
    sem_destroy(&c->done);
    json_decref(c->json);
    free(c->body);
    free(c);
}

static const char *jstr(json_t *j, const char *path1, const char *path2)
{
    json_t *v = json_object_get(j, path1);

    if (path2)
        v = json_object_get(v, path2);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static int64_t jint(json_t *j, const char *path1, const char *path2)
{
    json_t *v = json_object_get(j, path1);

    if (path2)
        v = json_object_get(v, path2);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* Asserts an error reply and frees the call. */
static void expect_error(struct call *c, int status, const char *code)
{
    if (c->status != status)
        fprintf(stderr, "expected %d %s, got %d %s\n", status, code, c->status, c->body);
    assert_int_equal(c->status, status);
    assert_string_equal(jstr(c->json, "error", "code"), code);
    assert_true(strlen(jstr(c->json, "error", "message")) > 0);
    call_free(c);
}

static void expect_status(struct call *c, int status)
{
    if (c->status != status)
        fprintf(stderr, "expected %d, got %d %s\n", status, c->status, c->body);
    assert_int_equal(c->status, status);
    call_free(c);
}

/* ---- the product's steps ---- */

struct sess {
    char code[API_CODE_LEN + 1];
    char token[API_TOKEN_MAX + 1];
    int64_t id;
};

static void create_session_as(struct actors *as, const char *title, struct sess *out)
{
    struct api_req *req = req_new(API_SESSION_CREATE, NULL, 0, NULL);
    struct call *c;
    char norm[API_CODE_LEN + 1];

    req->text = title ? strdup(title) : NULL;
    c = call_as(as, req);
    assert_int_equal(c->status, 201);
    snprintf(out->code, sizeof(out->code), "%s", jstr(c->json, "session", "code"));
    snprintf(out->token, sizeof(out->token), "%s", jstr(c->json, "presenter_token", NULL));
    out->id = jint(c->json, "session", "id");
    assert_true(joincode_normalize(out->code, norm));
    assert_string_equal(norm, out->code);
    assert_int_equal(strlen(out->token), TOKEN_LEN);
    assert_string_equal(jstr(c->json, "session", "state"), "open");
    assert_string_equal(jstr(c->json, "session", "title"), title ? title : "");
    call_free(c);
}

static void create_session(const char *title, struct sess *out)
{
    create_session_as(W.as, title, out);
}

struct part {
    char token[API_TOKEN_MAX + 1];
    int64_t id;
};

static void join(const struct sess *s, struct part *out)
{
    struct call *c = call(req_new(API_JOIN, s->code, 0, NULL));

    assert_int_equal(c->status, 201);
    out->id = jint(c->json, "participant_id", NULL);
    snprintf(out->token, sizeof(out->token), "%s", jstr(c->json, "participant_token", NULL));
    assert_int_equal(strlen(out->token), TOKEN_LEN);
    assert_true(out->id > 0);
    call_free(c);
}

static struct api_req *poll_req(const struct sess *s, enum poll_kind kind, const char *question,
                                const char *const *options, uint32_t n, uint32_t max_choices)
{
    struct api_req *req = req_new(API_POLL_CREATE, s->code, 0, s->token);

    req->poll.question = question ? strdup(question) : NULL;
    req->poll.kind = kind;
    for (uint32_t i = 0; i < n; i++)
        req->poll.options[i] = options[i] ? strdup(options[i]) : NULL;
    req->poll.n_options = n;
    req->poll.max_choices = max_choices;
    return req;
}

static const char *const OPTS[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k",
                                   "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v",
                                   "w", "x", "y", "z", "0", "1", "2", "3", "4", "5"};

static int64_t create_poll(const struct sess *s, enum poll_kind kind, uint32_t n, uint32_t maxc)
{
    struct call *c = call(poll_req(s, kind, "Which one?", OPTS, n, maxc));
    int64_t id;

    if (c->status != 201)
        fprintf(stderr, "poll create: %d %s\n", c->status, c->body);
    assert_int_equal(c->status, 201);
    id = jint(c->json, "poll", "id");
    assert_string_equal(jstr(c->json, "poll", "state"), "draft");
    assert_string_equal(jstr(c->json, "poll", "kind"), poll_kind_name(kind));
    call_free(c);
    return id;
}

static struct call *poll_do(enum api_op op, int64_t poll_id, const char *token)
{
    return call(req_new(op, NULL, poll_id, token));
}

static void open_poll(const struct sess *s, int64_t poll_id)
{
    struct call *c = poll_do(API_POLL_OPEN, poll_id, s->token);

    assert_int_equal(c->status, 200);
    assert_string_equal(jstr(c->json, "poll", "state"), "open");
    call_free(c);
}

static struct api_req *vote_req(int64_t poll_id, const char *token, const char *key,
                                const uint8_t *choices, uint32_t n)
{
    struct api_req *req = req_new(API_VOTE, NULL, poll_id, token);

    if (key) {
        size_t len = strlen(key);

        assert_true(len < sizeof(req->idem_key));
        memcpy(req->idem_key, key, len);
        req->idem_key[len] = '\0';
    }
    memcpy(req->choices, choices, n);
    req->n_choices = n;
    return req;
}

static struct call *vote(int64_t poll_id, const char *token, const char *key,
                         const uint8_t *choices, uint32_t n)
{
    return call(vote_req(poll_id, token, key, choices, n));
}

/* Votes and expects 201; returns the vote id. */
static int64_t vote_ok(int64_t poll_id, const struct part *p, const char *key, const uint8_t *ch,
                       uint32_t n)
{
    struct call *c = vote(poll_id, p->token, key, ch, n);
    int64_t id;

    if (c->status != 201)
        fprintf(stderr, "vote: %d %s\n", c->status, c->body);
    assert_int_equal(c->status, 201);
    id = jint(c->json, "vote", "id");
    assert_int_equal(jint(c->json, "vote", "poll_id"), poll_id);
    assert_int_equal(jint(c->json, "vote", "participant_id"), p->id);
    assert_int_equal(json_array_size(json_object_get(json_object_get(c->json, "vote"), "choice")),
                     n);
    call_free(c);
    return id;
}

/* RESULTS as "c0,c1,...|total|version". */
static void results(int64_t poll_id, const char *token, char *out, size_t out_len)
{
    struct call *c = poll_do(API_RESULTS, poll_id, token);
    json_t *counts;
    size_t off = 0;

    assert_int_equal(c->status, 200);
    assert_int_equal(jint(c->json, "poll_id", NULL), poll_id);
    counts = json_object_get(c->json, "counts");
    for (size_t i = 0; i < json_array_size(counts); i++)
        off += (size_t)snprintf(out + off, out_len - off, "%s%lld", i ? "," : "",
                                (long long)json_integer_value(json_array_get(counts, i)));
    snprintf(out + off, out_len - off, "|%lld|%lld", (long long)jint(c->json, "total", NULL),
             (long long)jint(c->json, "version", NULL));
    call_free(c);
}

static void expect_results(int64_t poll_id, const char *token, const char *want)
{
    char got[256];

    results(poll_id, token, got, sizeof(got));
    assert_string_equal(got, want);
}

/* The events of session id, as "kind:seq,..." */
static void events_of(int64_t session_id, char *out, size_t out_len)
{
    static const char *const names[] = {[STORE_POLL_CREATE] = "created",
                                        [STORE_POLL_OPEN] = "opened",
                                        [STORE_POLL_CLOSE] = "closed",
                                        [STORE_SESSION_CLOSE] = "session_closed"};
    struct fake_event e;
    size_t off = 0;

    out[0] = '\0';
    for (size_t i = 0; fake_store_event(W.st, i, &e); i++) {
        if (e.session_id != session_id)
            continue;
        off += (size_t)snprintf(out + off, out_len - off, "%s%s:%lld", off ? "," : "",
                                names[e.kind], (long long)e.seq);
    }
}

/* The payload of the event of session id with seq. */
static json_t *event_payload(int64_t session_id, int64_t seq)
{
    struct fake_event e;

    for (size_t i = 0; fake_store_event(W.st, i, &e); i++) {
        if (e.session_id == session_id && e.seq == seq)
            return json_loads(e.payload, 0, NULL);
    }
    fail_msg("no event %lld", (long long)seq);
    return NULL;
}

/* ---- tests ---- */

static void test_create_and_get(void **state)
{
    struct sess s;
    struct call *c;
    char lower[API_CODE_LEN + 1];

    (void)state;
    create_session("Town hall", &s);
    c = call(req_new(API_SESSION_GET, s.code, 0, s.token));
    assert_int_equal(c->status, 200);
    assert_int_equal(jint(c->json, "session", "id"), s.id);
    assert_string_equal(jstr(c->json, "session", "code"), s.code);
    assert_string_equal(jstr(c->json, "session", "title"), "Town hall");
    assert_string_equal(jstr(c->json, "session", "state"), "open");
    assert_int_equal(strlen(jstr(c->json, "session", "created_at")), 24);
    assert_int_equal(json_array_size(json_object_get(c->json, "polls")), 0);
    assert_int_equal(jint(c->json, "seq", NULL), 0);
    assert_int_equal(jint(c->json, "participants", NULL), 0);
    assert_string_equal(jstr(c->json, "you", "role"), "presenter");
    assert_int_equal(jint(c->json, "you", "id"), s.id);
    call_free(c);

    /* Codes match whatever their case. */
    for (int i = 0; i <= API_CODE_LEN; i++)
        lower[i] = (char)(s.code[i] >= 'A' && s.code[i] <= 'Z' ? s.code[i] + 32 : s.code[i]);
    expect_status(call(req_new(API_SESSION_GET, lower, 0, s.token)), 200);
    /* Malformed and unknown codes. */
    expect_error(call(req_new(API_SESSION_GET, "ABC", 0, s.token)), 404, "not_found");
    expect_error(call(req_new(API_SESSION_GET, "OOOOOO", 0, s.token)), 404, "not_found");
    expect_error(call(req_new(API_SESSION_GET, "", 0, s.token)), 404, "not_found");
    expect_error(call(req_new(API_JOIN, s.code[0] == 'A' ? "BBBBBB" : "AAAAAA", 0, NULL)), 404,
                 "not_found");

    /* No title: an empty one. Title at the limit, then over it. */
    create_session(NULL, &s);
    {
        char title[API_TITLE_MAX + 2];
        struct api_req *req;

        memset(title, 't', sizeof(title));
        title[API_TITLE_MAX] = '\0';
        create_session(title, &s);
        title[API_TITLE_MAX] = 't';
        title[API_TITLE_MAX + 1] = '\0';
        req = req_new(API_SESSION_CREATE, NULL, 0, NULL);
        req->text = strdup(title);
        expect_error(call(req), 400, "invalid_request");
    }
}

static void test_auth(void **state)
{
    struct sess a, b;
    struct part pa, pb;
    int64_t poll;
    static const enum api_op presenter_ops[] = {API_POLL_OPEN, API_POLL_CLOSE};
    static const uint8_t zero[] = {0};

    (void)state;
    create_session("A", &a);
    create_session("B", &b);
    join(&a, &pa);
    join(&b, &pb);
    poll = create_poll(&a, POLL_SINGLE, 2, 1);

    /* No token, or one nobody holds: 401. */
    expect_error(call(req_new(API_SESSION_GET, a.code, 0, NULL)), 401, "unauthorized");
    expect_error(call(req_new(API_SESSION_GET, a.code, 0, "not-a-token")), 401, "unauthorized");
    expect_error(poll_do(API_RESULTS, poll, NULL), 401, "unauthorized");
    expect_error(poll_do(API_POLL_OPEN, poll, ""), 401, "unauthorized");
    expect_error(vote(poll, "", "k", zero, 1), 401, "unauthorized");
    expect_error(call(poll_req(&(struct sess){.token = ""}, POLL_SINGLE, "q", OPTS, 2, 1)), 404,
                 "not_found");
    {
        struct sess notoken = a;

        notoken.token[0] = '\0';
        expect_error(call(poll_req(&notoken, POLL_SINGLE, "q", OPTS, 2, 1)), 401, "unauthorized");
    }

    /* Tokens of another session: 403, the presenter's and a participant's. */
    expect_error(call(req_new(API_SESSION_GET, a.code, 0, b.token)), 403, "forbidden");
    expect_error(call(req_new(API_SESSION_GET, a.code, 0, pb.token)), 403, "forbidden");
    expect_error(poll_do(API_RESULTS, poll, pb.token), 403, "forbidden");
    expect_error(poll_do(API_POLL_OPEN, poll, b.token), 403, "forbidden");

    /* A participant on the presenter's routes: 403. */
    {
        struct sess as_part = a;

        snprintf(as_part.token, sizeof(as_part.token), "%s", pa.token);
        expect_error(call(poll_req(&as_part, POLL_SINGLE, "q", OPTS, 2, 1)), 403, "forbidden");
        expect_error(call(req_new(API_SESSION_CLOSE, a.code, 0, pa.token)), 403, "forbidden");
        expect_error(call(req_new(API_EXPORT_CSV, a.code, 0, pa.token)), 403, "forbidden");
        for (size_t i = 0; i < 2; i++)
            expect_error(poll_do(presenter_ops[i], poll, pa.token), 403, "forbidden");
    }
    /* The presenter does not vote. */
    open_poll(&a, poll);
    expect_error(vote(poll, a.token, "k1", zero, 1), 403, "forbidden");
    /* Either token reads the session and results. */
    {
        struct call *c = call(req_new(API_SESSION_GET, a.code, 0, pa.token));

        assert_int_equal(c->status, 200);
        assert_string_equal(jstr(c->json, "you", "role"), "participant");
        assert_int_equal(jint(c->json, "you", "id"), pa.id);
        call_free(c);
    }
    expect_status(poll_do(API_RESULTS, poll, pa.token), 200);
    expect_status(poll_do(API_RESULTS, poll, a.token), 200);
    /* Unknown poll ids. */
    expect_error(poll_do(API_RESULTS, 999999, a.token), 404, "not_found");
    expect_error(poll_do(API_POLL_OPEN, 0, a.token), 404, "not_found");
    expect_error(poll_do(API_POLL_CLOSE, -5, a.token), 404, "not_found");
    assert_int_equal(actors_participants(W.as), 2);
}

static void test_polls_and_votes(void **state)
{
    struct sess s;
    struct part p1, p2, p3;
    int64_t single, multi, rating, draft, v1, v2;
    struct call *c;
    static const uint8_t c0[] = {0}, c1[] = {1}, c2[] = {2}, c3[] = {3}, c4[] = {4}, c5[] = {5};
    static const uint8_t c01[] = {0, 1}, c03[] = {0, 3}, c11[] = {1, 1}, c012[] = {0, 1, 2};

    (void)state;
    create_session("Votes", &s);
    join(&s, &p1);
    join(&s, &p2);
    join(&s, &p3);
    single = create_poll(&s, POLL_SINGLE, 3, 1);
    multi = create_poll(&s, POLL_MULTI, 4, 2);
    rating = create_poll(&s, POLL_RATING, 5, 0);
    draft = create_poll(&s, POLL_SINGLE, 2, 1);
    open_poll(&s, single);
    open_poll(&s, multi);
    open_poll(&s, rating);
    expect_error(poll_do(API_POLL_OPEN, single, s.token), 409, "poll_not_draft");

    /* single: exactly one choice among 0..2 */
    expect_error(vote(single, p1.token, "s1", c0, 0), 400, "invalid_request");
    expect_error(vote(single, p1.token, "s1", c01, 2), 400, "invalid_request");
    expect_error(vote(single, p1.token, "s1", c3, 1), 400, "invalid_request");
    c = vote(single, p1.token, "s1", c3, 1);
    assert_non_null(strstr(jstr(c->json, "error", "message"), "choice"));
    call_free(c);
    expect_error(vote(single, p1.token, NULL, c2, 1), 400, "invalid_request");
    v1 = vote_ok(single, &p1, "s1", c2, 1);
    /* The same key: 200 and the same vote, even with other choices. */
    c = vote(single, p1.token, "s1", c0, 1);
    assert_int_equal(c->status, 200);
    assert_int_equal(jint(c->json, "vote", "id"), v1);
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_object_get(c->json, "vote"), "choice"), 0)),
                     2);
    call_free(c);
    /* A new key on the same poll. */
    expect_error(vote(single, p1.token, "s1-again", c0, 1), 409, "already_voted");

    /* multi: 1..2 distinct among 0..3 */
    expect_error(vote(multi, p1.token, "m1", c012, 3), 400, "invalid_request");
    expect_error(vote(multi, p1.token, "m1", c11, 2), 400, "invalid_request");
    expect_error(vote(multi, p1.token, "m1", c4, 1), 400, "invalid_request");
    vote_ok(multi, &p1, "m1", c03, 2);
    vote_ok(multi, &p2, "m2", c3, 1);

    /* rating: one of 0..4 */
    expect_error(vote(rating, p1.token, "r1", c5, 1), 400, "invalid_request");
    expect_error(vote(rating, p1.token, "r1", c01, 2), 400, "invalid_request");
    vote_ok(rating, &p1, "r1", c4, 1);
    vote_ok(rating, &p2, "r2", c4, 1);
    vote_ok(rating, &p3, "r3", c1, 1);

    /* Not open yet; unknown poll. */
    expect_error(vote(draft, p1.token, "d1", c0, 1), 409, "poll_not_open");
    expect_error(vote(987654, p1.token, "x1", c0, 1), 404, "not_found");

    expect_results(single, s.token, "0,0,1|1|1");
    expect_results(multi, p1.token, "1,0,0,2|2|2");
    expect_results(rating, p3.token, "0,1,0,0,2|3|3");

    /* Close: final counts in the reply; then votes are refused but the old key still answers. */
    c = poll_do(API_POLL_CLOSE, single, s.token);
    assert_int_equal(c->status, 200);
    assert_string_equal(jstr(c->json, "poll", "state"), "closed");
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_object_get(c->json, "poll"), "counts"), 2)),
                     1);
    call_free(c);
    expect_error(vote(single, p2.token, "s2", c0, 1), 409, "poll_not_open");
    c = vote(single, p1.token, "s1", c2, 1);
    assert_int_equal(c->status, 200);
    assert_int_equal(jint(c->json, "vote", "id"), v1);
    call_free(c);
    expect_error(poll_do(API_POLL_CLOSE, single, s.token), 409, "poll_not_open");
    expect_error(poll_do(API_POLL_CLOSE, draft, s.token), 409, "poll_not_open");
    expect_error(poll_do(API_POLL_OPEN, single, s.token), 409, "poll_not_draft");

    /* A key names one vote of a participant, whatever the poll. */
    c = vote(rating, p1.token, "m1", c0, 1);
    assert_int_equal(c->status, 200);
    assert_int_equal(jint(c->json, "vote", "poll_id"), multi);
    call_free(c);
    /* Keys are per participant. */
    v2 = vote_ok(multi, &p3, "m1", c1, 1);
    assert_int_not_equal(v2, v1);

    /* The session: polls in order, seq = events so far, participants. */
    c = call(req_new(API_SESSION_GET, s.code, 0, p2.token));
    assert_int_equal(c->status, 200);
    assert_int_equal(json_array_size(json_object_get(c->json, "polls")), 4);
    assert_int_equal(jint(json_array_get(json_object_get(c->json, "polls"), 0), "id", NULL),
                     single);
    assert_string_equal(jstr(json_array_get(json_object_get(c->json, "polls"), 0), "state", NULL),
                        "closed");
    assert_string_equal(jstr(json_array_get(json_object_get(c->json, "polls"), 3), "state", NULL),
                        "draft");
    assert_int_equal(
        jint(json_array_get(json_object_get(c->json, "polls"), 2), "max_choices", NULL), 1);
    assert_int_equal(
        jint(json_array_get(json_object_get(c->json, "polls"), 1), "max_choices", NULL), 2);
    assert_int_equal(jint(c->json, "seq", NULL), 8); /* 4 created, 3 opened, 1 closed */
    assert_int_equal(jint(c->json, "participants", NULL), 3);
    call_free(c);
    {
        char ev[512];

        events_of(s.id, ev, sizeof(ev));
        assert_string_equal(ev, "created:1,created:2,created:3,created:4,opened:5,opened:6,"
                                "opened:7,closed:8");
    }
    /* poll.closed carries the final counts. */
    {
        json_t *e = event_payload(s.id, 8);

        assert_int_equal(jint(e, "id", NULL), single);
        assert_string_equal(jstr(e, "state", NULL), "closed");
        assert_int_equal(json_integer_value(json_array_get(json_object_get(e, "counts"), 2)), 1);
        json_decref(e);
        e = event_payload(s.id, 1);
        assert_string_equal(jstr(e, "state", NULL), "draft");
        assert_string_equal(jstr(e, "question", NULL), "Which one?");
        json_decref(e);
        e = event_payload(s.id, 6);
        assert_int_equal(jint(e, "id", NULL), multi);
        assert_string_equal(jstr(e, "state", NULL), "open");
        json_decref(e);
    }
}

static void test_vote_limits(void **state)
{
    struct sess s;
    struct part p;
    int64_t all, wide;
    uint8_t ch[API_CHOICES_MAX];
    char key[API_IDEM_KEY_MAX + 2];

    (void)state;
    create_session("Limits", &s);
    join(&s, &p);
    all = create_poll(&s, POLL_MULTI, 4, 4);
    wide = create_poll(&s, POLL_MULTI, API_OPTIONS_MAX, API_OPTIONS_MAX);
    open_poll(&s, all);
    open_poll(&s, wide);
    for (int i = 0; i < API_CHOICES_MAX; i++)
        ch[i] = (uint8_t)(API_CHOICES_MAX - 1 - i);
    /* Exactly max_choices, and the largest index. */
    vote_ok(all, &p, "all", (const uint8_t[]){3, 2, 1, 0}, 4);
    /* 32 options, all chosen; a key of the longest length. */
    memset(key, 'k', sizeof(key));
    key[API_IDEM_KEY_MAX] = '\0';
    vote_ok(wide, &p, key, ch, API_CHOICES_MAX);
    expect_status(vote(wide, p.token, key, ch, 1), 200);
    expect_results(wide, s.token,
                   "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1|1|1");
    /* More choices than the request can hold is refused, not trusted. */
    {
        struct api_req *req = vote_req(all, p.token, "over", ch, 4);

        req->n_choices = API_CHOICES_MAX + 1;
        expect_error(call(req), 400, "invalid_request");
    }
}

static void test_rate_limit(void **state)
{
    struct sess s;
    struct part p;
    int64_t polls[11];
    struct call *calls[11];
    int ok = 0, limited = 0;
    struct participant pt = {0};

    (void)state;
    /* The bucket itself, on a clock of our own. */
    for (int i = 0; i < VOTE_RATE_BURST; i++)
        assert_true(session__rate_take(&pt, 1000));
    assert_false(session__rate_take(&pt, 1000));
    assert_false(session__rate_take(&pt, 1099));
    assert_true(session__rate_take(&pt, 1100)); /* 100 ms is one vote */
    assert_false(session__rate_take(&pt, 1100));
    assert_false(session__rate_take(&pt, 900)); /* a clock going back refills nothing */
    for (int i = 0; i < VOTE_RATE_BURST; i++)   /* a long pause refills the burst, not more */
        assert_true(session__rate_take(&pt, 60000));
    assert_false(session__rate_take(&pt, 60000));

    /* Eleven polls at once from one participant: ten pass. */
    create_session("Rate", &s);
    join(&s, &p);
    for (int i = 0; i < 11; i++) {
        polls[i] = create_poll(&s, POLL_SINGLE, 2, 1);
        open_poll(&s, polls[i]);
    }
    for (int i = 0; i < 11; i++) {
        char key[16];

        snprintf(key, sizeof(key), "r%d", i);
        calls[i] = call_start(vote_req(polls[i], p.token, key, (const uint8_t[]){1}, 1));
    }
    for (int i = 0; i < 11; i++) {
        call_wait(calls[i]);
        if (calls[i]->status == 201) {
            ok++;
        } else {
            assert_int_equal(calls[i]->status, 429);
            assert_string_equal(jstr(calls[i]->json, "error", "code"), "rate_limited");
            assert_int_equal(calls[i]->retry, 1);
            limited++;
        }
        call_free(calls[i]);
    }
    assert_int_equal(ok, 10);
    assert_int_equal(limited, 1);
}

static void test_poll_create_validation(void **state)
{
    struct sess s;
    char q[API_QUESTION_MAX + 2];
    char o[API_OPTION_MAX + 2];
    const char *opts[2];
    struct api_req *req;

    (void)state;
    create_session("Validation", &s);
    expect_error(call(poll_req(&s, POLL_SINGLE, "q", OPTS, 1, 1)), 400, "invalid_request");
    expect_error(call(poll_req(&s, POLL_SINGLE, "q", OPTS, 0, 1)), 400, "invalid_request");
    expect_error(call(poll_req(&s, POLL_SINGLE, "", OPTS, 2, 1)), 400, "invalid_request");
    expect_error(call(poll_req(&s, POLL_SINGLE, NULL, OPTS, 2, 1)), 400, "invalid_request");
    expect_error(call(poll_req(&s, POLL_SINGLE, "q", OPTS, 3, 2)), 400, "invalid_request");
    expect_error(call(poll_req(&s, POLL_RATING, "q", OPTS, 5, 2)), 400, "invalid_request");
    expect_error(call(poll_req(&s, POLL_MULTI, "q", OPTS, 4, 5)), 400, "invalid_request");
    expect_error(call(poll_req(&s, (enum poll_kind)7, "q", OPTS, 2, 1)), 400, "invalid_request");
    opts[0] = "x";
    opts[1] = "";
    expect_error(call(poll_req(&s, POLL_SINGLE, "q", opts, 2, 1)), 400, "invalid_request");
    opts[1] = NULL;
    expect_error(call(poll_req(&s, POLL_SINGLE, "q", opts, 2, 1)), 400, "invalid_request");
    req = poll_req(&s, POLL_SINGLE, "q", OPTS, 2, 1);
    req->poll.n_options = API_OPTIONS_MAX + 1;
    expect_error(call(req), 400, "invalid_request");
    /* Exactly at the limits. */
    memset(q, 'q', sizeof(q));
    q[API_QUESTION_MAX] = '\0';
    memset(o, 'o', sizeof(o));
    o[API_OPTION_MAX] = '\0';
    opts[0] = o;
    opts[1] = "x";
    expect_status(call(poll_req(&s, POLL_SINGLE, q, opts, 2, 1)), 201);
    expect_status(call(poll_req(&s, POLL_MULTI, "q", OPTS, API_OPTIONS_MAX, API_OPTIONS_MAX)), 201);
    q[API_QUESTION_MAX] = 'q';
    q[API_QUESTION_MAX + 1] = '\0';
    expect_error(call(poll_req(&s, POLL_SINGLE, q, opts, 2, 1)), 400, "invalid_request");
    o[API_OPTION_MAX] = 'o';
    o[API_OPTION_MAX + 1] = '\0';
    expect_error(call(poll_req(&s, POLL_SINGLE, "q", opts, 2, 1)), 400, "invalid_request");
    /* multi without max_choices takes up to all options. */
    {
        struct call *c = call(poll_req(&s, POLL_MULTI, "q", OPTS, 3, 0));

        assert_int_equal(c->status, 201);
        assert_int_equal(jint(c->json, "poll", "max_choices"), 3);
        call_free(c);
    }
    /* 3 polls so far; the session holds 16. */
    for (int i = 3; i < (int)SESSION_POLLS_MAX; i++)
        create_poll(&s, POLL_SINGLE, 2, 1);
    expect_error(call(poll_req(&s, POLL_SINGLE, "q", OPTS, 2, 1)), 409, "limit_reached");
}

static void test_participant_limit(void **state)
{
    struct sess s;
    struct part p;

    (void)state;
    create_session("Full", &s);
    for (unsigned i = 0; i < SESSION_PARTICIPANTS_MAX; i++)
        join(&s, &p);
    expect_error(call(req_new(API_JOIN, s.code, 0, NULL)), 409, "limit_reached");
    assert_int_equal(actors_participants(W.as), SESSION_PARTICIPANTS_MAX);
}

static void test_session_close(void **state)
{
    struct sess s;
    struct part p;
    int64_t a, b, d;
    struct call *c;
    char ev[512];

    (void)state;
    create_session("Closing", &s);
    join(&s, &p);
    a = create_poll(&s, POLL_SINGLE, 2, 1);
    b = create_poll(&s, POLL_SINGLE, 2, 1);
    d = create_poll(&s, POLL_SINGLE, 2, 1);
    open_poll(&s, b);
    open_poll(&s, a);
    vote_ok(a, &p, "k", (const uint8_t[]){1}, 1);
    c = call(req_new(API_SESSION_CLOSE, s.code, 0, s.token));
    assert_int_equal(c->status, 200);
    assert_string_equal(jstr(c->json, "session", "state"), "closed");
    call_free(c);
    /* Open polls close first, in creation order, then the session. */
    events_of(s.id, ev, sizeof(ev));
    assert_string_equal(ev, "created:1,created:2,created:3,opened:4,opened:5,closed:6,closed:7,"
                            "session_closed:8");
    {
        json_t *e = event_payload(s.id, 6);

        assert_int_equal(jint(e, "id", NULL), a);
        assert_int_equal(json_integer_value(json_array_get(json_object_get(e, "counts"), 1)), 1);
        json_decref(e);
        e = event_payload(s.id, 7);
        assert_int_equal(jint(e, "id", NULL), b);
        json_decref(e);
        e = event_payload(s.id, 8);
        assert_int_equal(jint(e, "id", NULL), s.id);
        assert_string_equal(jstr(e, "state", NULL), "closed");
        assert_string_equal(jstr(e, "code", NULL), s.code);
        json_decref(e);
    }
    /* Again: 200, nothing new. */
    c = call(req_new(API_SESSION_CLOSE, s.code, 0, s.token));
    assert_int_equal(c->status, 200);
    assert_string_equal(jstr(c->json, "session", "state"), "closed");
    call_free(c);
    assert_int_equal(fake_store_events(W.st) > 0, 1);
    events_of(s.id, ev, sizeof(ev));
    assert_non_null(strstr(ev, "session_closed:8"));
    assert_null(strstr(ev, ":9"));
    /* A closed session takes no joins, polls, or openings; old keys still answer. */
    expect_error(call(req_new(API_JOIN, s.code, 0, NULL)), 409, "session_closed");
    expect_error(call(poll_req(&s, POLL_SINGLE, "q", OPTS, 2, 1)), 409, "session_closed");
    expect_error(poll_do(API_POLL_OPEN, d, s.token), 409, "session_closed");
    expect_status(vote(a, p.token, "k", (const uint8_t[]){1}, 1), 200);
    expect_error(vote(b, p.token, "k2", (const uint8_t[]){1}, 1), 409, "poll_not_open");
    expect_results(a, p.token, "0,1|1|1");
    c = call(req_new(API_SESSION_GET, s.code, 0, s.token));
    assert_string_equal(jstr(c->json, "session", "state"), "closed");
    assert_int_equal(jint(c->json, "seq", NULL), 8);
    call_free(c);
}

static void test_export_csv(void **state)
{
    struct sess s;
    struct part p1, p2;
    int64_t a, b;
    const char *opts_a[] = {"apple", "ban,ana", "line\nbreak"};
    const char *opts_b[] = {"x", "say \"hi\""};
    struct call *c;
    char want[1024];

    (void)state;
    create_session("Export", &s);
    join(&s, &p1);
    join(&s, &p2);
    c = call(poll_req(&s, POLL_SINGLE, "Best \"fruit\", really?", opts_a, 3, 1));
    a = jint(c->json, "poll", "id");
    call_free(c);
    c = call(poll_req(&s, POLL_MULTI, "Plain", opts_b, 2, 2));
    b = jint(c->json, "poll", "id");
    call_free(c);
    open_poll(&s, a);
    vote_ok(a, &p1, "1", (const uint8_t[]){1}, 1);
    vote_ok(a, &p2, "2", (const uint8_t[]){1}, 1);
    c = call(req_new(API_EXPORT_CSV, s.code, 0, s.token));
    assert_int_equal(c->status, 200);
    assert_string_equal(c->ctype, "text/csv; charset=utf-8");
    snprintf(want, sizeof(want),
             "poll_id,question,kind,state,option_index,option,count\r\n"
             "%lld,\"Best \"\"fruit\"\", really?\",single,open,0,apple,0\r\n"
             "%lld,\"Best \"\"fruit\"\", really?\",single,open,1,\"ban,ana\",2\r\n"
             "%lld,\"Best \"\"fruit\"\", really?\",single,open,2,\"line\nbreak\",0\r\n"
             "%lld,Plain,multi,draft,0,x,0\r\n"
             "%lld,Plain,multi,draft,1,\"say \"\"hi\"\"\",0\r\n",
             (long long)a, (long long)a, (long long)a, (long long)b, (long long)b);
    assert_int_equal(c->len, strlen(want));
    assert_memory_equal(c->body, want, c->len);
    call_free(c);
    /* A session without polls: the header alone. */
    create_session("Empty", &s);
    c = call(req_new(API_EXPORT_CSV, s.code, 0, s.token));
    assert_int_equal(c->status, 200);
    assert_int_equal(c->len, strlen("poll_id,question,kind,state,option_index,option,count\r\n"));
    call_free(c);
}

static void test_qr(void **state)
{
    struct sess s;
    struct api_req *req;
    struct call *c;
    char link[64], lower[API_CODE_LEN + 1];
    char *want;
    size_t want_len;

    (void)state;
    create_session("QR", &s);
    /* Default host when none or a bad one is given. */
    snprintf(link, sizeof(link), "http://127.0.0.1:8080/j/%s", s.code);
    assert_int_equal(qr_svg(link, &want, &want_len), 0);
    for (int i = 0; i <= API_CODE_LEN; i++)
        lower[i] = (char)(s.code[i] >= 'A' && s.code[i] <= 'Z' ? s.code[i] + 32 : s.code[i]);
    c = call(req_new(API_QR_SVG, lower, 0, NULL));
    assert_int_equal(c->status, 200);
    assert_string_equal(c->ctype, "image/svg+xml");
    assert_int_equal(c->len, want_len);
    assert_memory_equal(c->body, want, want_len);
    call_free(c);
    req = req_new(API_QR_SVG, s.code, 0, NULL);
    snprintf(req->host, sizeof(req->host), "evil host/<x>");
    c = call(req);
    assert_int_equal(c->len, want_len);
    assert_memory_equal(c->body, want, want_len);
    call_free(c);
    free(want);
    /* The Host header names the link. */
    snprintf(link, sizeof(link), "http://polls.example.org:9000/j/%s", s.code);
    assert_int_equal(qr_svg(link, &want, &want_len), 0);
    req = req_new(API_QR_SVG, s.code, 0, NULL);
    snprintf(req->host, sizeof(req->host), "polls.example.org:9000");
    c = call(req);
    assert_int_equal(c->status, 200);
    assert_int_equal(c->len, want_len);
    assert_memory_equal(c->body, want, want_len);
    call_free(c);
    free(want);
    expect_error(call(req_new(API_QR_SVG, s.code[0] == 'A' ? "BBBBBB" : "AAAAAA", 0, NULL)), 404,
                 "not_found");
    expect_error(call(req_new(API_QR_SVG, "I0I0I0", 0, NULL)), 404, "not_found");
}

static void test_storage_unavailable(void **state)
{
    struct sess s;
    struct part p1, p2;
    int64_t poll, poll2;
    struct call *c;
    struct api_req *req;

    (void)state;
    create_session("Faults", &s);
    join(&s, &p1);
    join(&s, &p2);
    poll = create_poll(&s, POLL_SINGLE, 2, 1);
    open_poll(&s, poll);

    /* The transaction fails: 503, Retry-After, nothing counted; the retry succeeds. */
    fake_store_fail_next(W.st, STORE_VOTE, STORE_UNAVAILABLE, 1, false);
    c = vote(poll, p1.token, "k1", (const uint8_t[]){0}, 1);
    assert_int_equal(c->retry, 1);
    expect_error(c, 503, "storage_unavailable");
    expect_results(poll, s.token, "0,0|0|0");
    vote_ok(poll, &p1, "k1", (const uint8_t[]){0}, 1);
    expect_results(poll, s.token, "1,0|1|1");

    /* The queue refuses: 503 at once, for every kind of change. */
    fake_store_refuse(W.st, true);
    c = vote(poll, p2.token, "k2", (const uint8_t[]){1}, 1);
    assert_int_equal(c->retry, 1);
    expect_error(c, 503, "storage_unavailable");
    expect_error(call(req_new(API_JOIN, s.code, 0, NULL)), 503, "storage_unavailable");
    expect_error(call(poll_req(&s, POLL_SINGLE, "q", OPTS, 2, 1)), 503, "storage_unavailable");
    expect_error(poll_do(API_POLL_CLOSE, poll, s.token), 503, "storage_unavailable");
    expect_error(call(req_new(API_SESSION_CLOSE, s.code, 0, s.token)), 503, "storage_unavailable");
    expect_error(call(req_new(API_SESSION_CREATE, NULL, 0, NULL)), 503, "storage_unavailable");
    /* Reads still work. */
    expect_results(poll, p2.token, "1,0|1|1");
    fake_store_refuse(W.st, false);
    vote_ok(poll, &p2, "k2", (const uint8_t[]){1}, 1);
    expect_results(poll, s.token, "1,1|2|2");

    /* Failed structural operations leave the state as it was. */
    fake_store_fail_next(W.st, STORE_POLL_CREATE, STORE_UNAVAILABLE, 1, false);
    expect_error(call(poll_req(&s, POLL_SINGLE, "q", OPTS, 2, 1)), 503, "storage_unavailable");
    poll2 = create_poll(&s, POLL_SINGLE, 2, 1);
    fake_store_fail_next(W.st, STORE_POLL_OPEN, STORE_UNAVAILABLE, 1, false);
    expect_error(poll_do(API_POLL_OPEN, poll2, s.token), 503, "storage_unavailable");
    open_poll(&s, poll2);
    fake_store_fail_next(W.st, STORE_POLL_CLOSE, STORE_UNAVAILABLE, 1, false);
    expect_error(poll_do(API_POLL_CLOSE, poll2, s.token), 503, "storage_unavailable");
    vote_ok(poll2, &p1, "still-open", (const uint8_t[]){1}, 1);
    fake_store_fail_next(W.st, STORE_PARTICIPANT_CREATE, STORE_UNAVAILABLE, 1, false);
    expect_error(call(req_new(API_JOIN, s.code, 0, NULL)), 503, "storage_unavailable");
    fake_store_fail_next(W.st, STORE_SESSION_CLOSE, STORE_UNAVAILABLE, 1, false);
    expect_error(call(req_new(API_SESSION_CLOSE, s.code, 0, s.token)), 503, "storage_unavailable");
    /* The session close got as far as closing the open polls; the retry finishes it. */
    c = call(req_new(API_SESSION_CLOSE, s.code, 0, s.token));
    assert_int_equal(c->status, 200);
    call_free(c);
    {
        char ev[512];

        events_of(s.id, ev, sizeof(ev));
        assert_string_equal(ev, "created:1,opened:2,created:3,opened:4,closed:5,closed:6,"
                                "session_closed:7");
    }
    /* Session creation: taken codes are retried, up to 8 times. */
    fake_store_fail_next(W.st, STORE_SESSION_CREATE, STORE_CONFLICT, 7, false);
    create_session("Lucky", &s);
    fake_store_fail_next(W.st, STORE_SESSION_CREATE, STORE_CONFLICT, 8, false);
    expect_error(call(req_new(API_SESSION_CREATE, NULL, 0, NULL)), 503, "busy");
    fake_store_fail_next(W.st, STORE_SESSION_CREATE, STORE_UNAVAILABLE, 1, false);
    req = req_new(API_SESSION_CREATE, NULL, 0, NULL);
    expect_error(call(req), 503, "storage_unavailable");
    create_session("After", &s);
}

/* An acknowledgement lost after commit: the retry gets the original, counted once. */
static void test_lost_ack(void **state)
{
    struct sess s;
    struct part p;
    int64_t poll, injected;
    struct call *c;
    struct store_vote v = {0};

    (void)state;
    create_session("Lost", &s);
    join(&s, &p);
    poll = create_poll(&s, POLL_SINGLE, 2, 1);
    open_poll(&s, poll);
    fake_store_fail_next(W.st, STORE_VOTE, STORE_UNAVAILABLE, 1, true);
    expect_error(vote(poll, p.token, "lost", (const uint8_t[]){1}, 1), 503, "storage_unavailable");
    expect_results(poll, s.token, "0,0|0|0");
    c = vote(poll, p.token, "lost", (const uint8_t[]){1}, 1);
    assert_int_equal(c->status, 200);
    assert_int_equal(jint(c->json, "vote", "poll_id"), poll);
    call_free(c);
    expect_results(poll, s.token, "0,1|1|1");
    expect_status(vote(poll, p.token, "lost", (const uint8_t[]){1}, 1), 200);
    expect_results(poll, s.token, "0,1|1|1");

    /* Lost again, and this time the poll closes before the retry: the key
     * still answers with the vote the database holds, not poll_not_open. */
    {
        struct part r;
        int64_t poll3 = create_poll(&s, POLL_SINGLE, 2, 1);

        open_poll(&s, poll3);
        join(&s, &r);
        fake_store_fail_next(W.st, STORE_VOTE, STORE_UNAVAILABLE, 1, true);
        expect_error(vote(poll3, r.token, "late", (const uint8_t[]){0}, 1), 503, "storage_unavailable");
        expect_status(poll_do(API_POLL_CLOSE, poll3, s.token), 200);
        c = vote(poll3, r.token, "late", (const uint8_t[]){0}, 1);
        assert_int_equal(c->status, 200);
        assert_int_equal(jint(c->json, "vote", "poll_id"), poll3);
        call_free(c);
        expect_error(vote(poll3, r.token, "other", (const uint8_t[]){0}, 1), 409, "poll_not_open");
    }

    /* A vote the database has and memory does not (another instance took it). */
    {
        struct part q;
        int64_t poll2 = create_poll(&s, POLL_SINGLE, 2, 1);

        open_poll(&s, poll2);
        join(&s, &q);
        v.session_id = s.id;
        v.poll_id = poll2;
        v.participant_id = q.id;
        v.choices[0] = 0;
        v.n_choices = 1;
        snprintf(v.idem_key, sizeof(v.idem_key), "elsewhere");
        injected = fake_store_add_vote(W.st, &v);
        /* A new key: the database says CONFLICT. */
        expect_error(vote(poll2, q.token, "here", (const uint8_t[]){1}, 1), 409, "already_voted");
        /* Its key: the original. */
        c = vote(poll2, q.token, "elsewhere", (const uint8_t[]){1}, 1);
        assert_int_equal(c->status, 200);
        assert_int_equal(jint(c->json, "vote", "id"), injected);
        call_free(c);
        expect_results(poll2, s.token, "1,0|1|1");
    }
}

/* Retries of a vote in flight wait for it; closing a poll waits for its votes. */
static void test_inflight(void **state)
{
    struct sess s;
    struct part p1, p2;
    int64_t poll;
    struct call *first, *retry, *close, *c;

    (void)state;
    create_session("Flight", &s);
    join(&s, &p1);
    join(&s, &p2);
    poll = create_poll(&s, POLL_MULTI, 3, 3);
    open_poll(&s, poll);
    fake_store_wait_idle(W.st); /* earlier steps' ops are fully done, not just answered */
    fake_store_hold(W.st, true);
    first = call_start(vote_req(poll, p1.token, "f", (const uint8_t[]){0, 2}, 2));
    retry = call_start(vote_req(poll, p1.token, "f", (const uint8_t[]){1}, 1));
    close = call_start(req_new(API_POLL_CLOSE, NULL, poll, s.token));
    /* The mailbox is FIFO: once this is answered, the three above were seen. */
    expect_error(vote(poll, p2.token, "g", (const uint8_t[]){1}, 1), 409, "poll_not_open");
    expect_error(vote(poll, p1.token, "f2", (const uint8_t[]){1}, 1), 409, "poll_not_open");
    assert_false(call_done(first));
    assert_false(call_done(retry));
    assert_false(call_done(close));
    assert_int_equal(fake_store_pending(W.st), 1); /* the vote; the close waits for it */
    fake_store_hold(W.st, false);
    call_wait(first);
    call_wait(retry);
    call_wait(close);
    assert_int_equal(first->status, 201);
    assert_int_equal(retry->status, 200);
    assert_int_equal(jint(first->json, "vote", "id"), jint(retry->json, "vote", "id"));
    assert_int_equal(close->status, 200);
    c = close;
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_object_get(c->json, "poll"), "counts"), 0)),
                     1);
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(json_object_get(c->json, "poll"), "counts"), 2)),
                     1);
    call_free(first);
    call_free(retry);
    call_free(close);
    {
        json_t *e = event_payload(s.id, 3);

        assert_string_equal(jstr(e, "state", NULL), "closed");
        assert_int_equal(json_integer_value(json_array_get(json_object_get(e, "counts"), 2)), 1);
        json_decref(e);
    }
    /* A vote that fails in flight fails its waiters too, and is forgotten. */
    poll = create_poll(&s, POLL_SINGLE, 2, 1);
    open_poll(&s, poll);
    fake_store_wait_idle(W.st); /* earlier steps' ops are fully done, not just answered */
    fake_store_hold(W.st, true);
    fake_store_fail_next(W.st, STORE_VOTE, STORE_UNAVAILABLE, 1, false);
    first = call_start(vote_req(poll, p1.token, "x", (const uint8_t[]){0}, 1));
    retry = call_start(vote_req(poll, p1.token, "x", (const uint8_t[]){0}, 1));
    expect_error(vote(poll, p1.token, "y", (const uint8_t[]){0}, 1), 409, "already_voted");
    fake_store_hold(W.st, false);
    expect_error(call_wait(first), 503, "storage_unavailable");
    expect_error(call_wait(retry), 503, "storage_unavailable");
    vote_ok(poll, &p1, "y", (const uint8_t[]){0}, 1);
}

/* A vote that completes after the runtime stopped (it came in at the very
 * end of a drain): its op lands in a mailbox nobody reads, and is freed
 * with the actors; AddressSanitizer reports a leak otherwise. */
static void test_done_after_stop(void **state)
{
    struct sess s;
    struct part p1;
    int64_t poll;
    struct call *first;

    (void)state;
    create_session("Late", &s);
    join(&s, &p1);
    poll = create_poll(&s, POLL_SINGLE, 2, 1);
    open_poll(&s, poll);
    fake_store_wait_idle(W.st);
    fake_store_hold(W.st, true);
    first = call_start(vote_req(poll, p1.token, "late", (const uint8_t[]){0}, 1));
    for (unsigned ms = 0; fake_store_pending(W.st) == 0 && ms < 5000; ms++)
        usleep(1000);
    assert_int_equal(fake_store_pending(W.st), 1);
    actor_rt_stop(W.rt);
    fake_store_hold(W.st, false);
    fake_store_wait_idle(W.st); /* the op is done and waits in the session's mailbox */
    assert_false(call_done(first)); /* nobody answers after the stop */
    call_free(first);
}

/* Structural operations queue behind each other, at most SESSION_QUEUE_MAX. */
static void test_structural_queue(void **state)
{
    struct sess s;
    struct call *calls[SESSION_QUEUE_MAX + 1];
    struct call *open, *close;
    int64_t poll;

    (void)state;
    create_session("Queue", &s);
    poll = create_poll(&s, POLL_SINGLE, 2, 1);
    /* Open then close, sent together: the close sees the poll open. */
    fake_store_wait_idle(W.st); /* earlier steps' ops are fully done, not just answered */
    fake_store_hold(W.st, true);
    open = call_start(req_new(API_POLL_OPEN, NULL, poll, s.token));
    close = call_start(req_new(API_POLL_CLOSE, NULL, poll, s.token));
    expect_status(poll_do(API_RESULTS, poll, s.token), 200); /* both were seen */
    assert_int_equal(fake_store_pending(W.st), 1);           /* one at a time */
    fake_store_hold(W.st, false);
    expect_status(call_wait(open), 200);
    expect_status(call_wait(close), 200);

    fake_store_wait_idle(W.st); /* earlier steps' ops are fully done, not just answered */
    fake_store_hold(W.st, true);
    for (int i = 0; i <= SESSION_QUEUE_MAX; i++)
        calls[i] = call_start(req_new(API_SESSION_CLOSE, s.code, 0, s.token));
    expect_error(call(req_new(API_SESSION_CLOSE, s.code, 0, s.token)), 503, "busy");
    fake_store_hold(W.st, false);
    for (int i = 0; i <= SESSION_QUEUE_MAX; i++) {
        call_wait(calls[i]);
        assert_int_equal(calls[i]->status, 200);
        assert_string_equal(jstr(calls[i]->json, "session", "state"), "closed");
        call_free(calls[i]);
    }
    {
        char ev[256];

        events_of(s.id, ev, sizeof(ev));
        assert_string_equal(ev, "created:1,opened:2,closed:3,session_closed:4");
    }
}

/* Many threads at once on one session (run under ThreadSanitizer too). */
struct hammer {
    const struct part *p;
    const int64_t *polls;
    int n_polls;
    int created;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;

    for (int i = 0; i < h->n_polls; i++) {
        char key[32];
        struct call *c;

        snprintf(key, sizeof(key), "h%d", i);
        c = call(vote_req(h->polls[i], h->p->token, key, (const uint8_t[]){(uint8_t)(i % 3)}, 1));
        if (c->status == 201)
            h->created++;
        call_free(c);
        c = call(vote_req(h->polls[i], h->p->token, key, (const uint8_t[]){0}, 1));
        assert_int_equal(c->status, 200);
        call_free(c);
        call_free(call(req_new(API_RESULTS, NULL, h->polls[i], h->p->token)));
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    struct sess s;
    struct part parts[SESSION_PARTICIPANTS_MAX];
    int64_t polls[8];
    pthread_t th[SESSION_PARTICIPANTS_MAX];
    struct hammer h[SESSION_PARTICIPANTS_MAX];
    char want[64];

    (void)state;
    create_session("Crowd", &s);
    for (unsigned i = 0; i < SESSION_PARTICIPANTS_MAX; i++)
        join(&s, &parts[i]);
    for (int i = 0; i < 8; i++) {
        polls[i] = create_poll(&s, POLL_SINGLE, 3, 1);
        open_poll(&s, polls[i]);
    }
    for (unsigned i = 0; i < SESSION_PARTICIPANTS_MAX; i++) {
        h[i] = (struct hammer){.p = &parts[i], .polls = polls, .n_polls = 8};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
    }
    for (unsigned i = 0; i < SESSION_PARTICIPANTS_MAX; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(h[i].created, 8);
    }
    for (int i = 0; i < 8; i++) {
        snprintf(want, sizeof(want), "%s|8|8",
                 i % 3 == 0   ? "8,0,0"
                 : i % 3 == 1 ? "0,8,0"
                              : "0,0,8");
        expect_results(polls[i], s.token, want);
    }
}

/* A fresh set of actors rebuilds the same state from the store. */
static void test_load(void **state)
{
    struct sess s, other;
    struct part p1, p2, p3;
    int64_t a, b, c_poll, d;
    int64_t v1;
    struct call *before_get, *after_get, *c;
    struct world w2;
    char before[4][256], after[4][256];
    struct call *before_csv, *after_csv;
    char first_vote[512];

    (void)state;
    create_session("Load", &s);
    create_session("Other", &other);
    join(&s, &p1);
    join(&s, &p2);
    join(&s, &p3);
    a = create_poll(&s, POLL_SINGLE, 3, 1);
    b = create_poll(&s, POLL_MULTI, 4, 3);
    c_poll = create_poll(&s, POLL_RATING, 5, 1);
    d = create_poll(&s, POLL_SINGLE, 2, 1);
    open_poll(&s, a);
    open_poll(&s, b);
    open_poll(&s, c_poll);
    v1 = vote_ok(a, &p1, "a1", (const uint8_t[]){2}, 1);
    c = vote(a, p1.token, "a1", (const uint8_t[]){2}, 1);
    snprintf(first_vote, sizeof(first_vote), "%s", c->body);
    call_free(c);
    vote_ok(a, &p2, "a2", (const uint8_t[]){2}, 1);
    vote_ok(b, &p1, "b1", (const uint8_t[]){0, 3, 1}, 3);
    vote_ok(b, &p3, "b3", (const uint8_t[]){3}, 1);
    vote_ok(c_poll, &p2, "c2", (const uint8_t[]){4}, 1);
    expect_status(poll_do(API_POLL_CLOSE, c_poll, s.token), 200);

    before_get = call(req_new(API_SESSION_GET, s.code, 0, s.token));
    before_csv = call(req_new(API_EXPORT_CSV, s.code, 0, s.token));
    results(a, s.token, before[0], 256);
    results(b, s.token, before[1], 256);
    results(c_poll, s.token, before[2], 256);
    results(d, s.token, before[3], 256);

    world_open(&w2, W.st);
    assert_int_equal(actors_load(w2.as), 0);
    assert_int_equal(actors_participants(w2.as), 3);
    after_get = call_as(w2.as, req_new(API_SESSION_GET, s.code, 0, s.token));
    after_csv = call_as(w2.as, req_new(API_EXPORT_CSV, s.code, 0, s.token));
    assert_int_equal(after_get->status, 200);
    assert_string_equal(after_get->body, before_get->body);
    assert_int_equal(after_csv->len, before_csv->len);
    assert_memory_equal(after_csv->body, before_csv->body, before_csv->len);
    {
        struct world keep = W;

        W = w2; /* the helpers talk to W */
        results(a, s.token, after[0], 256);
        results(b, p1.token, after[1], 256);
        results(c_poll, p3.token, after[2], 256);
        results(d, s.token, after[3], 256);
        for (int i = 0; i < 4; i++)
            assert_string_equal(after[i], before[i]);
        assert_string_equal(after[0], "0,0,2|2|2");
        /* Old keys answer with the very same vote. */
        c = vote(a, p1.token, "a1", (const uint8_t[]){0}, 1);
        assert_int_equal(c->status, 200);
        assert_int_equal(jint(c->json, "vote", "id"), v1);
        assert_string_equal(c->body, first_vote);
        call_free(c);
        expect_error(vote(a, p1.token, "a1-new", (const uint8_t[]){0}, 1), 409, "already_voted");
        expect_error(vote(c_poll, p1.token, "c1", (const uint8_t[]){0}, 1), 409, "poll_not_open");
        /* Votes are not loaded, only counted: the store answers for an old
         * key on a closed poll, on another poll, or with choices the poll
         * refuses, and the vote is not counted a second time. */
        c = vote(c_poll, p2.token, "c2", (const uint8_t[]){0}, 1);
        assert_int_equal(c->status, 200);
        assert_int_equal(jint(c->json, "vote", "poll_id"), c_poll);
        call_free(c);
        c = vote(b, p1.token, "a1", (const uint8_t[]){1}, 1);
        assert_int_equal(c->status, 200);
        assert_string_equal(c->body, first_vote);
        call_free(c);
        c = vote(a, p2.token, "a2", (const uint8_t[]){7}, 1);
        assert_int_equal(c->status, 200);
        assert_int_equal(jint(c->json, "vote", "poll_id"), a);
        call_free(c);
        expect_results(a, s.token, "0,0,2|2|2");
        expect_results(b, s.token, before[1]);
        /* Tokens still work, in their roles; the other session's is still another's. */
        expect_error(call(req_new(API_EXPORT_CSV, s.code, 0, p1.token)), 403, "forbidden");
        expect_error(call(req_new(API_SESSION_GET, s.code, 0, other.token)), 403, "forbidden");
        /* Counting resumes where it was; seq continues. */
        vote_ok(a, &p3, "a3", (const uint8_t[]){0}, 1);
        expect_results(a, s.token, "1,0,2|3|3");
        open_poll(&s, d);
        {
            char ev[256];

            events_of(s.id, ev, sizeof(ev));
            assert_string_equal(ev, "created:1,created:2,created:3,created:4,opened:5,opened:6,"
                                    "opened:7,closed:8,opened:9");
        }
        W = keep;
    }
    call_free(before_get);
    call_free(after_get);
    call_free(before_csv);
    call_free(after_csv);
    world_close(&w2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_polls_and_votes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vote_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_create_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_participant_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_csv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_after_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_structural_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
