/*
 * test_report.c - the capacity report writers: the SVG is well-formed XML
 * with one polyline point per known value, escapes every text, never writes
 * a non-finite number and copes with 0, 1 and many steps; the page holds the
 * chart and one row per step and loads nothing from elsewhere; the JSON
 * round-trips through jansson; the figure file has exactly its three fields
 * and replaces an earlier one atomically.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "stress/report.h"

#define MANY 12
#define XML_DEPTH_MAX 64
#define NAME_MAX_LEN 32

static struct report_step steps[MANY];
static char *doc;
static size_t doc_len;

/* A run of MANY steps, 1000 apart, in the order a search might take them. */
static struct report_capacity run_many(void)
{
    static const uint32_t order[MANY] = {1000, 2000, 4000, 8000,  6000,  7000,
                                         5000, 3000, 9000, 10000, 11000, 12000};
    for (size_t i = 0; i < MANY; i++) {
        double n = order[i] / 1000.0;
        steps[i] = (struct report_step){
            .participants = order[i],
            .p50_ms = 2.0 * n,
            .p90_ms = 5.0 * n,
            .p95_ms = 8.0 * n,
            .p99_ms = 11.0 * n,
            .p999_ms = 15.0 * n,
            .max_ms = 20.0 * n,
            .error_rate = n > 10 ? 0.01 : 0.0,
            .server_cpu_pct = i == 3 ? -1.0 : 9.0 * n, /* one step without a CPU figure */
            .server_rss_mb = 30.0 + n,
            .delivered = 1000u * order[i],
        };
    }
    return (struct report_capacity){
        .target = "127.0.0.1:8080",
        .date = "2026-11-22T10:00:00Z",
        .machine = "2 cores, 23 GiB, Linux 6.18",
        .participants = 9000,
        .p95_ms = 72.0,
        .limit_reason = "p95 80.0 ms > 75 ms at 10000",
        .p95_limit_ms = 75.0,
        .error_limit = 0.001,
        .steps = steps,
        .n_steps = MANY,
    };
}

typedef int (*writer_fn)(const struct report_capacity *r, FILE *out);

/* Runs w into the in-memory doc. */
static int render(writer_fn w, const struct report_capacity *r)
{
    free(doc);
    doc = NULL;
    FILE *f = open_memstream(&doc, &doc_len);
    assert_non_null(f);
    int rc = w(r, f);
    assert_int_equal(fclose(f), 0);
    return rc;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- a minimal XML checker: balanced tags, quoted attributes, known entities ---- */

static bool entity_ok(const char *p)
{
    static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};
    for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
        if (strncmp(p, ents[i], strlen(ents[i])) == 0)
            return true;
    }
    return false;
}

/* Attributes up to '>' or "/>": name="value" with no '<' and only known entities. */
static const char *xml_attrs(const char *p, bool *self_closing)
{
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '>' || (p[0] == '/' && p[1] == '>')) {
            *self_closing = *p == '/';
            return p + (*self_closing ? 2 : 1);
        }
        if (!isalpha((unsigned char)*p))
            return NULL;
        while (isalnum((unsigned char)*p) || *p == '-' || *p == ':' || *p == '_')
            p++;
        if (p[0] != '=' || p[1] != '"')
            return NULL;
        for (p += 2; *p != '"'; p++) {
            if (*p == '\0' || *p == '<' || (*p == '&' && !entity_ok(p)))
                return NULL;
        }
        p++;
    }
}

