/*
 * test_pgembed.c - the private cluster: first start (initdb), data kept over
 * a restart, reuse of a running cluster, recovery after the postmaster was
 * killed, and refusal of data directories pg_ctl cannot handle.
 *
 * The tests share one directory under /tmp whose path contains a space, so
 * initdb runs once: the first test creates the cluster, the next ones start
 * it again, reuse it running and recover it after a kill. Exits 77 when no
 * PostgreSQL binaries are installed.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "store/pgembed.h"
#include "pgtmp.h"

#define CONNINFO_MAX 1024

static char tmp_root[64];
static char data_dir[128];

static int group_setup(void **state)
{
    (void)state;
    if (pgtmp_dir(tmp_root, sizeof(tmp_root), "pgembed") < 0)
        return -1;
    snprintf(data_dir, sizeof(data_dir), "%s/data dir", tmp_root);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return pgtmp_remove(tmp_root);
}

static PGconn *connect_ok(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
}

static long query_long(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    long v;

    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    v = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static void test_start_stop_keeps_data(void **state)
{
    char conninfo[CONNINFO_MAX], path[PATH_MAX];
    struct pgembed *pg;
    struct stat st;
    PGconn *c;

    (void)state;
    snprintf(path, sizeof(path), "%s/pg/PG_VERSION", data_dir);
    assert_int_not_equal(access(path, F_OK), 0); /* first run: initdb's job */
    pg = pgembed_start(data_dir, conninfo, sizeof(conninfo));
    assert_non_null(pg);
    assert_int_equal(access(path, F_OK), 0);
    assert_non_null(strstr(conninfo, "/data dir/run"));
    /* The socket directory is closed to everyone but the cluster's owner. */
    snprintf(path, sizeof(path), "%s/run", data_dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    c = connect_ok(conninfo);
    assert_string_equal(PQuser(c), "tally");
    /* No TCP listener at all. */
    assert_int_equal(query_long(c, "SELECT count(*) FROM pg_settings WHERE name = 'listen_addresses' "
                                   "AND setting = ''"),
                     1);
    assert_int_equal(query_long(c, "SELECT count(*) FROM pg_settings WHERE name = 'server_encoding' "
                                   "AND setting = 'UTF8'"),
                     1);
    exec_ok(c, "CREATE TABLE kept(x int)");
    exec_ok(c, "INSERT INTO kept VALUES (42)");
    PQfinish(c);
    pgembed_stop(pg);
    assert_int_equal(PQping(conninfo), PQPING_NO_RESPONSE);

    pg = pgembed_start(data_dir, conninfo, sizeof(conninfo));
    assert_non_null(pg);
    c = connect_ok(conninfo);
    assert_int_equal(query_long(c, "SELECT x FROM kept"), 42);
    PQfinish(c);
    pgembed_stop(pg);
}

static void test_reuses_running_cluster(void **state)
{
    char first[CONNINFO_MAX], second[CONNINFO_MAX];
    struct pgembed *a, *b;
    PGconn *c;

    (void)state;
    a = pgembed_start(data_dir, first, sizeof(first));
    assert_non_null(a);
    c = connect_ok(first);
    exec_ok(c, "CREATE TABLE marker(x int)");
    PQfinish(c);
    /* A second start, as after a tallyd that died without stopping it. */
    b = pgembed_start(data_dir, second, sizeof(second));
    assert_non_null(b);
    assert_string_equal(first, second);
    c = connect_ok(second);
    assert_int_equal(query_long(c, "SELECT count(*) FROM marker"), 0);
    PQfinish(c);
    pgembed_stop(b);
    assert_int_equal(PQping(first), PQPING_NO_RESPONSE);
    pgembed_stop(a); /* the cluster is already down: logged, harmless */
}

static long postmaster_pid(void)
{
    char path[PATH_MAX];
    long pid = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/pg/postmaster.pid", data_dir);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld", &pid), 1);
    fclose(f);
    return pid;
}

static void test_recovers_after_kill(void **state)
{
    char conninfo[CONNINFO_MAX];
    struct pgembed *pg;
    long pid;
    PGconn *c;

    (void)state;
    pg = pgembed_start(data_dir, conninfo, sizeof(conninfo));
    assert_non_null(pg);
    c = connect_ok(conninfo);
    exec_ok(c, "CREATE TABLE survived(x int)");
    exec_ok(c, "INSERT INTO survived VALUES (7)");
    PQfinish(c);
    pid = postmaster_pid();
    assert_true(pid > 0);
    assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
    for (int i = 0; i < 200 && PQping(conninfo) != PQPING_NO_RESPONSE; i++)
        usleep(10 * 1000);
    assert_int_equal(PQping(conninfo), PQPING_NO_RESPONSE);
    free(pg); /* the handle of the "killed run"; its cluster is gone */

    /* postmaster.pid is left behind; the next start must cope with it. */
    pg = pgembed_start(data_dir, conninfo, sizeof(conninfo));
    assert_non_null(pg);
    c = connect_ok(conninfo);
    assert_int_equal(query_long(c, "SELECT x FROM survived"), 7);
    PQfinish(c);
    pgembed_stop(pg);
}

static void test_refuses_unsafe_dir(void **state)
{
    char conninfo[CONNINFO_MAX], dir[PATH_MAX];
    const char *bad[] = {"quote'd", "dollar$HOME", "back`tick", "comma,dir", "dq\"uote", "back\\slash"};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(dir, sizeof(dir), "%s/%s", tmp_root, bad[i]);
        assert_null(pgembed_start(dir, conninfo, sizeof(conninfo)));
    }
}

static void test_refuses_small_conninfo_buffer(void **state)
{
    char conninfo[16];

    (void)state;
    assert_null(pgembed_start(data_dir, conninfo, sizeof(conninfo)));
}

static void test_refuses_long_socket_path(void **state)
{
    char conninfo[CONNINFO_MAX], dir[PATH_MAX];

    (void)state;
    /* sun_path holds 108 bytes; DIR/run/.s.PGSQL.5432 must fit. */
    snprintf(dir, sizeof(dir), "%s/%0120d", tmp_root, 0);
    assert_null(pgembed_start(dir, conninfo, sizeof(conninfo)));
}

static void test_stop_null(void **state)
{
    (void)state;
    pgembed_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_stop_keeps_data),
        cmocka_unit_test(test_reuses_running_cluster),
        cmocka_unit_test(test_recovers_after_kill),
        cmocka_unit_test(test_refuses_unsafe_dir),
        cmocka_unit_test(test_refuses_small_conninfo_buffer),
        cmocka_unit_test(test_refuses_long_socket_path),
        cmocka_unit_test(test_stop_null),
    };

    if (!pgtmp_have_postgres()) {
        fprintf(stderr, "no PostgreSQL binaries: skipped\n");
        return 77;
    }
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
