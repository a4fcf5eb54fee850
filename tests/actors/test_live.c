/*
 * test_live.c - live sessions end to end: subscriptions, sequenced
 * broadcasts, coalesced results, presence and resume, through actors_submit
 * on a real actor runtime, with tests/actors/fake_store.c and a sink that
 * records every broadcast per network thread.
 *
 * A client is what the network side would see for one subscriber: the
 * subscribe reply's body, then the broadcasts its thread received for its
 * session after the reply (the fake sink notes where each thread's list
 * stood when the reply was made; the actor makes the reply and its
 * broadcasts in one order, as the real mailbox keeps it).
 *
 * Every message recorded is checked at teardown: its three encodings carry
 * the same message, and the sink holds exactly the references it was given
 * (so nothing leaks and nothing is freed early; ASan watches the rest).
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
#include <msgpack.h>

#include "actors/actors.h"
#include "actors/api.h"
#include "actors/joincode.h"
#include "actors/session.h"
#include "actors/stream.h"
#include "actors/wire.h"
#include "core/actor.h"
#include "core/base.h"
#include "fake_store.h"
#include "tests/actors/mp_json.h"

#define SINK_THREADS 3
#define WAIT_MS_MAX 10000 /* a condition not met by then fails the test */

/* ---- the recording sink ---- */

struct rec {
    struct stream_msg *m;
    uint64_t at_ms;
};

struct fake_sink {
    struct stream_sink pub;
    pthread_mutex_t mu;
    struct rec *recs[SINK_THREADS];
    size_t n[SINK_THREADS], cap[SINK_THREADS];
};

static void sink_broadcast(void *ctx, unsigned thread, struct stream_msg *m)
{
    struct fake_sink *k = ctx;

    TALLY_ASSERT(thread < SINK_THREADS); /* not cmocka: this runs on an actor thread */
    TALLY_ASSERT(m != NULL && atomic_load(&m->_refs) >= 1);
    pthread_mutex_lock(&k->mu);
    if (k->n[thread] == k->cap[thread]) {
        k->cap[thread] = k->cap[thread] ? k->cap[thread] * 2 : 64;
        k->recs[thread] = xrealloc(k->recs[thread], k->cap[thread] * sizeof(struct rec));
    }
    k->recs[thread][k->n[thread]++] = (struct rec){m, clock_now_ms()};
    pthread_mutex_unlock(&k->mu);
}

static struct fake_sink *sink_new(void)
{
    struct fake_sink *k = xcalloc(1, sizeof(*k));

    pthread_mutex_init(&k->mu, NULL);
    k->pub = (struct stream_sink){.ctx = k, .threads = SINK_THREADS, .broadcast = sink_broadcast};
    return k;
}

static size_t sink_count(struct fake_sink *k, unsigned thread)
{
    size_t n;

    pthread_mutex_lock(&k->mu);
    n = k->n[thread];
    pthread_mutex_unlock(&k->mu);
    return n;
}

/* The i-th record of thread (a copy; the message stays the sink's). */
static struct rec sink_rec(struct fake_sink *k, unsigned thread, size_t i)
{
    struct rec r;

    pthread_mutex_lock(&k->mu);
    TALLY_ASSERT(i < k->n[thread]);
    r = k->recs[thread][i];
    pthread_mutex_unlock(&k->mu);
    return r;
}

static void check_encodings(const struct stream_msg *m);

/* Checks every message's references and encodings, then drops them. After the actors are gone. */
static void sink_free(struct fake_sink *k)
{
    for (unsigned t = 0; t < SINK_THREADS; t++) {
        for (size_t i = 0; i < k->n[t]; i++) {
            struct stream_msg *m = k->recs[t][i].m;
            unsigned held = 0;

            for (unsigned u = 0; u < SINK_THREADS; u++) {
                for (size_t j = 0; j < k->n[u]; j++)
                    held += k->recs[u][j].m == m;
            }
            /* Each broadcast handed over one reference, and nobody else keeps one. */
            assert_int_equal(atomic_load(&m->_refs), held);
            check_encodings(m);
        }
    }
    for (unsigned t = 0; t < SINK_THREADS; t++) {
        for (size_t i = 0; i < k->n[t]; i++)
            stream_msg_unref(k->recs[t][i].m);
        free(k->recs[t]);
    }
    pthread_mutex_destroy(&k->mu);
    free(k);
}

/* ---- decoding what a client receives ---- */


/* Length of the WebSocket frame at p (n bytes left); its payload at *off, *len. */
static size_t ws_frame(const uint8_t *p, size_t n, uint8_t opcode, size_t *off, size_t *len)
{
    assert_true(n >= 2);
    assert_int_equal(p[0], 0x80 | opcode);
    assert_int_equal(p[1] & 0x80, 0);
    *len = p[1] & 0x7F;
    *off = 2;
    if (*len == 126) {
        assert_true(n >= 4);
        *len = (size_t)p[2] << 8 | p[3];
        *off = 4;
    } else if (*len == 127) {
        assert_true(n >= 10);
        *len = 0;
        for (int i = 0; i < 8; i++)
            *len = *len << 8 | p[2 + i];
        *off = 10;
    }
    assert_true(*off + *len <= n);
    return *off + *len;
}

/* Parses one SSE event at p; checks its event and id lines against the message. */
static size_t sse_event(const char *p, size_t n, json_t **out)
{
    const char *end = memmem(p, n, "\n\n", 2);
    const char *data;
    char type[64];
    json_t *m;

    assert_non_null(end);
    assert_int_equal(sscanf(p, "event: %63[^\n]", type), 1);
    data = strstr(p, "\ndata: ");
    assert_true(data != NULL && data < end);
    data += strlen("\ndata: ");
    m = json_loadb(data, (size_t)(end - data), 0, NULL);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "type")), type);
    if (json_object_get(m, "seq") != NULL) {
        char id[64];

        snprintf(id, sizeof(id), "\nid: %lld\ndata: ",
                 (long long)json_integer_value(json_object_get(m, "seq")));
        assert_ptr_equal(strstr(p, "\nid: "), data - strlen(id));
        assert_memory_equal(data - strlen(id), id, strlen(id));
    } else {
        assert_true(strstr(p, "\nid: ") == NULL || strstr(p, "\nid: ") > end);
    }
    *out = m;
    return (size_t)(end + 2 - p);
}

/* Appends every message in p[0..n), encoded as fmt, to arr. */
static void parse_stream(int fmt, const char *p, size_t n, json_t *arr)
{
    size_t used = 0;

    while (used < n) {
        const uint8_t *u = (const uint8_t *)p + used;
        size_t off, len, step;
        json_t *m;

        if (fmt == STREAM_SSE) {
            step = sse_event(p + used, n - used, &m);
        } else if (fmt == STREAM_WS_JSON) {
            step = ws_frame(u, n - used, WS_OP_TEXT, &off, &len);
            m = json_loadb((const char *)u + off, len, 0, NULL);
            assert_non_null(m);
        } else {
            msgpack_unpacked up;
            size_t at = 0;

            step = ws_frame(u, n - used, WS_OP_BINARY, &off, &len);
            msgpack_unpacked_init(&up);
            assert_int_equal(msgpack_unpack_next(&up, (const char *)u + off, len, &at),
                             MSGPACK_UNPACK_SUCCESS);
            assert_int_equal(at, len);
            m = obj_to_json(&up.data);
            msgpack_unpacked_destroy(&up);
        }
        assert_true(json_is_object(m));
        assert_true(json_is_string(json_object_get(m, "type")));
        assert_true(json_is_object(json_object_get(m, "data")));
        json_array_append_new(arr, m);
        used += step;
    }
}

