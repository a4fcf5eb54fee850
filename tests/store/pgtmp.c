/*
 * pgtmp.c - see pgtmp.h.
 */
#define _XOPEN_SOURCE 700
#include "pgtmp.h"

#include <ftw.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>

bool pgtmp_have_postgres(void)
{
    glob_t g;
    bool found = glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) == 0;

    globfree(&g);
    return found || system("command -v pg_ctl >/dev/null 2>&1") == 0;
}

int pgtmp_dir(char *root, size_t n, const char *name)
{
    if ((size_t)snprintf(root, n, "/tmp/tally-%s-XXXXXX", name) >= n || mkdtemp(root) == NULL)
        return -1;
    /* The cluster may run as "postgres", which must be able to walk in. */
    return chmod(root, 0755);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int pgtmp_remove(const char *root)
{
    return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

PGconn *pgtmp_db_open(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);

    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect: %s", PQerrorMessage(c));
    return c;
}

PGresult *pgtmp_db_q(PGconn *c, const char *sql, int n, const char *const *p)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    return res;
}

int64_t pgtmp_db_i64(PGconn *c, const char *sql, int n, const char *const *p)
{
    PGresult *res = pgtmp_db_q(c, sql, n, p);
    int64_t v;

    assert_int_equal(PQntuples(res), 1);
    v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}
