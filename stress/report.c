/*
 * report.c - the capacity report: chart (SVG), page (HTML), run (JSON) and
 * the figure file tallyd reads at start.
 *
 * The chart: x = participants from 0 (linear, ticks of 1, 2 or 5 x 10^k),
 * left y = results delivery latency in ms (p50, p95, p99 as lines with
 * markers, the p95 limit dashed), right y = tallyd CPU in % of one core (only
 * when some step knows it), a vertical marker at the reported figure, and a
 * legend. Steps are drawn in participants order, whatever order the search
 * ran them in; the page's table keeps the run order.
 *
 * Nothing here uses libm (tally-stress does not link it): the few roundings
 * are done with integer conversions on values already bounded.
 */
#include "stress/report.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/base.h"

/* The chart's geometry, in SVG user units. */
#define SVG_W 880
#define SVG_H 520
#define SVG_ML 80 /* left margin: latency tick labels and axis title */
#define SVG_MR 80 /* right margin: CPU tick labels and axis title */
#define SVG_MT 72 /* top margin: title and the run's line */
#define SVG_MB 64 /* bottom margin: participants tick labels and axis title */
#define SVG_X0 SVG_ML
#define SVG_X1 (SVG_W - SVG_MR)
#define SVG_YB (SVG_H - SVG_MB) /* plot bottom */
#define SVG_YT SVG_MT           /* plot top */
#define AXIS_TICKS_TARGET 8
#define AXIS_VALUE_MAX 1e12 /* larger values are drawn at the axis end */
#define AXIS_HEADROOM 1.08  /* the largest value sits a little below the top */
#define SENTENCE_MAX 256
#define JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12))

static_assert(SVG_X1 > SVG_X0 && SVG_YB > SVG_YT, "the plot area is not empty");

/* ---- text: UTF-8 checked, control characters blanked, bounded ---- */

/* Length of the valid UTF-8 sequence at p, 0 when it is not one. */
static size_t utf8_seq_len(const unsigned char *p)
{
    unsigned c = p[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) { /* a NUL stops here: it is no continuation byte */
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* s (NULL = "") into buf: invalid UTF-8 bytes become '?', control characters
 * a blank, cut at a character boundary to fit. */
static void text_clean(const char *s, char *buf, size_t len)
{
    TALLY_ASSERT(len > 0);
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p != '\0') {
        size_t n = utf8_seq_len(p);
        size_t w = n == 0 ? 1 : n; /* an invalid byte is replaced by one '?' */
        if (o + w >= len)
            break;
        if (n == 0)
            buf[o] = '?';
        else if (*p < 0x20 || *p == 0x7f)
            buf[o] = ' ';
        else
            memcpy(buf + o, p, n);
        o += w;
        p += w;
    }
    buf[o] = '\0';
    TALLY_ASSERT(o < len);
}

/* Text for XML and HTML content and attribute values. */
static void put_text(FILE *out, const char *s)
{
    char clean[REPORT_TEXT_MAX];
    text_clean(s, clean, sizeof(clean));
    for (const char *p = clean; *p != '\0'; p++) {
        switch (*p) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc(*p, out);
            break;
        }
    }
}

/* A number for the page: "-" when unknown or not finite. */
static void put_num(FILE *out, double v, int decimals)
{
    if (isfinite(v))
        fprintf(out, "%.*f", decimals, v);
    else
        fputs("-", out);
}

static void sentence(const struct report_capacity *r, char *buf, size_t len)
{
    if (r->participants > 0 && isfinite(r->p95_ms))
        snprintf(buf, len, "this instance holds %u participants at p95 %.1f ms", r->participants,
                 r->p95_ms);
    else if (r->participants > 0)
        snprintf(buf, len, "this instance holds %u participants", r->participants);
    else if (isfinite(r->p95_limit_ms) && isfinite(r->error_limit))
        snprintf(buf, len, "no step stayed within p95 %.0f ms and %.2f%% errors", r->p95_limit_ms,
                 r->error_limit * 100.0);
    else
        snprintf(buf, len, "no step stayed within the limits");
}

