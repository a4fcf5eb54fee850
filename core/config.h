/*
 * config.h - tallyd's options: long flags and TALLY_* environment variables,
 * the flag winning (CONTRACT section 1).
 *
 * config_parse() never exits: on a bad value it returns -EINVAL and writes one
 * line naming the option into err, and main() exits with status 2.
 *
 * The capacity: --capacity or TALLY_CAPACITY when given; otherwise the
 * figure `tally-stress capacity --figure` measured, read from
 * <data-dir>/capacity.json; otherwise 0, which the server reads as
 * CONFIG_CAPACITY_DEFAULT. A missing file is normal; an unusable one is
 * described in capacity_warning for main() to log, never an error.
 */
#ifndef TALLY_CORE_CONFIG_H
#define TALLY_CORE_CONFIG_H

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

#define CONFIG_STR_MAX 512
#define CONFIG_CAPACITY_MAX 100000000u
#define CONFIG_CAPACITY_DEFAULT 500u /* what the server uses while cfg->capacity is 0 */
#define CONFIG_CAPACITY_FILE "capacity.json"
#define CONFIG_CAPACITY_FILE_BYTES_MAX (256u * 1024u) /* the figure is ~100 bytes */

/** Where config.capacity came from. */
enum config_capacity_source {
    CONFIG_CAPACITY_FROM_DEFAULT, /* capacity 0: the server's default */
    CONFIG_CAPACITY_FROM_FLAG,    /* --capacity */
    CONFIG_CAPACITY_FROM_ENV,     /* TALLY_CAPACITY */
    CONFIG_CAPACITY_FROM_FILE,    /* <data-dir>/capacity.json, the measured figure */
};

struct config {
    char listen_host[64];             /* --listen host part, e.g. "127.0.0.1" */
    uint16_t listen_port;             /* --listen port part, 1..65535 */
    char database_url[CONFIG_STR_MAX]; /* --database-url; "" = embedded PostgreSQL */
    char data_dir[CONFIG_STR_MAX];    /* --data-dir, default "./var" */
    uint32_t threads;                 /* --threads, 1..256, default: online cores */
    uint32_t capacity;                /* --capacity, 0 = not given (measured or 500) */
    uint32_t max_connections;         /* --max-connections, 1..10000000, default 200000 */
    uint32_t join_rate;               /* --join-rate, 1..1000000, default 200 */
    char instance_id[128];            /* --instance-id, default "hostname:port" */
    uint32_t db_pool;                 /* --db-pool, 1..(4*cores) after capping, default 4 */
    bool db_pool_capped;              /* set when --db-pool was lowered to 4*cores */
    uint32_t drain_seconds;           /* --drain-seconds, 0..3600, default 10 */
    char log_level[16];               /* --log-level, default "info" */

    enum config_capacity_source capacity_source;
    char capacity_file[CONFIG_STR_MAX + 16]; /* <data-dir>/capacity.json, when it was looked at */
    double capacity_p95_ms;                  /* the file's p95 at that figure; < 0 when absent */
    char capacity_measured_at[64];           /* the file's measured_at; "" when absent */
    char capacity_warning[CONFIG_STR_MAX + 160]; /* why the file was not used; "" otherwise */
};

/**
 * Fills cfg from defaults, then environment (envp, NULL-terminated "K=V"
 * strings), then argv flags ("--flag value" and "--flag=value").
 * Returns 0, 1 when --help was asked (usage written into err), or -EINVAL with
 * a one-line message naming the option in err.
 */
int config_parse(struct config *cfg, int argc, char **argv, char **envp, char *err, size_t err_len);

/**
 * One line for the start-up log saying which capacity is in force and where
 * it came from (flag, environment, the measured file with its p95 and date,
 * or the default). Any thread.
 */
void config_capacity_describe(const struct config *cfg, char *out, size_t out_len);

/** Writes the usage text (every flag, env name and default). */
void config_usage(char *out, size_t out_len);

#endif
