/* libnuma is loaded only where there are nodes to bind to (numa.h,
 * xmm_numa_load_binding), and what XMM maps before it is loaded is bound
 * all the same, before it is touched.
 *
 * This program does not link libnuma, so libnuma is in its address space
 * only if XMM loaded it.
 *
 *   one node    after allocations of every kind, under each XMM_NUMA
 *               policy, libnuma is not mapped.
 *   nodes       (the NUMA VM of tests/numa/vm-driver.sh) libnuma is mapped,
 *               and the mapping that holds each block, the first small
 *               block of the process included, has the policy asked for
 *               (/proc/self/numa_maps), not the default: the chunk the
 *               first blocks come from is mapped during XMM's own start,
 *               before libnuma can be loaded.
 *   early_bind  (nodes) pinned to a CPU of a node other than 0, under
 *               XMM_NUMA=bind:0: what XMM touched before libnuma was loaded
 *               (the CPU's slab, the first chunk's first pages) is on node
 *               0, not on the pinned CPU's node by first touch: no mapping
 *               bound to node 0 has a page elsewhere.
 *   early_interleave (nodes) pinned off node 0, under XMM_NUMA=interleave and
 *               XMM_THP=never: every resident page of an interleaved
 *               mapping lies on the node the policy gives its address. A
 *               page touched before its range was bound lies on the CPU's
 *               node by first touch, and no later binding puts it right:
 *               MPOL_MF_MOVE moves only pages outside the new node set, and
 *               under interleave every node is in it. Mappings that hold
 *               huge pages (the direct block, under the system's THP
 *               setting) are left out: a huge page's node depends on the
 *               mapping's bounds when it was faulted in, which merges may
 *               have moved since.
 *   no_libnuma  (nodes) pinned off node 0, under XMM_NUMA=bind:0, with an
 *               empty file for libnuma.so.1 first on LD_LIBRARY_PATH:
 *               libnuma cannot be loaded, memory is bound all the same
 *               (no page of a mapping bound to node 0 elsewhere), and the
 *               XMM_VERBOSE placement line says why.
 *   off         XMM_NUMA=off: libnuma is not loaded, whatever the machine.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

#define MAX_TEXT (1 << 20)

static char text[MAX_TEXT];

static size_t read_text(const char *path)
{
    FILE *file = fopen(path, "r");
    if (!file)
        return 0;
    size_t length = fread(text, 1, sizeof(text) - 1, file);
    fclose(file);
    text[length] = '\0';
    return length;
}

/* Nodes with memory: the highest listed + 1 (1 if sysfs does not say). */
static int node_count(void)
{
    if (read_text("/sys/devices/system/node/has_memory") == 0)
        return 1;
    int highest = 0;
    for (const char *c = text; *c; c++)
        if (*c >= '0' && *c <= '9') {
            int number = (int)strtol(c, (char **)&c, 10);
            highest = number > highest ? number : highest;
            c--;
        }
    return highest + 1;
}

static bool libnuma_mapped(void)
{
    read_text("/proc/self/maps");
    return strstr(text, "libnuma.so") != NULL;
}

/* The start of the mapping that holds `address`, from /proc/self/maps. */
static uintptr_t mapping_start(const void *address)
{
    read_text("/proc/self/maps");
    uintptr_t wanted = (uintptr_t)address;
    for (const char *line = text; *line;) {
        unsigned long low, high;
        if (sscanf(line, "%lx-%lx", &low, &high) == 2 && wanted >= low && wanted < high)
            return low;
        const char *end = strchr(line, '\n');
        if (!end)
            break;
        line = end + 1;
    }
    return 0;
}

/* The policy /proc/self/numa_maps gives the mapping that holds `address`
 * ("prefer:1", "bind:0", "interleave:0-1", "default"), into `policy`. */
static bool policy_of(const void *address, char *policy, size_t size)
{
    uintptr_t start = mapping_start(address);
    if (!start)
        return false;
    read_text("/proc/self/numa_maps");
    for (const char *line = text; *line;) {
        unsigned long low;
        char field[64];
        if (sscanf(line, "%lx %63s", &low, field) == 2 && low == start) {
            snprintf(policy, size, "%s", field);
            return true;
        }
        const char *end = strchr(line, '\n');
        if (!end)
            break;
        line = end + 1;
    }
    return false;
}

/* Pages of mappings bound to node 0 ("bind:0") that lie on another node,
 * from the N<node>=<pages> fields of /proc/self/numa_maps; -1 if no
 * mapping is bound to node 0. */
