/*
 * free_object.c - the per-process secret of free objects' words (see
 * free_object.h).
 */
#include "free_object.h"

uint64_t xmm_free_secret;

/* Bit 63 set: a decoded live word (a user-space pointer, a small number,
 * 0) then always has bit 63 set, so it is never 0 and never inside a span. */
void xmm_free_secret_init(void)
{
    xmm_free_secret = xmm_os_random_seed() | (uint64_t)1 << 63;
}
