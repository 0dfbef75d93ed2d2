/*
 * stats.c - xmm_stats_get / xmm_stats_print, XMM_STATS at exit and
 * XMM_STATS_SIGNAL. Nothing here allocates: a report is formatted into a
 * buffer mapped for it and written with one write(2).
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "base/base.h"
#include "backend/backend.h"
#include "mem/mem.h"
#include "stats.h"
#include "upkeep.h"
#include "xmm.h"

struct xmm_heap_counters xmm_heap_counters;

void xmm_heap_count_direct(uint64_t blocks, uint64_t bytes)
{
    struct xmm_heap_counters *heap = &xmm_heap_counters;
    if (blocks) {
        uint64_t made = __atomic_add_fetch(&heap->direct_allocations, blocks, __ATOMIC_RELAXED);
        /* Frees read after: blocks made since by others may be counted
         * freed already (never below none). */
        uint64_t freed = __atomic_load_n(&heap->direct_frees, __ATOMIC_RELAXED);
        xmm_raise_to(&heap->direct_peak_count, made > freed ? made - freed : 0);
    }
    xmm_raise_to(&heap->direct_peak_bytes,
                 __atomic_add_fetch(&heap->direct_bytes, bytes, __ATOMIC_RELAXED));
}

/* ---- collecting ------------------------------------------------------------------- */

struct snapshot {
    struct xmm_stats totals;
    struct xmm_front_stats front;
    /* Per class: live objects (exact), estimated allocations and frees. */
    uint64_t class_live[XMM_CLASS_COUNT];
    uint64_t class_allocations[XMM_CLASS_COUNT];
    uint64_t class_frees[XMM_CLASS_COUNT];
    struct xmm_central_stats central[XMM_MAX_NODES + 1];
    struct xmm_page_heap_stats pages[XMM_MAX_NODES + 1];
};

/* What the last snapshots reported of each class (estimate_class). */
static struct {
    uint64_t allocations, frees;
} class_reported[XMM_CLASS_COUNT];

