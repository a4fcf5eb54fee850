/*
 * log.c - one line per event on stderr.
 *
 * Each line is formatted into a stack buffer and written with one write(2).
 * A line is at most LOG_LINE_MAX bytes, below PIPE_BUF, so even when stderr
 * is a pipe the kernel writes it whole: lines from different threads never
 * interleave and no lock is needed. The level and instance id are set once by
 * log_init() before other threads start; the level is an atomic so a late
 * change is still not a data race.
 */
#include "core/log.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/base.h"

#define LOG_LINE_MAX 2048
#define LOG_INSTANCE_MAX 128

static_assert(LOG_LINE_MAX <= PIPE_BUF, "a log line must be written atomically to a pipe");

static atomic_int log_threshold = LOG_INFO;
static char log_instance[LOG_INSTANCE_MAX] = "-";

static const char *const log_names[] = {
    [LOG_DEBUG] = "DEBUG",
    [LOG_INFO] = "INFO",
    [LOG_WARN] = "WARN",
    [LOG_ERROR] = "ERROR",
};

void log_init(enum log_level level, const char *instance_id)
{
    TALLY_ASSERT(level >= LOG_DEBUG && level <= LOG_ERROR);
    atomic_store_explicit(&log_threshold, (int)level, memory_order_relaxed);
    if (instance_id != NULL && instance_id[0] != '\0')
        snprintf(log_instance, sizeof(log_instance), "%s", instance_id);
}

int log_level_parse(const char *s, enum log_level *out)
{
    TALLY_ASSERT(out != NULL);
    if (s == NULL)
        return -EINVAL;
    static const char *const names[] = {
        [LOG_DEBUG] = "debug",
        [LOG_INFO] = "info",
        [LOG_WARN] = "warn",
        [LOG_ERROR] = "error",
    };
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* "2026-11-22T07:31:23.123Z" into out (at least 25 bytes); returns its length. */
static size_t log_timestamp(char *out, size_t out_len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(out, out_len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000L);
    TALLY_ASSERT(n > 0 && (size_t)n < out_len);
    return (size_t)n;
}

/* One write(2); retried only when interrupted before anything was written. */
static void log_emit(const char *line, size_t len)
{
    ssize_t w;
    do {
        w = write(STDERR_FILENO, line, len);
    } while (w < 0 && errno == EINTR);
}

void log_write(enum log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load_explicit(&log_threshold, memory_order_relaxed))
        return;
    if (level < LOG_DEBUG || level > LOG_ERROR)
        level = LOG_ERROR;

    int saved_errno = errno; /* callers often log right before reading errno */
    char line[LOG_LINE_MAX];
    size_t len = log_timestamp(line, sizeof(line));
    int n = snprintf(line + len, sizeof(line) - len, " %s %s ", log_names[level], log_instance);
    len += (size_t)n;
    TALLY_ASSERT(len < sizeof(line));

    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
    va_end(ap);
    if (n > 0)
        len += (size_t)n;
    /* Keep room for the newline: a cut line still ends with one. */
    if (len > sizeof(line) - 1)
        len = sizeof(line) - 1;
    line[len++] = '\n';
    log_emit(line, len);
    errno = saved_errno;
}
