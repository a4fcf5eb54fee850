/*
 * test_config.c - config_parse(): defaults, environment, flags, precedence,
 * every bad-value path and each bound exactly; the measured capacity file
 * (present, absent, malformed, out of range, and losing to flag and env).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"

#define ARGS_MAX 32

static struct config cfg;
static char err[4096];

/* Parses a NULL-terminated argv (without argv[0]) and a NULL-terminated envp. */
static int parse(const char *const *args, const char *const *env)
{
    char *argv[ARGS_MAX + 1] = {"tallyd"};
    int argc = 1;
    for (; args != NULL && args[argc - 1] != NULL; argc++) {
        assert_true(argc < ARGS_MAX);
        argv[argc] = (char *)args[argc - 1];
    }
    argv[argc] = NULL;
    memset(&cfg, 0xa5, sizeof(cfg));
    memset(err, 'x', sizeof(err));
    return config_parse(&cfg, argc, argv, (char **)env, err, sizeof(err));
}

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ENVP(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_error(const char *const *args, const char *const *env, const char *msg)
{
    assert_int_equal(parse(args, env), -EINVAL);
    assert_string_equal(err, msg);
}

static unsigned cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : (unsigned)n;
}

static void test_defaults(void **state)
{
    (void)state;
    assert_int_equal(parse(NULL, NULL), 0);
    assert_string_equal(err, "");
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8080);
    assert_string_equal(cfg.database_url, "");
    assert_string_equal(cfg.data_dir, "./var");
    assert_int_equal(cfg.threads, cores() > 256 ? 256 : cores());
    assert_int_equal(cfg.capacity, 0);
    assert_int_equal(cfg.max_connections, 200000);
    assert_int_equal(cfg.join_rate, 200);
    assert_int_equal(cfg.db_pool, 4);
    assert_false(cfg.db_pool_capped);
    assert_int_equal(cfg.drain_seconds, 10);
    assert_string_equal(cfg.log_level, "info");

    char host[64], want[128];
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    snprintf(want, sizeof(want), "%s:8080", host);
    assert_string_equal(cfg.instance_id, want);
}

static void test_env(void **state)
{
    (void)state;
    assert_int_equal(parse(NULL, ENVP("PATH=/bin", "TALLY_LISTEN=0.0.0.0:9000",
                                      "TALLY_DATABASE_URL=postgres://u@h/db",
                                      "TALLY_DATA_DIR=/srv/tally", "TALLY_THREADS=3",
                                      "TALLY_CAPACITY=5000", "TALLY_MAX_CONNECTIONS=70",
                                      "TALLY_JOIN_RATE=9", "TALLY_DB_POOL=2",
                                      "TALLY_DRAIN_SECONDS=0", "TALLY_LOG_LEVEL=debug")),
                     0);
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.listen_port, 9000);
    assert_string_equal(cfg.database_url, "postgres://u@h/db");
    assert_string_equal(cfg.data_dir, "/srv/tally");
    assert_int_equal(cfg.threads, 3);
    assert_int_equal(cfg.capacity, 5000);
    assert_int_equal(cfg.max_connections, 70);
    assert_int_equal(cfg.join_rate, 9);
    assert_int_equal(cfg.db_pool, 2);
    assert_false(cfg.db_pool_capped);
    assert_int_equal(cfg.drain_seconds, 0);
    assert_string_equal(cfg.log_level, "debug");
    /* The default instance id follows the configured port. */
    assert_non_null(strstr(cfg.instance_id, ":9000"));
}

static void test_env_prefix_is_not_a_match(void **state)
{
    (void)state;
    /* TALLY_THREADSX is a different variable; the first TALLY_THREADS wins like getenv. */
    assert_int_equal(parse(NULL, ENVP("TALLY_THREADSX=oops", "TALLY_THREADS=2",
                                      "TALLY_THREADS=7")),
                     0);
    assert_int_equal(cfg.threads, 2);
}

