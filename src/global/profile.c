/*
 * profile.c - the sampling heap profiler (see profile.h): sample records,
 * the table of distinct stacks, dumps in the legacy gperftools heap
 * profile format, the leak report.
 *
 * Every distinct stack gets one entry, made on its first sample and never
 * freed; its frames never change, so a dump copies the entries' counters
 * under the lock and formats the frames after releasing it. Counters are
 * integers, so that a sample's free takes back exactly what its
 * allocation added: estimated objects in 1/65536ths, estimated bytes.
 *
 * The dump's numbers are already estimates of the whole heap (each sample
 * scaled by 1 / (1 - e^(-size/T)), with its own size), so the header says
 * "heapprofile", for which pprof applies no scaling of its own. (pprof's
 * "heap_v2/T" scaling works per stack from the average size of its
 * samples, which is biased when one stack allocates several sizes.)
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "backend/backend.h"
#include "base/base.h"
#include "profile.h"
#include "stats.h"
#include "upkeep.h"

#define MAX_DEPTH 64      /* frames kept per stack */
#define MAX_OWN_FRAMES 32 /* XMM's own frames above the program's, at most */
#define BUCKET_BITS 14    /* 16384 hash chains: 128 KiB, touched as used */
#define BUCKET_COUNT ((size_t)1 << BUCKET_BITS)
#define FIXED_ONE 65536.0 /* estimated objects are kept in 1/65536ths */
#define SPARE_BATCH 64    /* records taken from metadata at a time */

struct stack {
    struct stack *next_in_bucket;
    struct stack *next_in_table;  /* every stack, newest first */
    uint64_t hash;
    uint32_t depth;
    /* Under the lock. */
    uint64_t live_samples;
    uint64_t live_objects_fixed;
    uint64_t live_bytes;
    uint64_t total_objects_fixed; /* every sample since the start */
    uint64_t total_bytes;
    uintptr_t frames[];           /* return addresses, innermost first */
};

struct xmm_profile_sample {
    struct stack *stack;
    struct xmm_profile_sample *next_spare;
    uint64_t size;
    uint64_t objects_fixed;
    uint64_t bytes;
};

static struct {
    struct xmm_lock lock;
    struct stack **buckets;
    struct stack *stacks;
    uint64_t stack_count;
    struct xmm_profile_sample *spares;
} table;

/* Set once the unwinder is primed and the table made (phase 2). */
static bool ready;
/* XMM's own code, whose frames are left out of stacks (0, 0: XMM is
 * linked into the program, and its frames stay in). */
static uintptr_t own_code_start, own_code_end;
/* The calling thread is recording a sample: a second one (the unwinder
 * allocating, a signal handler) is not taken. */
static __thread bool recording __attribute__((tls_model("initial-exec")));
/* A private copy of stderr for the leak report (see stats.c). */
static struct xmm_os_saved_stderr report_stderr = {.fd = -1, .taken = false};

/* ---- recording ---------------------------------------------------------------------- */

static uint64_t hash_frames(const uintptr_t *frames, uint32_t depth)
{
    uint64_t hash = depth;
    for (uint32_t i = 0; i < depth; i++) {
        hash ^= frames[i];
        hash *= 0x9e3779b97f4a7c15ull;
        hash ^= hash >> 29;
    }
    return hash;
}

/* The entry of this stack, made if new. Caller holds the lock. */
static struct stack *find_or_add(const uintptr_t *frames, uint32_t depth, uint64_t hash)
{
    struct stack **bucket = &table.buckets[hash & (BUCKET_COUNT - 1)];
    for (struct stack *stack = *bucket; stack; stack = stack->next_in_bucket)
        if (stack->hash == hash && stack->depth == depth &&
            !memcmp(stack->frames, frames, depth * sizeof(frames[0])))
            return stack;
    struct stack *stack =
        xmm_metadata_alloc(sizeof(*stack) + depth * sizeof(frames[0]), sizeof(void *));
    if (!stack)
        return NULL;
    stack->hash = hash;
    stack->depth = depth;
    memcpy(stack->frames, frames, depth * sizeof(frames[0]));
    stack->next_in_bucket = *bucket;
    *bucket = stack;
    stack->next_in_table = table.stacks;
    table.stacks = stack;
    __atomic_store_n(&table.stack_count, table.stack_count + 1, __ATOMIC_RELAXED);
    return stack;
}

