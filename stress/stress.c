/*
 * stress.c - tally-stress: load generator for tallyd.
 *
 *   tally-stress votes [--target 127.0.0.1:8080] [--clients 64] [--seconds 10]
 *                      [--participants-per-client 64] [--blocking 0|1] [--json FILE]
 *
 * "votes": creates a session, joins participants (each client from its own
 * loopback source address 127.0.0.(2+i), so the per-address join limit is
 * not what is measured), creates and opens enough single-choice polls, then
 * `clients` keep-alive HTTP connections vote back to back for `seconds`,
 * each vote a new (participant, poll) pair with its own Idempotency-Key.
 * The connections are driven by io_uring from STRESS_VOTE_THREADS threads
 * (hvotes.c); `--blocking 1` uses one blocking thread per client instead,
 * which costs tallyd a thread wake-up per answer. Prints durable votes/s and
 * the ack latency percentiles; every 201 counted is a vote committed by
 * PostgreSQL before the answer.
 *
 *   tally-stress fanout [--target 127.0.0.1:PORT] [--subscribers N] [--seconds S]
 *                       [--rate R] [--server-pid PID] [--threads T] [--json FILE]
 *
 * "fanout" (fanout.c): N idle WebSocket subscribers of one session while
 * votes arrive at R/s; prints delivered results messages/s, delivery
 * latency, server bytes per idle connection and CPU per message.
 *
 *   tally-stress fanout-nchan --target 127.0.0.1:PORT --subscribers N --seconds S
 *                             [--rate M] [--bytes B] [--channel NAME]
 *                             [--server-pid MASTER] [--threads T] [--json FILE]
 *
 * "fanout-nchan" (fanout_nchan.c): the same fan-out load against nginx +
 * nchan, for a comparison at equal N, message size and rate.
 *
 *   tally-stress rawpg --conninfo STR [--connections 4] [--batch 1000] [--seconds 10]
 *
 * "rawpg" (rawpg.c): tallyd's vote INSERT run straight against PostgreSQL,
 * the storage baseline the votes figures are compared with.
 *
 *   tally-stress wsvotes [--clients 64] [--seconds 10] [--participants-per-client M]
 *                        [--polls P] [common options]
 *
 * "wsvotes" (wsvotes.c): the same back-to-back durable votes over WebSocket.
 *
 * "burst" (burst.c), "capacity" (capacity.c), "join" (join.c), "resume" and
 * "soak" (mix.c) and "fanout" drive WebSocket clients through the io_uring
 * engine (engine.c); docs/stress.md describes every subcommand, its flags
 * and its JSON.
 *
 * Every run is bounded in time and talks only to the given target.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/base.h"
#include "stress/fanout_common.h"
#include "stress/hist.h"
#include "stress/httpc.h"
#include "stress/hvotes.h"

#define STRESS_CLIENTS_MAX 4096 /* sockets of the io_uring voters, well under the fd limit */
#define STRESS_PPC_MAX 1024
#define STRESS_VOTE_THREADS 2 /* rings of the io_uring voters: one per core here */

struct opts {
    char host[64];
    uint16_t port;
    unsigned clients;
    unsigned seconds;
    unsigned ppc;  /* participants per client */
    bool blocking; /* a blocking thread per client instead of the io_uring voters */
    const char *json_path;
};

struct client {
    pthread_t tid;
    unsigned index;
    const struct opts *o;
    char (*tokens)[HVOTES_TOKEN_MAX];
    unsigned n_tokens;
    const int64_t *polls;
    unsigned n_polls;
    uint64_t deadline_ns;
    struct hist hist;
    uint64_t ok, errors, other;
    uint64_t by_status[6]; /* other answers by status class: 1xx..5xx */
};

/* Defined in fanout.c: parses its own options from argv[2]. */
int fanout_main(int argc, char **argv);
/* Defined in fanout_nchan.c: the same fan-out load against nginx + nchan. */
int fanout_nchan_main(int argc, char **argv);
/* Defined in burst.c: the vote burst over WebSocket. */
int burst_main(int argc, char **argv);
/* Defined in capacity.c: steps N up until the latency or error limit. */
int capacity_main(int argc, char **argv);
/* Defined in mix.c: subscribers dropping and resuming while polls cycle (resume, soak). */
int mix_main(int argc, char **argv);
/* Defined in join.c: participants joining and subscribing at a rate. */
int join_main(int argc, char **argv);
/* Defined in rawpg.c: raw batched inserts into PostgreSQL, the storage baseline. */
int rawpg_main(int argc, char **argv);
/* Defined in wsvotes.c: votes back to back over WebSocket, the counterpart of "votes". */
int wsvotes_main(int argc, char **argv);

