/*
 * tallyctl.c - the admin command line.
 *
 *   tallyctl migrate [--database-url URL | --data-dir DIR]
 *   tallyctl verify  [--database-url URL | --data-dir DIR]
 *
 * migrate applies pending schema migrations to a database (tallyd also does
 * this at start). With --data-dir (default ./var and no URL) it starts the
 * embedded cluster of that directory for the duration of the command.
 *
 * verify checks the stored state against the product's invariants (each
 * session's event_log seq gap-free and equal to sessions.seq, every vote's
 * poll and participant in the vote's session, choices within the poll's
 * options, no vote on a draft poll) and prints each check with the number
 * of rows that break it. With --data-dir it connects to the embedded
 * cluster's socket and never starts or stops it, so it is safe next to a
 * running tallyd.
 *
 * Exit status: 0 done (verify: no violation), 2 bad usage, 1 failure or
 * violation (reason printed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/log.h"
#include "store/pgembed.h"
#include "store/store.h"

#define TALLYCTL_CONNINFO_MAX 1024

static int usage(void)
{
    fprintf(stderr, "usage: tallyctl migrate|verify [--database-url URL | --data-dir DIR]\n");
    return 2;
}

/* Reads --database-url and --data-dir, the TALLY_* environment giving the
 * defaults. Returns 0, or -EINVAL for anything else. */
static int parse_target(int argc, char **argv, const char **url, const char **dir)
{
    *url = getenv("TALLY_DATABASE_URL");
    *dir = getenv("TALLY_DATA_DIR");
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            return -EINVAL;
        if (strcmp(argv[i], "--database-url") == 0)
            *url = argv[++i];
        else if (strcmp(argv[i], "--data-dir") == 0)
            *dir = argv[++i];
        else
            return -EINVAL;
    }
    return 0;
}

static int cmd_migrate(int argc, char **argv)
{
    const char *url, *dir;
    if (parse_target(argc, argv, &url, &dir) < 0)
        return usage();
    char conninfo[TALLYCTL_CONNINFO_MAX];
    struct pgembed *pg = NULL;
    if (url && url[0]) {
        snprintf(conninfo, sizeof(conninfo), "%s", url);
    } else {
        pg = pgembed_start(dir && dir[0] ? dir : "./var", conninfo, sizeof(conninfo));
        if (pg == NULL)
            return 1;
    }
    int rc = store_migrate(conninfo);
    pgembed_stop(pg);
    if (rc < 0)
        return 1;
    printf("schema up to date\n");
    return 0;
}

struct verify_check {
    const char *what;
    const char *sql; /* counts the rows that break the invariant */
};

static const struct verify_check verify_checks[] = {
    {"event_log seq gap-free per session",
     "SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION BY session_id ORDER BY seq) AS prev"
     " FROM event_log) x WHERE prev IS NOT NULL AND seq <> prev + 1"},
    {"sessions.seq equals the last event",
     "SELECT count(*) FROM sessions s JOIN (SELECT session_id, max(seq) AS m FROM event_log"
     " GROUP BY 1) e ON e.session_id = s.id WHERE s.seq <> e.m"},
    {"vote's poll in the vote's session",
     "SELECT count(*) FROM votes v JOIN polls p ON p.id = v.poll_id WHERE p.session_id <> v.session_id"},
    {"vote's participant in the vote's session",
     "SELECT count(*) FROM votes v JOIN participants pa ON pa.id = v.participant_id"
     " WHERE pa.session_id <> v.session_id"},
    {"choices within the poll's options",
     "SELECT count(*) FROM votes v JOIN polls p ON p.id = v.poll_id WHERE cardinality(v.choices) = 0"
     " OR EXISTS (SELECT 1 FROM unnest(v.choices) c WHERE c < 0 OR c >= jsonb_array_length(p.options))"},
    {"no vote on a draft poll",
     "SELECT count(*) FROM votes v JOIN polls p ON p.id = v.poll_id WHERE p.state = 'draft'"},
};

static int cmd_verify(int argc, char **argv)
{
    const char *url, *dir;
    char conninfo[TALLYCTL_CONNINFO_MAX];
    int bad = 0;

    if (parse_target(argc, argv, &url, &dir) < 0)
        return usage();
    if (url && url[0])
        snprintf(conninfo, sizeof(conninfo), "%s", url);
    else
        snprintf(conninfo, sizeof(conninfo), "host=%s/run user=tally dbname=postgres",
                 dir && dir[0] ? dir : "./var");
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "tallyctl: cannot connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }
    for (size_t i = 0; i < sizeof(verify_checks) / sizeof(verify_checks[0]); i++) {
        PGresult *res = PQexec(c, verify_checks[i].sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            fprintf(stderr, "tallyctl: %s: %s", verify_checks[i].what, PQerrorMessage(c));
            PQclear(res);
            PQfinish(c);
            return 1;
        }
        long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        printf("%-45s %s (%ld rows break it)\n", verify_checks[i].what, n ? "FAIL" : "ok", n);
        bad += n != 0;
        PQclear(res);
    }
    PQfinish(c);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    log_init(LOG_INFO, "tallyctl");
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "migrate") == 0)
        return cmd_migrate(argc, argv);
    if (strcmp(argv[1], "verify") == 0)
        return cmd_verify(argc, argv);
    fprintf(stderr, "tallyctl: unknown command '%s'\n", argv[1]);
    return usage();
}