static int report_check(const struct report_capacity *r)
{
    if (r == NULL || (r->steps == NULL && r->n_steps > 0))
        return -EINVAL;
    if (r->n_steps > REPORT_STEPS_MAX)
        return -E2BIG;
    return 0;
}

bool report_step_within_limits(const struct report_capacity *r, const struct report_step *s)
{
    TALLY_ASSERT(r != NULL);
    TALLY_ASSERT(s != NULL);
    return isfinite(s->p95_ms) && s->p95_ms <= r->p95_limit_ms && isfinite(s->error_rate) &&
           s->error_rate <= r->error_limit;
}

/* ---- axes ---- */

struct axis {
    double max;      /* the axis runs 0..max, max > 0 */
    double step;     /* between ticks */
    unsigned ticks;  /* max / step */
    double px0, px1; /* where 0 and max are drawn */
};

/* 1, 2 or 5 x 10^k, the smallest not below raw. */
static double nice_step(double raw)
{
    double mag = 1.0;
    while (mag * 10.0 <= raw)
        mag *= 10.0;
    while (mag > raw)
        mag /= 10.0;
    double norm = raw / mag;
    return (norm <= 1.0 ? 1.0 : norm <= 2.0 ? 2.0 : norm <= 5.0 ? 5.0 : 10.0) * mag;
}

static void axis_fit(struct axis *a, double vmax, bool integral, double px0, double px1)
{
    if (!isfinite(vmax) || vmax <= 0.0)
        vmax = 1.0;
    if (vmax > AXIS_VALUE_MAX)
        vmax = AXIS_VALUE_MAX;
    a->step = nice_step(vmax / AXIS_TICKS_TARGET);
    if (integral && a->step < 1.0)
        a->step = 1.0;
    a->ticks = (unsigned)(vmax / a->step);
    if ((double)a->ticks * a->step < vmax)
        a->ticks++;
    if (a->ticks == 0)
        a->ticks = 1;
    a->max = (double)a->ticks * a->step;
    a->px0 = px0;
    a->px1 = px1;
    TALLY_ASSERT(a->max > 0.0);
    TALLY_ASSERT(a->ticks <= 2 * AXIS_TICKS_TARGET + 2);
}

/* Where v is drawn; values outside 0..max are drawn at the nearer end. */
static double axis_px(const struct axis *a, double v)
{
    if (!(v > 0.0))
        v = 0.0;
    if (v > a->max)
        v = a->max;
    return a->px0 + v / a->max * (a->px1 - a->px0);
}

static int tick_decimals(double step)
{
    return step >= 1.0 ? 0 : step >= 0.1 ? 1 : step >= 0.01 ? 2 : 3;
}

/* ---- the chart ---- */

struct chart {
    const struct report_capacity *r;
    FILE *out;
    size_t *order; /* step indices, by participants */
    struct axis x, y, cpu;
    bool have_cpu;
};

struct series {
    const char *name; /* legend text and class suffix */
    size_t offset;    /* the double in struct report_step */
    const char *color;
    bool cpu; /* on the right axis, square markers, unknown when < 0 */
};

static const struct series chart_series[] = {
    {"p50", offsetof(struct report_step, p50_ms), "#2b8a3e", false},
    {"p95", offsetof(struct report_step, p95_ms), "#1971c2", false},
    {"p99", offsetof(struct report_step, p99_ms), "#e8590c", false},
    {"cpu", offsetof(struct report_step, server_cpu_pct), "#868e96", true},
};

#define COLOR_LIMIT "#c92a2a"
#define COLOR_FIGURE "#7048e8"

static double step_value(const struct report_step *s, const struct series *se)
{
    double v;
    memcpy(&v, (const char *)s + se->offset, sizeof(v));
    return v;
}

static bool value_known(const struct series *se, double v)
{
    return isfinite(v) && (!se->cpu || v >= 0.0);
}

static int cmp_participants(const void *a, const void *b, void *arg)
{
    const struct report_step *steps = arg;
    uint32_t pa = steps[*(const size_t *)a].participants;
    uint32_t pb = steps[*(const size_t *)b].participants;
    return pa < pb ? -1 : pa > pb;
}

