// cxx_new_delete.cc - operator new and delete in every form, through XMM.
//
// Built twice: linked with libxmm.so ($(BUILD)/tests/api_cxx_new_delete),
// and plain ($(BUILD)/tests/cxx_new_delete), which
// tests/programs/cxx_new_delete.sh runs with LD_PRELOAD=libxmm.so. Either
// way XMM must be in the process: xmm_node_of is looked up with dlsym and
// every block the operators return must be an XMM block.
//
// Checks: plain, array, nothrow, sized, aligned (64, 4096, 1 MiB),
// aligned+sized and aligned nothrow operators; alignas types through new
// expressions; a huge new throws std::bad_alloc after calling the
// new_handler once, and the nothrow forms return nullptr; standard
// containers, strings and shared_ptrs built and passed between threads with
// their results checked.
#include <dlfcn.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <numeric>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "check.h"

using node_of_function = int (*)(const void *);
static node_of_function xmm_node_of_pointer;

static bool is_xmm(const void *ptr)
{
    return xmm_node_of_pointer && xmm_node_of_pointer(ptr) >= 0;
}

static bool aligned(const void *ptr, std::size_t alignment)
{
    return (reinterpret_cast<std::uintptr_t>(ptr) & (alignment - 1)) == 0;
}

static void fill_and_check(void *ptr, std::size_t size, const char *what)
{
    auto *bytes = static_cast<unsigned char *>(ptr);
    std::memset(bytes, 0x5c, size);
    bool good = size == 0 || (bytes[0] == 0x5c && bytes[size - 1] == 0x5c);
    if (!good)
        CHECK(false, "%s: writable", what);
}

struct alignas(64) Line {
    char bytes[64];
};
struct alignas(4096) Page {
    char bytes[4096];
};
struct alignas(1 << 20) Huge {
    char bytes[1 << 20];
};

static void test_operator_forms()
{
    // Plain and array, then their sized deletes. Every form returns
    // __STDCPP_DEFAULT_NEW_ALIGNMENT__ (16 on x86_64) for every size: clang
    // assumes it of every result, and LLVM's JIT stores SSE registers into
    // a 72-byte block with aligned moves.
    for (std::size_t size : {std::size_t(0), std::size_t(1), std::size_t(8), std::size_t(20),
                             std::size_t(24), std::size_t(72), std::size_t(120), std::size_t(1000),
                             std::size_t(70000), std::size_t(5) << 20}) {
        void *p = ::operator new(size);
        CHECK(p && is_xmm(p) && aligned(p, __STDCPP_DEFAULT_NEW_ALIGNMENT__),
              "operator new(%zu) gives a 16-byte aligned XMM block", size);
        fill_and_check(p, size, "operator new");
        ::operator delete(p, size);
        p = ::operator new[](size);
        CHECK(p && is_xmm(p) && aligned(p, __STDCPP_DEFAULT_NEW_ALIGNMENT__),
              "operator new[](%zu) gives a 16-byte aligned XMM block", size);
        fill_and_check(p, size, "operator new[]");
        ::operator delete[](p, size);
        p = ::operator new(size, std::nothrow);
        CHECK(p && is_xmm(p) && aligned(p, __STDCPP_DEFAULT_NEW_ALIGNMENT__),
              "operator new(%zu, nothrow)", size);
        ::operator delete(p, std::nothrow);
        p = ::operator new[](size, std::nothrow);
        CHECK(p && is_xmm(p), "operator new[](%zu, nothrow)", size);
        ::operator delete[](p, std::nothrow);
        p = ::operator new(size);
        ::operator delete(p); // unsized
    }
    void *zero_a = ::operator new(0), *zero_b = ::operator new(0);
    CHECK(zero_a && zero_b && zero_a != zero_b, "operator new(0) twice: distinct non-null");
    ::operator delete(zero_a);
    ::operator delete(zero_b);

    // Aligned forms.
    for (std::size_t alignment : {std::size_t(32), std::size_t(64), std::size_t(4096),
                                  std::size_t(1) << 20}) {
        for (std::size_t size : {std::size_t(1), std::size_t(64), alignment, alignment * 3 + 8}) {
            auto al = std::align_val_t(alignment);
            void *p = ::operator new(size, al);
            CHECK(p && aligned(p, alignment) && is_xmm(p),
                  "operator new(%zu, align_val_t(%zu)) aligned, XMM", size, alignment);
            fill_and_check(p, size, "aligned new");
            ::operator delete(p, size, al); // aligned + sized
            p = ::operator new[](size, al);
            CHECK(p && aligned(p, alignment) && is_xmm(p),
                  "operator new[](%zu, align_val_t(%zu)) aligned, XMM", size, alignment);
            fill_and_check(p, size, "aligned new[]");
            ::operator delete[](p, size, al);
            p = ::operator new(size, al, std::nothrow);
            CHECK(p && aligned(p, alignment), "operator new(%zu, align_val_t(%zu), nothrow)", size,
                  alignment);
            ::operator delete(p, al, std::nothrow);
            p = ::operator new[](size, al, std::nothrow);
            CHECK(p && aligned(p, alignment), "operator new[](%zu, align_val_t(%zu), nothrow)",
                  size, alignment);
            ::operator delete[](p, al, std::nothrow);
            p = ::operator new(size, al);
            ::operator delete(p, al); // aligned, unsized
        }
    }

    // New expressions on over-aligned types.
    Line *line = new Line;
    Page *pages = new Page[3];
    Huge *huge = new Huge;
    CHECK(aligned(line, 64) && is_xmm(line), "new Line (alignas 64): aligned, XMM");
    CHECK(aligned(pages, 4096) && is_xmm(pages), "new Page[3] (alignas 4096): aligned, XMM");
    CHECK(aligned(huge, 1 << 20) && is_xmm(huge), "new Huge (alignas 1 MiB): aligned, XMM");
    std::memset(pages, 1, sizeof(Page) * 3);
    std::memset(huge, 2, sizeof(Huge));
    delete line;
    delete[] pages;
    delete huge;

    // A vector of over-aligned elements: std::allocator uses aligned new.
    std::vector<Line> lines(1000);
    CHECK(aligned(lines.data(), 64) && is_xmm(lines.data()), "std::vector<Line>: aligned, XMM");
}