/* A free record. Caller holds the lock. */
static struct xmm_profile_sample *take_spare(void)
{
    if (!table.spares) {
        struct xmm_profile_sample *batch =
            xmm_metadata_alloc(SPARE_BATCH * sizeof(*batch), XMM_CACHE_LINE);
        if (!batch)
            return NULL;
        for (int i = 0; i < SPARE_BATCH; i++) {
            batch[i].next_spare = table.spares;
            table.spares = &batch[i];
        }
    }
    struct xmm_profile_sample *sample = table.spares;
    table.spares = sample->next_spare;
    return sample;
}

static bool in_own_code(uintptr_t address)
{
    return address >= own_code_start && address < own_code_end;
}

struct xmm_profile_sample *xmm_profile_record(size_t size)
{
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE) || recording)
        return NULL;
    recording = true;
    void *frames[MAX_DEPTH + MAX_OWN_FRAMES];
    int count = xmm_os_backtrace(frames, MAX_DEPTH + MAX_OWN_FRAMES);
    int first = 0;
    while (first < count - 1 && in_own_code((uintptr_t)frames[first]))
        first++;
    uint32_t depth = (uint32_t)(count - first);
    if (depth > MAX_DEPTH)
        depth = MAX_DEPTH;
    const uintptr_t *pcs = (const uintptr_t *)&frames[first];
    double weight = xmm_sample_weight(size, (int64_t)xmm_config.profile_interval);
    struct xmm_profile_sample *sample = NULL;
    if (count > 0 && xmm_lock_acquire(&table.lock)) {
        struct stack *stack = find_or_add(pcs, depth, hash_frames(pcs, depth));
        if (stack)
            sample = take_spare();
        if (sample) {
            sample->stack = stack;
            sample->size = size;
            sample->objects_fixed = (uint64_t)(weight * FIXED_ONE + 0.5);
            sample->bytes = (uint64_t)(weight * (double)size + 0.5);
            stack->live_samples++;
            stack->live_objects_fixed += sample->objects_fixed;
            stack->live_bytes += sample->bytes;
            stack->total_objects_fixed += sample->objects_fixed;
            stack->total_bytes += sample->bytes;
        }
        xmm_lock_release(&table.lock);
    }
    recording = false;
    return sample;
}

size_t xmm_profile_forget(struct xmm_profile_sample *sample)
{
    size_t size = sample->size;
    /* A signal handler that interrupted this thread inside the lock cannot
     * wait for it: the record stays counted (it leaks from the profile). */
    if (!xmm_lock_acquire(&table.lock))
        return size;
    struct stack *stack = sample->stack;
    stack->live_samples--;
    stack->live_objects_fixed -= sample->objects_fixed;
    stack->live_bytes -= sample->bytes;
    sample->stack = NULL;
    sample->next_spare = table.spares;
    table.spares = sample;
    xmm_lock_release(&table.lock);
    return size;
}

/* ---- snapshots ---------------------------------------------------------------------- */

struct row {
    const struct stack *stack;
    uint64_t live_samples;
    uint64_t live_objects_fixed, live_bytes;
    uint64_t total_objects_fixed, total_bytes;
};

/* Output is formatted into this much of the snapshot's mapping, then
 * written, piece by piece: never under the lock. */
#define OUTPUT_BYTES ((size_t)64 << 10)

struct snapshot {
    char *mapping;
    size_t mapped;
    struct row *rows;
    size_t count;
    char *output; /* OUTPUT_BYTES */
};

static void snapshot_release(struct snapshot *snapshot)
{
    if (snapshot->mapping)
        xmm_os_unmap(snapshot->mapping, snapshot->mapped);
}

/* Copies every stack's counters. false with errno (ENOMEM, EDEADLK). */
static bool take_snapshot(struct snapshot *snapshot)
{
    memset(snapshot, 0, sizeof(*snapshot));
    for (;;) {
        size_t room = (size_t)__atomic_load_n(&table.stack_count, __ATOMIC_RELAXED) + 256;
        size_t bytes = xmm_align_up(room * sizeof(struct row) + OUTPUT_BYTES, xmm_os_page_size());
        char *mapping = xmm_os_map(bytes, 0);
        if (!mapping) {
            errno = ENOMEM;
            return false;
        }
        if (!xmm_lock_acquire(&table.lock)) {
            xmm_os_unmap(mapping, bytes);
            errno = EDEADLK;
            return false;
        }
        if (table.stack_count > room) { /* grew meanwhile: again, larger */
            xmm_lock_release(&table.lock);
            xmm_os_unmap(mapping, bytes);
            continue;
        }
        snapshot->mapping = mapping;
        snapshot->mapped = bytes;
        snapshot->output = mapping;
        snapshot->rows = (struct row *)(mapping + OUTPUT_BYTES);
        for (const struct stack *stack = table.stacks; stack; stack = stack->next_in_table) {
            struct row *row = &snapshot->rows[snapshot->count++];
            row->stack = stack;
            row->live_samples = stack->live_samples;
            row->live_objects_fixed = stack->live_objects_fixed;
            row->live_bytes = stack->live_bytes;
            row->total_objects_fixed = stack->total_objects_fixed;
            row->total_bytes = stack->total_bytes;
        }
        xmm_lock_release(&table.lock);
        return true;
    }
}