static void test_flags_both_forms(void **state)
{
    (void)state;
    assert_int_equal(parse(ARGV("--listen", "10.1.2.3:81", "--threads=5", "--capacity", "1",
                                "--max-connections=10000000", "--join-rate", "1000000",
                                "--instance-id=eu-1", "--db-pool", "1", "--drain-seconds=3600",
                                "--log-level", "error", "--data-dir=/d", "--database-url",
                                "host=/tmp dbname=t"),
                           NULL),
                     0);
    assert_string_equal(cfg.listen_host, "10.1.2.3");
    assert_int_equal(cfg.listen_port, 81);
    assert_int_equal(cfg.threads, 5);
    assert_int_equal(cfg.capacity, 1);
    assert_int_equal(cfg.max_connections, 10000000);
    assert_int_equal(cfg.join_rate, 1000000);
    assert_string_equal(cfg.instance_id, "eu-1");
    assert_int_equal(cfg.db_pool, 1);
    assert_int_equal(cfg.drain_seconds, 3600);
    assert_string_equal(cfg.log_level, "error");
    assert_string_equal(cfg.data_dir, "/d");
    assert_string_equal(cfg.database_url, "host=/tmp dbname=t");
}

static void test_flag_beats_env(void **state)
{
    (void)state;
    assert_int_equal(parse(ARGV("--threads", "4", "--database-url="),
                           ENVP("TALLY_THREADS=9", "TALLY_DATABASE_URL=postgres://x/y",
                                "TALLY_INSTANCE_ID=from-env")),
                     0);
    assert_int_equal(cfg.threads, 4);
    /* An explicit empty --database-url means embedded even if the env names a server. */
    assert_string_equal(cfg.database_url, "");
    assert_string_equal(cfg.instance_id, "from-env");

    /* The last of repeated flags wins. */
    assert_int_equal(parse(ARGV("--threads=2", "--threads=3"), NULL), 0);
    assert_int_equal(cfg.threads, 3);
}

static void test_threads_bounds(void **state)
{
    (void)state;
    assert_int_equal(parse(ARGV("--threads=1"), NULL), 0);
    assert_int_equal(cfg.threads, 1);
    assert_int_equal(parse(ARGV("--threads=256"), NULL), 0);
    assert_int_equal(cfg.threads, 256);
    expect_error(ARGV("--threads=0"), NULL,
                 "invalid --threads '0': expected an integer from 1 to 256");
    expect_error(ARGV("--threads=257"), NULL,
                 "invalid --threads '257': expected an integer from 1 to 256");
    expect_error(ARGV("--threads", "abc"), NULL,
                 "invalid --threads 'abc': expected an integer from 1 to 256");
    expect_error(NULL, ENVP("TALLY_THREADS=x"),
                 "invalid TALLY_THREADS 'x': expected an integer from 1 to 256");
}

static void test_integer_syntax(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "+4", "-4", " 4", "4 ", "4x", "0x10", "4.0",
                                      "99999999999999999999999", "4294967297"};
    char arg[64], want[160];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(arg, sizeof(arg), "--join-rate=%s", bad[i]);
        snprintf(want, sizeof(want),
                 "invalid --join-rate '%s': expected an integer from 1 to 1000000", bad[i]);
        expect_error(ARGV(arg), NULL, want);
    }
    /* Leading zeros are still a plain decimal integer. */
    assert_int_equal(parse(ARGV("--join-rate=007"), NULL), 0);
    assert_int_equal(cfg.join_rate, 7);
}

static void test_other_integer_bounds(void **state)
{
    (void)state;
    expect_error(ARGV("--capacity=0"), NULL,
                 "invalid --capacity '0': expected an integer from 1 to 100000000");
    expect_error(ARGV("--capacity=100000001"), NULL,
                 "invalid --capacity '100000001': expected an integer from 1 to 100000000");
    assert_int_equal(parse(ARGV("--capacity=100000000"), NULL), 0);
    assert_int_equal(cfg.capacity, 100000000);
    expect_error(ARGV("--max-connections=0"), NULL,
                 "invalid --max-connections '0': expected an integer from 1 to 10000000");
    expect_error(ARGV("--max-connections=10000001"), NULL,
                 "invalid --max-connections '10000001': expected an integer from 1 to 10000000");
    assert_int_equal(parse(ARGV("--max-connections=1"), NULL), 0);
    assert_int_equal(cfg.max_connections, 1);
    expect_error(ARGV("--join-rate=0"), NULL,
                 "invalid --join-rate '0': expected an integer from 1 to 1000000");
    expect_error(ARGV("--join-rate=1000001"), NULL,
                 "invalid --join-rate '1000001': expected an integer from 1 to 1000000");
    expect_error(ARGV("--drain-seconds=3601"), NULL,
                 "invalid --drain-seconds '3601': expected an integer from 0 to 3600");
    expect_error(ARGV("--db-pool=0"), NULL,
                 "invalid --db-pool '0': expected an integer from 1 to 1024");
    expect_error(ARGV("--db-pool=1025"), NULL,
                 "invalid --db-pool '1025': expected an integer from 1 to 1024");
    expect_error(NULL, ENVP("TALLY_CAPACITY=-1"),
                 "invalid TALLY_CAPACITY '-1': expected an integer from 1 to 100000000");
}

