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

/* A report written through a buffer the caller provides (never malloc):
 * xmm_writer_printf formats one piece (xmm_text's formats, at most 1 KiB)
 * and writes the buffer out first when the piece would not fit;
 * xmm_writer_flush writes what is buffered. `error` keeps the errno of the
 * first failed write (0: none). Statistics and heap profiles share it. */
struct xmm_writer {
    int fd;
    int error;
    struct xmm_text text;
};
void xmm_writer_flush(struct xmm_writer *writer);
void xmm_writer_printf(struct xmm_writer *writer, const char *format, ...);

/* Misuse of the heap: reports `what` and the address `ptr` on stderr (one
 * line, never allocating), counts it in xmm_invalid_free_count, and aborts
 * unless XMM_INVALID_FREE=warn. Callable from every layer: the layer that
 * finds the misuse reports it and then leaves the block alone. */
void xmm_report_bad_free(const char *what, const void *ptr);
void xmm_report_double_free(const void *object);
extern XMM_HIDDEN uint64_t xmm_invalid_free_count;

#endif