/* True when s (from its first '<') is one well-formed element tree. */
static bool xml_well_formed(const char *s)
{
    char stack[XML_DEPTH_MAX][NAME_MAX_LEN];
    int depth = 0, roots = 0;
    const char *p = s;
    if (strncmp(p, "<?xml", 5) == 0)
        p = strstr(p, "?>") + 2;
    while (*p != '\0') {
        if (*p == '&' && !entity_ok(p))
            return false;
        if (*p != '<') {
            if (depth == 0 && !isspace((unsigned char)*p))
                return false; /* text outside the root */
            p++;
            continue;
        }
        bool closing = p[1] == '/';
        const char *name = p + 1 + closing;
        size_t n = 0;
        while (isalnum((unsigned char)name[n]) || name[n] == '-')
            n++;
        if (n == 0 || n >= NAME_MAX_LEN)
            return false;
        if (closing) {
            if (depth == 0 || strlen(stack[depth - 1]) != n ||
                strncmp(stack[depth - 1], name, n) != 0 || name[n] != '>')
                return false;
            depth--;
            p = name + n + 1;
            continue;
        }
        bool self_closing = false;
        p = xml_attrs(name + n, &self_closing);
        if (p == NULL)
            return false;
        roots += depth == 0;
        if (!self_closing) {
            if (depth == XML_DEPTH_MAX)
                return false;
            memcpy(stack[depth], name, n);
            stack[depth++][n] = '\0';
        }
    }
    return depth == 0 && roots == 1;
}

/* The points of the polyline with class series-NAME: count, each within the view. */
static double last_max_y, last_min_y; /* of the last polyline_points() call */

static int polyline_points(const char *svg, const char *name, double *xs, size_t xs_max)
{
    char key[64];
    snprintf(key, sizeof(key), "class=\"series-%s\"", name);
    const char *p = strstr(svg, key);
    if (p == NULL)
        return -1;
    p = strstr(p, "points=\"") + 8;
    int n = 0;
    last_max_y = 0;
    last_min_y = 1e9;
    while (*p != '"') {
        char *end;
        double x = strtod(p, &end);
        assert_true(end != p && *end == ',');
        double y = strtod(end + 1, &end);
        assert_true(x >= 0 && x <= 880 && y >= 0 && y <= 520);
        last_max_y = y > last_max_y ? y : last_max_y;
        last_min_y = y < last_min_y ? y : last_min_y;
        if ((size_t)n < xs_max)
            xs[n] = x;
        n++;
        p = *end == ' ' ? end + 1 : end;
    }
    return n;
}

static void assert_no_non_finite(const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (strncasecmp(p, "nan", 3) == 0 || strncasecmp(p, "inf", 3) == 0)
            fail_msg("non-finite number near: %.40s", p > s + 20 ? p - 20 : s);
    }
}

/* ---- SVG ---- */

