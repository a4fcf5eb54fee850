/*
 * scen.c - see scen.h.
 */
#include "stress/scen.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/base.h"
#include "stress/fanout_common.h"
#include "stress/httpc.h"

void scen_opts_init(struct scen_opts *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    o->port = 8080;
    o->threads = 2;
    o->sources = 8;
    o->proto = "tally.v1.json";
}

bool scen_opts_take(struct scen_opts *o, const char *flag, const char *val)
{
    if (strcmp(flag, "--target") == 0) {
        if (fo_parse_target(val, o->host, sizeof(o->host), &o->port) < 0) {
            fprintf(stderr, "tally-stress: invalid --target '%s': expected HOST:PORT\n", val);
            exit(2);
        }
    } else if (strcmp(flag, "--threads") == 0) {
        o->threads = fo_parse_uint(flag, val, 1, ENG_THREADS_MAX);
    } else if (strcmp(flag, "--sources") == 0) {
        o->sources = fo_parse_uint(flag, val, 1, ENG_SOURCES_MAX);
    } else if (strcmp(flag, "--server-pid") == 0) {
        o->server_pid = (long)fo_parse_uint(flag, val, 1, 1u << 30);
    } else if (strcmp(flag, "--json") == 0) {
        o->json_path = val;
    } else if (strcmp(flag, "--proto") == 0) {
        if (strcmp(val, "json") == 0) {
            o->proto = "tally.v1.json";
        } else if (strcmp(val, "msgpack") == 0) {
            o->proto = "tally.v1.msgpack";
        } else if (strcmp(val, "sse") == 0) {
            o->proto = ENG_PROTO_SSE;
        } else {
            fprintf(stderr, "tally-stress: invalid --proto '%s': expected json, msgpack or sse\n",
                    val);
            exit(2);
        }
    } else if (strcmp(flag, "--deadline") == 0) {
        o->deadline_s = fo_parse_uint(flag, val, 1, SCEN_SECONDS_MAX * 4);
    } else {
        return false;
    }
    return true;
}

static void *watchdog(void *arg)
{
    unsigned s = (unsigned)(uintptr_t)arg;
    fo_sleep_ms(s * 1000u);
    fprintf(stderr, "tally-stress: the run passed its %u s deadline; stopping\n", s);
    fflush(stdout);
    _exit(3);
    return NULL;
}

void scen_deadline_arm(unsigned deadline_s)
{
    pthread_t tid;
    TALLY_ASSERT(pthread_create(&tid, NULL, watchdog, (void *)(uintptr_t)deadline_s) == 0);
    pthread_detach(tid);
}

/* One JSON request; the parsed answer or NULL, *status 0 on a transport error. */
static json_t *call(struct httpc *h, const char *method, const char *path, const char *token,
                    const char *body, int *status)
{
    struct httpc_resp r;
    *status = 0;
    if (httpc_request(h, method, path, token, NULL, body, &r) < 0)
        return NULL;
    *status = r.status;
    return json_loadb(r.body, r.body_len, 0, NULL);
}

/* One presenter request on a fresh connection; the parsed answer, or NULL after printing why. */
static json_t *presenter_call(const struct scen_opts *o, const char *method, const char *path,
                              const char *token, const char *body, int want, int also_ok,
                              uint64_t *sent_ns)
{
    struct httpc *h = xmalloc(sizeof(*h));
    int st = 0;
    httpc_init(h, o->host, o->port, NULL);
    if (sent_ns)
        *sent_ns = fo_now_ns();
    json_t *j = call(h, method, path, token, body, &st);
    httpc_close(h);
    free(h);
    if (st == 0) {
        fprintf(stderr, "tally-stress: %s %s: no answer from %s:%u\n", method, path, o->host,
                o->port);
        json_decref(j);
        return NULL;
    }
    if ((st != want && st != also_ok) || j == NULL) {
        const char *code =
            json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        fprintf(stderr, "tally-stress: %s %s answered %d (expected %d)%s%s\n", method, path, st,
                want, code ? ": " : "", code ? code : "");
        json_decref(j);
        return NULL;
    }
    return j;
}

