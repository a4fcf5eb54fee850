/*
 * capacity.c - tally-stress capacity: how many participants this instance
 * holds within the latency promise.
 *
 *   tally-stress capacity [--target 127.0.0.1:8080] [--start 2000] [--step 0]
 *                         [--factor 150] [--max 100000] [--seconds 10] [--rate 200]
 *                         [--p95-ms 100] [--error-limit 0.001] [--out build/capacity]
 *                         [--figure ./var/capacity.json] [--machine TEXT]
 *                         [--retries 1] [--server-pid PID] [--threads 2] [--sources 8]
 *                         [--json FILE] [--deadline S]
 *
 * Steps N up (N + step, or N x factor/100 when step is 0) and at each N
 * runs the fan-out measurement (fan.h): N idle WebSocket subscribers, votes
 * at --rate over HTTP on a fresh poll, results delivery latency at every
 * subscriber. Stops at the first step whose p95 exceeds --p95-ms or whose
 * errors (failed or dropped subscribers, failed or refused votes,
 * subscribers still behind after the drain) exceed --error-limit of the
 * attempts (a step over a limit is measured again --retries times first:
 * the machine may stall for a moment); the figure is the last N that
 * passed. Writes the report
 * (report.h: capacity.svg, capacity.html, capacity.json under --out) and
 * the figure tallyd reads at start (--figure).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <jansson.h>

#include "core/base.h"
#include "stress/fan.h"
#include "stress/fanout_common.h"
#include "stress/scen.h"
#include "stress/track.h"
#ifdef TALLY_STRESS_HAVE_REPORT
#include "stress/report.h"
#endif

#define CAP_STEPS_MAX 64
#define CAP_TEXT_MAX 160

struct cap_opts {
    struct scen_opts c;
    uint32_t start, step, factor_pct, max;
    unsigned seconds, rate;
    unsigned retries; /* a step over a limit is measured again this many times */
    struct track_limits lim;
    const char *out_dir;
    const char *figure;
    char machine[CAP_TEXT_MAX];
};

/* What a step measured, in the report's terms. */
struct cap_step {
    uint32_t participants;
    double p50, p90, p95, p99, p999, max;
    double error_rate, cpu_pct, rss_mb;
    uint64_t delivered, errors, attempts;
};

static void cap_usage(void)
{
    fprintf(
        stderr,
        "usage: tally-stress capacity [--target HOST:PORT] [--start N] [--step N] [--factor PCT]\n"
        "                             [--max N] [--seconds S] [--rate R] [--p95-ms MS]\n"
        "                             [--error-limit F] [--out DIR] [--figure PATH]\n"
        "                             [--machine TEXT] [--retries N] [--server-pid PID]\n"
        "                             [--threads T]\n"
        "                             [--sources K] [--json FILE] [--deadline S]\n");
    exit(2);
}

static double parse_double(const char *flag, const char *v, double lo, double hi)
{
    char *end;
    double x = strtod(v, &end);
    if (*v == '\0' || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "tally-stress: invalid %s '%s': expected %g..%g\n", flag, v, lo, hi);
        exit(2);
    }
    return x;
}

static void default_machine(char *out, size_t cap)
{
    struct utsname u;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGE_SIZE);
    double gib = pages > 0 && psize > 0 ? (double)pages * (double)psize / 1073741824.0 : 0;
    if (uname(&u) < 0)
        snprintf(u.release, sizeof(u.release), "?");
    snprintf(out, cap, "%ld cores, %.0f GiB, Linux %s", sysconf(_SC_NPROCESSORS_ONLN), gib,
             u.release);
}