/* One message of one encoding. */
static json_t *decode_one(int fmt, const struct rbuf *b)
{
    json_t *arr = json_array();
    json_t *m;

    parse_stream(fmt, b->data, b->len, arr);
    assert_int_equal(json_array_size(arr), 1);
    m = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return m;
}

static const char *const KIND_TYPES[] = {
    [STREAM_SEQUENCED] = NULL, [STREAM_RESULTS] = "results", [STREAM_PRESENCE] = "presence"};

static void check_encodings(const struct stream_msg *m)
{
    json_t *j = decode_one(STREAM_WS_JSON, m->bytes[STREAM_WS_JSON]);
    json_t *mp = decode_one(STREAM_WS_MSGPACK, m->bytes[STREAM_WS_MSGPACK]);
    json_t *sse = decode_one(STREAM_SSE, m->bytes[STREAM_SSE]);
    const char *type = json_string_value(json_object_get(j, "type"));

    assert_true(json_equal(j, mp));
    assert_true(json_equal(j, sse));
    if (m->kind == STREAM_SEQUENCED) {
        assert_true(m->seq > 0);
        assert_int_equal(json_integer_value(json_object_get(j, "seq")), m->seq);
        assert_int_equal(m->session_closed, strcmp(type, "session.closed") == 0);
    } else {
        assert_null(json_object_get(j, "seq"));
        assert_string_equal(type, KIND_TYPES[m->kind]);
        assert_false(m->session_closed);
    }
    if (m->kind == STREAM_RESULTS)
        assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "data"), "poll_id")),
                         m->poll_id);
    json_decref(j);
    json_decref(mp);
    json_decref(sse);
}

/* ---- the world ---- */

struct world {
    struct actor_rt *rt;
    struct store *st;
    struct actors *as;
    struct fake_sink *sink;
};

static struct world W;

static void world_open(struct world *w, struct store *st, bool with_sink)
{
    struct actors_config cfg;

    w->rt = actor_rt_create(2, 256);
    assert_non_null(w->rt);
    assert_int_equal(actor_rt_start(w->rt), 0);
    w->st = st;
    w->sink = with_sink ? sink_new() : NULL;
    cfg = (struct actors_config){.rt = w->rt,
                                 .store = st,
                                 .sessions_max = 64,
                                 .sink = w->sink ? &w->sink->pub : NULL};
    w->as = actors_create(&cfg);
    assert_non_null(w->as);
}

static void world_close(struct world *w)
{
    fake_store_park(w->st, STORE_EVENTS_SINCE, false);
    fake_store_hold(w->st, false);
    fake_store_wait_idle(w->st);
    actor_rt_stop(w->rt);
    actors_destroy(w->as);
    actor_rt_destroy(w->rt);
    if (w->sink)
        sink_free(w->sink);
}

static int setup(void **state)
{
    (void)state;
    world_open(&W, fake_store_create(), true);
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

/* ---- calls ---- */

struct call {
    sem_t done;
    int status;
    char *body;
    size_t len;
    const char *ctype;
    uint32_t retry;
    json_t *json;
    int64_t session_id, subscriber_id;
    bool is_participant;
    size_t mark; /* the sink's count for the request's thread when it was answered */
    struct fake_sink *sink;
};

static void on_reply(struct api_req *req)
{
    struct call *c = req->net_ctx;

    c->status = req->status;
    c->body = req->body;
    c->len = req->body_len;
    c->ctype = req->content_type;
    c->retry = req->retry_after_s;
    c->session_id = req->session_id;
    c->subscriber_id = req->subscriber_id;
    c->is_participant = req->is_participant;
    if (c->sink != NULL && req->net_thread < SINK_THREADS)
        c->mark = sink_count(c->sink, req->net_thread);
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
    req->since = -1;
    req->on_reply = on_reply;
    return req;
}

static struct call *call_start(struct api_req *req)
{
    struct call *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    sem_init(&c->done, 0, 0);
    c->sink = W.sink;
    req->net_ctx = c;
    actors_submit(W.as, req);
    return c;
}

static struct call *call_wait(struct call *c)
{
    while (sem_wait(&c->done) != 0)
        ;
    if (c->body && c->ctype == NULL)
        c->json = json_loadb(c->body, c->len, 0, NULL);
    return c;
}

static bool call_done(struct call *c)
{
    int v = 0;

    sem_getvalue(&c->done, &v);
    return v > 0;
}

static struct call *call(struct api_req *req)
{
    return call_wait(call_start(req));
}

static void call_free(struct call *c)
{
    sem_destroy(&c->done);
    json_decref(c->json);
    free(c->body);
    free(c);
}

static void expect_error(struct call *c, int status, const char *code)
{
    if (c->status != status)
        fprintf(stderr, "expected %d %s, got %d %.*s\n", status, code, c->status, (int)c->len,
                c->body ? c->body : "");
    assert_int_equal(c->status, status);
    assert_non_null(c->json);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(c->json, "error"), "code")), code);
    call_free(c);
}

static void expect_status(struct call *c, int status)
{
    if (c->status != status)
        fprintf(stderr, "expected %d, got %d %.*s\n", status, c->status, (int)c->len,
                c->body ? c->body : "");
    assert_int_equal(c->status, status);
    call_free(c);
}

static void wait_until(bool (*cond)(void *), void *arg)
{
    uint64_t t0 = clock_now_ms();

    while (!cond(arg)) {
        if (clock_now_ms() - t0 > WAIT_MS_MAX)
            fail_msg("condition not met within %d ms", WAIT_MS_MAX);
        usleep(2000);
    }
}

/* ---- the product's steps ---- */

struct sess {
    char code[API_CODE_LEN + 1];
    char token[API_TOKEN_MAX + 1];
    int64_t id;
};

struct part {
    char token[API_TOKEN_MAX + 1];
    int64_t id;
};

static void create_session(const char *title, struct sess *out)
{
    struct api_req *req = req_new(API_SESSION_CREATE, NULL, 0, NULL);
    struct call *c;

    req->text = strdup(title);
    c = call(req);
    assert_int_equal(c->status, 201);
    snprintf(out->code, sizeof(out->code), "%s",
             json_string_value(json_object_get(json_object_get(c->json, "session"), "code")));
    snprintf(out->token, sizeof(out->token), "%s",
             json_string_value(json_object_get(c->json, "presenter_token")));
    out->id = json_integer_value(json_object_get(json_object_get(c->json, "session"), "id"));
    call_free(c);
}

static void join(const struct sess *s, struct part *out)
{
    struct call *c = call(req_new(API_JOIN, s->code, 0, NULL));

    assert_int_equal(c->status, 201);
    out->id = json_integer_value(json_object_get(c->json, "participant_id"));
    snprintf(out->token, sizeof(out->token), "%s",
             json_string_value(json_object_get(c->json, "participant_token")));
    call_free(c);
}