static void chart_init(struct chart *c, const struct report_capacity *r, FILE *out)
{
    double lim = r->p95_limit_ms;
    double xmax = r->participants, ymax = isfinite(lim) && lim > 0.0 ? lim : 0.0, cmax = 0.0;
    memset(c, 0, sizeof(*c));
    c->r = r;
    c->out = out;
    c->order = xcalloc(r->n_steps ? r->n_steps : 1, sizeof(size_t));
    for (size_t i = 0; i < r->n_steps; i++) {
        const struct report_step *s = &r->steps[i];
        c->order[i] = i;
        xmax = s->participants > xmax ? s->participants : xmax;
        for (size_t k = 0; k < ARRAY_LEN(chart_series); k++) {
            double v = step_value(s, &chart_series[k]);
            if (!value_known(&chart_series[k], v))
                continue;
            double *m = chart_series[k].cpu ? &cmax : &ymax;
            *m = v > *m ? v : *m;
            c->have_cpu |= chart_series[k].cpu;
        }
    }
    qsort_r(c->order, r->n_steps, sizeof(size_t), cmp_participants, (void *)r->steps);
    axis_fit(&c->x, xmax * AXIS_HEADROOM, true, SVG_X0, SVG_X1);
    axis_fit(&c->y, ymax * AXIS_HEADROOM, false, SVG_YB, SVG_YT);
    axis_fit(&c->cpu, cmax > 100.0 ? cmax * AXIS_HEADROOM : 100.0, false, SVG_YB, SVG_YT);
}

static void svg_head(const struct chart *c, bool standalone)
{
    char s[SENTENCE_MAX];
    sentence(c->r, s, sizeof(s));
    if (standalone)
        fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", c->out);
    fprintf(c->out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\" role=\"img\" "
            "aria-label=\"",
            SVG_W, SVG_H, SVG_W, SVG_H);
    put_text(c->out, s);
    fputs("\">\n<title>", c->out);
    put_text(c->out, s);
    fprintf(c->out, "</title>\n<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", SVG_W,
            SVG_H);
    fprintf(c->out,
            "<text x=\"%d\" y=\"28\" text-anchor=\"middle\" font-size=\"17\" "
            "font-weight=\"bold\">",
            SVG_W / 2);
    put_text(c->out, s);
    fprintf(c->out, "</text>\n<text x=\"%d\" y=\"50\" text-anchor=\"middle\" fill=\"#555\">",
            SVG_W / 2);
    put_text(c->out, c->r->target);
    fputs(", ", c->out);
    put_text(c->out, c->r->date);
    fputs(", ", c->out);
    put_text(c->out, c->r->machine);
    fputs("</text>\n", c->out);
}

/* Grid lines and tick labels of the participants axis. */
static void svg_x_axis(const struct chart *c)
{
    int d = tick_decimals(c->x.step);
    for (unsigned i = 0; i <= c->x.ticks; i++) {
        double v = i * c->x.step, px = axis_px(&c->x, v);
        fprintf(c->out,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e9ecef\"/>"
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.*f</text>\n",
                px, SVG_YT, px, SVG_YB, px, SVG_YB + 18, d, v);
    }
    fprintf(c->out,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n"
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">participants (subscribers held)"
            "</text>\n",
            SVG_X0, SVG_YB, SVG_X1, SVG_YB, (SVG_X0 + SVG_X1) / 2, SVG_H - 18);
}

/* A vertical axis at x_px with its ticks, labels on the given side, and its title. */
static void svg_y_axis(const struct chart *c, const struct axis *a, int x_px, bool right,
                       const char *title)
{
    int d = tick_decimals(a->step);
    int lx = right ? x_px + 8 : x_px - 8;
    for (unsigned i = 0; i <= a->ticks; i++) {
        double v = i * a->step, py = axis_px(a, v);
        if (!right)
            fprintf(c->out,
                    "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e9ecef\"/>",
                    SVG_X0, py, SVG_X1, py);
        fprintf(c->out, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"%s\">%.*f</text>\n", lx, py + 4,
                right ? "start" : "end", d, v);
    }
    int tx = right ? SVG_W - 16 : 20;
    fprintf(c->out,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n"
            "<text transform=\"translate(%d,%d) rotate(%d)\" text-anchor=\"middle\">%s</text>\n",
            x_px, SVG_YT, x_px, SVG_YB, tx, (SVG_YT + SVG_YB) / 2, right ? 90 : -90, title);
}