static long pages_off_node_0(void)
{
    read_text("/proc/self/numa_maps");
    long off = -1;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t length = end ? (size_t)(end - line) : strlen(line);
        char copy[1024];
        snprintf(copy, sizeof(copy), "%.*s", (int)length, line);
        char *policy = strchr(copy, ' ');
        if (policy && strncmp(policy + 1, "bind:0 ", 7) == 0) {
            off = off < 0 ? 0 : off;
            for (char *field = strstr(copy, " N"); field; field = strstr(field + 1, " N")) {
                int node;
                long pages;
                if (sscanf(field, " N%d=%ld", &node, &pages) == 2 && node != 0)
                    off += pages;
            }
        }
        if (!end)
            break;
        line = end + 1;
    }
    return off;
}

/* The first CPU of the lowest node above 0 that has CPUs, or -1. */
static int cpu_off_node_0(void)
{
    for (int node = 1; node < 64; node++) {
        char path[96];
        snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", node);
        if (read_text(path) > 0 && text[0] >= '0' && text[0] <= '9')
            return atoi(text);
    }
    return -1;
}

/* check_run_self_prepared's hook: runs the child on a CPU off node 0. */
static int pin_off_node_0(void)
{
    int cpu = cpu_off_node_0();
    if (cpu < 0)
        return 1;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

#define MAX_INTERLEAVED 64

/* An interleaved mapping: its range, and its nodes in ascending order. */
struct interleaved_mapping {
    uintptr_t low, high;
    int nodes[64];
    int node_count;
    bool huge; /* holds transparent huge pages: interleaved 2 MiB at a time */
};

/* Parses "0-3" or "0,2" (after "interleave:") into mapping->nodes. */
static void parse_nodes(const char *list, struct interleaved_mapping *mapping)
{
    mapping->node_count = 0;
    while (*list >= '0' && *list <= '9') {
        char *end;
        int first = (int)strtol(list, &end, 10), last = first;
        if (*end == '-')
            last = (int)strtol(end + 1, &end, 10);
        for (int node = first; node <= last && mapping->node_count < 64; node++)
            mapping->nodes[mapping->node_count++] = node;
        list = *end == ',' ? end + 1 : end;
    }
}

/* The mappings /proc/self/numa_maps gives the interleave policy. */
static int interleaved_mappings(struct interleaved_mapping *mappings)
{
    int count = 0;
    read_text("/proc/self/numa_maps");
    for (const char *line = text; *line && count < MAX_INTERLEAVED;) {
        unsigned long low;
        char policy[128];
        if (sscanf(line, "%lx %127s", &low, policy) == 2 &&
            strncmp(policy, "interleave:", 11) == 0) {
            mappings[count].low = low;
            parse_nodes(policy + 11, &mappings[count]);
            count++;
        }
        const char *end = strchr(line, '\n');
        if (!end)
            break;
        line = end + 1;
    }
    /* Their ends, and whether they hold huge pages, from smaps. */
    read_text("/proc/self/smaps");
    struct interleaved_mapping *current = NULL;
    for (const char *line = text; *line;) {
        unsigned long low, high, kilobytes;
        if (sscanf(line, "%lx-%lx ", &low, &high) == 2) {
            current = NULL;
            for (int i = 0; i < count; i++)
                if (mappings[i].low == low) {
                    current = &mappings[i];
                    current->high = high;
                }
        } else if (current && sscanf(line, "AnonHugePages: %lu kB", &kilobytes) == 1) {
            current->huge = kilobytes > 0;
        }
        const char *end = strchr(line, '\n');
        if (!end)
            break;
        line = end + 1;
    }
    return count;
}

/* The node the interleave policy gives the page at `address`: the page's
 * offset in its mapping (an anonymous mapping's page offset is its start
 * address in pages, so this is the address in pages) modulo the node
 * count picks the node (mm/mempolicy.c, interleave_nid). Not after an
 * mremap that moved the mapping, which keeps its old offset: the case
 * makes no realloc. */
static int interleave_node(const struct interleaved_mapping *mapping, uintptr_t address)
{
    return mapping->nodes[(address >> 12) % (uintptr_t)mapping->node_count];
}

struct placement {
    long resident, misplaced, failed_queries;
    uintptr_t first_misplaced;
    int first_node, first_expected;
};

/* Checks the resident pages of one interleaved mapping, with the
 * move_pages system call (nodes NULL: it only reports each page's node). */
static void check_interleaved_pages(const struct interleaved_mapping *mapping,
                                    struct placement *placement)
{
    enum { BATCH = 1024 };
    static void *pages[BATCH];
    static int status[BATCH];
    for (uintptr_t address = mapping->low; address < mapping->high;) {
        size_t count = 0;
        for (; count < BATCH && address < mapping->high; count++, address += 4096)
            pages[count] = (void *)address;
        if (syscall(SYS_move_pages, 0, count, pages, NULL, status, 0) != 0) {
            placement->failed_queries++;
            continue;
        }
        for (size_t i = 0; i < count; i++) {
            if (status[i] < 0)
                continue; /* not resident */
            placement->resident++;
            uintptr_t page = (uintptr_t)pages[i];
            if (status[i] == interleave_node(mapping, page))
                continue;
            if (placement->misplaced++ == 0) {
                placement->first_misplaced = page;
                placement->first_node = status[i];
                placement->first_expected = interleave_node(mapping, page);
            }
        }
    }
}

/* The interleaved case (see the top), after `first_block`, the process's
 * first small block, was allocated. */
static int check_interleaved(const void *first_block)
{
    static struct interleaved_mapping mappings[MAX_INTERLEAVED];
    int count = interleaved_mappings(mappings);
    struct placement placement = {0};
    int checked = 0;
    bool first_checked = false;
    for (int i = 0; i < count; i++) {
        if (mappings[i].huge || mappings[i].high <= mappings[i].low)
            continue; /* a direct block: XMM_THP=never leaves those to the system's setting */
        check_interleaved_pages(&mappings[i], &placement);
        checked++;
        first_checked |= (uintptr_t)first_block >= mappings[i].low &&
                         (uintptr_t)first_block < mappings[i].high;
    }
    CHECK(first_checked && placement.resident > 0,
          "pinned to CPU %d, XMM_NUMA=interleave: the first small block's mapping is "
          "interleaved, without huge pages (%d of %d interleaved mappings checked, %ld "
          "resident pages)",
          sched_getcpu(), checked, count, placement.resident);
    CHECK(placement.failed_queries == 0, "move_pages answered for every page (%ld batches "
                                         "failed)",
          placement.failed_queries);
    CHECK(placement.misplaced == 0,
          "pinned to CPU %d, XMM_NUMA=interleave: %ld of %ld resident pages of interleaved "
          "mappings lie off their interleave node (the first, %#lx, on node %d, not %d)",
          sched_getcpu(), placement.misplaced, placement.resident,
          (unsigned long)placement.first_misplaced, placement.first_node,
          placement.first_expected);
    return check_summary("numa_loading early_interleave");
}

/* The no_libnuma case's directory: the empty libnuma.so.1, and the
 * child's stderr. */
static char no_libnuma_dir[] = "/tmp/xmm-no-libnuma-XXXXXX";

static int pin_and_capture_stderr(void)
{
    char path[sizeof(no_libnuma_dir) + 16];
    snprintf(path, sizeof(path), "%s/stderr", no_libnuma_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || dup2(fd, 2) < 0)
        return 1;
    close(fd);
    return pin_off_node_0();
}

/* Runs the no_libnuma case in a child (see the top). */
static void run_no_libnuma(void)
{
    char library[sizeof(no_libnuma_dir) + 16], captured[sizeof(no_libnuma_dir) + 16];
    if (!mkdtemp(no_libnuma_dir)) {
        CHECK(false, "mkdtemp %s: %s", no_libnuma_dir, strerror(errno));
        return;
    }
    snprintf(library, sizeof(library), "%s/libnuma.so.1", no_libnuma_dir);
    snprintf(captured, sizeof(captured), "%s/stderr", no_libnuma_dir);
    int fd = open(library, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0)
        close(fd);
    static char search_path[4096];
    const char *inherited = getenv("LD_LIBRARY_PATH");
    snprintf(search_path, sizeof(search_path), "LD_LIBRARY_PATH=%s%s%s", no_libnuma_dir,
             inherited ? ":" : "", inherited ? inherited : "");
    char *environment[] = {"XMM_NUMA=bind:0", "XMM_VERBOSE=1", search_path, NULL};
    int status = check_run_self_prepared("no_libnuma", environment, pin_and_capture_stderr);
    read_text(captured);
    if (status == 77)
        NOTE("no_libnuma: the child could not be pinned or its stderr captured");
    CHECK(status == 0, "libnuma.so.1 not loadable, XMM_NUMA=bind:0, pinned off node 0: memory "
                       "bound all the same (exit %d)",
          status);
    if (status != 0)
        NOTE("its output:\n%s", text);
    CHECK(strstr(text, "bound by the mbind system call, libnuma.so.1 not loaded (") != NULL,
          "libnuma.so.1 not loadable: the XMM_VERBOSE placement line says so");
    unlink(captured);
    unlink(library);
    rmdir(no_libnuma_dir);
}

static const size_t sizes[] = {64, 300 << 10, 4 << 20, 40 << 20};
#define SIZE_COUNT (sizeof(sizes) / sizeof(sizes[0]))

static void allocate_every_kind(void *blocks[SIZE_COUNT])
{
    for (size_t i = 0; i < SIZE_COUNT; i++) {
        blocks[i] = malloc(sizes[i]);
        if (blocks[i])
            memset(blocks[i], 0x5a, sizes[i]);
    }
}

static int run_case(const char *expected_prefix)
{
    void *blocks[SIZE_COUNT];
    allocate_every_kind(blocks); /* the process's first blocks */
    int nodes = node_count();
    const char *policy_name = getenv("XMM_NUMA") ? getenv("XMM_NUMA") : "local";
    if (nodes <= 1 || expected_prefix == NULL) {
        CHECK(!libnuma_mapped(), "%d node(s), XMM_NUMA=%s: libnuma is not loaded", nodes,
              policy_name);
    } else {
        CHECK(libnuma_mapped(), "%d nodes, XMM_NUMA=%s: libnuma is loaded", nodes, policy_name);
        for (size_t i = 0; i < SIZE_COUNT; i++) {
            char policy[64] = "?";
            bool found = blocks[i] && policy_of(blocks[i], policy, sizeof(policy));
            CHECK(found && strncmp(policy, expected_prefix, strlen(expected_prefix)) == 0,
                  "%d nodes, XMM_NUMA=%s: the mapping of a block of %zu bytes is bound (%s, "
                  "expected %s...)",
                  nodes, policy_name, sizes[i], policy, expected_prefix);
        }
    }
    for (size_t i = 0; i < SIZE_COUNT; i++)
        free(blocks[i]);
    return check_summary("numa_loading");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "local") == 0)
        return run_case("prefer:");
    if (argc > 1 && strcmp(argv[1], "bind") == 0)
        return run_case("bind:");
    if (argc > 1 && strcmp(argv[1], "interleave") == 0)
        return run_case("interleave:");
    if (argc > 1 && strcmp(argv[1], "off") == 0)
        return run_case(NULL);
    if (argc > 1 && strcmp(argv[1], "early_bind") == 0) {
        long off = pages_off_node_0();
        CHECK(off == 0, "pinned to CPU %d (off node 0), XMM_NUMA=bind:0: pages of mappings "
                        "bound to node 0 that lie on another node: %ld (-1: no such mapping)",
              sched_getcpu(), off);
        return run_case("bind:");
    }
    if (argc > 1 && strcmp(argv[1], "no_libnuma") == 0) {
        void *blocks[SIZE_COUNT];
        allocate_every_kind(blocks);
        CHECK(!libnuma_mapped(), "an empty libnuma.so.1 first on the path: libnuma not loaded");
        long off = pages_off_node_0();
        CHECK(off == 0, "pinned to CPU %d, libnuma not loaded, XMM_NUMA=bind:0: pages of "
                        "mappings bound to node 0 that lie on another node: %ld (-1: no such "
                        "mapping)",
              sched_getcpu(), off);
        return check_summary("numa_loading no_libnuma");
    }
    if (argc > 1 && strcmp(argv[1], "early_interleave") == 0) {
        void *blocks[SIZE_COUNT];
        allocate_every_kind(blocks);
        return check_interleaved(blocks[0]);
    }
    /* Each policy in a fresh process: XMM loads libnuma at its start. */
    char *local[] = {"XMM_NUMA=local", NULL};
    char *bind[] = {"XMM_NUMA=bind:0", NULL};
    char *interleave[] = {"XMM_NUMA=interleave", NULL};
    char *off[] = {"XMM_NUMA=off", NULL};
    CHECK(check_run_self("local", local) == 0, "XMM_NUMA=local (the default)");
    CHECK(check_run_self("bind", bind) == 0, "XMM_NUMA=bind:0");
    CHECK(check_run_self("interleave", interleave) == 0, "XMM_NUMA=interleave");
    CHECK(check_run_self("off", off) == 0, "XMM_NUMA=off");
    if (node_count() > 1) {
        int status = check_run_self_prepared("early_bind", bind, pin_off_node_0);
        if (status == 77) {
            NOTE("no CPU off node 0: the early and no_libnuma cases do not apply");
            return check_summary("numa_loading");
        }
        CHECK(status == 0, "XMM_NUMA=bind:0, pinned off node 0: early pages on node 0");
        char *interleave_4k[] = {"XMM_NUMA=interleave", "XMM_THP=never", NULL};
        status = check_run_self_prepared("early_interleave", interleave_4k, pin_off_node_0);
        CHECK(status == 0, "XMM_NUMA=interleave, pinned off node 0: every early page on its "
                           "interleave node");
        run_no_libnuma();
    }
    return check_summary("numa_loading");
}
