// heap_misuse_cxx.cc - the C++ cases of tests/override/heap_misuse.c: sized and
// aligned deletes whose size or alignment cannot be the block's, and the
// controls that give the right ones. Only a child: api_heap_misuse runs
// `api_heap_misuse_cxx --case NAME [churn]`, judges the outcome and lists
// the cases (with what each must do). Linked with libxmm.so.
//
// Every case here goes through the operators XMM exports (the sized forms
// are what g++ calls for `delete` of a complete type, -fsized-deallocation
// being the default from C++14 on).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>

#include "misuse_child.h"

namespace {

struct Small {
    std::uint64_t a, b, c, d; // 32 bytes
};

struct alignas(64) Line {
    char x[24]; // sizeof 64
};

struct alignas(8192) Big {
    char x[9000]; // sizeof 16384
};

struct WithDestructor {
    std::string text;
    ~WithDestructor() { text.clear(); }
};

// Through volatile function pointers: the compiler must not see the pairs.
void (*volatile sized_delete)(void *, std::size_t) = ::operator delete;
void (*volatile sized_array_delete)(void *, std::size_t) = ::operator delete[];
void (*volatile aligned_sized_delete)(void *, std::size_t, std::align_val_t) = ::operator delete;
void (*volatile aligned_sized_array_delete)(void *, std::size_t, std::align_val_t) =
    ::operator delete[];

std::size_t sized_delete_wrong(std::size_t size, std::size_t claimed)
{
    void *p = ::operator new(size);
    std::memset(p, 0x5a, size < 4096 ? size : 4096);
    misuse_announce(p);
    sized_delete(p, claimed);
    return size;
}

std::size_t cxx_sized_delete_too_small() { return sized_delete_wrong(100, 20); }
std::size_t cxx_sized_delete_too_large() { return sized_delete_wrong(24, 100); }
std::size_t cxx_sized_delete_large_as_small() { return sized_delete_wrong(1 << 20, 16); }
std::size_t cxx_sized_delete_same_class() { return sized_delete_wrong(100, 110); }
std::size_t cxx_sized_delete_sampled() { return sized_delete_wrong(100, 1000); }

std::size_t cxx_array_sized_delete_too_large()
{
    void *p = ::operator new[](24);
    misuse_announce(p);
    sized_array_delete(p, 1000);
    return 24;
}

std::size_t cxx_aligned_sized_delete_wrong_alignment()
{
    Line *p = new Line;
    misuse_announce(p);
    aligned_sized_delete(p, sizeof(Line), std::align_val_t(256));
    return sizeof(Line);
}

// hardened_malloc delete_type_size_mismatch: `new char` deleted through a
// pointer to a 32-byte struct (the compiler passes 32 to the sized delete).
std::size_t hm_delete_type_size_mismatch()
{
    char *p = new char;
    *p = 1;
    misuse_announce(p);
    Small *volatile wrong = reinterpret_cast<Small *>(p);
    delete wrong;
    return 16;
}

// hardened_malloc invalid_aligned_sized_delete_small: size + 64.
std::size_t hm_invalid_aligned_sized_delete_small()
{
    Line *p = new Line;
    misuse_announce(p);
    aligned_sized_delete(p, sizeof(Line) + 64, std::align_val_t(alignof(Line)));
    return sizeof(Line);
}

// hardened_malloc invalid_aligned_sized_delete_large: size - 10, which XMM
// cannot tell from the right size (the block is 16384 bytes either way).
std::size_t hm_invalid_aligned_sized_delete_large()
{
    Big *p = new Big;
    misuse_announce(p);
    aligned_sized_delete(p, sizeof(Big) - 10, std::align_val_t(alignof(Big)));
    return sizeof(Big);
}

std::size_t hm_aligned_sized_delete_small()
{
    Line *p = new Line;
    delete p; // operator delete(p, 64, align_val_t(64))
    return sizeof(Line);
}

std::size_t hm_aligned_sized_delete_large()
{
    Big *p = new Big;
    delete p; // operator delete(p, 16384, align_val_t(8192))
    return sizeof(Big);
}

// The control: every sized form with the size (and alignment) given to new.
std::size_t cxx_sized_delete_exact()
{
    static const std::size_t sizes[] = {0,     1,      8,       15,      16,      17,
                                        24,    100,    1000,    4096,    70000,   262144,
                                        262145, 300000, 1 << 20, 5 << 20};
    for (std::size_t size : sizes) {
        void *p = ::operator new(size);
        sized_delete(p, size);
        p = ::operator new[](size);
        sized_array_delete(p, size);
    }
    static const std::size_t alignments[] = {8, 16, 32, 64, 4096, 8192, 16384, 1 << 20};
    for (std::size_t alignment : alignments) {
        const std::size_t aligned_sizes[] = {0, 1, 64, alignment, alignment + 1,
                                             alignment * 3 + 8, 300000};
        for (std::size_t size : aligned_sizes) {
            auto al = std::align_val_t(alignment);
            void *p = ::operator new(size, al);
            aligned_sized_delete(p, size, al);
            p = ::operator new[](size, al);
            aligned_sized_array_delete(p, size, al);
        }
    }
    // New expressions: the compiler computes the sizes (a cookie for
    // arrays of types with a destructor).
    char *one = new char;
    delete one;
    Small *small = new Small();
    delete small;
    Line *line = new Line;
    delete line;
    Line *lines = new Line[5];
    delete[] lines;
    WithDestructor *objects = new WithDestructor[3];
    objects[1].text = "a string long enough to allocate a buffer of its own";
    delete[] objects;
    std::string *strings = new std::string[7];
    delete[] strings;
    Big *big = new Big;
    delete big;
    return 24;
}

// delete p twice through the sized operator, then only sized deletes (as
// C++14 code does). Under XMM_FREE_CHECK=deferred the second delete went
// to the CPU's pending slot, which only a plain free() completes: no report
// ever came while the program kept to sized deletes (a misuse audit). The
// report must come from the delete itself: a child still without one after
// 1000 more sized pairs exits 3.
std::size_t cxx_double_sized_delete()
{
    const std::size_t size = 100;
    void *p = ::operator new(size);
    std::memset(p, 0x5a, size);
    sized_delete(p, size);
    misuse_announce(p);
    sized_delete(p, size);
    for (int i = 0; i < 1000; i++)
        sized_delete(::operator new(size), size);
    if (misuse_invalid_frees() == 0) {
        std::printf("NOT REPORTED by the sized deletes\n");
        std::fflush(stdout);
        _exit(3);
    }
    return size;
}

struct cxx_case {
    const char *name;
    std::size_t (*run)();
    bool pin;
};

const cxx_case cases[] = {
    {"cxx_sized_delete_too_small", cxx_sized_delete_too_small, true},
    {"cxx_sized_delete_too_large", cxx_sized_delete_too_large, true},
    {"cxx_array_sized_delete_too_large", cxx_array_sized_delete_too_large, true},
    {"cxx_sized_delete_large_as_small", cxx_sized_delete_large_as_small, true},
    {"cxx_aligned_sized_delete_wrong_alignment", cxx_aligned_sized_delete_wrong_alignment, true},
    {"cxx_sized_delete_exact", cxx_sized_delete_exact, true},
    {"cxx_sized_delete_same_class", cxx_sized_delete_same_class, true},
    {"cxx_sized_delete_sampled", cxx_sized_delete_sampled, true},
    {"cxx_double_sized_delete", cxx_double_sized_delete, true},
    {"hm_delete_type_size_mismatch", hm_delete_type_size_mismatch, true},
    {"hm_invalid_aligned_sized_delete_small", hm_invalid_aligned_sized_delete_small, true},
    {"hm_invalid_aligned_sized_delete_large", hm_invalid_aligned_sized_delete_large, true},
    {"hm_aligned_sized_delete_small", hm_aligned_sized_delete_small, true},
    {"hm_aligned_sized_delete_large", hm_aligned_sized_delete_large, true},
};

} // namespace

int main(int argc, char **argv)
{
    if (argc < 3 || std::strcmp(argv[1], "--case") != 0) {
        std::fprintf(stderr, "usage: %s --case NAME [churn] (run by api_heap_misuse)\n",
                     argv[0]);
        return 2;
    }
    misuse_churn_wanted = argc >= 4 && std::strcmp(argv[3], "churn") == 0;
    for (const cxx_case &c : cases)
        if (std::strcmp(c.name, argv[2]) == 0) {
            misuse_child_begin(c.pin);
            std::size_t size = c.run();
            return misuse_child_finish(size);
        }
    std::fprintf(stderr, "unknown case %s\n", argv[2]);
    return 2;
}