static void usage(void)
{
    fprintf(stderr,
            "usage: tally-stress votes [--target HOST:PORT] [--clients N] [--seconds S]\n"
            "                          [--participants-per-client N] [--blocking 0|1]\n"
            "                          [--json FILE]\n"
            "       tally-stress fanout [--subscribers N] [--seconds S] [--rate R]"
            " [common options]\n"
            "       tally-stress fanout-nchan --target HOST:PORT --subscribers N --seconds S\n"
            "                                 [--rate M] [--bytes B] [--channel NAME]\n"
            "                                 [--server-pid MASTER] [--threads T]"
            " [--json FILE]\n"
            "       tally-stress rawpg --conninfo STR [--connections N] [--batch N] [--seconds S]\n"
            "       tally-stress wsvotes [--clients N] [--seconds S] [--participants-per-client M]\n"
            "                            [--polls P] [common options]\n"
            "       tally-stress burst [--participants N] [--window S] [common options]\n"
            "       tally-stress capacity [--start N] [--step N] [--factor PCT] [--max N]\n"
            "                             [--seconds S] [--rate R] [--p95-ms MS] [--error-limit F]\n"
            "                             [--retries N] [--out DIR] [--figure PATH]\n"
            "                             [--machine TEXT] [common options]\n"
            "       tally-stress join [--participants N] [--rate R] [common options]\n"
            "       tally-stress resume|soak [--participants N] [--seconds S | --minutes M]\n"
            "                                [--cycle S] [--drop-share PCT] [--votes 0|1]\n"
            "                                [common options]\n"
            "common options (fanout, burst, capacity, join, resume, soak, wsvotes):"
            " [--target HOST:PORT]\n"
            "       [--threads T] [--sources K] [--server-pid PID] [--json FILE]\n"
            "       [--proto json|msgpack|sse] [--deadline S]\n"
            "see docs/stress.md\n");
    exit(2);
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    o->port = 8080;
    o->clients = 64;
    o->seconds = 10;
    o->ppc = 64;
    const char *f, *v;
    int i = 2, more;
    while ((more = fo_opt_next(argc, argv, &i, &f, &v)) > 0) {
        if (strcmp(f, "--target") == 0) {
            if (fo_parse_target(v, o->host, sizeof(o->host), &o->port) < 0)
                usage();
        } else if (strcmp(f, "--clients") == 0) {
            o->clients = fo_parse_uint(f, v, 1, STRESS_CLIENTS_MAX);
        } else if (strcmp(f, "--seconds") == 0) {
            o->seconds = fo_parse_uint(f, v, 1, 3600);
        } else if (strcmp(f, "--participants-per-client") == 0) {
            o->ppc = fo_parse_uint(f, v, 1, STRESS_PPC_MAX);
        } else if (strcmp(f, "--blocking") == 0) {
            o->blocking = fo_parse_uint(f, v, 0, 1) == 1;
        } else if (strcmp(f, "--json") == 0) {
            o->json_path = v;
        } else {
            usage();
        }
    }
    if (more < 0)
        usage();
}

/* Sends one JSON request and returns the parsed answer (NULL on failure). */
static json_t *call(struct httpc *h, const char *method, const char *path, const char *token,
                    const char *body, int *status)
{
    struct httpc_resp r;
    if (httpc_request(h, method, path, token, NULL, body, &r) < 0)
        return NULL;
    *status = r.status;
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    return j;
}

static void die(const char *what, int status)
{
    fprintf(stderr, "tally-stress: %s failed (status %d)\n", what, status);
    exit(1);
}

static void source_addr(unsigned i, char *out, size_t len)
{
    snprintf(out, len, "127.0.%u.%u", i / 250, 2 + i % 250);
}

/* Creates the session and polls; returns the presenter token. */
static char *setup_session(struct httpc *h, char *code, int64_t *polls, unsigned n_polls)
{
    int st = 0;
    json_t *j = call(h, "POST", "/api/v1/sessions", NULL, "{\"title\":\"vote benchmark\"}", &st);
    if (!j || st != 201)
        die("create session", st);
    char *ptok = xstrdup(json_string_value(json_object_get(j, "presenter_token")));
    snprintf(code, 8, "%s", json_string_value(json_object_get(json_object_get(j, "session"), "code")));
    json_decref(j);
    char path[128];
    for (unsigned i = 0; i < n_polls; i++) {
        snprintf(path, sizeof(path), "/api/v1/sessions/%s/polls", code);
        j = call(h, "POST", path, ptok,
                 "{\"question\":\"Which?\",\"kind\":\"single\",\"options\":[\"A\",\"B\",\"C\"]}", &st);
        if (!j || st != 201)
            die("create poll", st);
        polls[i] = json_integer_value(json_object_get(json_object_get(j, "poll"), "id"));
        json_decref(j);
        snprintf(path, sizeof(path), "/api/v1/polls/%" PRId64 "/open", polls[i]);
        j = call(h, "POST", path, ptok, NULL, &st);
        if (!j || st != 200)
            die("open poll", st);
        json_decref(j);
    }
    return ptok;
}