static bool cap_take(struct cap_opts *o, const char *f, const char *v)
{
    if (strcmp(f, "--start") == 0)
        o->start = fo_parse_uint(f, v, 1, ENG_CLIENTS_MAX);
    else if (strcmp(f, "--step") == 0)
        o->step = fo_parse_uint(f, v, 0, ENG_CLIENTS_MAX);
    else if (strcmp(f, "--factor") == 0)
        o->factor_pct = fo_parse_uint(f, v, 101, 1000);
    else if (strcmp(f, "--max") == 0)
        o->max = fo_parse_uint(f, v, 1, ENG_CLIENTS_MAX);
    else if (strcmp(f, "--seconds") == 0)
        o->seconds = fo_parse_uint(f, v, 1, 600);
    else if (strcmp(f, "--rate") == 0)
        o->rate = fo_parse_uint(f, v, 1, 20000);
    else if (strcmp(f, "--p95-ms") == 0)
        o->lim.p95_ms = parse_double(f, v, 0.001, 1e6);
    else if (strcmp(f, "--error-limit") == 0)
        o->lim.error_rate = parse_double(f, v, 0, 1);
    else if (strcmp(f, "--out") == 0)
        o->out_dir = v;
    else if (strcmp(f, "--figure") == 0)
        o->figure = v;
    else if (strcmp(f, "--retries") == 0)
        o->retries = fo_parse_uint(f, v, 0, 5);
    else if (strcmp(f, "--machine") == 0)
        snprintf(o->machine, sizeof(o->machine), "%s", v);
    else
        return false;
    return true;
}

static void cap_parse(int argc, char **argv, struct cap_opts *o)
{
    scen_opts_init(&o->c);
    o->start = 2000;
    o->factor_pct = 150;
    o->max = 100000;
    o->seconds = 10;
    o->rate = 200;
    o->retries = 1;
    o->lim = (struct track_limits){.p95_ms = 100, .error_rate = 0.001};
    o->out_dir = "build/capacity";
    o->figure = "./var/capacity.json";
    default_machine(o->machine, sizeof(o->machine));
    const char *f, *v;
    int i = 2, more;
    while ((more = fo_opt_next(argc, argv, &i, &f, &v)) > 0)
        if (!scen_opts_take(&o->c, f, v) && !cap_take(o, f, v))
            cap_usage();
    if (more < 0 || o->start > o->max)
        cap_usage();
}

static void cap_from(const struct fan_step *st, struct cap_step *cs)
{
    const struct hist *h = &st->lat;
    cs->participants = st->subscribers;
    cs->p50 = hist_quantile(h, 0.50) / 1e6;
    cs->p90 = hist_quantile(h, 0.90) / 1e6;
    cs->p95 = hist_quantile(h, 0.95) / 1e6;
    cs->p99 = hist_quantile(h, 0.99) / 1e6;
    cs->p999 = hist_quantile(h, 0.999) / 1e6;
    cs->max = (double)h->max / 1e6;
    cs->delivered = st->delivered;
    cs->errors = st->connect_failed + st->dropped + st->vote_errors + st->vote_refused + st->behind;
    cs->attempts = st->subscribers + st->connect_failed + st->votes_planned;
    cs->error_rate = cs->attempts ? (double)cs->errors / (double)cs->attempts : 1.0;
    uint64_t cpu = st->after.cpu_us > st->before.cpu_us ? st->after.cpu_us - st->before.cpu_us : 0;
    cs->cpu_pct = st->after.known && st->run_s > 0 ? (double)cpu / 1e4 / st->run_s : -1;
    cs->rss_mb = st->after.known ? st->after.rss / 1048576.0 : -1;
}

static void cap_print_step(unsigned k, const struct fan_step *st, const struct cap_step *cs,
                           bool pass)
{
    printf("step %u: %" PRIu32 " subscribers (hello in %.1f s): results p50 %.1f p90 %.1f p95 %.1f "
           "p99 %.1f p99.9 %.1f max %.1f ms, %" PRIu64 " delivered; votes %" PRIu64 "/%" PRIu64
           " acked (ack p50 %.1f ms); errors %" PRIu64 "/%" PRIu64 " (%.3f%%: %" PRIu64
           " connect, %" PRIu64 " dropped, %" PRIu64 " vote, %" PRIu64 " behind); from the vote "
           "going out p95 %.1f ms; server CPU %.0f%%, RSS %.0f MiB -> %s\n",
           k, cs->participants, st->connect_s, cs->p50, cs->p90, cs->p95, cs->p99, cs->p999,
           cs->max, cs->delivered, st->votes_acked, st->votes_planned,
           hist_quantile(&st->ack, 0.5) / 1e6, cs->errors, cs->attempts, cs->error_rate * 100,
           st->connect_failed, st->dropped, st->vote_errors + st->vote_refused, st->behind,
           hist_quantile(&st->from_send, 0.95) / 1e6, cs->cpu_pct, cs->rss_mb,
           pass ? "pass" : "limit");
    fflush(stdout);
}

