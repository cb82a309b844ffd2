/// @file
/// @brief flowpool::parallel_reduce: a deterministic parallel reduction over an integer range on
/// a thread_pool.
#pragma once

#include <flowpool/detail/parallel_range.hpp>
#include <flowpool/thread_pool.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace flowpool {

/// @brief Returns `identity ⊕ map(first) ⊕ map(first + 1) ⊕ ... ⊕ map(last - 1)`, where
/// `a ⊕ b` is `reduce(a, b)`, computed in parallel on `pool`; an empty range returns `identity`.
///
/// **Combination order (determinism).** The range is cut into `P = min(n, 32 × threads)`
/// pieces of equal length (±1), where `n` is the length of the range and `threads` is
/// `pool.thread_count()`. Each piece is folded serially, left to right, starting from a copy of
/// `identity`; then the piece results are folded left to right, starting from `identity`. The
/// boundaries depend only on `n` and the pool size, never on which worker ran what, so the
/// result is the same on every run with the same pool size, even for a reduce that is not
/// commutative (string concatenation, matrix product) or not exactly associative (floating
/// point). `reduce` must be associative, and `identity` its identity, for the result to equal
/// the serial left fold; it need not be commutative.
///
/// Index types, empty and reversed ranges: as parallel_for (`map` receives the common index
/// type of `first` and `last`).
///
/// Any thread. On one of the pool's workers it takes part in the work (nested use is fine);
/// from outside the pool it sleeps until the pieces are done. Allocates one array of `P`
/// `std::optional<T>` (none for an empty range). Blocks while the injection queue is full when
/// called from outside.
/// Memory ordering: the call happens-before every `map` and `reduce` call; every such call
/// happens-before the return (or the rethrow).
/// @param pool the pool to run on.
/// @param first the first index.
/// @param last one past the last index.
/// @param identity the identity of `reduce`; each piece starts from a copy of it.
/// @param map called as `map(i)` (an lvalue); must be safe to call concurrently.
/// @param reduce called as `reduce(T&&, map result)` inside a piece and `reduce(T&&, T&&)` to
///        combine pieces; its result is assigned to a `T`. Must be safe to call concurrently.
/// @return the reduction, or `identity` for an empty range.
/// @throws the first exception thrown by `map`, `reduce` or copying a `T`, after every started
///         piece has finished; pieces not yet started are skipped. std::invalid_argument for a
///         negative end that the common type cannot hold; shut_down_error if the pool is shut
///         down; std::bad_alloc.
template <class First, class Last, class T, class Map, class Reduce>
requires detail::loop_index_pair<First, Last> T parallel_reduce(thread_pool& pool, First first, Last last, T identity,
                                                                Map&& map, Reduce&& reduce) {
  using index = std::common_type_t<First, Last>;
  using unsigned_index = std::make_unsigned_t<index>;
  index f{};
  index l{};
  if (!detail::common_range("flowpool::parallel_reduce", first, last, f, l)) {
    return identity;
  }
  const auto count = static_cast<std::uint64_t>(static_cast<unsigned_index>(l) - static_cast<unsigned_index>(f));
  const std::uint64_t pieces = std::min(
      count, detail::integer_cast<std::uint64_t>(pool.thread_count()) * detail::k_parallel_for_pieces_per_thread);
  const std::uint64_t quotient = count / pieces;
  const std::uint64_t remainder = count % pieces;
  auto results = std::make_unique<std::optional<T>[]>(detail::integer_cast<std::size_t>(pieces));
  const auto base = static_cast<unsigned_index>(f);
  // Pieces [k0, k0 + n) of the piece index range: piece k starts k * quotient + min(k, remainder)
  // elements in (never more than count, so nothing wraps) and is quotient (+1 if k < remainder) long.
  auto leaf = [&](std::uint64_t k0, std::uint64_t n) {
    for (std::uint64_t k = k0; k != k0 + n; ++k) {
      const auto begin = static_cast<unsigned_index>(base + k * quotient + std::min(k, remainder));
      const auto end = static_cast<unsigned_index>(begin + quotient + (k < remainder ? 1 : 0));
      T sum = identity;
      for (unsigned_index i = begin; i != end; ++i) {
        // Unsigned-to-signed conversion is modular (C++20), so this is exact for every index.
        sum = reduce(std::move(sum), map(static_cast<index>(i)));
      }
      results[detail::integer_cast<std::size_t>(k)].emplace(std::move(sum));
    }
  };
  // The same splitter as parallel_for, over piece numbers with grain 1: one task per piece.
  detail::run_range(pool, std::uint64_t{0}, pieces, std::uint64_t{1}, leaf);
  T total = std::move(identity);
  for (std::uint64_t k = 0; k != pieces; ++k) {
    std::optional<T>& piece = results[detail::integer_cast<std::size_t>(k)];
    // Empty only if the piece was skipped: called inside a task of a cancelled task_group, whose
    // cancellation reaches this call's group (the result is then unspecified, as documented).
    if (piece.has_value()) {
      total = reduce(std::move(total), std::move(*piece));
    }
  }
  return total;
}

}  // namespace flowpool