static const char *const OPTS[] = {"red", "green", "blue", "none of these"};

static int64_t create_poll(const struct sess *s, uint32_t n)
{
    struct api_req *req = req_new(API_POLL_CREATE, s->code, 0, s->token);
    struct call *c;
    int64_t id;

    req->poll.question = strdup("Which colour?");
    req->poll.kind = POLL_SINGLE;
    for (uint32_t i = 0; i < n; i++)
        req->poll.options[i] = strdup(OPTS[i]);
    req->poll.n_options = n;
    req->poll.max_choices = 1;
    c = call(req);
    assert_int_equal(c->status, 201);
    id = json_integer_value(json_object_get(json_object_get(c->json, "poll"), "id"));
    call_free(c);
    return id;
}

static void poll_op(enum api_op op, const struct sess *s, int64_t poll)
{
    expect_status(call(req_new(op, NULL, poll, s->token)), 200);
}

static void vote_ok(int64_t poll, const struct part *p, const char *key, uint8_t choice)
{
    struct api_req *req = req_new(API_VOTE, NULL, poll, p->token);
    struct call *c;

    snprintf(req->idem_key, sizeof(req->idem_key), "%s", key);
    req->choices[0] = choice;
    req->n_choices = 1;
    c = call(req);
    if (c->status != 201)
        fprintf(stderr, "vote: %d %.*s\n", c->status, (int)c->len, c->body);
    assert_int_equal(c->status, 201);
    call_free(c);
}

/* ---- clients ---- */

struct client {
    int fmt;
    unsigned thread;
    int64_t session_id, subscriber_id;
    bool is_participant;
    char *body;
    size_t len;
    size_t mark, end; /* the thread's broadcasts [mark, end) are this client's (end SIZE_MAX: live) */
};

static struct api_req *sub_req(const char *code, const char *token, int64_t since, int fmt,
                               unsigned thread)
{
    struct api_req *req = req_new(API_SUBSCRIBE, code, 0, token);

    req->since = since;
    req->format = fmt;
    req->net_thread = thread;
    return req;
}

/* Takes a 200 subscribe reply into cl and frees the call. */
static void client_from(struct call *c, int fmt, unsigned thread, struct client *cl)
{
    if (c->status != 200)
        fprintf(stderr, "subscribe: %d %.*s\n", c->status, (int)c->len, c->body ? c->body : "");
    assert_int_equal(c->status, 200);
    assert_string_equal(c->ctype, fmt == STREAM_SSE ? "text/event-stream"
                                                    : "application/octet-stream");
    *cl = (struct client){.fmt = fmt,
                          .thread = thread,
                          .session_id = c->session_id,
                          .subscriber_id = c->subscriber_id,
                          .is_participant = c->is_participant,
                          .body = c->body,
                          .len = c->len,
                          .mark = c->mark,
                          .end = SIZE_MAX};
    c->body = NULL;
    call_free(c);
}

static void subscribe(const char *code, const char *token, int64_t since, int fmt,
                      unsigned thread, struct client *cl)
{
    client_from(call(sub_req(code, token, since, fmt, thread)), fmt, thread, cl);
}

static void unsubscribe(struct client *cl)
{
    struct api_req *req = req_new(API_UNSUBSCRIBE, "", 0, NULL);
    struct call *c;

    req->session_id = cl->session_id;
    req->is_participant = cl->is_participant;
    req->subscriber_id = cl->subscriber_id;
    req->net_thread = cl->thread;
    c = call(req);
    assert_int_equal(c->status, 200);
    assert_int_equal(c->len, 0);
    cl->end = c->mark;
    call_free(c);
}

static void client_free(struct client *cl)
{
    free(cl->body);
    cl->body = NULL;
}

/* What the client has received so far: the reply, then its session's broadcasts. */
static json_t *client_msgs(const struct client *cl)
{
    json_t *arr = json_array();
    size_t n = sink_count(W.sink, cl->thread);

    parse_stream(cl->fmt, cl->body, cl->len, arr);
    for (size_t i = cl->mark; i < n && i < cl->end; i++) {
        struct rec r = sink_rec(W.sink, cl->thread, i);

        if (r.m->session_id == cl->session_id)
            parse_stream(cl->fmt, r.m->bytes[cl->fmt]->data, r.m->bytes[cl->fmt]->len, arr);
    }
    return arr;
}

/* "type[:seq]" of each message, space-separated; results as "results#poll". */
static void summary(json_t *arr, char *out, size_t out_len)
{
    size_t used = 0;
    size_t i;
    json_t *m;

    out[0] = '\0';
    json_array_foreach (arr, i, m) {
        const char *type = json_string_value(json_object_get(m, "type"));
        json_t *seq = json_object_get(m, "seq");

        used += (size_t)snprintf(out + used, out_len - used, "%s%s", i ? " " : "", type);
        if (seq)
            used += (size_t)snprintf(out + used, out_len - used, ":%lld",
                                     (long long)json_integer_value(seq));
        TALLY_ASSERT(used < out_len);
    }
}

/* The client's messages summarised, without presence (its timing is its own test's). */
static void client_summary(const struct client *cl, char *out, size_t out_len)
{
    json_t *arr = client_msgs(cl);
    json_t *kept = json_array();
    size_t i;
    json_t *m;

    json_array_foreach (arr, i, m) {
        if (strcmp(json_string_value(json_object_get(m, "type")), "presence") != 0)
            json_array_append(kept, m);
    }
    summary(kept, out, out_len);
    json_decref(kept);
    json_decref(arr);
}

static json_t *data_of(json_t *m)
{
    return json_object_get(m, "data");
}

