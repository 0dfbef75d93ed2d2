/*
 * override_cxx_nothrow.cc - the one thing override_cxx.c cannot write in
 * C: calling the new-handler for a nothrow operator new and catching
 * whatever it throws ([new.delete.single]: a nothrow form returns null
 * where the throwing form would exit with an exception; libstdc++'s own
 * nothrow forms catch (...) likewise).
 *
 * libxmm.so must not depend on libstdc++ (C programs preload it), so the
 * C++ runtime functions this file's code and unwind tables refer to are
 * weak references, null when no C++ runtime is loaded. That is safe: this
 * frame exists only while a new-handler runs, and a new-handler is only
 * installed, found (through std::get_new_handler, in override_cxx.c) and
 * able to throw when the C++ runtime is in the process; where it came
 * after libxmm.so (a C program's C++ plugin), these references stayed
 * null, and override_cxx.c does not call this file but libstdc++'s own
 * nothrow operator (late_nothrow_new); the unwinder only calls a frame's personality routine for an
 * exception or a forced unwind passing through it; and the runtime whose
 * personality routine enters the catch block below also provides
 * __cxa_begin_catch and __cxa_end_catch.
 */

// The C++ runtime, weakly: no DT_NEEDED on libstdc++, and a C program's
// link (static or shared) does not fail for want of it. The compiler
// emits these references itself; .weak makes them weak.
asm(".weak __gxx_personality_v0\n\t"
    ".weak __cxa_begin_catch\n\t"
    ".weak __cxa_end_catch");

typedef void (*xmm_new_handler)(void);

extern "C" {
bool xmm_call_new_handler_nothrow(xmm_new_handler handler);
}

/* Calls `handler`: true if it returned (try the allocation again), false if
 * it threw (the nothrow operator returns NULL). Like libstdc++'s nothrow
 * operators, this also ends a thread cancellation's forced unwind out of
 * the handler (glibc then aborts): handlers must not be cancelled. */
extern "C" bool xmm_call_new_handler_nothrow(xmm_new_handler handler)
{
    try {
        handler();
        return true;
    } catch (...) {
        return false;
    }
}