static void svg_limit_line(const struct chart *c)
{
    double lim = c->r->p95_limit_ms;
    if (!isfinite(lim) || lim <= 0.0)
        return;
    double py = axis_px(&c->y, lim);
    fprintf(c->out,
            "<line class=\"p95-limit\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>"
            "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"%s\">p95 limit %.0f ms</text>\n",
            SVG_X0, py, SVG_X1, py, COLOR_LIMIT, SVG_X1 - 4, py - 5, COLOR_LIMIT, lim);
}

static void svg_marker(const struct chart *c, const struct series *se, double px, double py)
{
    if (se->cpu)
        fprintf(c->out,
                "<rect class=\"marker-%s\" x=\"%.1f\" y=\"%.1f\" width=\"6\" height=\"6\" "
                "fill=\"%s\"/>\n",
                se->name, px - 3, py - 3, se->color);
    else
        fprintf(c->out,
                "<circle class=\"marker-%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                se->name, px, py, se->color);
}

/* One line: a polyline over the known values, then a marker on each. */
static void svg_series(const struct chart *c, const struct series *se)
{
    const struct axis *ya = se->cpu ? &c->cpu : &c->y;
    const struct report_step *steps = c->r->steps;
    fprintf(
        c->out,
        "<polyline class=\"series-%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
        se->name, se->color, se->cpu ? " stroke-dasharray=\"2 3\"" : "");
    const char *sep = "";
    for (size_t i = 0; i < c->r->n_steps; i++) {
        const struct report_step *s = &steps[c->order[i]];
        double v = step_value(s, se);
        if (!value_known(se, v))
            continue;
        fprintf(c->out, "%s%.1f,%.1f", sep, axis_px(&c->x, s->participants), axis_px(ya, v));
        sep = " ";
    }
    fputs("\"/>\n", c->out);
    for (size_t i = 0; i < c->r->n_steps; i++) {
        const struct report_step *s = &steps[c->order[i]];
        double v = step_value(s, se);
        if (value_known(se, v))
            svg_marker(c, se, axis_px(&c->x, s->participants), axis_px(ya, v));
    }
}

static void svg_figure_marker(const struct chart *c)
{
    if (c->r->participants == 0)
        return;
    double px = axis_px(&c->x, c->r->participants);
    fprintf(c->out,
            "<line class=\"figure\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" "
            "stroke-width=\"2\"/>"
            "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">%u</text>\n",
            px, SVG_YT, px, SVG_YB, COLOR_FIGURE, px, SVG_YT - 6, COLOR_FIGURE, c->r->participants);
}

static void svg_legend_item(const struct chart *c, int row, const char *color, const char *dash,
                            const char *label)
{
    int x = SVG_X0 + 14, y = SVG_YT + 16 + row * 18;
    fprintf(c->out,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s%s%s/>"
            "<text x=\"%d\" y=\"%d\">%s</text>\n",
            x, y, x + 24, y, color, dash ? " stroke-dasharray=\"" : "", dash ? dash : "",
            dash ? "\"" : "", x + 30, y + 4, label);
}

static void svg_legend(const struct chart *c)
{
    int rows = 4 + c->have_cpu + (c->r->participants > 0);
    fprintf(c->out,
            "<g class=\"legend\"><rect x=\"%d\" y=\"%d\" width=\"190\" height=\"%d\" "
            "fill=\"#ffffff\" fill-opacity=\"0.85\" stroke=\"#ced4da\"/>\n",
            SVG_X0 + 6, SVG_YT + 6, rows * 18 + 4);
    int row = 0;
    svg_legend_item(c, row++, chart_series[0].color, NULL, "p50 latency");
    svg_legend_item(c, row++, chart_series[1].color, NULL, "p95 latency");
    svg_legend_item(c, row++, chart_series[2].color, NULL, "p99 latency");
    svg_legend_item(c, row++, COLOR_LIMIT, "6 4", "p95 limit");
    if (c->have_cpu)
        svg_legend_item(c, row++, chart_series[3].color, "2 3", "tallyd CPU (right axis)");
    if (c->r->participants > 0)
        svg_legend_item(c, row++, COLOR_FIGURE, NULL, "reported capacity");
    fputs("</g>\n", c->out);
    TALLY_ASSERT(row == rows);
}

static void svg_body(const struct chart *c, bool standalone)
{
    svg_head(c, standalone);
    svg_x_axis(c);
    svg_y_axis(c, &c->y, SVG_X0, false, "results delivery latency (ms)");
    if (c->have_cpu)
        svg_y_axis(c, &c->cpu, SVG_X1, true, "tallyd CPU (% of one core)");
    svg_limit_line(c);
    if (c->r->n_steps == 0)
        fprintf(c->out,
                "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#868e96\">no steps "
                "measured</text>\n",
                (SVG_X0 + SVG_X1) / 2, (SVG_YT + SVG_YB) / 2);
    for (size_t k = 0; k < ARRAY_LEN(chart_series) && c->r->n_steps > 0; k++) {
        if (!chart_series[k].cpu || c->have_cpu)
            svg_series(c, &chart_series[k]);
    }
    svg_figure_marker(c);
    svg_legend(c);
    fputs("</svg>\n", c->out);
}

static int svg_write(const struct report_capacity *r, FILE *out, bool standalone)
{
    struct chart c;
    chart_init(&c, r, out);
    svg_body(&c, standalone);
    free(c.order);
    return 0;
}

int report_write_svg(const struct report_capacity *r, FILE *out)
{
    int rc = report_check(r);
    if (rc != 0 || out == NULL)
        return rc != 0 ? rc : -EINVAL;
    svg_write(r, out, true);
    return ferror(out) ? -EIO : 0;
}

/* ---- the page ---- */

static const char html_style[] =
    "body{font-family:sans-serif;margin:2em;color:#212529;max-width:960px}"
    "table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #dee2e6;padding:3px 9px;text-align:right}"
    "table.run th,table.run td{text-align:left}"
    "tr.over td{color:#c92a2a}tr.figure td{font-weight:bold;background:#e5dbff}"
    "p.sentence{font-size:1.3em}svg{max-width:100%;height:auto}";

static void html_run_row(FILE *out, const char *name, const char *value)
{
    fprintf(out, "<tr><th>%s</th><td>", name);
    put_text(out, value);
    fputs("</td></tr>\n", out);
}

static void html_run(const struct report_capacity *r, FILE *out)
{
    fputs("<h2>Run</h2>\n<table class=\"run\">\n", out);
    html_run_row(out, "target", r->target);
    html_run_row(out, "date", r->date);
    html_run_row(out, "machine", r->machine);
    fputs("<tr><th>limits</th><td>p95 &le; ", out);
    put_num(out, r->p95_limit_ms, 1);
    fputs(" ms, error rate &le; ", out);
    put_num(out, r->error_limit * 100.0, 3);
    fputs("%</td></tr>\n", out);
    html_run_row(out, "search stopped", r->limit_reason);
    fputs("</table>\n", out);
}

static void html_step_row(const struct report_capacity *r, FILE *out, size_t i)
{
    const struct report_step *s = &r->steps[i];
    const char *cls = s->participants == r->participants && r->participants > 0 ? "figure"
                      : report_step_within_limits(r, s)                         ? "within"
                                                                                : "over";
    fprintf(out, "<tr class=\"%s\"><td>%zu</td><td>%u</td>", cls, i + 1, s->participants);
    const double ms[] = {s->p50_ms, s->p90_ms, s->p95_ms, s->p99_ms, s->p999_ms, s->max_ms};
    for (size_t k = 0; k < ARRAY_LEN(ms); k++) {
        fputs("<td>", out);
        put_num(out, ms[k], 1);
        fputs("</td>", out);
    }
    fputs("<td>", out);
    put_num(out, s->error_rate * 100.0, 3);
    fputs("</td><td>", out);
    put_num(out, s->server_cpu_pct >= 0.0 ? s->server_cpu_pct : NAN, 1);
    fputs("</td><td>", out);
    put_num(out, s->server_rss_mb >= 0.0 ? s->server_rss_mb : NAN, 1);
    fprintf(out, "</td><td>%llu</td></tr>\n", (unsigned long long)s->delivered);
}

static void html_steps(const struct report_capacity *r, FILE *out)
{
    fputs("<h2>Steps</h2>\n<table class=\"steps\">\n<thead><tr><th>#</th><th>participants</th>"
          "<th>p50 ms</th><th>p90 ms</th><th>p95 ms</th><th>p99 ms</th><th>p99.9 ms</th>"
          "<th>max ms</th><th>errors %</th><th>tallyd CPU %</th><th>tallyd RSS MB</th>"
          "<th>results delivered</th></tr></thead>\n<tbody>\n",
          out);
    for (size_t i = 0; i < r->n_steps; i++)
        html_step_row(r, out, i);
    fputs("</tbody>\n</table>\n", out);
}

int report_write_html(const struct report_capacity *r, FILE *out)
{
    int rc = report_check(r);
    if (rc != 0 || out == NULL)
        return rc != 0 ? rc : -EINVAL;
    char s[SENTENCE_MAX];
    sentence(r, s, sizeof(s));
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<title>Tally capacity: ",
          out);
    put_text(out, s);
    fprintf(out,
            "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>Tally capacity</h1>\n"
            "<p class=\"sentence\">",
            html_style);
    put_text(out, s);
    fputs(".</p>\n", out);
    svg_write(r, out, false);
    html_run(r, out);
    html_steps(r, out);
    fputs("<p>Rows: the run's steps in the order they ran; the reported step is highlighted, "
          "steps over a limit are red.</p>\n</body>\n</html>\n",
          out);
    return ferror(out) ? -EIO : 0;
}

