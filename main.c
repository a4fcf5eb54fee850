/*
 * main.c - tallyd: wires the configuration, the embedded or external
 * PostgreSQL, the storage actor, the session actors and the network threads
 * together, then waits for SIGTERM or SIGINT and drains.
 *
 * Exit status: 0 after a clean shutdown, 2 for bad configuration (one line
 * naming the option), 1 for anything else (the reason is logged).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "actors/actors.h"
#include "actors/stream.h"
#include "core/actor.h"
#include "core/base.h"
#include "core/config.h"
#include "core/log.h"
#include "net/server.h"
#include "store/pgembed.h"
#include "store/follow.h"
#include "store/store.h"

#define MAIN_CONNINFO_MAX 1024
#define MAIN_DRAIN_POLL_MS 10
#define MAIN_ACTOR_MBOX_SESSIONS_MAX 100000 /* sessions one instance holds */

struct tallyd {
    struct config cfg;
    char conninfo[MAIN_CONNINFO_MAX];
    struct pgembed *pg;
    struct store *store;
    struct actor_rt *rt;
    struct actors *actors;
    struct net_server *net;
    struct stream_sink sink; /* filled by the network side before traffic starts */
    struct follow *follow;   /* what other instances commit to the same database */
};

static int parse_config(struct tallyd *d, int argc, char **argv, char **envp)
{
    static char err[8192]; /* also holds the --help text */
    int rc = config_parse(&d->cfg, argc, argv, envp, err, sizeof(err));
    if (rc == 1) {
        fputs(err, stdout);
        exit(0);
    }
    if (rc < 0) {
        fprintf(stderr, "tallyd: %s\n", err);
        return 2;
    }
    enum log_level level = LOG_INFO;
    log_level_parse(d->cfg.log_level, &level);
    log_init(level, d->cfg.instance_id);
    if (d->cfg.db_pool_capped)
        log_warn("--db-pool capped to %u (4 x cores)", d->cfg.db_pool);
    if (d->cfg.capacity_warning[0] != '\0')
        log_warn("%s", d->cfg.capacity_warning);
    char capacity[CONFIG_STR_MAX + 160];
    config_capacity_describe(&d->cfg, capacity, sizeof(capacity));
    log_info("%s", capacity);
    return 0;
}

static int start_storage(struct tallyd *d)
{
    if (d->cfg.database_url[0] == '\0') {
        d->pg = pgembed_start(d->cfg.data_dir, d->conninfo, sizeof(d->conninfo));
        if (d->pg == NULL)
            return -EIO;
    } else {
        snprintf(d->conninfo, sizeof(d->conninfo), "%s", d->cfg.database_url);
    }
    struct store_config sc = {
        .conninfo = d->conninfo,
        .pool = d->cfg.db_pool,
        .queue_max = STORE_QUEUE_MAX,
        .instance_id = d->cfg.instance_id,
    };
    d->store = store_create(&sc);
    return store_start(d->store);
}

static int start_actors(struct tallyd *d)
{
    unsigned workers = d->cfg.threads / 2 ? d->cfg.threads / 2 : 1;
    d->rt = actor_rt_create(workers, MAIN_ACTOR_MBOX_SESSIONS_MAX + 1); /* + the directory */
    int rc = actor_rt_start(d->rt);
    if (rc < 0)
        return rc;
    d->sink.threads = net_rings_needed(&d->cfg);
    struct actors_config ac = {.rt = d->rt,
                               .store = d->store,
                               .sessions_max = MAIN_ACTOR_MBOX_SESSIONS_MAX,
                               .sink = &d->sink};
    d->actors = actors_create(&ac);
    uint64_t t0 = clock_now_ms();
    rc = actors_load(d->actors);
    if (rc == 0)
        log_info("state loaded from the database in %llu ms",
                 (unsigned long long)(clock_now_ms() - t0));
    return rc;
}

/* SIGTERM: refuse new work, let what was received commit and be answered,
 * then close everything, within --drain-seconds. */
static void drain(struct tallyd *d)
{
    uint64_t deadline = clock_now_ms() + (uint64_t)d->cfg.drain_seconds * 1000;
    net_server_drain(d->net);
    while (net_server_inflight(d->net) > 0 && clock_now_ms() < deadline) {
        struct timespec ts = {0, MAIN_DRAIN_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (net_server_inflight(d->net) > 0)
        log_warn("drain budget spent with %llu requests unanswered",
                 (unsigned long long)net_server_inflight(d->net));
}

static void on_follow_event(void *arg, int64_t session_id, int64_t seq)
{
    actors_follow_event(arg, session_id, seq);
}

static void on_follow_peers(void *arg, unsigned peers)
{
    actors_set_peers(arg, peers);
}

static void on_local_presence(void *arg, void (*put)(void *, int64_t, uint32_t), void *put_arg)
{
    actors_local_presence(arg, put, put_arg);
}

static void on_follow_presence(void *arg, int64_t session_id, uint32_t others)
{
    actors_follow_presence(arg, session_id, others);
}

/* After the network's sink is known (events it follows go to subscribers)
 * and before it serves (whether another instance shares the database is
 * known by then). */
static int start_follow(struct tallyd *d)
{
    struct follow_config fc = {.conninfo = d->conninfo,
                               .instance_id = d->cfg.instance_id,
                               .arg = d->actors,
                               .on_event = on_follow_event,
                               .on_peers = on_follow_peers,
                               .local_presence = on_local_presence,
                               .on_presence = on_follow_presence};

    d->follow = follow_create(&fc);
    return follow_start(d->follow);
}

static void shutdown_all(struct tallyd *d)
{
    follow_destroy(d->follow); /* it posts to the actors */
    d->follow = NULL;
    if (d->net)
        net_server_stop(d->net);
    if (d->rt)
        actor_rt_stop(d->rt);
    if (d->store)
        store_stop(d->store);
    net_server_destroy(d->net);
    if (d->actors)
        actors_destroy(d->actors);
    if (d->rt)
        actor_rt_destroy(d->rt);
    if (d->store)
        store_destroy(d->store);
    pgembed_stop(d->pg);
}

static int wait_for_signal(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
}

int main(int argc, char **argv, char **envp)
{
    static struct tallyd d;
    int rc = parse_config(&d, argc, argv, envp);
    if (rc != 0)
        return rc;

    /* Every thread inherits this mask, so only sigwait() sees the signals. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (start_storage(&d) < 0 || start_actors(&d) < 0) {
        log_error("start-up failed");
        shutdown_all(&d);
        return 1;
    }
    d.net = net_server_create(&d.cfg, d.actors, d.store);
    net_server_sink(d.net, &d.sink);
    if (start_follow(&d) < 0 || net_server_start(d.net) < 0) {
        shutdown_all(&d);
        return 1;
    }
    log_info("tallyd listening on http://%s:%u/ (%u network rings)", d.cfg.listen_host,
             d.cfg.listen_port, net_server_rings(d.net));
    printf("Tally is running: http://%s:%u/\n", d.cfg.listen_host, d.cfg.listen_port);
    fflush(stdout);

    int sig = wait_for_signal();
    log_info("signal %d: draining (budget %u s)", sig, d.cfg.drain_seconds);
    drain(&d);
    shutdown_all(&d);
    log_info("stopped");
    return 0;
}
