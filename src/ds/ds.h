/*
 * ds/ - layer 2: data structures without policy. Size classes
 * (size_class.h), span descriptors (span.h), the lock-free stack on
 * Concurrency Kit (lockfree_stack.h), the encoded first word of free
 * objects (free_object.h). Depends on base/.
 *
 * This header is the layer's interface: files outside ds/ include it,
 * never the headers it includes.
 */
#ifndef XMM_DS_H
#define XMM_DS_H

#include "free_object.h"
#include "lockfree_stack.h"
#include "size_class.h"
#include "span.h"

#endif