/* ---- JSON ---- */

/* v rounded to 1/scale, or null when not finite (JSON has no NaN). */
static json_t *jnum(double v, double scale)
{
    if (!isfinite(v))
        return json_null();
    if (v > -AXIS_VALUE_MAX && v < AXIS_VALUE_MAX)
        v = (double)(int64_t)(v * scale + (v < 0 ? -0.5 : 0.5)) / scale;
    return json_real(v);
}

static json_t *jtext(const char *s)
{
    if (s == NULL)
        return json_null();
    char clean[REPORT_TEXT_MAX];
    text_clean(s, clean, sizeof(clean));
    return json_string(clean); /* valid UTF-8 by construction, so never NULL */
}

static json_t *json_step(const struct report_capacity *r, const struct report_step *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "participants", json_integer(s->participants));
    json_object_set_new(o, "p50_ms", jnum(s->p50_ms, 1e3));
    json_object_set_new(o, "p90_ms", jnum(s->p90_ms, 1e3));
    json_object_set_new(o, "p95_ms", jnum(s->p95_ms, 1e3));
    json_object_set_new(o, "p99_ms", jnum(s->p99_ms, 1e3));
    json_object_set_new(o, "p999_ms", jnum(s->p999_ms, 1e3));
    json_object_set_new(o, "max_ms", jnum(s->max_ms, 1e3));
    json_object_set_new(o, "error_rate", jnum(s->error_rate, 1e9));
    json_object_set_new(o, "server_cpu_pct",
                        s->server_cpu_pct >= 0.0 ? jnum(s->server_cpu_pct, 1e3) : json_null());
    json_object_set_new(o, "server_rss_mb",
                        s->server_rss_mb >= 0.0 ? jnum(s->server_rss_mb, 1e3) : json_null());
    json_object_set_new(o, "delivered", json_integer((json_int_t)s->delivered));
    json_object_set_new(o, "within_limits", json_boolean(report_step_within_limits(r, s)));
    return o;
}

