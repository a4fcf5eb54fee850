/*
 * config.c - tallyd's options (CONTRACT section 1).
 *
 * Sources are applied in order defaults -> environment -> flags, so a flag
 * always wins. Every option is described once in config_opts[]: the flag, its
 * environment name, how to parse it and its bounds. Values that depend on
 * other options (the instance id needs the final port) or on the machine (the
 * db pool cap) are derived at the end. Parsing never exits and never logs:
 * errors go back to main() as one line naming the option.
 *
 * When neither --capacity nor TALLY_CAPACITY is given, the measured figure
 * is read from <data-dir>/capacity.json (written by `tally-stress capacity
 * --figure`). Its three fields are picked out by a small JSON scanner here
 * rather than by jansson: core links no third-party library but Concurrency
 * Kit, everything links core, and one integer, one number and one string do
 * not justify changing that. The scanner checks the whole document's syntax
 * (so a truncated or garbled file is reported, not half-read) and bounds its
 * nesting and the file's size.
 */
#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base.h"
#include "core/log.h"

#define CONFIG_THREADS_MAX 256
#define CONFIG_MAX_CONNECTIONS_MAX 10000000u
#define CONFIG_JOIN_RATE_MAX 1000000u
#define CONFIG_DB_POOL_MAX 1024
#define CONFIG_DB_POOL_PER_CORE 4
#define CONFIG_DRAIN_SECONDS_MAX 3600
#define CONFIG_DEFAULT_PORT 8080

enum opt_kind {
    OPT_LISTEN,
    OPT_STR,      /* free text; may be empty */
    OPT_PATH,     /* non-empty text */
    OPT_U32,      /* integer within [min, max] */
    OPT_INSTANCE, /* printable ASCII without blanks, quotes or backslashes */
    OPT_LOG_LEVEL,
};

struct config_opt {
    const char *flag; /* without the leading "--" */
    const char *env;
    enum opt_kind kind;
    size_t offset;   /* field in struct config */
    size_t size;     /* field size, for strings */
    uint32_t min, max;
    bool secret;     /* never echo the value in an error */
    const char *help;
};

#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)

static const struct config_opt config_opts[] = {
    {"listen", "TALLY_LISTEN", OPT_LISTEN, FIELD(listen_host), 0, 0, false,
     "address:port for HTTP, WebSocket and SSE (IPv4 or [IPv6]:port; default 127.0.0.1:8080)"},
    {"database-url", "TALLY_DATABASE_URL", OPT_STR, FIELD(database_url), 0, 0, true,
     "libpq connection string; unset or empty = embedded PostgreSQL"},
    {"data-dir", "TALLY_DATA_DIR", OPT_PATH, FIELD(data_dir), 0, 0, false,
     "where the embedded PostgreSQL cluster lives (default ./var)"},
    {"threads", "TALLY_THREADS", OPT_U32, FIELD(threads), 1, CONFIG_THREADS_MAX, false,
     "network threads, 1 to 256 (default: online cores)"},
    {"capacity", "TALLY_CAPACITY", OPT_U32, FIELD(capacity), 1, CONFIG_CAPACITY_MAX, false,
     "planned participants for this instance (default: the measured figure in "
     "DATA_DIR/capacity.json, else 500)"},
    {"max-connections", "TALLY_MAX_CONNECTIONS", OPT_U32, FIELD(max_connections), 1,
     CONFIG_MAX_CONNECTIONS_MAX, false, "hard cap on client connections (default 200000)"},
    {"join-rate", "TALLY_JOIN_RATE", OPT_U32, FIELD(join_rate), 1, CONFIG_JOIN_RATE_MAX, false,
     "joins per second per client address, burst 5 s worth (default 200)"},
    {"instance-id", "TALLY_INSTANCE_ID", OPT_INSTANCE, FIELD(instance_id), 0, 0, false,
     "names this instance in logs, metrics and event_log (default hostname:port)"},
    {"db-pool", "TALLY_DB_POOL", OPT_U32, FIELD(db_pool), 1, CONFIG_DB_POOL_MAX, false,
     "storage connections, 1 to 1024, capped at 4 x cores (default 4)"},
    {"drain-seconds", "TALLY_DRAIN_SECONDS", OPT_U32, FIELD(drain_seconds), 0,
     CONFIG_DRAIN_SECONDS_MAX, false, "graceful shutdown budget in seconds (default 10)"},
    {"log-level", "TALLY_LOG_LEVEL", OPT_LOG_LEVEL, FIELD(log_level), 0, 0, false,
     "debug, info, warn or error (default info)"},
};

