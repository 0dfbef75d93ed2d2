/* libnuma is loaded only where there are nodes to bind to (numa.h,
 * xmm_numa_load_binding), and what XMM mapped before it was loaded is
 * bound once it is.
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
 *   moved       (nodes) pinned to a CPU of a node other than 0, under
 *               XMM_NUMA=bind:0: what XMM touched before libnuma was loaded
 *               (the CPU's slab, the first chunk's first pages, on the
 *               pinned CPU's node by first touch) has moved to node 0: no
 *               mapping bound to node 0 has a page elsewhere.
 *   off         XMM_NUMA=off: libnuma is not loaded, whatever the machine.
 */
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

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
    if (argc > 1 && strcmp(argv[1], "moved") == 0) {
        long off = pages_off_node_0();
        CHECK(off == 0, "pinned to CPU %d (off node 0), XMM_NUMA=bind:0: pages of mappings "
                        "bound to node 0 that lie on another node: %ld (-1: no such mapping)",
              sched_getcpu(), off);
        return run_case("bind:");
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
        int status = check_run_self_prepared("moved", bind, pin_off_node_0);
        if (status == 77)
            NOTE("no CPU off node 0: the moved case does not apply");
        else
            CHECK(status == 0, "XMM_NUMA=bind:0, pinned off node 0: early pages moved");
    }
    return check_summary("numa_loading");
}