static void test_db_pool_capping(void **state)
{
    (void)state;
    unsigned cap = 4 * cores();
    char arg[32];

    snprintf(arg, sizeof(arg), "--db-pool=%u", cap);
    assert_int_equal(parse(ARGV(arg), NULL), 0);
    assert_int_equal(cfg.db_pool, cap);
    assert_false(cfg.db_pool_capped);

    if (cap + 1 <= 1024) {
        snprintf(arg, sizeof(arg), "--db-pool=%u", cap + 1);
        assert_int_equal(parse(ARGV(arg), NULL), 0);
        assert_int_equal(cfg.db_pool, cap);
        assert_true(cfg.db_pool_capped);
    }
    if (cap < 1024) {
        assert_int_equal(parse(ARGV("--db-pool=1024"), NULL), 0);
        assert_int_equal(cfg.db_pool, cap);
        assert_true(cfg.db_pool_capped);
    }
}

static void test_listen(void **state)
{
    (void)state;
    assert_int_equal(parse(ARGV("--listen=[::1]:8443"), NULL), 0);
    assert_string_equal(cfg.listen_host, "::1");
    assert_int_equal(cfg.listen_port, 8443);
    assert_int_equal(parse(ARGV("--listen", "[::]:1"), NULL), 0);
    assert_string_equal(cfg.listen_host, "::");
    assert_int_equal(cfg.listen_port, 1);
    assert_int_equal(parse(ARGV("--listen=[2001:db8::7]:65535"), NULL), 0);
    assert_string_equal(cfg.listen_host, "2001:db8::7");
    assert_int_equal(cfg.listen_port, 65535);
    assert_int_equal(parse(NULL, ENVP("TALLY_LISTEN=192.168.0.1:80")), 0);
    assert_string_equal(cfg.listen_host, "192.168.0.1");
    assert_int_equal(cfg.listen_port, 80);

    static const char *const bad[] = {
        "127.0.0.1",       "127.0.0.1:",     "127.0.0.1:0",  "127.0.0.1:65536", ":8080",
        "::1:8080",        "[::1]8080",      "[::1]:",       "[]:80",           "[::1:80",
        "256.1.1.1:80",    "host.name:80",   "[1.2.3.4]:80", "1.2.3.4:+80",     "1.2.3.4:80x",
        "[::1]:99999999999",
    };
    char arg[64], want[200];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(arg, sizeof(arg), "--listen=%s", bad[i]);
        snprintf(want, sizeof(want),
                 "invalid --listen '%s': expected IPv4:port or [IPv6]:port with a port from 1 "
                 "to 65535",
                 bad[i]);
        expect_error(ARGV(arg), NULL, want);
    }
}

static void test_strings(void **state)
{
    (void)state;
    expect_error(ARGV("--data-dir="), NULL, "invalid --data-dir '': expected a non-empty path");
    expect_error(ARGV("--log-level=verbose"), NULL,
                 "invalid --log-level 'verbose': expected debug, info, warn or error");
    expect_error(NULL, ENVP("TALLY_LOG_LEVEL=INFO"),
                 "invalid TALLY_LOG_LEVEL 'INFO': expected debug, info, warn or error");
    expect_error(ARGV("--instance-id=a b"), NULL,
                 "invalid --instance-id 'a b': expected printable ASCII without spaces, quotes "
                 "or backslashes");
    expect_error(ARGV("--instance-id="), NULL,
                 "invalid --instance-id '': expected printable ASCII without spaces, quotes or "
                 "backslashes");

    /* Exactly at the field size: 127 bytes fit, 128 do not. */
    char id[200] = "--instance-id=";
    memset(id + strlen(id), 'a', 127);
    id[14 + 127] = '\0';
    assert_int_equal(parse(ARGV(id), NULL), 0);
    assert_int_equal(strlen(cfg.instance_id), 127);
    id[14 + 127] = 'a';
    id[14 + 128] = '\0';
    assert_int_equal(parse(ARGV(id), NULL), -EINVAL);
    assert_non_null(strstr(err, "invalid --instance-id '"));
    assert_non_null(strstr(err, "': longer than 127 bytes"));

    /* The database URL may hold a password: its errors never echo it. */
    char url[CONFIG_STR_MAX + 32] = "--database-url=postgres://u:secret@h/";
    size_t len = strlen(url);
    memset(url + len, 'd', sizeof(url) - len - 1);
    url[sizeof(url) - 1] = '\0';
    expect_error(ARGV(url), NULL, "invalid --database-url: longer than 511 bytes");
}