/* How an option was named where the bad value came from: "--threads" or "TALLY_THREADS". */
struct opt_src {
    const struct config_opt *opt;
    bool from_env;
};

static void err_set(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void err_set(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* "invalid --threads 'abc': expected ..." (the value left out for secrets). */
static int err_invalid(char *err, size_t err_len, struct opt_src src, const char *value,
                       const char *expected)
{
    const char *dashes = src.from_env ? "" : "--";
    const char *name = src.from_env ? src.opt->env : src.opt->flag;
    if (src.opt->secret)
        err_set(err, err_len, "invalid %s%s: %s", dashes, name, expected);
    else
        err_set(err, err_len, "invalid %s%s '%s': %s", dashes, name, value, expected);
    return -EINVAL;
}

/* Digits only: no sign, no blanks, no trailing junk, no overflow past max. */
static bool parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    if (*s == '\0')
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > max)
            return false; /* also stops before v can overflow */
    }
    if (v < min)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* "1.2.3.4:80" or "[::1]:80" into host (without brackets) and port. */
static bool parse_listen(const char *s, char *host, size_t host_len, uint16_t *port)
{
    char tmp[64];
    const char *colon;
    const char *h;
    size_t hlen;
    int family;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return false;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        family = AF_INET6;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return false;
        h = s;
        hlen = (size_t)(colon - s);
        family = AF_INET;
    }
    if (hlen == 0 || hlen >= sizeof(tmp) || hlen >= host_len)
        return false;
    memcpy(tmp, h, hlen);
    tmp[hlen] = '\0';
    unsigned char addr[16];
    if (inet_pton(family, tmp, addr) != 1)
        return false;
    uint32_t p;
    if (!parse_u32(colon + 1, 1, 65535, &p))
        return false;
    memcpy(host, tmp, hlen + 1);
    *port = (uint16_t)p;
    return true;
}

static bool instance_id_valid(const char *s)
{
    if (*s == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return false;
    }
    return true;
}

static int apply_string(struct config *cfg, struct opt_src src, const char *value, char *err,
                        size_t err_len)
{
    const struct config_opt *o = src.opt;
    char *field = (char *)cfg + o->offset;
    char expected[96];

    if (strlen(value) >= o->size) {
        snprintf(expected, sizeof(expected), "longer than %zu bytes", o->size - 1);
        return err_invalid(err, err_len, src, value, expected);
    }
    if (o->kind == OPT_PATH && value[0] == '\0')
        return err_invalid(err, err_len, src, value, "expected a non-empty path");
    if (o->kind == OPT_INSTANCE && !instance_id_valid(value))
        return err_invalid(err, err_len, src, value,
                           "expected printable ASCII without spaces, quotes or backslashes");
    if (o->kind == OPT_LOG_LEVEL) {
        enum log_level lvl;
        if (log_level_parse(value, &lvl) != 0)
            return err_invalid(err, err_len, src, value, "expected debug, info, warn or error");
    }
    memcpy(field, value, strlen(value) + 1);
    return 0;
}

