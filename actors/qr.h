/*
 * qr.h - a QR code as a compact SVG, for the join link on the presenter's
 * screen.
 *
 * One <path> draws every dark module (runs of a row merged into one
 * rectangle), inside a 4-module quiet zone, scaled by the viewBox so the
 * image is sharp at any size. Pure; any thread.
 */
#ifndef TALLY_ACTORS_QR_H
#define TALLY_ACTORS_QR_H

#include <stddef.h>

#define QR_QUIET_MODULES 4
#define QR_TEXT_MAX 1024 /* longer text is refused, not encoded */

/**
 * Encodes text (error correction M, 8-bit, case-sensitive) as an SVG
 * document. On success *out is malloc'd (caller frees) and 0 is returned;
 * -EINVAL when text is empty or too long, -ENOMEM when the encoder fails.
 */
int qr_svg(const char *text, char **out, size_t *out_len);

#endif
