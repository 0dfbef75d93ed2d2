// micro.cc - google-benchmark microbenchmarks of the plain malloc API.
//
// Only malloc, free, calloc, realloc and posix_memalign are called, so
// LD_PRELOAD decides which allocator is measured. Every benchmark reports
// items_per_second = allocations (or reallocs) per second over all threads,
// measured in wall-clock time (UseRealTime): on a 2-core machine running
// 4 threads, CPU time would hide the cost of waiting on a contended lock.
//
// Own flags (before google-benchmark's --benchmark_* flags):
//   --quick   fewer sizes and thread counts, for a first look.
#include <benchmark/benchmark.h>

#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kBatch = 1000;  // allocations per batch before the frees

struct Shape {
  std::vector<size_t> sizes;
  std::vector<int> threads;
};

// Writes the first and last byte: the allocator must hand out real memory,
// and the compiler cannot drop the allocation as unused.
inline void Touch(void* block, size_t size) {
  auto* bytes = static_cast<char*>(block);
  bytes[0] = 1;
  bytes[size - 1] = 1;
  benchmark::DoNotOptimize(bytes);
}

void MallocFree(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* block = std::malloc(size);
    Touch(block, size);
    std::free(block);
  }
  state.SetItemsProcessed(state.iterations());
}

void BatchThenFree(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  void* blocks[kBatch];
  for (auto _ : state) {
    for (int i = 0; i < kBatch; i++) {
      blocks[i] = std::malloc(size);
      Touch(blocks[i], size);
    }
    for (int i = 0; i < kBatch; i++) std::free(blocks[i]);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void Calloc(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    auto* block = static_cast<char*>(std::calloc(1, size));
    // Reading the last byte keeps the zeroing observable.
    benchmark::DoNotOptimize(block[size - 1]);
    std::free(block);
  }
  state.SetItemsProcessed(state.iterations());
}

// A buffer grown by doubling from 16 bytes to range(0), writing the new
// last byte after each step, as a vector or string builder does.
void ReallocGrowth(benchmark::State& state) {
  const size_t final_size = static_cast<size_t>(state.range(0));
  int64_t reallocs = 0;
  for (auto _ : state) {
    size_t size = 16;
    auto* block = static_cast<char*>(std::malloc(size));
    block[0] = 1;
    while (size < final_size) {
      size *= 2;
      block = static_cast<char*>(std::realloc(block, size));
      block[size - 1] = 1;
      reallocs++;
    }
    benchmark::DoNotOptimize(block);
    std::free(block);
  }
  state.SetItemsProcessed(reallocs);
}

void AlignedAlloc(benchmark::State& state) {
  const size_t alignment = static_cast<size_t>(state.range(0));
  const size_t size = static_cast<size_t>(state.range(1));
  for (auto _ : state) {
    void* block = nullptr;
    if (posix_memalign(&block, alignment, size) != 0) {
      state.SkipWithError("posix_memalign failed");
      break;
    }
    Touch(block, size);
    std::free(block);
  }
  state.SetItemsProcessed(state.iterations());
}

// Producer/consumer across threads: thread 0 allocates and pushes blocks
// into a preallocated single-producer single-consumer ring, thread 1 pops
// and frees them. Every free is a remote free. Both threads run the same
// number of iterations, so the ring is empty again at the end of each run.
constexpr size_t kRingSlots = 1024;
struct Ring {
  alignas(64) std::atomic<size_t> head{0};  // next slot to pop
  alignas(64) std::atomic<size_t> tail{0};  // next slot to push
  alignas(64) void* slots[kRingSlots];
};
Ring ring;

// Spinning is cheaper than a futex here, but yields so the partner thread
// can run when the machine has fewer free cores than threads.
inline void Backoff(int& spins) {
  if (++spins > 64) {
    sched_yield();
    spins = 0;
  }
}

void Produce(benchmark::State& state, size_t size) {
  for (auto _ : state) {
    void* block = std::malloc(size);
    Touch(block, size);
    size_t tail = ring.tail.load(std::memory_order_relaxed);
    int spins = 0;
    while (tail - ring.head.load(std::memory_order_acquire) == kRingSlots) Backoff(spins);
    ring.slots[tail % kRingSlots] = block;
    ring.tail.store(tail + 1, std::memory_order_release);
  }
}

void Consume(benchmark::State& state) {
  for (auto _ : state) {
    size_t head = ring.head.load(std::memory_order_relaxed);
    int spins = 0;
    while (ring.tail.load(std::memory_order_acquire) == head) Backoff(spins);
    std::free(ring.slots[head % kRingSlots]);
    ring.head.store(head + 1, std::memory_order_release);
  }
}

void ProducerConsumer(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  if (state.thread_index() == 0) {
    Produce(state, size);
    state.SetItemsProcessed(state.iterations());  // count each block once
  } else {
    Consume(state);
  }
}

Shape ChooseShape(bool quick) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const int many = cores > 0 ? 2 * cores : 4;
  if (quick) return {{16, 256, 4096, 1 << 20}, {1, many}};
  return {{8, 16, 64, 256, 1024, 4096, 32768, 1 << 20}, {1, cores > 1 ? cores : 2, many}};
}

void RegisterAll(const Shape& shape) {
  for (int threads : shape.threads) {
    for (size_t size : shape.sizes) {
      const auto s = static_cast<int64_t>(size);
      benchmark::RegisterBenchmark("malloc_free", MallocFree)->Arg(s)->Threads(threads)->UseRealTime();
      benchmark::RegisterBenchmark("batch1000", BatchThenFree)->Arg(s)->Threads(threads)->UseRealTime();
      benchmark::RegisterBenchmark("calloc", Calloc)->Arg(s)->Threads(threads)->UseRealTime();
    }
    for (int64_t alignment : {64, 4096})
      for (int64_t size : {64, 4096, 32768})
        benchmark::RegisterBenchmark("posix_memalign", AlignedAlloc)
            ->Args({alignment, size})->Threads(threads)->UseRealTime();
  }
  for (int64_t final_size : {4096, 65536, 1 << 20, 16 << 20})
    benchmark::RegisterBenchmark("realloc_growth", ReallocGrowth)->Arg(final_size)->UseRealTime();
  for (int64_t size : {16, 256, 4096})
    benchmark::RegisterBenchmark("producer_consumer", ProducerConsumer)
        ->Arg(size)->Threads(2)->UseRealTime();
}

// The library malloc resolved to, recorded in the JSON context so that a
// result can never be filed under the wrong allocator.
std::string MallocLibrary() {
  Dl_info info;
  if (!dladdr(reinterpret_cast<void*>(&malloc), &info) || !info.dli_fname) return "unknown";
  std::string name = info.dli_fname;
  return name.substr(name.rfind('/') + 1);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  bool quick = false;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "micro: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  RegisterAll(ChooseShape(quick));
  benchmark::AddCustomContext("malloc_library", MallocLibrary());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