static int apply_value(struct config *cfg, struct opt_src src, const char *value, char *err,
                       size_t err_len, bool *instance_given)
{
    const struct config_opt *o = src.opt;
    char expected[96];

    switch (o->kind) {
    case OPT_LISTEN:
        if (!parse_listen(value, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port))
            return err_invalid(err, err_len, src, value,
                               "expected IPv4:port or [IPv6]:port with a port from 1 to 65535");
        return 0;
    case OPT_U32: {
        uint32_t v;
        if (!parse_u32(value, o->min, o->max, &v)) {
            snprintf(expected, sizeof(expected), "expected an integer from %u to %u", o->min,
                     o->max);
            return err_invalid(err, err_len, src, value, expected);
        }
        memcpy((char *)cfg + o->offset, &v, sizeof(v));
        if (o->offset == offsetof(struct config, capacity)) /* flags come last, so they win */
            cfg->capacity_source = src.from_env ? CONFIG_CAPACITY_FROM_ENV
                                                : CONFIG_CAPACITY_FROM_FLAG;
        return 0;
    }
    case OPT_INSTANCE:
        *instance_given = true;
        /* fall through */
    case OPT_STR:
    case OPT_PATH:
    case OPT_LOG_LEVEL:
        return apply_string(cfg, src, value, err, err_len);
    }
    TALLY_ASSERT(!"unknown option kind");
    return -EINVAL;
}

static unsigned online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : (unsigned)n;
}

static void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = CONFIG_DEFAULT_PORT;
    snprintf(cfg->data_dir, sizeof(cfg->data_dir), "./var");
    unsigned cores = online_cores();
    cfg->threads = cores > CONFIG_THREADS_MAX ? CONFIG_THREADS_MAX : cores;
    cfg->capacity = 0;
    cfg->capacity_source = CONFIG_CAPACITY_FROM_DEFAULT;
    cfg->capacity_p95_ms = -1.0;
    cfg->max_connections = 200000;
    cfg->join_rate = 200;
    cfg->db_pool = 4;
    cfg->drain_seconds = 10;
    snprintf(cfg->log_level, sizeof(cfg->log_level), "info");
}

/* The first "NAME=" entry wins, as getenv() would have it. */
static const char *env_lookup(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    }
    return NULL;
}

static int apply_env(struct config *cfg, char **envp, char *err, size_t err_len,
                     bool *instance_given)
{
    for (size_t i = 0; i < ARRAY_LEN(config_opts); i++) {
        const char *v = env_lookup(envp, config_opts[i].env);
        if (v == NULL)
            continue;
        struct opt_src src = {&config_opts[i], true};
        int rc = apply_value(cfg, src, v, err, err_len, instance_given);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static const struct config_opt *opt_find(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_LEN(config_opts); i++) {
        if (strlen(config_opts[i].flag) == len && strncmp(config_opts[i].flag, name, len) == 0)
            return &config_opts[i];
    }
    return NULL;
}

/* Handles argv[*i] (and its value); advances *i past what it consumed. */
static int apply_flag(struct config *cfg, int argc, char **argv, int *i, char *err,
                      size_t err_len, bool *instance_given)
{
    const char *arg = argv[*i];
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
        err_set(err, err_len, "unexpected argument '%s'", arg);
        return -EINVAL;
    }
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
    if (eq != NULL && strncmp(name, "help=", 5) == 0) {
        err_set(err, err_len, "option --help takes no value");
        return -EINVAL;
    }
    const struct config_opt *o = opt_find(name, name_len);
    if (o == NULL) {
        err_set(err, err_len, "unknown option '--%.*s'", (int)name_len, name);
        return -EINVAL;
    }
    const char *value;
    if (eq != NULL) {
        value = eq + 1;
    } else if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) {
        value = argv[++*i];
    } else {
        err_set(err, err_len, "missing value for --%s", o->flag);
        return -EINVAL;
    }
    struct opt_src src = {o, false};
    return apply_value(cfg, src, value, err, err_len, instance_given);
}

