// Helpers for the promise stress tests (issue 9): a no-progress watchdog and a time/count bound.
#pragma once

#include "test_support.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace flowpool_test {

// Aborts the process, naming the test case, if tick() was not called for `limit` (a hang turns
// into an immediate failure with a message instead of a silent CTest timeout). Every thread of a
// case calls tick() whenever it completes an operation; the watchdog only looks at the counter.
class progress_watchdog {
 public:
  explicit progress_watchdog(std::string what, std::chrono::seconds limit = std::chrono::seconds(30))
      : m_what(std::move(what)) {
    m_thread = std::thread([this, limit] {
      std::unique_lock lock(m_mutex);
      std::uint64_t seen = m_progress.load(std::memory_order_relaxed);
      auto last_move = std::chrono::steady_clock::now();
      while (!m_cv.wait_for(lock, std::chrono::milliseconds(100), [this] { return m_done; })) {
        // relaxed: a counter compared with itself; it orders nothing
        const std::uint64_t now_seen = m_progress.load(std::memory_order_relaxed);
        const auto now = std::chrono::steady_clock::now();
        if (now_seen != seen) {
          seen = now_seen;
          last_move = now;
        } else if (now - last_move >= limit) {
          std::fprintf(stderr, "progress_watchdog: no progress for %lld s in case: %s\n",
                       static_cast<long long>(limit.count()), m_what.c_str());
          std::fflush(stderr);
          std::abort();
        }
      }
    });
  }
  progress_watchdog(const progress_watchdog&) = delete;
  progress_watchdog& operator=(const progress_watchdog&) = delete;
  progress_watchdog(progress_watchdog&&) = delete;
  progress_watchdog& operator=(progress_watchdog&&) = delete;
  ~progress_watchdog() {
    {
      const std::lock_guard lock(m_mutex);
      m_done = true;
    }
    m_cv.notify_one();
    m_thread.join();
  }

  // relaxed: a progress counter; it publishes no data
  void tick() noexcept { m_progress.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::string m_what;
  std::atomic<std::uint64_t> m_progress{0};
  std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_done = false;
  std::thread m_thread;
};

// Rounds of a stress case: at least `min_rounds`, then until stress_duration() has passed, and
// never more than `max_rounds`.
class round_budget {
 public:
  explicit round_budget(int min_rounds = 4, int max_rounds = 100000) : m_min(min_rounds), m_max(max_rounds) {}
  [[nodiscard]] bool next() {
    if (m_rounds >= m_max) {
      return false;
    }
    if (m_rounds >= m_min && std::chrono::steady_clock::now() - m_start >= stress_duration()) {
      return false;
    }
    ++m_rounds;
    return true;
  }
  [[nodiscard]] int rounds() const noexcept { return m_rounds; }

 private:
  std::chrono::steady_clock::time_point m_start = std::chrono::steady_clock::now();
  int m_min;
  int m_max;
  int m_rounds = 0;
};

}  // namespace flowpool_test