static int64_t jint(json_t *j, const char *k)
{
    json_t *v = json_object_get(j, k);

    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* The event_log payload of seq in session_id, parsed. */
static json_t *event_payload(int64_t session_id, int64_t seq)
{
    struct fake_event e;

    for (size_t i = 0; fake_store_event(W.st, i, &e); i++) {
        if (e.session_id == session_id && e.seq == seq && e.payload)
            return json_loads(e.payload, 0, NULL);
    }
    fail_msg("no event %lld", (long long)seq);
    return NULL;
}

/* Every sequenced message of arr carries exactly its event_log payload. */
static void expect_payloads(int64_t session_id, json_t *arr)
{
    size_t i;
    json_t *m;

    json_array_foreach (arr, i, m) {
        json_t *seq = json_object_get(m, "seq");
        json_t *want;

        if (seq == NULL)
            continue;
        want = event_payload(session_id, json_integer_value(seq));
        assert_true(json_equal(data_of(m), want));
        json_decref(want);
    }
}

/* ---- tests ---- */

static void test_hello(void **state)
{
    struct sess s;
    struct part p;
    int64_t poll, draft;
    struct client pres, pj, pm, ps;
    json_t *a, *m, *b;
    char sum[512];

    (void)state;
    create_session("Live", &s);
    join(&s, &p);
    poll = create_poll(&s, 3);
    draft = create_poll(&s, 2);
    poll_op(API_POLL_OPEN, &s, poll);
    vote_ok(poll, &p, "k1", 2);

    subscribe(s.code, s.token, -1, STREAM_WS_JSON, 0, &pres);
    assert_int_equal(pres.session_id, s.id);
    assert_false(pres.is_participant);
    assert_int_equal(pres.subscriber_id, s.id);
    a = client_msgs(&pres);
    summary(a, sum, sizeof(sum));
    assert_string_equal(sum, "hello results"); /* results of the open poll only */
    m = json_array_get(a, 0);
    assert_null(json_object_get(m, "seq"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(data_of(m), "session"),
                                                          "code")),
                        s.code);
    assert_int_equal(jint(data_of(m), "seq"), 3);
    assert_int_equal(json_array_size(json_object_get(data_of(m), "polls")), 2);
    assert_int_equal(jint(json_array_get(json_object_get(data_of(m), "polls"), 1), "id"), draft);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(data_of(m), "you"), "role")),
        "presenter");
    assert_int_equal(jint(json_object_get(data_of(m), "you"), "id"), s.id);
    assert_null(json_object_get(data_of(m), "participants")); /* hello has exactly its fields */
    assert_int_equal(json_object_size(data_of(m)), 4);
    m = json_array_get(a, 1);
    assert_int_equal(jint(data_of(m), "poll_id"), poll);
    assert_int_equal(jint(data_of(m), "total"), 1);
    assert_int_equal(jint(data_of(m), "version"), 1);
    assert_int_equal(jint(data_of(m), "as_of"), 3);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(data_of(m), "counts"), 2)),
                     1);
    json_decref(a);

    /* A participant, in each format: the same messages. */
    subscribe(s.code, p.token, -1, STREAM_WS_JSON, 1, &pj);
    subscribe(s.code, p.token, -1, STREAM_WS_MSGPACK, 1, &pm);
    subscribe(s.code, p.token, -1, STREAM_SSE, 2, &ps);
    assert_true(pj.is_participant);
    assert_int_equal(pj.subscriber_id, p.id);
    a = client_msgs(&pj);
    b = client_msgs(&pm);
    m = json_array_get(a, 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(data_of(m), "you"), "role")),
        "participant");
    assert_int_equal(jint(json_object_get(data_of(m), "you"), "id"), p.id);
    assert_true(json_equal(a, b));
    json_decref(b);
    b = client_msgs(&ps);
    assert_true(json_equal(a, b));
    json_decref(b);
    /* SSE exactly: the same JSON text as the WebSocket frame's, in an event. */
    {
        size_t off = pj.body[1] == 126 ? 4 : 2;
        size_t len = pj.body[1] == 126 ? ((size_t)(uint8_t)pj.body[2] << 8 | (uint8_t)pj.body[3])
                                       : (size_t)pj.body[1];
        char want[8192];

        assert_true(len < sizeof(want) - 32);
        snprintf(want, sizeof(want), "event: hello\ndata: %.*s\n\n", (int)len, pj.body + off);
        assert_true(ps.len > strlen(want));
        assert_memory_equal(ps.body, want, strlen(want));
        assert_memory_equal(ps.body + strlen(want), "event: results\ndata: {\"type\":\"results\",",
                            strlen("event: results\ndata: {\"type\":\"results\","));
    }
    json_decref(a);
    unsubscribe(&pres);
    unsubscribe(&pj);
    unsubscribe(&pm);
    unsubscribe(&ps);
    client_free(&pres);
    client_free(&pj);
    client_free(&pm);
    client_free(&ps);

    /* A closed session still answers: hello, and since=0 replays it all. */
    expect_status(call(req_new(API_SESSION_CLOSE, s.code, 0, s.token)), 200);
    subscribe(s.code, p.token, 0, STREAM_WS_JSON, 0, &pj);
    client_summary(&pj, sum, sizeof(sum));
    assert_string_equal(sum, "hello poll.created:1 poll.created:2 poll.opened:3 poll.closed:4 "
                             "session.closed:5");
    a = client_msgs(&pj);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(data_of(json_array_get(a, 0)), "session"), "state")),
                        "closed");
    expect_payloads(s.id, a);
    json_decref(a);
    unsubscribe(&pj);
    client_free(&pj);
}

static void test_refused(void **state)
{
    struct sess s, other;
    struct part p, q;
    struct world keep;

    (void)state;
    create_session("Refusals", &s);
    create_session("Other", &other);
    join(&s, &p);
    join(&other, &q);
    create_poll(&s, 2);
    expect_error(call(sub_req(s.code, "", -1, STREAM_WS_JSON, 0)), 401, "unauthorized");
    expect_error(call(sub_req(s.code, "nobody-has-this", -1, STREAM_WS_JSON, 0)), 401,
                 "unauthorized");
    expect_error(call(sub_req(s.code, other.token, -1, STREAM_WS_JSON, 0)), 403, "forbidden");
    expect_error(call(sub_req(s.code, q.token, -1, STREAM_SSE, 0)), 403, "forbidden");
    expect_error(call(sub_req("ZZZZZZ", s.token, -1, STREAM_WS_JSON, 0)), 404, "not_found");
    /* since: the current seq is fine, one past it is not. */
    {
        struct client cl;
        char sum[64];

        subscribe(s.code, p.token, 1, STREAM_WS_JSON, 0, &cl);
        client_summary(&cl, sum, sizeof(sum));
        assert_string_equal(sum, "hello");
        unsubscribe(&cl);
        client_free(&cl);
    }
    expect_error(call(sub_req(s.code, p.token, 2, STREAM_WS_JSON, 0)), 400, "invalid_request");
    /* What the network side alone sets, out of range. */
    expect_error(call(sub_req(s.code, p.token, -1, STREAM_FMT_COUNT, 0)), 400, "invalid_request");
    expect_error(call(sub_req(s.code, p.token, -1, -1, 0)), 400, "invalid_request");
    expect_error(call(sub_req(s.code, p.token, -1, STREAM_SSE, SINK_THREADS)), 400,
                 "invalid_request");

    /* Without a network side: 503, and structural changes still work. */
    keep = W;
    world_open(&W, W.st, false);
    assert_int_equal(actors_load(W.as), 0);
    {
        struct call *c = call(sub_req(s.code, p.token, -1, STREAM_WS_JSON, 0));

        assert_int_equal(c->retry, 1);
        expect_error(c, 503, "unavailable");
    }
    create_poll(&s, 2);
    world_close(&W);
    W = keep;
}

