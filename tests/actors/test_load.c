/*
 * test_load.c - actors_load at the product's limits: one session with
 * 100,000 participants who each voted on 10 polls (a million votes), read
 * from a synthetic store that makes its rows as it streams them: sessions,
 * polls, participants, and the votes as counts per (poll, choices), as the
 * real store hands them over.
 *
 * The store here only loads: every submit is refused, which the test also
 * uses to show that after the load nothing is answered from a guess: a
 * retried key, or a vote that would be refused, needs the store (the votes
 * themselves are not in memory), so both get 503, never an ack or a 4xx.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "actors/actors.h"
#include "actors/token.h"
#include "core/actor.h"
#include "store/store.h"

#define LOAD_POLLS 10
#define LOAD_PARTICIPANTS 100000
#define LOAD_OPTIONS 4
#define LOAD_CODE "K7QX2M"

/* LOAD_CPU_BUDGET_MS comes from CMake; 0 = measure only (sanitizer builds). */

struct store {
    bool count_only; /* make the rows but hand nothing to the loader */
};

bool store_submit(struct store *s, struct store_op *op)
{
    (void)s;
    (void)op;
    return false;
}

bool store_available(const struct store *s)
{
    (void)s;
    return false;
}

void store_op_free(struct store_op *op)
{
    if (op == NULL)
        return;
    free(op->text);
    free(op->poll.question);
    for (uint32_t i = 0; i < API_OPTIONS_MAX; i++)
        free(op->poll.options[i]);
    for (uint32_t i = 0; i < op->n_events; i++)
        free(op->events[i].payload);
    free(op->events);
    free(op);
}

/* Participant i's token is "participant-<i>". */
static void part_hash_hex(int64_t i, char out[STORE_HASH_HEX + 1])
{
    char token[32];
    uint8_t h[TOKEN_HASH_BYTES];

    snprintf(token, sizeof(token), "participant-%lld", (long long)i);
    token_hash(token, strlen(token), h);
    token_hash_hex(h, out);
}

static int64_t poll_id(int p)
{
    return 1000 + p;
}

static int64_t part_id(int i)
{
    return 10 + i;
}

int store_find_session(struct store *s, const struct store_find *find, int64_t *sid, int64_t *pid)
{
    (void)s;
    (void)find;
    *sid = *pid = 0;
    return 0;
}

int store_load_session(struct store *s, int64_t sid, struct store_loader *l)
{
    (void)s;
    (void)sid;
    (void)l;
    return -5; /* -EIO: nothing is stored beyond what store_load gives */
}

int store_load(struct store *s, struct store_loader *l)
{
    static const char *const opts[LOAD_OPTIONS] = {"a", "b", "c", "d"};
    char hex[STORE_HASH_HEX + 1];
    struct store_session_row srow;
    struct store_vote_count vc;
    uint8_t h[TOKEN_HASH_BYTES];

    token_hash("presenter", 9, h);
    token_hash_hex(h, hex);
    srow = (struct store_session_row){
        1, LOAD_CODE, "Stadium", false, hex, 2 * LOAD_POLLS, "2026-11-22T07:31:23.123Z"};
    if (!s->count_only)
        l->on_session(l->arg, &srow);
    for (int p = 0; p < LOAD_POLLS; p++) {
        struct store_poll_row row = {.id = poll_id(p),
                                     .session_id = 1,
                                     .question = "Q?",
                                     .kind = POLL_SINGLE,
                                     .n_options = LOAD_OPTIONS,
                                     .max_choices = 1,
                                     .state = 1};

        memcpy(row.options, opts, sizeof(opts));
        if (!s->count_only)
            l->on_poll(l->arg, &row);
    }
    for (int i = 0; i < LOAD_PARTICIPANTS; i++) {
        part_hash_hex(i, hex);
        if (!s->count_only)
            l->on_participant(l->arg, 1, part_id(i), hex);
    }
    /* Participant i chose (i + p) % 4 on poll p: the counts of those votes. */
    memset(&vc, 0, sizeof(vc));
    vc.session_id = 1;
    vc.n_choices = 1;
    for (int p = 0; p < LOAD_POLLS; p++) {
        for (int o = 0; o < LOAD_OPTIONS; o++) {
            vc.poll_id = poll_id(p);
            vc.choices[0] = (uint8_t)o;
            vc.votes = 0;
            for (int i = 0; i < LOAD_PARTICIPANTS; i++)
                vc.votes += (i + p) % LOAD_OPTIONS == o;
            if (!s->count_only)
                l->on_vote_count(l->arg, &vc);
        }
    }
    /* A row that does not fit its poll is skipped, not counted. */
    vc.choices[0] = LOAD_OPTIONS;
    vc.votes = 5;
    if (!s->count_only)
        l->on_vote_count(l->arg, &vc);
    l->vote_id_max = 1000000 + (int64_t)LOAD_PARTICIPANTS * LOAD_POLLS;
    return 0;
}