int scen_session_create(const struct scen_opts *o, const char *title, struct scen_session *s)
{
    char body[160];
    snprintf(body, sizeof(body), "{\"title\":\"%s\"}", title);
    json_t *j = presenter_call(o, "POST", "/api/v1/sessions", NULL, body, 201, 0, NULL);
    const char *tok = json_string_value(json_object_get(j, "presenter_token"));
    const char *code = json_string_value(json_object_get(json_object_get(j, "session"), "code"));
    int rc = -EPROTO;
    if (tok && code && strlen(tok) < sizeof(s->presenter_token) && strlen(code) < sizeof(s->code)) {
        snprintf(s->presenter_token, sizeof(s->presenter_token), "%s", tok);
        snprintf(s->code, sizeof(s->code), "%s", code);
        rc = 0;
    }
    json_decref(j);
    return rc;
}

int scen_poll_create(const struct scen_opts *o, const struct scen_session *s, unsigned options,
                     int64_t *poll_id)
{
    static const char *const names[] = {"A", "B", "C", "D", "E", "F", "G", "H"};
    char path[96], body[256];
    TALLY_ASSERT(options >= 2 && options <= 8);
    int n =
        snprintf(body, sizeof(body), "{\"question\":\"Which?\",\"kind\":\"single\",\"options\":[");
    for (unsigned i = 0; i < options; i++)
        n += snprintf(body + n, sizeof(body) - (size_t)n, "%s\"%s\"", i ? "," : "", names[i]);
    snprintf(body + n, sizeof(body) - (size_t)n, "]}");
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/polls", s->code);
    json_t *j = presenter_call(o, "POST", path, s->presenter_token, body, 201, 0, NULL);
    *poll_id = json_integer_value(json_object_get(json_object_get(j, "poll"), "id"));
    json_decref(j);
    return *poll_id > 0 ? 0 : -EPROTO;
}

int scen_poll_state(const struct scen_opts *o, const struct scen_session *s, int64_t poll_id,
                    bool open, uint64_t *sent_ns)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/polls/%" PRId64 "/%s", poll_id, open ? "open" : "close");
    /* Closing a poll that is closed already (409) is what was asked for. */
    json_t *j =
        presenter_call(o, "POST", path, s->presenter_token, NULL, 200, open ? 0 : 409, sent_ns);
    json_decref(j);
    return j ? 0 : -EPROTO;
}

/* ---- joins ---- */

struct join_ctx {
    const struct scen_opts *o;
    const struct scen_session *s;
    struct scen_joins *j;
    struct hist lat;
};

/* One join with retries on 429/503; 0 or -EPROTO. */
static int join_one(struct join_ctx *c, struct httpc *h, const char *path, uint32_t i)
{
    for (unsigned attempt = 0; attempt <= SCEN_JOIN_RETRIES; attempt++) {
        int st = 0;
        uint64_t t0 = fo_now_ns();
        json_t *j = call(h, "POST", path, NULL, "{}", &st);
        const char *tok = json_string_value(json_object_get(j, "participant_token"));
        if (st == 201 && tok && strlen(tok) < SCEN_TOKEN_MAX) {
            hist_add(&c->lat, fo_now_ns() - t0);
            snprintf(c->j->tokens[i], SCEN_TOKEN_MAX, "%s", tok);
            json_decref(j);
            atomic_fetch_add(&c->j->ok, 1);
            return 0;
        }
        json_decref(j);
        if (st != 429 && st != 503) {
            fprintf(stderr, "tally-stress: join answered %d\n", st);
            break;
        }
        atomic_fetch_add(&c->j->retries, 1);
        fo_sleep_ms(1000); /* tallyd's Retry-After is whole seconds */
    }
    atomic_fetch_add(&c->j->errors, 1);
    return -EPROTO;
}

static void *join_worker(void *arg)
{
    struct join_ctx *c = arg;
    struct scen_joins *j = c->j;
    struct httpc *h = xmalloc(sizeof(*h));
    char src[32], path[96];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/participants", c->s->code);
    for (;;) {
        unsigned k = atomic_fetch_add(&j->next_chunk, 1);
        uint64_t first = j->n + (uint64_t)k * SCEN_JOIN_CHUNK;
        if (first >= j->target || atomic_load(&j->errors) > 0)
            break;
        uint32_t end =
            (uint32_t)(first + SCEN_JOIN_CHUNK < j->target ? first + SCEN_JOIN_CHUNK : j->target);
        /* Each chunk from its own address: like phones behind many NATs, not one. */
        snprintf(src, sizeof(src), "127.0.0.%u",
                 2 + (unsigned)(first / SCEN_JOIN_CHUNK % ENG_SOURCES_MAX));
        httpc_init(h, c->o->host, c->o->port, src);
        for (uint32_t i = (uint32_t)first; i < end; i++)
            if (join_one(c, h, path, i) < 0)
                break;
        httpc_close(h);
    }
    free(h);
    return NULL;
}