static void test_svg_many_steps(void **state)
{
    (void)state;
    struct report_capacity r = run_many();
    assert_int_equal(render(report_write_svg, &r), 0);
    assert_true(xml_well_formed(doc));
    assert_non_null(strstr(doc, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_non_null(strstr(doc, "this instance holds 9000 participants at p95 72.0 ms"));
    double xs[MANY];
    assert_int_equal(polyline_points(doc, "p50", xs, MANY), MANY);
    for (size_t i = 1; i < MANY; i++)
        assert_true(xs[i] > xs[i - 1]); /* drawn by participants, not by run order */
    assert_int_equal(polyline_points(doc, "p95", xs, MANY), MANY);
    assert_int_equal(polyline_points(doc, "p99", xs, MANY), MANY);
    assert_int_equal(polyline_points(doc, "cpu", xs, MANY), MANY - 1);
    assert_int_equal(count(doc, "class=\"marker-p95\""), MANY);
    assert_int_equal(count(doc, "class=\"marker-cpu\""), MANY - 1);
    assert_int_equal(count(doc, "class=\"p95-limit\""), 1);
    assert_int_equal(count(doc, "class=\"figure\""), 1);
    assert_non_null(strstr(doc, "tallyd CPU (% of one core)"));
    assert_non_null(strstr(doc, "results delivery latency (ms)"));
    assert_non_null(strstr(doc, "participants (subscribers held)"));
    assert_no_non_finite(doc);
}

static void test_svg_one_step(void **state)
{
    (void)state;
    struct report_capacity r = run_many();
    r.n_steps = 1;
    r.participants = 1000;
    assert_int_equal(render(report_write_svg, &r), 0);
    assert_true(xml_well_formed(doc));
    double xs[1];
    assert_int_equal(polyline_points(doc, "p50", xs, 1), 1);
    assert_int_equal(polyline_points(doc, "p99", xs, 1), 1);
    assert_int_equal(count(doc, "<circle"), 3);
    assert_no_non_finite(doc);
}

static void test_svg_zero_steps(void **state)
{
    (void)state;
    struct report_capacity r = run_many();
    r.steps = NULL;
    r.n_steps = 0;
    r.participants = 0;
    assert_int_equal(render(report_write_svg, &r), 0);
    assert_true(xml_well_formed(doc));
    assert_int_equal(count(doc, "<polyline"), 0);
    assert_int_equal(count(doc, "class=\"figure\""), 0);
    assert_non_null(strstr(doc, "no steps measured"));
    assert_non_null(strstr(doc, "no step stayed within p95 75 ms and 0.10% errors"));
    assert_no_non_finite(doc);
}

/* NaN and infinities anywhere, unknown CPU everywhere, all participants 0. */
static void test_svg_non_finite(void **state)
{
    (void)state;
    struct report_capacity r = run_many();
    for (size_t i = 0; i < MANY; i++) {
        steps[i].server_cpu_pct = -1.0;
        steps[i].participants = 0;
    }
    steps[2].p50_ms = NAN;
    steps[3].p95_ms = INFINITY;
    steps[4].p99_ms = -INFINITY;
    steps[5].error_rate = NAN;
    r.participants = 0;
    r.p95_ms = NAN;
    r.p95_limit_ms = INFINITY;
    assert_int_equal(render(report_write_svg, &r), 0);
    assert_true(xml_well_formed(doc));
    assert_no_non_finite(doc);
    double xs[MANY];
    assert_int_equal(polyline_points(doc, "p50", xs, MANY), MANY - 1);
    assert_int_equal(polyline_points(doc, "p95", xs, MANY), MANY - 1);
    assert_int_equal(polyline_points(doc, "p99", xs, MANY), MANY - 1);
    /* The axis fits the values, not the unusable limit: nothing pinned at the plot's top. */
    assert_true(last_min_y > 72.5 && last_max_y > last_min_y + 100);
    assert_int_equal(polyline_points(doc, "cpu", xs, MANY), -1); /* no CPU line, no CPU axis */
    assert_null(strstr(doc, "tallyd CPU"));
    assert_int_equal(count(doc, "class=\"p95-limit\""), 0);

    assert_int_equal(render(report_write_html, &r), 0);
    assert_no_non_finite(doc);
    assert_int_equal(render(report_write_json, &r), 0);
    json_error_t jerr;
    json_t *j = json_loads(doc, 0, &jerr);
    assert_non_null(j);
    assert_true(json_is_null(json_object_get(j, "p95_ms")));
    json_t *s3 = json_array_get(json_object_get(j, "steps"), 3);
    assert_true(json_is_null(json_object_get(s3, "p95_ms")));
    assert_true(json_is_null(json_object_get(s3, "server_cpu_pct")));
    json_decref(j);
}

static const char nasty_target[] = "a<b&c\"d'e>:1";
static const char nasty_machine[] = "<script>x</script> & \"2\" cores\n\xff ok";

static void test_escaping(void **state)
{
    (void)state;
    struct report_capacity r = run_many();
    r.target = nasty_target;
    r.machine = nasty_machine;
    r.limit_reason = "p95 > 75 & <rising>";
    assert_int_equal(render(report_write_svg, &r), 0);
    assert_true(xml_well_formed(doc));
    assert_non_null(strstr(doc, "a&lt;b&amp;c&quot;d&#39;e&gt;:1"));
    assert_non_null(strstr(doc, "&lt;script&gt;x&lt;/script&gt; &amp; &quot;2&quot; cores ? ok"));
    assert_null(strstr(doc, "<script"));

    assert_int_equal(render(report_write_html, &r), 0);
    assert_null(strstr(doc, "<script"));
    assert_non_null(strstr(doc, "p95 &gt; 75 &amp; &lt;rising&gt;"));
    assert_int_equal(count(doc, "a&lt;b&amp;c&quot;d&#39;e&gt;:1"), 2); /* chart and run table */

    assert_int_equal(render(report_write_json, &r), 0);
    json_error_t jerr;
    json_t *j = json_loads(doc, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "target")), nasty_target);
    assert_string_equal(json_string_value(json_object_get(j, "machine")),
                        "<script>x</script> & \"2\" cores ? ok");
    json_decref(j);
}

