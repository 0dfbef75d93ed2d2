/*
 * numa.c - node policy (see numa.h and the XMM_NUMA variable).
 *
 * local:      a CPU uses its own node if the process may allocate there,
 *             else the nearest allowed node (lowest number). Memory is bound
 *             MPOL_PREFERRED: placement on the node while it has memory,
 *             spilling to another node rather than the OOM killer when it is
 *             full (MPOL_BIND would kill a server for one node's shortage).
 * bind:LIST:  only the listed (and allowed) nodes, MPOL_BIND: the user asked
 *             for strictness. CPUs of other nodes use the first listed node.
 * interleave: every CPU allocates from one extra structure set whose chunks
 *             are interleaved page by page over the allowed nodes (data
 *             shared by all threads); the per-node sets stay bound to
 *             their node, for xmm_malloc_on_node.
 * off:        node 0's structures only, no binding at all.
 */
#include "numa.h"
#include "base/base.h"

struct xmm_topology xmm_topology;
int xmm_nodes = 1;
int xmm_real_nodes = 1;
int xmm_interleaved_node = -1;
uint8_t xmm_home_node_of_cpu[XMM_MAX_CPUS];

static uint64_t usable_nodes; /* allowed and, for bind:, listed */

static int first_node(uint64_t mask)
{
    return mask ? __builtin_ctzll(mask) : 0;
}

void xmm_numa_init(void)
{
    xmm_platform_topology_read(&xmm_topology);
    uint64_t allowed = xmm_topology.nodes_allowed & xmm_topology.nodes_online;
    if (!allowed)
        allowed = 1;
    if (xmm_config.numa_mode == XMM_NUMA_BIND) {
        uint64_t listed = xmm_config.bind_nodes & allowed;
        if (!listed) {
            xmm_report("xmm: XMM_NUMA=bind: none of the listed nodes is available; "
                       "using the allowed nodes\n");
            listed = allowed;
        }
        allowed = listed;
    }
    if (xmm_config.numa_mode == XMM_NUMA_OFF)
        allowed = 1;
    usable_nodes = allowed;
    xmm_nodes = xmm_config.numa_mode == XMM_NUMA_OFF ? 1 : xmm_topology.node_count;
    if (xmm_nodes > XMM_MAX_NODES - 1)
        xmm_nodes = XMM_MAX_NODES - 1;
    xmm_real_nodes = xmm_nodes;
    if (xmm_config.numa_mode == XMM_NUMA_INTERLEAVE && xmm_real_nodes > 1)
        xmm_interleaved_node = xmm_nodes++;

    for (int cpu = 0; cpu < XMM_MAX_CPUS; cpu++) {
        int node = xmm_numa_real_node_of_cpu(cpu);
        if (xmm_interleaved_node >= 0)
            node = xmm_interleaved_node;
        xmm_home_node_of_cpu[cpu] = (uint8_t)node;
    }
}

int xmm_numa_real_node_of_cpu(int cpu)
{
    int node = xmm_topology.node_of_cpu[(unsigned)cpu % XMM_MAX_CPUS];
    if (node >= xmm_real_nodes || !(usable_nodes & ((uint64_t)1 << node)))
        node = first_node(usable_nodes);
    return node;
}

bool xmm_node_is_usable(int node)
{
    return node >= 0 && node < xmm_real_nodes && (usable_nodes & ((uint64_t)1 << node));
}

/* The policy for `node`'s memory: the nodes and the mode to bind with.
 * False: nothing to bind (one node, or XMM_NUMA=off). */
static bool policy_of(int node, uint64_t *nodes, enum xmm_bind_mode *mode)
{
    if (xmm_topology.node_count <= 1)
        return false; /* nothing to choose between */
    *nodes = (uint64_t)1 << node;
    switch (xmm_config.numa_mode) {
    case XMM_NUMA_LOCAL:
        *mode = XMM_BIND_PREFERRED;
        return true;
    case XMM_NUMA_BIND:
        *mode = XMM_BIND_STRICT;
        return true;
    case XMM_NUMA_INTERLEAVE:
        *mode = XMM_BIND_PREFERRED; /* explicitly asked for, with xmm_malloc_on_node */
        if (node == xmm_interleaved_node) {
            *nodes = usable_nodes;
            *mode = XMM_BIND_INTERLEAVE;
        }
        return true;
    case XMM_NUMA_OFF:
        break;
    }
    return false;
}

/* Bound at once, before the first touch, whether libnuma is loaded yet or
 * not (xmm_os_bind): a page touched first and bound later could not be put
 * right under interleave, as MPOL_MF_MOVE moves only the pages outside the
 * new node set, and every node is in it. */
void xmm_numa_bind(void *address, size_t size, int node)
{
    uint64_t nodes;
    enum xmm_bind_mode mode;
    if (policy_of(node, &nodes, &mode))
        xmm_os_bind(address, size, nodes, mode);
}

static bool libnuma_missing;       /* more than one node, libnuma not loaded */
static char libnuma_failure[160];  /* the loader's message */

void xmm_numa_load_binding(void)
{
    uint64_t nodes;
    enum xmm_bind_mode mode;
    if (!policy_of(0, &nodes, &mode))
        return;
    if (!xmm_os_load_numa(libnuma_failure, sizeof(libnuma_failure)))
        __atomic_store_n(&libnuma_missing, true, __ATOMIC_RELEASE);
}

int xmm_numa_interleave_width(int node)
{
    if (xmm_topology.node_count <= 1 || xmm_config.numa_mode != XMM_NUMA_INTERLEAVE ||
        node != xmm_interleaved_node)
        return 1;
    return __builtin_popcountll(usable_nodes);
}

static const char *policy_name(void)
{
    switch (xmm_config.numa_mode) {
    case XMM_NUMA_LOCAL:
        return "local";
    case XMM_NUMA_BIND:
        return "bind";
    case XMM_NUMA_INTERLEAVE:
        return "interleave";
    case XMM_NUMA_OFF:
        break;
    }
    return "off";
}

static void append_nodes(struct xmm_text *text, uint64_t nodes)
{
    const char *separator = "";
    for (int node = 0; node < 64; node++) {
        if (!(nodes & ((uint64_t)1 << node)))
            continue;
        xmm_text_format(text, "%s%d", separator, node);
        separator = ",";
    }
}

void xmm_numa_describe(struct xmm_text *text)
{
    xmm_text_format(text, "xmm: NUMA placement (XMM_NUMA=%s): ", policy_name());
    if (xmm_config.numa_mode == XMM_NUMA_OFF) {
        xmm_text_append(text, "off: node 0's structures only, no binding\n");
        return;
    }
    if (xmm_topology.node_count <= 1) {
        xmm_text_append(text, "none, one node: nothing to place, no binding\n");
        return;
    }
    switch (xmm_config.numa_mode) {
    case XMM_NUMA_LOCAL:
        xmm_text_append(text, "each CPU's node, preferred; nodes ");
        break;
    case XMM_NUMA_BIND:
        xmm_text_append(text, "strict, to nodes ");
        break;
    default:
        xmm_text_append(text, "pages interleaved over nodes ");
        break;
    }
    append_nodes(text, usable_nodes);
    if (__atomic_load_n(&libnuma_missing, __ATOMIC_ACQUIRE))
        xmm_text_format(text, "; bound by the mbind system call, libnuma.so.1 not loaded (%s)",
                        libnuma_failure);
    xmm_text_append(text, "\n");
}
