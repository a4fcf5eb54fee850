/*
 * config.h - tallyd's options: long flags and TALLY_* environment variables,
 * the flag winning (CONTRACT section 1).
 *
 * config_parse() never exits: on a bad value it returns -EINVAL and writes one
 * line naming the option into err, and main() exits with status 2.
 */
#ifndef TALLY_CORE_CONFIG_H
#define TALLY_CORE_CONFIG_H

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

#define CONFIG_STR_MAX 512

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
};

/**
 * Fills cfg from defaults, then environment (envp, NULL-terminated "K=V"
 * strings), then argv flags ("--flag value" and "--flag=value").
 * Returns 0, 1 when --help was asked (usage written into err), or -EINVAL with
 * a one-line message naming the option in err.
 */
int config_parse(struct config *cfg, int argc, char **argv, char **envp, char *err, size_t err_len);

/** Writes the usage text (every flag, env name and default). */
void config_usage(char *out, size_t out_len);

#endif
