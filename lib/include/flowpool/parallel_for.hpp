/// @file
/// @brief flowpool::parallel_for: a parallel loop over an integer range on a thread_pool.
#pragma once

#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace flowpool {

namespace detail {

// How many pieces parallel_for aims for per worker: enough for stealing to even out uneven
// bodies and a busy or preempted pool (8 per worker measured ~5-15 % slower than 32 on a loaded
// 2-core machine for the 16M-double sum), few enough that the per-task cost (~50 ns) stays
// negligible next to any piece worth parallelising.
inline constexpr std::uint64_t k_parallel_for_pieces_per_thread = 32;

// One sub-range [first, first + count) of a parallel_for, in the unsigned twin of the index type
// (so every offset is representable). Running it splits off the upper halves as new tasks of the
// group until the rest is at most `grain` long, then runs the rest serially.
template <class Index, class Body>
struct range_task {
  using unsigned_index = std::make_unsigned_t<Index>;

  Body* body;
  task_group* group;
  unsigned_index first;
  unsigned_index count;
  unsigned_index grain;

  void operator()() const {
    unsigned_index n = count;
    while (n > grain) {
      const auto half = static_cast<unsigned_index>(n / 2);
      group->run(range_task{body, group, static_cast<unsigned_index>(first + half),
                            static_cast<unsigned_index>(n - half), grain});
      n = half;
    }
    for (unsigned_index i = 0; i < n; ++i) {
      // Unsigned-to-signed conversion is modular (C++20), so this is exact for every index.
      (*body)(static_cast<Index>(static_cast<unsigned_index>(first + i)));
    }
  }
};

}  // namespace detail

/// @brief Calls `body(i)` for every `i` in `[first, last)`, in parallel on `pool`, and returns
/// when all calls have finished.
///
/// The range is split by recursive halving into about 32 pieces per worker, each a task; idle
/// workers steal the largest pieces left. An empty or reversed range (`last <= first`) makes no
/// call. The order of the calls is unspecified. With one worker, or a range of one piece, the
/// calls run on the calling thread.
///
/// Any thread. On one of the pool's workers it takes part in the work (nested use is fine);
/// from outside the pool it sleeps until the pieces are done. Allocates nothing when `Body`
/// is called through a pointer (always). Blocks while the injection queue is full when called
/// from outside.
/// Memory ordering: the call happens-before every `body(i)`; every `body(i)` happens-before the
/// return (or the rethrow).
/// @tparam Index any integral type except bool, signed or unsigned.
/// @param pool the pool to run on.
/// @param first the first index.
/// @param last one past the last index.
/// @param body called as `body(i)` with an `Index`; must be safe to call concurrently.
/// @throws the first exception thrown by a `body(i)` (after every started piece has finished;
///         pieces not yet split off still run). shut_down_error if the pool is shut down.
template <class Index, class Body>
requires std::integral<Index> &&
    (!std::same_as<Index, bool>)void parallel_for(thread_pool& pool, Index first, Index last, Body&& body) {
  if (!(first < last)) {
    return;
  }
  using body_type = std::remove_reference_t<Body>;
  using unsigned_index = std::make_unsigned_t<Index>;
  const auto count =
      static_cast<unsigned_index>(static_cast<unsigned_index>(last) - static_cast<unsigned_index>(first));
  const std::uint64_t pieces =
      static_cast<std::uint64_t>(pool.thread_count()) * detail::k_parallel_for_pieces_per_thread;
  // Rounded-up division without `count + pieces - 1`, which wraps for ranges near 2^64.
  const std::uint64_t grain64 =
      static_cast<std::uint64_t>(count) / pieces + (static_cast<std::uint64_t>(count) % pieces != 0 ? 1 : 0);
  const auto grain = static_cast<unsigned_index>(grain64 == 0 ? 1 : grain64);
  if (pool.thread_count() == 1 || count <= grain) {
    // One piece: run it here. (grain = count, so the group is never touched.)
    detail::range_task<Index, body_type>{&body, nullptr, static_cast<unsigned_index>(first), count, count}();
    return;
  }
  const detail::range_task<Index, body_type> whole{&body, nullptr, static_cast<unsigned_index>(first), count, grain};
  task_group group(pool);
  detail::range_task<Index, body_type> root = whole;
  root.group = &group;
  if (thread_pool::this_worker_index().has_value()) {
    root();  // on a worker (ours or another pool's): take part; ~task_group waits if this throws
  } else {
    group.run(root);
  }
  group.wait();
}

}  // namespace flowpool