/* Text longer than REPORT_TEXT_MAX is cut at a character boundary, still valid. */
static void test_long_text(void **state)
{
    (void)state;
    static char big[3 * REPORT_TEXT_MAX];
    for (size_t i = 0; i + 2 < sizeof(big); i += 2)
        memcpy(big + i, "\xc3\xa9", 2); /* é */
    struct report_capacity r = run_many();
    r.machine = big;
    assert_int_equal(render(report_write_json, &r), 0);
    json_t *j = json_loads(doc, 0, NULL);
    assert_non_null(j); /* jansson refuses invalid UTF-8: the cut kept characters whole */
    size_t len = strlen(json_string_value(json_object_get(j, "machine")));
    assert_true(len < REPORT_TEXT_MAX && len >= REPORT_TEXT_MAX - 2 && len % 2 == 0);
    json_decref(j);
}

/* ---- HTML ---- */

static void test_html(void **state)
{
    (void)state;
    struct report_capacity r = run_many();
    assert_int_equal(render(report_write_html, &r), 0);
    assert_true(strncmp(doc, "<!DOCTYPE html>", 15) == 0);
    assert_non_null(strstr(doc, "<title>Tally capacity: this instance holds 9000 participants"));
    assert_non_null(strstr(doc, "<p class=\"sentence\">this instance holds 9000 participants at "
                                "p95 72.0 ms.</p>"));
    /* The chart, inline and well-formed on its own. */
    assert_int_equal(count(doc, "<svg"), 1);
    const char *svg = strstr(doc, "<svg"), *end = strstr(doc, "</svg>");
    assert_non_null(end);
    char *chart = strndup(svg, (size_t)(end - svg) + 6);
    assert_true(xml_well_formed(chart));
    free(chart);
    assert_null(strstr(doc, "<?xml"));
    /* One row per step in run order, the reported one marked, those over a limit too. */
    assert_int_equal(count(doc, "<tr class="), MANY);
    assert_int_equal(count(doc, "<tr class=\"figure\"><td>9</td><td>9000</td>"), 1);
    assert_int_equal(count(doc, "<tr class=\"over\">"), 3); /* 10000 (p95 80), 11000, 12000 */
    assert_non_null(strstr(doc, "<td>4</td><td>8000</td><td>16.0</td><td>40.0</td><td>64.0</td>"
                                "<td>88.0</td><td>120.0</td><td>160.0</td><td>0.000</td><td>-</td>"
                                "<td>38.0</td><td>8000000</td></tr>"));
    assert_non_null(strstr(doc, "<td>127.0.0.1:8080</td>"));
    assert_non_null(strstr(doc, "<td>2026-11-22T10:00:00Z</td>"));
    assert_non_null(strstr(doc, "<td>2 cores, 23 GiB, Linux 6.18</td>"));
    assert_non_null(strstr(doc, "p95 &le; 75.0 ms, error rate &le; 0.100%"));
    assert_non_null(strstr(doc, "<td>p95 80.0 ms &gt; 75 ms at 10000</td>"));
    /* Self-contained: nothing fetched from elsewhere. */
    assert_null(strstr(doc, "src="));
    assert_null(strstr(doc, "href="));
    assert_null(strstr(doc, "<link"));
    assert_null(strstr(doc, "url("));
    assert_true(strstr(doc, "</html>\n") == doc + doc_len - 8);
}

