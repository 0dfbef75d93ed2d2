/*
 * free_object.c - the per-process secret of free objects' words (see
 * free_object.h).
 */
#include "free_object.h"

uint64_t xmm_free_secret;
uint16_t xmm_free_secret_bits;
uint64_t xmm_free_pending_secret;

void xmm_free_secret_set(uint64_t secret)
{
    xmm_free_secret = secret;
    xmm_free_secret_bits = (uint16_t)(secret >> 32);
}

/* Bit 63 set: a decoded live word (a user-space pointer, a small number,
 * 0) then always has bit 63 set, so it is never 0 and never inside a span.
 * Bit 47 set: the same for the 16 bits free() reads first (bits 32-47 of
 * a user-space address have bit 47 clear), see xmm_free_object_may_be_free.
 * Bit 0 set: a free object's word then has bit 0 set (objects are 8-byte
 * aligned), and one whose low byte an overflow set to zero (a string
 * copy's terminating NUL) decodes to an odd address, never an object
 * start: the refill reports it. With that bit random, one process in 16
 * followed such a link in 16-byte spans (a misuse audit). */
void xmm_free_secret_init(void)
{
    xmm_free_secret_set(xmm_os_random_seed() | (uint64_t)1 << 63 | (uint64_t)1 << 47 | 1);
    /* Bit 63: a mark is never 0, a small number or a user-space pointer.
     * Mixed with the secret turned: without getrandom both seeds come from
     * AT_RANDOM and may be equal, and the key must not be the secret. */
    uint64_t secret = xmm_free_secret;
    xmm_free_pending_secret = (xmm_os_random_seed() ^ (secret << 17 | secret >> 47)) |
                              (uint64_t)1 << 63;
}
