/*
 * procfs.c - RSS and peak RSS from /proc/self.
 */
#include "procfs.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ssize_t read_file(const char *path, char *buffer, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t length = read(fd, buffer, size - 1);
    close(fd);
    if (length < 0)
        return -1;
    buffer[length] = '\0';
    return length;
}

uint64_t current_rss_bytes(void)
{
    char text[128];
    if (read_file("/proc/self/statm", text, sizeof text) <= 0)
        return 0;
    char *resident = strchr(text, ' ');
    if (!resident)
        return 0;
    return strtoull(resident + 1, NULL, 10) * (uint64_t)sysconf(_SC_PAGESIZE);
}

uint64_t peak_rss_kib(void)
{
    char text[4096];
    if (read_file("/proc/self/status", text, sizeof text) <= 0)
        return 0;
    const char *field = strstr(text, "VmHWM:");
    return field ? strtoull(field + strlen("VmHWM:"), NULL, 10) : 0;
}

int reset_peak_rss(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t written = write(fd, "5", 1);
    close(fd);
    return written == 1 ? 0 : -1;
}