static uint64_t max_of(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* A class's figures. Live objects are exact: the central layer counts the
 * objects it hands out and takes back, the caches' headers say what they
 * hold, and the heap profiler's small samples (pages of their own) are
 * counted apart. Allocations are the ticks' sample (upkeep.h), raised to
 * at least the live objects and to what an earlier snapshot reported;
 * frees are allocations minus live objects, at least what was reported.
 * Both are counters a monitor may take rates of: the estimate alone fell
 * below the floor an earlier snapshot was raised to (100,000 blocks live,
 * then all freed: allocations went from 100,000 to 99,618). Snapshots
 * taken at once may each report less than the other; one thread's
 * snapshots never go down. */
static void estimate_class(struct snapshot *snapshot, unsigned size_class)
{
    uint64_t out = xmm_central_objects_out(size_class) +
                   __atomic_load_n(&xmm_heap_counters.sampled_small_live[size_class],
                                   __ATOMIC_RELAXED);
    uint64_t cached = snapshot->front.cached_objects[size_class];
    uint64_t live = out > cached ? out - cached : 0;
    uint64_t requests, bytes;
    xmm_upkeep_sampled(size_class, &requests, &bytes);
    uint64_t *reported_allocations = &class_reported[size_class].allocations;
    uint64_t *reported_frees = &class_reported[size_class].frees;
    uint64_t allocations =
        max_of(max_of(requests, __atomic_load_n(reported_allocations, __ATOMIC_RELAXED)),
               live + __atomic_load_n(reported_frees, __ATOMIC_RELAXED));
    xmm_raise_to(reported_allocations, allocations);
    xmm_raise_to(reported_frees, allocations - live);
    snapshot->class_live[size_class] = live;
    snapshot->class_allocations[size_class] = allocations;
    snapshot->class_frees[size_class] = allocations - live;
}

static void collect(struct snapshot *snapshot)
{
    memset(snapshot, 0, sizeof(*snapshot));
    struct xmm_stats *totals = &snapshot->totals;
    xmm_front_end_stats(&snapshot->front);
    uint64_t allocations = 0, frees = 0, slow_operations = 0, small_out = 0;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        estimate_class(snapshot, size_class);
        allocations += snapshot->class_allocations[size_class];
        frees += snapshot->class_frees[size_class];
        slow_operations += snapshot->front.slow_allocations[size_class] +
                           snapshot->front.slow_frees[size_class];
    }
    uint64_t span_bytes = 0, batch_bytes = 0;
    for (int node = 0; node < xmm_nodes; node++) {
        xmm_central_stats(node, &snapshot->central[node]);
        xmm_page_heap_stats(node, &snapshot->pages[node]);
        snapshot->pages[node].large_cached = xmm_large_cache_bytes(node);
        span_bytes += snapshot->central[node].span_bytes;
        small_out += snapshot->central[node].small_out_bytes;
        batch_bytes += snapshot->central[node].objects_in_batches_bytes;
        /* Cached large blocks and the carvers' runs are free, unpurged
         * pages held aside. */
        uint64_t run_resident = snapshot->central[node].run_resident_bytes;
        totals->bytes_page_heap_free += snapshot->pages[node].dirty_bytes +
                                        snapshot->pages[node].large_cached + run_resident;
        totals->bytes_purged += snapshot->pages[node].purged_total +
                                snapshot->central[node].purged_inside_bytes;
        totals->bytes_in_use += snapshot->pages[node].large_in_use;
        totals->bytes_committed += snapshot->pages[node].large_in_use +
                                   snapshot->pages[node].large_cached +
                                   snapshot->pages[node].dirty_bytes + run_resident;
    }
    struct xmm_heap_counters *heap = &xmm_heap_counters;
    uint64_t large = 0, large_frees = 0;
    for (int node = 0; node < xmm_nodes; node++) {
        large += snapshot->pages[node].large_allocations;
        large_frees += snapshot->pages[node].large_frees;
    }
    uint64_t direct = __atomic_load_n(&heap->direct_allocations, __ATOMIC_RELAXED);
    uint64_t direct_bytes = __atomic_load_n(&heap->direct_bytes, __ATOMIC_RELAXED);
    totals->version = XMM_STATS_VERSION;
    totals->node_count = (uint32_t)xmm_real_nodes;
    totals->allocations = allocations + large + direct;
    totals->frees = frees + large_frees + __atomic_load_n(&heap->direct_frees, __ATOMIC_RELAXED);
    /* Objects out of the central layer are either cached in a front end or
     * held by the program: exact when no thread is allocating. */
    uint64_t small_in_use = small_out > snapshot->front.cached_bytes
                                ? small_out - snapshot->front.cached_bytes : 0;
    totals->bytes_in_use += small_in_use + direct_bytes;
    totals->bytes_reserved = xmm_arena_reserved_bytes();
    totals->bytes_committed += span_bytes + direct_bytes;
    totals->bytes_cached = snapshot->front.cached_bytes;
    uint64_t held = small_in_use + snapshot->front.cached_bytes;
    totals->bytes_central = span_bytes > held ? span_bytes - held : batch_bytes;
    totals->large_allocations = large + direct;
    totals->cross_node_frees = snapshot->front.cross_node_frees;
    totals->invalid_frees = __atomic_load_n(&xmm_invalid_free_count, __ATOMIC_RELAXED);
    totals->cache_refills = snapshot->front.refills;
    totals->cache_drains = snapshot->front.drains;
    /* Operations the caches served without a slow path: an estimate, and
     * a counter (estimate_class says why). */
    static uint64_t hits_reported;
    uint64_t hits = allocations + frees > slow_operations ? allocations + frees - slow_operations : 0;
    hits = max_of(hits, __atomic_load_n(&hits_reported, __ATOMIC_RELAXED));
    xmm_raise_to(&hits_reported, hits);
    if (xmm_cpu_cache_slab_count() > 0)
        totals->rseq_fast_path = hits;
    else
        totals->rseq_fallback = hits;
    totals->rseq_restarts = snapshot->front.rseq_restarts;
    totals->metadata_bytes = xmm_metadata_bytes();
    for (int node = 0; node < xmm_nodes; node++) { /* metadata in chunks, committed too */
        totals->metadata_bytes += snapshot->pages[node].descriptor_bytes;
        totals->bytes_committed += snapshot->pages[node].descriptor_bytes;
    }
    /* The parts are read one after another while other threads move pages
     * between them: in a busy process their sum passed what is mapped (in
     * about one snapshot of several thousand, under 2,000-5,000 stats
     * signals a second). What is committed is mapped. */
    if (totals->bytes_committed > totals->bytes_reserved)
        totals->bytes_committed = totals->bytes_reserved;
    strncpy(totals->front_end, xmm_front_end_name(), sizeof(totals->front_end) - 1);
}

