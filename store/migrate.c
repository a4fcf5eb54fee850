/*
 * migrate.c - applies the embedded schema migrations, once each, in order.
 *
 * Several instances may start at the same moment against one database, so the
 * whole run holds a session-level advisory lock: the second instance waits,
 * then finds every version already recorded and applies nothing. Each version
 * runs in its own transaction together with its schema_migrations row, so a
 * failed migration leaves neither half applied.
 */
#include "store/migrate.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/base.h"
#include "core/log.h"

/* Any fixed bigint works; this one spells "tallymig" in ASCII. */
#define MIGRATE_LOCK_KEY "8386103194290055527"
#define MIGRATE_VERSION_MAX 100000

static bool exec_ok(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    if (!ok)
        log_error("migrate: %s failed: %s", what, PQerrorMessage(conn));
    PQclear(res);
    return ok;
}

/* Highest applied version, or -1 on error. Versions are applied in order, so
 * every version up to it is present. */
static int applied_max(PGconn *conn)
{
    PGresult *res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    int v = -1;

    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        v = atoi(PQgetvalue(res, 0, 0));
    else
        log_error("migrate: reading schema_migrations failed: %s", PQerrorMessage(conn));
    PQclear(res);
    return v;
}

static int apply_one(PGconn *conn, const struct migration_src *m)
{
    char version[16];
    const char *params[2] = {version, m->name};
    PGresult *res;

    snprintf(version, sizeof(version), "%d", m->version);
    if (!exec_ok(conn, "BEGIN", "BEGIN"))
        return -EIO;
    if (!exec_ok(conn, m->sql, m->name))
        goto err_rollback;
    res = PQexecParams(conn, "INSERT INTO schema_migrations(version, name) VALUES ($1, $2)", 2,
                       NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        log_error("migrate: recording %s failed: %s", m->name, PQerrorMessage(conn));
        PQclear(res);
        goto err_rollback;
    }
    PQclear(res);
    if (!exec_ok(conn, "COMMIT", "COMMIT"))
        return -EIO;
    log_info("migrate: applied %s", m->name);
    return 0;

err_rollback:
    exec_ok(conn, "ROLLBACK", "ROLLBACK");
    return -EIO;
}

static int apply_pending(PGconn *conn)
{
    int have;

    /* Checked first rather than IF NOT EXISTS, which makes the server send
     * a notice on every start. The advisory lock rules out a race. */
    if (!exec_ok(conn,
                 "DO $$ BEGIN IF to_regclass('schema_migrations') IS NULL THEN "
                 "CREATE TABLE schema_migrations ("
                 " version int PRIMARY KEY,"
                 " name text NOT NULL,"
                 " applied_at timestamptz NOT NULL DEFAULT now()); END IF; END $$",
                 "creating schema_migrations"))
        return -EIO;
    have = applied_max(conn);
    if (have < 0)
        return -EIO;
    for (unsigned i = 0; i < migrations_count; i++) {
        const struct migration_src *m = &migrations_src[i];

        /* The generator keeps files sorted; versions must be unique and rising. */
        TALLY_ASSERT(m->version > 0 && m->version < MIGRATE_VERSION_MAX);
        TALLY_ASSERT(i == 0 || migrations_src[i - 1].version < m->version);
        if (m->version <= have)
            continue;
        if (apply_one(conn, m) < 0)
            return -EIO;
    }
    if (migrations_count > 0 && have > migrations_src[migrations_count - 1].version)
        log_warn("migrate: the database is at schema version %d, newer than this build's %d",
                 have, migrations_src[migrations_count - 1].version);
    return 0;
}

int migrate_apply(PGconn *conn)
{
    int rc;

    TALLY_ASSERT(conn != NULL);
    if (PQstatus(conn) != CONNECTION_OK) {
        log_error("migrate: not connected: %s", PQerrorMessage(conn));
        return -EIO;
    }
    if (!exec_ok(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "taking the migration lock"))
        return -EIO;
    rc = apply_pending(conn);
    /* A broken connection releases the lock by itself; a failed unlock is only logged. */
    exec_ok(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", "releasing the migration lock");
    return rc;
}
