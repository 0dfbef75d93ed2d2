/*
 * free_object.h - the first word of a free small object: a tag that says
 * "free", and the link of a span's free list, encoded with a per-process
 * secret so that neither can be forged by a program's overflow or read as
 * a pointer by an attacker.
 *
 * Every free small object, wherever it waits (a CPU's or a thread's cache,
 * a transfer batch, its span's free list), holds in its first word
 *
 *      word = next ^ xmm_free_secret ^ address_of_the_object
 *
 * where `next` is the following object of a span's free list, or the
 * object itself in a cache or batch and at a list's end (so every free
 * object's word decodes to an address of its own span, and the check is
 * one range compare). An object handed out holds 0 there until the
 * program writes it, and so does a block of whole pages (global/alloc.c):
 * a stale word left at its start, copied by a realloc into a small block,
 * read there as a free object's. So free() can tell, from the word it is about to
 * overwrite anyway, whether the block is already free: decoding gives an
 * address inside the same span. A live block's word decodes to that only
 * if the program stored exactly secret ^ address ^ (an address in the
 * span): the secret's top bit is set, so no pointer, small integer or zero
 * the program keeps there can, and arbitrary data has odds of about
 * span_bytes / 2^63.
 *
 * The same encoding is glibc's safe-linking (2.32: links XORed with their
 * own address >> 12) and mimalloc's encoded free lists (MI_SECURE, two
 * keys and a rotation), made keyed and address-bound here: a link is only
 * followed after decoding it and checking that it lands on an object of
 * the same span (central.c), so an overwritten link is heap corruption,
 * reported, never a returned pointer.
 */
#ifndef XMM_FREE_OBJECT_H
#define XMM_FREE_OBJECT_H

#include "base/base.h"

/* Random, bits 63, 47 and 0 set (free_object.c says why); written once in
 * init phase 1, before any object. */
extern XMM_HIDDEN uint64_t xmm_free_secret;

/* Its bits 32-47, what free() compares first (xmm_free_object_may_be_free):
 * a variable of their own, so that the compare takes one load of them
 * and no shift of the secret. */
extern XMM_HIDDEN uint16_t xmm_free_secret_bits;

/* The key of the pending mark (below): random, bit 63 set, chosen with
 * the secret and independent of it. */
extern XMM_HIDDEN uint64_t xmm_free_pending_secret;

/* The first class whose frees are deferred (global/free.h): objects of 16
 * bytes and more, which have a second word for the pending mark. Class 1
 * (8 bytes) is checked at once. */
#define XMM_FREE_DEFERRED_FIRST_CLASS 2

/* Chooses the secret (init phase 1). */
void xmm_free_secret_init(void);

/* Sets the secret and its bits (init, and tests that try other secrets). */
void xmm_free_secret_set(uint64_t secret);

/* The first word and its bytes 4-5 as free() reads and writes them: the
 * program stored into the block through types of its own, and code that
 * inlines both (a static link, LTO, this project's tests) must not let
 * the compiler reorder these accesses across the program's stores on the
 * strength of C's type-based aliasing rules. */
typedef uintptr_t __attribute__((may_alias)) xmm_free_word;
typedef uint16_t __attribute__((may_alias)) xmm_free_bits;

XMM_INLINE uintptr_t xmm_free_key(const void *object)
{
    return (uintptr_t)xmm_free_secret ^ (uintptr_t)object;
}

/* Marks `object` free, with `next` its successor on a span's free list
 * (NULL: none, in a cache or batch or at a list's end, encoded as the
 * object itself). */
XMM_INLINE void xmm_free_object_set(void *object, const void *next)
{
    const void *link = next ? next : object;
    *(xmm_free_word *)object = (uintptr_t)link ^ xmm_free_key(object);
}

/* xmm_free_object_set as one write access (an exchange) that returns
 * the word it replaced: for a page's first touch, which must be a write
 * (central.c, mark_never_used). */
XMM_INLINE uintptr_t xmm_free_object_swap(void *object, const void *next)
{
    const void *link = next ? next : object;
    return __atomic_exchange_n((xmm_free_word *)object, (uintptr_t)link ^ xmm_free_key(object),
                               __ATOMIC_RELAXED);
}

/* The successor a free object's word encodes (NULL: none). Undefined on a
 * live object; callers check what it returns. */
XMM_INLINE void *xmm_free_object_next(const void *object)
{
    void *link = (void *)(*(const xmm_free_word *)object ^ xmm_free_key(object));
    return link == object ? NULL : link;
}

/* True when `object`, a block of the span [start, start + bytes), holds
 * the word of a free object: a double free, or a free of a block that was
 * never handed out. One load of a line free() is about to write, and one
 * range compare. */