void xmm_stats_collect(struct xmm_stats *stats)
{
    struct snapshot snapshot;
    collect(&snapshot);
    *stats = snapshot.totals;
}

/* ---- writing ---------------------------------------------------------------------- */

/* A report is written with one write(2) when its buffer holds all of it, so
 * that the reports of processes appending to one XMM_STATS_FILE never
 * interleave (O_APPEND makes each write atomic against the others). */

/* Bytes enough for the longest report, with every counter at 20 digits: a
 * node's entry is under 1 KiB, a CPU's under 64 bytes, a class's under 160. */
static size_t report_capacity(void)
{
    size_t bytes = 4096 + (size_t)(xmm_nodes + 1) * 1024 +
                   (size_t)xmm_cpu_cache_slab_count() * 64 + XMM_CLASS_COUNT * 160;
    size_t page = xmm_os_page_size();
    return (bytes + page - 1) & ~(page - 1);
}

struct field {
    const char *name;
    uint64_t value;
};

static size_t totals_fields(const struct xmm_stats *totals, struct field *fields)
{
    struct field list[] = {
        {"allocations", totals->allocations},
        {"frees", totals->frees},
        {"bytes_in_use", totals->bytes_in_use},
        {"bytes_reserved", totals->bytes_reserved},
        {"bytes_committed", totals->bytes_committed},
        {"bytes_purged", totals->bytes_purged},
        {"bytes_cached", totals->bytes_cached},
        {"bytes_central", totals->bytes_central},
        {"bytes_page_heap_free", totals->bytes_page_heap_free},
        {"large_allocations", totals->large_allocations},
        {"cross_node_frees", totals->cross_node_frees},
        {"invalid_frees", totals->invalid_frees},
        {"cache_refills", totals->cache_refills},
        {"cache_drains", totals->cache_drains},
        {"rseq_fast_path", totals->rseq_fast_path},
        {"rseq_fallback", totals->rseq_fallback},
        {"rseq_restarts", totals->rseq_restarts},
        {"metadata_bytes", totals->metadata_bytes},
    };
    memcpy(fields, list, sizeof(list));
    return sizeof(list) / sizeof(list[0]);
}

/* One size class's row of either format; false for a class that saw no
 * traffic (left out). */
struct class_row {
    uint64_t allocated, freed, in_use_bytes;
};

static bool class_row(const struct snapshot *snapshot, unsigned size_class, struct class_row *row)
{
    row->allocated = snapshot->class_allocations[size_class];
    row->freed = snapshot->class_frees[size_class];
    row->in_use_bytes = snapshot->class_live[size_class] * xmm_class_size(size_class);
    return row->allocated || row->freed;
}

/* The text tables: names left-aligned in the first column, numbers
 * right-aligned in the others, each after a space at least (xmm_text has
 * no widths). */
#define TEXT_NAME_WIDTH 26
#define TEXT_NUMBER_WIDTH 13

static void write_padding(struct xmm_writer *writer, size_t length, size_t width)
{
    static const char spaces[] = "                          ";
    size_t pad = width > length ? width - length : 0;
    if (pad > sizeof spaces - 1)
        pad = sizeof spaces - 1;
    xmm_writer_printf(writer, "%s", &spaces[sizeof spaces - 1 - pad]);
}

