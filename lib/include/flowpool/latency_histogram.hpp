/// @file
/// @brief flowpool::latency_histogram: a fixed-size, log-bucketed distribution of durations, with
/// percentiles at most about 3 % off.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace flowpool {

namespace detail {
struct histogram_access;
}  // namespace detail

/// @brief A distribution of durations in fixed-size log-linear buckets (the HDR-histogram idea):
/// each power of two of nanoseconds is split into 16 equal buckets, and durations below 32 ns get
/// a bucket each. Recording never allocates.
///
/// A percentile is reported as the middle of its bucket, clamped to the exact minimum and maximum,
/// so it is within 1/32 (3.2 %) of a duration that really is at that rank. Durations of 2^48 ns
/// (about 78 hours) and more share the last bucket; `max()` stays exact.
///
/// `server_pool::stats()` returns these as snapshots: a value type, not thread-safe by itself
/// (one writer at a time, like any standard container).
class latency_histogram {
 public:
  /// Number of buckets: 32 exact ones for 0-31 ns, then 16 per power of two up to 2^48 ns.
  static constexpr std::size_t k_buckets = 32 + 16 * 43;

  /// @brief Adds one duration (a negative one counts as 0). Never throws; never allocates.
  /// @param value the duration to add.
  void record(std::chrono::nanoseconds value) noexcept {
    const std::uint64_t ns = value.count() < 0 ? 0 : static_cast<std::uint64_t>(value.count());
    ++m_counts[bucket_of(ns)];
    add_summary(1, ns, ns, ns);
  }

  /// @brief Adds every duration of another histogram. Never throws.
  /// @param other the histogram to add.
  void merge(const latency_histogram& other) noexcept {
    if (other.m_count == 0) {
      return;
    }
    for (std::size_t i = 0; i < k_buckets; ++i) {
      m_counts[i] += other.m_counts[i];
    }
    add_summary(other.m_count, other.m_sum_ns, other.m_min_ns, other.m_max_ns);
  }

  /// @brief How many durations were recorded. Never throws.
  /// @return the count.
  [[nodiscard]] std::uint64_t count() const noexcept { return m_count; }

  /// @brief The largest duration recorded, exactly; 0 when empty. Never throws.
  /// @return the maximum.
  [[nodiscard]] std::chrono::nanoseconds max() const noexcept { return as_duration(m_max_ns); }

  /// @brief The smallest duration recorded, exactly; 0 when empty. Never throws.
  /// @return the minimum.
  [[nodiscard]] std::chrono::nanoseconds min() const noexcept { return as_duration(m_count == 0 ? 0 : m_min_ns); }

  /// @brief The mean of the recorded durations, exactly (to the nanosecond); 0 when empty.
  /// @return the mean.
  [[nodiscard]] std::chrono::nanoseconds mean() const noexcept {
    return as_duration(m_count == 0 ? 0 : m_sum_ns / m_count);
  }

  /// @brief The duration at quantile `q`: the smallest bucket holding at least `q * count()` of
  /// the durations, reported as the bucket's middle, clamped to `[min(), max()]`. Never throws.
  /// @param q the quantile, clamped to `[0, 1]` (0.5 is the median; 1 gives `max()`).
  /// @return the duration; 0 when empty.
  [[nodiscard]] std::chrono::nanoseconds percentile(double q) const noexcept {
    if (m_count == 0) {
      return std::chrono::nanoseconds{0};
    }
    if (!(q < 1.0)) {
      return max();
    }
    const double clamped = q > 0.0 ? q : 0.0;
    // The rank is ceil(q * count): the smallest count of durations that covers the share q.
    auto rank = static_cast<std::uint64_t>(std::ceil(clamped * static_cast<double>(m_count)));
    rank = std::clamp<std::uint64_t>(rank, 1, m_count);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < k_buckets; ++i) {
      seen += m_counts[i];
      if (seen >= rank) {
        const std::uint64_t mid = bucket_lower(i) + (bucket_width(i) - 1) / 2;
        return as_duration(std::clamp(mid, m_min_ns, m_max_ns));
      }
    }
    return max();
  }

  /// @brief The median, `percentile(0.5)`. @return the median.
  [[nodiscard]] std::chrono::nanoseconds p50() const noexcept { return percentile(0.5); }
  /// @brief `percentile(0.9)`. @return the 90th percentile.
  [[nodiscard]] std::chrono::nanoseconds p90() const noexcept { return percentile(0.9); }
  /// @brief `percentile(0.99)`. @return the 99th percentile.
  [[nodiscard]] std::chrono::nanoseconds p99() const noexcept { return percentile(0.99); }

  /// @brief The bucket that holds `ns` nanoseconds. Never throws.
  /// @param ns a duration in nanoseconds.
  /// @return its bucket index, in `[0, k_buckets)`.
  [[nodiscard]] static constexpr std::size_t bucket_of(std::uint64_t ns) noexcept {
    if (ns < 32) {
      const std::size_t exact = ns;
      return exact;
    }
    const auto top = static_cast<unsigned>(std::bit_width(ns)) - 1U;  // 5 .. 63
    if (top >= 48U) {
      return k_buckets - 1;
    }
    const std::size_t sub = (ns >> (top - 4U)) & 15U;
    return 32U + std::size_t{top - 5U} * 16U + sub;
  }

  /// @brief The smallest duration, in nanoseconds, that falls into bucket `i`. Never throws.
  /// @param i a bucket index, in `[0, k_buckets)`.
  /// @return the bucket's lower bound.
  [[nodiscard]] static constexpr std::uint64_t bucket_lower(std::size_t i) noexcept {
    if (i < 32) {
      return i;
    }
    const std::size_t top = 5 + (i - 32) / 16;
    const std::uint64_t sub = (i - 32) % 16;
    return (std::uint64_t{1} << top) + sub * (std::uint64_t{1} << (top - 4));
  }

  /// @brief How many nanoseconds bucket `i` spans. Never throws.
  /// @param i a bucket index, in `[0, k_buckets)`.
  /// @return the bucket's width (1 for the exact buckets below 32 ns).
  [[nodiscard]] static constexpr std::uint64_t bucket_width(std::size_t i) noexcept {
    return i < 32 ? 1 : std::uint64_t{1} << (5 + (i - 32) / 16 - 4);
  }

  /// @brief How many recorded durations fell into bucket `i`. Never throws.
  /// @param i a bucket index, in `[0, k_buckets)`.
  /// @return the bucket's count.
  [[nodiscard]] std::uint64_t bucket_count(std::size_t i) const noexcept { return m_counts[i]; }

 private:
  friend struct detail::histogram_access;

  static std::chrono::nanoseconds as_duration(std::uint64_t ns) noexcept {
    constexpr auto k_most = static_cast<std::uint64_t>(std::chrono::nanoseconds::max().count());
    return std::chrono::nanoseconds(static_cast<std::chrono::nanoseconds::rep>(ns < k_most ? ns : k_most));
  }

  void add_summary(std::uint64_t count, std::uint64_t sum, std::uint64_t min, std::uint64_t max) noexcept {
    m_min_ns = m_count == 0 ? min : std::min(m_min_ns, min);
    m_max_ns = std::max(m_max_ns, max);
    m_count += count;
    m_sum_ns += sum;
  }

  std::array<std::uint64_t, k_buckets> m_counts{};
  std::uint64_t m_count = 0;
  std::uint64_t m_sum_ns = 0;
  std::uint64_t m_min_ns = 0;
  std::uint64_t m_max_ns = 0;
};

}  // namespace flowpool
