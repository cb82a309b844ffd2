/// @file
/// @brief flowpool::pool_stats: a snapshot of a thread_pool's counters.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace flowpool {

/// @brief Counters of one worker thread of a thread_pool.
///
/// Each counter is written only by its worker, on that worker's own cache line, and read with
/// relaxed loads by thread_pool::stats(): the counters order nothing, so a snapshot taken while the
/// pool runs is a set of individually exact values that may be from slightly different instants.
struct worker_stats {
  std::uint64_t executed = 0;        ///< Tasks this worker ended: ran (including ones that threw) or skipped.
  std::uint64_t stolen = 0;          ///< Tasks it took from another worker's deque.
  std::uint64_t steal_attempts = 0;  ///< Steal attempts it made (successful or not).
  std::uint64_t parks = 0;           ///< Times it went to sleep because it found no work.
  /// Time spent outside the idle search/park loop, added each time the worker runs out of work
  /// (a worker that has been busy since its last idle period has not added that period yet).
  std::chrono::nanoseconds busy_time{0};
  /// Tasks of cancelled task_groups it skipped (destroyed without running); also in `executed`.
  std::uint64_t skipped = 0;
};

/// @brief A snapshot of a thread_pool's counters, returned by thread_pool::stats().
///
/// Memory ordering: none beyond the values themselves; see worker_stats. After wait_idle()
/// returns (and nothing new was submitted), `submitted == completed + dropped`.
struct pool_stats {
  std::vector<worker_stats> workers;  ///< One entry per worker thread, by worker index.
  std::uint64_t submitted = 0;        ///< Tasks accepted: submit, post, try_post and task_group::run(), from anywhere.
  std::uint64_t completed = 0;        ///< Tasks that ended: ran (also those that threw) or were skipped.
  std::uint64_t skipped = 0;          ///< Tasks of cancelled task_groups skipped instead of run (also in `completed`).
  std::uint64_t failed = 0;           ///< post()ed tasks whose exception went to on_error (or was dropped).
  std::uint64_t dropped = 0;          ///< Tasks discarded unstarted by shutdown_now().
  /// Most tasks seen waiting at once in the injection queue: never goes back, never exceeds
  /// pool_options::queue_capacity; exact when the queue stalled at its peak, a lower bound otherwise.
  std::size_t queue_high_water = 0;
};

}  // namespace flowpool