static void write_name(struct xmm_writer *writer, const char *name)
{
    xmm_writer_printf(writer, "  %s", name);
    write_padding(writer, strlen(name), TEXT_NAME_WIDTH);
}

static void write_heading(struct xmm_writer *writer, const char *heading)
{
    write_padding(writer, strlen(heading), TEXT_NUMBER_WIDTH);
    xmm_writer_printf(writer, " %s", heading);
}

/* `value` in decimal, as a cell (`as_name`: a row's name: a node, a
 * slab, a class; else a number column's). */
static void write_decimal(struct xmm_writer *writer, uint64_t value, bool as_name)
{
    char digits[24];
    struct xmm_text text = {digits, sizeof digits - 1, 0};
    xmm_text_append_unsigned(&text, value, 10);
    digits[text.length] = '\0';
    if (as_name)
        write_name(writer, digits);
    else
        write_heading(writer, digits);
}

static void write_number(struct xmm_writer *writer, uint64_t value)
{
    write_decimal(writer, value, false);
}

static void write_index(struct xmm_writer *writer, uint64_t index)
{
    write_decimal(writer, index, true);
}

/* One row of the node table: `name`, then the field of each node. */
enum node_field {
    NODE_INTERLEAVED, NODE_SPANS_CREATED, NODE_SPANS_RELEASED, NODE_SMALL_SPAN_BYTES,
    NODE_TRANSFER_BATCHES, NODE_TRANSFER_BATCH_BYTES, NODE_PAGE_HEAP_FREE,
    NODE_PAGE_HEAP_UNPURGED, NODE_PURGED, NODE_LARGE_IN_USE, NODE_LARGE_CACHED,
    NODE_LARGE_ALLOCATIONS, NODE_CARVER_RUN_BYTES, NODE_RESERVED, NODE_FIELDS
};

/* The JSON names (docs/statistics.md), in the JSON's order. */
static const char *const node_field_names[NODE_FIELDS] = {
    "interleaved", "spans_created", "spans_released", "small_span_bytes",
    "transfer_batches", "transfer_batch_bytes", "page_heap_free_bytes",
    "page_heap_unpurged_bytes", "purged_bytes", "large_in_use_bytes", "large_cached_bytes",
    "large_allocations", "carver_run_bytes", "reserved_bytes",
};

static uint64_t node_field(const struct snapshot *snapshot, int node, enum node_field field)
{
    const struct xmm_central_stats *central = &snapshot->central[node];
    const struct xmm_page_heap_stats *pages = &snapshot->pages[node];
    switch (field) {
    case NODE_INTERLEAVED: return node == xmm_interleaved_node;
    case NODE_SPANS_CREATED: return central->spans_created;
    case NODE_SPANS_RELEASED: return central->spans_released;
    case NODE_SMALL_SPAN_BYTES: return central->span_bytes;
    case NODE_TRANSFER_BATCHES: return central->batches_cached;
    case NODE_TRANSFER_BATCH_BYTES: return central->objects_in_batches_bytes;
    case NODE_PAGE_HEAP_FREE: return pages->free_bytes;
    case NODE_PAGE_HEAP_UNPURGED: return pages->dirty_bytes;
    case NODE_PURGED: return pages->purged_total + central->purged_inside_bytes;
    case NODE_LARGE_IN_USE: return pages->large_in_use;
    case NODE_LARGE_CACHED: return pages->large_cached;
    case NODE_LARGE_ALLOCATIONS: return pages->large_count;
    case NODE_CARVER_RUN_BYTES: return central->run_bytes;
    case NODE_RESERVED: return pages->reserved_bytes;
    case NODE_FIELDS: break;
    }
    return 0;
}

/* The figures of the JSON report, as tables: the totals, the nodes (a
 * column each), the CPUs' caches and the size classes in use. */