static void join_all(struct client *c, const char *code)
{
    char src[64], path[128];
    source_addr(c->index, src, sizeof(src));
    struct httpc *h = xmalloc(sizeof(*h));
    httpc_init(h, c->o->host, c->o->port, src);
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/participants", code);
    for (unsigned i = 0; i < c->n_tokens; i++) {
        int st = 0;
        json_t *j = call(h, "POST", path, NULL, "{}", &st);
        if (!j || st != 201)
            die("join", st);
        snprintf(c->tokens[i], sizeof(c->tokens[i]), "%s",
                 json_string_value(json_object_get(j, "participant_token")));
        json_decref(j);
    }
    httpc_close(h);
    free(h);
}

static void *vote_worker(void *arg)
{
    struct client *c = arg;
    char src[64], path[128], key[64];
    source_addr(c->index, src, sizeof(src));
    struct httpc *h = xmalloc(sizeof(*h));
    httpc_init(h, c->o->host, c->o->port, src);
    hist_init(&c->hist);
    for (unsigned p = 0; p < c->n_polls; p++) {
        snprintf(path, sizeof(path), "/api/v1/polls/%" PRId64 "/votes", c->polls[p]);
        for (unsigned i = 0; i < c->n_tokens; i++) {
            if (fo_now_ns() >= c->deadline_ns)
                goto done;
            snprintf(key, sizeof(key), "k-%u-%u-%u", c->index, p, i);
            struct httpc_resp r;
            uint64_t t0 = fo_now_ns();
            int rc = httpc_request(h, "POST", path, c->tokens[i], key, "{\"choice\":[1]}", &r);
            uint64_t dt = fo_now_ns() - t0;
            if (rc < 0)
                c->errors++;
            else if (r.status == 201) {
                c->ok++;
                hist_add(&c->hist, dt);
            } else {
                c->other++;
                c->by_status[r.status / 100 < 6 ? r.status / 100 : 0]++;
            }
        }
    }
done:
    httpc_close(h);
    free(h);
    return NULL;
}

static void *join_worker(void *arg)
{
    struct client *c = arg;
    join_all(c, (const char *)c->polls);
    return NULL;
}

static void report(const struct opts *o, const struct hist *h, uint64_t ok, uint64_t errors,
                   uint64_t other, double secs)
{
    double rate = (double)ok / secs;
    printf("votes: %u clients, %.1f s: %" PRIu64 " acknowledged (%.0f votes/s), "
           "%" PRIu64 " transport errors, %" PRIu64 " other answers\n",
           o->clients, secs, ok, rate, errors, other);
    printf("ack latency ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
           hist_quantile(h, 0.50) / 1e6, hist_quantile(h, 0.90) / 1e6,
           hist_quantile(h, 0.99) / 1e6, hist_quantile(h, 0.999) / 1e6, h->max / 1e6);
    if (o->json_path) {
        FILE *f = fopen(o->json_path, "w");
        if (f == NULL) {
            perror(o->json_path);
            return;
        }
        fprintf(f,
                "{\"scenario\":\"votes\",\"clients\":%u,\"seconds\":%.3f,\"acked\":%" PRIu64
                ",\"votes_per_s\":%.1f,\"errors\":%" PRIu64 ",\"other\":%" PRIu64
                ",\"ack_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}}\n",
                o->clients, secs, ok, rate, errors, other, hist_quantile(h, 0.5) / 1e6,
                hist_quantile(h, 0.9) / 1e6, hist_quantile(h, 0.99) / 1e6,
                hist_quantile(h, 0.999) / 1e6, h->max / 1e6);
        fclose(f);
    }
}

/* The blocking voters (--blocking 1): one thread per client, for comparison. */
static void vote_blocking(struct client *cs, const struct opts *o, struct hvotes_result *r)
{
    for (unsigned i = 0; i < o->clients; i++)
        pthread_create(&cs[i].tid, NULL, vote_worker, &cs[i]);
    for (unsigned i = 0; i < o->clients; i++) {
        pthread_join(cs[i].tid, NULL);
        for (unsigned k = 0; k < 6; k++)
            r->by_status[k] += cs[i].by_status[k];
        hist_merge(&r->hist, &cs[i].hist);
        r->ok += cs[i].ok;
        r->errors += cs[i].errors;
        r->other += cs[i].other;
    }
}