/* Sequenced events reach every thread with subscribers, in order, and only those. */
static void test_sequenced(void **state)
{
    struct sess s;
    struct part p;
    struct client c0, c2;
    int64_t poll;
    char sum[512];
    json_t *a;

    (void)state;
    create_session("Order", &s);
    join(&s, &p);
    subscribe(s.code, s.token, -1, STREAM_WS_JSON, 0, &c0);
    subscribe(s.code, p.token, -1, STREAM_SSE, 2, &c2);
    poll = create_poll(&s, 2);
    poll_op(API_POLL_OPEN, &s, poll);
    poll_op(API_POLL_CLOSE, &s, poll);
    /* Broadcast before the presenter's answer: no waiting needed. */
    client_summary(&c0, sum, sizeof(sum));
    assert_string_equal(sum, "hello poll.created:1 poll.opened:2 poll.closed:3");
    client_summary(&c2, sum, sizeof(sum));
    assert_string_equal(sum, "hello poll.created:1 poll.opened:2 poll.closed:3");
    assert_int_equal(sink_count(W.sink, 1), 0);
    a = client_msgs(&c2);
    expect_payloads(s.id, a);
    assert_string_equal(
        json_string_value(json_object_get(data_of(json_array_get(a, 3)), "state")), "closed");
    json_decref(a);
    /* Thread 0 left: only thread 2 hears the rest; the session's close ends it. */
    unsubscribe(&c0);
    {
        size_t n0 = sink_count(W.sink, 0);

        expect_status(call(req_new(API_SESSION_CLOSE, s.code, 0, s.token)), 200);
        assert_int_equal(sink_count(W.sink, 0), n0);
        assert_int_equal(sink_count(W.sink, 1), 0);
    }
    client_summary(&c2, sum, sizeof(sum));
    assert_string_equal(sum, "hello poll.created:1 poll.opened:2 poll.closed:3 session.closed:4");
    {
        struct rec r = sink_rec(W.sink, 2, sink_count(W.sink, 2) - 1);

        assert_int_equal(r.m->kind, STREAM_SEQUENCED);
        assert_true(r.m->session_closed);
        assert_int_equal(r.m->seq, 4);
        assert_int_equal(r.m->session_id, s.id);
    }
    unsubscribe(&c2);
    client_free(&c0);
    client_free(&c2);
}

struct results_seen {
    struct client *cl;
    int64_t poll;
    int64_t version;
};

/* true once the client has a results of poll at version. */
static bool seen_version(void *arg)
{
    struct results_seen *w = arg;
    json_t *a = client_msgs(w->cl);
    bool found = false;
    size_t i;
    json_t *m;

    json_array_foreach (a, i, m) {
        if (strcmp(json_string_value(json_object_get(m, "type")), "results") == 0 &&
            jint(data_of(m), "poll_id") == w->poll && jint(data_of(m), "version") == w->version)
            found = true;
    }
    json_decref(a);
    return found;
}

/*
 * Checks the results a client saw: none for a poll before its poll.opened
 * nor after its poll.closed, versions never going back, as_of the seq seen
 * so far. Returns the last results of poll (a new reference) or NULL.
 */
static json_t *check_results(const struct client *cl, int64_t poll)
{
    json_t *a = client_msgs(cl);
    json_t *last = NULL;
    bool opened = false, closed = false;
    int64_t version = -1, seq = 0;
    size_t i;
    json_t *m;

    json_array_foreach (a, i, m) {
        const char *type = json_string_value(json_object_get(m, "type"));
        json_t *d = data_of(m);

        if (strcmp(type, "hello") == 0) {
            seq = jint(d, "seq");
            for (size_t k = 0; k < json_array_size(json_object_get(d, "polls")); k++) {
                json_t *pj = json_array_get(json_object_get(d, "polls"), k);

                if (jint(pj, "id") == poll) {
                    opened = strcmp(json_string_value(json_object_get(pj, "state")), "open") == 0;
                    closed = strcmp(json_string_value(json_object_get(pj, "state")), "closed") == 0;
                }
            }
        } else if (json_object_get(m, "seq") != NULL) {
            if (jint(m, "seq") > seq) /* replayed events may precede hello's seq */
                seq = jint(m, "seq");
            if (jint(d, "id") == poll && strcmp(type, "poll.opened") == 0)
                opened = true;
            if (jint(d, "id") == poll && strcmp(type, "poll.closed") == 0)
                closed = true;
        } else if (strcmp(type, "results") == 0 && jint(d, "poll_id") == poll) {
            assert_true(opened);
            assert_false(closed);
            assert_true(jint(d, "version") >= version);
            assert_int_equal(jint(d, "as_of"), seq);
            version = jint(d, "version");
            json_decref(last);
            last = json_incref(d);
        }
    }
    json_decref(a);
    return last;
}

/* Votes produce coalesced results, never around poll.opened / poll.closed. */
static void test_results(void **state)
{
    struct sess s;
    struct part parts[6];
    struct client cl;
    int64_t poll, other;
    struct results_seen w;
    json_t *last;

    (void)state;
    create_session("Results", &s);
    for (int i = 0; i < 6; i++)
        join(&s, &parts[i]);
    subscribe(s.code, s.token, -1, STREAM_WS_MSGPACK, 1, &cl);
    poll = create_poll(&s, 3);
    other = create_poll(&s, 2);
    poll_op(API_POLL_OPEN, &s, poll);
    for (int i = 0; i < 6; i++) {
        char key[16];

        snprintf(key, sizeof(key), "v%d", i);
        vote_ok(poll, &parts[i], key, (uint8_t)(i % 3));
    }
    w = (struct results_seen){&cl, poll, 6};
    wait_until(seen_version, &w);
    last = check_results(&cl, poll);
    assert_non_null(last);
    assert_int_equal(jint(last, "total"), 6);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(last, "counts"), 0)), 2);
    json_decref(last);
    /* Coalesced: a burst of six votes gives fewer results than votes only if
     * ticks are slower than votes, so check the spacing instead: two results
     * of one poll are a tick apart (within scheduling slack). */
    {
        uint64_t prev = 0;

        for (size_t i = cl.mark; i < sink_count(W.sink, 1); i++) {
            struct rec r = sink_rec(W.sink, 1, i);

            if (r.m->kind != STREAM_RESULTS || r.m->poll_id != poll)
                continue;
            if (prev)
                assert_true(r.at_ms - prev >= LIVE_TICK_MS / 3);
            prev = r.at_ms;
        }
    }
    /* The other poll is a draft: no results for it at all. */
    last = check_results(&cl, other);
    assert_null(last);

    /* A vote right before the close: its count is in poll.closed (the
     * close waits for it), and no results follow, whatever the ticks did. */
    poll_op(API_POLL_OPEN, &s, other);
    vote_ok(other, &parts[0], "late", 1);
    poll_op(API_POLL_CLOSE, &s, other);
    poll_op(API_POLL_CLOSE, &s, poll);
    usleep(3 * LIVE_TICK_MS * 1000);
    json_decref(check_results(&cl, poll));
    json_decref(check_results(&cl, other));
    {
        json_t *a = client_msgs(&cl);
        json_t *m = json_array_get(a, json_array_size(a) - 2);
        json_t *counts = json_object_get(data_of(m), "counts");

        assert_string_equal(json_string_value(json_object_get(m, "type")), "poll.closed");
        assert_int_equal(jint(data_of(m), "id"), other);
        assert_int_equal(json_integer_value(json_array_get(counts, 1)), 1);
        m = json_array_get(a, json_array_size(a) - 1);
        assert_string_equal(json_string_value(json_object_get(m, "type")), "poll.closed");
        counts = json_object_get(data_of(m), "counts");
        assert_int_equal(json_integer_value(json_array_get(counts, 0)), 2);
        assert_int_equal(json_integer_value(json_array_get(counts, 1)), 2);
        assert_int_equal(json_integer_value(json_array_get(counts, 2)), 2);
        json_decref(a);
    }
    unsubscribe(&cl);
    client_free(&cl);
}


/* Many polls dirty at once: every poll's last results counts all its votes,
 * and no poll gets two results within LIVE_RESULTS_MS. */
