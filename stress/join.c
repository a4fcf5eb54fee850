/*
 * join.c - tally-stress join: participants arriving at a rate, as a room
 * filling up before a talk.
 *
 *   tally-stress join [--participants 1000] [--rate 500] [common options]
 *
 * Every 100 ms the participants due by then (rate per second) join over
 * HTTP (POST /participants, from 127.0.0.2 and up) and open their
 * WebSocket (io_uring engine). Measured: join latency, connect latency,
 * connect-to-hello latency, the rate actually reached, errors by kind, and
 * with --server-pid the server's RSS and CPU.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base.h"
#include "stress/engine.h"
#include "stress/fanout_common.h"
#include "stress/scen.h"

#define JOIN_TICK_MS 100
#define JOIN_RATE_MAX 100000
#define JOIN_READY_BASE_S 30

struct join_run {
    struct scen_opts c;
    uint32_t n;
    unsigned rate;
    struct scen_session s;
    struct scen_joins joins;
};

static void join_usage(void)
{
    fprintf(stderr, "usage: tally-stress join [--participants N] [--rate R] [--target HOST:PORT]\n"
                    "                         [--server-pid PID] [--threads T] [--sources K]\n"
                    "                         [--json FILE] [--deadline S]\n");
    exit(2);
}

static int join_path(void *ctx, uint32_t index, char *out, size_t cap)
{
    const struct join_run *j = ctx;
    return snprintf(out, cap, "/api/v1/sessions/%s/ws?token=%s", j->s.code, j->joins.tokens[index]);
}

static void join_on_message(void *ctx, struct eng_thread *t, uint32_t index,
                            const struct wsc_frame *f, uint64_t now)
{
    /* Only hello matters here, and the engine counts it. */
    (void)ctx, (void)t, (void)index, (void)f, (void)now;
}

static void join_parse(int argc, char **argv, struct join_run *j)
{
    scen_opts_init(&j->c);
    j->n = 1000;
    j->rate = 500;
    const char *f, *v;
    int i = 2, more;
    while ((more = fo_opt_next(argc, argv, &i, &f, &v)) > 0) {
        if (scen_opts_take(&j->c, f, v))
            continue;
        if (strcmp(f, "--participants") == 0)
            j->n = fo_parse_uint(f, v, 1, ENG_CLIENTS_MAX);
        else if (strcmp(f, "--rate") == 0)
            j->rate = fo_parse_uint(f, v, 1, JOIN_RATE_MAX);
        else
            join_usage();
    }
    if (more < 0)
        join_usage();
}

static void join_report(const struct join_run *j, const struct eng_stats *es, double secs,
                        const struct scen_server *before, const struct scen_server *after)
{
    char line[256];
    uint64_t cpu = after->cpu_us > before->cpu_us ? after->cpu_us - before->cpu_us : 0;
    printf("join: %" PRIu32 " participants at %u/s: %" PRIu64 " subscribed in %.1f s (%.0f/s), "
           "%" PRIu64 " failed, %" PRIu64 " dropped, %" PRIu64 " join errors\n",
           j->n, j->rate, es->ready, secs, secs > 0 ? es->ready / secs : 0, es->failed_before_ready,
           es->dropped_after_ready, (uint64_t)j->joins.errors);
    scen_hist_line(&j->joins.lat, line, sizeof(line));
    printf("join ms (POST participants): %s\n", line);
    scen_hist_line(&es->connect_ns, line, sizeof(line));
    printf("connect ms: %s\n", line);
    scen_hist_line(&es->hello_ns, line, sizeof(line));
    printf("connect to hello ms: %s\n", line);
    scen_errors_print(es);
    if (after->known)
        printf("server: %.2f s CPU, RSS %.1f MiB\n", cpu / 1e6, after->rss / 1048576.0);
    json_t *root = json_pack(
        "{s:s,s:I,s:i,s:I,s:I,s:I,s:I,s:f,s:o,s:o,s:o,s:o,s:f,s:I,s:f}", "scenario", "join",
        "participants", (json_int_t)j->n, "rate", (int)j->rate, "subscribed", (json_int_t)es->ready,
        "connect_failed", (json_int_t)es->failed_before_ready, "dropped",
        (json_int_t)es->dropped_after_ready, "join_errors", (json_int_t)j->joins.errors, "seconds",
        secs, "join_ms", scen_hist_json(&j->joins.lat), "connect_ms",
        scen_hist_json(&es->connect_ns), "hello_ms", scen_hist_json(&es->hello_ns), "errors",
        scen_errors_json(es), "server_cpu_s", cpu / 1e6, "server_rss", (json_int_t)after->rss,
        "client_cpu_s", scen_self_cpu_s());
    scen_json_write(j->c.json_path, root);
}

/** Runs `tally-stress join`; returns the process exit code. */
int join_main(int argc, char **argv);

int join_main(int argc, char **argv)
{
    static struct join_run j;
    static struct eng_stats es;
    join_parse(argc, argv, &j);
    scen_deadline_arm(j.c.deadline_s ? j.c.deadline_s : j.n / j.rate + SCEN_DEADLINE_SLACK_S);
    if (scen_session_create(&j.c, "join", &j.s) < 0)
        return 1;
    scen_joins_init(&j.joins, j.n);
    unsigned sources = j.c.sources > j.n / 20000 + 1 ? j.c.sources : j.n / 20000 + 1;
    const struct eng_config cfg = {
        .host = j.c.host,
        .port = j.c.port,
        .max_clients = j.n,
        .threads = j.c.threads,
        .sources = sources,
        .proto = j.c.proto,
        .path = join_path,
        .on_message = join_on_message,
        .ctx = &j,
    };
    struct eng *e = eng_start(&cfg);
    if (e == NULL)
        return 1;
    struct scen_server before = scen_server_sample(j.c.server_pid);
    uint64_t t0 = fo_now_ns();
    int rc = 0;
    while (j.joins.n < j.n && rc == 0) {
        uint64_t due = (fo_now_ns() - t0) * j.rate / 1000000000ull + 1;
        rc = scen_join(&j.c, &j.s, &j.joins, due < j.n ? (uint32_t)due : j.n);
        eng_open(e, j.joins.n);
        fo_sleep_ms(JOIN_TICK_MS);
    }
    eng_wait_ready(e, JOIN_READY_BASE_S);
    double secs = (fo_now_ns() - t0) / 1e9;
    struct scen_server after = scen_server_sample(j.c.server_pid);
    eng_stop(e, &es);
    join_report(&j, &es, secs, &before, &after);
    scen_joins_free(&j.joins);
    return rc == 0 && es.ready == j.n && es.dropped_after_ready == 0 ? 0 : 1;
}