static uint64_t objects(uint64_t fixed)
{
    return (uint64_t)((double)fixed / FIXED_ONE + 0.5);
}

/* ---- writing ------------------------------------------------------------------------ */

/* The process's mappings, as pprof reads them to find each address's file. */
static void put_maps(struct xmm_writer *output)
{
    xmm_writer_flush(output);
    int fd = xmm_os_open_read("/proc/self/maps");
    if (fd < 0)
        return;
    long count;
    while ((count = xmm_os_read_fd(fd, output->text.buffer, output->text.capacity)) > 0) {
        output->text.length = (size_t)count;
        xmm_writer_flush(output);
    }
    xmm_os_close(fd);
}

/* The legacy heap profile (gperftools' heap-profiler format):
 *   heap profile: <live objects>: <live bytes> [<objects>: <bytes>] @ heapprofile
 *   <live objects>: <live bytes> [<objects>: <bytes>] @ <pc> <pc> ...
 *   ...
 *   MAPPED_LIBRARIES:
 *   <the lines of /proc/self/maps>
 * The bracketed pair counts every allocation since the start. pprof takes
 * the first address as a pc and subtracts 1 from the others (return
 * addresses): the first is written as its call instruction's address. */
static void write_heap_profile(struct xmm_writer *output, const struct snapshot *snapshot)
{
    uint64_t live_objects = 0, live_bytes = 0, total_objects = 0, total_bytes = 0;
    for (size_t i = 0; i < snapshot->count; i++) {
        const struct row *row = &snapshot->rows[i];
        live_objects += objects(row->live_objects_fixed);
        live_bytes += row->live_bytes;
        total_objects += objects(row->total_objects_fixed);
        total_bytes += row->total_bytes;
    }
    xmm_writer_printf(output, "heap profile: %u: %u [%u: %u] @ heapprofile\n", live_objects, live_bytes,
        total_objects, total_bytes);
    for (size_t i = 0; i < snapshot->count; i++) {
        const struct row *row = &snapshot->rows[i];
        xmm_writer_printf(output, "%u: %u [%u: %u] @", objects(row->live_objects_fixed), row->live_bytes,
            objects(row->total_objects_fixed), row->total_bytes);
        for (uint32_t frame = 0; frame < row->stack->depth; frame++)
            xmm_writer_printf(output, " %p", (void *)(row->stack->frames[frame] - (frame == 0)));
        xmm_writer_printf(output, "\n");
    }
    xmm_writer_printf(output, "\nMAPPED_LIBRARIES:\n");
    put_maps(output);
}

/* Where a dump to `path` is written first, to be renamed over it once
 * complete: a reader (pprof, a collector polling the file) then sees the
 * last whole profile or the new one, never an empty or half-written file,
 * and a dump cut short (the process exiting, a signal's second dump)
 * leaves the last one. Before, the file was truncated first: a profile
 * signal shortly before exit left it empty in 2 of 5 runs, and readers
 * of a file dumped repeatedly found it empty in 20 of 300 reads. False
 * (write in place) for a path that is not a regular file (a FIFO,
 * /dev/stderr, a symbolic link, which renaming would replace) or too
 * long for the suffix. */
static bool temporary_path(const char *path, char *temporary, size_t size)
{
    if (!xmm_os_replaceable(path))
        return false;
    /* The dump's own: processes, and threads of one (a call and the
     * signal's dumper), may dump to one path at once. */
    static uint32_t dumps;
    struct xmm_text text = {temporary, size, 0};
    xmm_text_format(&text, "%s.xmm-tmp-%u-%u", path, (uint64_t)xmm_os_process_id(),
                    (uint64_t)__atomic_fetch_add(&dumps, 1, __ATOMIC_RELAXED));
    return text.length + 1 < size; /* else cut short: write in place */
}