/* The io_uring voters: STRESS_VOTE_THREADS rings drive every client's connection. */
static void vote_uring(const struct client *cs, const struct opts *o, struct hvotes_result *r)
{
    struct hvotes_voter *vs = xcalloc(o->clients, sizeof(*vs));
    for (unsigned i = 0; i < o->clients; i++) {
        vs[i].index = cs[i].index;
        source_addr(cs[i].index, vs[i].source, sizeof(vs[i].source));
        vs[i].tokens = cs[i].tokens;
        vs[i].n_tokens = cs[i].n_tokens;
    }
    struct hvotes_config cfg = {
        .host = o->host,
        .port = o->port,
        .voters = vs,
        .n_voters = o->clients,
        .polls = cs[0].polls,
        .n_polls = cs[0].n_polls,
        .threads = STRESS_VOTE_THREADS,
        .deadline_ns = cs[0].deadline_ns,
    };
    int rc = hvotes_run(&cfg, r);
    if (rc < 0) {
        fprintf(stderr, "tally-stress: io_uring voters: %s\n", strerror(-rc));
        exit(1);
    }
    free(vs);
}

static int run_votes(const struct opts *o)
{
    unsigned per_round = o->clients * o->ppc;
    unsigned n_polls = (unsigned)(((uint64_t)o->seconds * 40000 + per_round - 1) / per_round);
    if (n_polls > 900)
        n_polls = 900;
    int64_t *polls = xcalloc(n_polls, sizeof(*polls));
    char code[8];
    struct httpc *h = xmalloc(sizeof(*h));
    httpc_init(h, o->host, o->port, NULL);
    char *ptok = setup_session(h, code, polls, n_polls);
    httpc_close(h);
    free(h);

    struct client *cs = xcalloc(o->clients, sizeof(*cs));
    for (unsigned i = 0; i < o->clients; i++) {
        cs[i].index = i;
        cs[i].o = o;
        cs[i].n_tokens = o->ppc;
        cs[i].tokens = xcalloc(o->ppc, sizeof(*cs[i].tokens));
        cs[i].polls = (const int64_t *)code; /* join_worker reads the code from here */
        pthread_create(&cs[i].tid, NULL, join_worker, &cs[i]);
    }
    for (unsigned i = 0; i < o->clients; i++)
        pthread_join(cs[i].tid, NULL);
    printf("setup: session %s, %u polls, %u participants\n", code, n_polls, per_round);
    fflush(stdout); /* a benchmark reading this line starts measuring at it */

    uint64_t t0 = fo_now_ns();
    for (unsigned i = 0; i < o->clients; i++) {
        cs[i].polls = polls;
        cs[i].n_polls = n_polls;
        cs[i].deadline_ns = t0 + (uint64_t)o->seconds * 1000000000ull;
    }
    struct hvotes_result *r = xcalloc(1, sizeof(*r));
    hist_init(&r->hist);
    if (o->blocking)
        vote_blocking(cs, o, r);
    else
        vote_uring(cs, o, r);
    double secs = (double)(fo_now_ns() - t0) / 1e9;
    report(o, &r->hist, r->ok, r->errors, r->other, secs);
    if (r->other)
        printf("other answers by class: 2xx %" PRIu64 ", 3xx %" PRIu64 ", 4xx %" PRIu64
               ", 5xx %" PRIu64 "\n",
               r->by_status[2], r->by_status[3], r->by_status[4], r->by_status[5]);
    int rc = r->errors || r->other ? 1 : 0;
    for (unsigned i = 0; i < o->clients; i++)
        free(cs[i].tokens);
    free(r);
    free(cs);
    free(polls);
    free(ptok);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    struct opts o;
    memset(&o, 0, sizeof(o));
    if (strcmp(argv[1], "votes") == 0) {
        parse_opts(argc, argv, &o);
        return run_votes(&o);
    }
    if (strcmp(argv[1], "fanout") == 0)
        return fanout_main(argc, argv);
    if (strcmp(argv[1], "fanout-nchan") == 0)
        return fanout_nchan_main(argc, argv);
    if (strcmp(argv[1], "burst") == 0)
        return burst_main(argc, argv);
    if (strcmp(argv[1], "capacity") == 0)
        return capacity_main(argc, argv);
    if (strcmp(argv[1], "resume") == 0 || strcmp(argv[1], "soak") == 0)
        return mix_main(argc, argv);
    if (strcmp(argv[1], "join") == 0)
        return join_main(argc, argv);
    if (strcmp(argv[1], "rawpg") == 0)
        return rawpg_main(argc, argv);
    if (strcmp(argv[1], "wsvotes") == 0)
        return wsvotes_main(argc, argv);
    usage();
    return 2;
}
