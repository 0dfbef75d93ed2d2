/*
 * report.c - error and diagnostic output without malloc: a tiny formatter
 * into a stack buffer, then write(2).
 */
#include <errno.h>
#include <stdarg.h>

#include "common.h"
#include "config.h"
#include "report.h"

static void append_char(struct xmm_text *text, char c)
{
    if (text->length + 1 < text->capacity)
        text->buffer[text->length++] = c;
    text->buffer[text->length < text->capacity ? text->length : text->capacity - 1] = '\0';
}

void xmm_text_append(struct xmm_text *text, const char *string)
{
    while (*string)
        append_char(text, *string++);
}

void xmm_text_append_unsigned(struct xmm_text *text, uint64_t value, unsigned base)
{
    char digits[24];
    int count = 0;
    do {
        unsigned digit = (unsigned)(value % base);
        digits[count++] = (char)(digit < 10 ? '0' + digit : 'a' + digit - 10);
        value /= base;
    } while (value);
    while (count)
        append_char(text, digits[--count]);
}

void xmm_text_vformat(struct xmm_text *text, const char *format, va_list arguments)
{
    for (const char *cursor = format; *cursor; cursor++) {
        if (*cursor != '%' || !cursor[1]) {
            append_char(text, *cursor);
            continue;
        }
        switch (*++cursor) {
        case 'p':
            xmm_text_append(text, "0x");
            xmm_text_append_unsigned(text, (uintptr_t)va_arg(arguments, void *), 16);
            break;
        case 'z':
            xmm_text_append_unsigned(text, va_arg(arguments, size_t), 10);
            break;
        case 'u':
            xmm_text_append_unsigned(text, va_arg(arguments, uint64_t), 10);
            break;
        case 'd': {
            int value = va_arg(arguments, int);
            if (value < 0) {
                append_char(text, '-');
                xmm_text_append_unsigned(text, (uint64_t)(-(int64_t)value), 10);
            } else {
                xmm_text_append_unsigned(text, (uint64_t)value, 10);
            }
            break;
        }
        case 's': {
            const char *string = va_arg(arguments, const char *);
            xmm_text_append(text, string ? string : "(null)");
            break;
        }
        default:
            append_char(text, *cursor);
        }
    }
}

void xmm_text_format(struct xmm_text *text, const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    xmm_text_vformat(text, format, arguments);
    va_end(arguments);
}

static void write_report(const char *format, va_list arguments)
{
    char buffer[512];
    struct xmm_text text = {buffer, sizeof(buffer), 0};
    xmm_text_vformat(&text, format, arguments);
    xmm_os_write_error(text.buffer, text.length);
}

void xmm_report(const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    write_report(format, arguments);
    va_end(arguments);
}

_Noreturn void xmm_fatal(const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    write_report(format, arguments);
    va_end(arguments);
    xmm_platform_abort();
}

/* ---- buffered reports ------------------------------------------------------ */

void xmm_writer_flush(struct xmm_writer *writer)
{
    int error = writer->text.length
                    ? xmm_os_write_fd(writer->fd, writer->text.buffer, writer->text.length)
                    : 0;
    if (error && !writer->error)
        writer->error = error;
    writer->text.length = 0;
}

void xmm_writer_printf(struct xmm_writer *writer, const char *format, ...)
{
    char line[1024];
    struct xmm_text piece = {line, sizeof(line), 0};
    va_list arguments;
    va_start(arguments, format);
    xmm_text_vformat(&piece, format, arguments);
    va_end(arguments);
    if (writer->text.length + piece.length + 1 >= writer->text.capacity)
        xmm_writer_flush(writer);
    xmm_text_append(&writer->text, line);
}

__thread struct xmm_thread_state xmm_thread __attribute__((tls_model("initial-exec")));

/* ---- misuse of the heap ----------------------------------------------------------- */

uint64_t xmm_invalid_free_count;

void xmm_report_bad_free(const char *what, const void *ptr)
{
    __atomic_fetch_add(&xmm_invalid_free_count, 1, __ATOMIC_RELAXED);
    xmm_report("xmm: %s %p\n", what, ptr);
    if (xmm_config.invalid_free_abort)
        xmm_platform_abort();
}

void xmm_report_double_free(const void *object)
{
    xmm_report_bad_free("free(): double free of", object);
}