int xmm_profile_write(const char *path)
{
    if (!xmm_profile_on() || !__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        errno = ENOTSUP;
        return -1;
    }
    char expanded[PATH_MAX];
    if (!path) {
        const char *pattern = xmm_config.profile_file ? xmm_config.profile_file
                                                       : XMM_PROFILE_DEFAULT_FILE;
        if (!xmm_expand_path(pattern, expanded, sizeof(expanded))) {
            errno = ENAMETOOLONG;
            return -1;
        }
        path = expanded;
    }
    struct snapshot snapshot;
    if (!take_snapshot(&snapshot))
        return -1;
    char temporary[PATH_MAX];
    bool renamed = temporary_path(path, temporary, sizeof temporary);
    int fd = xmm_os_open_write(renamed ? temporary : path);
    if (fd < 0 && renamed) {
        renamed = false; /* e.g. a directory where only the file is writable */
        fd = xmm_os_open_write(path);
    }
    if (fd < 0) {
        int error = errno;
        snapshot_release(&snapshot);
        errno = error;
        return -1;
    }
    struct xmm_writer output = {.fd = fd, .text = {snapshot.output, OUTPUT_BYTES, 0}};
    write_heap_profile(&output, &snapshot);
    xmm_writer_flush(&output);
    xmm_os_close(fd);
    snapshot_release(&snapshot);
    if (renamed && !output.error && xmm_os_rename(temporary, path) != 0)
        output.error = errno;
    if (renamed && output.error)
        xmm_os_unlink(temporary); /* the last whole profile stays, and no litter */
    if (output.error) {
        errno = output.error;
        return -1;
    }
    return 0;
}

/* A dump the program did not ask for by a call (at exit, on the signal):
 * a failure is reported on stderr. */
static void dump_and_report(void)
{
    int saved_errno = errno;
    if (xmm_profile_write(NULL) != 0) {
        const char *pattern = xmm_config.profile_file ? xmm_config.profile_file
                                                       : XMM_PROFILE_DEFAULT_FILE;
        char path[PATH_MAX];
        int error = errno;
        if (!xmm_expand_path(pattern, path, sizeof(path)))
            xmm_report("xmm: XMM_PROFILE_FILE: the path is too long once expanded\n");
        else
            xmm_report("xmm: cannot write the heap profile to %s (%s: %s)\n", path,
                       xmm_os_error_name(error), xmm_os_error_text(error));
    }
    errno = saved_errno;
}

/* ---- the leak report ------------------------------------------------------------------- */

/* Rows by live bytes, largest first (a heap sort: no malloc, no recursion). */
static bool before(const struct row *a, const struct row *b)
{
    return a->live_bytes < b->live_bytes;
}

static void sift_down(struct row *rows, size_t start, size_t count)
{
    size_t parent = start;
    for (;;) {
        size_t child = 2 * parent + 1;
        if (child >= count)
            return;
        if (child + 1 < count && before(&rows[child + 1], &rows[child]))
            child++;
        if (!before(&rows[child], &rows[parent]))
            return;
        struct row swap = rows[child];
        rows[child] = rows[parent];
        rows[parent] = swap;
        parent = child;
    }
}

static void sort_by_live_bytes(struct row *rows, size_t count)
{
    /* A min-heap; popping the smallest to the end leaves the largest first. */
    for (size_t start = count / 2; start-- > 0;)
        sift_down(rows, start, count);
    for (size_t end = count; end-- > 1;) {
        struct row swap = rows[0];
        rows[0] = rows[end];
        rows[end] = swap;
        sift_down(rows, 0, end);
    }
}

#define LEAK_STACKS_SHOWN 50

/* Each frame as its call instruction's address, and the file and address
 * in the file's numbering that `addr2line -f -C -e FILE ADDRESS` reads. */
static void put_frame(struct xmm_writer *output, unsigned index, uintptr_t return_address)
{
    uintptr_t call = return_address - 1;
    char file[PATH_MAX];
    uintptr_t bias;
    if (xmm_os_code_object((const void *)call, file, sizeof(file), &bias))
        xmm_writer_printf(output, "xmm:     #%d %p %s+%p\n", (int)index, (void *)call, file,
            (void *)(call - bias));
    else
        xmm_writer_printf(output, "xmm:     #%d %p\n", (int)index, (void *)call);
}

