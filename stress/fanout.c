/*
 * fanout.c - tally-stress fanout: how results fan out to many idle
 * WebSocket subscribers while votes arrive.
 *
 *   tally-stress fanout [--target 127.0.0.1:8080] [--subscribers 1000] [--seconds 10]
 *                       [--rate 200] [--server-pid PID] [--threads 2] [--sources 8]
 *                       [--json FILE] [--deadline S]
 *
 * Setup joins rate x seconds voters and N subscribers to one session over
 * HTTP (from 127.0.0.2 and up); the N subscribers connect as WebSocket
 * clients through the io_uring engine (engine.h) and wait for hello; the
 * server's RSS before and after gives bytes per idle connection. Then a
 * fresh 4-option poll opens and the voters post one vote each at R/s over
 * HTTP; each subscriber's results messages are charged to the votes they
 * newly reflect (fan.h). Every phase has a timeout; the whole run is
 * bounded by --deadline (default: the planned length plus 10 minutes).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base.h"
#include "stress/fan.h"
#include "stress/fanout_common.h"
#include "stress/scen.h"

#define FANOUT_RATE_MAX 20000
#define FANOUT_SECONDS_MAX 600

struct fanout_opts {
    struct scen_opts c;
    uint32_t subscribers;
    unsigned seconds;
    unsigned rate;
};

static void fanout_usage(void)
{
    fprintf(stderr,
            "usage: tally-stress fanout [--target HOST:PORT] [--subscribers N] [--seconds S]\n"
            "                           [--rate R] [--server-pid PID] [--threads T]\n"
            "                           [--sources K] [--json FILE] [--deadline S]\n");
    exit(2);
}

static void fanout_parse(int argc, char **argv, struct fanout_opts *o)
{
    scen_opts_init(&o->c);
    o->subscribers = 1000;
    o->seconds = 10;
    o->rate = 200;
    const char *f, *v;
    int i = 2, more;
    while ((more = fo_opt_next(argc, argv, &i, &f, &v)) > 0) {
        if (scen_opts_take(&o->c, f, v))
            continue;
        if (strcmp(f, "--subscribers") == 0)
            o->subscribers = fo_parse_uint(f, v, 1, ENG_CLIENTS_MAX);
        else if (strcmp(f, "--seconds") == 0)
            o->seconds = fo_parse_uint(f, v, 1, FANOUT_SECONDS_MAX);
        else if (strcmp(f, "--rate") == 0)
            o->rate = fo_parse_uint(f, v, 1, FANOUT_RATE_MAX);
        else
            fanout_usage();
    }
    if (more < 0)
        fanout_usage();
}

static double bytes_per_conn(const struct fan_step *st)
{
    return st->rss_idle > st->rss_joined && st->subscribers
               ? (double)(st->rss_idle - st->rss_joined) / st->subscribers
               : 0;
}

static void fanout_json(const struct fanout_opts *o, const struct fan_step *st,
                        const struct eng_stats *es, const struct hist *join_lat)
{
    double rate = st->run_s > 0 ? (double)st->delivered / st->run_s : 0;
    uint64_t cpu = st->after.cpu_us > st->before.cpu_us ? st->after.cpu_us - st->before.cpu_us : 0;
    json_t *lat = scen_hist_json(&st->lat);
    json_t *root = json_pack(
        "{s:s,s:i,s:i,s:i,s:f,s:I,s:I,s:I,s:I,s:f,s:I,s:I,s:o,s:o,s:o,s:o,s:f,s:f,s:f,s:I,s:I,"
        "s:I,s:I,s:I,s:f,s:o}",
        "scenario", "fanout", "subscribers", (int)o->subscribers, "seconds", (int)o->seconds,
        "rate", (int)o->rate, "run_s", st->run_s, "votes_acked", (json_int_t)st->votes_acked,
        "vote_errors", (json_int_t)st->vote_errors, "vote_other", (json_int_t)st->vote_refused,
        "delivered", (json_int_t)st->delivered, "delivered_per_s", rate, "unmatched",
        (json_int_t)st->unmatched, "stale", (json_int_t)st->stale, "latency_ms", lat, "vote_ack_ms",
        scen_hist_json(&st->ack), "join_ms", scen_hist_json(join_lat), "hello_ms",
        scen_hist_json(&es->hello_ns), "server_cpu_ms", cpu / 1e3, "cpu_us_per_msg",
        st->delivered ? (double)cpu / (double)st->delivered : 0.0, "bytes_per_idle_conn",
        bytes_per_conn(st), "rss_before", (json_int_t)st->rss_joined, "rss_idle",
        (json_int_t)st->rss_idle, "connect_errors", (json_int_t)st->connect_failed,
        "missing_hellos", (json_int_t)(o->subscribers - st->subscribers), "dropped",
        (json_int_t)st->dropped, "hello_s", st->connect_s, "errors", scen_errors_json(es));
    json_object_set_new(root, "connect_ms", scen_hist_json(&es->connect_ns));
    json_object_set_new(root, "newest_ms", scen_hist_json(&st->newest));
    json_object_set_new(root, "from_send_ms", scen_hist_json(&st->from_send));
    json_object_set_new(root, "before_ack", json_integer((json_int_t)st->before_ack));
    json_object_set_new(root, "client_cpu_s", json_real(scen_self_cpu_s()));
    scen_json_write(o->c.json_path, root);
}

static void fanout_report(const struct fanout_opts *o, const struct fan_step *st,
                          const struct eng_stats *es, const struct hist *join_lat)
{
    char line[256];
    double rate = st->run_s > 0 ? (double)st->delivered / st->run_s : 0;
    uint64_t cpu = st->after.cpu_us > st->before.cpu_us ? st->after.cpu_us - st->before.cpu_us : 0;
    scen_hist_line(join_lat, line, sizeof(line));
    printf("join ms: %s\n", line);
    scen_hist_line(&es->hello_ns, line, sizeof(line));
    printf("connect to hello ms: %s\n", line);
    printf("fanout: %u subscribers (%u hello in %.1f s), %" PRIu64 " connect errors, %u missing "
           "hellos, %" PRIu64 " dropped\n",
           o->subscribers, st->subscribers, st->connect_s, st->connect_failed,
           o->subscribers - st->subscribers, st->dropped);
    if (o->c.server_pid)
        printf("server RSS: %.1f MiB joined, %.1f MiB idle-connected: %.0f bytes per idle "
               "connection\n",
               st->rss_joined / 1048576.0, st->rss_idle / 1048576.0, bytes_per_conn(st));
    printf("votes: %u/s for %u s: %" PRIu64 " acknowledged, %" PRIu64 " transport errors, %" PRIu64
           " other answers\n",
           o->rate, o->seconds, st->votes_acked, st->vote_errors, st->vote_refused);
    printf("delivered: %" PRIu64 " results messages in %.1f s (%.0f messages/s), %" PRIu64
           " stale, %" PRIu64 " before their vote's ack\n",
           st->delivered, st->run_s, rate, st->stale, st->before_ack);
    scen_hist_line(&st->lat, line, sizeof(line));
    printf("delivery latency ms (vote acked -> results, sampled): %s\n", line);
    scen_hist_line(&st->from_send, line, sizeof(line));
    printf("delivery latency ms (vote sent -> results, sampled): %s\n", line);
    scen_hist_line(&st->newest, line, sizeof(line));
    printf("freshness ms (newest vote in each results sent -> results): %s\n", line);
    scen_hist_line(&st->ack, line, sizeof(line));
    printf("vote ack latency ms (HTTP): %s\n", line);
    if (o->c.server_pid)
        printf("server CPU over the run: %.1f ms, %.2f us per delivered message\n", cpu / 1e3,
               st->delivered ? (double)cpu / (double)st->delivered : 0.0);
    scen_errors_print(es);
    printf("tally-stress CPU: %.1f s over the whole run\n", scen_self_cpu_s());
    fanout_json(o, st, es, join_lat);
}

/** Runs `tally-stress fanout`; returns the process exit code. */
int fanout_main(int argc, char **argv);

int fanout_main(int argc, char **argv)
{
    static struct fanout_opts o;
    static struct fan_step st;
    static struct eng_stats es;
    fanout_parse(argc, argv, &o);
    scen_deadline_arm(o.c.deadline_s ? o.c.deadline_s
                                     : o.seconds + o.subscribers / 500 + SCEN_DEADLINE_SLACK_S);
    struct fan *f = fan_create(&o.c, o.subscribers, o.rate, o.seconds);
    int rc = fan_grow(f, o.subscribers, &st);
    printf("joined: %u participants in %.1f s; connected: %u of %u subscribers got hello in "
           "%.1f s (%u engine threads)\n",
           fan_joins(f)->n + o.rate * o.seconds, fan_joins(f)->seconds, st.subscribers,
           o.subscribers, st.connect_s, fan_threads(f));
    fflush(stdout);
    if (rc == 0)
        rc = fan_measure(f, &st);
    static struct hist join_lat;
    join_lat = fan_joins(f)->lat;
    fan_destroy(f, &es);
    fanout_report(&o, &st, &es, &join_lat);
    bool clean = rc == 0 && st.subscribers == o.subscribers && st.dropped == 0 &&
                 st.votes_acked == st.votes_planned;
    return clean ? 0 : 1;
}