static int handler_calls;
static void counting_handler()
{
    handler_calls++;
    std::set_new_handler(nullptr); // the next failure throws
}

static void test_failures()
{
    volatile std::size_t huge = std::numeric_limits<std::size_t>::max();
    volatile std::size_t half = huge / 2;
    volatile std::size_t too_big = std::size_t(1) << 47;

    for (std::size_t size : {std::size_t(huge), std::size_t(half), std::size_t(too_big)}) {
        bool thrown = false;
        try {
            void *p = ::operator new(size);
            ::operator delete(p);
        } catch (const std::bad_alloc &) {
            thrown = true;
        }
        CHECK(thrown, "operator new(%#zx) throws std::bad_alloc", size);
        thrown = false;
        try {
            char *p = new char[size];
            delete[] p;
        } catch (const std::bad_alloc &) { // std::bad_array_new_length is one too
            thrown = true;
        }
        CHECK(thrown, "new char[%#zx] throws std::bad_alloc", size);
        thrown = false;
        try {
            void *p = ::operator new(size, std::align_val_t(4096));
            ::operator delete(p, std::align_val_t(4096));
        } catch (const std::bad_alloc &) {
            thrown = true;
        }
        CHECK(thrown, "operator new(%#zx, align_val_t(4096)) throws std::bad_alloc", size);
        CHECK(::operator new(size, std::nothrow) == nullptr, "operator new(%#zx, nothrow) = nullptr",
              size);
        CHECK(::operator new[](size, std::nothrow) == nullptr,
              "operator new[](%#zx, nothrow) = nullptr", size);
        CHECK(::operator new(size, std::align_val_t(64), std::nothrow) == nullptr,
              "operator new(%#zx, align_val_t(64), nothrow) = nullptr", size);
    }

    // The new_handler is called on failure before bad_alloc is thrown.
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    bool thrown = false;
    try {
        void *p = ::operator new(std::size_t(half));
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown && handler_calls == 1,
          "a failing operator new calls the new_handler (%d calls, expected 1), then throws",
          handler_calls);
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    void *p = ::operator new(std::size_t(half), std::nothrow);
    CHECK(p == nullptr && handler_calls == 1,
          "a failing nothrow operator new calls the new_handler too (%d calls), then nullptr",
          handler_calls);
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    thrown = false;
    try {
        void *q = ::operator new(std::size_t(half), std::align_val_t(256));
        ::operator delete(q, std::align_val_t(256));
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown && handler_calls == 1,
          "a failing aligned operator new calls the new_handler (%d calls), then throws",
          handler_calls);

    // An alignment that is not a power of two (undefined behaviour) fails
    // at once, as libstdc++'s own operator new fails it: no handler call,
    // which could not make it succeed and might spend a reserve on it
    // (XMM called the handler until it uninstalled itself).
    for (std::size_t alignment : {std::size_t(24), std::size_t(3), std::size_t(0)}) {
        handler_calls = 0;
        std::set_new_handler(counting_handler);
        thrown = false;
        try {
            void *q = ::operator new(64, std::align_val_t(alignment));
            ::operator delete(q, std::align_val_t(alignment));
        } catch (const std::bad_alloc &) {
            thrown = true;
        }
        CHECK(thrown && handler_calls == 0,
              "operator new(64, align_val_t(%zu)) throws bad_alloc without the handler (%d calls)",
              alignment, handler_calls);
        handler_calls = 0;
        std::set_new_handler(counting_handler);
        void *q = ::operator new[](64, std::align_val_t(alignment), std::nothrow);
        CHECK(q == nullptr && handler_calls == 0,
              "operator new[](64, align_val_t(%zu), nothrow) = nullptr without the handler "
              "(%d calls)", alignment, handler_calls);
    }
    std::set_new_handler(nullptr);

    // After all that, new works.
    auto *value = new std::string(1000, 'z');
    CHECK(value->size() == 1000 && is_xmm(value), "new works after the failures");
    delete value;
}

