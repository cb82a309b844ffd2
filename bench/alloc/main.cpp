/// @file
/// @brief bench_alloc: heap allocations per small task, flowpool (flowpool.cpp) beside oneTBB
/// (tbb.cpp). Replaces the global operator new/delete of this binary with counting versions.
#include "alloc_workload.hpp"

#include <bench_threads.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace {

/// Calls of any global operator new. Relaxed: a statistic, read after waits that order the
/// counted calls before the read.
std::atomic<std::uint64_t> g_operator_new_calls{0};

void* counted_allocate(std::size_t size) {
  g_operator_new_calls.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic (see above)
  if (void* block = std::malloc(size == 0 ? 1 : size)) {
    return block;
  }
  throw std::bad_alloc();
}

void* counted_allocate_aligned(std::size_t size, std::align_val_t alignment) {
  g_operator_new_calls.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic (see above)
  const auto align = static_cast<std::size_t>(alignment);
  const std::size_t rounded = ((size == 0 ? 1 : size) + align - 1) / align * align;
  if (void* block = std::aligned_alloc(align, rounded)) {
    return block;
  }
  throw std::bad_alloc();
}

}  // namespace

std::uint64_t flowpool_bench::operator_new_calls() noexcept {
  return g_operator_new_calls.load(std::memory_order_relaxed);  // relaxed: a statistic (see above)
}

// The replaceable global allocation functions ([new.delete]); all of them count.
void* operator new(std::size_t size) {
  return counted_allocate(size);
}
void* operator new[](std::size_t size) {
  return counted_allocate(size);
}
void* operator new(std::size_t size, std::align_val_t alignment) {
  return counted_allocate_aligned(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return counted_allocate_aligned(size, alignment);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_allocate(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_allocate(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  try {
    return counted_allocate_aligned(size, alignment);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  try {
    return counted_allocate_aligned(size, alignment);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* block) noexcept {
  std::free(block);
}
void operator delete[](void* block) noexcept {
  std::free(block);
}
void operator delete(void* block, std::size_t) noexcept {
  std::free(block);
}
void operator delete[](void* block, std::size_t) noexcept {
  std::free(block);
}
void operator delete(void* block, std::align_val_t) noexcept {
  std::free(block);
}
void operator delete[](void* block, std::align_val_t) noexcept {
  std::free(block);
}
void operator delete(void* block, std::size_t, std::align_val_t) noexcept {
  std::free(block);
}
void operator delete[](void* block, std::size_t, std::align_val_t) noexcept {
  std::free(block);
}
void operator delete(void* block, const std::nothrow_t&) noexcept {
  std::free(block);
}
void operator delete[](void* block, const std::nothrow_t&) noexcept {
  std::free(block);
}
void operator delete(void* block, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(block);
}
void operator delete[](void* block, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(block);
}

int main(int argc, char** argv) {
  return flowpool_bench::run_benchmarks(argc, argv);
}