/* The run's outcome: the figure, why the search stopped, and every step. */
struct cap_result {
    struct cap_step steps[CAP_STEPS_MAX];
    size_t n;
    uint32_t figure;
    double figure_p95;
    char reason[CAP_TEXT_MAX];
};

/* Steps N up until a step fails a limit, --max is passed, or CAP_STEPS_MAX steps ran. */
static void cap_search(const struct cap_opts *o, struct fan *f, struct cap_result *res)
{
    static struct fan_step st;
    uint32_t n = o->start;
    snprintf(res->reason, sizeof(res->reason), "reached --max %" PRIu32 " within the limits",
             o->max);
    unsigned retried = 0;
    while (n > 0 && res->n < CAP_STEPS_MAX) {
        memset(&st, 0, sizeof(st));
        struct cap_step *cs = &res->steps[res->n];
        if (fan_grow(f, n, &st) < 0 || fan_measure(f, &st) < 0) {
            snprintf(res->reason, sizeof(res->reason), "setup failed at %" PRIu32, n);
            break;
        }
        cap_from(&st, cs);
        bool pass = track_step_passes(&o->lim, cs->p95, cs->error_rate, cs->delivered);
        cap_print_step((unsigned)res->n + 1, &st, cs, pass);
        if (!pass && retried < o->retries) {
            /* A shared machine has passing stalls: a limit counts once it holds again. */
            retried++;
            printf("step %zu measured again\n", res->n + 1);
            continue;
        }
        res->n++;
        retried = 0;
        if (!pass) {
            if (cs->delivered == 0)
                snprintf(res->reason, sizeof(res->reason), "nothing delivered at %" PRIu32, n);
            else if (cs->p95 > o->lim.p95_ms)
                snprintf(res->reason, sizeof(res->reason), "p95 %.1f ms > %.0f ms at %" PRIu32,
                         cs->p95, o->lim.p95_ms, cs->participants);
            else
                snprintf(res->reason, sizeof(res->reason), "errors %.3f%% > %.3f%% at %" PRIu32,
                         cs->error_rate * 100, o->lim.error_rate * 100, cs->participants);
            break;
        }
        res->figure = cs->participants;
        res->figure_p95 = cs->p95;
        n = track_next_n(n, o->step, o->factor_pct, o->max);
    }
}