static bool help_asked(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

/* ---- the measured capacity file ---- */

#define CAPFILE_DEPTH_MAX 32 /* nesting the scanner follows before it gives up */
#define CAPFILE_NUM_MAX 32   /* characters of one number */

/* A cursor over the file's text. */
struct jscan {
    const char *p, *end;
};

static void js_ws(struct jscan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Consumes c (after blanks) when it is next. */
static bool js_lit(struct jscan *s, char c)
{
    js_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

/* A string; its raw content (escapes left as they are) in [*b, *e). */
static bool js_string(struct jscan *s, const char **b, const char **e)
{
    if (!js_lit(s, '"'))
        return false;
    *b = s->p;
    for (; s->p < s->end && *s->p != '"'; s->p++) {
        if ((unsigned char)*s->p < 0x20)
            return false;
        if (*s->p == '\\' && ++s->p == s->end)
            return false;
    }
    if (s->p == s->end)
        return false;
    *e = s->p++;
    return true;
}

/* Skips one value: string, object, array, or a number/true/false/null token. */
static bool js_skip(struct jscan *s, unsigned depth)
{
    const char *b, *e;
    js_ws(s);
    if (s->p == s->end || depth > CAPFILE_DEPTH_MAX)
        return false;
    char open = *s->p;
    if (open == '"')
        return js_string(s, &b, &e);
    if (open == '{' || open == '[') {
        char close = open == '{' ? '}' : ']';
        s->p++;
        if (js_lit(s, close))
            return true;
        do {
            if (open == '{' && !(js_string(s, &b, &e) && js_lit(s, ':')))
                return false;
            if (!js_skip(s, depth + 1))
                return false;
        } while (js_lit(s, ','));
        return js_lit(s, close);
    }
    const char *start = s->p;
    while (s->p < s->end && *s->p != '\0' && strchr("0123456789+-.eEtruefalsn", *s->p) != NULL)
        s->p++;
    return s->p > start;
}

static bool token_is(const char *b, const char *e, const char *word)
{
    return (size_t)(e - b) == strlen(word) && memcmp(b, word, (size_t)(e - b)) == 0;
}

/* "participants": an integer from 1 to CONFIG_CAPACITY_MAX. */
static const char *capfile_participants(const char *b, const char *e, uint32_t *out)
{
    bool negative = b < e && *b == '-';
    uint64_t v = 0;
    const char *p = b + negative;
    if (p == e)
        return "\"participants\" is not an integer";
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return "\"participants\" is not an integer";
        if (v <= CONFIG_CAPACITY_MAX)
            v = v * 10 + (uint64_t)(*p - '0');
    }
    if (negative || v < 1 || v > CONFIG_CAPACITY_MAX)
        return "\"participants\" is out of range 1..100000000";
    *out = (uint32_t)v;
    return NULL;
}

/* "p95_ms": a finite number >= 0, or null (unknown). */
static const char *capfile_p95(const char *b, const char *e, double *out)
{
    char num[CAPFILE_NUM_MAX];
    size_t n = (size_t)(e - b);
    if (token_is(b, e, "null"))
        return NULL;
    if (n == 0 || n >= sizeof(num))
        return "\"p95_ms\" is not a number of milliseconds";
    memcpy(num, b, n);
    num[n] = '\0';
    char *end;
    double v = strtod(num, &end);
    if (*end != '\0' || !isfinite(v) || v < 0)
        return "\"p95_ms\" is not a number of milliseconds";
    *out = v;
    return NULL;
}

/* "measured_at": kept when it is a plain printable string that fits. */
static void capfile_measured_at(struct config *cfg, const char *b, const char *e)
{
    size_t n = (size_t)(e - b);
    if (n < 2 || *b != '"' || n - 2 >= sizeof(cfg->capacity_measured_at))
        return;
    for (const char *p = b + 1; p < e - 1; p++) {
        if (*p < 0x20 || *p >= 0x7f || *p == '\\')
            return;
    }
    memcpy(cfg->capacity_measured_at, b + 1, n - 2);
    cfg->capacity_measured_at[n - 2] = '\0';
}

/* One "key": value pair of the top-level object; the fields tallyd uses are kept. */
static const char *capfile_member(struct jscan *s, struct config *cfg, uint32_t *n, bool *have_n)
{
    const char *kb, *ke;
    if (!js_string(s, &kb, &ke) || !js_lit(s, ':'))
        return "not valid JSON";
    js_ws(s);
    const char *vb = s->p;
    if (!js_skip(s, 1))
        return "not valid JSON";
    const char *ve = s->p;
    if (token_is(kb, ke, "participants")) {
        *have_n = true;
        return capfile_participants(vb, ve, n);
    }
    if (token_is(kb, ke, "p95_ms"))
        return capfile_p95(vb, ve, &cfg->capacity_p95_ms);
    if (token_is(kb, ke, "measured_at"))
        capfile_measured_at(cfg, vb, ve);
    return NULL;
}

/* The whole document: one object holding "participants". "" or why not. */
static const char *capfile_scan(struct config *cfg, const char *text, size_t len, uint32_t *n)
{
    struct jscan s = {text, text + len};
    bool have_n = false;
    if (!js_lit(&s, '{'))
        return "not a JSON object";
    if (!js_lit(&s, '}')) {
        do {
            const char *why = capfile_member(&s, cfg, n, &have_n);
            if (why != NULL)
                return why;
        } while (js_lit(&s, ','));
        if (!js_lit(&s, '}'))
            return "not valid JSON";
    }
    js_ws(&s);
    if (s.p != s.end)
        return "not valid JSON (text after the object)";
    return have_n ? "" : "no \"participants\" field";
}

/* The file's bytes into a buffer of its own (NUL-terminated). Returns 0 or
 * -errno: -EFBIG past CONFIG_CAPACITY_FILE_BYTES_MAX, -EINVAL for a directory,
 * FIFO or device (opened without blocking, never read). */
static int capfile_read(const char *path, char **text, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = -errno;
    else if (!S_ISREG(st.st_mode))
        rc = -EINVAL;
    else if ((uint64_t)st.st_size > CONFIG_CAPACITY_FILE_BYTES_MAX)
        rc = -EFBIG;
    if (rc == 0) {
        *text = xmalloc((size_t)st.st_size + 1);
        size_t got = 0;
        while (got < (size_t)st.st_size && rc == 0) {
            ssize_t r = read(fd, *text + got, (size_t)st.st_size - got);
            rc = r < 0 ? -errno : r == 0 ? 1 : 0; /* 1: the file shrank; scan what is there */
            got += r > 0 ? (size_t)r : 0;
        }
        (*text)[got] = '\0';
        *len = got;
        rc = rc > 0 ? 0 : rc;
    }
    close(fd);
    return rc;
}

/* No --capacity, no TALLY_CAPACITY: the measured figure, when there is a usable one. */
static void capacity_from_file(struct config *cfg)
{
    char *text = NULL, why[96] = "";
    size_t len = 0;
    uint32_t n = 0;
    snprintf(cfg->capacity_file, sizeof(cfg->capacity_file), "%s/%s", cfg->data_dir,
             CONFIG_CAPACITY_FILE);
    int rc = capfile_read(cfg->capacity_file, &text, &len);
    if (rc == -ENOENT)
        return; /* never measured: the default, silently */
    if (rc == -EFBIG)
        snprintf(why, sizeof(why), "larger than %u bytes", CONFIG_CAPACITY_FILE_BYTES_MAX);
    else if (rc == -EINVAL)
        snprintf(why, sizeof(why), "not a regular file");
    else if (rc < 0)
        snprintf(why, sizeof(why), "cannot read it (%s)", strerror(-rc));
    else
        snprintf(why, sizeof(why), "%s", capfile_scan(cfg, text, len, &n));
    free(text);
    if (why[0] == '\0') {
        cfg->capacity = n;
        cfg->capacity_source = CONFIG_CAPACITY_FROM_FILE;
        return;
    }
    cfg->capacity_p95_ms = -1.0;
    cfg->capacity_measured_at[0] = '\0';
    snprintf(cfg->capacity_warning, sizeof(cfg->capacity_warning),
             "ignoring the measured capacity file %s: %s", cfg->capacity_file, why);
}

/* Derived values: the db pool cap, the default instance id, the measured capacity. */
static void config_finish(struct config *cfg, bool instance_given)
{
    uint32_t pool_max = CONFIG_DB_POOL_PER_CORE * online_cores();
    if (cfg->db_pool > pool_max) {
        cfg->db_pool = pool_max;
        cfg->db_pool_capped = true;
    }
    if (!instance_given) {
        char host[64];
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        snprintf(cfg->instance_id, sizeof(cfg->instance_id), "%s:%u", host, cfg->listen_port);
    }
    if (cfg->capacity_source == CONFIG_CAPACITY_FROM_DEFAULT)
        capacity_from_file(cfg);
}

void config_capacity_describe(const struct config *cfg, char *out, size_t out_len)
{
    TALLY_ASSERT(cfg != NULL);
    TALLY_ASSERT(out != NULL && out_len > 0);
    char p95[48] = "p95 not recorded";
    switch (cfg->capacity_source) {
    case CONFIG_CAPACITY_FROM_FLAG:
        snprintf(out, out_len, "capacity %u participants, from --capacity", cfg->capacity);
        return;
    case CONFIG_CAPACITY_FROM_ENV:
        snprintf(out, out_len, "capacity %u participants, from TALLY_CAPACITY", cfg->capacity);
        return;
    case CONFIG_CAPACITY_FROM_FILE:
        if (cfg->capacity_p95_ms >= 0)
            snprintf(p95, sizeof(p95), "p95 %.1f ms", cfg->capacity_p95_ms);
        snprintf(out, out_len, "capacity %u participants, measured (%s: %s, measured at %s)",
                 cfg->capacity, cfg->capacity_file, p95,
                 cfg->capacity_measured_at[0] ? cfg->capacity_measured_at : "an unknown time");
        return;
    case CONFIG_CAPACITY_FROM_DEFAULT:
        snprintf(out, out_len, "capacity %u participants, the default (%s %s)",
                 CONFIG_CAPACITY_DEFAULT,
                 cfg->capacity_warning[0] ? "unusable measured figure in"
                                          : "no measured figure at",
                 cfg->capacity_file);
        return;
    }
    TALLY_ASSERT(!"unknown capacity source");
}

int config_parse(struct config *cfg, int argc, char **argv, char **envp, char *err, size_t err_len)
{
    TALLY_ASSERT(cfg != NULL);
    TALLY_ASSERT(argc >= 0 && (argc == 0 || argv != NULL));
    bool instance_given = false;

    if (err != NULL && err_len > 0)
        err[0] = '\0';
    config_defaults(cfg);
    if (help_asked(argc, argv)) {
        if (err != NULL)
            config_usage(err, err_len);
        return 1;
    }
    int rc = apply_env(cfg, envp, err, err_len, &instance_given);
    if (rc != 0)
        return rc;
    for (int i = 1; i < argc; i++) {
        rc = apply_flag(cfg, argc, argv, &i, err, err_len, &instance_given);
        if (rc != 0)
            return rc;
    }
    config_finish(cfg, instance_given);
    return 0;
}

/* Appends to out at *len; the text is cut, still terminated, when out is full. */
static void usage_append(char *out, size_t out_len, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void usage_append(char *out, size_t out_len, size_t *len, const char *fmt, ...)
{
    if (*len >= out_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *len, out_len - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len += (size_t)n;
}

void config_usage(char *out, size_t out_len)
{
    TALLY_ASSERT(out != NULL || out_len == 0);
    if (out_len == 0)
        return;
    size_t len = 0;
    out[0] = '\0';
    usage_append(out, out_len, &len,
                 "usage: tallyd [options]\n"
                 "Every option is also an environment variable; the flag wins.\n"
                 "Values are given as --flag value or --flag=value.\n\n");
    for (size_t i = 0; i < ARRAY_LEN(config_opts); i++) {
        const struct config_opt *o = &config_opts[i];
        usage_append(out, out_len, &len, "  --%-16s %-22s %s\n", o->flag, o->env, o->help);
    }
    usage_append(out, out_len, &len, "  --%-16s %-22s %s\n", "help", "", "print this text");
}
