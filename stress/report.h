/*
 * report.h - the capacity report of `tally-stress capacity`: a chart (SVG),
 * a self-contained page (HTML), the full result (JSON), and the one figure
 * tallyd reads at start (`<data-dir>/capacity.json`).
 *
 * The writers only format what the caller measured; they never decide which
 * step passed. Non-finite numbers never reach the output: the chart skips
 * them, the page shows "-", the JSON writes null. Every text field is escaped
 * for where it goes (XML/HTML entities, JSON escapes) and invalid UTF-8 is
 * replaced by '?'. All functions run on the caller's thread and keep no state.
 */
#ifndef TALLY_STRESS_REPORT_H
#define TALLY_STRESS_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/** One step of a capacity run: N subscribers held, results delivery latency at that N. */
struct report_step {
    uint32_t participants; /* subscribers connected during the step */
    double p50_ms, p90_ms, p95_ms, p99_ms, p999_ms, max_ms; /* results delivery latency */
    double error_rate;                                      /* errors / attempts, 0..1 */
    double server_cpu_pct; /* tallyd CPU over the step, % of one core; < 0 when unknown */
    double server_rss_mb;  /* tallyd RSS at the end of the step; < 0 when unknown */
    uint64_t delivered;    /* results messages delivered during the step */
};

/** A whole capacity run. Strings are borrowed. */
struct report_capacity {
    const char *target;       /* "127.0.0.1:8080" */
    const char *date;         /* RFC 3339 */
    const char *machine;      /* free text, e.g. "2 cores, 23 GiB, Linux 6.18" */
    uint32_t participants;    /* the figure: largest N that passed both limits (0 if none) */
    double p95_ms;            /* p95 at that N */
    const char *limit_reason; /* why the search stopped, e.g. "p95 124.0 ms > 100 ms at 60000" */
    double p95_limit_ms;      /* 100 */
    double error_limit;       /* 0.001 */
    const struct report_step *steps;
    size_t n_steps;
};

/** Steps beyond this many are refused (-E2BIG): a run is a bounded search. */
#define REPORT_STEPS_MAX 10000

/** Longest path (with its temporary suffix) the file writers accept; longer is -ENAMETOOLONG. */
#define REPORT_PATH_MAX 4096

/** Text fields longer than this many bytes are cut (at a character boundary). */
#define REPORT_TEXT_MAX 1024

/**
 * The chart alone, as a standalone SVG document. Returns 0, -EINVAL for a
 * NULL r or out (or steps NULL with n_steps > 0), -E2BIG past
 * REPORT_STEPS_MAX, or -EIO when writing to out failed.
 */
int report_write_svg(const struct report_capacity *r, FILE *out);

/** The page: title, the sentence, the chart inline, every step, the run and its limits.
 * Self-contained (no external resource). Returns as report_write_svg(). */
int report_write_html(const struct report_capacity *r, FILE *out);

/** The whole run as JSON (a superset of the figure file). Returns as report_write_svg(). */
int report_write_json(const struct report_capacity *r, FILE *out);

/**
 * Writes capacity.svg, capacity.html and capacity.json into dir (created,
 * with its parents, if missing), each through a temporary file and rename so
 * a reader never sees half a file. Returns 0 or -errno of the first failure.
 */
int report_write_files(const struct report_capacity *r, const char *dir);

/**
 * Writes the figure tallyd reads at start:
 * {"participants":N,"p95_ms":X,"measured_at":"<date>"}, atomically (temporary
 * file in the same directory, fsync, rename). The parent directory is created
 * if missing. Returns 0, -EINVAL when r->participants is 0 (no step passed:
 * there is no figure, and an earlier file is left as it was), or -errno.
 */
int report_write_figure(const struct report_capacity *r, const char *path);

/** Whether step s is within both of r's limits (p95 <= limit, error rate <= limit). */
bool report_step_within_limits(const struct report_capacity *r, const struct report_step *s);

#endif
