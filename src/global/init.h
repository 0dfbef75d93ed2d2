/*
 * init.h - bringing XMM up on first use, and keeping it right across fork.
 *
 * Phase 1 (core) makes every layer usable with raw system calls only; it
 * cannot recurse into malloc. Phase 2 registers with libc (thread-exit
 * key, fork handlers, exit hook), which may call malloc: by then the core
 * serves it, without thread caches until phase 2 is complete.
 */
#ifndef XMM_INIT_H
#define XMM_INIT_H

#include "base/base.h"

enum {
    XMM_INIT_NONE = 0,
    XMM_INIT_RUNNING = 1,
    XMM_INIT_CORE = 2,
    XMM_INIT_COMPLETE = 3,
};
extern XMM_HIDDEN int xmm_init_state;

bool xmm_init_slow(void);

/* True when the core is usable. One load and a predictable branch. */
XMM_INLINE bool xmm_ensure_init(void)
{
    if (XMM_LIKELY(__atomic_load_n(&xmm_init_state, __ATOMIC_ACQUIRE) >= XMM_INIT_CORE))
        return true;
    return xmm_init_slow();
}

#endif