static void write_text(struct xmm_writer *writer, const struct snapshot *snapshot)
{
    struct field fields[32];
    size_t count = totals_fields(&snapshot->totals, fields);
    xmm_writer_printf(writer, "xmm statistics (front end: %s, %s; nodes: %d)\n",
                      snapshot->totals.front_end, xmm_front_end_detail(), xmm_nodes);
    for (size_t i = 0; i < count; i++) {
        write_name(writer, fields[i].name);
        write_number(writer, fields[i].value);
        xmm_writer_printf(writer, "\n");
    }
    write_name(writer, "node");
    for (int node = 0; node < xmm_nodes; node++)
        write_number(writer, (uint64_t)node);
    xmm_writer_printf(writer, "\n");
    for (int field = 0; field < NODE_FIELDS; field++) {
        write_name(writer, node_field_names[field]);
        for (int node = 0; node < xmm_nodes; node++)
            write_number(writer, node_field(snapshot, node, (enum node_field)field));
        xmm_writer_printf(writer, "\n");
    }
    write_name(writer, "cpu (slab)");
    write_heading(writer, "cached_bytes");
    xmm_writer_printf(writer, "\n");
    for (int slab = 0; slab < xmm_cpu_cache_slab_count(); slab++) {
        uint64_t cached = xmm_cpu_cache_bytes(slab);
        if (!cached)
            continue;
        write_index(writer, (uint64_t)slab);
        write_number(writer, cached);
        xmm_writer_printf(writer, "\n");
    }
    write_name(writer, "class");
    static const char *const class_columns[] = {"size", "allocations", "frees", "in_use_bytes"};
    for (size_t i = 0; i < sizeof class_columns / sizeof class_columns[0]; i++)
        write_heading(writer, class_columns[i]);
    xmm_writer_printf(writer, "\n");
    struct class_row row;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        if (!class_row(snapshot, size_class, &row))
            continue;
        write_index(writer, size_class);
        write_number(writer, xmm_class_size(size_class));
        write_number(writer, row.allocated);
        write_number(writer, row.freed);
        write_number(writer, row.in_use_bytes);
        xmm_writer_printf(writer, "\n");
    }
}

static void write_json(struct xmm_writer *writer, const struct snapshot *snapshot)
{
    struct field fields[32];
    size_t count = totals_fields(&snapshot->totals, fields);
    char program[32];
    xmm_program_name(program, sizeof(program));
    for (char *c = program; *c; c++) /* a JSON string, whatever the name holds */
        if (*c < 0x20 || *c > 0x7e || *c == '"' || *c == '\\')
            *c = '?';
    xmm_writer_printf(writer, "{\"version\": %d, \"pid\": %d, \"program\": \"%s\", \"front_end\": \"%s\", "
                 "\"front_end_detail\": \"%s\", \"node_count\": %d",
         XMM_STATS_VERSION, xmm_os_process_id(), program, snapshot->totals.front_end,
         xmm_front_end_detail(), xmm_real_nodes);
    for (size_t i = 0; i < count; i++)
        xmm_writer_printf(writer, ", \"%s\": %u", fields[i].name, fields[i].value);
    xmm_writer_printf(writer, ", \"nodes\": [");
    for (int node = 0; node < xmm_nodes; node++) {
        xmm_writer_printf(writer, "%s{\"node\": %d", node ? ", " : "", node);
        for (int field = 0; field < NODE_FIELDS; field++) {
            uint64_t value = node_field(snapshot, node, (enum node_field)field);
            if (field == NODE_INTERLEAVED)
                xmm_writer_printf(writer, ", \"%s\": %s", node_field_names[field],
                                  value ? "true" : "false");
            else
                xmm_writer_printf(writer, ", \"%s\": %u", node_field_names[field], value);
        }
        xmm_writer_printf(writer, "}");
    }
    xmm_writer_printf(writer, "], \"cpus\": [");
    bool first_cpu = true;
    for (int slab = 0; slab < xmm_cpu_cache_slab_count(); slab++) {
        uint64_t cached = xmm_cpu_cache_bytes(slab);
        if (!cached)
            continue;
        xmm_writer_printf(writer, "%s{\"slab\": %d, \"cached_bytes\": %u}", first_cpu ? "" : ", ", slab,
             cached);
        first_cpu = false;
    }
    xmm_writer_printf(writer, "], \"size_classes\": [");
    bool first = true;
    struct class_row row;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        if (!class_row(snapshot, size_class, &row))
            continue;
        xmm_writer_printf(writer,
             "%s{\"class\": %d, \"size\": %z, \"allocations\": %u, \"frees\": %u, "
             "\"in_use_bytes\": %u}",
             first ? "" : ", ", (int)size_class, xmm_class_size(size_class), row.allocated,
             row.freed, row.in_use_bytes);
        first = false;
    }
    xmm_writer_printf(writer, "]}\n");
}