static void test_results_many_polls(void **state)
{
    enum { POLLS = 8, VOTERS = 3 }; /* 8 votes each: under the 10 a second a participant may send */
    struct sess s;
    struct part parts[VOTERS];
    struct client cl;
    int64_t polls[POLLS];

    (void)state;
    create_session("Many polls", &s);
    for (int i = 0; i < VOTERS; i++)
        join(&s, &parts[i]);
    subscribe(s.code, s.token, -1, STREAM_WS_JSON, 1, &cl);
    for (int k = 0; k < POLLS; k++) {
        polls[k] = create_poll(&s, 3);
        poll_op(API_POLL_OPEN, &s, polls[k]);
    }
    for (int i = 0; i < VOTERS; i++) {
        for (int k = 0; k < POLLS; k++) {
            char key[32];

            snprintf(key, sizeof(key), "v%d-%d", i, k);
            vote_ok(polls[k], &parts[i], key, (uint8_t)((i + k) % 3));
        }
    }
    for (int k = 0; k < POLLS; k++) {
        struct results_seen w = {&cl, polls[k], VOTERS};
        json_t *last;

        wait_until(seen_version, &w);
        last = check_results(&cl, polls[k]);
        assert_non_null(last);
        assert_int_equal(jint(last, "total"), VOTERS);
        json_decref(last);
    }
    for (int k = 0; k < POLLS; k++) {
        uint64_t prev = 0;

        for (size_t i = cl.mark; i < sink_count(W.sink, 1); i++) {
            struct rec r = sink_rec(W.sink, 1, i);

            if (r.m->kind != STREAM_RESULTS || r.m->poll_id != polls[k])
                continue;
            /* Stamped on arrival at the sink: allow a little scheduling slack. */
            if (prev)
                assert_true(r.at_ms - prev >= LIVE_RESULTS_MS - LIVE_TICK_MS);
            prev = r.at_ms;
        }
    }
    unsubscribe(&cl);
    client_free(&cl);
}

/* ---- resume ---- */

/* Creates and opens polls, closing some: n events in all. */
static void make_events(const struct sess *s, int n)
{
    int64_t open_poll = 0;

    for (int made = 0; made < n;) {
        if (open_poll == 0) {
            open_poll = create_poll(s, 2);
            made++;
            if (made == n)
                break;
            poll_op(API_POLL_OPEN, s, open_poll);
            made++;
        } else {
            poll_op(API_POLL_CLOSE, s, open_poll);
            open_poll = 0;
            made++;
        }
    }
}

/* Checks the client's sequenced messages run from first to last, each once, in order. */
static void expect_seqs(const struct client *cl, int64_t first, int64_t last)
{
    json_t *a = client_msgs(cl);
    int64_t want = first;
    size_t i;
    json_t *m;

    json_array_foreach (a, i, m) {
        json_t *seq = json_object_get(m, "seq");

        if (seq == NULL)
            continue;
        assert_int_equal(json_integer_value(seq), want);
        want++;
    }
    assert_int_equal(want, last + 1);
    expect_payloads(cl->session_id, a);
    json_decref(a);
}

static bool parked_one(void *arg)
{
    return fake_store_parked(arg) == 1;
}

static void test_resume_ring(void **state)
{
    struct sess s;
    struct part p;
    int64_t a, b;
    struct client cl;
    char sum[512];

    (void)state;
    create_session("Resume", &s);
    join(&s, &p);
    a = create_poll(&s, 2);
    b = create_poll(&s, 2);
    poll_op(API_POLL_OPEN, &s, a);
    poll_op(API_POLL_OPEN, &s, b);
    poll_op(API_POLL_CLOSE, &s, a);
    /* Nothing goes to the store for these: parked resumes would not answer. */
    fake_store_park(W.st, STORE_EVENTS_SINCE, true);
    subscribe(s.code, p.token, 2, STREAM_SSE, 1, &cl);
    client_summary(&cl, sum, sizeof(sum));
    assert_string_equal(sum, "hello poll.opened:3 poll.opened:4 poll.closed:5 results");
    expect_seqs(&cl, 3, 5);
    unsubscribe(&cl);
    client_free(&cl);
    subscribe(s.code, p.token, 5, STREAM_WS_JSON, 1, &cl);
    client_summary(&cl, sum, sizeof(sum));
    assert_string_equal(sum, "hello results");
    unsubscribe(&cl);
    client_free(&cl);
    subscribe(s.code, s.token, 0, STREAM_WS_MSGPACK, 2, &cl);
    expect_seqs(&cl, 1, 5);
    /* Then live events, continuing the sequence. */
    poll_op(API_POLL_CLOSE, &s, b);
    expect_seqs(&cl, 1, 6);
    unsubscribe(&cl);
    client_free(&cl);
    assert_int_equal(fake_store_parked(W.st), 0);
    fake_store_park(W.st, STORE_EVENTS_SINCE, false);
}

/* Past SESSION_REPLAY_MAX events the oldest resume from the store; the boundary is exact. */
static void test_resume_overflow(void **state)
{
    const int n = SESSION_REPLAY_MAX + 14;
    struct sess s;
    struct client cl;
    struct call *c;

    (void)state;
    create_session("Many events", &s);
    make_events(&s, n);
    fake_store_park(W.st, STORE_EVENTS_SINCE, true);
    /* The ring holds n - 255 .. n: since = n - 256 is served from memory. */
    subscribe(s.code, s.token, n - SESSION_REPLAY_MAX, STREAM_WS_JSON, 0, &cl);
    expect_seqs(&cl, n - SESSION_REPLAY_MAX + 1, n);
    unsubscribe(&cl);
    client_free(&cl);
    assert_int_equal(fake_store_parked(W.st), 0);
    /* One older goes to the store. */
    c = call_start(sub_req(s.code, s.token, n - SESSION_REPLAY_MAX - 1, STREAM_WS_JSON, 0));
    wait_until(parked_one, W.st);
    assert_false(call_done(c));
    fake_store_park(W.st, STORE_EVENTS_SINCE, false);
    client_from(call_wait(c), STREAM_WS_JSON, 0, &cl);
    expect_seqs(&cl, n - SESSION_REPLAY_MAX, n);
    unsubscribe(&cl);
    client_free(&cl);
    subscribe(s.code, s.token, 0, STREAM_SSE, 0, &cl);
    expect_seqs(&cl, 1, n);
    unsubscribe(&cl);
    client_free(&cl);
}

/* Runs body with W set to a second world loaded from the same store: its rings start empty. */
static void with_loaded_world(void (*body)(const struct sess *, void *), const struct sess *s,
                              void *arg)
{
    struct world keep = W;

    world_open(&W, keep.st, true);
    assert_int_equal(actors_load(W.as), 0);
    body(s, arg);
    world_close(&W);
    W = keep;
}

struct seam_args {
    int64_t a, b;
    struct part p;
};