/* The figure's three fields, first in both files. */
static json_t *json_figure(const struct report_capacity *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "participants", json_integer(r->participants));
    json_object_set_new(o, "p95_ms", jnum(r->p95_ms, 1e3));
    json_object_set_new(o, "measured_at", jtext(r->date));
    return o;
}

int report_write_json(const struct report_capacity *r, FILE *out)
{
    int rc = report_check(r);
    if (rc != 0 || out == NULL)
        return rc != 0 ? rc : -EINVAL;
    json_t *root = json_figure(r);
    json_object_set_new(root, "target", jtext(r->target));
    json_object_set_new(root, "machine", jtext(r->machine));
    json_object_set_new(root, "limit_reason", jtext(r->limit_reason));
    json_t *limits = json_object();
    json_object_set_new(limits, "p95_ms", jnum(r->p95_limit_ms, 1e3));
    json_object_set_new(limits, "error_rate", jnum(r->error_limit, 1e9));
    json_object_set_new(root, "limits", limits);
    json_t *steps = json_array();
    for (size_t i = 0; i < r->n_steps; i++)
        json_array_append_new(steps, json_step(r, &r->steps[i]));
    json_object_set_new(root, "steps", steps);
    rc = json_dumpf(root, out, JSON_FLAGS);
    json_decref(root);
    fputc('\n', out);
    return rc != 0 || ferror(out) ? -EIO : 0;
}

