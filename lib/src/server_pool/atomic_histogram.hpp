// The recording side of flowpool::latency_histogram: one writer (a slot's thread), readers
// (server_pool::stats()) at any time, without a lock and without allocation.
#pragma once

#include "flowpool/latency_histogram.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace flowpool::detail {

// Lets the recorder fill a latency_histogram's buckets (latency_histogram befriends it).
struct histogram_access {
  static void add_bucket(latency_histogram& h, std::size_t bucket, std::uint64_t n) noexcept {
    h.m_counts[bucket] += n;
  }
  static void add_summary(latency_histogram& h, std::uint64_t count, std::uint64_t sum, std::uint64_t min,
                          std::uint64_t max) noexcept {
    h.add_summary(count, sum, min, max);
  }
};

class atomic_histogram {
 public:
  // Single writer. Each store is relaxed: the counts publish no other data, and a reader accepts
  // any recent value (stats() is documented as exact only once the pool is quiet, which join()'s
  // mutex hand-off orders after these stores).
  void record(std::chrono::nanoseconds value) noexcept {
    const std::uint64_t ns = value.count() < 0 ? 0 : static_cast<std::uint64_t>(value.count());
    std::atomic<std::uint64_t>& bucket = m_counts[latency_histogram::bucket_of(ns)];
    bucket.store(bucket.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // relaxed: single writer
    m_sum.store(m_sum.load(std::memory_order_relaxed) + ns, std::memory_order_relaxed);   // relaxed: as above
    const std::uint64_t seen = m_seen.load(std::memory_order_relaxed);                    // relaxed: own variable
    if (seen == 0 || ns < m_min.load(std::memory_order_relaxed)) {
      m_min.store(ns, std::memory_order_relaxed);  // relaxed: as above
    }
    if (ns > m_max.load(std::memory_order_relaxed)) {
      m_max.store(ns, std::memory_order_relaxed);  // relaxed: as above
    }
    m_seen.store(seen + 1, std::memory_order_relaxed);  // relaxed: as above
  }

  // Any thread. The count is the sum of the buckets read, so the snapshot's percentiles are
  // consistent with its own buckets even when a record() runs meanwhile.
  void add_to(latency_histogram& out) const noexcept {
    std::uint64_t count = 0;
    for (std::size_t i = 0; i < latency_histogram::k_buckets; ++i) {
      const std::uint64_t n = m_counts[i].load(std::memory_order_relaxed);  // relaxed: a tally, see record()
      if (n != 0) {
        histogram_access::add_bucket(out, i, n);
        count += n;
      }
    }
    if (count != 0) {
      // Relaxed: tallies, see record(); mid-record they may trail the buckets by one value.
      histogram_access::add_summary(out, count, m_sum.load(std::memory_order_relaxed),
                                    m_min.load(std::memory_order_relaxed), m_max.load(std::memory_order_relaxed));
    }
  }

 private:
  std::array<std::atomic<std::uint64_t>, latency_histogram::k_buckets> m_counts{};
  std::atomic<std::uint64_t> m_seen{0};
  std::atomic<std::uint64_t> m_sum{0};
  std::atomic<std::uint64_t> m_min{0};
  std::atomic<std::uint64_t> m_max{0};
};

}  // namespace flowpool::detail
