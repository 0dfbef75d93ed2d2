/*
 * global/ - layer 5: the allocator as one object. The paths of malloc and
 * free across the layers (alloc.h, free.h), initialisation and fork (init.h),
 * upkeep (upkeep.h), statistics (stats.h), the heap profiler (profile.h).
 * Depends on every layer below.
 *
 * This header is the layer's interface: files outside global/ include it,
 * never the headers it includes.
 */
#ifndef XMM_GLOBAL_H
#define XMM_GLOBAL_H

#include "alloc.h"
#include "free.h"
#include "init.h"
#include "profile.h"
#include "stats.h"
#include "upkeep.h"

#endif