static void test_bad_usage(void **state)
{
    (void)state;
    expect_error(ARGV("--foo"), NULL, "unknown option '--foo'");
    expect_error(ARGV("--foo=1"), NULL, "unknown option '--foo'");
    expect_error(ARGV("--thread=1"), NULL, "unknown option '--thread'");
    expect_error(ARGV("--listen"), NULL, "missing value for --listen");
    expect_error(ARGV("--database-url", "--threads", "2"), NULL,
                 "missing value for --database-url");
    expect_error(ARGV("serve"), NULL, "unexpected argument 'serve'");
    expect_error(ARGV("--"), NULL, "unexpected argument '--'");
    expect_error(ARGV("--help=1"), NULL, "option --help takes no value");
    /* A bad environment value is reported even when a flag would override it. */
    expect_error(ARGV("--threads=2"), ENVP("TALLY_THREADS=0"),
                 "invalid TALLY_THREADS '0': expected an integer from 1 to 256");
}

static void test_help(void **state)
{
    (void)state;
    assert_int_equal(parse(ARGV("--threads=2", "--help"), NULL), 1);
    static const char *const names[] = {"--listen",        "TALLY_LISTEN",  "--database-url",
                                        "--data-dir",      "--threads",     "--capacity",
                                        "--max-connections", "--join-rate", "--instance-id",
                                        "--db-pool",       "--drain-seconds", "--log-level",
                                        "TALLY_DRAIN_SECONDS", "--help"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_non_null(strstr(err, names[i]));

    /* A small buffer gets a cut but terminated text. */
    char small[20];
    memset(small, 'x', sizeof(small));
    config_usage(small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

/* ---- the measured capacity file: <data-dir>/capacity.json ---- */

static char capdir[64];
static char capflag[96]; /* "--data-dir=<capdir>" */
static char capenv[96];  /* "TALLY_DATA_DIR=<capdir>" */
static char cappath[128];

static int setup_capdir(void **state)
{
    (void)state;
    snprintf(capdir, sizeof(capdir), "/tmp/test_config.XXXXXX");
    if (mkdtemp(capdir) == NULL)
        return -1;
    snprintf(capflag, sizeof(capflag), "--data-dir=%s", capdir);
    snprintf(capenv, sizeof(capenv), "TALLY_DATA_DIR=%s", capdir);
    snprintf(cappath, sizeof(cappath), "%s/capacity.json", capdir);
    return 0;
}

static int teardown_capdir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", capdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_capfile(const char *text)
{
    FILE *f = fopen(cappath, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void describe(char *out, size_t len)
{
    config_capacity_describe(&cfg, out, len);
}

/* The file gives the capacity; the line says so with its p95 and date. */
static void test_capacity_measured(void **state)
{
    (void)state;
    char line[1024], want[1024];
    write_capfile("{\"participants\":41000,\"p95_ms\":87.25,"
                  "\"measured_at\":\"2026-11-22T10:00:00Z\"}\n");
    assert_int_equal(parse(ARGV(capflag), NULL), 0);
    assert_int_equal(cfg.capacity, 41000);
    assert_int_equal(cfg.capacity_source, CONFIG_CAPACITY_FROM_FILE);
    assert_string_equal(cfg.capacity_file, cappath);
    assert_true(cfg.capacity_p95_ms > 87.24 && cfg.capacity_p95_ms < 87.26);
    assert_string_equal(cfg.capacity_measured_at, "2026-11-22T10:00:00Z");
    assert_string_equal(cfg.capacity_warning, "");
    describe(line, sizeof(line));
    snprintf(want, sizeof(want),
             "capacity 41000 participants, measured (%s: p95 87.2 ms, measured at "
             "2026-11-22T10:00:00Z)",
             cappath);
    assert_string_equal(line, want);

    /* The data dir from the environment is used the same way. */
    assert_int_equal(parse(NULL, ENVP(capenv)), 0);
    assert_int_equal(cfg.capacity, 41000);

    /* The whole report (capacity.json of `--out`) works too: the figure is its
     * top-level field, whatever the steps and limits nested inside hold. */
    write_capfile("{\"steps\":[{\"participants\":5,\"p95_ms\":1,\"x\":[true,false,null,"
                  "\"}\\\"\"]}],\"limits\":{\"p95_ms\":100.0},\"participants\":1,"
                  "\"measured_at\":\"with \\\\ escape\"}");
    assert_int_equal(parse(ARGV(capflag), NULL), 0);
    assert_int_equal(cfg.capacity, 1);
    assert_true(cfg.capacity_p95_ms < 0); /* not the nested ones */
    assert_string_equal(cfg.capacity_measured_at, "");
    describe(line, sizeof(line));
    assert_non_null(strstr(line, "p95 not recorded, measured at an unknown time"));

    write_capfile("  {\"participants\" : 100000000 , \"p95_ms\" : null }  ");
    assert_int_equal(parse(ARGV(capflag), NULL), 0);
    assert_int_equal(cfg.capacity, 100000000);
}

static void test_capacity_file_absent(void **state)
{
    (void)state;
    char line[1024], want[1024];
    assert_int_equal(parse(ARGV(capflag), NULL), 0);
    assert_int_equal(cfg.capacity, 0);
    assert_int_equal(cfg.capacity_source, CONFIG_CAPACITY_FROM_DEFAULT);
    assert_string_equal(cfg.capacity_warning, "");
    describe(line, sizeof(line));
    snprintf(want, sizeof(want),
             "capacity 500 participants, the default (no measured figure at %s)", cappath);
    assert_string_equal(line, want);
}

/* Each unusable file: the default, and a warning naming the file and why. */
static void test_capacity_file_unusable(void **state)
{
    (void)state;
    static const struct {
        const char *text, *why;
    } cases[] = {
        {"", "not a JSON object"},
        {"[{\"participants\":5}]", "not a JSON object"},
        {"{\"participants\":500", "not valid JSON"},
        {"{\"participants\":}", "not valid JSON"},
        {"{\"participants\" 5}", "not valid JSON"},
        {"{\"participants\":5,}", "not valid JSON"},
        {"{\"a\":\"unterminated}", "not valid JSON"},
        {"{\"a\":\"ctl\x01\",\"participants\":5}", "not valid JSON"},
        {"{\"participants\":5} {}", "not valid JSON (text after the object)"},
        {"{}", "no \"participants\" field"},
        {"{\"p95_ms\":3.5}", "no \"participants\" field"},
        {"{\"participants\":\"500\"}", "\"participants\" is not an integer"},
        {"{\"participants\":5.5}", "\"participants\" is not an integer"},
        {"{\"participants\":1e3}", "\"participants\" is not an integer"},
        {"{\"participants\":null}", "\"participants\" is not an integer"},
        {"{\"participants\":0}", "\"participants\" is out of range 1..100000000"},
        {"{\"participants\":-4}", "\"participants\" is out of range 1..100000000"},
        {"{\"participants\":100000001}", "\"participants\" is out of range 1..100000000"},
        {"{\"participants\":99999999999999999999999}",
         "\"participants\" is out of range 1..100000000"},
        {"{\"participants\":5,\"p95_ms\":\"fast\"}", "\"p95_ms\" is not a number of milliseconds"},
        {"{\"participants\":5,\"p95_ms\":-1}", "\"p95_ms\" is not a number of milliseconds"},
        {"{\"participants\":5,\"p95_ms\":1e999}", "\"p95_ms\" is not a number of milliseconds"},
        {"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
         "],\"participants\":5}",
         "not valid JSON"},
    };
    char want[1024], line[1024];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_capfile(cases[i].text);
        assert_int_equal(parse(ARGV(capflag), NULL), 0);
        snprintf(want, sizeof(want), "ignoring the measured capacity file %s: %s", cappath,
                 cases[i].why);
        if (strcmp(cfg.capacity_warning, want) != 0)
            fail_msg("case %zu '%s': got '%s'", i, cases[i].text, cfg.capacity_warning);
        assert_int_equal(cfg.capacity, 0);
        assert_int_equal(cfg.capacity_source, CONFIG_CAPACITY_FROM_DEFAULT);
        assert_true(cfg.capacity_p95_ms < 0);
        assert_string_equal(cfg.capacity_measured_at, "");
        describe(line, sizeof(line));
        assert_non_null(strstr(line, "capacity 500 participants, the default (unusable"));
    }
}

static void test_capacity_file_not_regular(void **state)
{
    (void)state;
    char want[1024];
    assert_int_equal(mkdir(cappath, 0700), 0);
    assert_int_equal(parse(ARGV(capflag), NULL), 0);
    snprintf(want, sizeof(want), "ignoring the measured capacity file %s: not a regular file",
             cappath);
    assert_string_equal(cfg.capacity_warning, want);
    assert_int_equal(cfg.capacity, 0);
    assert_int_equal(rmdir(cappath), 0);

    /* One byte past the size bound: refused unread. */
    char *big = malloc(CONFIG_CAPACITY_FILE_BYTES_MAX + 2);
    assert_non_null(big);
    memset(big, ' ', CONFIG_CAPACITY_FILE_BYTES_MAX + 1);
    memcpy(big, "{\"participants\":5}", 18);
    big[CONFIG_CAPACITY_FILE_BYTES_MAX + 1] = '\0';
    write_capfile(big);
    assert_int_equal(parse(ARGV(capflag), NULL), 0);
    assert_non_null(strstr(cfg.capacity_warning, ": larger than 262144 bytes"));
    assert_int_equal(cfg.capacity, 0);
    /* Exactly at the bound: read. */
    big[CONFIG_CAPACITY_FILE_BYTES_MAX] = '\0';
    write_capfile(big);
    assert_int_equal(parse(ARGV(capflag), NULL), 0);
    assert_int_equal(cfg.capacity, 5);
    free(big);
}

/* --capacity and TALLY_CAPACITY win over the file, which is then not even read. */
static void test_capacity_flag_env_win(void **state)
{
    (void)state;
    char line[1024];
    write_capfile("{\"participants\":41000}");
    assert_int_equal(parse(ARGV(capflag, "--capacity=20"), NULL), 0);
    assert_int_equal(cfg.capacity, 20);
    assert_int_equal(cfg.capacity_source, CONFIG_CAPACITY_FROM_FLAG);
    assert_string_equal(cfg.capacity_file, "");
    describe(line, sizeof(line));
    assert_string_equal(line, "capacity 20 participants, from --capacity");

    assert_int_equal(parse(ARGV(capflag), ENVP("TALLY_CAPACITY=30")), 0);
    assert_int_equal(cfg.capacity, 30);
    assert_int_equal(cfg.capacity_source, CONFIG_CAPACITY_FROM_ENV);
    describe(line, sizeof(line));
    assert_string_equal(line, "capacity 30 participants, from TALLY_CAPACITY");

    assert_int_equal(parse(ARGV("--capacity", "40", capflag), ENVP("TALLY_CAPACITY=30")), 0);
    assert_int_equal(cfg.capacity, 40);
    assert_int_equal(cfg.capacity_source, CONFIG_CAPACITY_FROM_FLAG);

    /* A malformed file is not looked at either when the flag is given. */
    write_capfile("garbage");
    assert_int_equal(parse(ARGV(capflag, "--capacity=7"), NULL), 0);
    assert_string_equal(cfg.capacity_warning, "");
    /* And a bad flag value is still a configuration error, file or not. */
    expect_error(ARGV(capflag, "--capacity=0"), NULL,
                 "invalid --capacity '0': expected an integer from 1 to 100000000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_env_prefix_is_not_a_match),
        cmocka_unit_test(test_flags_both_forms),
        cmocka_unit_test(test_flag_beats_env),
        cmocka_unit_test(test_threads_bounds),
        cmocka_unit_test(test_integer_syntax),
        cmocka_unit_test(test_other_integer_bounds),
        cmocka_unit_test(test_db_pool_capping),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_bad_usage),
        cmocka_unit_test(test_help),
        cmocka_unit_test_setup_teardown(test_capacity_measured, setup_capdir, teardown_capdir),
        cmocka_unit_test_setup_teardown(test_capacity_file_absent, setup_capdir, teardown_capdir),
        cmocka_unit_test_setup_teardown(test_capacity_file_unusable, setup_capdir,
                                        teardown_capdir),
        cmocka_unit_test_setup_teardown(test_capacity_file_not_regular, setup_capdir,
                                        teardown_capdir),
        cmocka_unit_test_setup_teardown(test_capacity_flag_env_win, setup_capdir,
                                        teardown_capdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
