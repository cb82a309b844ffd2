/// @file
/// @brief flowpool::parallel_for and flowpool::parallel_for_blocked: parallel loops over an
/// integer range on a thread_pool.
#pragma once

#include <flowpool/detail/parallel_range.hpp>
#include <flowpool/thread_pool.hpp>

#include <stdexcept>
#include <type_traits>

namespace flowpool {

/// @brief Calls `body(i)` for every `i` in `[first, last)`, in parallel on `pool`, and returns
/// when all calls have finished.
///
/// The range is split by recursive halving into about 32 pieces per worker, each a task; idle
/// workers steal the largest pieces left. An empty or reversed range (`last <= first`, compared
/// as mathematical integers) makes no call. The order of the calls is unspecified. With one
/// worker, or a range of one piece, the calls run on the calling thread.
///
/// **Index types.** `first` and `last` may have different integral types (not bool); the loop
/// runs in, and `body` receives, their `std::common_type_t` (so `parallel_for(pool, 0, v.size(),
/// body)` gives `std::size_t`). If that common type is unsigned while an end is signed and
/// negative (e.g. `-1` with a `std::size_t` last), the call throws std::invalid_argument: the
/// index cannot be represented. A non-integral or bool end does not compile (the constraint
/// `detail::loop_index_pair` is not satisfied).
///
/// Any thread. On one of the pool's workers it takes part in the work (nested use is fine);
/// from outside the pool it sleeps until the pieces are done. Allocates nothing (`body` is
/// called by reference). Blocks while the injection queue is full when called from outside.
/// Memory ordering: the call happens-before every `body(i)`; every `body(i)` happens-before the
/// return (or the rethrow).
/// @param pool the pool to run on.
/// @param first the first index.
/// @param last one past the last index.
/// @param body called as `body(i)` (an lvalue) with the common index type; must be safe to
///        call concurrently.
/// @throws the first exception thrown by a `body(i)`, after every started piece has finished;
///         pieces not yet started are skipped, and the throwing piece stops at the throw.
///         std::invalid_argument for a negative end that the common type cannot hold.
///         shut_down_error if the pool is shut down.
template <class First, class Last, class Body>
requires detail::loop_index_pair<First, Last>
void parallel_for(thread_pool& pool, First first, Last last, Body&& body) {
  using index = std::common_type_t<First, Last>;
  using unsigned_index = std::make_unsigned_t<index>;
  index f{};
  index l{};
  if (!detail::common_range("flowpool::parallel_for", first, last, f, l)) {
    return;
  }
  const auto count = static_cast<unsigned_index>(static_cast<unsigned_index>(l) - static_cast<unsigned_index>(f));
  auto leaf = [&body](unsigned_index begin, unsigned_index n) {
    for (unsigned_index i = 0; i < n; ++i) {
      // Unsigned-to-signed conversion is modular (C++20), so this is exact for every index.
      body(static_cast<index>(static_cast<unsigned_index>(begin + i)));
    }
  };
  detail::run_range(pool, static_cast<unsigned_index>(f), count, detail::auto_grain(count, pool.thread_count()), leaf);
}

/// @brief Calls `body(b, e)` on sub-ranges `[b, e)` that together cover `[first, last)` exactly
/// once, in parallel on `pool`, and returns when all calls have finished.
///
/// The same splitter as parallel_for: recursive halving until a piece is at most `grain` long
/// (`grain == 0`: about 32 pieces per worker). Pieces are never empty, and a `grain` at least
/// as long as the range gives one call `body(first, last)` on the calling thread. The order of
/// the calls is unspecified. Use it when a piece has a setup cost worth sharing, or when the
/// inner loop should see a plain `for (i = b; i != e; ++i)` (vectorisation, a running sum).
/// Index types, empty and reversed ranges: as parallel_for.
///
/// Any thread. On one of the pool's workers it takes part in the work (nested use is fine);
/// from outside the pool it sleeps until the pieces are done. Allocates nothing. Blocks while
/// the injection queue is full when called from outside.
/// Memory ordering: the call happens-before every `body(b, e)`; every `body(b, e)`
/// happens-before the return (or the rethrow).
/// @param pool the pool to run on.
/// @param first the first index.
/// @param last one past the last index.
/// @param body called as `body(b, e)` (an lvalue) with two values of the common index type;
///        must be safe to call concurrently.
/// @param grain the largest piece; 0 (the default) chooses it from the range and the pool size.
/// @throws the first exception thrown by a `body`, after every started piece has finished;
///         pieces not yet started are skipped. std::invalid_argument if `grain` is negative, or
///         for a negative end that the common type cannot hold. shut_down_error if the pool is
///         shut down.
template <class First, class Last, class Body>
requires detail::loop_index_pair<First, Last>
void parallel_for_blocked(thread_pool& pool, First first, Last last, Body&& body,
                          std::type_identity_t<std::common_type_t<First, Last>> grain = 0) {
  using index = std::common_type_t<First, Last>;
  using unsigned_index = std::make_unsigned_t<index>;
  if constexpr (std::is_signed_v<index>) {
    if (grain < 0) {
      throw std::invalid_argument("flowpool::parallel_for_blocked: grain must not be negative");
    }
  }
  index f{};
  index l{};
  if (!detail::common_range("flowpool::parallel_for_blocked", first, last, f, l)) {
    return;
  }
  const auto count = static_cast<unsigned_index>(static_cast<unsigned_index>(l) - static_cast<unsigned_index>(f));
  auto leaf = [&body](unsigned_index begin, unsigned_index n) {
    // begin + n is at most `last`, so it never wraps.
    body(static_cast<index>(begin), static_cast<index>(static_cast<unsigned_index>(begin + n)));
  };
  const auto piece = grain == 0 ? detail::auto_grain(count, pool.thread_count()) : static_cast<unsigned_index>(grain);
  detail::run_range(pool, static_cast<unsigned_index>(f), count, piece, leaf);
}

}  // namespace flowpool