static void leak_report(void)
{
    int report_fd = xmm_os_saved_stderr_fd(&report_stderr);
    if (report_fd < 0)
        return; /* stderr was closed, and its number given to another file */
    struct snapshot snapshot;
    if (!take_snapshot(&snapshot)) {
        xmm_report("xmm: XMM_LEAKS: no memory for the leak report\n");
        return;
    }
    size_t live = 0;
    uint64_t bytes = 0, blocks = 0, samples = 0;
    for (size_t i = 0; i < snapshot.count; i++) {
        struct row *row = &snapshot.rows[i];
        if (!row->live_samples)
            continue;
        snapshot.rows[live++] = *row;
        bytes += row->live_bytes;
        blocks += objects(row->live_objects_fixed);
        samples += row->live_samples;
    }
    sort_by_live_bytes(snapshot.rows, live);
    struct xmm_writer output = {.fd = report_fd, .text = {snapshot.output, OUTPUT_BYTES, 0}};
    xmm_writer_printf(&output, "xmm: leak report (XMM_LEAKS=1): about %u bytes in %u blocks still live at "
                 "exit, from %z stacks (estimated from %u samples, one per %z bytes "
                 "allocated on average)\n",
        bytes, blocks, live, samples, xmm_config.profile_interval);
    if (live)
        xmm_writer_printf(&output, "xmm: frames are call sites: address, then FILE+ADDRESS for "
                     "addr2line -f -C -e FILE ADDRESS\n");
    for (size_t i = 0; i < live && i < LEAK_STACKS_SHOWN; i++) {
        const struct row *row = &snapshot.rows[i];
        xmm_writer_printf(&output, "xmm: %u bytes in %u blocks (%u samples) allocated from:\n", row->live_bytes,
            objects(row->live_objects_fixed), row->live_samples);
        for (uint32_t frame = 0; frame < row->stack->depth; frame++)
            put_frame(&output, frame, row->stack->frames[frame]);
    }
    if (live > LEAK_STACKS_SHOWN) {
        uint64_t rest = 0;
        for (size_t i = LEAK_STACKS_SHOWN; i < live; i++)
            rest += snapshot.rows[i].live_bytes;
        xmm_writer_printf(&output, "xmm: ... and %z more stacks, %u bytes\n", live - LEAK_STACKS_SHOWN, rest);
    }
    xmm_writer_flush(&output);
    snapshot_release(&snapshot);
}

/* ---- hooks ------------------------------------------------------------------------------ */

static void at_exit(void)
{
    if (xmm_config.profile_at_exit)
        dump_and_report();
    if (xmm_config.leaks)
        leak_report();
}

/* XMM_PROFILE_SIGNAL: the handler only posts; this thread dumps. */
static struct xmm_os_event dump_request;

static void on_dump_signal(int signal_number)
{
    (void)signal_number;
    xmm_os_event_post(&dump_request);
}

static void *dumper(void *unused)
{
    xmm_upkeep_serve(&dump_request, dump_and_report);
    return NULL;
}

/* A signal shortly before exit: its dump completes first (as the
 * statistics' report does: stats.c, finish_signal_reports). */
static void finish_signal_dumps(void)
{
    if (!xmm_os_event_settle(&dump_request, XMM_EXIT_REPORT_WAIT_NS)) {
        xmm_os_event_forget(&dump_request);
        dump_and_report();
    }
}

static bool make_table(void)
{
    table.buckets = xmm_os_map(BUCKET_COUNT * sizeof(table.buckets[0]), 0);
    table.stacks = NULL;
    table.spares = NULL;
    __atomic_store_n(&table.stack_count, 0, __ATOMIC_RELAXED);
    return table.buckets != NULL;
}

void xmm_profile_init_hooks(void)
{
    if (!xmm_profile_on())
        return;
    if (!make_table()) {
        xmm_report("xmm: XMM_PROFILE: no memory for the profile; not sampling\n");
        return;
    }
    uintptr_t start, end;
    if (xmm_os_code_range((const void *)xmm_profile_record, &start, &end)) {
        own_code_start = start;
        own_code_end = end;
    }
    xmm_os_backtrace_prepare(); /* loads libgcc_s: it allocates, unsampled */
    __atomic_store_n(&ready, true, __ATOMIC_RELEASE);
    if (xmm_config.leaks)
        xmm_os_save_stderr(&report_stderr);
    if (xmm_config.profile_at_exit || xmm_config.leaks)
        xmm_os_at_exit(at_exit);
    if (xmm_config.profile_signal && xmm_upkeep_start_service(dumper)) {
        xmm_os_at_exit(finish_signal_dumps);
        xmm_os_signal_handler(xmm_config.profile_signal, on_dump_signal);
    }
}

/* A lost thread held the lock: its update of the table may be half done.
 * The child starts an empty profile in a new table; records of blocks
 * sampled before the fork still point into the old one, whose counters
 * their frees update harmlessly (nothing reads them again). */
void xmm_profile_after_fork_child(void)
{
    /* A dump the parent had not served yet is the parent's (its file). */
    xmm_os_event_forget(&dump_request);
    if (xmm_lock_holder(&table.lock) != XMM_LOCK_HELD_BY_OTHER)
        return;
    if (!make_table())
        __atomic_store_n(&ready, false, __ATOMIC_RELEASE);
    xmm_lock_reset(&table.lock);
}
