/// @file
/// @brief Internal: the range splitter shared by parallel_for, parallel_for_blocked,
/// parallel_reduce (and the error/skip state shared with parallel_invoke). Not API.
#pragma once

#include <flowpool/detail/config.hpp>

#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstdint>
#include <exception>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace flowpool::detail {

// How many pieces a parallel loop aims for per worker: enough for stealing to even out uneven
// bodies and a busy or preempted pool (8 per worker measured ~5-15 % slower than 32 on a loaded
// 2-core machine for the 16M-double sum), few enough that the per-task cost (~50 ns) stays
// negligible next to any piece worth parallelising.
inline constexpr std::uint64_t k_parallel_for_pieces_per_thread = 32;

/// One index type for a loop: any integral type except bool (cv-qualified or not).
template <class T>
concept loop_index = std::integral<T> && !std::same_as<std::remove_cv_t<T>, bool>;

/// The pair (first, last) of a parallel loop: both integral, neither bool. The loop runs in
/// their std::common_type. A signed/unsigned pair whose common type is unsigned (int with
/// std::size_t, say) is accepted so that `parallel_for(pool, 0, v.size(), body)` compiles; a
/// negative signed end is then rejected at run time (see common_range()).
template <class First, class Last>
concept loop_index_pair = loop_index<First> && loop_index<Last>;

/// The value of `x` in the widest integer type of its signedness. (std::cmp_less and
/// std::in_range reject the character types, which parallel loops accept.)
template <class T>
constexpr auto widen(T x) noexcept {
  if constexpr (std::is_signed_v<T>) {
    return static_cast<std::intmax_t>(x);
  } else {
    return static_cast<std::uintmax_t>(x);
  }
}

/// True if `x` is a value of `Index`.
template <class Index, class T>
constexpr bool fits(T x) noexcept {
  return std::cmp_less_equal(widen(std::numeric_limits<Index>::min()), widen(x)) &&
         std::cmp_less_equal(widen(x), widen(std::numeric_limits<Index>::max()));
}

/// @brief Converts `[first, last)` to the common index type `Index`.
/// @return false if the range is empty or reversed (compared as mathematical integers, so
///         `-1 < 0u` holds); true, with `f` and `l` set, otherwise.
/// @throws std::invalid_argument naming `who` if an end of a non-empty range does not fit in
///         `Index` (a negative signed end with an unsigned common type).
template <class Index, class First, class Last>
bool common_range(const char* who, First first, Last last, Index& f, Index& l) {
  if (!std::cmp_less(widen(first), widen(last))) {
    return false;
  }
  if (!fits<Index>(first) || !fits<Index>(last)) {
    // Only a negative signed end can fail: the common type of a signed/unsigned pair is either
    // signed and wide enough for both, or unsigned and at least as wide as both.
    const bool first_bad = !fits<Index>(first);
    const auto value = first_bad ? static_cast<std::intmax_t>(first) : static_cast<std::intmax_t>(last);
    throw std::invalid_argument(std::string(who) + ": " + (first_bad ? "first" : "last") + " = " +
                                std::to_string(value) +
                                " does not fit in the common index type of first and last, which is unsigned; "
                                "use a signed type for both ends");
  }
  f = static_cast<Index>(first);
  l = static_cast<Index>(last);
  return true;
}

/// @brief The grain that gives about k_parallel_for_pieces_per_thread pieces per worker.
/// @return ceil(count / pieces), at least 1.
template <class Unsigned>
Unsigned auto_grain(Unsigned count, std::size_t threads) noexcept {
  const std::uint64_t pieces = integer_cast<std::uint64_t>(threads) * k_parallel_for_pieces_per_thread;
  // Rounded-up division without `count + pieces - 1`, which wraps for ranges near 2^64.
  const std::uint64_t grain =
      static_cast<std::uint64_t>(count) / pieces + (static_cast<std::uint64_t>(count) % pieces != 0 ? 1 : 0);
  return static_cast<Unsigned>(grain == 0 ? 1 : grain);
}

