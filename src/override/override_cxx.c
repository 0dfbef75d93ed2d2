/*
 * override_cxx.c - C++ operator new and delete in every form (plain,
 * nothrow, array, sized, aligned), written in C with their mangled names
 * so that libxmm.so does not depend on libstdc++.
 *
 * On failure, `new` follows the standard: call the new-handler while one is
 * installed, else throw std::bad_alloc (nothrow forms return NULL). Both
 * come from libstdc++: any program that calls operator new has it loaded,
 * but not always when libxmm.so is. Weak references find it when it was
 * loaded first; a C program that dlopens a C++ plugin loads it later
 * (those references are bound at load: null for good), and there the
 * failure path looks the two functions up (cxx_runtime). Built with -fexceptions so a
 * new-handler's exception unwinds through these frames: out of the
 * throwing forms to their caller. The nothrow forms (noexcept to their
 * callers) call the handler through override_cxx_nothrow.cc, which catches
 * its exception: they return NULL then, as the standard asks.
 */
#include <dlfcn.h>
#include <errno.h>

#include "base/base.h"
#include "global/global.h"

typedef void (*new_handler_function)(void);
new_handler_function _ZSt15get_new_handlerv(void) __attribute__((weak));
_Noreturn void _ZSt17__throw_bad_allocv(void) __attribute__((weak));

/* libstdc++'s std::get_new_handler and std::__throw_bad_alloc. */
struct cxx_runtime {
    new_handler_function (*get_new_handler)(void);
    void (*throw_bad_alloc)(void);
};

/* A function of libstdc++ loaded after libxmm.so: in the global scope,
 * or in a plugin's own (dlopen's default, RTLD_LOCAL), found by the
 * library's soname without loading it. */
static void *late_cxx_function(const char *name)
{
    void *function = dlsym(RTLD_DEFAULT, name);
    if (function)
        return function;
    void *library = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (!library)
        return NULL;
    function = dlsym(library, name);
    dlclose(library); /* only drops the reference NOLOAD took */
    return function;
}

/* Looked up on each failure, not kept: failures are rare, and a plugin
 * that brought libstdc++ may be unloaded again. dlsym and dlopen may
 * allocate; no XMM lock is held here (the allocation has failed and
 * returned). */
static struct cxx_runtime cxx_runtime(void)
{
    struct cxx_runtime runtime = {_ZSt15get_new_handlerv, _ZSt17__throw_bad_allocv};
    if (!runtime.get_new_handler)
        runtime.get_new_handler =
            (new_handler_function(*)(void))late_cxx_function("_ZSt15get_new_handlerv");
    if (!runtime.throw_bad_alloc)
        runtime.throw_bad_alloc = (void (*)(void))late_cxx_function("_ZSt17__throw_bad_allocv");
    return runtime;
}

/* Throws std::bad_alloc, or ends the process if no C++ runtime is there to
 * throw it: static links that take libstdc++ from its archive pull in
 * only what the program refers to (README, "Using it"). */
static _Noreturn void throw_bad_alloc(const struct cxx_runtime *runtime, const char *what,
                                      size_t size)
{
    if (runtime->throw_bad_alloc)
        runtime->throw_bad_alloc();
    xmm_fatal("xmm: operator new(%z): %s, and no C++ runtime to throw std::bad_alloc (a "
              "static link of libstdc++ needs -Wl,-u,_ZSt17__throw_bad_allocv)\n",
              size, what);
}

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

/* The C++ runtime's personality routine, which override_cxx_nothrow.cc's
 * catch needs: bound when libxmm.so loaded, like the references above. */
void __gxx_personality_v0(void) __attribute__((weak));

/* A nothrow operator new with a new-handler installed, in a process that
 * loaded libstdc++ after libxmm.so: override_cxx_nothrow.cc's catch has no
 * personality routine there, and a handler's exception would go on
 * through the nothrow operator (std::terminate in its caller). So
 * libstdc++'s own nothrow operator runs the request: it calls the
 * throwing operator new (XMM's, which runs the handler) inside its own
 * try, and returns null on an exception. False if it cannot be found. */
static bool late_nothrow_new(size_t size, size_t alignment, void **block)
{
    static const struct {
        char unused;
    } nothrow_tag;
    void *library = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (!library)
        return false;
    /* Through the library's handle: its own definition, not XMM's, which
     * interposes it. */
    void *function = dlsym(library, alignment ? "_ZnwmSt11align_val_tRKSt9nothrow_t"
                                              : "_ZnwmRKSt9nothrow_t");
    dlclose(library);
    if (!function)
        return false;
    if (alignment)
        *block = ((void *(*)(size_t, size_t, const void *))function)(size, alignment,
                                                                      &nothrow_tag);
    else
        *block = ((void *(*)(size_t, const void *))function)(size, &nothrow_tag);
    return true;
}

static void *new_slow(size_t size, size_t alignment, bool nothrow)
{
    for (;;) {
        void *block = allocate(size, alignment);
        if (block)
            return block;
        struct cxx_runtime runtime = cxx_runtime();
        new_handler_function handler = runtime.get_new_handler ? runtime.get_new_handler() : NULL;
        if (!handler) {
            if (nothrow)
                return NULL;
            throw_bad_alloc(&runtime, "out of memory", size);
        }
        void *late_block;
        if (!nothrow)
            handler();
        else if (!__gxx_personality_v0 && late_nothrow_new(size, alignment, &late_block))
            return late_block;
        else if (!__gxx_personality_v0)
            handler(); /* nothing here can catch what it throws */
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
static void *refuse_alignment(size_t size, bool nothrow)
{
    errno = EINVAL;
    if (nothrow)
        return NULL;
    struct cxx_runtime runtime = cxx_runtime();
    throw_bad_alloc(&runtime, "an alignment that is not a power of two", size);
}

static inline void *new_aligned(size_t size, size_t alignment, bool nothrow)
{
    if (!xmm_is_power_of_two(alignment))
        return refuse_alignment(size, nothrow);
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
