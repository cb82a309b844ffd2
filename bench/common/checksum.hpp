/// @file
/// @brief Benchmarks' serial reference answer: an order-independent fingerprint of the items a
/// run delivered, so "every item arrived exactly once" is checked by count and by sum.
#pragma once

#include <cstdint>

namespace flowpool_bench {

/// @brief Count, sum and sum of squares of a multiset of item values (all modulo 2^64).
///
/// Order-independent, so per-consumer checksums can be added up in any order. The count catches
/// lost and duplicated items; the sum catches an item delivered in place of another; the sum of
/// squares catches the rarer pair of errors whose sums cancel out.
/// Not thread-safe: each consumer fills its own and the harness adds them after the run.
struct checksum {
  std::uint64_t count = 0;           ///< Number of items seen.
  std::uint64_t sum = 0;             ///< Sum of the values seen, modulo 2^64.
  std::uint64_t sum_of_squares = 0;  ///< Sum of the squared values seen, modulo 2^64.

  /// @brief Records one item. Never throws; never allocates.
  /// @param value the item's value.
  void add(std::uint64_t value) noexcept {
    ++count;
    sum += value;
    sum_of_squares += value * value;
  }

  /// @brief Merges another checksum into this one. Never throws.
  /// @param other the checksum to add.
  /// @return `*this`.
  checksum& operator+=(const checksum& other) noexcept {
    count += other.count;
    sum += other.sum;
    sum_of_squares += other.sum_of_squares;
    return *this;
  }

  /// @brief Compares all three fields.
  friend bool operator==(const checksum&, const checksum&) = default;

  /// @brief The serial reference answer: the checksum of the values `0, 1, ..., n - 1`, each once.
  /// @param n the number of items.
  /// @return the expected checksum.
  [[nodiscard]] static checksum of_first(std::uint64_t n) noexcept {
    checksum expected;
    for (std::uint64_t value = 0; value < n; ++value) {
      expected.add(value);
    }
    return expected;
  }
};

}  // namespace flowpool_bench
