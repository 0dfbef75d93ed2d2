// cxx_plugin_lib.cc - the C++ plugin that tests/override/cxx_plugin.c (a C
// program: no libstdc++ when libxmm.so loads) dlopens. Each failing form of
// operator new must behave as the standard says, which takes libstdc++'s
// std::get_new_handler and std::__throw_bad_alloc, loaded with this plugin.
#include <cstddef>
#include <cstdint>
#include <new>

namespace {

int handler_calls;

// Gives up on its second call: the allocation is tried three times.
void handler_giving_up()
{
    if (++handler_calls == 2)
        std::set_new_handler(nullptr);
}

constexpr std::size_t too_big = SIZE_MAX / 4;

template <typename Form> bool throws_bad_alloc(Form form)
{
    try {
        form();
    } catch (const std::bad_alloc &) {
        return true;
    }
    return false;
}

}  // namespace

// Returns a bit per failed check (0: all passed); `*checks` counts them.
extern "C" unsigned plugin_run(unsigned *checks)
{
    unsigned failed = 0, bit = 0;
    auto expect = [&](bool ok) { failed |= ok ? 0u : 1u << bit; bit++; };
    expect(throws_bad_alloc([] { ::operator delete(::operator new(too_big)); }));
    expect(throws_bad_alloc([] { ::operator delete[](::operator new[](too_big)); }));
    expect(throws_bad_alloc([] {
        ::operator delete(::operator new(too_big, std::align_val_t(64)), std::align_val_t(64));
    }));
    // A bad alignment fails at once, as libstdc++'s operator new does.
    expect(throws_bad_alloc([] { ::operator delete(::operator new(64, std::align_val_t(48))); }));
    // The new-handler runs until it uninstalls itself, then bad_alloc.
    handler_calls = 0;
    std::set_new_handler(handler_giving_up);
    expect(throws_bad_alloc([] { ::operator delete(::operator new(too_big)); }));
    expect(handler_calls == 2);
    // The nothrow forms call it too, then return null.
    handler_calls = 0;
    std::set_new_handler(handler_giving_up);
    expect(::operator new(too_big, std::nothrow) == nullptr);
    expect(handler_calls == 2);
    handler_calls = 0;
    std::set_new_handler(handler_giving_up);
    expect(::operator new[](too_big, std::align_val_t(128), std::nothrow) == nullptr);
    expect(handler_calls == 2);
    // A handler that throws: the nothrow forms return null (the exception
    // must not go on through them, which std::terminate would end).
    std::set_new_handler([] { throw 42; });
    bool escaped = false;
    try {
        expect(::operator new(too_big, std::nothrow) == nullptr);
        expect(::operator new(too_big, std::align_val_t(256), std::nothrow) == nullptr);
        expect(::operator new[](too_big, std::nothrow) == nullptr);
    } catch (int) {
        escaped = true;
    }
    expect(!escaped);
    std::set_new_handler(nullptr);
    // And an ordinary request still succeeds.
    int *value = new int(7);
    expect(*value == 7);
    delete value;
    *checks = bit;
    return failed;
}