int xmm_stats_write(int fd, const char *format)
{
    bool json;
    if (!format || !strcmp(format, "text"))
        json = false;
    else if (!strcmp(format, "json"))
        json = true;
    else {
        errno = EINVAL;
        return -1;
    }
    struct snapshot snapshot;
    collect(&snapshot);
    /* The whole report in one buffer, mapped for the call (never malloc);
     * without memory for it, 4 KiB pieces. */
    size_t capacity = report_capacity();
    char *mapped = xmm_os_map(capacity, 0);
    char fallback[4096];
    struct xmm_writer writer = {.fd = fd};
    writer.text = mapped ? (struct xmm_text){mapped, capacity, 0}
                         : (struct xmm_text){fallback, sizeof(fallback), 0};
    if (json)
        write_json(&writer, &snapshot);
    else
        write_text(&writer, &snapshot);
    xmm_writer_flush(&writer);
    if (mapped)
        xmm_os_unmap(mapped, capacity);
    if (writer.error) {
        errno = writer.error;
        return -1;
    }
    return 0;
}

/* ---- at exit and on a signal ---------------------------------------------------------- */

static const char *format_name(void)
{
    return xmm_config.stats_at_exit == XMM_STATS_JSON ? "json" : "text";
}

/* A private copy of stderr, taken at start when statistics are wanted:
 * programs may close stderr in their own exit handlers (gnulib's
 * close_stdout does), which run before XMM's. Checked before each use
 * (platform.h): a daemon that closed it may have reused its number. */
static struct xmm_os_saved_stderr stats_stderr = {.fd = -1, .taken = false};

void xmm_program_name(char *name, size_t size)
{
    xmm_os_program_name(name, size);
    for (char *c = name; *c; c++)
        if (*c == '/')
            *c = '!';
}

bool xmm_expand_path(const char *pattern, char *path, size_t size)
{
    struct xmm_text text = {path, size, 0};
    char name[32];
    for (const char *cursor = pattern; *cursor; cursor++) {
        if (cursor[0] == '%' && cursor[1] == 'p') {
            xmm_text_format(&text, "%d", xmm_os_process_id());
            cursor++;
        } else if (cursor[0] == '%' && cursor[1] == 'e') {
            xmm_program_name(name, sizeof(name));
            xmm_text_append(&text, name);
            cursor++;
        } else {
            char one[2] = {cursor[0], '\0'};
            xmm_text_append(&text, one);
            if (cursor[0] == '%' && cursor[1] == '%')
                cursor++;
        }
    }
    return text.length + 1 < size; /* else it may have been cut */
}

/* A line about XMM_STATS_FILE on `standard_error` (nowhere if -1). */
static void say_about_file(int standard_error, const char *what, const char *path, int error)
{
    if (standard_error < 0)
        return;
    char line[PATH_MAX + 128];
    struct xmm_text text = {line, sizeof line, 0};
    xmm_text_format(&text, "xmm: XMM_STATS_FILE: %s", what);
    if (path)
        xmm_text_format(&text, " %s", path);
    if (error)
        xmm_text_format(&text, " (%s: %s)", xmm_os_error_name(error), xmm_os_error_text(error));
    xmm_text_format(&text, "%s\n", path || !error ? "; writing to stderr" : "");
    xmm_os_write_fd(standard_error, line, text.length);
}

/* The report to XMM_STATS_FILE, else to stderr if it is still the file
 * it was at start (a daemon may have reused its number). */
