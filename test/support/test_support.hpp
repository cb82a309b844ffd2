// Helpers shared by flowpool's tests.
#pragma once

#include <unistd.h>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <latch>
#include <string>
#include <thread>

namespace flowpool_test {

// How long each stress test runs: FLOWPOOL_STRESS_SECONDS (default 2, so CI stays short; set it
// higher to hunt for rare interleavings). Stress loops run rounds until this much time has passed;
// they never assert on speed.
inline std::chrono::duration<double> stress_duration() {
  const char* text = std::getenv("FLOWPOOL_STRESS_SECONDS");
  double seconds = text != nullptr ? std::strtod(text, nullptr) : 2.0;
  if (!(seconds > 0.0)) {
    seconds = 2.0;
  }
  return std::chrono::duration<double>(seconds);
}

// Polls `pred` until it holds or `limit` passes, and returns pred(). It only turns a would-be hang
// into a failed check and waits for observable state; it never orders threads: with a correct
// library `pred` becomes true whatever the scheduling, and the limit is far beyond any plausible
// delay, even under ThreadSanitizer on a loaded 2-core machine.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= give_up) {
      return pred();
    }
    std::this_thread::yield();
  }
  return true;
}

// The number of threads of this process (Linux: one entry per thread in /proc/self/task). A thread
// that pthread_join() has returned for may still be listed for a moment (the kernel wakes the joiner
// before it removes the thread), so compare counts with eventually(), never once.
inline std::size_t process_thread_count() {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    ++count;
  }
  return count;
}

// A baseline for process_thread_count(): it starts and joins one thread first (sanitizer runtimes
// add a helper thread with the first one), then waits until that thread has left /proc, which a
// count taken right after the join may still include.
inline std::size_t thread_count_baseline() {
  std::atomic<pid_t> tid{0};  // written by the thread, read after the join: relaxed would do
  std::thread([&tid] { tid.store(::gettid()); }).join();
  const std::filesystem::path entry = "/proc/self/task/" + std::to_string(tid.load());
  // A baseline taken while the joined thread is still listed would be one too high.
  REQUIRE(eventually([&] { return !std::filesystem::exists(entry); }));
  return process_thread_count();
}

// A one-shot gate: wait() blocks until open(); any number of threads may open() it (only the first
// call counts, so the latch's precondition is never broken). Tests hold threads with it until the
// test thread has observed what it checks: the opener decides, nothing sleeps. Pair it with an
// open_on_exit declared after the pool or source whose handlers wait, so that a failed REQUIRE opens
// it before that object's destructor joins the waiting handlers.
class gate {
 public:
  void open() noexcept {
    // It publishes nothing (the latch orders open() before every wait()'s return); it only picks
    // the one call that counts the latch down, which any memory order would do.
    if (!m_opened.exchange(true)) {
      m_latch.count_down();
    }
  }
  void wait() const noexcept { m_latch.wait(); }

 private:
  std::atomic<bool> m_opened{false};
  std::latch m_latch{1};
};

// Opens a gate when it goes out of scope.
class open_on_exit {
 public:
  explicit open_on_exit(gate& g) noexcept : m_gate(g) {}
  open_on_exit(const open_on_exit&) = delete;
  open_on_exit& operator=(const open_on_exit&) = delete;
  ~open_on_exit() { m_gate.open(); }

 private:
  gate& m_gate;
};

// Small deterministic hash (splitmix64) for reproducible "random" choices in stress tests.
inline std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27U)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31U);
}

}  // namespace flowpool_test