#ifdef TALLY_STRESS_HAVE_REPORT
static void cap_write(const struct cap_opts *o, const struct cap_result *res, const char *date)
{
    static struct report_step rs[CAP_STEPS_MAX];
    char target[96];
    snprintf(target, sizeof(target), "%s:%u", o->c.host, o->c.port);
    for (size_t i = 0; i < res->n; i++) {
        const struct cap_step *s = &res->steps[i];
        rs[i] = (struct report_step){
            .participants = s->participants,
            .p50_ms = s->p50,
            .p90_ms = s->p90,
            .p95_ms = s->p95,
            .p99_ms = s->p99,
            .p999_ms = s->p999,
            .max_ms = s->max,
            .error_rate = s->error_rate,
            .server_cpu_pct = s->cpu_pct,
            .server_rss_mb = s->rss_mb,
            .delivered = s->delivered,
        };
    }
    const struct report_capacity r = {
        .target = target,
        .date = date,
        .machine = o->machine,
        .participants = res->figure,
        .p95_ms = res->figure_p95,
        .limit_reason = res->reason,
        .p95_limit_ms = o->lim.p95_ms,
        .error_limit = o->lim.error_rate,
        .steps = rs,
        .n_steps = res->n,
    };
    int rc = report_write_files(&r, o->out_dir);
    if (rc < 0)
        fprintf(stderr, "tally-stress: report into %s: %s\n", o->out_dir, strerror(-rc));
    else
        printf("report: %s/capacity.svg, capacity.html, capacity.json\n", o->out_dir);
    if (res->figure > 0) {
        rc = report_write_figure(&r, o->figure);
        if (rc < 0)
            fprintf(stderr, "tally-stress: figure %s: %s\n", o->figure, strerror(-rc));
        else
            printf("figure: %s (tallyd reads <data-dir>/capacity.json when --capacity is not "
                   "given)\n",
                   o->figure);
    }
    FILE *jf = o->c.json_path ? fopen(o->c.json_path, "w") : NULL;
    if (o->c.json_path && (jf == NULL || report_write_json(&r, jf) < 0))
        fprintf(stderr, "tally-stress: cannot write %s\n", o->c.json_path);
    if (jf)
        fclose(jf);
}
#else
static void cap_write(const struct cap_opts *o, const struct cap_result *res, const char *date)
{
    json_t *steps = json_array();
    for (size_t i = 0; i < res->n; i++) {
        const struct cap_step *s = &res->steps[i];
        json_array_append_new(
            steps, json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I}", "participants",
                             (json_int_t)s->participants, "p50_ms", s->p50, "p90_ms", s->p90,
                             "p95_ms", s->p95, "p99_ms", s->p99, "p999_ms", s->p999, "max_ms",
                             s->max, "error_rate", s->error_rate, "server_cpu_pct", s->cpu_pct,
                             "server_rss_mb", s->rss_mb, "delivered", (json_int_t)s->delivered));
    }
    fprintf(stderr, "tally-stress: built without the report writer: no chart, page or figure\n");
    scen_json_write(o->c.json_path,
                    json_pack("{s:s,s:s,s:I,s:f,s:s,s:o}", "date", date, "machine", o->machine,
                              "participants", (json_int_t)res->figure, "p95_ms", res->figure_p95,
                              "limit_reason", res->reason, "steps", steps));
}
#endif

/** Runs `tally-stress capacity`; returns the process exit code. */
int capacity_main(int argc, char **argv);

int capacity_main(int argc, char **argv)
{
    static struct cap_opts o;
    static struct cap_result res;
    static struct eng_stats es;
    char date[40];
    cap_parse(argc, argv, &o);
    unsigned steps_planned = 1;
    for (uint32_t n = o.start; (n = track_next_n(n, o.step, o.factor_pct, o.max)) > 0;)
        steps_planned++;
    if (steps_planned > CAP_STEPS_MAX)
        steps_planned = CAP_STEPS_MAX;
    scen_deadline_arm(o.c.deadline_s
                          ? o.c.deadline_s
                          : steps_planned * (o.seconds + 40) + o.max / 500 + SCEN_DEADLINE_SLACK_S);
    scen_now_rfc3339(date, sizeof(date));
    printf("capacity: %s:%u from %" PRIu32 " to at most %" PRIu32 " subscribers, %u votes/s for "
           "%u s a step; limits p95 %.0f ms, errors %.3f%%\n",
           o.c.host, o.c.port, o.start, o.max, o.rate, o.seconds, o.lim.p95_ms,
           o.lim.error_rate * 100);
    fflush(stdout);
    struct fan *f = fan_create(&o.c, o.max, o.rate, o.seconds);
    cap_search(&o, f, &res);
    fan_destroy(f, &es);
    if (res.figure > 0)
        printf("this instance holds %" PRIu32 " participants at p95 %.1f ms (stopped: %s)\n",
               res.figure, res.figure_p95, res.reason);
    else
        printf("no step passed the limits (stopped: %s)\n", res.reason);
    cap_write(&o, &res, date);
    return res.figure > 0 ? 0 : 1;
}