static void seam_body(const struct sess *s, void *arg)
{
    struct seam_args *x = arg;
    struct call *c;
    struct client cl;
    struct results_seen w;
    char sum[512];

    /* The store is asked for the events after 1 while the session is at 3 ... */
    fake_store_park(W.st, STORE_EVENTS_SINCE, true);
    c = call_start(sub_req(s->code, x->p.token, 1, STREAM_WS_JSON, 1));
    wait_until(parked_one, W.st);
    /* ... and the session moves on meanwhile: 4 and 5 are committed before
     * the store reads, so its rows hold them too; they must come once. */
    poll_op(API_POLL_OPEN, s, x->b);
    poll_op(API_POLL_CLOSE, s, x->a);
    assert_false(call_done(c));
    fake_store_park(W.st, STORE_EVENTS_SINCE, false);
    client_from(call_wait(c), STREAM_WS_JSON, 1, &cl);
    client_summary(&cl, sum, sizeof(sum));
    assert_string_equal(sum, "hello poll.opened:2 poll.created:3 poll.opened:4 poll.closed:5 "
                             "results");
    expect_seqs(&cl, 2, 5);
    {
        json_t *a = client_msgs(&cl);

        assert_int_equal(jint(data_of(json_array_get(a, 0)), "seq"), 5);
        json_decref(a);
    }
    /* Live after the replay. */
    vote_ok(x->b, &x->p, "after", 1);
    w = (struct results_seen){&cl, x->b, 1};
    wait_until(seen_version, &w);
    json_decref(check_results(&cl, x->b));
    unsubscribe(&cl);
    client_free(&cl);

    /* From the start: the store has 1..5, the ring only 4..5. */
    subscribe(s->code, s->token, 0, STREAM_WS_MSGPACK, 0, &cl);
    expect_seqs(&cl, 1, 5);
    unsubscribe(&cl);
    client_free(&cl);

    /* Past the retention: events 1..2 are gone, so since=1 gets hello alone,
     * which holds the whole state; since=2 still replays 3..5. */
    fake_store_forget_events(W.st, s->id, 2);
    subscribe(s->code, s->token, 1, STREAM_WS_JSON, 0, &cl);
    client_summary(&cl, sum, sizeof(sum));
    assert_string_equal(sum, "hello results");
    unsubscribe(&cl);
    client_free(&cl);
    subscribe(s->code, s->token, 2, STREAM_SSE, 0, &cl);
    expect_seqs(&cl, 3, 5);
    unsubscribe(&cl);
    client_free(&cl);
}

static void test_resume_store(void **state)
{
    struct sess s;
    struct seam_args x;

    (void)state;
    create_session("Seam", &s);
    join(&s, &x.p);
    x.a = create_poll(&s, 2);
    poll_op(API_POLL_OPEN, &s, x.a);
    x.b = create_poll(&s, 3);
    with_loaded_world(seam_body, &s, &x);
}

static void faults_body(const struct sess *s, void *arg)
{
    struct call *calls[SESSION_PENDING_SUBS_MAX];
    struct call *c;

    (void)arg;
    fake_store_fail_next(W.st, STORE_EVENTS_SINCE, STORE_UNAVAILABLE, 1, false);
    c = call(sub_req(s->code, s->token, 0, STREAM_WS_JSON, 0));
    assert_int_equal(c->retry, 1);
    expect_error(c, 503, "storage_unavailable");
    fake_store_refuse(W.st, true);
    c = call(sub_req(s->code, s->token, 0, STREAM_WS_JSON, 0));
    assert_int_equal(c->retry, 1);
    expect_error(c, 503, "storage_unavailable");
    /* Not resuming needs no store. */
    expect_status(call(sub_req(s->code, s->token, -1, STREAM_WS_JSON, 0)), 200);
    fake_store_refuse(W.st, false);

    /* At most SESSION_PENDING_SUBS_MAX resumes wait for the store at once. */
    fake_store_park(W.st, STORE_EVENTS_SINCE, true);
    for (int i = 0; i < SESSION_PENDING_SUBS_MAX; i++)
        calls[i] = call_start(sub_req(s->code, s->token, 0, STREAM_SSE, (unsigned)i % 3));
    expect_error(call(sub_req(s->code, s->token, 0, STREAM_SSE, 0)), 503, "busy");
    fake_store_park(W.st, STORE_EVENTS_SINCE, false);
    for (int i = 0; i < SESSION_PENDING_SUBS_MAX; i++) {
        struct client cl;

        client_from(call_wait(calls[i]), STREAM_SSE, (unsigned)i % 3, &cl);
        expect_seqs(&cl, 1, 2);
        unsubscribe(&cl);
        client_free(&cl);
    }
}

static void test_resume_faults(void **state)
{
    struct sess s;
    int64_t poll;

    (void)state;
    create_session("Faults", &s);
    poll = create_poll(&s, 2);
    poll_op(API_POLL_OPEN, &s, poll);
    with_loaded_world(faults_body, &s, NULL);
}

/* ---- presence ---- */

struct presence_seen {
    struct client *cl;
    int64_t want;
};

/* true when the client's last presence says want. */
static bool seen_presence(void *arg)
{
    struct presence_seen *w = arg;
    json_t *a = client_msgs(w->cl);
    int64_t last = -1;
    size_t i;
    json_t *m;

    json_array_foreach (a, i, m) {
        if (strcmp(json_string_value(json_object_get(m, "type")), "presence") == 0)
            last = jint(data_of(m), "participants");
    }
    json_decref(a);
    return last == w->want;
}

static void test_presence(void **state)
{
    struct sess s;
    struct part pa, pb;
    struct client pres, a1, a2, b1;
    struct presence_seen w;
    uint64_t prev = 0;
    unsigned n = 0;

    (void)state;
    create_session("Presence", &s);
    join(&s, &pa);
    join(&s, &pb);
    subscribe(s.code, s.token, -1, STREAM_WS_JSON, 0, &pres);
    w = (struct presence_seen){&pres, 0}; /* a newcomer hears it even if unchanged */
    wait_until(seen_presence, &w);
    /* A participant on two connections counts once. */
    subscribe(s.code, pa.token, -1, STREAM_WS_JSON, 1, &a1);
    subscribe(s.code, pa.token, -1, STREAM_SSE, 2, &a2);
    subscribe(s.code, pb.token, -1, STREAM_WS_MSGPACK, 1, &b1);
    w.want = 2;
    wait_until(seen_presence, &w);
    unsubscribe(&a2);
    unsubscribe(&b1);
    w.want = 1;
    wait_until(seen_presence, &w);
    /* An unsubscribe the session does not know changes nothing. */
    unsubscribe(&b1);
    unsubscribe(&a1);
    w.want = 0;
    wait_until(seen_presence, &w);
    /* At most one a second, each different from the one before unless someone subscribed. */
    for (size_t i = pres.mark; i < sink_count(W.sink, 0); i++) {
        struct rec r = sink_rec(W.sink, 0, i);

        if (r.m->kind != STREAM_PRESENCE || r.m->session_id != s.id)
            continue;
        if (prev)
            assert_true(r.at_ms - prev >= LIVE_PRESENCE_MS - LIVE_TICK_MS / 2);
        prev = r.at_ms;
        n++;
    }
    assert_true(n >= 4 && n <= 7);
    /* Thread 2's only subscriber left: it hears nothing more. */
    {
        size_t n2 = sink_count(W.sink, 2);

        usleep(2 * LIVE_PRESENCE_MS * 1000);
        for (size_t i = n2; i < sink_count(W.sink, 2); i++)
            assert_int_not_equal(sink_rec(W.sink, 2, i).m->session_id, s.id);
    }
    unsubscribe(&pres);
    client_free(&pres);
    client_free(&a1);
    client_free(&a2);
    client_free(&b1);
}

