/// @file
/// @brief The two ways the thread_pool benchmarks limit oneTBB to N task-running threads.
///
/// oneTBB has no "pool object" that outside threads post into; an outside thread that calls
/// `task_arena::execute` *joins* the arena and occupies one of its slots, running tasks like a
/// worker (and `task_group::run` from that thread pushes to its own local deque). flowpool's
/// benchmark thread never runs tasks. So there are two fair shapes, and each benchmark file
/// names the one it uses:
///
/// - `tbb_joined_arena` (compute workloads: fib, skynet, parallel_for, external_post): the
///   benchmark thread runs the work inside `arena.execute`, so N = 1 benchmark thread + (N - 1)
///   oneTBB workers. flowpool: N workers, benchmark thread blocked outside. Both have N threads
///   running tasks; oneTBB additionally saves the hand-off from the outside thread.
/// - `tbb_worker_arena` (wakeup, idle_cpu, the enqueue variant of external_post): the benchmark
///   thread stays outside and hands tasks over with `task_arena::enqueue`, exactly like
///   flowpool's `submit`/`post`; the arena has N worker slots and none reserved for outside
///   threads, so N oneTBB workers vs N flowpool workers.
#pragma once

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include <cstddef>

namespace flowpool_bench {

/// @brief oneTBB limited to N task-running threads, the calling thread being one of them: use
/// `arena.execute(...)` from the benchmark thread (it takes the reserved slot; N - 1 workers join).
///
/// `global_control(max_allowed_parallelism, N)` caps the process at N - 1 oneTBB workers (and
/// lifts the default cap of hardware_concurrency - 1 when N is larger); the arena has N slots,
/// one of them reserved for the benchmark thread. Lives for one benchmark function.
struct tbb_joined_arena {
  /// @brief Creates the limit and the arena and starts the arena (threads are created lazily).
  /// @param threads N >= 1.
  explicit tbb_joined_arena(std::size_t threads)
      : limit(tbb::global_control::max_allowed_parallelism, threads), arena(static_cast<int>(threads), 1) {
    arena.initialize();
  }

  tbb::global_control limit;  ///< At most N - 1 oneTBB worker threads in the process.
  tbb::task_arena arena;      ///< N slots, one reserved for the benchmark thread.
};

/// @brief oneTBB with N worker threads and no slot reserved for outside threads: the benchmark
/// thread stays outside and hands work over with `arena.enqueue(...)`, like flowpool's post/submit.
///
/// `global_control(max_allowed_parallelism, N + 1)` allows N workers (the limit counts one
/// outside thread); the arena has N slots, none reserved. Lives for one benchmark function.
struct tbb_worker_arena {
  /// @brief Creates the limit and the arena and starts the arena (threads are created lazily).
  /// @param threads N >= 1.
  explicit tbb_worker_arena(std::size_t threads)
      : limit(tbb::global_control::max_allowed_parallelism, threads + 1), arena(static_cast<int>(threads), 0) {
    arena.initialize();
  }

  tbb::global_control limit;  ///< At most N oneTBB worker threads in the process.
  tbb::task_arena arena;      ///< N slots, all for workers.
};

}  // namespace flowpool_bench