static void print_to_destination(void)
{
    int standard_error = xmm_os_saved_stderr_fd(&stats_stderr);
    int fd = standard_error;
    if (xmm_config.stats_file) {
        char path[PATH_MAX];
        bool fits = xmm_expand_path(xmm_config.stats_file, path, sizeof(path));
        fd = fits ? xmm_os_open_append(path) : -1;
        if (!fits)
            say_about_file(standard_error, "the path is too long once expanded", NULL, 0);
        else if (fd < 0)
            say_about_file(standard_error, "cannot open", path, errno);
        if (fd < 0)
            fd = standard_error;
    }
    if (fd < 0)
        return; /* stderr was closed, and its number given to another file */
    if (xmm_stats_write(fd, format_name()) != 0 && fd != standard_error)
        say_about_file(standard_error, "the statistics could not be written", NULL, errno);
    if (fd != standard_error)
        xmm_os_close(fd);
}

static void print_at_exit(void)
{
    print_to_destination();
}

/* The signal handler only posts an event (async-signal-safe); a thread
 * made for the purpose collects and prints, taking locks safely. */
static struct xmm_os_event stats_request;

static void on_stats_signal(int signal_number)
{
    (void)signal_number;
    xmm_os_event_post(&stats_request);
}

void xmm_stats_after_fork_child(void)
{
    /* A signal the parent had not served yet is the parent's: the child's
     * printer, once it starts, must not write a report nobody asked it for. */
    xmm_os_event_forget(&stats_request);
}

static void *stats_printer(void *unused)
{
    xmm_upkeep_serve(&stats_request, print_to_destination);
    return NULL;
}

/* A signal that came shortly before exit: the printer may not have
 * written its report yet when the process ends (1 report in 10 came out
 * of a program signalled 0.3 s into a sleep(5) that the signal cut short:
 * it exited at once). Exit waits for the printer, up to a second, and
 * prints here if the printer could not (not started yet in a fork child,
 * or stuck). */
static void finish_signal_reports(void)
{
    if (!xmm_os_event_settle(&stats_request, XMM_EXIT_REPORT_WAIT_NS)) {
        xmm_os_event_forget(&stats_request);
        print_to_destination();
    }
}

void xmm_stats_install_hooks(void)
{
    if (xmm_config.stats_at_exit == XMM_STATS_NONE && !xmm_config.stats_signal)
        return;
    xmm_os_save_stderr(&stats_stderr); /* also where XMM_STATS_FILE fails */
    if (xmm_config.stats_at_exit != XMM_STATS_NONE)
        xmm_os_at_exit(print_at_exit);
    if (xmm_config.stats_signal) {
        if (xmm_config.stats_at_exit == XMM_STATS_NONE)
            xmm_config.stats_at_exit = XMM_STATS_TEXT;
        if (xmm_upkeep_start_service(stats_printer)) {
            xmm_os_at_exit(finish_signal_reports);
            xmm_os_signal_handler(xmm_config.stats_signal, on_stats_signal);
        }
    }
}

void xmm_stats_print_topology(void)
{
    xmm_report("xmm: %d node(s), %d possible CPU(s), front end %s: %s\n",
               xmm_topology.node_count, xmm_topology.cpu_count, xmm_front_end_name(),
               xmm_front_end_detail());
    char placement[256];
    struct xmm_text placement_text = {placement, sizeof(placement), 0};
    xmm_numa_describe(&placement_text);
    xmm_os_write_error(placement_text.buffer, placement_text.length);
    for (int node = 0; node < xmm_nodes; node++) {
        char line[512];
        struct xmm_text text = {line, sizeof(line), 0};
        xmm_text_format(&text, "xmm: node %d CPUs:", node);
        for (int cpu = 0; cpu < xmm_topology.cpu_count; cpu++)
            if (xmm_node_of_cpu(cpu) == node)
                xmm_text_format(&text, " %d", cpu);
        xmm_text_append(&text, "\n");
        xmm_os_write_error(text.buffer, text.length);
    }
}