/*
 * The session's tick is armed for the end of a dirty poll's results window,
 * not left at its idle period: after a presence (sent from a tick, so the
 * idle tick's next turn is LIVE_IDLE_TICK_MS away), a vote goes out at once
 * and a second one, inside the window, when the window ends.
 */
static void test_results_on_time(void **state)
{
    struct sess s;
    struct part parts[2];
    struct client cl;
    struct presence_seen ps;
    struct results_seen w;
    uint64_t at[2] = {0, 0};
    unsigned n = 0;
    int64_t poll;

    (void)state;
    create_session("On time", &s);
    join(&s, &parts[0]);
    join(&s, &parts[1]);
    poll = create_poll(&s, 2);
    poll_op(API_POLL_OPEN, &s, poll);
    subscribe(s.code, s.token, -1, STREAM_WS_JSON, 1, &cl);
    ps = (struct presence_seen){&cl, 0};
    wait_until(seen_presence, &ps);
    vote_ok(poll, &parts[0], "first", 0);
    w = (struct results_seen){&cl, poll, 1};
    wait_until(seen_version, &w);
    vote_ok(poll, &parts[1], "second", 1);
    w.version = 2;
    wait_until(seen_version, &w);
    for (size_t i = cl.mark; i < sink_count(W.sink, 1) && n < 2; i++) {
        struct rec r = sink_rec(W.sink, 1, i);

        if (r.m->kind == STREAM_RESULTS && r.m->poll_id == poll)
            at[n++] = r.at_ms;
    }
    assert_int_equal(n, 2);
    /* Coalesced into the window, and sent when it ends (plus the runtime's
     * resolution and scheduling), well before the idle tick's next turn. */
    assert_true(at[1] - at[0] >= LIVE_RESULTS_MS - LIVE_TICK_MS);
    assert_true(at[1] - at[0] < LIVE_IDLE_TICK_MS - 50);
    unsubscribe(&cl);
    client_free(&cl);
}

/* An unsubscription that found the mailbox full is still processed, from the tick. */
static void test_unsubscribe_spill(void **state)
{
    struct sess s;
    struct part p;
    struct client pres, cl;
    struct presence_seen w;
    struct session *se;
    struct api_req *req;
    struct call *c;

    (void)state;
    create_session("Spill", &s);
    join(&s, &p);
    subscribe(s.code, s.token, -1, STREAM_WS_JSON, 0, &pres);
    subscribe(s.code, p.token, -1, STREAM_WS_JSON, 1, &cl);
    w = (struct presence_seen){&pres, 1};
    wait_until(seen_presence, &w);
    pthread_rwlock_rdlock(&W.as->lock);
    se = hmap_get(W.as->by_code, joincode_key(s.code));
    pthread_rwlock_unlock(&W.as->lock);
    assert_non_null(se);
    req = req_new(API_UNSUBSCRIBE, s.code, 0, NULL);
    req->session_id = cl.session_id;
    req->is_participant = true;
    req->subscriber_id = cl.subscriber_id;
    req->net_thread = 1;
    c = calloc(1, sizeof(*c));
    sem_init(&c->done, 0, 0);
    req->net_ctx = c;
    session__live_spill(se, req); /* what actors_submit does when actor_post fails */
    expect_status(call_wait(c), 200);
    w.want = 0;
    wait_until(seen_presence, &w);
    unsubscribe(&pres);
    client_free(&pres);
    client_free(&cl);
}

static bool pruned_twice(void *arg)
{
    int64_t keep = 0;

    return fake_store_prunes(arg, &keep) >= 2 && keep == EVENTS_KEEP_S;
}

/* The lobby prunes event_log on its schedule (every 50 ms in this build), keeping 24 h. */
static void test_prune(void **state)
{
    (void)state;
    static_assert(EVENTS_KEEP_S == 24 * 3600, "the contract's 24 hours");
    wait_until(pruned_twice, W.st);
}

/* ---- many threads at once (run under ThreadSanitizer too) ---- */

struct crowd {
    const struct sess *s;
    struct part p;
    const int64_t *polls;
    int n_polls;
    int idx;
    struct client cl;
};

static void *crowd_main(void *arg)
{
    struct crowd *c = arg;
    int fmt = c->idx % STREAM_FMT_COUNT;

    subscribe(c->s->code, c->p.token, c->idx % 2 ? 0 : -1, fmt, (unsigned)c->idx % SINK_THREADS,
              &c->cl);
    for (int i = 0; i < c->n_polls; i++) {
        char key[16];

        snprintf(key, sizeof(key), "c%d", i);
        vote_ok(c->polls[i], &c->p, key, (uint8_t)((c->idx + i) % 3));
    }
    unsubscribe(&c->cl);
    return NULL;
}

static void test_concurrent(void **state)
{
    enum { CROWD = 8, POLLS = 3 };
    struct sess s;
    struct crowd crowd[CROWD];
    pthread_t th[CROWD];
    int64_t polls[POLLS];
    struct client pres;

    (void)state;
    create_session("Crowd", &s);
    for (int i = 0; i < CROWD; i++) {
        crowd[i] = (struct crowd){.s = &s, .polls = polls, .n_polls = POLLS, .idx = i};
        join(&s, &crowd[i].p);
    }
    subscribe(s.code, s.token, -1, STREAM_WS_JSON, 0, &pres);
    for (int i = 0; i < POLLS; i++) {
        polls[i] = create_poll(&s, 3);
        poll_op(API_POLL_OPEN, &s, polls[i]);
    }
    for (int i = 0; i < CROWD; i++)
        assert_int_equal(pthread_create(&th[i], NULL, crowd_main, &crowd[i]), 0);
    for (int i = 0; i < CROWD; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < POLLS; i++) {
        struct results_seen w = {&pres, polls[i], CROWD};

        wait_until(seen_version, &w);
        poll_op(API_POLL_CLOSE, &s, polls[i]);
    }
    usleep(2 * LIVE_TICK_MS * 1000);
    /* Everyone's view holds: order, no results after a close, versions growing. */
    for (int i = 0; i < POLLS; i++) {
        json_t *last = check_results(&pres, polls[i]);

        assert_int_equal(jint(last, "version"), CROWD);
        json_decref(last);
        for (int k = 0; k < CROWD; k++)
            json_decref(check_results(&crowd[k].cl, polls[i]));
    }
    /* poll.closed carries the final counts: 8 votes spread over 3 options. */
    {
        json_t *a = client_msgs(&pres);
        size_t i;
        json_t *m;
        int closed = 0;

        json_array_foreach (a, i, m) {
            json_t *counts = json_object_get(data_of(m), "counts");

            if (strcmp(json_string_value(json_object_get(m, "type")), "poll.closed") != 0)
                continue;
            assert_int_equal(json_integer_value(json_array_get(counts, 0)) +
                                 json_integer_value(json_array_get(counts, 1)) +
                                 json_integer_value(json_array_get(counts, 2)),
                             CROWD);
            closed++;
        }
        assert_int_equal(closed, POLLS);
        expect_payloads(s.id, a);
        json_decref(a);
    }
    unsubscribe(&pres);
    client_free(&pres);
    for (int i = 0; i < CROWD; i++)
        client_free(&crowd[i].cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sequenced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_many_polls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_on_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsubscribe_spill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