void scen_joins_init(struct scen_joins *j, uint32_t cap)
{
    memset(j, 0, sizeof(*j));
    j->cap = cap;
    j->tokens = xcalloc(cap ? cap : 1, sizeof(*j->tokens));
    hist_init(&j->lat);
}

int scen_join(const struct scen_opts *o, const struct scen_session *s, struct scen_joins *j,
              uint32_t upto)
{
    pthread_t tids[SCEN_JOIN_THREADS];
    TALLY_ASSERT(upto <= j->cap);
    if (upto <= j->n)
        return 0;
    struct join_ctx *cs = xcalloc(SCEN_JOIN_THREADS, sizeof(*cs));
    j->target = upto;
    atomic_store(&j->next_chunk, 0);
    uint64_t t0 = fo_now_ns();
    for (unsigned i = 0; i < SCEN_JOIN_THREADS; i++) {
        cs[i] = (struct join_ctx){.o = o, .s = s, .j = j};
        hist_init(&cs[i].lat);
        TALLY_ASSERT(pthread_create(&tids[i], NULL, join_worker, &cs[i]) == 0);
    }
    for (unsigned i = 0; i < SCEN_JOIN_THREADS; i++) {
        pthread_join(tids[i], NULL);
        hist_merge(&j->lat, &cs[i].lat);
    }
    free(cs);
    j->seconds += (double)(fo_now_ns() - t0) / 1e9;
    if (atomic_load(&j->errors))
        return -EPROTO;
    j->n = upto;
    return 0;
}

void scen_joins_free(struct scen_joins *j)
{
    free(j->tokens);
    j->tokens = NULL;
}

/* ---- HTTP voters ---- */

struct voter_ctx {
    struct scen_voters *v;
    unsigned index;
    uint64_t t0_ns, deadline_ns;
    struct hist lat;
};

static void vote_one(struct voter_ctx *c, struct httpc *h, const char *path, uint32_t k)
{
    struct scen_voters *v = c->v;
    char key[64], body[32];
    snprintf(key, sizeof(key), "%s-%" PRIu32, v->key_prefix, k);
    snprintf(body, sizeof(body), "{\"choice\":[%u]}", k % 4);
    struct httpc_resp r;
    uint64_t t0 = fo_now_ns();
    unsigned sent = atomic_fetch_add(&v->sent, 1) + 1;
    TALLY_ASSERT(sent <= v->n);
    atomic_store_explicit(&v->sent_ns[sent], t0, memory_order_release);
    int rc = httpc_request(h, "POST", path, v->tokens[k], key, body, &r);
    uint64_t now = fo_now_ns();
    if (rc < 0) {
        atomic_fetch_add(&v->errors, 1);
    } else if (r.status == 201) {
        hist_add(&c->lat, now - t0);
        unsigned idx = atomic_fetch_add(&v->acked, 1) + 1;
        TALLY_ASSERT(idx <= v->n); /* each token votes once */
        atomic_store_explicit(&v->ack_ns[idx], now, memory_order_release);
    } else {
        atomic_fetch_add(&v->refused, 1);
    }
}

/* Votes k = index, index + SCEN_VOTER_THREADS, ... each at its slot of the schedule. */
static void *voter_worker(void *arg)
{
    struct voter_ctx *c = arg;
    struct scen_voters *v = c->v;
    struct httpc *h = xmalloc(sizeof(*h));
    char path[96], src[32];
    snprintf(path, sizeof(path), "/api/v1/polls/%" PRId64 "/votes", v->poll_id);
    snprintf(src, sizeof(src), "127.0.0.%u", 2 + (ENG_SOURCES_MAX - 1 - c->index));
    httpc_init(h, v->o->host, v->o->port, src);
    for (uint32_t k = c->index; k < v->n; k += SCEN_VOTER_THREADS) {
        uint64_t due = c->t0_ns + (uint64_t)k * 1000000000ull / v->rate;
        if (fo_now_ns() >= c->deadline_ns)
            break;
        fo_sleep_until_ns(due);
        vote_one(c, h, path, k);
    }
    httpc_close(h);
    free(h);
    return NULL;
}