XMM_INLINE bool xmm_free_object_is_free(const void *object, const char *start, size_t bytes)
{
    uintptr_t link = *(const xmm_free_word *)object ^ xmm_free_key(object);
    return link - (uintptr_t)start < bytes;
}

/* What free() reads first: bytes 4 and 5 of the word only (bits 32-47 on
 * x86_64). A program that wrote a byte or a short at the start or the end
 * of the block just before freeing it (a flag, a string, the last byte of
 * an 8-byte block) then costs no store-forwarding stall: a load that
 * overlaps a recent store it is not wholly inside of waits for that store
 * to reach the cache (about 12 cycles, measured: 1.6 ns a malloc+free
 * pair). True when those bits are the secret's bits 32-47, as they are in
 * every free object's word (below); for a live block only if the program
 * stored them there (bit 47 of them is set: no user-space pointer, small
 * number or zero does; arbitrary data one time in 65536). Callers confirm
 * with xmm_free_object_is_free, which reads the whole word, before
 * reporting. */
XMM_INLINE bool xmm_free_object_may_be_free(const void *object)
{
    /* Spans never straddle a 4 GiB boundary (they lie in 64 MiB-aligned
     * chunks), so a link's bits 32-47 are the object's own, and they
     * cancel in link ^ secret ^ object: a free object's bits 32-47 are the
     * secret's. One load of those bits and one 16-bit compare. */
    return ((const xmm_free_bits *)object)[2] == xmm_free_secret_bits;
}

/* A pending free (global/free.h): free() checks a block of 16 bytes or
 * more one free later than it is called, after the line has come in, so
 * that the check's load does not wait for memory. Until then the block
 * waits in a CPU's pending slot, in no cache and on no list (it cannot be
 * handed out), with a mark in its second word: the pending key XORed with
 * its address and with its slot's tag (the slab's index in bits 48-62,
 * written by the section that takes the slot: rseq_percpu.h). The first
 * word (the free tag, if the block is free already) is left as it was.
 * Every hand-out clears the mark (xmm_free_object_clear_block), so a
 * block handed out between a double free and its check is told by the
 * mark's absence; a block freed twice on two CPUs holds the mark of one
 * slot only; and a program cannot write a mark back without the key (64
 * bits, never in a live block). The mark stays on a block whose free
 * completed, until its next hand-out. */
#define XMM_FREE_PENDING_TAG_BITS ((uintptr_t)0x7fff << 48)

XMM_INLINE uintptr_t xmm_free_pending_mark(const void *object, uint64_t tag)
{
    return (uintptr_t)xmm_free_pending_secret ^ (uintptr_t)object ^ (uintptr_t)tag;
}

/* True when `object` (16 bytes or more) has a pending mark, of any slot:
 * its free is pending, or completed since its last hand-out. */
XMM_INLINE bool xmm_free_object_is_marked(const void *object)
{
    uintptr_t word = ((const xmm_free_word *)object)[1];
    return ((word ^ xmm_free_pending_mark(object, 0)) & ~XMM_FREE_PENDING_TAG_BITS) == 0;
}

/* True when a block taken from the slot tagged `tag` is as its free left
 * it: that slot's mark is still there (a malloc that handed the block out
 * since cleared it, a free on another CPU replaced it: a double free) and
 * its bytes 4-5 are not a free object's (it was not free already). Both
 * in the line the pending free's store brought in (blocks of 16 bytes and
 * more are 16-byte aligned: words 0 and 1 share a line). Anything else
 * goes to the caller's slow path, which confirms and reports. */
XMM_INLINE bool xmm_free_object_pending_intact(const void *object, uint64_t tag)
{
    return ((const xmm_free_word *)object)[1] == xmm_free_pending_mark(object, tag) &&
           ((const xmm_free_bits *)object)[2] != xmm_free_secret_bits;
}

/* The word a block holds when it is handed out: not a free object's. All
 * of it is cleared: a free object's word with no successor is the secret
 * itself (object ^ secret ^ object), which a program must not be handed.
 * (free() then reads the high half from this 8-byte store: forwarded.) */
XMM_INLINE void xmm_free_object_clear(void *object)
{
    *(xmm_free_word *)object = 0;
}

/* What every hand-out of an object of `size_class` clears: its first
 * word, and when free() defers its checks (`deferred`, XMM_FREE_CHECK),
 * from 16 bytes on its second (the pending mark). An 8-byte object's
 * first word is then cleared twice rather than spend a branch. */
XMM_INLINE void xmm_free_object_clear_block(void *object, unsigned size_class, bool deferred)
{
    xmm_free_object_clear(object);
    if (XMM_UNLIKELY(deferred))
        ((xmm_free_word *)object)[size_class >= XMM_FREE_DEFERRED_FIRST_CLASS] = 0;
}

#endif
