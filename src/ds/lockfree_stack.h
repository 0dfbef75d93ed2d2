/*
 * lockfree_stack.h - the one lock-free structure of the central layer: a
 * Concurrency Kit stack with generation-counted pops.
 *
 * ck_stack_pop_mpmc compares (head, generation) with cmpxchg16b, so an
 * entry popped and pushed back between another thread's read of head and
 * its compare-and-swap cannot be mistaken for the old head (ABA). The pop
 * reads head->next of an entry another thread may already own: every entry
 * XMM puts on these stacks lives in metadata that is never unmapped, so
 * that stale read is harmless and the CAS rejects it.
 *
 * Never use ck_stack_batch_pop_mpmc on these stacks: it swaps the head
 * without bumping the generation, which reopens the ABA window for
 * concurrent single pops.
 */
#ifndef XMM_LOCKFREE_STACK_H
#define XMM_LOCKFREE_STACK_H

#include <ck_stack.h>

#include "base/base.h"

struct xmm_stack {
    ck_stack_t stack;
} __attribute__((aligned(16)));

#ifndef CK_F_STACK_POP_MPMC
#error "XMM needs CK's generation-counted stack pop (x86_64 with -mcx16)"
#endif

XMM_INLINE void xmm_stack_init(struct xmm_stack *stack)
{
    ck_stack_init(&stack->stack);
}

/* Publishes `entry` (everything written to it before happens-before a pop
 * that returns it). Lock-free: a CAS loop. */
XMM_INLINE void xmm_stack_push(struct xmm_stack *stack, ck_stack_entry_t *entry)
{
    xmm_tsan_release(entry);
    ck_stack_push_mpmc(&stack->stack, entry);
}

/* Takes the top entry, or NULL if empty. Lock-free: a CAS2 loop. */
XMM_INLINE ck_stack_entry_t *xmm_stack_pop(struct xmm_stack *stack)
{
    ck_stack_entry_t *entry = ck_stack_pop_mpmc(&stack->stack);
    if (entry)
        xmm_tsan_acquire(entry);
    return entry;
}

XMM_INLINE bool xmm_stack_is_empty(struct xmm_stack *stack)
{
    return ck_pr_load_ptr(&stack->stack.head) == NULL;
}

#endif