/* ---- JSON ---- */

static void test_json_round_trip(void **state)
{
    (void)state;
    struct report_capacity r = run_many();
    steps[1].error_rate = 0.000123;
    steps[1].p999_ms = 1.23456;
    assert_int_equal(render(report_write_json, &r), 0);
    json_error_t jerr;
    json_t *j = json_loads(doc, 0, &jerr);
    if (j == NULL)
        fail_msg("%s at line %d", jerr.text, jerr.line);
    assert_int_equal(json_integer_value(json_object_get(j, "participants")), 9000);
    assert_true(fabs(json_number_value(json_object_get(j, "p95_ms")) - 72.0) < 1e-9);
    assert_string_equal(json_string_value(json_object_get(j, "measured_at")), r.date);
    assert_string_equal(json_string_value(json_object_get(j, "target")), r.target);
    assert_string_equal(json_string_value(json_object_get(j, "machine")), r.machine);
    assert_string_equal(json_string_value(json_object_get(j, "limit_reason")), r.limit_reason);
    json_t *lim = json_object_get(j, "limits");
    assert_true(fabs(json_number_value(json_object_get(lim, "p95_ms")) - 75.0) < 1e-9);
    assert_true(fabs(json_number_value(json_object_get(lim, "error_rate")) - 0.001) < 1e-12);
    json_t *arr = json_object_get(j, "steps");
    assert_int_equal(json_array_size(arr), MANY);
    for (size_t i = 0; i < MANY; i++) {
        json_t *s = json_array_get(arr, i);
        const struct report_step *w = &steps[i];
        assert_int_equal(json_integer_value(json_object_get(s, "participants")), w->participants);
        assert_true(fabs(json_number_value(json_object_get(s, "p50_ms")) - w->p50_ms) < 1e-3);
        assert_true(fabs(json_number_value(json_object_get(s, "p99_ms")) - w->p99_ms) < 1e-3);
        assert_true(fabs(json_number_value(json_object_get(s, "p999_ms")) - w->p999_ms) < 1e-3);
        assert_true(fabs(json_number_value(json_object_get(s, "error_rate")) - w->error_rate) <
                    1e-9);
        assert_int_equal(json_integer_value(json_object_get(s, "delivered")), w->delivered);
        json_t *cpu = json_object_get(s, "server_cpu_pct");
        if (w->server_cpu_pct < 0)
            assert_true(json_is_null(cpu));
        else
            assert_true(fabs(json_number_value(cpu) - w->server_cpu_pct) < 1e-3);
        assert_int_equal(json_is_true(json_object_get(s, "within_limits")),
                         report_step_within_limits(&r, w));
    }
    json_decref(j);
}

/* ---- files ---- */

static char tmpdir[64];

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_report.XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown_tmp(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Names in dir containing ".tmp.": what an atomic writer must never leave. */
static int leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d))
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static void test_write_files(void **state)
{
    (void)state;
    struct report_capacity r = run_many();
    char dir[128], path[192];
    snprintf(dir, sizeof(dir), "%s/out/nested", tmpdir);
    assert_int_equal(report_write_files(&r, dir), 0);
    static const char *const names[] = {"capacity.svg", "capacity.html", "capacity.json"};
    for (size_t i = 0; i < 3; i++) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size > 200);
    }
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "steps")), MANY);
    json_decref(j);
    assert_int_equal(leftovers(dir), 0);
    /* A second run replaces them. */
    r.participants = 8000;
    assert_int_equal(report_write_files(&r, dir), 0);
    j = json_load_file(path, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "participants")), 8000);
    json_decref(j);
    /* A file where the directory should be. */
    snprintf(path, sizeof(path), "%s/capacity.svg", dir);
    assert_int_equal(report_write_files(&r, path), -ENOTDIR);
}

