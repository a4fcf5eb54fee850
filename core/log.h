/*
 * log.h - one line per event on stderr, written with a single write(2) so
 * lines from different threads never interleave.
 *
 * Format: "2026-11-22T07:31:23.123Z LEVEL instance message". Callers never
 * pass tokens; log_redact() exists for the places that echo client input.
 */
#ifndef TALLY_CORE_LOG_H
#define TALLY_CORE_LOG_H

#include <stdarg.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/** Sets the threshold and the instance id printed on each line. Call once at start. */
void log_init(enum log_level level, const char *instance_id);
/** Parses "debug|info|warn|error"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
/** Any thread. Lines longer than 2 KiB are cut. */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