static uint64_t cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct call {
    sem_t done;
    int status;
    char *body;
};

static void on_reply(struct api_req *req)
{
    struct call *c = req->net_ctx;

    c->status = req->status;
    c->body = req->body;
    req->body = NULL;
    api_req_free(req);
    sem_post(&c->done);
}

static json_t *call(struct actors *as, struct api_req *req, int want_status)
{
    struct call c = {.status = 0};
    json_t *j;

    sem_init(&c.done, 0, 0);
    req->on_reply = on_reply;
    req->net_ctx = &c;
    actors_submit(as, req);
    while (sem_wait(&c.done) != 0)
        ;
    sem_destroy(&c.done);
    if (c.status != want_status)
        fprintf(stderr, "got %d %s\n", c.status, c.body);
    assert_int_equal(c.status, want_status);
    j = json_loads(c.body, 0, NULL);
    assert_non_null(j);
    free(c.body);
    return j;
}

static struct api_req *req_with(enum api_op op, int64_t poll, const char *token)
{
    struct api_req *req = api_req_new(op);

    snprintf(req->code, sizeof(req->code), "%s", LOAD_CODE);
    req->poll_id = poll;
    snprintf(req->token, sizeof(req->token), "%s", token);
    return req;
}

static void test_million_votes(void **state)
{
    struct store st = {.count_only = true};
    struct actor_rt *rt = actor_rt_create(2, 16);
    struct actors_config cfg = {.rt = rt, .store = &st, .sessions_max = 4};
    struct actors *as;
    const uint64_t budget_ms = LOAD_CPU_BUDGET_MS;
    uint64_t t0, rows_ms, total_ms, actors_ms;
    struct store_loader nop = {0};
    struct api_req *req;
    json_t *j;

    (void)state;
    assert_non_null(rt);
    assert_int_equal(actor_rt_start(rt), 0);
    as = actors_create(&cfg);
    assert_non_null(as);
    /* What making the rows costs, to tell it apart from the actors' part. */
    t0 = cpu_ms();
    assert_int_equal(store_load(&st, &nop), 0);
    rows_ms = cpu_ms() - t0;
    st.count_only = false;
    t0 = cpu_ms();
    assert_int_equal(actors_load(as), 0);
    total_ms = cpu_ms() - t0;
    actors_ms = total_ms > rows_ms ? total_ms - rows_ms : 0;
    printf("actors_load: 1,000,000 votes (as counts), 100,000 participants: %llu ms CPU "
           "(%llu ms of it making the rows; actors %llu ms)\n",
           (unsigned long long)total_ms, (unsigned long long)rows_ms,
           (unsigned long long)actors_ms);
    assert_true(budget_ms == 0 || actors_ms < budget_ms);
    assert_int_equal(actors_participants(as), LOAD_PARTICIPANTS);

    /* Counts: participant i chose (i + p) % 4 on poll p: 25,000 each. */
    j = call(as, req_with(API_RESULTS, poll_id(3), "presenter"), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), LOAD_PARTICIPANTS);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), LOAD_PARTICIPANTS);
    for (int o = 0; o < LOAD_OPTIONS; o++)
        assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "counts"), o)),
                         LOAD_PARTICIPANTS / LOAD_OPTIONS);
    json_decref(j);
    j = call(as, req_with(API_SESSION_GET, 0, "participant-99999"), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "participants")), LOAD_PARTICIPANTS);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 2 * LOAD_POLLS);
    json_decref(j);

    /* Votes are not in memory: a retried key goes to the store, which
     * refuses here, so the answer is 503, never an ack from a guess. */
    req = req_with(API_VOTE, poll_id(7), "participant-4242");
    snprintf(req->idem_key, sizeof(req->idem_key), "vote-4242-7");
    req->choices[0] = 0;
    req->n_choices = 1;
    j = call(as, req, 503);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "storage_unavailable");
    json_decref(j);
    /* Nor a refusal: the key might name a stored vote, which would be the
     * answer; the store must be asked first. */
    req = req_with(API_VOTE, poll_id(7), "participant-4242");
    snprintf(req->idem_key, sizeof(req->idem_key), "another");
    req->choices[0] = LOAD_OPTIONS; /* out of range */
    req->n_choices = 1;
    json_decref(call(as, req, 503));
    /* A join cannot be stored: 503, never a token that does not exist. */
    j = call(as, req_with(API_JOIN, 0, ""), 503);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "storage_unavailable");
    json_decref(j);
    actor_rt_stop(rt);
    actors_destroy(as);
    actor_rt_destroy(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_million_votes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
