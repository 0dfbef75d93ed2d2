/*
 * report.h - formatting into caller-provided buffers, never allocating.
 * Formats: %p pointer (hex), %z size_t, %u uint64_t, %d int, %s string.
 */
#ifndef XMM_REPORT_H
#define XMM_REPORT_H

#include <stdarg.h>

#include "common.h"

struct xmm_text {
    char *buffer;
    size_t capacity;
    size_t length;
};

void xmm_text_append(struct xmm_text *text, const char *string);
void xmm_text_append_unsigned(struct xmm_text *text, uint64_t value, unsigned base);
void xmm_text_format(struct xmm_text *text, const char *format, ...);
void xmm_text_vformat(struct xmm_text *text, const char *format, va_list arguments);

#endif