void scen_voters_run(struct scen_voters *v, uint64_t deadline_ns)
{
    pthread_t tids[SCEN_VOTER_THREADS];
    struct voter_ctx cs[SCEN_VOTER_THREADS];
    uint64_t t0 = fo_now_ns();
    hist_init(&v->lat);
    for (unsigned i = 0; i < SCEN_VOTER_THREADS; i++) {
        cs[i] = (struct voter_ctx){.v = v, .index = i, .t0_ns = t0, .deadline_ns = deadline_ns};
        hist_init(&cs[i].lat);
        TALLY_ASSERT(pthread_create(&tids[i], NULL, voter_worker, &cs[i]) == 0);
    }
    for (unsigned i = 0; i < SCEN_VOTER_THREADS; i++) {
        pthread_join(tids[i], NULL);
        hist_merge(&v->lat, &cs[i].lat);
    }
}

/* ---- server and reports ---- */

struct scen_server scen_server_sample(long pid)
{
    struct scen_server s = {0};
    long ppid = 0;
    if (pid > 0 && fo_proc_stat(pid, &ppid, &s.cpu_us)) {
        s.rss = fo_proc_kb(pid, "status", "VmRSS:");
        s.known = true;
    }
    return s;
}

json_t *scen_hist_json(const struct hist *h)
{
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f}", "n", (json_int_t)h->n, "p50",
                     hist_quantile(h, 0.50) / 1e6, "p90", hist_quantile(h, 0.90) / 1e6, "p95",
                     hist_quantile(h, 0.95) / 1e6, "p99", hist_quantile(h, 0.99) / 1e6, "p999",
                     hist_quantile(h, 0.999) / 1e6, "max", (double)h->max / 1e6);
}

void scen_hist_line(const struct hist *h, char *out, size_t cap)
{
    snprintf(
        out, cap, "p50 %.2f  p90 %.2f  p95 %.2f  p99 %.2f  p99.9 %.2f  max %.2f (n %" PRIu64 ")",
        hist_quantile(h, 0.50) / 1e6, hist_quantile(h, 0.90) / 1e6, hist_quantile(h, 0.95) / 1e6,
        hist_quantile(h, 0.99) / 1e6, hist_quantile(h, 0.999) / 1e6, (double)h->max / 1e6, h->n);
}

json_t *scen_errors_json(const struct eng_stats *st)
{
    json_t *o = json_object();
    for (unsigned k = 0; k < ENG_ERR_KINDS; k++) {
        json_object_set_new(o, eng_err_name((enum eng_err)k),
                            json_integer((json_int_t)st->errors[k]));
        if (st->errors[k] && st->last_errno[k]) {
            char name[48];
            snprintf(name, sizeof(name), "%s_last_error", eng_err_name((enum eng_err)k));
            json_object_set_new(o, name, json_string(strerror(st->last_errno[k])));
        }
    }
    if (st->last_refusal)
        json_object_set_new(o, "handshake_last_status", json_integer(st->last_refusal));
    if (st->last_close_code)
        json_object_set_new(o, "last_close_code", json_integer(st->last_close_code));
    return o;
}

double scen_self_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void scen_errors_print(const struct eng_stats *st)
{
    bool any = false;
    printf("client errors:");
    for (unsigned k = 0; k < ENG_ERR_KINDS; k++) {
        if (st->errors[k] == 0)
            continue;
        printf("%s %s %" PRIu64, any ? "," : "", eng_err_name((enum eng_err)k), st->errors[k]);
        if (st->last_errno[k])
            printf(" (last: %s)", strerror(st->last_errno[k]));
        any = true;
    }
    if (st->last_refusal)
        printf(" (last upgrade refused with %d)", st->last_refusal);
    if (st->last_close_code)
        printf(" (last close code %d)", st->last_close_code);
    printf("%s; %" PRIu64 " pings answered\n", any ? "" : " none", st->pings);
}

void scen_json_write(const char *path, json_t *root)
{
    if (path && json_dump_file(root, path, JSON_INDENT(1)) < 0)
        fprintf(stderr, "tally-stress: cannot write %s\n", path);
    json_decref(root);
}

void scen_now_rfc3339(char *out, size_t cap)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