/// @brief The stop flag and first error of one parallel algorithm call.
///
/// The first piece (or callable) to throw sets the flag and keeps its exception; pieces that
/// have not started yet see the flag and skip. The flag is the algorithm's own: a task_group
/// cancel() here would also reach groups the user creates inside the bodies (nested groups see
/// their parent's cancellation), which an error in one piece must not do.
class range_control {
 public:
  /// True once a piece threw. Any thread.
  [[nodiscard]] bool stopped() const noexcept {
    // relaxed: a hint to skip work; no data is read on the strength of it. A piece that misses a
    // fresh `true` merely runs (as if it had started earlier).
    return m_stopped.load(std::memory_order_relaxed);
  }

  /// Records `error` if it is the first; drops it otherwise. Any thread.
  void record(std::exception_ptr error) noexcept {
    // relaxed: the RMW alone picks one winner; m_error is published to the caller by the end of
    // the winner's task happening-before task_group::wait() returns (or by being the caller).
    if (!m_stopped.exchange(true, std::memory_order_relaxed)) {
      m_error = std::move(error);
    }
  }

  /// Rethrows the recorded error, if any. Only the caller, after every piece has finished.
  void rethrow_if_error() const {
    if (m_error) {
      std::rethrow_exception(m_error);
    }
  }

 private:
  std::atomic<bool> m_stopped{false};  // written: first thrower (RMW); read: every piece
  std::exception_ptr m_error;          // written: the one winner of m_stopped; read: the caller after wait
};

/// What every piece of one call shares: the leaf, the group, the stop flag.
template <class Leaf>
struct range_context {
  Leaf* leaf;
  task_group* group;
  range_control control;
};

// One sub-range [first, first + count) of a parallel loop, in an unsigned type (so every offset
// is representable). Running it splits off the upper halves as new tasks of the group until the
// rest is at most `grain` long, then calls `leaf(first, rest)`. Piece boundaries depend only on
// the range and the grain, never on which worker runs what. 32 bytes for 64-bit indices, so a
// task never allocates.
template <class Unsigned, class Leaf>
struct range_task {
  range_context<Leaf>* context;
  Unsigned first;
  Unsigned count;
  Unsigned grain;

  void operator()() const noexcept {
    if (context->control.stopped()) {
      return;  // a piece threw: skip what has not started
    }
    try {
      Unsigned n = count;
      while (n > grain) {
        const auto half = static_cast<Unsigned>(n / 2);
        context->group->run(
            range_task{context, static_cast<Unsigned>(first + half), static_cast<Unsigned>(n - half), grain});
        n = half;
      }
      if (!context->control.stopped()) {
        (*context->leaf)(first, n);
      }
    } catch (...) {
      context->control.record(std::current_exception());
    }
  }
};

/// @brief Runs `leaf(begin, n)` over pieces of `[first, first + count)` (count > 0), each at
/// most `grain` long, on `pool`; returns when all have finished; rethrows the first exception.
///
/// A range of one piece runs on the calling thread; so do all pieces, in index order, with one
/// worker (an exception then propagates directly and the later pieces do not run). On a worker
/// the caller takes part; from outside it sleeps in task_group::wait().
template <class Unsigned, class Leaf>
void run_range(thread_pool& pool, Unsigned first, Unsigned count, Unsigned grain, Leaf& leaf) {
  if (count <= grain) {
    leaf(first, count);  // one piece: here, and the group is never touched
    return;
  }
  if (pool.thread_count() == 1) {
    // No other worker to share with: the pieces run here, in index order, each at most `grain`.
    for (Unsigned done = 0; done != count;) {
      const Unsigned n = std::min<Unsigned>(grain, static_cast<Unsigned>(count - done));
      leaf(static_cast<Unsigned>(first + done), n);
      done = static_cast<Unsigned>(done + n);
    }
    return;
  }
  std::exception_ptr group_error;
  range_context<Leaf> context{&leaf, nullptr, {}};
  {
    task_group group(pool);
    context.group = &group;
    const range_task<Unsigned, Leaf> root{&context, first, count, grain};
    if (thread_pool::this_worker_index().has_value()) {
      root();  // on a worker (ours or another pool's): take part; never throws
    } else {
      group.run(root);  // may throw shut_down_error: nothing queued then
    }
    try {
      group.wait();  // only shut_down_error for tasks dropped by shutdown_now(): pieces catch their own
    } catch (...) {
      group_error = std::current_exception();
    }
  }
  context.control.rethrow_if_error();
  if (group_error) {
    std::rethrow_exception(group_error);
  }
}

}  // namespace flowpool::detail
