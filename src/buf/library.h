/*
 * library.h - what the pooled buffers and slices (buf/) share. buf/ is a
 * library over XMM's public API (include/xmm.h) and platform/: it uses no
 * internal layer, so it shows what a user of the API can build.
 */
#ifndef XMM_BUF_LIBRARY_H
#define XMM_BUF_LIBRARY_H

#include "platform.h"
#include "xmm.h"

#define XMM_EXPORT __attribute__((visibility("default")))
#define XMM_LIKELY(x) __builtin_expect(!!(x), 1)
#define XMM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define XMM_CACHE_ALIGNED __attribute__((aligned(64)))

#endif
