/*
 * node_calls.h - the xmm_* calls that take the caller's node or check that
 * a block is XMM's, under any XMM_NUMA (include after a CHECK(condition,
 * format, ...) macro: check.h's or test_numa.c's). Under interleave on
 * two or more nodes, xmm_current_node() gave the interleaved set's index
 * (the node count), so xmm_malloc_on_node(size, xmm_current_node()) and
 * xmm_buf_get failed with EINVAL, and xmm_strcpy_into, xmm_strcat_into
 * and xmm_buf_put refused every block of the interleaved heap
 * (xmm_node_of says XMM_NODE_INTERLEAVED, below 0).
 */
#ifndef XMM_TEST_NODE_CALLS_H
#define XMM_TEST_NODE_CALLS_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xmm.h"
#include "xmm_buf.h"

/* From the calling thread; `cpu_node`: the node of its CPU, or -1 if the
 * caller does not know it (any node XMM manages then). */
__attribute__((unused)) static void check_node_calls(int cpu_node)
{
    int current = xmm_current_node(), nodes = xmm_node_count();
    CHECK(cpu_node < 0 ? current >= 0 && current < nodes : current == cpu_node,
          "xmm_current_node() = %d (%d nodes, the CPU's node %d)", current, nodes, cpu_node);
    errno = 0;
    void *block = xmm_malloc_on_node(100, current);
    CHECK(block != NULL, "xmm_malloc_on_node(100, xmm_current_node()): %s", strerror(errno));
    xmm_free(block);
    char *text = xmm_malloc(32);
    int owner = text ? xmm_node_of(text) : -1;
    CHECK(owner != -1, "xmm_node_of(xmm_malloc(32)) = %d", owner);
    errno = 0;
    CHECK(text && xmm_strcpy_into(text, 32, "node") == 0 && xmm_strcat_into(text, 32, "s") == 0 &&
              !strcmp(text, "nodes"),
          "xmm_strcpy_into and xmm_strcat_into into xmm_malloc(32): %s", strerror(errno));
    xmm_free(text);
    errno = 0;
    struct xmm_buf *buf = xmm_buf_get(0);
    CHECK(buf != NULL, "xmm_buf_get(0): %s", strerror(errno));
    CHECK(!buf || xmm_buf_put(buf) == 0, "xmm_buf_put(xmm_buf_get(0)): %s", strerror(errno));
}

#endif