static void test_figure(void **state)
{
    (void)state;
    struct report_capacity r = run_many();
    char dir[128], path[192];
    snprintf(dir, sizeof(dir), "%s/var", tmpdir);
    snprintf(path, sizeof(path), "%s/capacity.json", dir);
    assert_int_equal(report_write_figure(&r, path), 0); /* creates var/ */
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "participants")), 9000);
    assert_true(fabs(json_number_value(json_object_get(j, "p95_ms")) - 72.0) < 1e-9);
    assert_string_equal(json_string_value(json_object_get(j, "measured_at")), r.date);
    json_decref(j);
    char text[256] = "";
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(text, sizeof(text), f));
    fclose(f);
    assert_string_equal(text, "{\"participants\":9000,\"p95_ms\":72.0,"
                              "\"measured_at\":\"2026-11-22T10:00:00Z\"}\n");

    /* Replaced by rename: a new inode, never the old file rewritten in place. */
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    r.participants = 7000;
    assert_int_equal(report_write_figure(&r, path), 0);
    assert_int_equal(stat(path, &after), 0);
    assert_true(before.st_ino != after.st_ino);
    j = json_load_file(path, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "participants")), 7000);
    json_decref(j);
    assert_int_equal(leftovers(dir), 0);

    /* No figure: refused, the earlier file stays as it was. */
    r.participants = 0;
    assert_int_equal(report_write_figure(&r, path), -EINVAL);
    assert_int_equal(stat(path, &before), 0);
    assert_true(before.st_ino == after.st_ino);

    /* rename onto a directory fails: the error comes back and no temp file stays. */
    r.participants = 5000;
    assert_int_equal(report_write_figure(&r, dir), -EISDIR);
    assert_int_equal(leftovers(tmpdir), 0);
}

/* ---- bad arguments ---- */

static void test_bad_arguments(void **state)
{
    (void)state;
    struct report_capacity r = run_many();
    assert_int_equal(report_write_svg(NULL, stdout), -EINVAL);
    assert_int_equal(report_write_svg(&r, NULL), -EINVAL);
    assert_int_equal(report_write_html(&r, NULL), -EINVAL);
    assert_int_equal(report_write_json(NULL, stdout), -EINVAL);
    assert_int_equal(report_write_files(&r, NULL), -EINVAL);
    assert_int_equal(report_write_figure(&r, ""), -EINVAL);
    struct report_capacity bad = r;
    bad.steps = NULL;
    assert_int_equal(render(report_write_svg, &bad), -EINVAL);
    bad = r;
    bad.n_steps = REPORT_STEPS_MAX + 1;
    assert_int_equal(render(report_write_json, &bad), -E2BIG);
    /* A stream that cannot be written: -EIO, not a silent success. */
    FILE *ro = fopen("/dev/null", "r");
    assert_non_null(ro);
    assert_int_equal(report_write_svg(&r, ro), -EIO);
    fclose(ro);
}

static void test_within_limits(void **state)
{
    (void)state;
    struct report_capacity r = run_many();
    struct report_step s = {.p95_ms = 75.0, .error_rate = 0.001};
    assert_true(report_step_within_limits(&r, &s)); /* at the limit is within */
    s.p95_ms = 75.01;
    assert_false(report_step_within_limits(&r, &s));
    s.p95_ms = 10.0;
    s.error_rate = 0.0011;
    assert_false(report_step_within_limits(&r, &s));
    s.error_rate = NAN;
    assert_false(report_step_within_limits(&r, &s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svg_many_steps),
        cmocka_unit_test(test_svg_one_step),
        cmocka_unit_test(test_svg_zero_steps),
        cmocka_unit_test(test_svg_non_finite),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_long_text),
        cmocka_unit_test(test_html),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test_setup_teardown(test_write_files, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_figure, setup_tmp, teardown_tmp),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_within_limits),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(doc);
    return rc;
}
