// Helpers shared by the thread_pool, task_group and parallel_for tests (unit and stress).
#pragma once

#include <flowpool/thread_pool.hpp>

#include "test_support.hpp"

#include <pthread.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace flowpool_test {

// The thread counts every contract test runs with.
inline constexpr std::array<std::size_t, 3> k_thread_counts{1, 2, 8};

// Gives a wrong implementation `window` to make `pred` true; returns true if it stayed false.
// Used for "this call must still be blocked" checks: a correct library can never fail them, a
// wrong one fails them with high probability.
template <class Pred>
bool stays_false(Pred pred, std::chrono::milliseconds window = std::chrono::milliseconds(50)) {
  const auto end = std::chrono::steady_clock::now() + window;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return !pred();
}

// Holds `count` workers of a pool inside blocker tasks until release(), so a test can fill the
// injection queue deterministically. The blockers share their latches through a shared_ptr, so
// the holder may be destroyed (it releases them) before the blockers return.
class worker_hold {
 public:
  worker_hold(flowpool::thread_pool& pool, std::size_t count) : m_state(std::make_shared<state>(count)) {
    for (std::size_t i = 0; i < count; ++i) {
      pool.post([s = m_state] {
        s->started.count_down();
        s->released.wait();
      });
    }
  }
  worker_hold(const worker_hold&) = delete;
  worker_hold& operator=(const worker_hold&) = delete;
  worker_hold(worker_hold&&) = delete;
  worker_hold& operator=(worker_hold&&) = delete;
  ~worker_hold() { release(); }

  // True once every blocker is running (so every held worker is busy and the injection queue
  // holds nothing of ours).
  [[nodiscard]] bool wait_started() const {
    return eventually([&] { return m_state->started.try_wait(); });
  }

  void release() {
    if (!m_released) {
      m_released = true;
      m_state->released.count_down();
    }
  }

 private:
  struct state {
    explicit state(std::size_t n) : started(static_cast<std::ptrdiff_t>(n)) {}
    std::latch started;
    std::latch released{1};
  };
  std::shared_ptr<state> m_state;
  bool m_released = false;
};

// Aborts the process with `what` on stderr if it is not destroyed within `limit`: turns a hang
// inside a stress round (e.g. a destructor waiting for a lost task) into an immediate failure
// that names the round's parameters, instead of a silent CTest timeout.
class round_watchdog {
 public:
  round_watchdog(std::string what, std::chrono::seconds limit) : m_what(std::move(what)) {
    m_thread = std::thread([this, limit] {
      std::unique_lock lock(m_mutex);
      if (!m_cv.wait_for(lock, limit, [this] { return m_done; })) {
        std::fprintf(stderr, "round_watchdog: no progress within %lld s in round: %s\n",
                     static_cast<long long>(limit.count()), m_what.c_str());
        std::fflush(stderr);
        std::abort();
      }
    });
  }
  round_watchdog(const round_watchdog&) = delete;
  round_watchdog& operator=(const round_watchdog&) = delete;
  round_watchdog(round_watchdog&&) = delete;
  round_watchdog& operator=(round_watchdog&&) = delete;
  ~round_watchdog() {
    {
      const std::lock_guard lock(m_mutex);
      m_done = true;
    }
    m_cv.notify_one();
    m_thread.join();
  }

 private:
  std::string m_what;
  std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_done = false;
  std::thread m_thread;
};

// The calling thread's OS name (Linux: at most 15 characters).
inline std::string current_thread_name() {
  std::array<char, 64> buffer{};
  if (pthread_getname_np(pthread_self(), buffer.data(), buffer.size()) != 0) {
    return "<error>";
  }
  return std::string(buffer.data());
}

}  // namespace flowpool_test
