/*
 * override_cxx.c - C++ operator new and delete in every form (plain,
 * nothrow, array, sized, aligned), written in C with their mangled names
 * so that libxmm.so does not depend on libstdc++.
 *
 * On failure, `new` follows the standard: call the new-handler while one is
 * installed, else throw std::bad_alloc (nothrow forms return NULL). Both
 * come from libstdc++ through weak references: any program that calls
 * operator new has libstdc++ loaded. Built with -fexceptions so a
 * new-handler's exception unwinds through these frames: out of the
 * throwing forms to their caller. The nothrow forms (noexcept to their
 * callers) call the handler through override_cxx_nothrow.cc, which catches
 * its exception: they return NULL then, as the standard asks.
 */
#include <errno.h>

#include "base/base.h"
#include "global/global.h"

typedef void (*new_handler_function)(void);
new_handler_function _ZSt15get_new_handlerv(void) __attribute__((weak));
_Noreturn void _ZSt17__throw_bad_allocv(void) __attribute__((weak));

/* override_cxx_nothrow.cc: false if the handler threw. */
bool xmm_call_new_handler_nothrow(new_handler_function handler);

#define NO_ALIGNMENT 0

/* __STDCPP_DEFAULT_NEW_ALIGNMENT__ is 16 on x86_64, and compilers assume
 * it of every result of the unaligned forms, whatever the size: requests
 * below 16 bytes come from the 16-byte class, never the 8-byte one. */
#define DEFAULT_NEW_ALIGNMENT 16

static void *allocate(size_t size, size_t alignment)
{
    if (alignment)
        return xmm_heap_alloc_aligned(alignment, size, -1);
    return xmm_heap_alloc_inline(size < DEFAULT_NEW_ALIGNMENT ? DEFAULT_NEW_ALIGNMENT : size);
}

static void *new_slow(size_t size, size_t alignment, bool nothrow)
{
    for (;;) {
        void *block = allocate(size, alignment);
        if (block)
            return block;
        new_handler_function handler = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
        if (!handler) {
            if (nothrow)
                return NULL;
            if (_ZSt17__throw_bad_allocv)
                _ZSt17__throw_bad_allocv();
            xmm_fatal("xmm: operator new(%z): out of memory and no C++ runtime to throw\n",
                      size);
        }
        if (!nothrow)
            handler();
        else if (!xmm_call_new_handler_nothrow(handler))
            return NULL;
    }
}

static inline void *new_throwing(size_t size, size_t alignment)
{
    void *block = allocate(size, alignment);
    return XMM_LIKELY(block != NULL) ? block : new_slow(size, alignment, false);
}

static inline void *new_nothrow(size_t size, size_t alignment)
{
    void *block = allocate(size, alignment);
    return XMM_LIKELY(block != NULL) ? block : new_slow(size, alignment, true);
}

/* A bad alignment (not a power of two) is undefined behaviour in C++;
 * XMM fails the request, as libstdc++'s own operator new does: bad_alloc
 * (NULL for nothrow) at once, without the new-handler, which cannot make
 * such a request succeed and might spend its reserve on it. */
static void *refuse_alignment(bool nothrow)
{
    errno = EINVAL;
    if (nothrow)
        return NULL;
    if (_ZSt17__throw_bad_allocv)
        _ZSt17__throw_bad_allocv();
    xmm_fatal("xmm: operator new: an alignment that is not a power of two, and no C++ "
              "runtime to throw\n");
}

static inline void *new_aligned(size_t size, size_t alignment, bool nothrow)
{
    if (!xmm_is_power_of_two(alignment))
        return refuse_alignment(nothrow);
    return nothrow ? new_nothrow(size, alignment) : new_throwing(size, alignment);
}

struct nothrow_tag;

/* The mangled names have no C header to declare them. */
#pragma GCC diagnostic ignored "-Wmissing-prototypes"

/* operator new / new[] */
XMM_EXPORT void *_Znwm(size_t size) { return new_throwing(size, NO_ALIGNMENT); }
XMM_EXPORT void *_Znam(size_t size) { return new_throwing(size, NO_ALIGNMENT); }
XMM_EXPORT void *_ZnwmRKSt9nothrow_t(size_t size, const struct nothrow_tag *tag)
{ (void)tag; return new_nothrow(size, NO_ALIGNMENT); }
XMM_EXPORT void *_ZnamRKSt9nothrow_t(size_t size, const struct nothrow_tag *tag)
{ (void)tag; return new_nothrow(size, NO_ALIGNMENT); }
XMM_EXPORT void *_ZnwmSt11align_val_t(size_t size, size_t alignment)
{ return new_aligned(size, alignment, false); }
XMM_EXPORT void *_ZnamSt11align_val_t(size_t size, size_t alignment)
{ return new_aligned(size, alignment, false); }
XMM_EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t size, size_t alignment,
                                                     const struct nothrow_tag *tag)
{ (void)tag; return new_aligned(size, alignment, true); }
XMM_EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t size, size_t alignment,
                                                     const struct nothrow_tag *tag)
{ (void)tag; return new_aligned(size, alignment, true); }

/* operator delete / delete[]. XMM's metadata knows every block's size and
 * alignment; the sized and aligned forms also check what the caller says
 * against it (a size of another size class than the block's, or an
 * alignment the block does not have, is reported as an invalid free:
 * global/free.c). */
#define DELETE_NAME "operator delete"
XMM_EXPORT void _ZdlPv(void *ptr) { xmm_heap_free_inline(ptr); }
XMM_EXPORT void _ZdaPv(void *ptr) { xmm_heap_free(ptr); }
XMM_EXPORT void _ZdlPvm(void *ptr, size_t size) { xmm_heap_delete_sized_inline(ptr, size); }
XMM_EXPORT void _ZdaPvm(void *ptr, size_t size) { xmm_heap_delete_sized_inline(ptr, size); }
XMM_EXPORT void _ZdlPvRKSt9nothrow_t(void *ptr, const struct nothrow_tag *tag)
{ (void)tag; xmm_heap_free(ptr); }
XMM_EXPORT void _ZdaPvRKSt9nothrow_t(void *ptr, const struct nothrow_tag *tag)
{ (void)tag; xmm_heap_free(ptr); }
XMM_EXPORT void _ZdlPvSt11align_val_t(void *ptr, size_t alignment)
{ xmm_heap_free_sized(ptr, XMM_SIZE_UNKNOWN, alignment, true, DELETE_NAME); }
XMM_EXPORT void _ZdaPvSt11align_val_t(void *ptr, size_t alignment)
{ xmm_heap_free_sized(ptr, XMM_SIZE_UNKNOWN, alignment, true, DELETE_NAME "[]"); }
XMM_EXPORT void _ZdlPvmSt11align_val_t(void *ptr, size_t size, size_t alignment)
{ xmm_heap_free_sized(ptr, size, alignment, true, DELETE_NAME); }
XMM_EXPORT void _ZdaPvmSt11align_val_t(void *ptr, size_t size, size_t alignment)
{ xmm_heap_free_sized(ptr, size, alignment, true, DELETE_NAME "[]"); }
XMM_EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *ptr, size_t alignment,
                                                   const struct nothrow_tag *tag)
{ (void)tag; xmm_heap_free_sized(ptr, XMM_SIZE_UNKNOWN, alignment, true, DELETE_NAME); }
XMM_EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *ptr, size_t alignment,
                                                   const struct nothrow_tag *tag)
{ (void)tag; xmm_heap_free_sized(ptr, XMM_SIZE_UNKNOWN, alignment, true, DELETE_NAME "[]"); }
