/*
 * numa.h - which node a CPU's memory comes from, and how a node's memory
 * is bound, under the XMM_NUMA policy. Every per-node structure exists for
 * node 0 on a one-node machine: one code path.
 */
#ifndef XMM_NUMA_H
#define XMM_NUMA_H

#include "base/base.h"

extern XMM_HIDDEN struct xmm_topology xmm_topology;
/* Per-node structure sets XMM keeps: 0 .. xmm_nodes - 1. One per NUMA node
 * (xmm_real_nodes of them), plus, under XMM_NUMA=interleave, one more whose
 * memory is interleaved over every node (xmm_interleaved_node). */
extern XMM_HIDDEN int xmm_nodes;
extern XMM_HIDDEN int xmm_real_nodes;
extern XMM_HIDDEN int xmm_interleaved_node; /* -1 unless XMM_NUMA=interleave */
/* CPU -> the node whose memory that CPU's allocations use. */
extern XMM_HIDDEN uint8_t xmm_home_node_of_cpu[XMM_MAX_CPUS];

/* Reads the topology and derives the tables above from the policy. */
void xmm_numa_init(void);

XMM_INLINE int xmm_node_of_cpu(int cpu)
{
    return xmm_home_node_of_cpu[(unsigned)cpu % XMM_MAX_CPUS];
}

/* The NUMA node of `cpu` as xmm_malloc_on_node numbers nodes (a usable
 * one: the first usable for a CPU of another): its home node, except under
 * XMM_NUMA=interleave, whose home for every CPU is the interleaved set,
 * which is no node (xmm_current_node). */
int xmm_numa_real_node_of_cpu(int cpu);

/* True if `node` may be asked for with xmm_malloc_on_node. */
bool xmm_node_is_usable(int node);

/* Applies the policy to fresh memory of `node` before it is touched (the
 * mbind system call until libnuma is loaded, libnuma's `mbind` after:
 * xmm_os_bind). */
void xmm_numa_bind(void *address, size_t size, int node);

/* Loads libnuma where there are nodes to bind to (more than one, and
 * XMM_NUMA not off); on a one-node machine libnuma is never loaded. If it
 * cannot be loaded, binding goes on with the system call and the
 * XMM_VERBOSE placement line says why. Call once XMM serves allocations
 * (dlopen allocates): init.c's phase 2, once a process. */
void xmm_numa_load_binding(void);

/* The number of nodes `node`'s memory is interleaved over (1: it is not).
 * The kernel picks an interleaved page's node from its address (its 2 MiB
 * unit's, under THP). */
int xmm_numa_interleave_width(int node);

/* Appends one line for XMM_VERBOSE: the placement in force, as
 * xmm_numa_init resolved the policy and the machine, and the nodes it
 * uses. A policy with nothing to choose between (one node) says so, so
 * that XMM_NUMA=interleave or bind on such a machine is not silently a
 * no-op. Writes no memory but `text`; call after xmm_numa_init. */
void xmm_numa_describe(struct xmm_text *text);

#endif