// ---- containers across threads ---------------------------------------------

struct Message {
    std::vector<std::uint64_t> numbers;
    std::string text;
    std::map<int, std::string> table;
    std::uint64_t expected_sum;
};

template <typename T>
class Channel {
public:
    void send(T value)
    {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(value));
        ready_.notify_one();
    }
    T receive()
    {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !queue_.empty(); });
        T value = std::move(queue_.front());
        queue_.pop_front();
        return value;
    }

private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<T> queue_;
};

static void test_threads()
{
    const int producers = 4, consumers = 4, per_producer = 1500;
    Channel<std::shared_ptr<Message>> channel;
    std::atomic<long> bad{0}, received{0}, exceptions{0};

    std::vector<std::thread> threads;
    for (int id = 0; id < producers; id++) {
        threads.emplace_back([&, id] {
            for (int i = 0; i < per_producer; i++) {
                auto message = std::make_shared<Message>();
                std::size_t count = 1 + static_cast<std::size_t>((i * 7919 + id) % 700);
                message->numbers.resize(count);
                std::iota(message->numbers.begin(), message->numbers.end(),
                          static_cast<std::uint64_t>(i));
                message->expected_sum = count * static_cast<std::uint64_t>(i) + count * (count - 1) / 2;
                for (int k = 0; k < 20; k++)
                    message->text += std::to_string(id * 100000 + i) + ",";
                for (int k = 0; k < i % 30; k++)
                    message->table[k] = std::string(static_cast<std::size_t>(k) * 3, 'a' + k % 26);
                if (i % 100 == 0) {
                    try {
                        throw std::runtime_error(std::string(200, 'e'));
                    } catch (const std::runtime_error &error) {
                        if (std::strlen(error.what()) == 200)
                            exceptions++;
                    }
                }
                channel.send(std::move(message));
            }
        });
    }
    const long total = static_cast<long>(producers) * per_producer;
    for (int id = 0; id < consumers; id++) {
        threads.emplace_back([&] {
            std::unordered_map<std::string, int> seen;
            while (true) {
                long index = received.fetch_add(1);
                if (index >= total)
                    break;
                auto message = channel.receive();
                std::uint64_t sum = std::accumulate(message->numbers.begin(),
                                                    message->numbers.end(), std::uint64_t(0));
                // (message.get() points inside make_shared's block: not
                // a pointer XMM handed out, so only the vector's is tested)
                if (sum != message->expected_sum || !is_xmm(message->numbers.data()))
                    bad++;
                for (const auto &entry : message->table)
                    if (entry.second.size() != static_cast<std::size_t>(entry.first) * 3)
                        bad++;
                seen[message->text.substr(0, message->text.find(','))]++;
                // The message is destroyed here, in another thread than the
                // one that built it.
            }
            for (const auto &entry : seen)
                if (entry.second != 1)
                    bad++;
        });
    }
    for (auto &thread : threads)
        thread.join();
    CHECK(bad == 0, "%ld messages (vector, string, map in a shared_ptr) built by %d threads and "
                    "checked and destroyed by %d others: all correct (%ld bad)",
          total, producers, consumers, bad.load());
    CHECK(exceptions == producers * (per_producer / 100), "exceptions thrown and caught in threads");

    // Every thread builds the same containers; the results agree.
    std::vector<std::uint64_t> results(8);
    threads.clear();
    for (int id = 0; id < 8; id++) {
        threads.emplace_back([&results, id] {
            std::map<int, int> ordered;
            std::unordered_map<int, std::string> hashed;
            std::vector<std::string> words;
            for (int i = 0; i < 20000; i++) {
                ordered[(i * 7919) % 10007] += i;
                hashed[i % 5003] = std::to_string(i);
                if (i % 10 == 0)
                    words.push_back(std::string(static_cast<std::size_t>(i % 97), 'w'));
            }
            std::uint64_t sum = 0;
            for (const auto &entry : ordered)
                sum = sum * 31 + static_cast<std::uint64_t>(entry.first) * 7 +
                      static_cast<std::uint64_t>(entry.second);
            for (int i = 0; i < 5003; i++)
                sum += std::stoul(hashed[i]);
            for (const auto &word : words)
                sum += word.size();
            results[static_cast<std::size_t>(id)] = sum;
        });
    }
    for (auto &thread : threads)
        thread.join();
    bool agree = std::all_of(results.begin(), results.end(),
                             [&](std::uint64_t value) { return value == results[0]; });
    CHECK(agree, "8 threads building map/unordered_map/vector<string> agree on the checksum %llu",
          static_cast<unsigned long long>(results[0]));
}

int main()
{
    xmm_node_of_pointer = reinterpret_cast<node_of_function>(dlsym(RTLD_DEFAULT, "xmm_node_of"));
    CHECK(xmm_node_of_pointer != nullptr,
          "libxmm.so is in the process (xmm_node_of found); run with LD_PRELOAD=build/libxmm.so");
    void *block = std::malloc(100);
    CHECK(is_xmm(block), "malloc is XMM's");
    std::free(block);
    test_operator_forms();
    test_failures();
    test_threads();
    return check_summary("cxx_new_delete");
}
