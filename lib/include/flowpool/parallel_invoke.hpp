/// @file
/// @brief flowpool::parallel_invoke: runs a few callables in parallel on a thread_pool.
#pragma once

#include <flowpool/detail/parallel_range.hpp>
#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <concepts>
#include <exception>
#include <memory>
#include <type_traits>

namespace flowpool {

namespace detail {

// One callable of a parallel_invoke, run as a task: skipped if another one already threw.
template <class F>
struct invoke_task {
  range_control* control;
  F* f;

  void operator()() const noexcept {
    if (control->stopped()) {
      return;
    }
    try {
      (*f)();
    } catch (...) {
      control->record(std::current_exception());
    }
  }
};

template <class First, class... Rest>
void invoke_all(thread_pool& pool, First& first, Rest&... rest) {
  range_control control;
  std::exception_ptr group_error;
  {
    task_group group(pool);
    // The others become tasks first (idle workers can take them), then the first runs here.
    // If run() throws shut_down_error, ~task_group waits for those already queued.
    (group.run(invoke_task<Rest>{&control, std::addressof(rest)}), ...);
    invoke_task<First>{&control, std::addressof(first)}();
    try {
      group.wait();  // only shut_down_error for tasks dropped by shutdown_now(): tasks catch their own
    } catch (...) {
      group_error = std::current_exception();
    }
  }
  control.rethrow_if_error();
  if (group_error) {
    std::rethrow_exception(group_error);
  }
}

}  // namespace detail

/// @brief Calls every `f()` once, in parallel on `pool` (the first one on the calling thread),
/// and returns when all have finished.
///
/// The others are tasks of a task_group, so from a worker this nests like any fork-join (also
/// with one worker). With no callable it returns at once; with one it just calls it. Return
/// values are discarded. If a callable throws, those that have not started yet are skipped.
///
/// Any thread. On one of the pool's workers it runs other tasks while it waits; from outside
/// the pool it sleeps once its own callable is done. Allocates nothing (each task holds two
/// pointers). Blocks while the injection queue is full when called from outside.
/// Memory ordering: the call happens-before every `f()`; every `f()` happens-before the return
/// (or the rethrow).
/// @param pool the pool to run on.
/// @param f the callables, called as lvalues; they are not copied.
/// @throws the first exception thrown by a callable, after every started one has finished.
///         shut_down_error if the pool does not accept tasks (some callables may then not run).
template <class... F>
requires(std::invocable<std::remove_reference_t<F>&>&&...) void parallel_invoke([[maybe_unused]] thread_pool& pool,
                                                                                F&&... f) {
  if constexpr (sizeof...(F) == 1) {
    (f(), ...);
  } else if constexpr (sizeof...(F) > 1) {
    detail::invoke_all(pool, f...);
  }
}

}  // namespace flowpool