static int figure_write(const struct report_capacity *r, FILE *out)
{
    json_t *root = json_figure(r);
    int rc = json_dumpf(root, out, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    json_decref(root);
    fputc('\n', out);
    return rc != 0 || ferror(out) ? -EIO : 0;
}

/* ---- files ---- */

typedef int (*report_writer_fn)(const struct report_capacity *r, FILE *out);

/* Creates dir and its missing parents (mode 0755). */
static int mkdir_parents(const char *dir)
{
    char p[REPORT_PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(p))
        return n == 0 ? -EINVAL : -ENAMETOOLONG;
    memcpy(p, dir, n + 1);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char was = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return -errno;
        *s = was;
        if (was == '\0')
            break;
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* The directory part of path ("." when it has none), into buf. */
static int dir_of(const char *path, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n + 2 > len)
        return -ENAMETOOLONG;
    if (n == 0)
        snprintf(buf, len, ".");
    else
        snprintf(buf, len, "%.*s", (int)n, path);
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* write(r) into path.tmp.PID, fsync, rename over path, fsync the directory:
 * a reader sees the old file or the whole new one, never a part. */
static int write_atomic(const char *path, report_writer_fn writer, const struct report_capacity *r)
{
    char tmp[REPORT_PATH_MAX], dir[REPORT_PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp) || dir_of(path, dir, sizeof(dir)) != 0)
        return -ENAMETOOLONG;
    unlink(tmp); /* a leftover of an earlier process with this pid */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        int rc = -errno;
        close(fd);
        unlink(tmp);
        return rc;
    }
    int rc = writer(r, f);
    if (rc == 0 && fflush(f) != 0)
        rc = -errno;
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    return fsync_dir(dir);
}

int report_write_files(const struct report_capacity *r, const char *dir)
{
    static const struct {
        const char *name;
        report_writer_fn writer;
    } files[] = {
        {"capacity.svg", report_write_svg},
        {"capacity.html", report_write_html},
        {"capacity.json", report_write_json},
    };
    int rc = report_check(r);
    if (rc != 0 || dir == NULL)
        return rc != 0 ? rc : -EINVAL;
    rc = mkdir_parents(dir);
    for (size_t i = 0; i < ARRAY_LEN(files) && rc == 0; i++) {
        char path[REPORT_PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
        rc = n < 0 || (size_t)n >= sizeof(path) ? -ENAMETOOLONG
                                                : write_atomic(path, files[i].writer, r);
    }
    return rc;
}

int report_write_figure(const struct report_capacity *r, const char *path)
{
    int rc = report_check(r);
    if (rc != 0 || path == NULL || path[0] == '\0' || r->participants == 0)
        return rc != 0 ? rc : -EINVAL;
    char dir[REPORT_PATH_MAX];
    rc = dir_of(path, dir, sizeof(dir));
    if (rc == 0)
        rc = mkdir_parents(dir);
    return rc == 0 ? write_atomic(path, figure_write, r) : rc;
}
