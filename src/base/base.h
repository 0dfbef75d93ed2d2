/*
 * base/ - layer 1: what every layer above uses. Constants and helpers
 * (common.h), the XMM_* configuration (config.h), formatting and reporting
 * without allocating (report.h). Depends on platform/ only.
 *
 * This header is the layer's interface: files outside base/ include it,
 * never the headers it includes.
 */
#ifndef XMM_BASE_H
#define XMM_BASE_H

#include "common.h"
#include "config.h"
#include "report.h"

#endif
